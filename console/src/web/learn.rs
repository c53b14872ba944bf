//! The learning page (`/policy/learn`): for a scope (container and image globs) and a time window,
//! what its containers were seen doing, grouped by kind with counts and sources, and the draft rule
//! made of it (learning.rs) in an editor; "Save as the first rule" puts the edited rule first in
//! the policy, replacing an earlier rule of the same name, and saves it as the policy page does.
//! Every value shown is the workload's (paths, names) and is escaped by the templates.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use defender::activity::Kind;
use defender::policy::schema::{self, Document};
use maud::{Markup, html};
use serde::Deserialize;

use super::{internal, page, problems};
use crate::app::{AppState, ReplaceError, Replaced};
use crate::auth::{Caller, Editor, Person};
use crate::learning::{self, Draft, Scope, SeenAll};

/// Where the page lives.
pub const LEARN: &str = "/policy/learn";
/// The window when none is asked for.
const DEFAULT_SINCE: &str = "24h";
/// The windows offered (anything humantime reads, or an RFC 3339 time, is accepted too).
const PRESETS: [&str; 4] = ["1h", "24h", "7d", "all"];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(LEARN, get(learn_page).post(save))
}

/// The page's form, as the query string or the save form carries it.
#[derive(Clone, Debug, Default, Deserialize)]
struct Window {
    #[serde(default)]
    container: String,
    #[serde(default)]
    image: String,
    /// `1h`, `24h`, `7d`, `all`, or an RFC 3339 time.
    #[serde(default)]
    since: String,
}

impl Window {
    fn since(&self) -> &str {
        match self.since.trim() {
            "" => DEFAULT_SINCE,
            s => s,
        }
    }

    /// The scope it asks for: a window in the past is a time `since` ago.
    fn scope(&self, now: SystemTime) -> Result<Scope, String> {
        let since = match self.since() {
            "all" => None,
            s => Some(match humantime::parse_duration(s) {
                Ok(ago) => {
                    let at = now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH);
                    humantime::format_rfc3339_micros(at).to_string()
                }
                Err(_) => crate::events::normalize_time(s).map_err(|e| {
                    format!("since: {e}; give a window such as 1h, 24h, 7d, or all")
                })?,
            }),
        };
        Scope::new(Some(&self.container), Some(&self.image), since)
    }
}

async fn learn_page(
    Person(caller): Person,
    State(state): State<Arc<AppState>>,
    Query(window): Query<Window>,
) -> Response {
    let scope = match window.scope(SystemTime::now()) {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                view(
                    &caller,
                    &window,
                    None,
                    html! { p class="errors" id="errors" { (e) } },
                ),
            )
                .into_response();
        }
    };
    let seen = match learning::seen(&state, &scope).await {
        Ok(s) => s,
        Err(e) => return internal(&e.message),
    };
    let draft = learning::draft(&scope, &seen);
    let text = serde_json::to_string_pretty(&draft.rule).expect("a rule serializes");
    let found = Found {
        seen: &seen,
        draft: &draft,
        scope: &scope,
    };
    view(&caller, &window, Some((found, &text)), html! {}).into_response()
}

/// What the page shows for a valid scope.
struct Found<'a> {
    seen: &'a SeenAll,
    draft: &'a Draft,
    scope: &'a Scope,
}

fn view(caller: &Caller, window: &Window, found: Option<(Found, &str)>, notice: Markup) -> Markup {
    page(
        Some(caller),
        "Learn a rule",
        "Policy",
        html! {
            p {
                "What the containers of a scope were seen doing (reported by their defenders, \
                 and the " code { "alert" } " audits), as a draft rule that allows exactly that \
                 and prevents the rest. Nothing is saved until you save it."
            }
            form method="get" action=(LEARN) class="filters" id="window" {
                label { "container " input name="container" id="container" value=(window.container) placeholder="*"; }
                label { "image " input name="image" id="image" value=(window.image) placeholder="*"; }
                label {
                    "since "
                    input name="since" id="since" value=(window.since()) list="presets" size="28";
                }
                datalist id="presets" { @for p in PRESETS { option value=(p); } }
                button id="show" { "Show" }
            }
            (notice)
            @if let Some((found, text)) = found {
                (seen_tables(&found))
                h2 { "Draft rule" }
                form method="post" action=(LEARN) {
                    (caller.csrf_input())
                    input type="hidden" name="container" value=(window.container);
                    input type="hidden" name="image" value=(window.image);
                    input type="hidden" name="since" value=(window.since());
                    textarea name="rule" id="rule" spellcheck="false" { (text) }
                    p {
                        button id="save" { "Save as the first rule" } " "
                        span class="muted" {
                            "Puts this rule first in the policy (so it is the one in force for \
                             these containers) and saves the next revision; an earlier rule named \
                             as this one is replaced."
                        }
                    }
                }
            }
        },
    )
}

/// What was seen, by kind, and what could not go in the draft.
fn seen_tables(found: &Found) -> Markup {
    let since = found.scope.since.as_deref().unwrap_or("the first report");
    html! {
        p id="summary" {
            (found.seen.len()) " distinct activities of containers " code { (found.scope.container) }
            " (image " code { (found.scope.image) } ") since " (since) "."
        }
        @for kind in Kind::ALL {
            h2 { (heading(kind)) }
            @let rows: Vec<_> = found.seen.iter().filter(|((k, _), _)| *k == kind).collect();
            @if rows.is_empty() {
                p class="muted" id={ "none-" (kind.as_str()) } { "Nothing seen." }
            } @else {
                table id={ "seen-" (kind.as_str()) } {
                    tr { th { "value" } th { "count" } th { "from" } }
                    @for ((_, value), seen) in rows {
                        tr {
                            td { code { (value) } }
                            td { (seen.count) }
                            td {
                                @if seen.reported { "activity report" }
                                @if seen.reported && seen.audited { ", " }
                                @if seen.audited { "alert audits" }
                            }
                        }
                    }
                }
            }
        }
        @if !found.draft.left_out.is_empty() {
            h2 { "Left out of the draft" }
            ul id="left-out" {
                @for (kind, value, why) in &found.draft.left_out {
                    li { (kind.as_str()) " " code { (value) } ": " (why) }
                }
            }
        }
    }
}

fn heading(kind: Kind) -> &'static str {
    match kind {
        Kind::Process => "Programs launched",
        Kind::Dns => "DNS names asked",
        Kind::Outbound => "Destinations reached",
        Kind::Listen => "Listening ports",
    }
}

#[derive(Deserialize)]
struct SaveForm {
    #[serde(default)]
    csrf: String,
    rule: String,
    #[serde(flatten)]
    window: Window,
}

/// The rule as edited, first in the policy in force (an earlier rule of its name removed).
fn first(document: &str, rule: schema::Rule) -> Result<String, String> {
    let mut doc: Document = serde_json::from_str(document)
        .map_err(|e| format!("the stored policy is unreadable: {e}"))?;
    doc.rules.retain(|r| r.name != rule.name);
    doc.rules.insert(0, rule);
    Ok(serde_json::to_string_pretty(&doc).expect("a policy serializes"))
}

async fn save(
    Editor(caller): Editor,
    State(state): State<Arc<AppState>>,
    Form(form): Form<SaveForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "the form is stale or from another site; reload the page",
        )
            .into_response();
    }
    let refused = |notice: Markup| {
        let text = form.rule.clone();
        (
            StatusCode::BAD_REQUEST,
            view(
                &caller,
                &form.window,
                None,
                html! {
                    (notice)
                    h2 { "Draft rule" }
                    form method="post" action=(LEARN) {
                        (caller.csrf_input())
                        input type="hidden" name="container" value=(form.window.container);
                        input type="hidden" name="image" value=(form.window.image);
                        input type="hidden" name="since" value=(form.window.since());
                        textarea name="rule" id="rule" spellcheck="false" { (text) }
                        p { button id="save" { "Save as the first rule" } }
                    }
                },
            ),
        )
            .into_response()
    };
    let rule = match serde_json::from_str::<schema::Rule>(&form.rule) {
        Ok(r) => r,
        Err(e) => {
            return refused(html! {
                div class="errors" id="errors" {
                    p { "Not saved: the rule is not a rule of the policy: " (e) }
                }
            });
        }
    };
    let document = match first(&state.policy().document, rule) {
        Ok(d) => d,
        Err(e) => return internal(&e),
    };
    match state.replace_policy(&document, &caller.name).await {
        Ok(Replaced::New(p)) => {
            Redirect::to(&format!("/policy?saved={}", p.revision)).into_response()
        }
        Ok(Replaced::Same(p)) => {
            Redirect::to(&format!("/policy?saved={}&changed=0", p.revision)).into_response()
        }
        Err(ReplaceError::Invalid(e)) => refused(html! {
            div class="errors" id="errors" {
                p { "Not saved: the policy with this rule first is invalid. The policy in force is unchanged." }
                (problems::list(&e, |_| None))
            }
        }),
        Err(ReplaceError::Store(e)) => internal(&e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learning::Seen;

    #[test]
    fn windows() {
        let now = humantime::parse_rfc3339("2026-11-29T12:00:00Z").unwrap();
        let window = |since: &str| Window {
            container: "web".into(),
            image: String::new(),
            since: since.into(),
        };
        let since = |w: Window| w.scope(now).map(|s| s.since);
        assert_eq!(
            since(window("")).unwrap().as_deref(),
            Some("2026-11-28T12:00:00.000000Z")
        );
        assert_eq!(
            since(window("1h")).unwrap().as_deref(),
            Some("2026-11-29T11:00:00.000000Z")
        );
        assert_eq!(since(window("all")).unwrap(), None);
        assert_eq!(
            since(window("2026-11-01T00:00:00Z")).unwrap().as_deref(),
            Some("2026-11-01T00:00:00.000000Z")
        );
        assert!(since(window("soon")).unwrap_err().starts_with("since: "));
    }

    #[test]
    fn the_rule_goes_first_replacing_its_namesake() {
        let doc = r#"{"rules": [{"name": "a"}, {"name": "learned: web"}, {"name": "b"}]}"#;
        let rule: schema::Rule =
            serde_json::from_str(r#"{"name": "learned: web", "disabled": true}"#).unwrap();
        let out: Document = serde_json::from_str(&first(doc, rule).unwrap()).unwrap();
        let names: Vec<(&str, bool)> = out
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.disabled))
            .collect();
        assert_eq!(names, [("learned: web", true), ("a", false), ("b", false)]);
    }

    #[test]
    fn hostile_values_are_shown_escaped() {
        let scope = Scope::new(Some("web"), None, None).unwrap();
        let hostile = r#"/tmp/"><script>alert(1)</script>"#;
        let seen: SeenAll = [((Kind::Process, hostile.to_string()), Seen::default())]
            .into_iter()
            .collect();
        let draft = learning::draft(&scope, &seen);
        let html = seen_tables(&Found {
            seen: &seen,
            draft: &draft,
            scope: &scope,
        })
        .into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
