//! Storage, behind one narrow interface: the policy documents (runtime, WAAS) and their revisions, audit events, defenders'
//! heartbeats and the activity they report. SQLite in the data directory (the default, one console
//! process), or PostgreSQL (`--database postgres://...`, several console instances behind a load
//! balancer); both answer audit queries by the same plans.
//!
//! Calls are blocking; the web layer runs them off its async workers. Times are RFC 3339 UTC
//! strings with microseconds, which sort as text.

mod audits;
mod bitmaps;
mod deliveries;
mod group;
mod lists;
mod observations;
mod people;
mod postgres;
mod query;
mod rollup;
mod sample;
mod sql;
mod sqlite;
#[cfg(test)]
mod tests;
mod word_rows;
mod words;
mod writer;

pub use bitmaps::Sealed;
pub use postgres::Postgres;
pub use query::{AuditField, AuditQuery, Bucket, Expired, Pattern, Search, Summary};
pub use rollup::SAMPLE;
pub use sqlite::Sqlite;

use crate::documents::Doc;
use crate::events::Event;

/// A storage call that failed, with the backend's own error as its source.
#[derive(Debug, thiserror::Error)]
#[error("storage: {source}")]
pub struct StoreError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// An error of a message of ours.
    fn message(message: String) -> StoreError {
        StoreError {
            source: message.into(),
        }
    }
}

/// A database written by a newer console than this one: opening it could misread its rows.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database is at schema version {found}, newer than this console's {known}: run the newer \
     console"
)]
struct TooNew {
    found: i64,
    known: usize,
}

impl TooNew {
    /// The error of a database at schema version `found`, when this console knows `known`.
    fn error(found: i64, known: usize) -> StoreError {
        StoreError {
            source: Box::new(TooNew { found, known }),
        }
    }
}

/// The time before which [`Store::expire`] deletes audits for `cutoff`: the start of its hour,
/// since the rollup forgets whole hours (`None`: not a time the store takes).
pub fn audits_cutoff(cutoff: &str) -> Option<String> {
    rollup::aligned(cutoff).ok().map(|(_, start)| start)
}

/// The table of a document's revisions, in both stores (a name of ours, never a value from
/// outside).
fn table(doc: Doc) -> &'static str {
    match doc {
        Doc::Runtime => "policies",
        Doc::Waas => "waas_policies",
    }
}

/// The columns of a [`StoredPolicy`], in the order both stores read them.
const POLICY_COLUMNS: &str = "revision, document, updated, author";

/// The columns of a [`TokenRecord`], in the order both stores read them.
const TOKEN_COLUMNS: &str = "name, role, hash, collections, created, last_used, revoked";

/// A revision of the policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    pub revision: u64,
    /// The document as validated, pretty-printed.
    pub document: String,
    pub updated: String,
    /// Who saved it (the caller's name); `None` for revisions saved before authors were kept.
    pub by: Option<String>,
}

/// A revision as the history lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Revision {
    pub revision: u64,
    /// When it was saved.
    pub time: String,
    pub by: Option<String>,
    /// How many rules it holds.
    pub rules: u64,
}

/// What a defender says in its heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    /// This run of the defender.
    pub id: String,
    pub container: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The ECS identity, when the defender knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub version: String,
    /// The policy revision it enforces (`None`: a local policy).
    #[serde(default)]
    pub revision: Option<String>,
    /// The ports its web application firewall sits in front of (none without a WAAS rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protects: Vec<u16>,
}

/// A defender's heartbeats since they were last written, as one: the last beat's fields, the
/// activity of all of them (stored bounded per container and image, under the last beat's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beat {
    pub beat: Heartbeat,
    pub observed: defender::activity::Observed,
    /// When the first and the last of them arrived.
    pub first: String,
    pub last: String,
}

#[cfg(test)]
impl Beat {
    /// One heartbeat, arrived at `now`.
    pub fn one(beat: Heartbeat, observed: defender::activity::Observed, now: &str) -> Beat {
        Beat {
            beat,
            observed,
            first: now.to_owned(),
            last: now.to_owned(),
        }
    }
}

/// A value defenders reported (`observed` in heartbeats) for a container and image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub container: String,
    pub image: String,
    pub kind: defender::activity::Kind,
    pub value: String,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// A defender as last heard from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefenderSeen {
    pub beat: Heartbeat,
    pub first_seen: String,
    pub last_seen: String,
}

/// What [`Store::put_policy`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// Stored as this revision.
    Saved(StoredPolicy),
    /// Not stored: the newest revision is this one, not the one the caller said it follows
    /// (another console instance saved one meanwhile).
    Behind(StoredPolicy),
}

#[cfg(test)]
impl Put {
    /// The revision stored (a test that expects it to be).
    pub fn saved(self) -> StoredPolicy {
        match self {
            Put::Saved(p) => p,
            Put::Behind(p) => panic!("not stored: revision {} is newest", p.revision),
        }
    }
}

/// Work one console instance of several does at a time (a webhook's deliveries), held until
/// dropped.
pub trait Lease: Send {
    /// Whether it is still held (PostgreSQL: its connection still answers). Checked before each
    /// step of the work: another instance may take it once this one's connection is gone.
    fn held(&self) -> bool;
}

pub trait Store: Send + Sync {
    /// The newest revision of `doc`, `None` before the first.
    fn policy(&self, doc: Doc) -> Result<Option<StoredPolicy>, StoreError>;
    /// Stores `document` (validated by the caller) as the next revision of `doc`, saved by `by`,
    /// if the newest revision stored is `after` (0: none yet); with `None`, whatever it is.
    fn put_policy(
        &self,
        doc: Doc,
        document: &str,
        now: &str,
        by: &str,
        after: Option<u64>,
    ) -> Result<Put, StoreError>;
    /// Woken when another process may have stored a policy revision (`None`: no other process
    /// writes this database).
    fn changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>>;
    /// Whether this instance should run `task` now: `true` for one instance of the fleet per
    /// period, the first to ask at `now` since none did at `since` or later.
    fn turn(&self, task: &str, now: &str, since: &str) -> Result<bool, StoreError>;
    /// The lease of `name` if no other instance holds it (`None` if one does).
    fn lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError>;
    /// Stores a batch all together or not at all; events whose `id` is stored already are
    /// skipped (delivery is at least once). Returns how many were new.
    /// `source` is the name of the token that delivered them.
    fn add_audits(&self, events: &[Event], source: &str, now: &str) -> Result<usize, StoreError>;
    /// The events `query` selects, newest first (the same time: the later arrival first).
    fn audits(&self, query: &AuditQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// The event of this `id`, if one is stored (the audits page's event page).
    fn audit(&self, id: &str) -> Result<Option<StoredEvent>, StoreError>;
    /// How many events `query` selects, its `limit` and `offset` aside; exact (from the rollup
    /// of counts when it answers the query).
    fn count_audits(&self, query: &AuditQuery) -> Result<u64, StoreError>;
    /// The values of `group` among the events `query` selects, each with the sum of their
    /// events' `count` fields, largest first (ties by value); events without the field are in
    /// no group. `limit` and `offset` apply to the groups. Exact when the rollup answers the
    /// query; else over the newest [`SAMPLE`] matching events, said in `sampled` when more match.
    fn audit_stats(
        &self,
        query: &AuditQuery,
        group: AuditField,
    ) -> Result<Summary<Vec<(String, u64)>>, StoreError>;
    /// The events `query` selects, their `count` fields summed per bucket of `minutes` (aligned
    /// on the Unix epoch: starts are multiples of the width) and effect, oldest first. Only
    /// buckets holding events are listed: the newest `limit` of them, after skipping `offset`.
    /// Exact or sampled as [`Store::audit_stats`].
    fn audit_histogram(
        &self,
        query: &AuditQuery,
        minutes: u32,
    ) -> Result<Summary<Vec<Bucket>>, StoreError>;
    /// Deletes audits (by their `time`, the cutoff aligned down to a whole hour UTC, with the
    /// rollup's hours before it), activity-log entries, defenders (by when last seen) and
    /// observations (by when last seen) older than `cutoff`, `batch` rows per write transaction
    /// so that ingestion waits for one batch at most; then refreshes the statistics the backend
    /// chooses its indexes by.
    fn expire(&self, cutoff: &str, batch: u32) -> Result<Expired, StoreError>;
    /// Seals the lowest complete chunk of audits not sealed yet into the bitmap index (which
    /// counts several large conditions together and lists a page's few matches), or with
    /// `parts` and none waiting, the newest chunk in part (as far as events are stored); `None`
    /// when none is waiting, or when retention deleted events while it was read (it is read
    /// again at the next call).
    fn seal(&self, parts: bool) -> Result<Option<Sealed>, StoreError>;
    /// Up to `limit` audits stored after arrival position `seq`, oldest first, each with its own.
    fn audits_after(&self, seq: i64, limit: u32) -> Result<Vec<(i64, StoredEvent)>, StoreError>;
    /// Records heartbeats, each a defender's beats since the last write coalesced, with the
    /// activity they reported, all together in one transaction or not at all (the caller bounds
    /// how many a call holds). A new defender is first seen at its `first`; every one is last seen
    /// at its `last`, its fields those of its last beat.
    fn heartbeats(&self, beats: &[Beat]) -> Result<(), StoreError>;
    /// Every defender ever heard from, most recently seen first.
    fn defenders(&self) -> Result<Vec<DefenderSeen>, StoreError>;

    // ---- revisions ----
    /// Every revision of `doc` (each replacement adds one; none is ever deleted), newest first.
    fn revisions(&self, doc: Doc) -> Result<Vec<Revision>, StoreError>;
    /// One revision of `doc`, `None` if there is no such revision.
    fn revision(&self, doc: Doc, revision: u64) -> Result<Option<StoredPolicy>, StoreError>;

    // ---- observations ----
    /// The activity last seen at `since` or later (all with `None`).
    fn observations(&self, since: Option<&str>) -> Result<Vec<Observation>, StoreError>;

    // ---- operations ----
    /// Whether the database answers a query (`/readyz`); the error says why not.
    fn ready(&self) -> Result<(), StoreError>;
    /// The bytes the database takes on disk.
    fn size(&self) -> Result<u64, StoreError>;
    /// The arrival position of the last audit delivered to webhook `target` (a digest of its
    /// URL); a new target starts at the newest audit stored.
    fn delivery_cursor(&self, target: &str) -> Result<i64, StoreError>;
    fn set_delivery_cursor(&self, target: &str, seq: i64) -> Result<(), StoreError>;

    // ---- people ----
    /// Adds a user; `false` when the name is taken.
    fn add_user(&self, user: &UserRecord) -> Result<bool, StoreError>;
    fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Deletes a user and ends their sessions; `false` when there was none.
    fn delete_user(&self, name: &str) -> Result<bool, StoreError>;
    fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// The session of this id hash if it was seen since `idle_cutoff`, marked seen `now`.
    fn session(
        &self,
        id_hash: &str,
        now: &str,
        idle_cutoff: &str,
    ) -> Result<Option<SessionRecord>, StoreError>;
    fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Adds a named token; `false` when the name was ever used.
    fn add_token(&self, token: &TokenRecord) -> Result<bool, StoreError>;
    /// The unrevoked token of this hash, its use at `now` recorded.
    fn use_token(&self, hash: &str, now: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every named token, revoked ones too.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes a token; `false` when there was no such unrevoked token.
    fn revoke_token(&self, name: &str, now: &str) -> Result<bool, StoreError>;
    fn add_activity(&self, entry: &ActivityEntry) -> Result<(), StoreError>;
    /// Newest first.
    fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityEntry>, StoreError>;
}

/// An audit event as stored: the event, and the name of the token that delivered it (`None`
/// for events stored before tokens were recorded).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredEvent {
    #[serde(flatten)]
    pub event: Event,
    pub source: Option<String>,
}

/// A user: `role` is a person's role's name; `hash` an Argon2id PHC string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: String,
    pub hash: String,
    pub created: String,
}

/// A session of the pages: the SHA-256 of its id (the id itself is only in the cookie).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub last_seen: String,
}

/// A named token: the SHA-256 of the token, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: String,
    pub hash: String,
    /// JSON, a rule's `collections`: where a defender token may report from.
    pub collections: Option<String>,
    pub created: String,
    pub last_used: Option<String>,
    pub revoked: Option<String>,
}

/// One line of the activity log.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ActivityEntry {
    pub time: String,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// `since <= time < until`, newest first, at most `limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: u32,
}
