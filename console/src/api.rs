//! The JSON API under `/api/v1`: the policy documents (the runtime policy and the WAAS policy,
//! long-polled by defenders), audit events in and out (JSON, CSV), defenders' heartbeats (with the
//! activity they report); the documents' revisions are `lifecycle`'s, the proposal of a rule
//! `learning`'s.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::{ApiError, AppState, Replaced, now};
use crate::auth::{Caller, Defends, Edits, Member, Reads};
use crate::documents::{self, Kind as DocKind};
use crate::events::{self, Effect, Kind, parse_name};
use crate::lifecycle;
use crate::store::{AuditQuery, DefenderSeen, Heartbeat, StoredEvent, StoredPolicy};
use defender::policy::Identity;

/// The longest a policy poll is held open.
const MAX_WAIT: u64 = 120;
/// Audit events per page when no limit is asked for, and the most one page may hold.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;
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
        .route(crate::learning::PROPOSAL, get(crate::learning::proposal))
        .route("/api/v1/defenders/heartbeat", post(heartbeat))
        .route("/api/v1/defenders", get(list_defenders))
        .merge(lifecycle::routes())
}

fn etag(p: &StoredPolicy) -> String {
    format!("\"{}\"", p.revision)
}

/// Whether `If-None-Match` names this revision (or `*`).
fn matches(headers: &HeaderMap, p: &StoredPolicy) -> bool {
    let tag = etag(p);
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
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
    headers: HeaderMap,
    Query(poll): Query<Poll>,
) -> Response {
    let mut changes = state.watch(K::DOC);
    let mut current = changes.borrow_and_update().clone();
    if matches(&headers, &current) {
        let wait = Duration::from_secs(poll.wait.unwrap_or(0).min(MAX_WAIT));
        let deadline = tokio::time::Instant::now() + wait;
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
                    if !matches(&headers, &current) {
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
    let stored = state
        .store(move |s| s.add_audits(&batch, &caller.name, &now()))
        .await?;
    Ok(Json(json!({ "received": received, "stored": stored })))
}

/// The audit filters of the query string (the API's and the audits page's).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AuditFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(
        rename = "customRule",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

impl AuditFilter {
    /// The storage query; an unknown type or effect, or a time that is not RFC 3339, is an error.
    /// Empty parameters (as an HTML form sends them) mean no filter.
    pub fn query(&self, default_limit: u32) -> Result<AuditQuery, String> {
        let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let time = |name: &str, v: &Option<String>| {
            given(v)
                .map(|t| events::normalize_time(&t).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let kind = given(&self.kind)
            .map(|k| {
                parse_name(&k, &Kind::ALL, Kind::as_str).ok_or(format!("type: unknown type {k:?}"))
            })
            .transpose()?;
        let effect = given(&self.effect)
            .map(|e| {
                parse_name(&e, &Effect::ALL, Effect::as_str)
                    .ok_or(format!("effect: unknown effect {e:?}"))
            })
            .transpose()?;
        Ok(AuditQuery {
            container: given(&self.container),
            image: given(&self.image),
            kind,
            effect,
            rule: given(&self.rule),
            custom_rule: given(&self.custom_rule),
            cluster: given(&self.cluster),
            family: given(&self.family),
            service: given(&self.service),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            limit: self
                .limit
                .unwrap_or(default_limit)
                .min(default_limit.max(MAX_LIMIT)),
            offset: self.offset.unwrap_or(0),
        })
    }
}

async fn find_audits(
    state: &AppState,
    filter: &AuditFilter,
    default_limit: u32,
) -> Result<Vec<StoredEvent>, ApiError> {
    let query = filter.query(default_limit).map_err(ApiError::bad_request)?;
    state.store(move |s| s.audits(&query)).await
}

async fn list_audits(
    _: Reads,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<Vec<StoredEvent>>, ApiError> {
    Ok(Json(find_audits(&state, &filter, DEFAULT_LIMIT).await?))
}

async fn download_audits(
    _: Reads,
    State(state): State<Arc<AppState>>,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ApiError> {
    let events = find_audits(&state, &filter, DOWNLOAD_LIMIT).await?;
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                CONTENT_DISPOSITION,
                "attachment; filename=\"app-embedded-audits.csv\"",
            ),
        ],
        events::to_csv(&events),
    )
        .into_response())
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
    state
        .store(move |s| {
            let now = now();
            s.heartbeat(&beat, &now)?;
            s.observe(&beat, &observed, &now)
        })
        .await?;
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
            assert_eq!(matches(&h, &p), want, "{header}");
        }
        assert!(!matches(&HeaderMap::new(), &p));
    }

    #[test]
    fn filters() {
        let f = |pairs: &str| -> AuditFilter { serde_urlencoded_like(pairs) };
        let q =
            f("type=process&effect=prevent&container=&since=2026-11-29T10:00:00Z&customRule=nc+l")
                .query(DEFAULT_LIMIT)
                .unwrap();
        assert_eq!(q.kind, Some(Kind::Process));
        assert_eq!(q.custom_rule.as_deref(), Some("nc l"));
        let ecs = f("cluster=prod&family=&service=orders+api")
            .query(DEFAULT_LIMIT)
            .unwrap();
        assert_eq!(
            (ecs.cluster.as_deref(), ecs.family, ecs.service.as_deref()),
            (Some("prod"), None, Some("orders api"))
        );
        assert_eq!(
            f("customRule=").query(DEFAULT_LIMIT).unwrap().custom_rule,
            None
        );
        assert_eq!(q.effect, Some(Effect::Prevent));
        assert_eq!(q.container, None);
        assert_eq!(q.since.as_deref(), Some("2026-11-29T10:00:00.000000Z"));
        assert_eq!((q.limit, q.offset), (DEFAULT_LIMIT, 0));
        assert_eq!(
            f("limit=999999").query(DEFAULT_LIMIT).unwrap().limit,
            MAX_LIMIT
        );
        for (bad, want) in [
            ("type=virus", "type: unknown type"),
            ("effect=deny", "effect: unknown effect"),
            ("until=tomorrow", "until: "),
        ] {
            let err = f(bad).query(DEFAULT_LIMIT).unwrap_err();
            assert!(err.starts_with(want), "{bad}: {err}");
        }
    }

    /// The query string as axum's `Query` reads it.
    fn serde_urlencoded_like(pairs: &str) -> AuditFilter {
        let uri: axum::http::Uri = format!("/?{pairs}").parse().unwrap();
        Query::<AuditFilter>::try_from_uri(&uri).unwrap().0
    }
}
