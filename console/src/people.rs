//! People and their credentials in the JSON API: users (admin), named tokens (admin: shown once,
//! stored hashed, revocable), and the activity log (people). The operations are shared with the
//! people page, so that a change made either way is checked and logged the same.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::{ApiError, AppState, now};
use crate::auth::{self, Admin, Caller, Reads, Role};
use crate::events;
use crate::passwords;
use crate::scope::Scope;
use crate::store::{ActivityEntry, ActivityQuery, TokenRecord, UserRecord};

/// Entries of the activity log per answer when no limit is asked for, and the most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;
/// The longest user or token name.
pub const MAX_NAME: usize = 64;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/users", get(list_users).post(post_user))
        .route("/api/v1/users/{name}", delete(delete_user))
        .route("/api/v1/tokens", get(list_tokens).post(post_token))
        .route("/api/v1/tokens/{name}", delete(delete_token))
        .route("/api/v1/activity", get(list_activity))
}

/// Whether `name` may name a user or a token (`what`): printable, trimmed, not too long, and not
/// `admin` or `defender`, the names of the tokens given by flags (and of the admin token's
/// sessions), so that the activity log and the audits' `source` never mean two things.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what}: must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("{what}: at most {MAX_NAME} characters"));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err(format!(
            "{what}: no control characters, no spaces at either end"
        ));
    }
    if [Role::Admin, Role::Defender]
        .iter()
        .any(|r| r.as_str() == name)
    {
        return Err(format!(
            "{what}: {name:?} is reserved for the token given by --{name}-token"
        ));
    }
    Ok(())
}

/// A role by name, among those `allowed`.
fn role(name: &str, allowed: impl Fn(Role) -> bool) -> Result<Role, String> {
    Role::parse(name).filter(|r| allowed(*r)).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL
            .iter()
            .filter(|r| allowed(**r))
            .map(|r| r.as_str())
            .collect();
        format!("role: {name:?} is not one of {}", names.join(", "))
    })
}

/// What `POST /users` takes (and the people page's form).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: String,
}

/// Whether a name is taken by a user or a token (they share one space: the activity log names
/// either).
fn taken(s: &dyn crate::store::Store, name: &str) -> Result<bool, crate::store::StoreError> {
    Ok(s.user(name)?.is_some() || s.tokens()?.iter().any(|t| t.name == name))
}

pub async fn create_user(state: &AppState, by: &Caller, new: NewUser) -> Result<(), ApiError> {
    check_name("username", &new.username).map_err(ApiError::bad_request)?;
    let role = role(&new.role, Role::is_person).map_err(ApiError::bad_request)?;
    let hash = passwords::hash_in_turn(new.password)
        .await
        .map_err(|e| match e {
            passwords::PasswordError::TooShort => ApiError::bad_request(e.to_string()),
            e => ApiError::internal(e.to_string()),
        })?;
    let user = UserRecord {
        name: new.username.clone(),
        role: role.as_str().to_owned(),
        hash,
        created: now(),
    };
    let added = state
        .store(move |s| Ok(!taken(s, &user.name)? && s.add_user(&user)?))
        .await?;
    if !added {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("username: {:?} is taken", new.username),
        ));
    }
    state
        .record(
            &by.name,
            "userCreated",
            json!({ "username": new.username, "role": role.as_str() }),
        )
        .await;
    Ok(())
}

pub async fn remove_user(state: &AppState, by: &Caller, name: String) -> Result<(), ApiError> {
    let gone = name.clone();
    if !state.store(move |s| s.delete_user(&gone)).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no user named {name:?}"),
        ));
    }
    state
        .record(&by.name, "userDeleted", json!({ "username": name }))
        .await;
    Ok(())
}

/// A user as `GET /users` shows it: never the hash.
#[derive(Serialize)]
pub struct UserView {
    pub username: String,
    pub role: String,
    pub created: String,
}

pub async fn users(state: &AppState) -> Result<Vec<UserView>, ApiError> {
    let users = state.store(|s| s.users()).await?;
    Ok(users
        .into_iter()
        .map(|u| UserView {
            username: u.name,
            role: u.role,
            created: u.created,
        })
        .collect())
}

/// What `POST /tokens` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub collections: Option<Value>,
}

/// Creates a named token and returns it: the only time it is shown.
pub async fn create_token(
    state: &AppState,
    by: &Caller,
    new: NewToken,
) -> Result<String, ApiError> {
    check_name("name", &new.name).map_err(ApiError::bad_request)?;
    let role = role(&new.role, |_| true).map_err(ApiError::bad_request)?;
    let scope = match (&new.collections, role) {
        (None, _) => None,
        (Some(c), Role::Defender) => {
            Some(Scope::parse(&c.to_string()).map_err(|e| ApiError::bad_request(e.to_string()))?)
        }
        (Some(_), _) => {
            return Err(ApiError::bad_request(
                "collections: only a defender token is scoped by collections",
            ));
        }
    };
    let token = auth::generate().map_err(|e| ApiError::internal(format!("random: {e}")))?;
    let record = TokenRecord {
        name: new.name.clone(),
        role: role.as_str().to_owned(),
        hash: auth::digest(&token),
        collections: scope.as_ref().map(Scope::to_json),
        created: now(),
        last_used: None,
        revoked: None,
    };
    let added = state
        .store(move |s| Ok(!taken(s, &record.name)? && s.add_token(&record)?))
        .await?;
    if !added {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "name: {:?} is taken (a token's name is never reused, revoked or not)",
                new.name
            ),
        ));
    }
    let collections = scope
        .as_ref()
        .map(|s| serde_json::from_str::<Value>(&s.to_json()).unwrap_or_default());
    state
        .record(
            &by.name,
            "tokenCreated",
            json!({ "name": new.name, "role": role.as_str(), "collections": collections }),
        )
        .await;
    Ok(token)
}

pub async fn revoke_token(state: &AppState, by: &Caller, name: String) -> Result<(), ApiError> {
    let gone = name.clone();
    if !state.store(move |s| s.revoke_token(&gone, &now())).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no token named {name:?} in use"),
        ));
    }
    state
        .record(&by.name, "tokenRevoked", json!({ "name": name }))
        .await;
    Ok(())
}

/// A token as `GET /tokens` shows it: never the token or its hash.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub name: String,
    pub role: String,
    pub collections: Option<Value>,
    pub created: String,
    pub last_used: Option<String>,
    pub revoked: Option<String>,
}

pub async fn tokens(state: &AppState) -> Result<Vec<TokenView>, ApiError> {
    let tokens = state.store(|s| s.tokens()).await?;
    Ok(tokens
        .into_iter()
        .map(|t| TokenView {
            name: t.name,
            role: t.role,
            collections: t.collections.and_then(|c| serde_json::from_str(&c).ok()),
            created: t.created,
            last_used: t.last_used,
            revoked: t.revoked,
        })
        .collect())
}

/// `GET /activity`'s parameters.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityFilter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
}

pub async fn activity(
    state: &AppState,
    filter: &ActivityFilter,
) -> Result<Vec<ActivityEntry>, ApiError> {
    let time = |name: &str, v: &Option<String>| {
        v.as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(|t| events::normalize_time(t).map_err(|e| format!("{name}: {e}")))
            .transpose()
            .map_err(ApiError::bad_request)
    };
    let query = ActivityQuery {
        since: time("since", &filter.since)?,
        until: time("until", &filter.until)?,
        limit: filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
    };
    state.store(move |s| s.activity(&query)).await
}

async fn post_user(
    Admin(caller): Admin,
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewUser =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("user: {e}")))?;
    let answer = json!({ "username": new.username, "role": new.role });
    create_user(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn list_users(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(users(&state).await?))
}

async fn delete_user(
    Admin(caller): Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_user(&state, &caller, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn post_token(
    Admin(caller): Admin,
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewToken =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("token: {e}")))?;
    let name = new.name.clone();
    let token = create_token(&state, &caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "token": token })),
    )
        .into_response())
}

async fn list_tokens(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    Ok(Json(tokens(&state).await?))
}

async fn delete_token(
    Admin(caller): Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    revoke_token(&state, &caller, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_activity(
    _: Reads,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<ActivityFilter>,
) -> Result<Json<Vec<ActivityEntry>>, ApiError> {
    Ok(Json(activity(&state, &filter).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, want) in [
            ("alice", Ok(())),
            ("orders defender", Ok(())),
            ("", Err("name: must not be empty")),
            (" alice", Err("name: no control characters")),
            ("a\nb", Err("name: no control characters")),
            ("admin", Err("name: \"admin\" is reserved")),
            ("defender", Err("name: \"defender\" is reserved")),
        ] {
            let got = check_name("name", name);
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{name:?}"),
                Err(start) => assert!(got.unwrap_err().starts_with(start), "{name:?}"),
            }
        }
        assert!(check_name("name", &"x".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn roles() {
        assert_eq!(role("operator", Role::is_person), Ok(Role::Operator));
        assert_eq!(
            role("defender", Role::is_person),
            Err("role: \"defender\" is not one of admin, operator, auditor".into())
        );
        assert_eq!(role("defender", |_| true), Ok(Role::Defender));
        assert!(role("root", |_| true).is_err());
    }
}
