//! The console's shared state and the operations both the API and the pages use: the policy
//! documents in force (the runtime policy and the WAAS policy, each kept in memory and announced
//! to long polls on change), replacing one after validation with the defender's own code, and
//! storage calls run off the async workers.

use std::sync::Arc;

use axum::Json;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use defender::policy::PolicyError;
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

use crate::auth::{Role, Tokens};
use crate::documents::{self, Doc, Kind, Runtime};
use crate::events::Event;
use crate::ingest::{Full, Ingest};
use crate::metrics::Metrics;
use crate::store::{ActivityEntry, Put, Store, StoreError, StoredPolicy};
use crate::throttle::Throttle;
use crate::webhooks::Webhooks;

/// The author of revision 1, the compiled-in default a new console starts with.
const FIRST_AUTHOR: &str = "console";
/// How often the documents in force are compared with the database's newest when other
/// instances write it: the bound on how long a lost notification leaves a long poll stale.
const FOLLOW_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

pub struct AppState {
    store: Arc<dyn Store>,
    pub tokens: Tokens,
    /// Each document's revision in force and replacement lock, by [`Doc::index`].
    documents: [Slot; Doc::ALL.len()],
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
    /// The connections open, and whether defender traffic is refused for want of descriptors.
    pub gate: Arc<crate::gate::Gate>,
    pub metrics: Arc<Metrics>,
    /// `--metrics-token`: what `/metrics` requires as a bearer token (`None`: nothing).
    pub metrics_token: Option<String>,
    /// Woken when audits are stored.
    pub webhooks: Webhooks,
    /// The threads storing audit batches, and their queue.
    pub ingest: Ingest,
    /// Heartbeats waiting to be written, and the thread writing them.
    pub beats: Arc<crate::beats::Beats>,
}

/// One document in force.
struct Slot {
    /// The revision in force; its receivers are the long polls waiting for a change. Only ever
    /// replaced by a newer revision ([`AppState::announce`]).
    current: watch::Sender<Arc<StoredPolicy>>,
    /// One replacement at a time, so revisions and announcements keep their order.
    replacing: Mutex<()>,
}

/// The outcome of a valid replacement.
pub enum Replaced {
    New(Arc<StoredPolicy>),
    /// The document is the one in force already: no new revision.
    Same(Arc<StoredPolicy>),
}

/// Why a replacement changed nothing; `E` is why a document of its kind is invalid.
pub enum ReplaceError<E = PolicyError> {
    Invalid(E),
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
pub enum Refused<E = PolicyError> {
    /// Another revision is in force than the one expected: this one.
    Stale(Arc<StoredPolicy>),
    Failed(ReplaceError<E>),
}

/// The current time as the console records it: RFC 3339, UTC, microseconds.
pub fn now() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

impl AppState {
    /// Loads the documents in force; a new console starts with each one's first document
    /// (the runtime policy: the defender's compiled-in default) as revision 1, so that
    /// defenders always get one.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Tokens,
        https: bool,
        log_polls: bool,
        session_idle: std::time::Duration,
        operations: Operations,
    ) -> Result<Self, StoreError> {
        let load = |doc: Doc| -> Result<Slot, StoreError> {
            let first = || {
                store.put_policy(
                    doc,
                    &documents::first_document(doc),
                    &now(),
                    FIRST_AUTHOR,
                    Some(0),
                )
            };
            let current = match store.policy(doc)? {
                Some(p) => p,
                // Behind: another instance stored the first revision meanwhile.
                None => match first()? {
                    Put::Saved(p) | Put::Behind(p) => p,
                },
            };
            Ok(Slot {
                current: watch::Sender::new(Arc::new(current)),
                replacing: Mutex::new(()),
            })
        };
        let documents = [load(Doc::Runtime)?, load(Doc::Waas)?];
        // The admin token's sessions end at every start: the token may have been changed
        // because it leaked, and its sessions must not outlive it. (`admin` has no user row;
        // deleting it ends the sessions of that name.)
        store.delete_user(Role::Admin.as_str())?;
        Ok(AppState {
            store,
            tokens,
            documents,
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

    fn slot(&self, doc: Doc) -> &Slot {
        &self.documents[doc.index()]
    }

    /// The runtime policy in force.
    pub fn policy(&self) -> Arc<StoredPolicy> {
        self.document(Doc::Runtime)
    }

    /// The revision of `doc` in force.
    pub fn document(&self, doc: Doc) -> Arc<StoredPolicy> {
        self.slot(doc).current.borrow().clone()
    }

    pub fn watch(&self, doc: Doc) -> watch::Receiver<Arc<StoredPolicy>> {
        self.slot(doc).current.subscribe()
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

    /// Stores an audit batch from `source` through the ingestion queue and answers how many of
    /// its events were new; 503 with `Retry-After` when the queue is full (nothing stored).
    pub async fn add_audits(&self, batch: Vec<Event>, source: String) -> Result<usize, ApiError> {
        let store = self.store.clone();
        let answer = self
            .operations
            .ingest
            .submit(batch.len(), move || {
                store.add_audits(&batch, &source, &now())
            })
            .map_err(|Full| {
                self.operations.metrics.audit_batches_refused.inc();
                ApiError::busy("the console's ingestion queue is full; send the batch again later")
            })?;
        match answer.await {
            Ok(Ok(stored)) => Ok(stored),
            Ok(Err(e)) => Err(ApiError::internal(e.to_string())),
            Err(_) => Err(ApiError::internal(
                "storage task: ended without an answer".to_owned(),
            )),
        }
    }

    /// Validates `text` as a runtime policy with the defender's parser and, if valid and
    /// different, stores it as the next revision, saved by `by` (the caller's name), and
    /// announces it. An invalid document changes nothing.
    pub async fn replace_policy(&self, text: &str, by: &str) -> Result<Replaced, ReplaceError> {
        match self.replace_if::<Runtime>(text, by, &Expect::Any).await {
            Ok(replaced) => Ok(replaced),
            Err(Refused::Failed(e)) => Err(e),
            // Nothing is stale to a replacement that expects any revision.
            Err(Refused::Stale(current)) => Ok(Replaced::Same(current)),
        }
    }

    /// [`AppState::replace_if`] for the runtime policy.
    pub async fn replace_policy_if(
        &self,
        text: &str,
        by: &str,
        expect: &Expect,
    ) -> Result<Replaced, Refused> {
        self.replace_if::<Runtime>(text, by, expect).await
    }

    /// Validates `text` as a document of kind `K` and, if valid and different, stores it as the
    /// next revision if the revision in force is one `expect` allows, and announces it. Decided
    /// under the lock that orders replacements: of two changes expecting the same revision, the
    /// second finds the first's in force and is refused.
    pub async fn replace_if<K: Kind>(
        &self,
        text: &str,
        by: &str,
        expect: &Expect,
    ) -> Result<Replaced, Refused<K::Invalid>> {
        let document = K::validated(text).map_err(|e| Refused::Failed(ReplaceError::Invalid(e)))?;
        let doc = K::DOC;
        let _held = self.slot(doc).replacing.lock().await;
        loop {
            let current = self.document(doc);
            if !expect.allows(current.revision) {
                return Err(Refused::Stale(current));
            }
            if current.document == document {
                return Ok(Replaced::Same(current));
            }
            let (text, author) = (document.clone(), by.to_owned());
            let after = Some(current.revision);
            let put = self
                .store(move |s| s.put_policy(doc, &text, &now(), &author, after))
                .await
                .map_err(|e| Refused::Failed(ReplaceError::Store(e)))?;
            match put {
                Put::Saved(stored) => {
                    let stored = Arc::new(stored);
                    self.announce(doc, stored.clone());
                    self.record(by, doc.action(), json!({ "revision": stored.revision }))
                        .await;
                    return Ok(Replaced::New(stored));
                }
                // Another instance saved a revision since this one's was read: that one is in
                // force now, and the decision is made again against it.
                Put::Behind(newest) => {
                    self.announce(doc, Arc::new(newest));
                }
            }
        }
    }

    /// Makes `policy` the revision of `doc` in force and wakes the long polls, if it is newer than
    /// the one in force (a check that read an older one late changes nothing); whether it was.
    fn announce(&self, doc: Doc, policy: Arc<StoredPolicy>) -> bool {
        self.slot(doc).current.send_if_modified(|current| {
            let newer = policy.revision > current.revision;
            if newer {
                *current = policy;
            }
            newer
        })
    }

    /// When other processes write the database (several console instances): keeps the documents
    /// in force current with it, at each notification of a change and every [`FOLLOW_CHECK`]
    /// (so that a notification lost with a connection delays a defender by that much at most).
    /// Returns at once when this process is the database's only writer.
    pub async fn follow(self: Arc<Self>) {
        let Some(changes) = self.store.changes() else {
            return;
        };
        loop {
            let how = tokio::select! {
                () = changes.notified() => "notified",
                () = tokio::time::sleep(FOLLOW_CHECK) => "found by the periodic check",
            };
            for doc in Doc::ALL {
                // A failure is logged by `store`; the next check tries again.
                if let Ok(Some(newest)) = self.store(move |s| s.policy(doc)).await {
                    let revision = newest.revision;
                    if self.announce(doc, Arc::new(newest)) {
                        eprintln!(
                            "defender-console: {} revision {revision}, saved through another \
                             console instance, is in force ({how})",
                            doc.noun()
                        );
                    }
                }
            }
        }
    }
}

/// An API error: a status and `{"error": message}` (plus `problems` for an invalid policy, and
/// `Retry-After` for a client to come back later).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub problems: Option<Vec<Value>>,
    pub retry_after: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            problems: None,
            retry_after: None,
        }
    }

    /// 503: the console cannot take this now; try again in a second.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some("1"),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
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

    /// 400 with every problem of an invalid document of kind `K`.
    pub fn invalid<K: Kind>(e: &K::Invalid) -> ApiError {
        let noun = K::DOC.noun();
        ApiError {
            problems: Some(K::problems(e)),
            ..ApiError::bad_request(format!("invalid {noun}; the {noun} in force is unchanged"))
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
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("a valid header"));
        }
        response
    }
}
