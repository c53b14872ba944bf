//! Logging in and out of the pages. A login (user name and password; or, for the first start,
//! the admin token as the password with no user name) makes a server-side session: the cookie
//! holds its random id only, the store its SHA-256, and the session ends after `--session-idle`
//! unused or at logout. Failed logins are throttled (`throttle`) and every attempt is logged.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::html::page;
use crate::app::{AppState, now};
use crate::auth::{self, Person, Role, SESSION_COOKIE};
use crate::passwords;
use crate::people::MAX_NAME;
use crate::store::SessionRecord;
use crate::throttle::Key;
use crate::tls::Client;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
}

fn login_form(error: Option<&str>) -> Markup {
    page(
        None,
        "Log in",
        "",
        html! {
            @if let Some(error) = error {
                p class="errors" id="errors" { (error) }
            }
            form method="post" action="/login" {
                p {
                    label {
                        "User name "
                        input name="username" id="username" size="30" autocomplete="username"
                            autofocus;
                    }
                }
                p {
                    label {
                        "Password "
                        input type="password" name="password" id="password" size="70"
                            autocomplete="current-password";
                    }
                }
                p { button id="login" { "Log in" } }
            }
            p class="muted" {
                "First start: leave the user name empty and give the admin token as the \
                 password (it is in the console's data directory, admin.token, unless it was \
                 given with --admin-token); then create users on the People page."
            }
        },
    )
}

async fn login_page() -> Markup {
    login_form(None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// Who the credentials name, if they are right: the admin token (no user name, or `admin`), or
/// a user and their password (checked off the async workers; against a decoy hash for an
/// unknown name, so that the answer takes as long).
async fn check(state: &AppState, username: &str, password: &str) -> Option<(String, Role)> {
    if username == Role::Admin.as_str() {
        return (state.tokens.role(password) == Some(Role::Admin))
            .then(|| (username.to_owned(), Role::Admin));
    }
    let name = username.to_owned();
    let user = state.store(move |s| s.user(&name)).await.ok().flatten();
    let hash = user.as_ref().map(|u| u.hash.clone());
    let right = passwords::verify_in_turn(password.to_owned(), hash).await;
    let user = user.filter(|_| right)?;
    let role = Role::parse(&user.role).filter(|r| r.is_person())?;
    Some((user.name, role))
}

async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(Client(client)): ConnectInfo<Client>,
    Form(form): Form<LoginForm>,
) -> Response {
    let username = match form.username.trim() {
        "" => Role::Admin.as_str(),
        name => name,
    };
    // No user has a longer name; cut, so that a huge one fills neither the log nor the counts.
    let username = match username.char_indices().nth(MAX_NAME) {
        Some((end, _)) => &username[..end],
        None => username,
    };
    let too_long = form.username.trim().chars().count() > MAX_NAME;
    let address = client.ip().to_string();
    let keys = [
        Key::Name(username.to_owned()),
        Key::Address(address.clone()),
    ];
    let wait = state
        .throttle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .wait(&keys, Instant::now());
    if let Some(wait) = wait {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        state
            .record(
                username,
                "loginThrottled",
                json!({ "address": address, "retryAfter": seconds }),
            )
            .await;
        let message = format!("Too many failed logins: try again in {seconds} s.");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(RETRY_AFTER, seconds.to_string())],
            login_form(Some(&message)),
        )
            .into_response();
    }
    let checked = if too_long {
        None
    } else {
        check(&state, username, &form.password).await
    };
    let Some((name, role)) = checked else {
        state
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(&keys, Instant::now());
        state
            .record(username, "loginFailed", json!({ "address": address }))
            .await;
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some("Wrong user name or password.")),
        )
            .into_response();
    };
    state
        .throttle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .succeeded(&keys);
    let (Ok(id), Ok(csrf)) = (auth::generate(), auth::generate()) else {
        return super::internal("generating a session id failed");
    };
    let session = SessionRecord {
        id_hash: auth::digest(&id),
        user: name.clone(),
        role: role.as_str().to_owned(),
        csrf,
        last_seen: now(),
    };
    if let Err(e) = state.store(move |s| s.add_session(&session)).await {
        return super::internal(&e.message);
    }
    state
        .record(
            &name,
            "login",
            json!({ "address": address, "role": role.as_str() }),
        )
        .await;
    let secure = if state.https { "; Secure" } else { "" };
    let cookie = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    ([(SET_COOKIE, cookie)], Redirect::to("/audits")).into_response()
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session server-side: its cookie, replayed, no longer logs anyone in.
async fn logout(
    Person(who): Person,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !who.csrf_ok(&form.csrf) {
        return super::csrf_refused();
    }
    if let Some(id) = auth::session_cookie(&headers) {
        let hash = auth::digest(&id);
        if let Err(e) = state.store(move |s| s.delete_session(&hash)).await {
            return super::internal(&e.message);
        }
        state.record(&who.name, "logout", json!({})).await;
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
