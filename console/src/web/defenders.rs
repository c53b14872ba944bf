//! The defenders page: every defender the store still lists (those gone for longer than the
//! retention have left it), with the revision it runs and whether it is the one in force, the
//! ports its web application firewall protects, whether its heartbeats still arrive, and its
//! container's audits of the last 24 hours by effect, each count a link to those audits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};

use super::audits;
use super::html::page;
use super::internal;
use crate::api::{self, DefenderView};
use crate::app::{ApiError, AppState};
use crate::auth::Person;
use crate::events::{AuditFilter, Effect, MAX_LIMIT};
use crate::store::{AuditField, AuditQuery, Pattern};

/// Where the page lives.
pub const DEFENDERS: &str = "/defenders";

/// The window of the audit counts.
const RECENT: Duration = Duration::from_secs(24 * 3600);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(DEFENDERS, get(defenders_page))
}

/// Audits per container and effect.
type Counts = HashMap<(String, Effect), u64>;

async fn defenders_page(Person(who): Person, State(state): State<Arc<AppState>>) -> Response {
    let defenders = match api::defenders(&state).await {
        Ok(d) => d,
        Err(e) => return internal(&e.message),
    };
    let since = SystemTime::now() - RECENT;
    let counts = match counts_by_container(&state, since).await {
        Ok(c) => c,
        Err(e) => return internal(&e.message),
    };
    let revision = state.policy().revision;
    page(
        Some(&who),
        "Defenders",
        "Defenders",
        body(revision, &defenders, &counts, since),
    )
    .into_response()
}

/// Per container and effect, the audits (their `count`s summed) since `since`.
async fn counts_by_container(state: &AppState, since: SystemTime) -> Result<Counts, ApiError> {
    let since = humantime::format_rfc3339_micros(since).to_string();
    state
        .store(move |s| {
            let mut counts = Counts::new();
            for effect in Effect::ALL {
                let query = AuditQuery {
                    fields: vec![(AuditField::Effect, Pattern::Exact(effect.as_str().into()))],
                    since: Some(since.clone()),
                    limit: MAX_LIMIT,
                    ..AuditQuery::default()
                };
                for (container, n) in s.audit_stats(&query, AuditField::Container)?.rows {
                    counts.insert((container, effect), n);
                }
            }
            Ok(counts)
        })
        .await
}

/// The page under its frame.
fn body(revision: u64, defenders: &[DefenderView], counts: &Counts, since: SystemTime) -> Markup {
    html! {
        p {
            "Policy revision in force: " strong id="in-force" { (revision) } ". A defender is \
             connected while its heartbeats arrive (every 5 s); one not heard from for longer \
             than the retention leaves this list. Audits: its container's, in the last 24 hours."
        }
        table id="defenders" {
            tr {
                th { "container" } th { "image" } th { "task" } th { "cluster" } th { "family" }
                th { "service" } th { "revision" } th { "protects" } th { "audits (24 h)" }
                th { "version" } th { "last seen" } th { "state" }
            }
            @for d in defenders {
                (row(d, counts, since))
            }
        }
        @if defenders.is_empty() {
            p class="muted" { "No defender has reported yet." }
        }
    }
}

fn optional(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("—")
}

fn row(d: &DefenderView, counts: &Counts, since: SystemTime) -> Markup {
    let b = &d.beat;
    let all = audits::since(
        &audits::narrowed(&AuditFilter::default(), AuditField::Container, &b.container),
        since,
    );
    html! {
        tr class="defender" data-id=(b.id) {
            td class="container" { (b.container) }
            td { (b.image) }
            td { (optional(&b.task)) }
            td { (optional(&b.cluster)) }
            td { (optional(&b.family)) }
            td { (optional(&b.service)) }
            td class="revision" {
                @match (&b.revision, d.current) {
                    (Some(r), true) => { (r) " " span class="ok-text" { "(in force)" } }
                    (Some(r), false) => { span class="effect-alert" { (r) " (not in force)" } }
                    (None, _) => { span class="muted" { "local policy" } }
                }
            }
            td class="protects" {
                @if b.protects.is_empty() {
                    span class="muted" { "—" }
                }
                @for (i, port) in b.protects.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (port) }
                }
            }
            td class="counts" {
                a href=(audits::href(&all)) class="all" { "all" }
                @for effect in Effect::ALL {
                    @let n = counts.get(&(b.container.clone(), effect)).copied().unwrap_or(0);
                    " · "
                    a href=(audits::href(&audits::narrowed(&all, AuditField::Effect, effect.as_str())))
                        class={ "effect-" (effect.as_str()) } data-effect=(effect.as_str()) {
                        (effect.as_str()) " " (n)
                    }
                }
            }
            td { (b.version) }
            td { (d.last_seen) }
            td class="state" {
                @if d.connected { "connected" } @else { span class="muted" { "gone" } }
            }
        }
    }
}
