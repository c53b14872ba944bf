//! The console's shared state and the operations both the API and the pages use: the policy in
//! force (kept in memory and announced to long polls on change), replacing it after validation
//! with the defender's own code, and storage calls run off the async workers.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::WWW_AUTHENTICATE;
use axum::response::{IntoResponse, Response};
use defender::policy::{self, PolicyError};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::auth::{Role, Tokens};
use crate::metrics::Metrics;
use crate::store::{ActivityEntry, Store, StoreError, StoredPolicy};
use crate::throttle::Throttle;
use crate::webhooks::Webhooks;

/// The author of revision 1, the compiled-in default a new console starts with.
const FIRST_AUTHOR: &str = "console";

pub struct AppState {
    store: Arc<dyn Store>,
    pub tokens: Tokens,
    /// The revision in force; its receivers are the long polls waiting for a change.
    /// (Several console instances would learn of changes from the database instead.)
    policy: watch::Sender<Arc<StoredPolicy>>,
    /// One replacement at a time, so revisions and announcements keep their order.
    replacing: Mutex<()>,
    /// Served over HTTPS: the session cookie is marked Secure.
    pub https: bool,
    /// `--log-polls`: a line for every long poll that starts waiting.
    pub log_polls: bool,
    /// `--session-idle`: a session unused this long has ended.
    pub session_idle: std::time::Duration,
    /// Failed logins, by user name and client address.
    pub throttle: std::sync::Mutex<Throttle>,
    pub operations: Operations,
}

/// What the console runs besides serving requests, and how it is watched.
pub struct Operations {
    pub metrics: Arc<Metrics>,
    /// `--metrics-token`: what `/metrics` requires as a bearer token (`None`: nothing).
    pub metrics_token: Option<String>,
    /// Woken when audits are stored.
    pub webhooks: Webhooks,
}

/// The outcome of a valid replacement.
pub enum Replaced {
    New(Arc<StoredPolicy>),
    /// The document is the one in force already: no new revision.
    Same(Arc<StoredPolicy>),
}

pub enum ReplaceError {
    Invalid(PolicyError),
    Store(ApiError),
}

/// What a conditional replacement requires of the revision in force when it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Any revision (no `If-Match`, or `If-Match: *`: there is always a revision in force).
    Any,
    /// One of these: the revisions an `If-Match` names, the one a page was opened at.
    OneOf(Vec<u64>),
}

impl Expect {
    pub fn allows(&self, revision: u64) -> bool {
        match self {
            Expect::Any => true,
            Expect::OneOf(revisions) => revisions.contains(&revision),
        }
    }
}

/// Why a conditional replacement changed nothing.
pub enum Refused {
    /// Another revision is in force than the one expected: this one.
    Stale(Arc<StoredPolicy>),
    Failed(ReplaceError),
}

/// The current time as the console records it: RFC 3339, UTC, microseconds.
pub fn now() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

impl AppState {
    /// Loads the policy in force; a new console starts with the defender's compiled-in default
    /// as revision 1, so that defenders always get a policy.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Tokens,
        https: bool,
        log_polls: bool,
        session_idle: std::time::Duration,
        operations: Operations,
    ) -> Result<Self, StoreError> {
        let current = match store.policy()? {
            Some(p) => p,
            None => store.put_policy(
                &policy::default_policy().to_json_pretty(),
                &now(),
                FIRST_AUTHOR,
            )?,
        };
        // The admin token's sessions end at every start: the token may have been changed
        // because it leaked, and its sessions must not outlive it. (`admin` has no user row;
        // deleting it ends the sessions of that name.)
        store.delete_user(Role::Admin.as_str())?;
        Ok(AppState {
            store,
            tokens,
            policy: watch::Sender::new(Arc::new(current)),
            replacing: Mutex::new(()),
            https,
            log_polls,
            session_idle,
            throttle: std::sync::Mutex::default(),
            operations,
        })
    }

    /// Sessions last seen before this time have ended.
    pub fn idle_cutoff(&self) -> String {
        let then = std::time::SystemTime::now()
            .checked_sub(self.session_idle)
            .unwrap_or(std::time::UNIX_EPOCH);
        humantime::format_rfc3339_micros(then).to_string()
    }

    /// Writes a line of the activity log: `actor` did `action`. A failure to write it is
    /// reported on stderr and does not undo the action.
    pub async fn record(&self, actor: &str, action: &str, detail: Value) {
        let entry = ActivityEntry {
            time: now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail,
        };
        if let Err(e) = self.store(move |s| s.add_activity(&entry)).await {
            eprintln!("defender-console: activity log: {}", e.message);
        }
    }

    pub fn policy(&self) -> Arc<StoredPolicy> {
        self.policy.borrow().clone()
    }

    pub fn watch_policy(&self) -> watch::Receiver<Arc<StoredPolicy>> {
        self.policy.subscribe()
    }

    /// Runs a storage call on the blocking pool.
    pub async fn store<T, F>(&self, call: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || call(&*store)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ApiError::internal(e.to_string())),
            Err(e) => Err(ApiError::internal(format!("storage task: {e}"))),
        }
    }

    /// Validates `text` with the defender's parser and, if valid and different, stores it as the
    /// next revision, saved by `by` (the caller's name), and announces it. An invalid document
    /// changes nothing.
    pub async fn replace_policy(&self, text: &str, by: &str) -> Result<Replaced, ReplaceError> {
        let document = validated(text)?;
        let held = self.replacing.lock().await;
        self.store_replacement(&held, document, by).await
    }

    /// [`AppState::replace_policy`] if the revision in force is one `expect` allows, decided
    /// under the lock that orders replacements: of two changes expecting the same revision, the
    /// second finds the first's in force and is refused.
    pub async fn replace_policy_if(
        &self,
        text: &str,
        by: &str,
        expect: &Expect,
    ) -> Result<Replaced, Refused> {
        let document = validated(text).map_err(Refused::Failed)?;
        let held = self.replacing.lock().await;
        let current = self.policy();
        if !expect.allows(current.revision) {
            return Err(Refused::Stale(current));
        }
        self.store_replacement(&held, document, by)
            .await
            .map_err(Refused::Failed)
    }

    /// Stores `document` as the next revision unless it is the one in force; `_held` is the
    /// replacement lock, held by the caller since it looked at the revision in force.
    async fn store_replacement(
        &self,
        _held: &MutexGuard<'_, ()>,
        document: String,
        by: &str,
    ) -> Result<Replaced, ReplaceError> {
        let current = self.policy();
        if current.document == document {
            return Ok(Replaced::Same(current));
        }
        let author = by.to_owned();
        let stored = self
            .store(move |s| s.put_policy(&document, &now(), &author))
            .await
            .map_err(ReplaceError::Store)?;
        let stored = Arc::new(stored);
        self.policy.send_replace(stored.clone());
        self.record(by, "policy", json!({ "revision": stored.revision }))
            .await;
        Ok(Replaced::New(stored))
    }
}

/// The document as the defender's parser validated it, pretty-printed: the form it is stored in.
fn validated(text: &str) -> Result<String, ReplaceError> {
    Ok(policy::parse(text)
        .map_err(ReplaceError::Invalid)?
        .to_json_pretty())
}

/// Every problem of an invalid policy, for the API: where (the list, `rules` or
/// `customRules`, the entry's index and name, the field: `script:LINE:COLUMN` for a custom rule's
/// script) and what, plus the one-line text `defender policy check` prints.
fn problems(e: &PolicyError) -> Vec<Value> {
    match e {
        PolicyError::Syntax {
            line,
            column,
            message,
        } => vec![json!({
            "list": null, "rule": null, "name": null, "field": "", "line": line, "column": column,
            "message": message, "text": e.to_string(),
        })],
        PolicyError::Invalid(list) => list
            .iter()
            .map(|p| {
                json!({
                    "list": p.rule.as_ref().map(|r| r.list.as_str()),
                    "rule": p.rule.as_ref().map(|r| r.index),
                    "name": p.rule.as_ref().and_then(|r| r.name.clone()),
                    "field": p.field,
                    "message": p.message,
                    "text": p.to_string(),
                })
            })
            .collect(),
    }
}

/// An API error: a status and `{"error": message}` (plus `problems` for an invalid policy).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub problems: Option<Vec<Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            problems: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "a valid token is required")
    }

    pub fn forbidden(role: Role) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("the role {} may not do this", role.as_str()),
        )
    }

    pub fn internal(message: String) -> ApiError {
        eprintln!("defender-console: error: {message}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn invalid_policy(e: &PolicyError) -> ApiError {
        ApiError {
            problems: Some(problems(e)),
            ..ApiError::bad_request("invalid policy; the policy in force is unchanged")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(p) = self.problems {
            body["problems"] = Value::Array(p);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("a valid header"));
        }
        response
    }
}
