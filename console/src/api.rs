//! The JSON API under `/api/v1`: the policy documents (the runtime policy and the WAAS policy,
//! long-polled by defenders), audit events in and out (JSON, CSV), defenders' heartbeats (with the
//! activity they report); the documents' revisions are `lifecycle`'s, the proposal of a rule
//! `learning`'s.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, RawQuery, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::{ApiError, AppState, Replaced, now};
use crate::auth::{Caller, Defends, Edits, Member, Reads};
use crate::documents::{self, Kind as DocKind};
use crate::events::{self, AuditFilter};
use crate::lifecycle;
use crate::store::{AuditField, AuditQuery, DefenderSeen, Heartbeat, StoredEvent, StoredPolicy};
use defender::policy::Identity;

/// The longest a policy poll is held open.
const MAX_WAIT: u64 = 120;
/// Audit events per page when no limit is asked for (at most `events::MAX_LIMIT`).
const DEFAULT_LIMIT: u32 = 100;
/// Rows of a CSV download when no limit is asked for.
const DOWNLOAD_LIMIT: u32 = 1_000_000;
/// A defender is shown as connected while its last heartbeat is this recent (3 missed beats).
pub const CONNECTED_WITHIN: Duration = Duration::from_secs(15);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            documents::Runtime::DOC.path(),
            get(get_policy::<documents::Runtime>).put(put_policy::<documents::Runtime>),
        )
        .route(
            documents::Waas::DOC.path(),
            get(get_policy::<documents::Waas>).put(put_policy::<documents::Waas>),
        )
        .route(
            "/api/v1/audits/runtime/app-embedded",
            get(list_audits).post(post_audits),
        )
        .route(
            "/api/v1/audits/runtime/app-embedded/download",
            get(download_audits),
        )
        .route(
            "/api/v1/audits/runtime/app-embedded/stats",
            get(audit_stats),
        )
        .route(crate::learning::PROPOSAL, get(crate::learning::proposal))
        .route("/api/v1/defenders/heartbeat", post(heartbeat))
        .route("/api/v1/defenders", get(list_defenders))
        .merge(lifecycle::routes())
}

fn etag(p: &StoredPolicy) -> String {
    format!("\"{}\"", p.revision)
}

/// The entity tags `If-None-Match` names (weak ones as strong), copied out of the request: a
/// long poll keeps these, not the request's headers, which share the allocation of the
/// connection's read buffer and would keep it alive while the poll waits (hyper then takes a new
/// one to watch for the client closing).
struct NoneMatch(Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for NoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(NoneMatch::of(&parts.headers))
    }
}

impl NoneMatch {
    fn of(headers: &HeaderMap) -> NoneMatch {
        NoneMatch(
            headers
                .get_all(IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().trim_start_matches("W/").to_owned())
                .collect(),
        )
    }

    /// Whether it names this revision (or `*`).
    fn matches(&self, p: &StoredPolicy) -> bool {
        let tag = etag(p);
        self.0.iter().any(|t| *t == tag || t == "*")
    }
}

#[derive(Deserialize)]
struct Poll {
    wait: Option<u64>,
}

/// The document of kind `K` with its revision as `ETag`. With `If-None-Match` naming the
/// revision in force, 304 at once, or with `?wait=SECONDS` as soon as it changes (304 if it does
/// not).
async fn get_policy<K: DocKind>(
    _: Member,
    State(state): State<Arc<AppState>>,
    none_match: NoneMatch,
    Query(poll): Query<Poll>,
) -> Response {
    let mut changes = state.watch(K::DOC);
    let mut current = changes.borrow_and_update().clone();
    if none_match.matches(&current) {
        let wait = Duration::from_secs(poll.wait.unwrap_or(0).min(MAX_WAIT));
        let deadline = tokio::time::Instant::now() + wait;
        // Counted open while it waits; dropped (and no longer counted) when it answers or its
        // client goes away.
        let _open =
            (!wait.is_zero()).then(|| OpenPoll::new(&state.operations.metrics.long_polls_open));
        if !wait.is_zero() && state.log_polls {
            // Subscribed above: a change from now on wakes this poll. Tests wait for this line
            // before they change the policy.
            eprintln!(
                "defender-console: a {} poll waits up to {} s for a change from revision {}",
                K::DOC.noun(),
                wait.as_secs(),
                current.revision
            );
        }
        loop {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {
                    current = changes.borrow_and_update().clone();
                    if !none_match.matches(&current) {
                        break;
                    }
                }
                _ => return (StatusCode::NOT_MODIFIED, [(ETAG, etag(&current))]).into_response(),
            }
        }
    }
    (
        [
            (ETAG, etag(&current)),
            (CONTENT_TYPE, "application/json".into()),
        ],
        current.document.clone(),
    )
        .into_response()
}

/// A long poll counted in `long_polls_open` while it lives.
struct OpenPoll(prometheus_client::metrics::gauge::Gauge);

impl OpenPoll {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> OpenPoll {
        gauge.inc();
        OpenPoll(gauge.clone())
    }
}

impl Drop for OpenPoll {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Serialize)]
struct PutAnswer {
    revision: u64,
    changed: bool,
}

/// Replaces the document of kind `K`; 400 with every problem when it does not validate, 412 when
/// `If-Match` names another revision than the one in force (without it, the replacement is
/// unconditional).
async fn put_policy<K: DocKind>(
    Edits(caller): Edits,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let expect = lifecycle::if_match(&headers)?;
    let replaced = state.replace_if::<K>(&body, &caller.name, &expect).await;
    let (stored, changed) = match replaced.map_err(lifecycle::refused::<K>)? {
        Replaced::New(p) => (p, true),
        Replaced::Same(p) => (p, false),
    };
    let answer = PutAnswer {
        revision: stored.revision,
        changed,
    };
    Ok(([(ETAG, etag(&stored))], Json(answer)).into_response())
}

/// The container an event or a heartbeat comes from, as collections select it.
fn identity(
    container: &str,
    image: &str,
    cluster: &Option<String>,
    family: &Option<String>,
    service: &Option<String>,
) -> Identity {
    Identity {
        container: container.to_owned(),
        image: image.to_owned(),
        cluster: cluster.clone(),
        family: family.clone(),
        service: service.clone(),
    }
}

/// 403 unless a scoped token's collections hold the container `who` (`what` names the event or
/// heartbeat for the message).
fn in_scope(caller: &Caller, what: &str, who: &Identity) -> Result<(), ApiError> {
    match &caller.scope {
        Some(scope) if !scope.admits(who) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{what}: container {:?} (image {:?}) is outside the collections of the token {:?}; \
                 nothing was stored",
                who.container, who.image, caller.name
            ),
        )),
        _ => Ok(()),
    }
}

/// A batch of audit events: stored whole or, if any is malformed or (for a scoped token) from a
/// container outside its collections, not at all. Each event stored names the token (`source`).
async fn post_audits(
    Defends(caller): Defends,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let batch = events::parse_batch(&body).map_err(ApiError::bad_request)?;
    for (i, e) in batch.iter().enumerate() {
        let who = identity(&e.container, &e.image, &e.cluster, &e.family, &e.service);
        in_scope(&caller, &format!("[{i}]"), &who)?;
    }
    let received = batch.len();
    let stored = state.add_audits(batch, caller.name).await?;
    state
        .operations
        .metrics
        .audits_received
        .inc_by(received as u64);
    state.operations.metrics.audits_stored.inc_by(stored as u64);
    if stored > 0 {
        // The webhooks read what was stored from the database; this only wakes them.
        state.operations.webhooks.wake();
    }
    Ok(Json(json!({ "received": received, "stored": stored })))
}

/// The header that tells how many events match a query, before `limit` and `offset`.
const TOTAL: &str = "x-total-count";
/// The header that says a summary counted only this many of the newest matching events (ours:
/// the rollup of counts could not answer it, and reading every match would not be bounded).
const SAMPLED: &str = "x-sampled-events";
/// Summary rows when no limit is asked for: groups, or histogram buckets.
const STATS_LIMIT: u32 = 100;
const HISTOGRAM_LIMIT: u32 = events::MAX_LIMIT;
/// The widest histogram bucket: a year.
const MAX_BUCKET_MINUTES: u32 = 366 * 24 * 60;

/// A query string's audit query, or the 400 naming the parameter that is wrong.
fn audit_query(query: Option<&str>, default_limit: u32) -> Result<AuditQuery, ApiError> {
    AuditFilter::parse(query)
        .and_then(|f| f.query(default_limit))
        .map_err(ApiError::bad_request)
}

/// The events of a query and how many match in all.
async fn find_audits(
    state: &AppState,
    query: AuditQuery,
) -> Result<(Vec<StoredEvent>, u64), ApiError> {
    state
        .store(move |s| Ok((s.audits(&query)?, s.count_audits(&query)?)))
        .await
}

async fn list_audits(
    _: Reads,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = audit_query(query.as_deref(), DEFAULT_LIMIT)?;
    let (events, total) = find_audits(&state, query).await?;
    Ok(([(TOTAL, total.to_string())], Json(events)).into_response())
}

async fn download_audits(
    _: Reads,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = audit_query(query.as_deref(), DOWNLOAD_LIMIT)?;
    let (events, total) = find_audits(&state, query).await?;
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                CONTENT_DISPOSITION,
                "attachment; filename=\"app-embedded-audits.csv\"".to_owned(),
            ),
            (HeaderName::from_static(TOTAL), total.to_string()),
        ],
        events::to_csv(&events),
    )
        .into_response())
}

/// A summary's response, with [`SAMPLED`] when it was computed over a sample.
fn sampled(sample: Option<u64>, body: impl IntoResponse) -> Response {
    match sample {
        Some(n) => ([(SAMPLED, n.to_string())], body).into_response(),
        None => body.into_response(),
    }
}

/// A summary of the events a query selects: `group=FIELD` (the values of one field, largest
/// first) or `histogram=MINUTES` (buckets of time by effect), exactly one of them.
async fn audit_stats(
    _: Reads,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (filter, extra) = AuditFilter::parse_with(query.as_deref(), &["group", "histogram"])
        .map_err(ApiError::bad_request)?;
    match (extra.get("group"), extra.get("histogram")) {
        (Some(group), None) => {
            let field = AuditField::GROUPS
                .into_iter()
                .find(|f| f.name() == group)
                .ok_or_else(|| {
                    let names: Vec<&str> = AuditField::GROUPS.iter().map(|f| f.name()).collect();
                    ApiError::bad_request(format!(
                        "group: {group:?} is none of {}",
                        names.join(", ")
                    ))
                })?;
            let query = filter.query(STATS_LIMIT).map_err(ApiError::bad_request)?;
            let groups = state.store(move |s| s.audit_stats(&query, field)).await?;
            let body: Vec<serde_json::Value> = groups
                .rows
                .iter()
                .map(|(key, count)| json!({ "key": key, "count": count }))
                .collect();
            Ok(sampled(groups.sampled, Json(body)))
        }
        (None, Some(minutes)) => {
            let minutes = minutes
                .parse::<u32>()
                .ok()
                .filter(|m| (1..=MAX_BUCKET_MINUTES).contains(m))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "histogram: {minutes:?} is not a whole number of minutes from 1 to \
                         {MAX_BUCKET_MINUTES}"
                    ))
                })?;
            let query = filter
                .query(HISTOGRAM_LIMIT)
                .map_err(ApiError::bad_request)?;
            let buckets = state
                .store(move |s| s.audit_histogram(&query, minutes))
                .await?;
            Ok(sampled(buckets.sampled, Json(buckets.rows)))
        }
        _ => Err(ApiError::bad_request(
            "group or histogram: exactly one of them is required",
        )),
    }
}

async fn heartbeat(
    Defends(caller): Defends,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let beat: Heartbeat = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("heartbeat: {e}")))?;
    if beat.id.is_empty() || beat.container.is_empty() {
        return Err(ApiError::bad_request(
            "heartbeat: id and container are required",
        ));
    }
    let who = identity(
        &beat.container,
        &beat.image,
        &beat.cluster,
        &beat.family,
        &beat.service,
    );
    in_scope(&caller, "heartbeat", &who)?;
    let observed = crate::learning::observed(&body).map_err(ApiError::bad_request)?;
    // Written with the next batch (`beats`); every read of the defenders writes it first.
    state
        .operations
        .beats
        .record(beat, observed, now())
        .map_err(|crate::beats::Full| {
            ApiError::busy("the console has too many heartbeats waiting; send it again later")
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A defender as `GET /defenders` shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefenderView {
    #[serde(flatten)]
    pub beat: Heartbeat,
    pub first_seen: String,
    pub last_seen: String,
    pub connected: bool,
    /// Whether it enforces the revision in force.
    pub current: bool,
}

pub async fn defenders(state: &AppState) -> Result<Vec<DefenderView>, ApiError> {
    crate::beats::flush_before_reading(&state.operations.beats).await?;
    let seen = state.store(|s| s.defenders()).await?;
    let revision = state.policy().revision.to_string();
    let now = std::time::SystemTime::now();
    let view = |d: DefenderSeen| {
        let recent = humantime::parse_rfc3339(&d.last_seen)
            .ok()
            .and_then(|t| now.duration_since(t).ok().or(Some(Duration::ZERO)))
            .is_some_and(|age| age <= CONNECTED_WITHIN);
        DefenderView {
            current: d.beat.revision.as_deref() == Some(revision.as_str()),
            connected: recent,
            beat: d.beat,
            first_seen: d.first_seen,
            last_seen: d.last_seen,
        }
    };
    Ok(seen.into_iter().map(view).collect())
}

async fn list_defenders(
    _: Reads,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<DefenderView>>, ApiError> {
    Ok(Json(defenders(&state).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match() {
        let p = StoredPolicy {
            revision: 7,
            document: String::new(),
            updated: String::new(),
            by: None,
        };
        for (header, want) in [
            ("\"7\"", true),
            ("W/\"7\"", true),
            ("\"6\", \"7\"", true),
            ("*", true),
            ("\"17\"", false),
            ("7", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(IF_NONE_MATCH, header.parse().unwrap());
            assert_eq!(NoneMatch::of(&h).matches(&p), want, "{header}");
        }
        assert!(!NoneMatch::of(&HeaderMap::new()).matches(&p));
    }
}
