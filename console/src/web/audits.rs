//! The audits page as a triage tool: a filter for every audit field (globs) and a text search
//! (`q`), time presets, the events newest first one page at a time with the total, the counts by
//! container, rule, attack, domain and process beside them (each a link that narrows the list),
//! a chart of the events over time by effect, and a page per event with every field.
//!
//! The page's state is its query string, read as the API reads it ([`AuditFilter`]: an unknown
//! parameter is an error said on the page), and every link of the page is that filter with one
//! thing changed. A value a link narrows to is written with its glob characters escaped: a
//! container named `web*` narrows to that container only.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::chart::{self, Bar};
use super::html::page;
use super::internal;
use crate::app::{ApiError, AppState};
use crate::auth::Person;
use crate::events::{AuditFilter, Effect as AuditEffect, Event, Kind, MAX_LIMIT};
use crate::store::{AuditField, AuditQuery, Bucket, SAMPLE, Store, StoreError, StoredEvent};

/// Where the page lives, its results (chart, total, pager, rows, counts) for the live refresh,
/// and an event's own page.
pub const AUDITS: &str = "/audits";
const RESULTS: &str = "/audits/results";
const EVENT: &str = "/audits/event";

/// Rows per page when the query string does not say, and the sizes offered.
const PAGE_ROWS: u32 = 50;
const PAGE_SIZES: [u32; 4] = [50, 100, 200, 500];

/// The summaries beside the list, by the field they group on, and how many values each shows.
const GROUPS: [AuditField; 5] = [
    AuditField::Container,
    AuditField::Rule,
    AuditField::Attack,
    AuditField::Domain,
    AuditField::Process,
];
const GROUP_ROWS: u32 = 10;

/// The time presets: their label and how far back they reach (`None`: all).
const PRESETS: [(&str, Option<Duration>); 5] = [
    ("last 15 min", Some(Duration::from_secs(15 * 60))),
    ("1 h", Some(Duration::from_secs(3600))),
    ("24 h", Some(Duration::from_secs(24 * 3600))),
    ("7 d", Some(Duration::from_secs(7 * 24 * 3600))),
    ("all", None),
];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(AUDITS, get(audits_page))
        .route(RESULTS, get(audit_results))
        .route(EVENT, get(event_page))
}

/// What the page shows for its filter.
struct Found {
    events: Vec<StoredEvent>,
    /// Events matching, before the page's limit and offset.
    total: u64,
    /// Per group of [`GROUPS`]: its values with their counts, largest first.
    groups: Vec<(AuditField, Vec<(String, u64)>)>,
    /// How many of the newest matching events the counts and the chart were computed over, when
    /// not all (storage could not answer the filter from its rollup of counts).
    sampled: Option<u64>,
    /// The chart's SVG, or why it could not be drawn (said in its place).
    chart: Result<String, String>,
}

/// The page of events `filter` asks for, their total, the counts beside them and the chart.
async fn find(state: &AppState, filter: &AuditFilter, now: SystemTime) -> Result<Found, Problem> {
    let query = filter.query(PAGE_ROWS).map_err(Problem::Asked)?;
    let (events, total, groups, buckets, sampled) = state
        .store(move |s| {
            let events = s.audits(&query)?;
            let total = s.count_audits(&query)?;
            let summary = AuditQuery {
                limit: GROUP_ROWS,
                offset: 0,
                ..query.clone()
            };
            let mut sampled = None;
            let mut groups = Vec::with_capacity(GROUPS.len());
            for group in GROUPS {
                let counts = s.audit_stats(&summary, group)?;
                sampled = sampled.or(counts.sampled);
                groups.push((group, counts.rows));
            }
            let (buckets, cut) = histogram(s, &query, now, total)?;
            Ok((events, total, groups, buckets, sampled.or(cut)))
        })
        .await?;
    let chart = buckets.and_then(|(bars, width, from)| {
        let title = match sampled {
            Some(n) => format!(
                "Audit events over time by effect, {width}-minute buckets, {}",
                sample_note(n, total)
            ),
            None => format!(
                "Audit events over time by effect, {width}-minute buckets, {} in all",
                thousands(total)
            ),
        };
        chart::svg(&bars, width, from, now, &title).map_err(|e| e.to_string())
    });
    Ok(Found {
        events,
        total,
        groups,
        sampled,
        chart,
    })
}

/// A chart's bars, their bucket width in minutes and where the chart begins; or why there is
/// no chart.
type Drawn = Result<(Vec<Bar>, u64, SystemTime), String>;

/// What the counts are when storage computed them over a sample of the matching events.
fn sample_note(sample: u64, total: u64) -> String {
    format!(
        "counts of the newest {} of {} matching events",
        thousands(sample),
        thousands(total)
    )
}

/// The chart's bars for `query` (its limit and offset aside) from its `since` (or its oldest
/// event) to its `until` (or now), in buckets of the width that suits that range, with the width
/// and the range's start; or why there is no chart. Also the size of the sample the buckets
/// were counted over, when storage cut one. `total`: how many events match.
fn histogram(
    s: &dyn Store,
    query: &AuditQuery,
    now: SystemTime,
    total: u64,
) -> Result<(Drawn, Option<u64>), StoreError> {
    let mut sampled = None;
    let drawn = bars(s, query, now, total, &mut sampled)?;
    Ok((drawn, sampled))
}

/// The bars of [`histogram`], noting in `sampled` a sample storage cut.
fn bars(
    s: &dyn Store,
    query: &AuditQuery,
    now: SystemTime,
    total: u64,
    sampled: &mut Option<u64>,
) -> Result<Drawn, StoreError> {
    let mut buckets_of = |minutes: u32| -> Result<Vec<Bucket>, StoreError> {
        let all = AuditQuery {
            limit: MAX_LIMIT,
            offset: 0,
            ..query.clone()
        };
        let summary = s.audit_histogram(&all, minutes)?;
        *sampled = sampled.or(summary.sampled);
        Ok(summary.rows)
    };
    let time = |t: &str| humantime::parse_rfc3339(t).map_err(|e| format!("{t}: {e}"));
    let until = match &query.until {
        Some(u) => match time(u) {
            Ok(t) => t.min(now),
            Err(e) => return Ok(Err(e)),
        },
        None => now,
    };
    // Without a start, the oldest day that holds an event is where the chart begins.
    let (from, coarse) = match &query.since {
        Some(since) => match time(since) {
            Ok(t) => (t, None),
            Err(e) => return Ok(Err(e)),
        },
        None => {
            let days = buckets_of(24 * 60)?;
            match days.first().map(|b| time(&b.start)) {
                Some(Ok(t)) => (t, Some(days)),
                Some(Err(e)) => return Ok(Err(e)),
                None => (until - Duration::from_secs(3600), Some(days)),
            }
        }
    };
    let width = chart::width_for(until.duration_since(from).unwrap_or_default());
    // Buckets of whole hours when more events match than a sample holds: storage counts those
    // exactly from its rollup, narrower ones over the newest events only.
    let width = match total > u64::from(SAMPLE) {
        true => width.max(60),
        false => width,
    };
    let buckets = match coarse {
        Some(days) if width == 24 * 60 => days,
        _ => buckets_of(width as u32)?,
    };
    // Without a start, the chart starts at its first bar rather than at midnight.
    let from = match (&query.since, buckets.first()) {
        (None, Some(first)) => time(&first.start).unwrap_or(from),
        _ => from,
    };
    let mut bars = Vec::with_capacity(buckets.len());
    for b in buckets {
        match time(&b.start) {
            Ok(start) => bars.push(Bar {
                start,
                effect: b.effect,
                count: b.count,
            }),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok((bars, width, from)))
}

/// What keeps the page from showing events: a bad query string (400, said on the page), or
/// storage (500).
enum Problem {
    Asked(String),
    Internal(String),
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        Problem::Internal(e.message)
    }
}

/// The live refresh: every 2 s, the results (chart, total, pager, rows and counts) for the
/// page's own query string, swapped in whole so that none of them goes stale beside the others.
/// One request at a time: a console slow to answer is not sent another until it has. The switch
/// is outside what is swapped, so that an answer arriving after it was turned off is dropped
/// rather than turning it back on. A constant: nothing of an event or a filter is ever written
/// into it.
const LIVE_REFRESH: &str = "
let refreshing = false;
setInterval(async () => {
  const live = document.getElementById('live');
  if (refreshing || !live.checked) return;
  refreshing = true;
  try {
    const r = await fetch('/audits/results' + location.search, {credentials: 'same-origin'});
    const html = r.ok ? await r.text() : null;
    if (html !== null && live.checked) document.getElementById('results').innerHTML = html;
  } catch (e) {
    // The console is unreachable for now: the next tick asks again.
  } finally {
    refreshing = false;
  }
}, 2000);
";

async fn audits_page(
    Person(who): Person,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let now = SystemTime::now();
    let found = match AuditFilter::parse(query.as_deref()) {
        Ok(filter) => {
            let found = find(&state, &filter, now).await;
            (filter, found)
        }
        Err(e) => (AuditFilter::default(), Err(Problem::Asked(e))),
    };
    let (status, filter, found) = match found {
        (filter, Ok(found)) => (StatusCode::OK, filter, Ok(found)),
        (filter, Err(Problem::Asked(e))) => (StatusCode::BAD_REQUEST, filter, Err(e)),
        (_, Err(Problem::Internal(e))) => return internal(&e),
    };
    let body = audits_body(&filter, found.as_ref(), now);
    (
        status,
        page(Some(&who), "App-Embedded audits", "Audits", body),
    )
        .into_response()
}

/// The results alone ([`results`]), for the live refresh; a bad query string is 400 with what
/// is wrong with it.
async fn audit_results(
    _: Person,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let now = SystemTime::now();
    let filter = match AuditFilter::parse(query.as_deref()) {
        Ok(filter) => filter,
        Err(e) => return (StatusCode::BAD_REQUEST, problem(&e)).into_response(),
    };
    match find(&state, &filter, now).await {
        Ok(found) => results(&filter, &found).into_response(),
        Err(Problem::Asked(e)) => (StatusCode::BAD_REQUEST, problem(&e)).into_response(),
        Err(Problem::Internal(e)) => internal(&e),
    }
}

/// A number with thousands separated: `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The audits page for `filter`.
pub fn href(filter: &AuditFilter) -> String {
    format!("{AUDITS}{}", filter.query_string())
}

/// `filter` narrowed to exactly `value` of `field` (glob characters and all), from its first row.
/// An empty `value` is no filter (as a form sends it): callers link no empty value.
pub fn narrowed(filter: &AuditFilter, field: AuditField, value: &str) -> AuditFilter {
    let mut filter = filter.clone();
    filter.set_exact(field, value);
    filter.offset = None;
    filter
}

/// `filter` from `since` to now, from its first row.
pub fn since(filter: &AuditFilter, since: SystemTime) -> AuditFilter {
    AuditFilter {
        since: Some(humantime::format_rfc3339_seconds(since).to_string()),
        until: None,
        offset: None,
        ..filter.clone()
    }
}

/// A text input named `name` holding `value`.
fn text_input(name: &str, value: Option<&str>, hint: &str) -> Markup {
    html! {
        label {
            (name) " "
            input name=(name) id={ "filter-" (name) } value=(value.unwrap_or_default())
                placeholder=(hint);
        }
    }
}

/// A select of `values` (and "any") for the filter `field`.
fn select_filter(filter: &AuditFilter, field: AuditField, values: &[&str]) -> Markup {
    let chosen = filter.get(field);
    let name = field.name();
    html! {
        label {
            (name) " "
            select name=(name) id={ "filter-" (name) } {
                option value="" { "any" }
                @for v in values {
                    option value=(v) selected[chosen == Some(*v)] { (v) }
                }
            }
        }
    }
}

/// The fields filtered in the form's first line (besides type and effect, which are selects);
/// every other field is under "more fields".
const MAIN_FIELDS: [AuditField; 7] = [
    AuditField::Container,
    AuditField::Image,
    AuditField::Rule,
    AuditField::Attack,
    AuditField::Process,
    AuditField::Domain,
    AuditField::Ip,
];

fn more_fields() -> impl Iterator<Item = AuditField> {
    AuditField::ALL
        .into_iter()
        .filter(|f| !MAIN_FIELDS.contains(f) && !matches!(f, AuditField::Type | AuditField::Effect))
}

/// The form: the text search, a filter per field, the time range and the page size.
fn filters(filter: &AuditFilter) -> Markup {
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let effects: Vec<&str> = AuditEffect::ALL.iter().map(|e| e.as_str()).collect();
    let more_open = more_fields().any(|f| filter.get(f).is_some());
    let limit = filter.limit.unwrap_or(PAGE_ROWS);
    html! {
        form class="filters" method="get" action=(AUDITS) id="filters" {
            label class="search" {
                "search "
                input type="search" name="q" id="filter-q" value=(filter.q.as_deref().unwrap_or_default())
                    placeholder="words of the message, command line, process, domain, ip, url";
            }
            (select_filter(filter, AuditField::Type, &kinds))
            (select_filter(filter, AuditField::Effect, &effects))
            @for field in MAIN_FIELDS {
                (text_input(field.name(), filter.get(field), "any; globs * ? [a-z]"))
            }
            details open[more_open] {
                summary { "more fields" }
                @for field in more_fields() {
                    (text_input(field.name(), filter.get(field), "any"))
                }
            }
            (text_input("since", filter.since.as_deref(), "2026-11-29T10:00:00Z"))
            (text_input("until", filter.until.as_deref(), "2026-11-29T11:00:00Z"))
            label {
                "rows "
                select name="limit" id="filter-limit" {
                    @for size in PAGE_SIZES {
                        option value=(size) selected[size == limit] { (size) }
                    }
                    @if !PAGE_SIZES.contains(&limit) {
                        option value=(limit) selected { (limit) }
                    }
                }
            }
            button id="apply" { "Filter" }
            a href=(AUDITS) id="clear" { "clear" }
        }
    }
}

/// The presets: links setting `since` (to now less the preset), `all` dropping the time range;
/// and the live refresh switch, outside the results the refresh replaces.
fn presets(filter: &AuditFilter, now: SystemTime) -> Markup {
    html! {
        p class="presets" id="presets" {
            "Time: "
            @for (i, (label, back)) in PRESETS.iter().enumerate() {
                @if i > 0 { " · " }
                @let to = match back {
                    Some(back) => since(filter, now - *back),
                    None => AuditFilter { since: None, until: None, offset: None, ..filter.clone() },
                };
                a href=(href(&to)) data-preset=(label) { (label) }
            }
            " · "
            label { input type="checkbox" id="live" checked; " live refresh" }
        }
    }
}

/// "1–50 of 12,345", the previous and next pages, the CSV download.
fn pager(filter: &AuditFilter, shown: usize, total: u64) -> Markup {
    let offset = filter.offset.unwrap_or(0);
    let limit = filter.limit.unwrap_or(PAGE_ROWS).max(1);
    let at = |offset: u32| AuditFilter {
        offset: (offset > 0).then_some(offset),
        ..filter.clone()
    };
    let last = u64::from(offset) + shown as u64;
    let previous = (offset > 0).then(|| at(offset.saturating_sub(limit)));
    let next = (last < total).then(|| at(offset.saturating_add(limit)));
    let download = AuditFilter {
        limit: None,
        offset: None,
        ..filter.clone()
    };
    html! {
        p class="pager" {
            span id="total" {
                @if shown == 0 {
                    "0 of " (thousands(total))
                } @else {
                    (thousands(u64::from(offset) + 1)) "–" (thousands(last)) " of " (thousands(total))
                }
            }
            " · "
            @match previous {
                Some(p) => { a href=(href(&p)) id="previous" rel="prev" { "← previous" } }
                None => { span class="muted" { "← previous" } }
            }
            " · "
            @match next {
                Some(n) => { a href=(href(&n)) id="next" rel="next" { "next →" } }
                None => { span class="muted" { "next →" } }
            }
            " · "
            a href={ "/api/v1/audits/runtime/app-embedded/download" (download.query_string()) } {
                "download CSV"
            }
        }
    }
}

/// The counts beside the list: each value a link narrowing the list to exactly it; `note` says
/// when they count a sample.
fn summaries(
    filter: &AuditFilter,
    groups: &[(AuditField, Vec<(String, u64)>)],
    note: Option<&str>,
) -> Markup {
    html! {
        aside class="counts" id="counts" {
            @if let Some(note) = note { p class="muted" id="sampled" { (note) } }
            @for (group, values) in groups {
                @let name = group.name();
                section id={ "count-" (name) } {
                    h3 { "by " (name) }
                    @if values.is_empty() { p class="muted" { "—" } }
                    ol {
                        @for (value, count) in values {
                            li {
                                // An empty value is no filter: it cannot be narrowed to.
                                @if value.is_empty() {
                                    span class="muted" { "(empty)" }
                                } @else {
                                    a href=(href(&narrowed(filter, *group, value))) data-group=(name) {
                                        (value)
                                    }
                                }
                                " " span class="count" { (thousands(*count)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The audits page under its frame: filters, presets and the results; or, for a query string
/// that cannot be asked, what is wrong with it.
fn audits_body(filter: &AuditFilter, found: Result<&Found, &String>, now: SystemTime) -> Markup {
    html! {
        (filters(filter))
        (presets(filter, now))
        @match found {
            Err(e) => { (problem(e)) }
            Ok(found) => {
                div id="results" { (results(filter, found)) }
                script { (PreEscaped(LIVE_REFRESH)) }
            }
        }
    }
}

/// What a query string that cannot be asked is told.
fn problem(what: &str) -> Markup {
    html! { p class="errors" id="errors" { (what) } }
}

/// What the page found for its filter: the chart, the pager with the total, the rows and the
/// counts beside them. The live refresh replaces all of it at once, so that they agree.
fn results(filter: &AuditFilter, found: &Found) -> Markup {
    html! {
        figure class="chart" {
            @match &found.chart {
                Ok(svg) => { (PreEscaped(svg)) }
                Err(e) => { p class="errors" { "No chart: " (e) } }
            }
        }
        div class="triage" {
            div class="list" {
                (pager(filter, found.events.len(), found.total))
                table {
                    thead {
                        tr {
                            th { "time" } th { "type" } th { "effect" } th { "container" }
                            th { "image" } th { "rule" } th { "custom rule" }
                            th { "message" } th { "count" } th { "cluster" }
                            th { "family" } th { "service" } th { "source" }
                        }
                    }
                    tbody id="rows" { (rows(filter, &found.events)) }
                }
            }
            (summaries(filter, &found.groups, found.sampled.map(|n| sample_note(n, found.total)).as_deref()))
        }
    }
}

/// The columns of the audits table.
const TABLE_COLUMNS: usize = 13;

fn rows(filter: &AuditFilter, events: &[StoredEvent]) -> Markup {
    html! {
        @if events.is_empty() {
            tr { td colspan=(TABLE_COLUMNS) class="muted" { "No audit events." } }
        }
        @for e in events {
            (row(&e.event, e.source.as_deref(), filter))
        }
    }
}

/// The page of the event `id`.
fn event_href(id: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("id", id)
        .finish();
    format!("{EVENT}?{query}")
}

/// A stored time (`2026-11-29T10:00:00.500000Z`) to the second, for the rows: `2026-11-29
/// 10:00:00` (UTC; the event's page has it whole).
fn short_time(time: &str) -> String {
    time.get(..19).unwrap_or(time).replacen('T', " ", 1)
}

/// One event: its time links to its own page; its container, image, rule, custom rule and ECS
/// identity link to the list narrowed by them. The ECS identity comes last but for the token
/// that delivered it (`source`), so that the columns before keep their place.
fn row(e: &Event, source: Option<&str>, filter: &AuditFilter) -> Markup {
    let kind = e.kind.as_str();
    let effect = e.effect.as_str();
    let narrow = |field: AuditField, value: Option<&String>| match value {
        Some(v) if !v.is_empty() => html! { a href=(href(&narrowed(filter, field, v))) { (v) } },
        _ => html! {},
    };
    html! {
        tr class="audit" data-type=(kind) {
            td {
                a class="detail" href=(event_href(&e.id)) title=(e.time) { (short_time(&e.time)) }
            }
            td { (kind) }
            td class={ "effect-" (effect) } { (effect) }
            td { (narrow(AuditField::Container, Some(&e.container))) }
            td { (narrow(AuditField::Image, Some(&e.image))) }
            td { (narrow(AuditField::Rule, e.rule.as_ref())) }
            td class="custom-rule" { (narrow(AuditField::CustomRule, e.custom_rule.as_ref())) }
            td { (e.message) }
            td { (e.count) }
            td class="cluster" { (narrow(AuditField::Cluster, e.cluster.as_ref())) }
            td class="family" { (narrow(AuditField::Family, e.family.as_ref())) }
            td class="service" { (narrow(AuditField::Service, e.service.as_ref())) }
            td class="source" { (source.unwrap_or_default()) }
        }
    }
}

#[derive(Deserialize)]
struct EventId {
    id: String,
}

/// An event's own page: 404 when no event has that id.
async fn event_page(
    Person(who): Person,
    State(state): State<Arc<AppState>>,
    Query(asked): Query<EventId>,
) -> Response {
    let id = asked.id.clone();
    let found = match state.store(move |s| s.audit(&id)).await {
        Ok(found) => found,
        Err(e) => return internal(&e.message),
    };
    match found {
        Some(event) => {
            page(Some(&who), "Audit event", "Audits", event_body(&event)).into_response()
        }
        None => {
            let body = html! {
                p class="errors" id="errors" { "No audit event has the id " code { (asked.id) } "." }
            };
            (
                StatusCode::NOT_FOUND,
                page(Some(&who), "Audit event", "Audits", body),
            )
                .into_response()
        }
    }
}

/// Every field the event has, in the order of its JSON form, whatever fields it has: one the
/// wire type gains shows here without a change. Each field the list can be filtered by links to
/// the list of the events with the same value.
fn event_body(event: &StoredEvent) -> Markup {
    let fields = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    let shown = fields.iter().filter_map(|(name, value)| {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => return None,
            other => other.to_string(),
        };
        Some((name, text, AuditField::parse(name)))
    });
    html! {
        p { a href=(AUDITS) { "← all audits" } }
        table id="event" {
            @for (name, text, field) in shown {
                tr data-field=(name) {
                    th { (name) }
                    td class="value" { (text) }
                    td {
                        @if let Some(field) = field.filter(|_| !text.is_empty()) {
                            a class="same" href=(href(&narrowed(&AuditFilter::default(), field, &text))) {
                                "events with this " (name)
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use defender::audit::{Activity, ActivityViolation, ProcessViolation, Scope};
    use defender::policy::{self, Attack};

    use super::super::tests::{HOSTILE, SHOWN, links};
    use super::*;
    use crate::store::Pattern;

    /// The events of a hostile workload, as its defender builds them.
    fn hostile_events() -> Vec<Event> {
        let scope = Scope {
            container: format!("web* {HOSTILE}"),
            image: format!("img {HOSTILE}"),
            task: None,
            cluster: Some(format!("cluster {HOSTILE}")),
            family: Some(format!("family {HOSTILE}")),
            service: Some(format!("service {HOSTILE}")),
        };
        let rule = format!("rule [x] {HOSTILE}");
        let process = Event::process(
            &scope,
            &ProcessViolation {
                rule: &rule,
                effect: policy::Effect::Prevent,
                cause: Attack::ExplicitlyDenied.into(),
                pid: 7,
                process: "/bin/sh",
                parent: "/bin/sh",
                cmdline: &format!("sh -c {HOSTILE}"),
            },
        );
        let dns = Event::activity(
            &scope,
            &ActivityViolation {
                rule: &rule,
                effect: policy::Effect::Alert,
                cause: Attack::NotAllowed.into(),
                pid: 7,
                process: "/usr/bin/curl",
                activity: Activity::Dns {
                    domain: format!("{HOSTILE}.example"),
                },
            },
        );
        vec![process, dns]
    }

    fn stored(events: Vec<Event>) -> Vec<StoredEvent> {
        events
            .into_iter()
            .map(|event| StoredEvent {
                event,
                source: Some(HOSTILE.into()),
            })
            .collect()
    }

    /// The filter a link's query string gives, as the page and the API read it.
    fn filter_of(link: &str) -> AuditFilter {
        let uri: axum::http::Uri = link.parse().unwrap_or_else(|e| panic!("{link}: {e}"));
        AuditFilter::parse(uri.query()).unwrap_or_else(|e| panic!("{link}: {e}"))
    }

    /// The page for `filter` showing `events`, `total` in all, `groups` beside them.
    fn body(
        filter: &AuditFilter,
        events: Vec<StoredEvent>,
        total: u64,
        groups: Vec<(AuditField, Vec<(String, u64)>)>,
    ) -> String {
        let found = Found {
            events,
            total,
            groups,
            sampled: None,
            chart: Err("none".into()),
        };
        page(
            None,
            "audits",
            "Audits",
            audits_body(filter, Ok(&found), SystemTime::now()),
        )
        .into_string()
    }

    #[test]
    fn hostile_strings_are_text_and_links_narrow_to_exactly_them() {
        let mut filter = AuditFilter::default();
        filter.set_exact(AuditField::Image, &format!("img {HOSTILE}"));
        filter.set_exact(AuditField::Type, "process");
        filter.offset = Some(50);
        let events = stored(hostile_events());
        let container = format!("web* {HOSTILE}");
        let groups = vec![(AuditField::Container, vec![(container.clone(), 2)])];
        let page = body(&filter, events, 2, groups);

        // The only script is the page's own; every hostile string is text.
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        for text in [
            format!("Full command: sh -c {SHOWN}"),
            format!("DNS resolution of domain name {SHOWN}.example"),
            format!(">web* {SHOWN}</a>"),
            format!(">rule [x] {SHOWN}</a>"),
            format!(">service {SHOWN}</a>"),
            format!(r#"<td class="source">{SHOWN}</td>"#),
        ] {
            assert!(page.contains(&text), "{text} is not in {page}");
        }
        // The filter inputs hold the values in force, as written (the exact value's `?` escaped).
        let image = format!("img {}", SHOWN.replace('?', r"\?"));
        assert!(
            page.contains(&format!(r#"id="filter-image" value="{image}""#)),
            "{page}"
        );

        // Every narrowing link (rows and counts) is the filter with one field more, exactly
        // that value (its glob characters escaped), from the first row.
        let narrowing: Vec<AuditFilter> = links(&page)
            .iter()
            .filter(|l| l.starts_with("/audits?") && l.contains("container="))
            .map(|l| filter_of(l))
            .collect();
        // Two rows and the count.
        assert_eq!(narrowing.len(), 3, "{page}");
        for f in narrowing {
            assert_eq!(f.offset, None);
            assert_eq!(f.get(AuditField::Image), filter.get(AuditField::Image));
            let query = f.query(PAGE_ROWS).unwrap();
            assert!(
                query
                    .fields
                    .contains(&(AuditField::Container, Pattern::Exact(container.clone()))),
                "{query:?}"
            );
        }
        let by_rule: Vec<AuditFilter> = links(&page)
            .iter()
            .filter(|l| l.contains("rule="))
            .map(|l| filter_of(l))
            .collect();
        assert_eq!(by_rule.len(), 2);
        let query = by_rule[0].query(PAGE_ROWS).unwrap();
        assert!(
            query.fields.contains(&(
                AuditField::Rule,
                Pattern::Exact(format!("rule [x] {HOSTILE}"))
            )),
            "{query:?}"
        );
        // The download keeps the filter, without the page.
        let download = links(&page)
            .into_iter()
            .find(|l| l.starts_with("/api/v1/audits/runtime/app-embedded/download?"))
            .unwrap();
        let download = filter_of(&download);
        assert_eq!((download.offset, download.limit), (None, None));
        assert_eq!(download.fields, filter.fields);
    }

    /// The live refresh swaps in what the results endpoint renders: the page holds exactly that,
    /// total, rows, counts and chart all in it, and the refresh switch outside it.
    #[test]
    fn the_refreshed_results_are_the_page_s_own() {
        let filter = AuditFilter::default();
        let found = Found {
            events: stored(hostile_events()),
            total: 2,
            groups: vec![(AuditField::Container, vec![("web".to_owned(), 2)])],
            chart: Ok(r#"<svg id="chart"></svg>"#.into()),
            sampled: None,
        };
        let fragment = results(&filter, &found).into_string();
        for part in [
            r#"<svg id="chart">"#,
            r#"<span id="total">1–2 of 2</span>"#,
            r#"<tbody id="rows">"#,
            r#"<aside class="counts" id="counts">"#,
        ] {
            assert!(fragment.contains(part), "{part} is not in {fragment}");
        }
        assert!(!fragment.contains(r#"id="live""#), "{fragment}");
        let page = audits_body(&filter, Ok(&found), SystemTime::now()).into_string();
        assert!(
            page.contains(&format!(r#"<div id="results">{fragment}</div>"#)),
            "{page}"
        );
        assert_eq!(page.matches(r#"id="live""#).count(), 1, "{page}");
    }

    #[test]
    fn the_pager_says_where_it_is_and_moves_a_page() {
        let filter = |offset: Option<u32>, limit: Option<u32>| AuditFilter {
            offset,
            limit,
            q: Some("curl".into()),
            ..AuditFilter::default()
        };
        let events = |n: usize| stored(hostile_events().into_iter().cycle().take(n).collect());
        // (filter, rows shown, total) -> (total text, previous offset, next offset)
        type Link = Option<Option<u32>>;
        let cases: [(AuditFilter, usize, u64, &str, Link, Link); 5] = [
            (
                filter(None, None),
                50,
                12_345,
                "1–50 of 12,345",
                None,
                Some(Some(50)),
            ),
            (
                filter(Some(50), None),
                50,
                120,
                "51–100 of 120",
                Some(None),
                Some(Some(100)),
            ),
            (
                filter(Some(100), None),
                20,
                120,
                "101–120 of 120",
                Some(Some(50)),
                None,
            ),
            (
                filter(Some(10), Some(10)),
                10,
                25,
                "11–20 of 25",
                Some(None),
                Some(Some(20)),
            ),
            (filter(None, None), 0, 0, "0 of 0", None, None),
        ];
        for (f, shown, total, text, previous, next) in cases {
            let page = body(&f, events(shown), total, Vec::new());
            assert!(
                page.contains(&format!(r#"<span id="total">{text}</span>"#)),
                "{text}: {page}"
            );
            let link = |id: &str| {
                let at = page.find(&format!(r#"id="{id}""#))?;
                let start = page[..at].rfind("href=\"").unwrap();
                Some(filter_of(&links(&page[start..])[0]))
            };
            for (id, want) in [("previous", previous), ("next", next)] {
                let got = link(id);
                assert_eq!(got.as_ref().map(|f| f.offset), want, "{id} of {text}");
                if let Some(got) = got {
                    assert_eq!((got.q, got.limit), (f.q.clone(), f.limit), "{id} of {text}");
                }
            }
        }
    }

    #[test]
    fn presets_set_since_and_all_drops_the_range() {
        let now = humantime::parse_rfc3339("2026-12-06T12:00:00Z").unwrap();
        let filter = AuditFilter {
            until: Some("2026-12-06T11:00:00Z".into()),
            offset: Some(100),
            fields: [(AuditField::Container, "web".to_owned())].into(),
            ..AuditFilter::default()
        };
        let html = presets(&filter, now).into_string();
        let got: Vec<AuditFilter> = links(&html).iter().map(|l| filter_of(l)).collect();
        let since: Vec<Option<&str>> = got.iter().map(|f| f.since.as_deref()).collect();
        assert_eq!(
            since,
            [
                Some("2026-12-06T11:45:00Z"),
                Some("2026-12-06T11:00:00Z"),
                Some("2026-12-05T12:00:00Z"),
                Some("2026-11-29T12:00:00Z"),
                None
            ]
        );
        for f in got {
            assert_eq!((f.until.as_deref(), f.offset), (None, None));
            assert_eq!(f.get(AuditField::Container), Some("web"));
        }
    }

    #[test]
    fn an_event_page_shows_every_field_as_text() {
        let mut event = stored(hostile_events()).remove(0);
        let e = &mut event.event;
        e.kind = Kind::Waas;
        e.method = Some("POST".into());
        e.url = Some(format!("/login?next={HOSTILE}"));
        e.source_ip = Some("203.0.113.9".into());
        e.field = Some("query:next".into());
        e.request_id = Some("req-1".into());
        e.port = Some(8080);
        let html = event_body(&event).into_string();
        assert!(!html.contains("<script"), "{html}");
        let fields = serde_json::to_value(&event).unwrap();
        for (name, value) in fields.as_object().unwrap() {
            assert!(
                html.contains(&format!(r#"<tr data-field="{name}"><th>{name}</th>"#)),
                "{name} is not in {html}"
            );
            if let Some(text) = value.as_str().filter(|t| t.contains(HOSTILE)) {
                let shown = text.replace(HOSTILE, SHOWN);
                assert!(html.contains(&shown), "{name}: {shown} is not in {html}");
            }
        }
        for name in [
            "method",
            "url",
            "sourceIp",
            "field",
            "requestId",
            "source",
            "port",
        ] {
            assert!(fields.get(name).is_some(), "{name}");
        }
        // A field's link lists the events of exactly its value.
        let same: Vec<AuditFilter> = links(&html)
            .iter()
            .filter(|l| l.contains("url="))
            .map(|l| filter_of(l))
            .collect();
        assert_eq!(
            same[0].query(PAGE_ROWS).unwrap().fields,
            [(
                AuditField::Url,
                Pattern::Exact(format!("/login?next={HOSTILE}"))
            )]
        );
    }

    /// An empty filter is no filter: an empty value (a malformed DNS question's domain) is shown,
    /// never linked to the whole list as if it narrowed it.
    #[test]
    fn empty_values_are_not_links() {
        let groups = [(
            AuditField::Domain,
            vec![("".to_owned(), 3), ("a.example".to_owned(), 1)],
        )];
        let html = summaries(&AuditFilter::default(), &groups, None).into_string();
        assert!(
            html.contains(r#"<span class="muted">(empty)</span> <span class="count">3"#),
            "{html}"
        );
        assert_eq!(links(&html), ["/audits?domain=a.example"]);
        let mut event = stored(hostile_events()).remove(1);
        event.event.domain = Some(String::new());
        let html = event_body(&event).into_string();
        assert!(!links(&html).iter().any(|l| l.contains("domain")), "{html}");
    }

    #[test]
    fn rows_show_times_to_the_second() {
        assert_eq!(
            short_time("2026-11-29T10:00:00.500000Z"),
            "2026-11-29 10:00:00"
        );
        assert_eq!(short_time("odd"), "odd");
    }

    #[test]
    fn thousands_are_separated() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (12_345, "12,345"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), want);
        }
    }

    /// Counts of a sample say so beside them; exact counts say nothing.
    #[test]
    fn sampled_counts_say_what_they_count() {
        let groups = [(AuditField::Container, vec![("web".to_owned(), 3)])];
        let note = sample_note(50_000, 60_001);
        assert_eq!(
            note,
            "counts of the newest 50,000 of 60,001 matching events"
        );
        let html = summaries(&AuditFilter::default(), &groups, Some(&note)).into_string();
        assert!(
            html.contains(&format!(r#"<p class="muted" id="sampled">{note}</p>"#)),
            "{html}"
        );
        let html = summaries(&AuditFilter::default(), &groups, None).into_string();
        assert!(!html.contains("sampled"), "{html}");
    }
}
