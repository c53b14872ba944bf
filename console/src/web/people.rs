//! The people page (an administrator's: users and tokens, their forms, a new token shown once)
//! and the activity page (who did what, newest first). The changes go through the same
//! operations as the API (`crate::people`), so they are checked and logged alike.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::html::page;
use crate::app::{ApiError, AppState};
use crate::auth::{Caller, PageAdmin, Person, Role};
use crate::people::{self, ActivityFilter, NewToken, NewUser};

const PEOPLE: &str = "/people";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(PEOPLE, get(people_page))
        .route("/people/users", post(add_user))
        .route("/people/users/delete", post(delete_user))
        .route("/people/tokens", post(add_token))
        .route("/people/tokens/revoke", post(revoke_token))
        .route("/activity", get(activity_page))
}

/// A dash for nothing.
fn or_dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("—")
}

fn role_options(roles: impl Iterator<Item = Role>) -> Markup {
    html! {
        @for r in roles {
            option value=(r.as_str()) { (r.as_str()) }
        }
    }
}

/// A row's button: posts `name` to `action`; `label` is its text and class.
fn row_button(who: &Caller, action: &str, name: &str, label: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            (who.csrf_input())
            input type="hidden" name="name" value=(name);
            button class=(label) { (label) }
        }
    }
}

/// The page: `notice` on top (a new token, an error), users, tokens, the forms.
async fn people_view(state: &AppState, who: &Caller, notice: Markup) -> Response {
    let (users, tokens) = match (people::users(state).await, people::tokens(state).await) {
        (Ok(u), Ok(t)) => (u, t),
        (Err(e), _) | (_, Err(e)) => return super::internal(&e.message),
    };
    let body = html! {
        (notice)
        h2 { "Users" }
        table id="users" {
            tr { th { "user" } th { "role" } th { "created" } th {} }
            @for u in &users {
                tr class="user" data-name=(u.username) {
                    td { (u.username) } td { (u.role) } td { (u.created) }
                    td { (row_button(who, "/people/users/delete", &u.username, "delete")) }
                }
            }
        }
        form method="post" action="/people/users" class="entry" {
            (who.csrf_input())
            label { "user " input name="username" id="new-username"; } " "
            label {
                "password " input type="password" name="password" id="new-password"
                    autocomplete="new-password";
            } " "
            label {
                "role "
                select name="role" id="new-role" {
                    (role_options(Role::ALL.into_iter().filter(|r| r.is_person())))
                }
            } " "
            button id="add-user" { "Add user" }
        }
        h2 { "Tokens" }
        table id="tokens" {
            tr {
                th { "name" } th { "role" } th { "collections" } th { "created" }
                th { "last used" } th { "revoked" } th {}
            }
            @for t in &tokens {
                tr class="token" data-name=(t.name) {
                    td { (t.name) } td { (t.role) }
                    td {
                        @match &t.collections {
                            Some(c) => { code { (c) } }
                            None => { "—" }
                        }
                    }
                    td { (t.created) } td { (or_dash(&t.last_used)) } td { (or_dash(&t.revoked)) }
                    td {
                        @if t.revoked.is_none() {
                            (row_button(who, "/people/tokens/revoke", &t.name, "revoke"))
                        }
                    }
                }
            }
        }
        form method="post" action="/people/tokens" class="entry" {
            (who.csrf_input())
            label { "name " input name="name" id="token-name"; } " "
            label {
                "role "
                select name="role" id="token-role" { (role_options(Role::ALL.into_iter())) }
            } " "
            label {
                "collections (defender tokens; JSON, as a rule's) "
                input name="collections" id="token-collections" size="50"
                    placeholder=r#"{"containers": ["orders-*"]}"#;
            } " "
            button id="add-token" { "Create token" }
        }
        p class="muted" {
            "The tokens given by flags (admin, defender) are not listed; they are changed where \
             they are given."
        }
    };
    page(Some(who), "People", "People", body).into_response()
}

async fn people_page(PageAdmin(who): PageAdmin, State(state): State<Arc<AppState>>) -> Response {
    people_view(&state, &who, html! {}).await
}

/// A refused change: the page again with the reason on top.
async fn refusal(state: &AppState, who: &Caller, e: ApiError) -> Response {
    let status = e.status;
    let notice = html! { p class="errors" id="errors" { (e.message) } };
    let mut response = people_view(state, who, notice).await;
    *response.status_mut() = status;
    response
}

/// Back to the page after a change: reloaded when it was made, with the reason when refused.
async fn back(state: &AppState, who: &Caller, changed: Result<(), ApiError>) -> Response {
    match changed {
        Ok(()) => Redirect::to(PEOPLE).into_response(),
        Err(e) => refusal(state, who, e).await,
    }
}

#[derive(Deserialize)]
struct UserForm {
    #[serde(default)]
    csrf: String,
    username: String,
    password: String,
    role: String,
}

async fn add_user(
    PageAdmin(who): PageAdmin,
    State(state): State<Arc<AppState>>,
    Form(form): Form<UserForm>,
) -> Response {
    if !who.csrf_ok(&form.csrf) {
        return super::csrf_refused();
    }
    let new = NewUser {
        username: form.username,
        password: form.password,
        role: form.role,
    };
    back(&state, &who, people::create_user(&state, &who, new).await).await
}

#[derive(Deserialize)]
struct NameForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

async fn delete_user(
    PageAdmin(who): PageAdmin,
    State(state): State<Arc<AppState>>,
    Form(form): Form<NameForm>,
) -> Response {
    if !who.csrf_ok(&form.csrf) {
        return super::csrf_refused();
    }
    back(
        &state,
        &who,
        people::remove_user(&state, &who, form.name).await,
    )
    .await
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
    name: String,
    role: String,
    #[serde(default)]
    collections: String,
}

/// Creates a token and shows it on the page answered: the only time it is shown.
async fn add_token(
    PageAdmin(who): PageAdmin,
    State(state): State<Arc<AppState>>,
    Form(form): Form<TokenForm>,
) -> Response {
    if !who.csrf_ok(&form.csrf) {
        return super::csrf_refused();
    }
    let collections = match form.collections.trim() {
        "" => None,
        text => match serde_json::from_str(text) {
            Ok(c) => Some(c),
            Err(e) => {
                let e = ApiError::bad_request(format!("collections: {e}"));
                return refusal(&state, &who, e).await;
            }
        },
    };
    let new = NewToken {
        name: form.name.clone(),
        role: form.role,
        collections,
    };
    match people::create_token(&state, &who, new).await {
        Ok(token) => {
            let notice = html! {
                div class="ok" id="created" {
                    p { "Token " strong { (form.name) } " created. Copy it now: it is not shown again." }
                    p { code id="new-token" { (token) } }
                }
            };
            let mut response = people_view(&state, &who, notice).await;
            *response.status_mut() = StatusCode::CREATED;
            response
        }
        Err(e) => refusal(&state, &who, e).await,
    }
}

async fn revoke_token(
    PageAdmin(who): PageAdmin,
    State(state): State<Arc<AppState>>,
    Form(form): Form<NameForm>,
) -> Response {
    if !who.csrf_ok(&form.csrf) {
        return super::csrf_refused();
    }
    back(
        &state,
        &who,
        people::revoke_token(&state, &who, form.name).await,
    )
    .await
}

async fn activity_page(
    Person(who): Person,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<ActivityFilter>,
) -> Response {
    let entries = match people::activity(&state, &filter).await {
        Ok(e) => e,
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let body = html! { p class="errors" id="errors" { (e.message) } };
            return (
                StatusCode::BAD_REQUEST,
                page(Some(&who), "Activity", "Activity", body),
            )
                .into_response();
        }
        Err(e) => return super::internal(&e.message),
    };
    let body = html! {
        table id="activity" {
            tr { th { "time" } th { "who" } th { "action" } th { "detail" } }
            @for e in &entries {
                tr class="entry" data-action=(e.action) {
                    td { (e.time) } td class="actor" { (e.actor) } td { (e.action) }
                    td { code { (e.detail) } }
                }
            }
        }
        @if entries.is_empty() {
            p class="muted" { "Nothing yet." }
        }
    };
    page(Some(&who), "Activity", "Activity", body).into_response()
}
