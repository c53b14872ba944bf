//! The pages for a person: the policy (rules in order with scope, custom rules and effects, edited
//! as JSON with the validation errors shown inline), its custom rules library (`custom`), its
//! history (`history`) and the learning page (`learn`: a draft rule from what containers did), the
//! WAAS policy (`waas`), the audits (newest first, filters, live refresh), the defenders. Server-rendered HTML from maud
//! templates, which escape every value they show (command lines, domains, container names: the
//! workloads choose them; scripts hold quotes and `<`); query strings are encoded with
//! `form_urlencoded`. The only script refreshes the audit rows.
//!
//! The pages need a person logged in (`login`): what each sees and may change follows their
//! role; every form carries the session's CSRF token.

mod custom;
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
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use crate::api::{self, AuditFilter};
use crate::app::{AppState, Replaced};
use crate::auth::{Caller, EDITORS, Editor, Person};
use crate::events::{Effect as AuditEffect, Event, Kind};
use html::page;

/// Rows on the audits page when no limit is asked for.
const PAGE_ROWS: u32 = 200;

/// Where the audits page lives, and the links that filter it.
const AUDITS: &str = "/audits";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to(AUDITS) }))
        .route("/policy", get(policy_page).post(save_policy))
        .route(AUDITS, get(audits_page))
        .route("/audits/rows", get(audit_rows))
        .route("/defenders", get(defenders_page))
        .merge(custom::routes())
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

// ---- Audits ----

/// The live refresh: every 2 s, the rows for the page's own query string. A constant: nothing
/// of an event or a filter is ever written into it.
const LIVE_REFRESH: &str = "
setInterval(async () => {
  if (!document.getElementById('live').checked) return;
  const r = await fetch('/audits/rows' + location.search, {credentials: 'same-origin'});
  if (r.ok) document.getElementById('rows').innerHTML = await r.text();
}, 2000);
";

fn options<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, chosen: Option<&str>) -> Markup {
    html! {
        option value="" { "any" }
        @for v in all {
            @let n = name(*v);
            option value=(n) selected[chosen == Some(n)] { (n) }
        }
    }
}

/// A text filter: its label, and its input holding the value in force.
fn text_filter(name: &str, value: &Option<String>, hint: &str) -> Markup {
    html! {
        label {
            (name) " "
            input name=(name) id={ "filter-" (name) } value=(value.as_deref().unwrap_or_default())
                placeholder=(hint);
        }
    }
}

async fn audits_page(
    Person(who): Person,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<AuditFilter>,
) -> Response {
    let rows = match rows(&state, &filter).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    page(
        Some(&who),
        "App-Embedded audits",
        "Audits",
        audits_body(&filter, rows),
    )
    .into_response()
}

/// The audits page under its frame: the filters in force, the CSV link for them, the rows.
fn audits_body(filter: &AuditFilter, rows: Markup) -> Markup {
    html! {
        form class="filters" method="get" action=(AUDITS) {
            (text_filter("container", &filter.container, "any"))
            (text_filter("image", &filter.image, "any"))
            label {
                "type "
                select name="type" id="filter-type" {
                    (options(&Kind::ALL, Kind::as_str, filter.kind.as_deref()))
                }
            }
            label {
                "effect "
                select name="effect" id="filter-effect" {
                    (options(&AuditEffect::ALL, AuditEffect::as_str, filter.effect.as_deref()))
                }
            }
            (text_filter("rule", &filter.rule, "any"))
            (text_filter("customRule", &filter.custom_rule, "any"))
            (text_filter("cluster", &filter.cluster, "any"))
            (text_filter("family", &filter.family, "any"))
            (text_filter("service", &filter.service, "any"))
            (text_filter("since", &filter.since, "2026-11-29T10:00:00Z"))
            (text_filter("until", &filter.until, "2026-11-29T11:00:00Z"))
            button id="apply" { "Filter" }
        }
        p {
            label { input type="checkbox" id="live" checked; " live refresh" }
            " · "
            a href={ "/api/v1/audits/runtime/app-embedded/download" (query_string(filter)) } {
                "download CSV"
            }
        }
        table {
            thead {
                tr {
                    th { "time" } th { "type" } th { "effect" } th { "container" } th { "image" }
                    th { "rule" } th { "custom rule" } th { "message" } th { "count" }
                    th { "cluster" } th { "family" } th { "service" } th { "source" }
                }
            }
            tbody id="rows" { (rows) }
        }
        script { (PreEscaped(LIVE_REFRESH)) }
    }
}

/// `?name=value&...` for the filters given (empty when none), encoded as a form sends them: what
/// axum's `Query` reads back into the same filter, whatever characters the values hold.
fn query_string(filter: &AuditFilter) -> String {
    let given = serde_json::to_value(filter).unwrap_or_default();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in given.as_object().into_iter().flatten() {
        match value {
            serde_json::Value::String(s) if !s.is_empty() => {
                query.append_pair(name, s);
            }
            serde_json::Value::Number(n) => {
                query.append_pair(name, &n.to_string());
            }
            _ => {}
        }
    }
    match query.finish() {
        q if q.is_empty() => q,
        q => format!("?{q}"),
    }
}

/// The audits page with `filter` narrowed by `narrow`, from its first row.
fn narrowed(filter: &AuditFilter, narrow: impl FnOnce(&mut AuditFilter)) -> String {
    let mut filter = filter.clone();
    narrow(&mut filter);
    filter.offset = None;
    format!("{AUDITS}{}", query_string(&filter))
}

/// The table rows for `filter`, or the page to show instead (a storage error).
async fn rows(state: &AppState, filter: &AuditFilter) -> Result<Markup, Response> {
    let query = match filter.query(PAGE_ROWS) {
        Ok(q) => q,
        Err(e) => {
            return Ok(html! {
                tr { td colspan=(TABLE_COLUMNS) class="errors" id="errors" { (e) } }
            });
        }
    };
    let events = state
        .store(move |s| s.audits(&query))
        .await
        .map_err(|e| internal(&e.message))?;
    Ok(html! {
        @if events.is_empty() {
            tr { td colspan=(TABLE_COLUMNS) class="muted" { "No audit events." } }
        }
        @for e in &events {
            (row(&e.event, e.source.as_deref(), filter))
        }
    })
}

/// The columns of the audits table.
const TABLE_COLUMNS: usize = 13;

/// One event; its container, image, rule, custom rule and ECS identity link to the page filtered
/// by them as well. The ECS identity comes last but for the token that delivered it (`source`),
/// so that the columns before keep their place.
fn row(e: &Event, source: Option<&str>, filter: &AuditFilter) -> Markup {
    let kind = e.kind.as_str();
    let effect = e.effect.as_str();
    html! {
        tr class="audit" data-type=(kind) {
            td { (e.time) }
            td { (kind) }
            td class={ "effect-" (effect) } { (effect) }
            td {
                a href=(narrowed(filter, |f| f.container = Some(e.container.clone()))) {
                    (e.container)
                }
            }
            td {
                a href=(narrowed(filter, |f| f.image = Some(e.image.clone()))) { (e.image) }
            }
            td {
                @if let Some(rule) = &e.rule {
                    a href=(narrowed(filter, |f| f.rule = Some(rule.clone()))) { (rule) }
                }
            }
            td class="custom-rule" {
                @if let Some(custom) = &e.custom_rule {
                    a href=(narrowed(filter, |f| f.custom_rule = Some(custom.clone()))) {
                        (custom)
                    }
                }
            }
            td { (e.message) }
            td { (e.count) }
            td class="cluster" {
                @if let Some(cluster) = &e.cluster {
                    a href=(narrowed(filter, |f| f.cluster = Some(cluster.clone()))) { (cluster) }
                }
            }
            td class="family" {
                @if let Some(family) = &e.family {
                    a href=(narrowed(filter, |f| f.family = Some(family.clone()))) { (family) }
                }
            }
            td class="service" {
                @if let Some(service) = &e.service {
                    a href=(narrowed(filter, |f| f.service = Some(service.clone()))) { (service) }
                }
            }
            td class="source" { (source.unwrap_or_default()) }
        }
    }
}

async fn audit_rows(
    _: Person,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<AuditFilter>,
) -> Response {
    match rows(&state, &filter).await {
        Ok(r) => r.into_response(),
        Err(r) => r,
    }
}

// ---- Defenders ----

async fn defenders_page(Person(who): Person, State(state): State<Arc<AppState>>) -> Response {
    let defenders = match api::defenders(&state).await {
        Ok(d) => d,
        Err(e) => return internal(&e.message),
    };
    let revision = state.policy().revision;
    let body = html! {
        p {
            "Policy revision in force: " strong { (revision) } ". A defender is connected while \
             its heartbeats arrive (every 5 s)."
        }
        table id="defenders" {
            tr {
                th { "container" } th { "image" } th { "task" } th { "cluster" } th { "family" }
                th { "service" } th { "revision" }
                th { "version" } th { "last seen" } th { "state" }
            }
            @for d in &defenders {
                tr {
                    td { (d.beat.container) }
                    td { (d.beat.image) }
                    td { (d.beat.task.as_deref().unwrap_or("—")) }
                    td { (d.beat.cluster.as_deref().unwrap_or("—")) }
                    td { (d.beat.family.as_deref().unwrap_or("—")) }
                    td { (d.beat.service.as_deref().unwrap_or("—")) }
                    td {
                        @match (&d.beat.revision, d.current) {
                            (Some(r), true) => { (r) }
                            (Some(r), false) => {
                                span class="effect-alert" { (r) " (not current)" }
                            }
                            (None, _) => { span class="muted" { "local policy" } }
                        }
                    }
                    td { (d.beat.version) }
                    td { (d.last_seen) }
                    td {
                        @if d.connected { "connected" } @else { span class="muted" { "gone" } }
                    }
                }
            }
        }
        @if defenders.is_empty() {
            p class="muted" { "No defender has reported yet." }
        }
    };
    page(Some(&who), "Defenders", "Defenders", body).into_response()
}

#[cfg(test)]
mod tests {
    use defender::audit::{Activity, ActivityViolation, ProcessViolation, Scope};
    use defender::policy::{self, Attack};

    use super::*;

    /// What a workload may put in a command line, a domain, a container's or a rule's name.
    pub(super) const HOSTILE: &str = r#"</td><script>alert("x")</script> & 'q' a?b=c#d +%20"#;

    /// [`HOSTILE`] as maud writes it in text.
    pub(super) const SHOWN: &str =
        r#"&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'q' a?b=c#d +%20"#;

    /// The events of a hostile workload, as its defender builds them.
    fn hostile_events() -> Vec<Event> {
        let scope = Scope {
            container: format!("web {HOSTILE}"),
            image: format!("img {HOSTILE}"),
            task: None,
            cluster: Some(format!("cluster {HOSTILE}")),
            family: Some(format!("family {HOSTILE}")),
            service: Some(format!("service {HOSTILE}")),
        };
        let rule = format!("rule {HOSTILE}");
        let process = Event::process(
            &scope,
            &ProcessViolation {
                rule: &rule,
                effect: policy::Effect::Prevent,
                cause: Attack::ExplicitlyDenied.into(),
                pid: 7,
                process: "/bin/sh",
                parent: "/bin/sh",
                cmdline: &format!("sh -c {HOSTILE}"),
            },
        );
        let dns = Event::activity(
            &scope,
            &ActivityViolation {
                rule: &rule,
                effect: policy::Effect::Alert,
                cause: Attack::NotAllowed.into(),
                pid: 7,
                process: "/usr/bin/curl",
                activity: Activity::Dns {
                    domain: format!("{HOSTILE}.example"),
                },
            },
        );
        vec![process, dns]
    }

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

    /// The filter a link's query string gives, as axum's `Query` reads it.
    fn filter_of(link: &str) -> serde_json::Value {
        let uri: axum::http::Uri = link.parse().unwrap_or_else(|e| panic!("{link}: {e}"));
        serde_json::to_value(Query::<AuditFilter>::try_from_uri(&uri).unwrap().0).unwrap()
    }

    #[test]
    fn hostile_strings_are_shown_escaped_and_filter_links_round_trip_them() {
        let filter = AuditFilter {
            image: Some(format!("img {HOSTILE}")),
            kind: Some("process".into()),
            ..AuditFilter::default()
        };
        let events = hostile_events();
        let rows = html! { @for e in &events { (row(e, Some(HOSTILE), &filter)) } };
        let page = page(
            None,
            "App-Embedded audits",
            "Audits",
            audits_body(&filter, rows),
        )
        .into_string();

        // The only script is the page's own; every hostile string is text.
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        assert!(!page.contains("</td><script>"), "{page}");
        for text in [
            format!("Full command: sh -c {SHOWN}"),
            format!("DNS resolution of domain name {SHOWN}.example"),
            format!(">web {SHOWN}</a>"),
            format!(">rule {SHOWN}</a>"),
            format!(">service {SHOWN}</a>"),
            format!(r#"<td class="source">{SHOWN}</td>"#),
        ] {
            assert!(page.contains(&text), "{text} is not in {page}");
        }
        // The filter inputs hold the values in force, as attributes.
        assert!(
            page.contains(&format!(r#"id="filter-image" value="img {SHOWN}""#)),
            "{page}"
        );

        // Each link gives back exactly the filter it was made from.
        let links = links(&page);
        let download = links
            .iter()
            .find(|l| l.starts_with("/api/v1/audits/runtime/app-embedded/download?"))
            .unwrap();
        assert_eq!(filter_of(download), serde_json::to_value(&filter).unwrap());
        let narrowing: Vec<serde_json::Value> = links
            .iter()
            .filter(|l| l.starts_with("/audits?"))
            .map(|l| filter_of(l))
            .collect();
        let expect = |narrow: fn(&mut AuditFilter)| {
            let mut f = filter.clone();
            narrow(&mut f);
            serde_json::to_value(f).unwrap()
        };
        let by_container = expect(|f| f.container = Some(format!("web {HOSTILE}")));
        let by_rule = expect(|f| f.rule = Some(format!("rule {HOSTILE}")));
        let by_cluster = expect(|f| f.cluster = Some(format!("cluster {HOSTILE}")));
        let by_family = expect(|f| f.family = Some(format!("family {HOSTILE}")));
        let by_service = expect(|f| f.service = Some(format!("service {HOSTILE}")));
        // Narrowed by the image in force already: the same filter.
        let by_image = expect(|_| {});
        assert_eq!(narrowing.len(), 2 * 6, "{links:?}");
        for want in [
            by_container,
            by_rule,
            by_image,
            by_cluster,
            by_family,
            by_service,
        ] {
            assert_eq!(
                narrowing.iter().filter(|f| **f == want).count(),
                2,
                "{want} in {narrowing:?}"
            );
        }
    }

    #[test]
    fn query_strings_encode_what_forms_do() {
        assert_eq!(query_string(&AuditFilter::default()), "");
        let filter = AuditFilter {
            container: Some("a b&c=d".into()),
            rule: Some(String::new()),
            limit: Some(5),
            ..AuditFilter::default()
        };
        assert_eq!(query_string(&filter), "?container=a+b%26c%3Dd&limit=5");
    }

    /// A custom rule's name, as a defender reports it in an audit and the policy page lists it:
    /// shown as text, and its filter link gives back exactly that name.
    #[test]
    fn hostile_custom_rule_names_are_escaped_and_filter_exactly() {
        let name = format!("nc {HOSTILE}");
        let mut event = hostile_events().remove(0);
        event.attack = Some("customRule".into());
        event.custom_rule = Some(name.clone());
        let filter = AuditFilter::default();
        let rows = row(&event, None, &filter).into_string();
        assert!(rows.contains(&format!(">nc {SHOWN}</a>")), "{rows}");
        let by_custom: Vec<serde_json::Value> = links(&rows)
            .iter()
            .map(|l| filter_of(l))
            .filter(|f| f.get("customRule").is_some())
            .collect();
        assert_eq!(by_custom, [serde_json::json!({ "customRule": name })]);

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
