//! The custom rules library page (`/policy/custom-rules`): every custom rule of the policy with the
//! runtime rules that use it, a form to add one or edit one, and delete. A change rewrites the
//! policy document with that one entry changed and saves it as the policy page does (validated,
//! the next revision, announced to defenders); a refused change saves nothing and shows the form
//! again with each error next to its field, a script error under the script with its position.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use defender::policy::schema::{CustomKind, CustomRule, Document};
use defender::policy::{List, PolicyError, Problem};
use maud::{Markup, html};
use serde::Deserialize;

use super::{custom_effect, internal, page, problems, saved_notice};
use crate::app::{AppState, ReplaceError, Replaced};
use crate::auth::{Caller, Editor, Person};
use crate::store::StoredPolicy;

/// Where the library page lives.
pub const LIBRARY: &str = "/policy/custom-rules";
const DELETE: &str = "/policy/custom-rules/delete";

/// The types a new custom rule may have: `filesystem` is refused by validation (no sensor yet).
const KINDS: [CustomKind; 4] = [
    CustomKind::Processes,
    CustomKind::NetworkOutgoing,
    CustomKind::Dns,
    CustomKind::Listening,
];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(LIBRARY, get(library_page).post(save))
        .route(DELETE, post(delete))
}

/// The library page's link to one custom rule's row.
pub fn row_link(index: usize) -> String {
    format!("{LIBRARY}#custom-{index}")
}

/// What the form posts: one custom rule, and which one it was.
#[derive(Debug, Deserialize)]
struct EntryForm {
    /// The name of the entry edited, as it was when the form was shown; empty for a new one.
    #[serde(default)]
    original: String,
    name: String,
    #[serde(rename = "type")]
    kind: CustomKind,
    script: String,
    /// Empty: no message of its own (the audit's default wording).
    #[serde(default)]
    message: String,
    /// The session's CSRF token, which the page put in the form.
    #[serde(default)]
    csrf: String,
}

impl EntryForm {
    fn blank() -> EntryForm {
        EntryForm {
            original: String::new(),
            name: String::new(),
            kind: CustomKind::Processes,
            script: String::new(),
            message: String::new(),
            csrf: String::new(),
        }
    }

    fn of(rule: &CustomRule) -> EntryForm {
        EntryForm {
            original: rule.name.clone(),
            name: rule.name.clone(),
            kind: rule.kind,
            script: rule.script.clone(),
            message: rule.message.clone().unwrap_or_default(),
            csrf: String::new(),
        }
    }

    /// The entry as the document holds it. Browsers send a textarea's line breaks as CRLF (the
    /// HTML form encoding): the script is kept with plain line feeds, as it would be typed in JSON.
    fn rule(&self) -> CustomRule {
        let message = self.message.trim();
        CustomRule {
            name: self.name.trim().to_owned(),
            kind: self.kind,
            script: self.script.replace("\r\n", "\n"),
            message: (!message.is_empty()).then(|| message.to_owned()),
        }
    }
}

/// A change to the library.
#[derive(Clone, Debug, PartialEq)]
enum Change {
    /// Replace the entry named `original` (and rename the references to it when the name
    /// changes), or add one when `original` is `None`.
    Save {
        original: Option<String>,
        rule: CustomRule,
    },
    Delete(String),
}

/// Applies `change` to `doc`; the index of the entry it concerns (the one saved, or the one
/// deleted), or why it cannot be applied. A deleted entry's references are left in place, for
/// validation to name them.
fn apply(doc: &mut Document, change: Change) -> Result<usize, String> {
    let find = |doc: &Document, name: &str| {
        doc.custom_rules
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                format!("There is no custom rule named {name:?} (any more): the policy changed.")
            })
    };
    match change {
        Change::Save {
            original: None,
            rule,
        } => {
            doc.custom_rules.push(rule);
            Ok(doc.custom_rules.len() - 1)
        }
        Change::Save {
            original: Some(original),
            rule,
        } => {
            let index = find(doc, &original)?;
            // A rename follows into the runtime rules: what they switch on is the same entry.
            if rule.name != original {
                let references = doc.rules.iter_mut().flat_map(|r| r.custom_rules.iter_mut());
                for reference in references.filter(|r| r.name == original) {
                    reference.name = rule.name.clone();
                }
            }
            doc.custom_rules[index] = rule;
            Ok(index)
        }
        Change::Delete(name) => {
            let index = find(doc, &name)?;
            doc.custom_rules.remove(index);
            Ok(index)
        }
    }
}

/// Where the form shows a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Next to the form's field of this name.
    Field(&'static str),
    /// Under the script, at this line and column.
    Script(usize, usize),
    /// Above the form: about another entry, a runtime rule, or the document.
    Above,
}

/// Where `p` goes on the form of the library's entry `index`.
fn place(p: &Problem, index: usize) -> Place {
    let ours = p
        .rule
        .as_ref()
        .is_some_and(|r| r.list == List::CustomRules && r.index == index);
    if !ours {
        return Place::Above;
    }
    if let Some((line, column)) = problems::script_position(&p.field) {
        return Place::Script(line, column);
    }
    match p.field.as_str() {
        "name" => Place::Field("name"),
        "type" => Place::Field("type"),
        "script" => Place::Field("script"),
        "message" => Place::Field("message"),
        _ => Place::Above,
    }
}

/// The errors of a refused change, to show on the form.
struct Refusal {
    /// The entry the form edits, in the refused document.
    index: usize,
    error: PolicyError,
}

impl Refusal {
    fn problems(&self) -> &[Problem] {
        match &self.error {
            PolicyError::Invalid(list) => list,
            PolicyError::Syntax { .. } => &[],
        }
    }

    /// The messages for one field of the form.
    fn at(&self, field: &'static str) -> Vec<&str> {
        self.problems()
            .iter()
            .filter(|p| place(p, self.index) == Place::Field(field))
            .map(|p| p.message.as_str())
            .collect()
    }
}

#[derive(Deserialize)]
struct PageQuery {
    /// The name of the entry to edit.
    edit: Option<String>,
    saved: Option<u64>,
    changed: Option<u8>,
}

async fn library_page(
    Person(who): Person,
    State(state): State<Arc<AppState>>,
    Query(q): Query<PageQuery>,
) -> Response {
    let doc = match current(&state) {
        Ok(doc) => doc,
        Err(e) => return internal(&e),
    };
    let mut notice = saved_notice(q.saved, q.changed);
    let form = match q.edit.as_deref() {
        Some(name) => match doc.custom_rules.iter().find(|c| c.name == name) {
            Some(rule) => EntryForm::of(rule),
            None => {
                notice = html! {
                    p class="errors" id="errors" {
                        "There is no custom rule named " (format!("{name:?}")) "."
                    }
                };
                EntryForm::blank()
            }
        },
        None => EntryForm::blank(),
    };
    library_view(&state, &who, &doc, notice, &form, None).into_response()
}

/// The policy document in force.
fn current(state: &AppState) -> Result<Document, String> {
    serde_json::from_str(&state.policy().document)
        .map_err(|e| format!("stored policy unreadable: {e}"))
}

/// The page: the library table of `doc`, then the form holding `form` (with the errors of
/// `refusal`, if the change was refused).
fn library_view(
    state: &AppState,
    who: &Caller,
    doc: &Document,
    notice: Markup,
    form: &EntryForm,
    refusal: Option<&Refusal>,
) -> Markup {
    library_page_of(who, &state.policy(), doc, notice, form, refusal)
}

/// [`library_view`] for the revision `current`. An auditor sees no form and no button.
fn library_page_of(
    who: &Caller,
    current: &StoredPolicy,
    doc: &Document,
    notice: Markup,
    form: &EntryForm,
    refusal: Option<&Refusal>,
) -> Markup {
    let edits = super::may_edit(who);
    page(
        Some(who),
        "Custom rules",
        "Policy",
        html! {
            (notice)
            p {
                "Revision " strong id="revision" { (current.revision) } " of the "
                a href="/policy" { "policy" } ". A runtime rule switches a custom rule on by name, \
                with an effect; its custom rules are tried in order, and the first whose script is \
                true decides (allow: an exception to the rule's sections)."
            }
            (library_table(doc, edits.then_some(who)))
            @if edits {
                (entry_form(form, refusal, who))
            }
        },
    )
}

/// The library; with the edit links and delete buttons for `editor`.
fn library_table(doc: &Document, editor: Option<&Caller>) -> Markup {
    html! {
        table id="custom-rules" {
            tr {
                th { "name" } th { "type" } th { "script" } th { "message" } th { "used by" }
                th {}
            }
            @for (index, custom) in doc.custom_rules.iter().enumerate() {
                tr id={ "custom-" (index) } class="custom-rule" data-name=(custom.name) {
                    td { (custom.name) }
                    td { (custom.kind.as_str()) }
                    td { pre class="script" { (custom.script) } }
                    td {
                        @match &custom.message {
                            Some(m) => { (m) }
                            None => { span class="muted" { "(default)" } }
                        }
                    }
                    td class="used-by" { (used_by(doc, &custom.name)) }
                    td {
                        @if let Some(editor) = editor {
                            a class="edit" href=(edit_link(&custom.name)) { "edit" }
                            form method="post" action=(DELETE) {
                                (editor.csrf_input())
                                input type="hidden" name="name" value=(custom.name);
                                button class="delete" { "delete" }
                            }
                        }
                    }
                }
            }
        }
        @if doc.custom_rules.is_empty() {
            p class="muted" { "The library is empty." }
        }
    }
}

/// The runtime rules that use the custom rule `name`, each with its effect.
fn used_by(doc: &Document, name: &str) -> Markup {
    let uses: Vec<_> = doc
        .rules
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| {
            rule.custom_rules
                .iter()
                .filter(move |r| r.name == name)
                .map(move |r| (i, rule, r.effect))
        })
        .collect();
    html! {
        @if uses.is_empty() {
            span class="muted" { "no rule" }
        }
        @for (n, (i, rule, effect)) in uses.iter().enumerate() {
            @if n > 0 { br; }
            a href={ "/policy#rule-" (i) } { (rule.name) } ": " (custom_effect(*effect))
            @if rule.disabled { " " span class="muted" { "(rule disabled)" } }
        }
    }
}

fn edit_link(name: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("edit", name)
        .finish();
    format!("{LIBRARY}?{query}#entry")
}

/// The messages of one field, under it.
fn field_errors(id: &str, messages: &[&str]) -> Markup {
    html! {
        @if !messages.is_empty() {
            p class="field-error" id={ "error-" (id) } {
                @for (i, m) in messages.iter().enumerate() {
                    @if i > 0 { br; }
                    (m)
                }
            }
        }
    }
}

fn entry_form(form: &EntryForm, refusal: Option<&Refusal>, editor: &Caller) -> Markup {
    let editing = !form.original.is_empty();
    let above: Vec<&Problem> = refusal
        .map(|r| {
            r.problems()
                .iter()
                .filter(|p| place(p, r.index) == Place::Above)
                .collect()
        })
        .unwrap_or_default();
    let script_errors: Vec<(usize, usize, &str)> = refusal
        .map(|r| {
            r.problems()
                .iter()
                .filter_map(|p| match place(p, r.index) {
                    Place::Script(line, column) => Some((line, column, p.message.as_str())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let at = |field| refusal.map(|r| r.at(field)).unwrap_or_default();
    html! {
        h2 id="entry" {
            @if editing { "Edit " (format!("{:?}", form.original)) } @else { "Add a custom rule" }
        }
        @if let Some(r) = refusal {
            div class="errors" id="errors" {
                p { "Not saved: the policy would be invalid. The policy in force is unchanged." }
                @if let PolicyError::Syntax { .. } = r.error {
                    p { (r.error) }
                }
                @if !above.is_empty() {
                    ul {
                        @for p in &above { li { (p) } }
                    }
                }
            }
        }
        form method="post" action=(LIBRARY) class="entry" {
            (editor.csrf_input())
            input type="hidden" name="original" value=(form.original);
            p {
                label {
                    "name " br;
                    input name="name" id="custom-name" size="50" value=(form.name);
                }
                (field_errors("name", &at("name")))
            }
            p {
                label {
                    "type " br;
                    select name="type" id="custom-type" {
                        @for kind in KINDS {
                            option value=(kind.as_str()) selected[kind == form.kind] {
                                (kind.as_str())
                            }
                        }
                    }
                }
                (field_errors("type", &at("type")))
            }
            p {
                label {
                    "script " br;
                    textarea name="script" id="custom-script" class="script" spellcheck="false" {
                        (form.script)
                    }
                }
                (field_errors("script", &at("script")))
                @if !script_errors.is_empty() {
                    div class="field-error" id="error-script" {
                        @for (line, column, message) in &script_errors {
                            p { "script:" (line) ":" (column) ": " (message) }
                            (problems::excerpt(&form.rule().script, *line, *column))
                        }
                    }
                }
            }
            p {
                label {
                    "message " span class="muted" { "(optional: the audit's message)" } br;
                    input name="message" id="custom-message" size="80" value=(form.message);
                }
                (field_errors("message", &at("message")))
            }
            p {
                button id="custom-save" { @if editing { "Save" } @else { "Add" } } " "
                @if editing {
                    a href=(LIBRARY) { "add a new one instead" } " · "
                    span class="muted" {
                        "Renaming it renames it in the runtime rules that use it."
                    }
                }
            }
        }
        p class="muted" {
            "Scripts: " code { "proc.name = \"nc\" and proc.cmdline contains \" -l\"" }
            ". The fields and the grammar are in the policy documentation."
        }
    }
}

async fn save(
    Editor(caller): Editor,
    State(state): State<Arc<AppState>>,
    Form(form): Form<EntryForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return super::csrf_refused();
    }
    let change = Change::Save {
        original: Some(form.original.clone()).filter(|o| !o.is_empty()),
        rule: form.rule(),
    };
    change_library(&state, &caller, change, &form).await
}

#[derive(Deserialize)]
struct DeleteForm {
    name: String,
    #[serde(default)]
    csrf: String,
}

async fn delete(
    Editor(caller): Editor,
    State(state): State<Arc<AppState>>,
    Form(form): Form<DeleteForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return super::csrf_refused();
    }
    change_library(
        &state,
        &caller,
        Change::Delete(form.name),
        &EntryForm::blank(),
    )
    .await
}

/// Applies `change` to the policy in force and saves it, then back to the library page; refused,
/// the page again (status 400) with `form` and the errors (a deletion's above the table).
async fn change_library(
    state: &AppState,
    by: &Caller,
    change: Change,
    form: &EntryForm,
) -> Response {
    let mut doc = match current(state) {
        Ok(doc) => doc,
        Err(e) => return internal(&e),
    };
    let before = doc.clone();
    let deleting = matches!(change, Change::Delete(_));
    let index = match apply(&mut doc, change) {
        Ok(index) => index,
        Err(message) => {
            let notice = html! { p class="errors" id="errors" { (message) } };
            let view = library_view(state, by, &before, notice, form, None);
            return (StatusCode::CONFLICT, view).into_response();
        }
    };
    let text = match serde_json::to_string_pretty(&doc) {
        Ok(text) => text,
        Err(e) => return internal(&format!("policy document: {e}")),
    };
    match state.replace_policy(&text, &by.name).await {
        Ok(Replaced::New(p)) => {
            Redirect::to(&format!("{LIBRARY}?saved={}", p.revision)).into_response()
        }
        Ok(Replaced::Same(p)) => {
            Redirect::to(&format!("{LIBRARY}?saved={}&changed=0", p.revision)).into_response()
        }
        // A deletion is refused for what uses the entry: said at the top, where its button was.
        Err(ReplaceError::Invalid(error)) if deleting => {
            let script_of = |i: usize| doc.custom_rules.get(i).map(|c| c.script.clone());
            let notice = html! {
                div class="errors" id="errors" {
                    p {
                        "Not deleted: the policy would be invalid. The policy in force is \
                         unchanged."
                    }
                    (problems::list(&error, script_of))
                }
            };
            let view = library_view(state, by, &before, notice, form, None);
            (StatusCode::BAD_REQUEST, view).into_response()
        }
        Err(ReplaceError::Invalid(error)) => {
            let refusal = Refusal { index, error };
            let view = library_view(state, by, &before, html! {}, form, Some(&refusal));
            (StatusCode::BAD_REQUEST, view).into_response()
        }
        Err(ReplaceError::Store(e)) => internal(&e.message),
    }
}

#[cfg(test)]
mod tests {
    use defender::policy::RuleRef;

    use super::super::tests::{HOSTILE, SHOWN, links};
    use super::*;

    fn document() -> Document {
        serde_json::from_value(serde_json::json!({
            "customRules": [
                {"name": "nc", "type": "processes", "script": "proc.name = \"nc\""},
                {"name": "ssh", "type": "network-outgoing", "script": "net.outgoing_port = 22"}
            ],
            "rules": [
                {"name": "a", "customRules": [{"name": "nc", "effect": "block"},
                                              {"name": "ssh", "effect": "alert"}]},
                {"name": "b", "customRules": [{"name": "nc", "effect": "allow"}]}
            ]
        }))
        .unwrap()
    }

    fn rule(name: &str, script: &str) -> CustomRule {
        CustomRule {
            name: name.into(),
            kind: CustomKind::Processes,
            script: script.into(),
            message: None,
        }
    }

    /// The library's names, and each runtime rule's references' names.
    fn names(doc: &Document) -> (Vec<&str>, Vec<Vec<&str>>) {
        (
            doc.custom_rules.iter().map(|c| c.name.as_str()).collect(),
            doc.rules
                .iter()
                .map(|r| r.custom_rules.iter().map(|c| c.name.as_str()).collect())
                .collect(),
        )
    }

    /// A change; the index it gives or the start of its error; then the library's names and the
    /// two runtime rules' references' names.
    type Case = (
        Change,
        Result<usize, &'static str>,
        [&'static [&'static str]; 3],
    );

    #[test]
    fn changes_to_the_library() {
        let save = |original: Option<&str>, name: &str| Change::Save {
            original: original.map(str::to_owned),
            rule: rule(name, "proc.uid = 0"),
        };
        let cases: Vec<Case> = vec![
            (
                save(None, "new"),
                Ok(2),
                [&["nc", "ssh", "new"], &["nc", "ssh"], &["nc"]],
            ),
            (
                save(Some("ssh"), "ssh"),
                Ok(1),
                [&["nc", "ssh"], &["nc", "ssh"], &["nc"]],
            ),
            // A rename follows into every reference.
            (
                save(Some("nc"), "netcat"),
                Ok(0),
                [&["netcat", "ssh"], &["netcat", "ssh"], &["netcat"]],
            ),
            // Deleted, its references stay for validation to name.
            (
                Change::Delete("nc".into()),
                Ok(0),
                [&["ssh"], &["nc", "ssh"], &["nc"]],
            ),
            (
                save(Some("gone"), "x"),
                Err("There is no custom rule named \"gone\""),
                [&["nc", "ssh"], &["nc", "ssh"], &["nc"]],
            ),
            (
                Change::Delete("gone".into()),
                Err("There is no custom rule named \"gone\""),
                [&["nc", "ssh"], &["nc", "ssh"], &["nc"]],
            ),
        ];
        for (change, want, [library, a, b]) in cases {
            let mut doc = document();
            let got = apply(&mut doc, change.clone());
            match (&got, want) {
                (Ok(i), Ok(w)) => assert_eq!(*i, w, "{change:?}"),
                (Err(e), Err(w)) => assert!(e.starts_with(w), "{change:?}: {e}"),
                _ => panic!("{change:?}: {got:?}"),
            }
            let (l, refs) = names(&doc);
            assert_eq!((l, refs), (library.to_vec(), vec![a.to_vec(), b.to_vec()]));
        }
        // Saved with its new script.
        let mut doc = document();
        apply(&mut doc, save(Some("ssh"), "ssh")).unwrap();
        assert_eq!(doc.custom_rules[1].script, "proc.uid = 0");
    }

    #[test]
    fn problems_are_placed_next_to_their_field() {
        let problem = |list, index, field: &str| Problem {
            rule: Some(RuleRef {
                list,
                index,
                name: None,
            }),
            field: field.into(),
            message: "m".into(),
        };
        let cases = [
            (problem(List::CustomRules, 2, "name"), Place::Field("name")),
            (problem(List::CustomRules, 2, "type"), Place::Field("type")),
            (
                problem(List::CustomRules, 2, "script:3:14"),
                Place::Script(3, 14),
            ),
            // Another entry's problem, a runtime rule's, the document's: above the form.
            (problem(List::CustomRules, 1, "name"), Place::Above),
            (problem(List::Rules, 2, "customRules[0].name"), Place::Above),
            (problem(List::CustomRules, 2, ""), Place::Above),
            (
                Problem {
                    rule: None,
                    field: String::new(),
                    message: "m".into(),
                },
                Place::Above,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(place(&p, 2), want, "{p}");
        }
    }

    #[test]
    fn the_form_keeps_line_feeds_and_drops_an_empty_message() {
        let form = EntryForm {
            original: String::new(),
            name: " nc ".into(),
            kind: CustomKind::Dns,
            script: "a\r\nb".into(),
            message: "  ".into(),
            ..EntryForm::blank()
        };
        assert_eq!(
            form.rule(),
            CustomRule {
                name: "nc".into(),
                kind: CustomKind::Dns,
                script: "a\nb".into(),
                message: None,
            }
        );
    }

    /// A library whose every string is hostile, and a refused edit of it: all shown as text, and
    /// the edit link names the entry exactly.
    #[test]
    fn hostile_custom_rules_are_shown_escaped() {
        let name = format!("nc {HOSTILE}");
        let script = format!(
            "proc.cmdline contains \"{}\" and <",
            HOSTILE.replace('"', "\\\"")
        );
        let doc: Document = serde_json::from_value(serde_json::json!({
            "customRules": [{"name": name, "type": "processes", "script": script,
                             "message": format!("message {HOSTILE}")}],
            "rules": [{"name": format!("rule {HOSTILE}"),
                       "customRules": [{"name": name, "effect": "prevent"}]}]
        }))
        .unwrap();
        let refusal = Refusal {
            index: 0,
            error: PolicyError::Invalid(vec![
                Problem {
                    rule: Some(RuleRef {
                        list: List::CustomRules,
                        index: 0,
                        name: Some(name.clone()),
                    }),
                    field: format!("script:1:{}", script.chars().count()),
                    message: format!("expected {HOSTILE}"),
                },
                Problem {
                    rule: Some(RuleRef {
                        list: List::Rules,
                        index: 0,
                        name: Some(format!("rule {HOSTILE}")),
                    }),
                    field: "customRules[0].name".into(),
                    message: format!("no custom rule named {HOSTILE}"),
                },
            ]),
        };
        let current = StoredPolicy {
            revision: 3,
            document: String::new(),
            updated: String::new(),
            by: None,
        };
        let form = EntryForm::of(&doc.custom_rules[0]);
        let who = Caller {
            name: "op".into(),
            role: crate::auth::Role::Operator,
            csrf: "c".into(),
            scope: None,
        };
        let page =
            library_page_of(&who, &current, &doc, html! {}, &form, Some(&refusal)).into_string();

        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("</td><script>"), "{page}");
        for text in [
            format!("<td>nc {SHOWN}</td>"),
            format!(">message {SHOWN}<"),
            format!(">rule {SHOWN}</a>: <span class=\"effect-prevent\">"),
            // The form's fields hold the entry as it is.
            format!(r#"name="name" id="custom-name" size="50" value="nc {SHOWN}""#),
            format!(r#"name="original" value="nc {SHOWN}""#),
            format!("script:1:{}: expected {SHOWN}", script.chars().count()),
            format!("no custom rule named {SHOWN}"),
        ] {
            assert!(page.contains(&text), "{text} is not in {page}");
        }
        // The script, in the table, in the textarea and in the excerpt under its error.
        let script_shown = maud::html! { (script) }.into_string();
        assert_eq!(page.matches(&script_shown).count(), 3, "{page}");

        let edit = links(&page)
            .into_iter()
            .find(|l| l.starts_with("/policy/custom-rules?edit="))
            .unwrap();
        let uri: axum::http::Uri = edit.parse().unwrap();
        let q = Query::<PageQuery>::try_from_uri(&uri).unwrap().0;
        assert_eq!(q.edit.as_deref(), Some(name.as_str()));
    }
}
