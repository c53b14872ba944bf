//! The pages for a person: the policy (rules in order with scope, custom rules and effects, edited
//! as JSON with the validation errors shown inline), its custom rules library (`custom`), its
//! history (`history`) and the learning page (`learn`: a draft rule from what containers did), the
//! WAAS policy (`waas`), the audits (`audits`: filters, pages with the total, counts, the chart
//! drawn by `chart`, an event's own page), the defenders (`defenders`). Server-rendered HTML from maud
//! templates, which escape every value they show (command lines, domains, container names: the
//! workloads choose them; scripts hold quotes and `<`); query strings are encoded with
//! `form_urlencoded`. The only script refreshes the audit rows.
//!
//! The pages need a person logged in (`login`): what each sees and may change follows their
//! role; every form carries the session's CSRF token.

mod audits;
mod chart;
mod custom;
mod defenders;
mod history;
mod html;
mod learn;
mod login;
mod people;
mod problems;
mod waas;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use defender::policy::PolicyError;
use defender::policy::schema::{self, CustomEffect, Document, Effect};
use maud::{Markup, html};
use serde::Deserialize;

use crate::app::{AppState, Replaced};
use crate::auth::{Caller, EDITORS, Editor, Person};
use audits::AUDITS;
use html::page;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to(AUDITS) }))
        .route("/policy", get(policy_page).post(save_policy))
        .merge(audits::routes())
        .merge(custom::routes())
        .merge(defenders::routes())
        .merge(history::routes())
        .merge(learn::routes())
        .merge(login::routes())
        .merge(people::routes())
        .merge(waas::routes())
}

fn internal(message: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        page(None, "Error", "", html! { p class="errors" { (message) } }),
    )
        .into_response()
}

/// 403, as a page saying why.
pub fn refused(message: impl Into<String>) -> Response {
    let message = message.into();
    (
        StatusCode::FORBIDDEN,
        page(
            None,
            "Refused",
            "",
            html! { p class="errors" id="errors" { (message) } },
        ),
    )
        .into_response()
}

/// A form whose CSRF token is not the session's: sent by another site, or from a page of a
/// session that ended. Nothing was changed.
pub(super) fn csrf_refused() -> Response {
    refused(
        "This form is not from your current session (CSRF token mismatch); nothing was changed. \
         Reload the page and try again.",
    )
}

/// Whether `who` may change the policy (the pages show them its forms).
fn may_edit(who: &Caller) -> bool {
    EDITORS.contains(&who.role)
}

// ---- Policy ----

#[derive(Deserialize)]
struct Saved {
    saved: Option<u64>,
    changed: Option<u8>,
}

async fn policy_page(
    Person(caller): Person,
    State(state): State<Arc<AppState>>,
    Query(saved): Query<Saved>,
) -> Markup {
    let current = state.policy();
    let notice = saved_notice(saved.saved, saved.changed);
    let draft = Draft {
        text: &current.document,
        revision: None,
    };
    policy_view(&state, &caller, notice, draft, &None)
}

/// What the policy page's editor holds: a text, and the revision it was made from, which saving
/// it expects in force (`None`: the revision in force now).
struct Draft<'a> {
    text: &'a str,
    revision: Option<u64>,
}

/// Where a change of the policy from a page leads: the policy page saying what happened.
fn saved(replaced: Replaced) -> Response {
    let to = match replaced {
        Replaced::New(p) => format!("/policy?saved={}", p.revision),
        Replaced::Same(p) => format!("/policy?saved={}&changed=0", p.revision),
    };
    Redirect::to(&to).into_response()
}

/// What a save redirected with (`?saved=REVISION`, `&changed=0` when nothing changed) says.
fn saved_notice(saved: Option<u64>, changed: Option<u8>) -> Markup {
    match (saved, changed) {
        (Some(r), Some(0)) => html! {
            p class="ok" id="saved" {
                "No change: that document is revision " (r) ", already in force."
            }
        },
        (Some(r), _) => html! {
            p class="ok" id="saved" {
                "Saved revision " (r) ". Defenders apply it as they receive it."
            }
        },
        _ => html! {},
    }
}

/// The page: revision, rules table (with a switch per rule for an editor), "which rule
/// applies" (answering `asked`), and the editor holding `draft` with its revision, so that a
/// save made after another change is refused.
fn policy_view(
    state: &AppState,
    caller: &Caller,
    notice: Markup,
    draft: Draft,
    asked: &history::Asked,
) -> Markup {
    let current = state.policy();
    let based_on = draft.revision.unwrap_or(current.revision);
    let switch =
        |index, rule: &schema::Rule| history::switch(caller, current.revision, index, rule);
    let rules = match serde_json::from_str::<Document>(&current.document) {
        Ok(doc) => rules_table(&doc, &switch),
        Err(e) => html! { p class="errors" { "stored policy unreadable: " (e) } },
    };
    page(
        Some(caller),
        "App-Embedded policy",
        "Policy",
        html! {
            (notice)
            p {
                "Revision " strong id="revision" { (current.revision) } ", saved "
                (current.updated) ". The first rule that is not disabled and whose collections \
                match a container is the one in force for it. Custom rules live in "
                a href=(custom::LIBRARY) id="library" { "the custom rules library" } "; every \
                revision is in "
                a href=(history::HISTORY) id="history" { "the history" } ". "
                a href=(learn::LEARN) id="learn" { "Learn a rule" } " from what containers were \
                seen doing."
            }
            (rules)
            (history::resolver(&current.document, asked))
            @if !may_edit(caller) {
                h2 { "Document" }
                textarea id="document" readonly spellcheck="false" { (draft.text) }
                p class="muted" { "Your role (" (caller.role.as_str()) ") reads the policy." }
            } @else {
            h2 { "Edit" }
            form method="post" action="/policy" {
                (caller.csrf_input())
                input type="hidden" name="revision" value=(based_on);
                textarea name="document" id="document" spellcheck="false" { (draft.text) }
                p {
                    button id="save" { "Save" } " "
                    span class="muted" {
                        "Validated as " code { "defender policy check" } " does; an invalid \
                         document changes nothing."
                    }
                }
            }
            }
        },
    )
}

/// Entries as code, or a dash for none.
fn list(entries: &[String]) -> Markup {
    html! {
        @if entries.is_empty() {
            "—"
        }
        @for (i, entry) in entries.iter().enumerate() {
            @if i > 0 { ", " }
            code { (entry) }
        }
    }
}

fn effect(e: Effect) -> Markup {
    html! { span class={ "effect-" (e.as_str()) } { (e.as_str()) } }
}

fn custom_effect(e: CustomEffect) -> Markup {
    html! { span class={ "effect-" (e.as_str()) } { (e.as_str()) } }
}

/// A rule's custom rule references in order, each linked to its row of the library.
fn references(doc: &Document, rule: &schema::Rule) -> Markup {
    html! {
        @if rule.custom_rules.is_empty() {
            "—"
        }
        @for (i, reference) in rule.custom_rules.iter().enumerate() {
            @if i > 0 { br; }
            @match doc.custom_rules.iter().position(|c| c.name == reference.name) {
                Some(index) => {
                    a href=(custom::row_link(index)) { (reference.name) }
                }
                None => { (reference.name) }
            }
            ": " (custom_effect(reference.effect))
        }
    }
}

/// An allow and a deny list, named `{name}allow` and `{name}deny`; nothing when both are empty.
fn pair(name: &str, allow: &[String], deny: &[String]) -> Markup {
    html! {
        @if !allow.is_empty() || !deny.is_empty() {
            br; (name) "allow: " (list(allow))
            br; (name) "deny: " (list(deny))
        }
    }
}

fn section(s: Option<&schema::Section>) -> Markup {
    match s {
        Some(s) => html! { (effect(s.effect)) (pair("", &s.allow, &s.deny)) },
        None => effect(Effect::Disable),
    }
}

fn network(n: Option<&schema::Network>) -> Markup {
    match n {
        Some(n) => html! {
            (effect(n.effect))
            (pair("outbound ", &n.outbound.allow, &n.outbound.deny))
            (pair("ports ", &n.outbound_ports.allow, &n.outbound_ports.deny))
            (pair("listening ", &n.listening_ports.allow, &n.listening_ports.deny))
        },
        None => effect(Effect::Disable),
    }
}

/// A collection: its entries, or `*` when the rule does not narrow it.
fn scope(entries: Option<&Vec<String>>) -> Markup {
    match entries {
        Some(entries) => list(entries),
        None => html! { code { "*" } },
    }
}

/// The rules in order; `switch` makes each rule's enable switch (nothing for a reader).
fn rules_table(doc: &Document, switch: &dyn Fn(usize, &schema::Rule) -> Markup) -> Markup {
    html! {
        table id="rules" {
            tr {
                th { "#" } th { "rule" } th { "scope" } th { "custom rules" }
                th { "processes" } th { "network" } th { "dns" } th {}
            }
            @for (i, rule) in doc.rules.iter().enumerate() {
                @let collections = rule.collections.as_ref();
                tr id={ "rule-" (i) } {
                    td { (i) }
                    td {
                        (rule.name)
                        @if rule.disabled { " " span class="muted" { "(disabled)" } }
                    }
                    td {
                        "images: " (scope(collections.and_then(|c| c.images.as_ref())))
                        br;
                        "containers: " (scope(collections.and_then(|c| c.containers.as_ref())))
                    }
                    td class="references" { (references(doc, rule)) }
                    td { (section(rule.processes.as_ref())) }
                    td { (network(rule.network.as_ref())) }
                    td { (section(rule.dns.as_ref())) }
                    td { (switch(i, rule)) }
                }
            }
        }
        @if doc.rules.is_empty() {
            p class="muted" { "No rules: nothing is enforced anywhere." }
        }
    }
}

#[derive(Deserialize)]
struct PolicyForm {
    document: String,
    /// The revision the editor was opened at (absent from a page of an older console: then the
    /// save is unconditional, as before).
    revision: Option<u64>,
    #[serde(default)]
    csrf: String,
}

async fn save_policy(
    Editor(caller): Editor,
    State(state): State<Arc<AppState>>,
    Form(form): Form<PolicyForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    let then = "Your text is kept below: saving it again replaces the revision in force with it.";
    history::save(
        &state,
        &caller,
        &form.document,
        form.revision,
        &form.document,
        then,
    )
    .await
}

/// The notice of an invalid document: every problem, the script excerpt under a script error.
fn invalid_notice(e: &PolicyError, text: &str) -> Markup {
    // The scripts as typed, for the excerpt under a script error.
    let typed = serde_json::from_str::<serde_json::Value>(text).ok();
    let script_of = |index: usize| {
        let script = typed
            .as_ref()?
            .get("customRules")?
            .get(index)?
            .get("script")?;
        script.as_str().map(str::to_owned)
    };
    html! {
        div class="errors" id="errors" {
            p { "Not saved: the document is invalid. The policy in force is unchanged." }
            (problems::list(e, script_of))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a workload may put in a command line, a domain, a container's or a rule's name.
    pub(super) const HOSTILE: &str = r#"</td><script>alert("x")</script> & 'q' a?b=c#d +%20"#;

    /// [`HOSTILE`] as maud writes it in text.
    pub(super) const SHOWN: &str =
        r#"&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'q' a?b=c#d +%20"#;

    /// An attribute's value as the browser reads it (maud escapes `&`, `<`, `>` and `"`).
    fn attribute(escaped: &str) -> String {
        escaped
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    /// Every link of the page, as the browser follows it.
    pub(super) fn links(page: &str) -> Vec<String> {
        page.split("href=\"")
            .skip(1)
            .map(|rest| attribute(&rest[..rest.find('"').unwrap()]))
            .collect()
    }

    /// A custom rule's name, as the policy page lists it: shown as text (the audits page's
    /// links to it are `audits`' tests).
    #[test]
    fn hostile_custom_rule_names_are_escaped() {
        let name = format!("nc {HOSTILE}");
        let doc: Document = serde_json::from_value(serde_json::json!({
            "customRules": [{"name": name, "type": "dns", "script": "dns.name = \"x\""}],
            "rules": [{"name": "web", "customRules": [{"name": name, "effect": "alert"}]}]
        }))
        .unwrap();
        let table = rules_table(&doc, &|_, _| html! {}).into_string();
        assert!(!table.contains("<script"), "{table}");
        assert!(
            table.contains(&format!(
                r#"<a href="/policy/custom-rules#custom-0">nc {SHOWN}</a>: <span class="effect-alert">"#
            )),
            "{table}"
        );
    }
}
