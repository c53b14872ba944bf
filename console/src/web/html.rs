//! The page frame: head, style, navigation. Pages are maud templates, checked at compile time;
//! every value they interpolate is escaped (what they show comes from policies and audit events,
//! which workloads influence), and only this module's constant style and the audits page's
//! constant script are written as they are.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::auth::{Caller, Role};

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 0; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: .6em 1.2em; display: flex; gap: 1.5em; align-items: center; }
header a { color: #cfd8ea; text-decoration: none; } header a.on { color: #fff; font-weight: bold; }
header form { margin-left: auto; } main { padding: 1em 1.2em; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { border-bottom: 1px solid #dde; padding: .3em .5em; text-align: left; vertical-align: top; }
td:first-child { white-space: nowrap; } td a { color: inherit; }
th { background: #f2f4f8; } code, textarea { font-family: ui-monospace, monospace; }
textarea { width: 100%; min-height: 24em; } textarea.script { min-height: 8em; }
pre.script, pre.excerpt { margin: 0; white-space: pre-wrap; } pre.excerpt { margin-top: .3em; }
.field-error { color: #a00; margin: .3em 0; } tr:target { background: #fffbd6; }
form.entry input, form.entry select { font: inherit; } td form { display: inline; }
td.used-by { white-space: nowrap; }
.errors { color: #a00; background: #fff0f0; border: 1px solid #e99; padding: .5em 1.5em; }
.ok { color: #060; background: #effaef; border: 1px solid #9c9; padding: .5em 1em; }
.effect-prevent, .effect-block { color: #a00; font-weight: bold; } .effect-alert { color: #a60; }
.effect-allow { color: #060; } .effect-disable { color: #778; }
pre.diff { background: #f8f9fb; padding: .5em; } pre.diff .hunk { color: #778; }
pre.diff ins { background: #e6ffec; text-decoration: none; }
pre.diff del { background: #ffebe9; text-decoration: none; }
.muted { color: #778; } form.filters { display: flex; flex-wrap: wrap; gap: .5em; margin-bottom: 1em; }
";

/// The pages of the navigation, by name and path, and the roles that see them.
const NAVIGATION: [(&str, &str, &[Role]); 6] = [
    (
        "Policy",
        "/policy",
        &[Role::Admin, Role::Operator, Role::Auditor],
    ),
    (
        "WAAS",
        "/policy/waas",
        &[Role::Admin, Role::Operator, Role::Auditor],
    ),
    (
        "Audits",
        "/audits",
        &[Role::Admin, Role::Operator, Role::Auditor],
    ),
    (
        "Defenders",
        "/defenders",
        &[Role::Admin, Role::Operator, Role::Auditor],
    ),
    (
        "Activity",
        "/activity",
        &[Role::Admin, Role::Operator, Role::Auditor],
    ),
    ("People", "/people", &[Role::Admin]),
];

/// A whole page: for a person logged in (`who`), the navigation (with `active` marked), their
/// name and role and the logout button; then `body`.
pub fn page(who: Option<&Caller>, title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { (title) " · defender console" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "defender console" }
                    @if let Some(who) = who {
                        @for (name, href, roles) in NAVIGATION {
                            @if roles.contains(&who.role) {
                                a href=(href) class=[(name == active).then_some("on")] { (name) }
                            }
                        }
                        form method="post" action="/logout" {
                            span id="who" { (who.name) " (" (who.role.as_str()) ") " }
                            (who.csrf_input())
                            button id="logout" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_escaped_and_the_active_page_marked() {
        let who = Caller {
            name: "<b>eve</b>".into(),
            role: Role::Auditor,
            csrf: "c1".into(),
            scope: None,
        };
        let html = page(
            Some(&who),
            r#"<script>alert('x')</script> & "q""#,
            "Audits",
            html! {},
        )
        .into_string();
        assert!(
            html.contains("<h1>&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot;</h1>"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains(r#"<a href="/audits" class="on">Audits</a>"#),
            "{html}"
        );
        assert!(html.contains(r#"<a href="/policy">Policy</a>"#), "{html}");
        // The person, escaped; their form's CSRF token; no page their role may not see.
        assert!(html.contains("&lt;b&gt;eve&lt;/b&gt; (auditor)"), "{html}");
        assert!(
            html.contains(r#"<input type="hidden" name="csrf" value="c1">"#),
            "{html}"
        );
        assert!(!html.contains("/people"), "{html}");
    }
}
