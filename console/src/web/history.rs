//! The policy's lifecycle on the pages: the history (every revision with its time and author, a
//! unified diff between any two, restore), the policy page's per-rule switch and "which rule
//! applies" form, and the answer to a change made from a revision no longer in force (412, with
//! a link to what changed). Every change carries the revision it was shown at.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use defender::policy::Identity;
use defender::policy::schema::{self, Document};
use maud::{Markup, html};
use serde::Deserialize;
use similar::{ChangeTag, TextDiff};

use super::html::page;
use super::{Draft, internal, invalid_notice, policy_view, saved};
use crate::app::{ApiError, AppState, Expect, Refused, ReplaceError};
use crate::auth::{Caller, EDITORS, Editor, Person};
use crate::documents::Doc;
use crate::lifecycle::{self, author};
use crate::store::StoredPolicy;

pub const HISTORY: &str = "/policy/history";
/// The "which rule applies" form's answer: the policy page with it.
const RESOLVE: &str = "/policy/resolve";
/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(HISTORY, get(history_page))
        .route("/policy/history/{n}/restore", post(restore))
        .route("/policy/rules/{i}/switch", post(switch_rule))
        .route(RESOLVE, get(resolve_page))
}

/// What a person asked "which rule applies" for: the container, or why the question is bad.
pub type Asked = Option<Result<Identity, String>>;

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        page(
            None,
            "Error",
            "Policy",
            html! { p class="errors" id="errors" { (message) } },
        ),
    )
        .into_response()
}

fn api_error_page(e: ApiError) -> Response {
    error_page(e.status, &e.message)
}

/// The notice of a change refused because the policy changed since the page was shown at
/// revision `opened`, with the link to what changed; `then` says what the page below holds.
pub fn stale_notice(opened: u64, current: &StoredPolicy, then: &str) -> Markup {
    html! {
        div class="errors" id="stale" {
            p {
                "Not saved: the policy changed since you opened it (revision " (current.revision)
                " by " (author(&current.by)) "). Nothing was changed. "
                a id="stale-diff" href=(diff_link(opened, current.revision)) { "See what changed" }
                ". " (then)
            }
        }
    }
}

fn diff_link(from: u64, to: u64) -> String {
    format!("{HISTORY}?from={from}&to={to}#diff")
}

/// The answer to a page's change made from revision `opened` that was refused, showing `text`
/// in the editor: 412 for a stale revision (the editor then carries the revision in force, which
/// the notice names), 400 with the problems of an invalid document (the editor still carries
/// `opened`, so that saving it corrected is refused if it is stale).
pub fn refused_page(
    state: &AppState,
    caller: &Caller,
    refused: Refused,
    opened: Option<u64>,
    text: &str,
    then: &str,
) -> Response {
    match refused {
        Refused::Stale(current) => {
            let notice = stale_notice(opened.unwrap_or_default(), &current, then);
            let draft = Draft {
                text,
                revision: None,
            };
            (
                StatusCode::PRECONDITION_FAILED,
                policy_view(state, caller, notice, draft, &None),
            )
                .into_response()
        }
        Refused::Failed(ReplaceError::Invalid(e)) => {
            let draft = Draft {
                text,
                revision: opened,
            };
            (
                StatusCode::BAD_REQUEST,
                policy_view(state, caller, invalid_notice(&e, text), draft, &None),
            )
                .into_response()
        }
        Refused::Failed(ReplaceError::Store(e)) => internal(&e.message),
    }
}

/// Saves `text` if the revision in force is still `opened` (the one the page showed; any when
/// `None`, from a page of an older console): the policy page saying what happened, or the
/// refusal, showing `shown` in the editor and saying so with `then`.
pub async fn save(
    state: &AppState,
    caller: &Caller,
    text: &str,
    opened: Option<u64>,
    shown: &str,
    then: &str,
) -> Response {
    let expect = opened.map_or(Expect::Any, |r| Expect::OneOf(vec![r]));
    match state.replace_policy_if(text, &caller.name, &expect).await {
        Ok(replaced) => saved(replaced),
        Err(refused) => refused_page(state, caller, refused, opened, shown, then),
    }
}

/// The refusal of a form whose CSRF token is not the session's, if it is not.
fn forged(caller: &Caller, csrf: &str) -> Option<Response> {
    (!caller.csrf_ok(csrf)).then(super::csrf_refused)
}

// ---- History ----

#[derive(Deserialize)]
struct Compare {
    from: Option<u64>,
    to: Option<u64>,
}

/// One line of a unified diff.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// `@@ -1,3 +1,4 @@`: where the lines below are in each revision.
    Hunk(String),
    Context(String),
    Added(String),
    Removed(String),
}

/// The lines that differ between `old` and `new`, with [`CONTEXT`] unchanged lines around them.
fn unified(old: &str, new: &str) -> Vec<Line> {
    let diff = TextDiff::from_lines(old, new);
    let mut unified = diff.unified_diff();
    unified.context_radius(CONTEXT);
    let mut lines = Vec::new();
    for hunk in unified.iter_hunks() {
        lines.push(Line::Hunk(hunk.header().to_string()));
        for change in hunk.iter_changes() {
            let text = change.value().trim_end_matches('\n').to_owned();
            lines.push(match change.tag() {
                ChangeTag::Equal => Line::Context(text),
                ChangeTag::Insert => Line::Added(text),
                ChangeTag::Delete => Line::Removed(text),
            });
        }
    }
    lines
}

fn diff_view(old: &StoredPolicy, new: &StoredPolicy) -> Markup {
    let lines = unified(&old.document, &new.document);
    html! {
        h2 id="diff-title" { "Revision " (old.revision) " → revision " (new.revision) }
        @if lines.is_empty() {
            p class="muted" id="no-difference" { "The two revisions are the same document." }
        } @else {
            pre class="diff" id="diff" {
                @for line in &lines {
                    @match line {
                        Line::Hunk(h) => { span class="hunk" { (h) } "\n" }
                        Line::Context(t) => { " " (t) "\n" }
                        Line::Added(t) => { ins { "+" (t) } "\n" }
                        Line::Removed(t) => { del { "-" (t) } "\n" }
                    }
                }
            }
        }
    }
}

async fn history_page(
    Person(caller): Person,
    State(state): State<Arc<AppState>>,
    Query(compare): Query<Compare>,
) -> Response {
    let revisions = match state.store(|s| s.revisions(Doc::Runtime)).await {
        Ok(r) => r,
        Err(e) => return internal(&e.message),
    };
    let diff = match (compare.from, compare.to) {
        (Some(from), Some(to)) => {
            let (old, new) = match (
                lifecycle::revision(&state, Doc::Runtime, from).await,
                lifecycle::revision(&state, Doc::Runtime, to).await,
            ) {
                (Ok(old), Ok(new)) => (old, new),
                (Err(e), _) | (_, Err(e)) => return api_error_page(e),
            };
            diff_view(&old, &new)
        }
        _ => html! {},
    };
    let current = state.policy().revision;
    let newest = revisions.first().map(|r| r.revision);
    let from = compare
        .from
        .or(revisions.get(1).map(|r| r.revision))
        .or(newest);
    let to = compare.to.or(newest);
    let editor = EDITORS.contains(&caller.role);
    let body = html! {
        p {
            "Every revision of the policy, newest first. Pick two and compare them; restoring one \
             saves its document as a new revision."
        }
        form id="compare" method="get" action=(HISTORY) {
            button id="compare-button" { "Compare" }
        }
        table id="revisions" {
            tr {
                th { "revision" } th { "saved" } th { "by" } th { "rules" } th { "from" }
                th { "to" } th {}
            }
            @for r in &revisions {
                tr id={ "revision-" (r.revision) } {
                    td { (r.revision) }
                    td { (r.time) }
                    td class="by" { (author(&r.by)) }
                    td { (r.rules) }
                    td {
                        input type="radio" name="from" form="compare" value=(r.revision)
                            id={ "from-" (r.revision) } checked[from == Some(r.revision)];
                    }
                    td {
                        input type="radio" name="to" form="compare" value=(r.revision)
                            id={ "to-" (r.revision) } checked[to == Some(r.revision)];
                    }
                    td {
                        @if r.revision == current {
                            span class="muted" { "in force" }
                        } @else if editor {
                            form method="post" action={ (HISTORY) "/" (r.revision) "/restore" } {
                                (caller.csrf_input())
                                input type="hidden" name="revision" value=(current);
                                button id={ "restore-" (r.revision) } { "Restore" }
                            }
                        }
                    }
                }
            }
        }
        (diff)
    };
    page(Some(&caller), "Policy history", "Policy", body).into_response()
}

/// A change from a page: its CSRF token and the revision in force when the page was shown.
#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    csrf: String,
    revision: u64,
}

async fn restore(
    Editor(caller): Editor,
    State(state): State<Arc<AppState>>,
    Path(n): Path<String>,
    Form(form): Form<Change>,
) -> Response {
    if let Some(refusal) = forged(&caller, &form.csrf) {
        return refusal;
    }
    let n = match lifecycle::revision_number(&n) {
        Ok(n) => n,
        Err(e) => return api_error_page(e),
    };
    let old = match lifecycle::revision(&state, Doc::Runtime, n).await {
        Ok(old) => old,
        Err(e) => return api_error_page(e),
    };
    let then = format!("The editor below holds revision {n}'s document.");
    save(
        &state,
        &caller,
        &old.document,
        Some(form.revision),
        &old.document,
        &then,
    )
    .await
}

// ---- The policy page's switch and resolver ----

/// A rule's enable switch: a form that sets its `disabled` to the opposite, made from revision
/// `revision`. Nothing for a person who may not edit.
pub fn switch(caller: &Caller, revision: u64, index: usize, rule: &schema::Rule) -> Markup {
    if !EDITORS.contains(&caller.role) {
        return html! {};
    }
    html! {
        form method="post" action={ "/policy/rules/" (index) "/switch" } class="switch" {
            (caller.csrf_input())
            input type="hidden" name="revision" value=(revision);
            input type="hidden" name="disabled" value=(!rule.disabled);
            button id={ "switch-" (index) } {
                @if rule.disabled { "Enable" } @else { "Disable" }
            }
        }
    }
}

#[derive(Deserialize)]
struct SwitchForm {
    #[serde(default)]
    csrf: String,
    revision: u64,
    disabled: bool,
}

/// The document in force with rule `index`'s `disabled` set, or `None` when it has no such rule.
fn switched(document: &str, index: usize, disabled: bool) -> Result<Option<String>, String> {
    let mut doc: Document =
        serde_json::from_str(document).map_err(|e| format!("stored policy: {e}"))?;
    let Some(rule) = doc.rules.get_mut(index) else {
        return Ok(None);
    };
    rule.disabled = disabled;
    serde_json::to_string_pretty(&doc)
        .map(Some)
        .map_err(|e| e.to_string())
}

async fn switch_rule(
    Editor(caller): Editor,
    State(state): State<Arc<AppState>>,
    Path(index): Path<usize>,
    Form(form): Form<SwitchForm>,
) -> Response {
    if let Some(refusal) = forged(&caller, &form.csrf) {
        return refusal;
    }
    let current = state.policy();
    let text = match switched(&current.document, index, form.disabled) {
        Ok(Some(text)) => text,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, &format!("no rule {index}")),
        Err(e) => return internal(&e),
    };
    let then = "The rules below are the ones in force.";
    save(
        &state,
        &caller,
        &text,
        Some(form.revision),
        &current.document,
        then,
    )
    .await
}

/// The "which rule applies" form, holding what was asked, and its answer from `document`.
pub fn resolver(document: &str, asked: &Asked) -> Markup {
    // What was asked, in the order of the API's parameters, which name the form's fields.
    let values: [&str; 5] = match asked {
        Some(Ok(w)) => [
            &w.container,
            &w.image,
            w.cluster.as_deref().unwrap_or_default(),
            w.family.as_deref().unwrap_or_default(),
            w.service.as_deref().unwrap_or_default(),
        ],
        _ => [""; 5],
    };
    let answer = match asked {
        None => html! {},
        Some(Err(e)) => html! { p class="errors" id="resolved" { (e) } },
        Some(Ok(who)) => match lifecycle::resolve(document, who) {
            Ok(Some((index, rule))) => html! {
                p class="ok" id="resolved" {
                    "Rule " a href={ "#rule-" (index) } { (index) } ", " strong { (rule.name) }
                    ", applies."
                }
            },
            Ok(None) => html! {
                p class="ok" id="resolved" { "No rule applies: nothing is enforced there." }
            },
            Err(e) => html! { p class="errors" id="resolved" { (e) } },
        },
    };
    html! {
        h2 { "Which rule applies" }
        form class="filters" method="get" action=(RESOLVE) id="resolve" {
            @for (name, value) in lifecycle::RESOLVE_PARAMETERS.iter().zip(values) {
                label {
                    (name) " "
                    input name=(name) id={ "resolve-" (name) } value=(value);
                }
            }
            button id="resolve-button" { "Find the rule" }
        }
        (answer)
    }
}

async fn resolve_page(
    Person(caller): Person,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let asked = Some(lifecycle::identity(query.as_deref()));
    let current = state.policy();
    let draft = Draft {
        text: &current.document,
        revision: None,
    };
    policy_view(&state, &caller, html! {}, draft, &asked).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diffs_mark_lines_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\ni\nj\n";
        let cases = [
            (old, old, vec![]),
            (
                old,
                new,
                vec![
                    Line::Hunk("@@ -2,8 +2,9 @@".into()),
                    Line::Context("b".into()),
                    Line::Context("c".into()),
                    Line::Context("d".into()),
                    Line::Removed("e".into()),
                    Line::Added("E".into()),
                    Line::Context("f".into()),
                    Line::Context("g".into()),
                    Line::Context("h".into()),
                    Line::Context("i".into()),
                    Line::Added("j".into()),
                ],
            ),
            (
                "x",
                "<script>",
                vec![
                    Line::Hunk("@@ -1 +1 @@".into()),
                    Line::Removed("x".into()),
                    Line::Added("<script>".into()),
                ],
            ),
        ];
        for (old, new, want) in cases {
            assert_eq!(unified(old, new), want, "{old:?} → {new:?}");
        }
    }

    #[test]
    fn diffs_are_escaped() {
        let stored = |revision, document: &str| StoredPolicy {
            revision,
            document: document.into(),
            updated: String::new(),
            by: None,
        };
        let html = diff_view(
            &stored(1, r#"{"name": "a"}"#),
            &stored(2, r#"{"name": "</pre><script>alert(1)</script>"}"#),
        )
        .into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("<ins>+{&quot;name&quot;: &quot;&lt;/pre&gt;&lt;script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("<del>-{&quot;name&quot;: &quot;a&quot;}</del>"),
            "{html}"
        );
    }

    #[test]
    fn the_resolver_shows_what_was_asked_and_the_rule_escaped() {
        let hostile = "</td><script>x</script>";
        let shown = "&lt;/td&gt;&lt;script&gt;x&lt;/script&gt;";
        let document = serde_json::json!({"rules": [{"name": format!("web {hostile}")}]});
        let asked = Some(Ok(Identity {
            container: hostile.into(),
            ..Identity::default()
        }));
        let html = resolver(&document.to_string(), &asked).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains(&format!(r#"id="resolve-container" value="{shown}""#)),
            "{html}"
        );
        assert!(
            html.contains(&format!("<strong>web {shown}</strong>, applies.")),
            "{html}"
        );
        let refused = Some(Err(format!("unknown parameter {hostile:?}")));
        let html = resolver(&document.to_string(), &refused).into_string();
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn switching_a_rule_sets_its_disabled_flag() {
        let document = r#"{"rules": [{"name": "a"}, {"name": "b", "disabled": true}]}"#;
        let disabled = |text: &str| -> Vec<bool> {
            serde_json::from_str::<Document>(text)
                .unwrap()
                .rules
                .iter()
                .map(|r| r.disabled)
                .collect()
        };
        let cases = [
            (0, true, Some(vec![true, true])),
            (1, false, Some(vec![false, false])),
            (0, false, Some(vec![false, true])),
            (2, true, None),
        ];
        for (index, set, want) in cases {
            let got = switched(document, index, set).unwrap();
            assert_eq!(got.as_deref().map(disabled), want, "{index} {set}");
        }
    }
}
