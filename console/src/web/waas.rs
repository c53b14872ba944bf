//! The WAAS policy page (`/policy/waas`): the revision in force, its rules and the ports each
//! protects, and the document edited as JSON. A save carries the revision the page was opened at:
//! made after another change it is refused (412) with the text kept; an invalid document is
//! refused (400) naming the rule and field, the text kept too.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use defender::waas::{self, Effect};
use maud::{Markup, html};
use serde::Deserialize;

use super::html::page;
use super::{csrf_refused, internal, may_edit, saved_notice};
use crate::app::{AppState, Expect, Refused, ReplaceError, Replaced};
use crate::auth::{Caller, Editor, Person};
use crate::documents::{self, Doc};
use crate::lifecycle::author;

pub const WAAS: &str = "/policy/waas";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(WAAS, get(waas_page).post(save_waas))
}

#[derive(Deserialize)]
struct Saved {
    saved: Option<u64>,
    changed: Option<u8>,
}

async fn waas_page(
    Person(caller): Person,
    State(state): State<Arc<AppState>>,
    Query(saved): Query<Saved>,
) -> Markup {
    let current = state.document(Doc::Waas);
    let notice = saved_notice(saved.saved, saved.changed);
    view(&state, &caller, notice, &current.document, current.revision)
}

#[derive(Deserialize)]
struct WaasForm {
    document: String,
    /// The revision the editor was opened at.
    revision: u64,
    #[serde(default)]
    csrf: String,
}

async fn save_waas(
    Editor(caller): Editor,
    State(state): State<Arc<AppState>>,
    Form(form): Form<WaasForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    let expect = Expect::OneOf(vec![form.revision]);
    let replaced = state
        .replace_if::<documents::Waas>(&form.document, &caller.name, &expect)
        .await;
    let (status, notice, revision) = match replaced {
        Ok(Replaced::New(p)) => {
            return Redirect::to(&format!("{WAAS}?saved={}", p.revision)).into_response();
        }
        Ok(Replaced::Same(p)) => {
            return Redirect::to(&format!("{WAAS}?saved={}&changed=0", p.revision)).into_response();
        }
        // The editor now carries the revision in force: saving the kept text again replaces it,
        // knowingly.
        Err(Refused::Stale(current)) => (
            StatusCode::PRECONDITION_FAILED,
            html! {
                div class="errors" id="stale" {
                    p {
                        "Not saved: the WAAS policy changed since you opened it (revision "
                        (current.revision) " by " (author(&current.by)) ", " (current.updated)
                        "). Nothing was changed. Your text is kept below: saving it again \
                         replaces the revision in force with it."
                    }
                }
            },
            current.revision,
        ),
        // Still the revision it was opened at: a corrected save is refused if that is stale.
        Err(Refused::Failed(ReplaceError::Invalid(e))) => (
            StatusCode::BAD_REQUEST,
            html! {
                div class="errors" id="errors" {
                    p { "Not saved: the document is invalid. The WAAS policy in force is unchanged." }
                    ul { li { (e) } }
                }
            },
            form.revision,
        ),
        Err(Refused::Failed(ReplaceError::Store(e))) => return internal(&e.message),
    };
    (
        status,
        view(&state, &caller, notice, &form.document, revision),
    )
        .into_response()
}

/// The page: the revision in force and its rules, and the editor holding `text`, saved as a
/// change of revision `based_on`.
fn view(state: &AppState, caller: &Caller, notice: Markup, text: &str, based_on: u64) -> Markup {
    let current = state.document(Doc::Waas);
    let rules = match waas::parse(&current.document) {
        Ok(document) => rules_table(&document),
        Err(e) => html! { p class="errors" { "stored WAAS policy unreadable: " (e) } },
    };
    page(
        Some(caller),
        "WAAS policy",
        "WAAS",
        html! {
            (notice)
            p {
                "Revision " strong id="revision" { (current.revision) } ", saved "
                (current.updated) " by " (author(&current.by)) ". The web application firewall \
                inspects the HTTP requests to the ports an app of the rule in force lists; the \
                rule is chosen as the runtime policy's: the first that is not disabled and whose \
                collections match the container. Every revision is in "
                code { (Doc::Waas.path()) "/revisions" } "."
            }
            (rules)
            @if !may_edit(caller) {
                h2 { "Document" }
                textarea id="document" readonly spellcheck="false" { (text) }
                p class="muted" { "Your role (" (caller.role.as_str()) ") reads the WAAS policy." }
            } @else {
                h2 { "Edit" }
                form method="post" action=(WAAS) {
                    (caller.csrf_input())
                    input type="hidden" name="revision" value=(based_on);
                    textarea name="document" id="document" spellcheck="false" { (text) }
                    p {
                        button id="save" { "Save" } " "
                        span class="muted" {
                            "Validated as " code { "defender run --waas-policy" } " does; an \
                             invalid document changes nothing."
                        }
                    }
                }
            }
        },
    )
}

fn effect(e: Effect) -> Markup {
    let name = match e {
        Effect::Disable => "disable",
        Effect::Alert => "alert",
        Effect::Prevent => "prevent",
        Effect::Ban => "ban",
    };
    html! { span class={ "effect-" (name) } { (name) } }
}

/// The rules in order: scope, and each protected port with its protections that are on.
fn rules_table(document: &waas::Document) -> Markup {
    const ATTACKS: [waas::Attack; 8] = [
        waas::Attack::Sqli,
        waas::Attack::Xss,
        waas::Attack::Cmdi,
        waas::Attack::CodeInjection,
        waas::Attack::Lfi,
        waas::Attack::Shellshock,
        waas::Attack::AttackTools,
        waas::Attack::MalformedRequest,
    ];
    html! {
        @if document.rules.is_empty() {
            p class="muted" id="no-rules" { "No rules: no firewall anywhere." }
        } @else {
            table id="rules" {
                tr { th { "#" } th { "rule" } th { "scope" } th { "ports and protections" } }
                @for (i, rule) in document.rules.iter().enumerate() {
                    @let collections = rule.collections.as_ref();
                    tr id={ "rule-" (i) } {
                        td { (i) }
                        td {
                            (rule.name)
                            @if rule.disabled { " " span class="muted" { "(disabled)" } }
                        }
                        td {
                            "images: " (super::scope(collections.and_then(|c| c.images.as_ref())))
                            br;
                            "containers: "
                            (super::scope(collections.and_then(|c| c.containers.as_ref())))
                        }
                        td {
                            @if rule.apps.is_empty() { "—" }
                            @for app in &rule.apps {
                                div class="app" {
                                    strong { "port " (app.port) } ": "
                                    @for attack in ATTACKS {
                                        @if let Some(e) = app.protections.effect(attack)
                                            .filter(|e| *e != Effect::Disable) {
                                            (attack.as_str()) " " (effect(e)) " "
                                        }
                                    }
                                    @if !app.denied_sources.is_empty() {
                                        "deniedSources " (super::list(&app.denied_sources))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
