//! What operators and their tools ask of the console: `/healthz` (it serves), `/readyz` (its
//! database answers), `/metrics` (Prometheus), and the layer every request passes through, which
//! measures it by route template and writes its log line.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::{ApiError, AppState};
use crate::auth::{CallerName, same};
use crate::logs::fields;
use crate::metrics::{UNMATCHED, route_label};

/// The Prometheus client's text format is OpenMetrics'.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A path longer than this is cut in its log line (paths come from anyone).
const LOGGED_PATH: usize = 256;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when the database answers a query, else 503 saying why.
async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    match state.store(|s| s.ready()).await {
        Ok(()) => Ok("ready\n"),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database does not answer: {}", e.message),
        )),
    }
}

/// The metrics; with `--metrics-token`, only for a request bearing it.
async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.operations.metrics_token {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !presented.is_some_and(|p| same(p, token)) {
            return Err(ApiError::unauthorized());
        }
    }
    let size = state.store(|s| s.size()).await?;
    let connected = crate::api::defenders(&state)
        .await?
        .iter()
        .filter(|d| d.connected)
        .count();
    let m = &state.operations.metrics;
    m.database_size.set(i64::try_from(size).unwrap_or(i64::MAX));
    m.connections_open
        .set(i64::try_from(state.operations.gate.open()).unwrap_or(i64::MAX));
    m.defenders_connected
        .set(i64::try_from(connected).unwrap_or(i64::MAX));
    Ok(([(CONTENT_TYPE, METRICS_TYPE)], m.encode()).into_response())
}

/// Times a request, counts it under its route template and writes its line:
/// `request method=M path=P route=R status=S ms=T caller=NAME` (`caller=-` when no credential
/// was accepted). The path is without its query string; no header is logged, so neither are
/// tokens, passwords nor cookies.
pub async fn observe(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = request.method().as_str().to_owned();
    let path: String = request.uri().path().chars().take(LOGGED_PATH).collect();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED.to_owned(), |m| route_label(m.as_str()));
    let caller = CallerName::default();
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    state
        .operations
        .metrics
        .request(&method, &route, status, elapsed.as_secs_f64());
    let ms = format!("{:.3}", elapsed.as_secs_f64() * 1000.0);
    let who = caller.get().unwrap_or_else(|| "-".to_owned());
    log::info!(
        "request {}",
        fields(&[
            ("method", &method),
            ("path", &path),
            ("route", &route),
            ("status", &status.to_string()),
            ("ms", &ms),
            ("caller", &who),
        ])
    );
    response
}
