//! The rollup of audit counts: per UTC hour, type and effect, how many events each value of a
//! few fields has (`audit_counts`), the same per hour over every type and effect (`audit_hours`),
//! and over all time (`audit_totals`, with marginal rows over every type, every effect or both);
//! kept by every stored batch and by retention, and the routing that answers a total, a summary
//! or a histogram from it (plus at most an hour of events at each unaligned end of the time
//! range) instead of reading every event the query selects. The reads go through a [`Reader`],
//! so that SQLite and PostgreSQL answer by the same plans.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use rusqlite::Connection;

use super::StoreError;
use super::audits::{self, conditions};
use super::query::{AuditField, AuditQuery, Bucket, Pattern};
use super::sample::Sample;
use super::sql::{self, Dialect, Reader, Value};
use crate::events::{Effect, Event, parse_name};

/// Migration 11: the tables (the backfill from the events stored before follows them).
pub const MIGRATION: &str = concat!(
    "CREATE TABLE audit_counts (
    field TEXT NOT NULL, value TEXT NOT NULL, hour INTEGER NOT NULL, type TEXT NOT NULL,
    effect TEXT NOT NULL, events INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (field, value, hour, type, effect)
) WITHOUT ROWID;
CREATE TABLE audit_totals (
    field TEXT NOT NULL, value TEXT NOT NULL, type TEXT NOT NULL, effect TEXT NOT NULL,
    events INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (field, value, type, effect)
) WITHOUT ROWID;
",
    include_str!("rollup_backfill.sql")
);

/// Migration 12: `audit_totals`' marginal rows (type or effect `ANY`), and the index that reads a
/// field's values largest first for one type and effect: the top domains of millions read as the
/// first ten rows of an index range, not by summing and sorting every value. And `audit_counts`
/// by field and hour, covering: the last day of a field read as its 24 hours, not as every hour
/// of every value.
pub const MARGINALS: &str = concat!(
    include_str!("rollup_marginals.sql"),
    "CREATE INDEX audit_totals_by_n ON audit_totals (field, type, effect, n DESC, value);
CREATE INDEX audit_counts_by_hour ON audit_counts (field, hour, value, type, effect, events, n);"
);

/// Migration 13: `audit_hours`, the marginal rows of `audit_counts` per hour (over every type and
/// effect), built from `audit_counts`, and its index by field and hour (covering). A value's sum
/// over a week with no condition on type or effect reads its 168 rows there, not its ~15 rows per
/// hour (one per type and effect) of `audit_counts`. A table of its own, not rows of type and
/// effect `''` in `audit_counts`: that table's key orders a value's rows by hour first, so such
/// rows would lie among the others and a range of hours would still read them all.
pub const HOURS: &str = concat!(
    "CREATE TABLE audit_hours (
    field TEXT NOT NULL, value TEXT NOT NULL, hour INTEGER NOT NULL,
    events INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (field, value, hour)
) WITHOUT ROWID;
CREATE INDEX audit_hours_by_hour ON audit_hours (field, hour, value, events, n);
",
    include_str!("rollup_hours.sql")
);

/// A marginal row's type or effect in `audit_totals`: every type, or every effect (no event has
/// an empty one).
const ANY: &str = "";

/// The fields rolled up: those the audits page summarises and filters most, with few values
/// each. (`type` and `effect` are columns of every row.)
pub const FIELDS: [AuditField; 10] = [
    AuditField::Container,
    AuditField::Image,
    AuditField::Rule,
    AuditField::Attack,
    AuditField::CustomRule,
    AuditField::Cluster,
    AuditField::Family,
    AuditField::Service,
    AuditField::Domain,
    AuditField::Process,
];

/// The field (and value) every event is counted under.
const EVERY: &str = "*";

/// How many of the newest matching events a summary the rollup cannot answer reads at most.
pub const SAMPLE: u32 = 50_000;

/// A time the rollup cannot place in an hour.
#[derive(Debug, thiserror::Error)]
#[error("audit time {0:?} is not an RFC 3339 UTC time")]
pub struct BadTime(String);

impl From<BadTime> for StoreError {
    fn from(e: BadTime) -> StoreError {
        StoreError {
            source: Box::new(e),
        }
    }
}

/// Seconds since the Unix epoch and whether they are whole (no fraction).
pub(super) fn seconds(time: &str) -> Result<(i64, bool), BadTime> {
    humantime::parse_rfc3339(time)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .and_then(|d| Some((i64::try_from(d.as_secs()).ok()?, d.subsec_nanos() == 0)))
        .ok_or_else(|| BadTime(time.into()))
}

/// The hour (Unix seconds / 3600) a time falls in.
pub(super) fn hour(time: &str) -> Result<i64, BadTime> {
    seconds(time).map(|(s, _)| s.div_euclid(3600))
}

/// The start of an hour, as stored times are written (so that it compares with them as text).
fn hour_start(hour: i64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(hour.max(0) as u64 * 3600);
    humantime::format_rfc3339_micros(at).to_string()
}

/// A histogram bucket's start (whole seconds), as buckets are written.
pub(super) fn bucket_start(seconds: i64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The value of a rolled-up field in an event (`None`: it lacks it, and is not counted under it).
pub(super) fn value(e: &Event, field: AuditField) -> Option<&str> {
    match field {
        AuditField::Container => Some(&e.container),
        AuditField::Image => Some(&e.image),
        AuditField::Process => Some(&e.process),
        AuditField::Rule => e.rule.as_deref(),
        AuditField::Attack => e.attack.as_deref(),
        AuditField::CustomRule => e.custom_rule.as_deref(),
        AuditField::Cluster => e.cluster.as_deref(),
        AuditField::Family => e.family.as_deref(),
        AuditField::Service => e.service.as_deref(),
        AuditField::Domain => e.domain.as_deref(),
        _ => None,
    }
}

/// A row of `audit_counts`: field, value, hour, type, effect.
pub type Key<'a> = (&'static str, &'a str, i64, &'static str, &'static str);

/// Events and the sum of their `count`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub events: u64,
    pub n: u64,
}

impl Tally {
    fn add(&mut self, events: u64, n: u64) {
        self.events += events;
        self.n += n;
    }
}

/// What stored events add to `audit_counts`, one entry per row touched.
fn increments<'a>(events: &[&'a Event]) -> Result<BTreeMap<Key<'a>, Tally>, BadTime> {
    let mut out: BTreeMap<Key<'a>, Tally> = BTreeMap::new();
    for e in events {
        let hour = hour(&e.time)?;
        let (kind, effect) = (e.kind.as_str(), e.effect.as_str());
        out.entry((EVERY, "", hour, kind, effect))
            .or_default()
            .add(1, e.count);
        for field in FIELDS {
            if let Some(v) = value(e, field) {
                out.entry((field.name(), v, hour, kind, effect))
                    .or_default()
                    .add(1, e.count);
            }
        }
    }
    Ok(out)
}

/// A row of `audit_totals`: field, value, type, effect (type or effect [`ANY`] for a marginal
/// row).
pub type TotalKey<'a> = (&'static str, &'a str, &'static str, &'static str);

/// A row of `audit_hours`: field, value, hour (over every type and effect).
pub type HourKey<'a> = (&'static str, &'a str, i64);

/// What stored events add to each table of the rollup, each row once however many events it
/// counts.
#[derive(Debug)]
pub struct Changes<'a> {
    /// `audit_counts`: per hour, type and effect.
    pub hourly: BTreeMap<Key<'a>, Tally>,
    /// `audit_hours`: per hour, over every type and effect.
    pub hours: BTreeMap<HourKey<'a>, Tally>,
    /// `audit_totals`, with its marginal rows.
    pub totals: BTreeMap<TotalKey<'a>, Tally>,
}

/// What `inserted` (the events a transaction stored, duplicates skipped) adds to the rollup's
/// tables: what both stores upsert inside the storing transaction.
pub fn changes<'a>(inserted: &[&'a Event]) -> Result<Changes<'a>, BadTime> {
    let hourly = increments(inserted)?;
    let mut hours: BTreeMap<HourKey<'a>, Tally> = BTreeMap::new();
    let mut totals: BTreeMap<TotalKey<'a>, Tally> = BTreeMap::new();
    for ((field, value, hour, kind, effect), t) in &hourly {
        hours
            .entry((field, value, *hour))
            .or_default()
            .add(t.events, t.n);
        for (kind, effect) in [(*kind, *effect), (*kind, ANY), (ANY, *effect), (ANY, ANY)] {
            totals
                .entry((field, value, kind, effect))
                .or_default()
                .add(t.events, t.n);
        }
    }
    Ok(Changes {
        hourly,
        hours,
        totals,
    })
}

/// Adds `t` to the row of `audit_counts` of (field, value, hour, type, effect).
pub(super) fn add_count(
    c: &Connection,
    (field, value, hour, kind, effect): (&str, &str, i64, &str, &str),
    t: &Tally,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO audit_counts (field, value, hour, type, effect, events, n) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (field, value, hour, type, effect) \
         DO UPDATE SET events = audit_counts.events + excluded.events, \
         n = audit_counts.n + excluded.n",
    )?
    .execute(rusqlite::params![
        field,
        value,
        hour,
        kind,
        effect,
        t.events as i64,
        t.n as i64
    ])?;
    Ok(())
}

/// Counts `inserted` in the rollup's tables ([`changes`]). Called inside the storing
/// transaction. (The upserts, and [`EXPIRE`], are valid PostgreSQL too: it wants the conflict's
/// columns named, and the row's own columns qualified beside `excluded`'s.)
pub fn add(c: &Connection, inserted: &[&Event]) -> Result<(), StoreError> {
    let changes = changes(inserted)?;
    for (key, t) in &changes.hourly {
        add_count(c, *key, t)?;
    }
    let mut hours = c.prepare_cached(
        "INSERT INTO audit_hours (field, value, hour, events, n) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (field, value, hour) \
         DO UPDATE SET events = audit_hours.events + excluded.events, \
         n = audit_hours.n + excluded.n",
    )?;
    for ((field, value, hour), t) in &changes.hours {
        hours.execute(rusqlite::params![
            field,
            value,
            hour,
            t.events as i64,
            t.n as i64
        ])?;
    }
    let mut total = c.prepare_cached(
        "INSERT INTO audit_totals (field, value, type, effect, events, n) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (field, value, type, effect) \
         DO UPDATE SET events = audit_totals.events + excluded.events, \
         n = audit_totals.n + excluded.n",
    )?;
    for ((field, value, kind, effect), t) in &changes.totals {
        total.execute(rusqlite::params![
            field,
            value,
            kind,
            effect,
            t.events as i64,
            t.n as i64
        ])?;
    }
    Ok(())
}

/// Retention's cutoff aligned down to a whole hour (the events before it are what retention
/// deletes), and that hour.
pub fn aligned(cutoff: &str) -> Result<(i64, String), BadTime> {
    let hour = hour(cutoff)?;
    Ok((hour, hour_start(hour)))
}

/// Forgets the hours before `?1`: their rows of `audit_counts` and `audit_hours` go, and what they
/// counted leaves `audit_totals`, its marginal rows too (a row reaching no event goes); the
/// words' rows ([`WORD`], hours alone: nothing to subtract) go by the index by hour. Run in order
/// in one transaction, so that the tables always agree; each (field, value) is read by its key,
/// never by a scan of every hour. Valid SQLite and PostgreSQL.
pub const EXPIRE: [&str; 5] = [
    "WITH base AS (
             SELECT c.field, c.value, c.type, c.effect, sum(c.events) AS events, sum(c.n) AS n
             FROM (SELECT DISTINCT field, value FROM audit_totals) AS k
             JOIN audit_counts AS c ON c.field = k.field AND c.value = k.value AND c.hour < ?1
             GROUP BY 1, 2, 3, 4),
         gone AS (
             SELECT field, value, type, effect, events, n FROM base
             UNION ALL
             SELECT field, value, type, '', sum(events), sum(n) FROM base GROUP BY 1, 2, 3
             UNION ALL
             SELECT field, value, '', effect, sum(events), sum(n) FROM base GROUP BY 1, 2, 4
             UNION ALL
             SELECT field, value, '', '', sum(events), sum(n) FROM base GROUP BY 1, 2)
         UPDATE audit_totals SET events = audit_totals.events - gone.events,
                                 n = audit_totals.n - gone.n
         FROM gone
         WHERE audit_totals.field = gone.field AND audit_totals.value = gone.value
           AND audit_totals.type = gone.type AND audit_totals.effect = gone.effect",
    "DELETE FROM audit_counts WHERE (field, value, hour, type, effect) IN (
             SELECT c.field, c.value, c.hour, c.type, c.effect
             FROM (SELECT DISTINCT field, value FROM audit_totals) AS k
             JOIN audit_counts AS c ON c.field = k.field AND c.value = k.value AND c.hour < ?1)",
    "DELETE FROM audit_hours WHERE (field, value, hour) IN (
             SELECT h.field, h.value, h.hour
             FROM (SELECT DISTINCT field, value FROM audit_totals) AS k
             JOIN audit_hours AS h ON h.field = k.field AND h.value = k.value AND h.hour < ?1)",
    "DELETE FROM audit_totals WHERE events <= 0",
    "DELETE FROM audit_counts WHERE field = 'word' AND hour < ?1",
];

/// Runs [`EXPIRE`] for the hours before `hour`, and SQLite's own
/// ([`word_rows::EXPIRE`](super::word_rows::EXPIRE)).
pub fn expire(c: &mut Connection, hour: i64) -> Result<(), StoreError> {
    let tx = c.transaction()?;
    for statement in EXPIRE.into_iter().chain([super::word_rows::EXPIRE]) {
        let mut statement = tx.prepare(statement)?;
        let bound = statement.parameter_count();
        statement.execute(rusqlite::params_from_iter([hour].into_iter().take(bound)))?;
    }
    tx.commit()?;
    Ok(())
}

/// What a query asks the rollup for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// How many events match.
    Count,
    /// The sums of `count` per value of a field.
    Stats(AuditField),
    /// The sums of `count` per bucket of these minutes and effect.
    Histogram(u32),
}

/// How the rollup answers a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The rolled-up field whose rows are read (`None`: field `*`, every event).
    pub field: Option<AuditField>,
    /// The query's condition on it, if any.
    pub value: Option<Pattern>,
    pub time: Time,
    /// The rows read are those of the text search's word [`WORD`] (`value`, exact) instead
    /// ([`plan_words`]).
    pub word: bool,
}

/// Which rows of the rollup, and which events, a route reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Time {
    /// All of time: `audit_totals`.
    All,
    /// The hours `from..to` of `audit_counts` (each end open when `None`), and the events of the
    /// `[since, until)` spans around them, none longer than an hour.
    Hours {
        from: Option<i64>,
        to: Option<i64>,
        spans: Vec<(String, String)>,
    },
}

/// Whether the rollup answers `ask` of `q`, and how: filters on type, effect and at most one
/// rolled-up field, no text search; a summary by that field, type, effect (or by any rolled-up
/// field when none is filtered); histogram buckets of whole hours. `None`: the events answer.
pub fn plan(q: &AuditQuery, ask: Ask) -> Option<Route> {
    if q.search.is_some() {
        return None;
    }
    let mut filtered: Option<(AuditField, &Pattern)> = None;
    for (field, pattern) in &q.fields {
        match field {
            AuditField::Type | AuditField::Effect => {}
            f if FIELDS.contains(f) && filtered.is_none() => filtered = Some((*f, pattern)),
            _ => return None,
        }
    }
    let field = match (ask, filtered) {
        (Ask::Histogram(minutes), _) if minutes == 0 || minutes % 60 != 0 => return None,
        (Ask::Stats(AuditField::Type | AuditField::Effect), f)
        | (Ask::Count | Ask::Histogram(_), f) => f.map(|(f, _)| f),
        (Ask::Stats(group), Some((f, _))) if group == f => Some(f),
        (Ask::Stats(group), None) if FIELDS.contains(&group) => Some(group),
        (Ask::Stats(_), _) => return None,
    };
    let time = time(q, matches!(ask, Ask::Histogram(_)))?;
    Some(Route {
        field,
        value: filtered.map(|(_, p)| p.clone()),
        time,
        word: false,
    })
}

/// The rows and events a time range reads (`hourly`: the hours are needed even for all of time).
fn time(q: &AuditQuery, hourly: bool) -> Option<Time> {
    let since = q.since.as_deref().map(seconds).transpose().ok()?;
    let until = q.until.as_deref().map(seconds).transpose().ok()?;
    if since.is_none() && until.is_none() && !hourly {
        return Some(Time::All);
    }
    // The first whole hour at or after `since`, the end of the last one before `until`.
    let from = since.map(|(s, whole)| s.div_euclid(3600) + i64::from(!(whole && s % 3600 == 0)));
    let to = until.map(|(u, _)| u.div_euclid(3600));
    let mut spans = Vec::new();
    match (&q.since, &q.until, from, to) {
        // Both ends in one hour (or none between them): the events alone.
        (Some(s), Some(u), Some(f), Some(t)) if f >= t => {
            if s < u {
                spans.push((s.clone(), u.clone()));
            }
            return Some(Time::Hours {
                from: Some(f),
                to: Some(f),
                spans,
            });
        }
        _ => {}
    }
    if let (Some(s), Some(f)) = (&q.since, from) {
        let start = hour_start(f);
        if *s != start {
            spans.push((s.clone(), start));
        }
    }
    if let (Some(u), Some(t)) = (&q.until, to) {
        let end = hour_start(t);
        if *u != end {
            spans.push((end, u.clone()));
        }
    }
    Some(Time::Hours { from, to, spans })
}

/// The pseudo-field of `audit_counts` whose values are the text search's words: per hour, type and
/// effect, how many events hold each word of lowercase ASCII letters alone. No `audit_totals`
/// rows: a search's count reads hours. (Words with other characters, such as random tokens,
/// numbers and hex, would make a row per event.) On PostgreSQL the console makes each event's
/// words ([`sql::tsvector`]), and the leading letters of the other words go to
/// `audit_word_runs`; on SQLite FTS5 makes them, and the console counts those of events whose
/// text is ASCII, which it splits and folds exactly as FTS5 does (`words::counted_words`; the
/// other events are listed in `audit_uncounted`).
pub const WORD: &str = "word";

/// A word's leading run of lowercase ASCII letters: the whole word when it is rolled up under
/// [`WORD`]. What the migration's SQL takes too (`ltrim` of those 26 letters), so that the
/// backfill and ingestion agree on which words are rows and which are runs.
pub fn letters(word: &str) -> &str {
    let end = word
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(word.len());
    &word[..end]
}

/// What the words of stored events add: `audit_counts`' rows under [`WORD`] for each word of
/// letters alone (one row per word, hour, type and effect, however many events), and for every
/// other word its leading run of letters, if any, with the newest hour it was seen in
/// (`audit_word_runs`: a prefix that some such word has is never answered by the rows).
#[allow(clippy::type_complexity)]
pub fn word_changes<'a>(
    stored: &[(&Event, &'a BTreeSet<String>)],
) -> Result<(BTreeMap<Key<'a>, Tally>, BTreeMap<&'a str, i64>), BadTime> {
    let mut rows: BTreeMap<Key<'a>, Tally> = BTreeMap::new();
    let mut runs: BTreeMap<&'a str, i64> = BTreeMap::new();
    for (e, words) in stored {
        let hour = hour(&e.time)?;
        for word in words.iter() {
            match letters(word) {
                w if w.len() == word.len() => rows
                    .entry((WORD, w, hour, e.kind.as_str(), e.effect.as_str()))
                    .or_default()
                    .add(1, e.count),
                "" => {}
                run => {
                    let newest = runs.entry(run).or_insert(hour);
                    *newest = (*newest).max(hour);
                }
            }
        }
    }
    Ok((rows, runs))
}

/// Whether the words' rows count a one-word text search ([`plan_words`]), and by which word's
/// rows: a whole word (`"curl"`, quoted) by its own; a prefix (`curl`, which also finds `curls`
/// and `curl7`) by the one rolled-up word that begins with it, or by its own when none does (no
/// rows: no event in the counted hours holds such a word), provided no other word does: `first`
/// and `second` are the first two rolled-up words from `word` on (byte order), `run` the first
/// run from `word` on. Two words beginning with it would count an event holding both twice; a
/// run, events whose word is not counted. `None`: the events are counted.
fn resolve(
    word: &str,
    prefix: bool,
    first: Option<&str>,
    second: Option<&str>,
    run: Option<&str>,
) -> Option<String> {
    let begins = |w: Option<&str>| w.is_some_and(|w| w.starts_with(word));
    match (prefix, begins(first), begins(second), begins(run)) {
        (false, ..) => Some(word.into()),
        (true, _, _, true) | (true, true, true, _) => None,
        (true, true, false, false) => first.map(String::from),
        (true, false, _, false) => Some(word.into()),
    }
}

/// The word of `q`'s search and whether it is a prefix, when the words' rows may count it (see
/// [`word_route`]): one term of one word.
fn word_search(q: &AuditQuery) -> Option<(String, bool)> {
    let (word, prefix) = q.search.as_ref().and_then(sql::one_word)?;
    word_route(q, &word).map(|_| (word, prefix))
}

/// How the count of `q`, whose search is the whole word `word`, is read from the word's rows
/// ([`WORD`]): the hours in its range from the rows, the partial hours at its ends from the
/// events. `None` unless the word is of letters alone ([`letters`]) and `q`'s other conditions
/// are on type, effect and time only (the rows are per hour, type and effect).
pub fn word_route(q: &AuditQuery, word: &str) -> Option<Route> {
    let others = q
        .fields
        .iter()
        .any(|(f, _)| !matches!(f, AuditField::Type | AuditField::Effect));
    if word.is_empty() || letters(word) != word || others {
        return None;
    }
    Some(Route {
        field: None,
        value: Some(Pattern::Exact(word.into())),
        time: time(q, true)?,
        word: true,
    })
}

/// How the count of a text search of one word of letters alone, with at most filters on type and
/// effect and a time range, is answered by its word's rows ([`WORD`], [`word_route`]) on
/// PostgreSQL instead of its events (a table page per match: its GIN index has no index-only
/// count). `None`: another search, another filter, a word [`resolve`] does not answer, or SQLite
/// (whose vocabulary tells which word a prefix names: `words::count`).
pub fn plan_words(r: &mut dyn Reader, q: &AuditQuery) -> Result<Option<Route>, StoreError> {
    if r.dialect() != Dialect::Postgres {
        return Ok(None);
    }
    let Some((word, prefix)) = word_search(q) else {
        return Ok(None);
    };
    let found = match prefix {
        false => resolve(&word, false, None, None, None),
        true => {
            // The first value from a bound on, by an index (one seek each).
            let mut next = |sql: &str, values: &[&str]| -> Result<Option<String>, StoreError> {
                let mut found = None;
                let values: Vec<Value> = values.iter().map(|v| Value::Text((*v).into())).collect();
                r.rows(sql, &values, &mut |row| {
                    found = Some(sql::text(row, 0)?);
                    Ok(false)
                })?;
                Ok(found)
            };
            let first = next(
                "SELECT value FROM audit_counts WHERE field = ?1 AND value >= ?2 \
                 ORDER BY value LIMIT 1",
                &[WORD, &word],
            )?;
            let second = match &first {
                Some(first) => next(
                    "SELECT value FROM audit_counts WHERE field = ?1 AND value > ?2 \
                     ORDER BY value LIMIT 1",
                    &[WORD, first],
                )?,
                None => None,
            };
            let run = next(
                "SELECT run FROM audit_word_runs WHERE run >= ?1 ORDER BY run LIMIT 1",
                &[&word],
            )?;
            resolve(
                &word,
                true,
                first.as_deref(),
                second.as_deref(),
                run.as_deref(),
            )
        }
    };
    Ok(found.and_then(|word| word_route(q, &word)))
}

/// `column = ?` or `column` matching a glob in `dialect`, its value appended to `values`.
fn matching(dialect: Dialect, column: &str, pattern: &Pattern, values: &mut Vec<Value>) -> String {
    match pattern {
        Pattern::Exact(t) => {
            values.push(Value::Text(t.clone()));
            format!("{column} = ?{}", values.len())
        }
        Pattern::Glob(parts) => dialect.glob(column, parts, values),
    }
}

/// The conditions on `column` (`type` or `effect`) that pick the rollup's rows for `q`: its
/// filters on `field`, and in `audit_totals` (`all`) the row kind: the column's own values when
/// filtered or summarised by it (`grouped`), else the marginal row over every value.
fn kinds(
    dialect: Dialect,
    q: &AuditQuery,
    column: &str,
    field: AuditField,
    grouped: bool,
    all: bool,
    values: &mut Vec<Value>,
) -> Vec<String> {
    let mut clauses: Vec<String> = q
        .fields
        .iter()
        .filter(|(f, _)| *f == field)
        .map(|(_, pattern)| matching(dialect, column, pattern, values))
        .collect();
    if all {
        clauses.push(if clauses.is_empty() && !grouped {
            format!("{column} = '{ANY}'")
        } else {
            format!("{column} != '{ANY}'")
        });
    }
    clauses
}

/// The samples of the partial hours at the start and at the end of the last time range read
/// (see [`Time::Hours`]), kept as a summary's sample is: the page asks for its count, five
/// summaries and a chart of one range, each of which reads those events. (Passed as `None`, the
/// partial hours are summed by SQL, as they are when a sample would be cut.)
pub type Spans = [Option<Sample>; 2];

/// Per (key, effect): the rollup's rows and the spans' events. The key is the group's value
/// (stats), the bucket's start (histogram) or nothing (count); the effect only for histograms.
fn tallies(
    r: &mut dyn Reader,
    q: &AuditQuery,
    route: &Route,
    ask: Ask,
    kept: Option<&mut Spans>,
) -> Result<HashMap<(String, String), Tally>, StoreError> {
    let mut out = HashMap::new();
    match globbed(r, route)?.as_deref() {
        // No value matches: no row.
        Some([]) => {}
        Some(values) => counted(r, q, route, ask, values, &mut out)?,
        None => counted(r, q, route, ask, &[], &mut out)?,
    }
    partial_hours(r, q, route, ask, kept, &mut out)?;
    Ok(out)
}

/// At most this many values a glob on the route's field matches are read by their keys
/// ([`globbed`]).
const MOST_GLOBBED: usize = 1_000;

/// The values a glob on the route's field matches, from its all-time rows (`audit_totals`, one
/// per value over every type and effect: a value with events in any hour has one), when at most
/// [`MOST_GLOBBED`]; `None` for an exact value or more values. Their rows are then read by their
/// keys (`value IN (...)`), not by testing the glob on each row of the field's range: on
/// PostgreSQL a regular expression costs about 1.5 µs a row, and a container glob's chart over 30
/// days reads 38,458 rows (55-110 ms, 17-25 ms by the keys, at 10,000,000 events).
fn globbed(r: &mut dyn Reader, route: &Route) -> Result<Option<Vec<String>>, StoreError> {
    let (Some(field), Some(Pattern::Glob(parts)), false) = (route.field, &route.value, route.word)
    else {
        return Ok(None);
    };
    let mut values = vec![Value::Text(field.name().into())];
    let matches = r.dialect().glob("value", parts, &mut values);
    let sql = format!(
        "SELECT value FROM audit_totals WHERE field = ?1 AND type = '{ANY}' AND effect = '{ANY}' \
         AND {matches} LIMIT {}",
        MOST_GLOBBED + 1
    );
    let found = sql::first_column(r, &sql, &values, sql::text)?;
    Ok((found.len() <= MOST_GLOBBED).then_some(found))
}

/// The bucket width of `ask` in seconds (0: not a histogram), and the second column of its
/// tallies (the effect of a histogram's).
fn shape(ask: Ask) -> (i64, &'static str) {
    match ask {
        Ask::Histogram(minutes) => (i64::from(minutes) * 60, "effect"),
        _ => (0, "''"),
    }
}

/// [`tallies`] of the rollup's rows, added to `out` (of the values `among` only, when any).
fn counted(
    r: &mut dyn Reader,
    q: &AuditQuery,
    route: &Route,
    ask: Ask,
    among: &[String],
    out: &mut HashMap<(String, String), Tally>,
) -> Result<(), StoreError> {
    let (sql, values) = rows_select(r.dialect(), q, route, ask, among);
    read(r, &sql, &values, out)
}

/// Whether `ask` of `q` over hours is answered by `audit_hours`, the rows over every type and
/// effect: nothing filters on type or effect, and neither is asked for (a summary by one, a
/// histogram's effect). One row per value and hour instead of one per type and effect.
fn marginal(q: &AuditQuery, ask: Ask) -> bool {
    let kind = |f: &AuditField| matches!(f, AuditField::Type | AuditField::Effect);
    let asks_kind = match ask {
        Ask::Count => false,
        Ask::Stats(group) => kind(&group),
        Ask::Histogram(_) => true,
    };
    !asks_kind && !q.fields.iter().any(|(f, _)| kind(f))
}

/// The statement of the rollup's rows [`counted`] reads (key, second column, events, sum of
/// `count`), and its parameters. `among`, when not empty, are the only values read (by their
/// keys), in place of the route's condition on the value.
pub(super) fn rows_select(
    dialect: Dialect,
    q: &AuditQuery,
    route: &Route,
    ask: Ask,
    among: &[String],
) -> (String, Vec<Value>) {
    let (width, second) = shape(ask);
    let field = match route.word {
        true => WORD,
        false => route.field.map_or(EVERY, AuditField::name),
    };
    let mut values = vec![Value::Text(field.into())];
    let mut clauses = vec!["field = ?1".to_owned()];
    match (&route.value, among) {
        (_, [_, ..]) => {
            let marks: Vec<String> = among
                .iter()
                .map(|v| {
                    values.push(Value::Text(v.clone()));
                    format!("?{}", values.len())
                })
                .collect();
            clauses.push(format!("value IN ({})", marks.join(", ")));
        }
        (Some(p), []) => clauses.push(matching(dialect, "value", p, &mut values)),
        (None, []) if route.field.is_none() => clauses.push("value = ''".into()),
        (None, []) => {}
    }
    let all = route.time == Time::All;
    // A word has rows by type and effect alone (none in `audit_hours`).
    let over_kinds = !all && !route.word && marginal(q, ask);
    if !over_kinds {
        for (column, field) in [("type", AuditField::Type), ("effect", AuditField::Effect)] {
            clauses.extend(kinds(
                dialect,
                q,
                column,
                field,
                ask == Ask::Stats(field),
                all,
                &mut values,
            ));
        }
    }
    let table = match &route.time {
        Time::All => "audit_totals".into(),
        Time::Hours { from, to, .. } => {
            for (bound, op) in [(from, ">="), (to, "<")] {
                if let Some(h) = bound {
                    values.push(Value::Integer(*h));
                    clauses.push(format!("hour {op} ?{}", values.len()));
                }
            }
            let (table, by_hour) = match over_kinds {
                true => ("audit_hours", "audit_hours_by_hour"),
                false => ("audit_counts", "audit_counts_by_hour"),
            };
            // Every value of the field since a given hour: those hours from the index by hour
            // (the key would read every hour of every value). A condition on the value reads that
            // value's hours by the key.
            match (route.value.is_none() && among.is_empty(), from.is_some()) {
                (true, true) => dialect.indexed(table, by_hour),
                _ => table.into(),
            }
        }
    };
    let key = match ask {
        Ask::Count => "''".to_owned(),
        Ask::Stats(AuditField::Type) => "type".into(),
        Ask::Stats(AuditField::Effect) => "effect".into(),
        Ask::Stats(_) => "value".into(),
        Ask::Histogram(_) => format!("hour * 3600 / {width} * {width}"),
    };
    let sql = format!(
        "SELECT {key}, {second}, CAST(sum(events) AS BIGINT), CAST(sum(n) AS BIGINT) \
         FROM {table} WHERE {} GROUP BY 1, 2",
        clauses.join(" AND ")
    );
    (sql, values)
}

/// [`tallies`] of the events of the partial hours, added to `out`: their sample (each end's
/// kept in `kept`, so that the page's count, summaries and chart read them once), or, past a
/// sample's size or for a field a sample does not hold, through the time index (at most an hour
/// each).
fn partial_hours(
    r: &mut dyn Reader,
    q: &AuditQuery,
    route: &Route,
    ask: Ask,
    kept: Option<&mut Spans>,
    out: &mut HashMap<(String, String), Tally>,
) -> Result<(), StoreError> {
    let dialect = r.dialect();
    let (width, second) = shape(ask);
    if let Time::Hours { spans, .. } = &route.time {
        let mut unsampled = Vec::new();
        let mut none = Spans::default();
        let (kept, sampled) = match kept {
            Some(kept) => (kept, true),
            None => (&mut none, false),
        };
        for ((since, until), kept) in spans.iter().zip(kept.iter_mut()) {
            if !sampled {
                unsampled.push((since, until));
                continue;
            }
            let part = AuditQuery {
                since: Some(since.clone()),
                until: Some(until.clone()),
                ..q.clone()
            };
            let sample = Sample::of(r, &part, SAMPLE, kept)?;
            match (sample.cut, ask) {
                (None, Ask::Stats(group)) if AuditField::GROUPS.contains(&group) => {
                    for (value, n) in sample.stats(group, u32::MAX, 0)? {
                        out.entry((value, String::new())).or_default().add(0, n);
                    }
                }
                (None, Ask::Count | Ask::Histogram(_)) => {
                    for ((start, effect), t) in sample.buckets(width.max(3600)) {
                        let key = match ask {
                            Ask::Histogram(_) => (bucket_start(start), effect.as_str().into()),
                            _ => Default::default(),
                        };
                        out.entry(key).or_default().add(t.events, t.n);
                    }
                }
                _ => unsampled.push((since, until)),
            }
        }
        let spans = unsampled;
        let (key, present) = match ask {
            Ask::Count => ("''".to_owned(), String::new()),
            Ask::Stats(group) => {
                let column = super::audits::column(group);
                (column.to_owned(), format!(" AND {column} IS NOT NULL"))
            }
            Ask::Histogram(_) => (
                format!("{} / {width} * {width}", dialect.seconds("time")),
                String::new(),
            ),
        };
        for (since, until) in spans {
            // A word's search is checked on each event of the span (at most an hour's, read
            // through the time index or a filter's), never through the GIN index: its bitmap
            // holds every match of the word (33 ms for `shadow` at 1,000,000 events, ten times
            // that at 10,000,000), where the hour holds about a thousandth of the events.
            let (search, words) = match route.word {
                true => (None, q.search.as_ref()),
                false => (q.search.clone(), None),
            };
            let part = AuditQuery {
                since: Some(since.to_owned()),
                until: Some(until.to_owned()),
                search,
                ..q.clone()
            };
            let mut values = Vec::new();
            let conditions = conditions(dialect, &part, &[], &mut values);
            let only = words.map_or(String::new(), |s| {
                format!(" FILTER (WHERE {})", dialect.search(s, &mut values))
            });
            let sql = format!(
                "SELECT {key}, {second}, count(*){only}, CAST(sum(count){only} AS BIGINT) FROM {} \
                 WHERE {conditions}{present} GROUP BY 1, 2",
                dialect.indexed("audits", "audits_by_time")
            );
            read(r, &sql, &values, out)?;
        }
    }
    Ok(())
}

/// Adds the rows of `sql` (key, effect, events, n) to `out`.
fn read(
    r: &mut dyn Reader,
    sql: &str,
    values: &[Value],
    out: &mut HashMap<(String, String), Tally>,
) -> Result<(), StoreError> {
    r.rows(sql, values, &mut |row| {
        let key = match row.first() {
            Some(Value::Integer(start)) => bucket_start(*start),
            _ => sql::text(row, 0)?,
        };
        let tally = out.entry((key, sql::text(row, 1)?)).or_default();
        tally.add(
            sql::opt_int(row, 2)?.unwrap_or(0) as u64,
            sql::opt_int(row, 3)?.unwrap_or(0) as u64,
        );
        Ok(true)
    })
}

/// How many events match (a route for [`Ask::Count`]).
pub fn count(
    r: &mut dyn Reader,
    q: &AuditQuery,
    route: &Route,
    kept: Option<&mut Spans>,
) -> Result<u64, StoreError> {
    let tallies = tallies(r, q, route, Ask::Count, kept)?;
    Ok(tallies.values().map(|t| t.events).sum())
}

/// The sums per value of `group`, largest first (ties by value), `limit` after `offset`.
pub fn stats(
    r: &mut dyn Reader,
    q: &AuditQuery,
    route: &Route,
    group: AuditField,
    kept: Option<&mut Spans>,
) -> Result<Vec<(String, u64)>, StoreError> {
    if let Some((sql, values)) = top(r.dialect(), q, route, group) {
        let mut rows = Vec::new();
        r.rows(&sql, &values, &mut |row| {
            rows.push((sql::text(row, 0)?, sql::int(row, 1)? as u64));
            Ok(true)
        })?;
        return Ok(rows);
    }
    let mut kept = kept;
    if let Some(rows) = largest_in_hours(r, q, route, group, kept.as_deref_mut())? {
        return Ok(rows);
    }
    let mut rows: Vec<(String, u64)> = tallies(r, q, route, Ask::Stats(group), kept)?
        .into_iter()
        .map(|((key, _), t)| (key, t.n))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(paged(rows, q))
}

/// The SQL of a summary the marginal rows of `audit_totals` answer already sorted, and its
/// parameters: all of time, by a rolled-up field not itself filtered (a filter on it picks its
/// values by their key instead), `type` and `effect` each exact or not filtered. It reads the
/// first `offset + limit` rows of one range of `audit_totals_by_n`, however many values the field
/// has.
fn top(
    dialect: Dialect,
    q: &AuditQuery,
    route: &Route,
    group: AuditField,
) -> Option<(String, Vec<Value>)> {
    if route.time != Time::All {
        return None;
    }
    let (sql, mut values) = ranked(dialect, q, route, group)?;
    values.push(Value::Integer(q.limit.into()));
    values.push(Value::Integer(q.offset.into()));
    let sql = format!("{sql} LIMIT ?{} OFFSET ?{}", values.len() - 1, values.len());
    Some((sql, values))
}

/// The values of `group` largest first over all of time (ties by value), for `q`'s exact type
/// and effect (or any), from one range of `audit_totals_by_n`; `None` when `route` filters on
/// the field itself, or `q` on a glob of type or effect (no such rows).
fn ranked(
    dialect: Dialect,
    q: &AuditQuery,
    route: &Route,
    group: AuditField,
) -> Option<(String, Vec<Value>)> {
    let exact = |field| {
        q.fields
            .iter()
            .all(|(f, p)| *f != field || matches!(p, Pattern::Exact(_)))
    };
    if route.value.is_some()
        || matches!(group, AuditField::Type | AuditField::Effect)
        || !exact(AuditField::Type)
        || !exact(AuditField::Effect)
    {
        return None;
    }
    let mut values = vec![Value::Text(group.name().into())];
    let mut clauses = vec!["field = ?1".to_owned()];
    for (column, field) in [("type", AuditField::Type), ("effect", AuditField::Effect)] {
        clauses.extend(kinds(dialect, q, column, field, false, true, &mut values));
    }
    let sql = format!(
        "SELECT value, n FROM {} WHERE {} ORDER BY n DESC, value",
        dialect.indexed("audit_totals", "audit_totals_by_n"),
        clauses.join(" AND "),
    );
    Some((sql, values))
}

/// At most this many values [`largest_in_hours`] reads one by one before it gives up for the sum
/// of every value's hours at once.
const CANDIDATES: usize = 200;

/// The summary of a time range by a field not filtered, without summing every value's hours:
/// the values are taken largest over all of time first ([`ranked`]), each one's sum over the
/// range read by its key (its hours, in chunks of values, and its events in the partial hours;
/// `audit_hours` when nothing asks for a type or effect), until the next
/// value's all-time sum is below the `offset + limit`-th largest found: no value after it can
/// reach the page (a range holds at most what all of time does). Exact; `None` when the values
/// cannot be ranked, when more than [`CANDIDATES`] would be read (a range whose largest values
/// are far down the all-time order), or for a field of fewer values over a day or less: the
/// hours are then summed at once.
fn largest_in_hours(
    r: &mut dyn Reader,
    q: &AuditQuery,
    route: &Route,
    group: AuditField,
    kept: Option<&mut Spans>,
) -> Result<Option<Vec<(String, u64)>>, StoreError> {
    let Time::Hours { from, to, .. } = route.time else {
        return Ok(None);
    };
    let Some((sql, values)) = ranked(r.dialect(), q, route, group) else {
        return Ok(None);
    };
    let wanted = q.offset as usize + q.limit as usize;
    if wanted == 0 {
        return Ok(Some(Vec::new()));
    }
    let mut ranking = Vec::new();
    r.rows(&sql, &values, &mut |row| {
        ranking.push((sql::text(row, 0)?, sql::int(row, 1)? as u64));
        Ok(ranking.len() < CANDIDATES)
    })?;
    // No whole hour: the partial ones are all there is. A field of fewer values, over a day or
    // less, is summed as fast at once: each of its values is in most hours, and one statement
    // reads them all.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64 / 3600);
    let hours = to.unwrap_or(now).saturating_sub(from.unwrap_or(i64::MIN));
    if hours <= 0 || (ranking.len() < CANDIDATES && hours <= 24) {
        return Ok(None);
    }
    let mut spans = HashMap::new();
    partial_hours(r, q, route, Ask::Stats(group), kept, &mut spans)?;
    let mut found: Vec<(String, u64)> = Vec::new();
    let mut complete = ranking.len() < CANDIDATES;
    let mut read_so_far = 0;
    'walk: while read_so_far < ranking.len() {
        // The values' hours are read in chunks, each as many values as all the chunks before it
        // (the first, the page's): a statement per chunk, not per value (each a round trip to
        // PostgreSQL); the few values read past where the walk stops cost less.
        let end = (read_so_far + read_so_far.max(wanted)).min(ranking.len());
        let chunk = &ranking[read_so_far..end];
        let among: Vec<String> = chunk.iter().map(|(v, _)| v.clone()).collect();
        let mut hours = HashMap::new();
        counted(r, q, route, Ask::Stats(group), &among, &mut hours)?;
        for (value, all) in chunk {
            // The `wanted`-th largest so far: a value whose all-time sum is below it cannot
            // pass it.
            if found.len() >= wanted && *all < found[wanted - 1].1 {
                complete = true;
                break 'walk;
            }
            let mut sums = Tally::default();
            for part in [&spans, &hours] {
                if let Some(t) = part.get(&(value.clone(), String::new())) {
                    sums.add(t.events, t.n);
                }
            }
            if sums.n > 0 {
                // Largest first, ties by value.
                let key = (sums.n, std::cmp::Reverse(value));
                let at = found.partition_point(|(v, n)| (*n, std::cmp::Reverse(v)) > key);
                found.insert(at, (value.clone(), sums.n));
            }
        }
        read_so_far = end;
    }
    Ok(complete.then(|| paged(found, q)))
}

/// `rows` after `q`'s offset, at most its limit.
fn paged<T>(rows: Vec<T>, q: &AuditQuery) -> Vec<T> {
    rows.into_iter()
        .skip(q.offset as usize)
        .take(q.limit as usize)
        .collect()
}

/// From this `offset` on, a list the rollup can count skips whole hours by their counts
/// ([`skip_hours`]): below it, reading the skipped index entries costs less than the hours.
pub const DEEP: u32 = 20_000;

/// `q` with its deep `offset` moved into its time range: the newest hours whose events all come
/// before the page are left out by `until` (the start of the hour after the one where the page
/// begins), and their events, counted by the rollup as [`count`] counts them, taken off the
/// offset. The page is then the same events, read from within one hour instead of after
/// skipping millions of index entries. `None`: the rollup cannot count `q`, or no hour is
/// skipped. Only hours the rollup counts are skipped: those retention is deleting (their counts
/// already gone, their events not yet) are older than every counted hour, and read as events.
/// (`from`: [`DEEP`], or lower in tests.)
pub fn skip_hours(
    r: &mut dyn Reader,
    q: &AuditQuery,
    from: u32,
) -> Result<Option<AuditQuery>, StoreError> {
    if q.offset < from {
        return Ok(None);
    }
    let Some(route) = plan(q, Ask::Histogram(60)) else {
        return Ok(None);
    };
    let mut hours: BTreeMap<String, u64> = BTreeMap::new();
    for ((start, _), t) in tallies(r, q, &route, Ask::Histogram(60), None)? {
        *hours.entry(start).or_default() += t.events;
    }
    let (mut skipped, mut before) = (0u64, None);
    for (start, events) in hours.iter().rev() {
        if skipped + events > u64::from(q.offset) {
            break;
        }
        skipped += events;
        before = Some(start);
    }
    let Some(start) = before.filter(|_| skipped > 0) else {
        return Ok(None);
    };
    Ok(Some(AuditQuery {
        until: Some(hour_start(hour(start)?)),
        offset: q.offset - skipped as u32,
        ..q.clone()
    }))
}

/// The buckets of `minutes` by effect, oldest first: the newest `limit` starts after `offset`.
pub fn histogram(
    r: &mut dyn Reader,
    q: &AuditQuery,
    route: &Route,
    minutes: u32,
    kept: Option<&mut Spans>,
) -> Result<Vec<Bucket>, StoreError> {
    let tallies = tallies(r, q, route, Ask::Histogram(minutes), kept)?;
    let mut starts: Vec<&String> = tallies.keys().map(|(start, _)| start).collect();
    starts.sort_unstable_by(|a, b| b.cmp(a));
    starts.dedup();
    let kept: HashSet<&String> = paged(starts, q).into_iter().collect();
    let mut buckets = Vec::new();
    for ((start, effect), t) in &tallies {
        if kept.contains(start) {
            buckets.push(Bucket {
                start: start.clone(),
                count: t.n,
                effect: parse_name(effect, &Effect::ALL, Effect::as_str).ok_or_else(|| {
                    audits::Unknown {
                        column: 1,
                        value: effect.clone(),
                    }
                })?,
            });
        }
    }
    buckets.sort_by(|a, b| {
        (a.start.as_str(), a.effect.as_str()).cmp(&(b.start.as_str(), b.effect.as_str()))
    });
    Ok(buckets)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::events::Kind;
    use crate::store::audits::tests::{all, event, store};
    use crate::store::sample::Sample;
    use crate::store::sqlite::Snapshot;
    use crate::store::{Sqlite, Store, audits};

    fn at(time: &str) -> i64 {
        hour(time).unwrap()
    }

    #[test]
    fn which_queries_the_rollup_answers() {
        use AuditField::*;
        let exact = |f: AuditField, v: &str| (f, Pattern::Exact(v.into()));
        let glob = |f: AuditField, v: &str| (f, Pattern::parse(v).unwrap());
        let query = |fields: Vec<(AuditField, Pattern)>| AuditQuery { fields, ..all() };
        let timed = |since: Option<&str>, until: Option<&str>| AuditQuery {
            since: since.map(|s| format!("2026-11-29T{s}Z")),
            until: until.map(|u| format!("2026-11-29T{u}Z")),
            ..all()
        };
        let t = |hm: &str| format!("2026-11-29T{hm}Z");
        let h = at(&t("10:00:00.000000"));
        let hours = |from, to, spans: &[(&str, &str)]| Time::Hours {
            from,
            to,
            spans: spans.iter().map(|(a, b)| (t(a), t(b))).collect(),
        };
        let no_hours = hours(None, None, &[]);
        let searched = AuditQuery {
            search: Some(crate::store::Search::parse("curl").unwrap()),
            ..all()
        };
        // (query, ask, the field whose rows are read and the time, or None: the events answer)
        type Read = Option<(Option<AuditField>, Time)>;
        let inside = |since: &str, until: &str| -> (AuditQuery, Ask, Read) {
            let time = hours(Some(h + 1), Some(h + 1), &[(since, until)]);
            (
                timed(Some(since), Some(until)),
                Ask::Count,
                Some((None, time)),
            )
        };
        let cases: Vec<(AuditQuery, Ask, Read)> = vec![
            (all(), Ask::Count, Some((None, Time::All))),
            (all(), Ask::Stats(Type), Some((None, Time::All))),
            (all(), Ask::Stats(Rule), Some((Some(Rule), Time::All))),
            (all(), Ask::Histogram(60), Some((None, no_hours.clone()))),
            (all(), Ask::Histogram(1440), Some((None, no_hours.clone()))),
            (all(), Ask::Histogram(30), None),
            (all(), Ask::Histogram(90), None),
            (
                query(vec![exact(Container, "web")]),
                Ask::Count,
                Some((Some(Container), Time::All)),
            ),
            (
                query(vec![glob(Container, "web-*")]),
                Ask::Stats(Container),
                Some((Some(Container), Time::All)),
            ),
            (
                query(vec![glob(Container, "web-*")]),
                Ask::Stats(Effect),
                Some((Some(Container), Time::All)),
            ),
            (query(vec![exact(Container, "web")]), Ask::Stats(Rule), None),
            (
                query(vec![exact(Domain, "x.test")]),
                Ask::Histogram(120),
                Some((Some(Domain), no_hours.clone())),
            ),
            (
                query(vec![
                    exact(Type, "dns"),
                    glob(Effect, "[ab]*"),
                    exact(CustomRule, "nc"),
                ]),
                Ask::Stats(CustomRule),
                Some((Some(CustomRule), Time::All)),
            ),
            (
                query(vec![exact(Type, "dns")]),
                Ask::Stats(Process),
                Some((Some(Process), Time::All)),
            ),
            (
                query(vec![exact(Container, "a"), exact(Image, "b")]),
                Ask::Count,
                None,
            ),
            (
                query(vec![exact(Container, "a"), exact(Container, "b")]),
                Ask::Count,
                None,
            ),
            (query(vec![exact(Pid, "7")]), Ask::Count, None),
            (query(vec![exact(Task, "t")]), Ask::Count, None),
            (query(vec![glob(Ip, "10.*")]), Ask::Stats(Type), None),
            (searched, Ask::Count, None),
            // Time: whole hours from the rollup, the partial ones from the events.
            (
                timed(Some("10:00:00.000000"), None),
                Ask::Count,
                Some((None, hours(Some(h), None, &[]))),
            ),
            (
                timed(Some("10:30:00.000000"), None),
                Ask::Stats(Container),
                Some((
                    Some(Container),
                    hours(Some(h + 1), None, &[("10:30:00.000000", "11:00:00.000000")]),
                )),
            ),
            (
                timed(Some("10:00:00.000001"), Some("12:15:00.000000")),
                Ask::Count,
                Some((
                    None,
                    hours(
                        Some(h + 1),
                        Some(h + 2),
                        &[
                            ("10:00:00.000001", "11:00:00.000000"),
                            ("12:00:00.000000", "12:15:00.000000"),
                        ],
                    ),
                )),
            ),
            (
                timed(None, Some("12:00:00.000000")),
                Ask::Histogram(60),
                Some((None, hours(None, Some(h + 2), &[]))),
            ),
            (
                timed(None, Some("12:00:00.500000")),
                Ask::Count,
                Some((
                    None,
                    hours(None, Some(h + 2), &[("12:00:00.000000", "12:00:00.500000")]),
                )),
            ),
            // Both ends in one hour, or across one boundary with no whole hour between: events.
            inside("10:30:00.000000", "10:45:00.000000"),
            inside("10:30:00.000000", "11:15:00.000000"),
            (
                timed(Some("11:00:00.000000"), Some("10:00:00.000000")),
                Ask::Count,
                Some((None, hours(Some(h + 1), Some(h + 1), &[]))),
            ),
        ];
        for (q, ask, want) in cases {
            let got = plan(&q, ask).map(|r| (r.field, r.time));
            assert_eq!(got, want, "{ask:?} of {q:?}");
        }
    }

    /// Which words are rows and which leave a run of letters, and which search the rows answer
    /// by which word's rows.
    #[test]
    fn a_search_of_one_word_is_counted_by_the_one_word_it_names() {
        for (word, letters_of) in [
            ("curl", "curl"),
            ("curl7", "curl"),
            ("x86", "x"),
            ("443", ""),
            ("été", ""),
            ("caféine", "caf"),
            ("", ""),
        ] {
            assert_eq!(letters(word), letters_of, "{word}");
        }
        // (word, prefix, first and second rolled-up words from it on, first run from it on)
        // -> the word whose rows are read, or None: the events are counted.
        let cases = [
            // A whole word (quoted): its own rows, whatever begins with it.
            (
                "curl",
                false,
                Some("curl"),
                Some("curls"),
                Some("curl"),
                Some("curl"),
            ),
            ("curl", false, None, None, None, Some("curl")),
            // The only word beginning with the prefix, or the prefix itself.
            ("curl", true, Some("curl"), Some("cut"), None, Some("curl")),
            (
                "cur",
                true,
                Some("curl"),
                Some("cut"),
                Some("cus"),
                Some("curl"),
            ),
            ("cur", true, Some("curl"), None, None, Some("curl")),
            // None begins with it: no row, no event in the counted hours.
            ("cux", true, Some("cy"), Some("da"), Some("cz"), Some("cux")),
            ("zz", true, None, None, None, Some("zz")),
            // Two words begin with it: an event with both would count twice.
            ("cur", true, Some("curl"), Some("curls"), None, None),
            ("curl", true, Some("curl"), Some("curls"), None, None),
            // A word not counted begins with it (`curl7`, run `curl`; `curlx9`, run `curlx`).
            ("curl", true, Some("curl"), Some("cut"), Some("curl"), None),
            ("cur", true, Some("curl"), None, Some("curlx"), None),
            ("cux", true, None, None, Some("cux"), None),
        ];
        for (word, prefix, first, second, run, want) in cases {
            assert_eq!(
                resolve(word, prefix, first, second, run).as_deref(),
                want,
                "{word} {prefix} {first:?} {second:?} {run:?}"
            );
        }
    }

    /// The words of stored events: a row per word of letters, hour, type and effect; the newest
    /// hour of each run.
    #[test]
    fn words_of_letters_are_rows_and_the_others_leave_their_runs() {
        let mut a = event("a", 0, "2026-11-29T10:15:00.000000Z");
        a.count = 3;
        let b = event("b", 0, "2026-11-29T10:45:00.000000Z");
        let c = event("c", 0, "2026-11-29T12:00:00.000000Z");
        let set = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<BTreeSet<_>>();
        let (wa, wb, wc) = (
            set(&["curl", "curl7", "443"]),
            set(&["curl", "x86"]),
            set(&["curl7", "wget"]),
        );
        let (rows, runs) = word_changes(&[(&a, &wa), (&b, &wb), (&c, &wc)]).unwrap();
        let h = at("2026-11-29T10:00:00.000000Z");
        let (kind, effect) = (a.kind.as_str(), a.effect.as_str());
        assert_eq!(
            rows.into_iter().collect::<Vec<_>>(),
            [
                ((WORD, "curl", h, kind, effect), Tally { events: 2, n: 4 }),
                (
                    (WORD, "wget", h + 2, kind, effect),
                    Tally { events: 1, n: 1 }
                ),
            ]
        );
        assert_eq!(
            runs.into_iter().collect::<Vec<_>>(),
            [("curl", h + 2), ("x", h)]
        );
    }

    /// Which searches the words' rows may count: one word of letters, type and effect at most;
    /// on SQLite none (no word rows), before any row is read.
    #[test]
    fn only_a_search_of_one_word_of_letters_may_read_the_words_rows() {
        use AuditField::*;
        let searched = |q: &str| AuditQuery {
            search: Some(crate::store::Search::parse(q).unwrap()),
            ..all()
        };
        let cases = [
            (searched("curl"), Some(("curl", true))),
            (searched("CURL"), Some(("curl", true))),
            (searched("\"curl\""), Some(("curl", false))),
            (
                searched("curl")
                    .with(Type, Pattern::Exact("process".into()))
                    .with(Effect, Pattern::parse("pre*").unwrap()),
                Some(("curl", true)),
            ),
            (
                AuditQuery {
                    since: Some("2026-11-29T10:30:00.000000Z".into()),
                    ..searched("shadow")
                },
                Some(("shadow", true)),
            ),
            (searched("x86"), None),
            (searched("été"), None),
            (searched("curl wget"), None),
            (searched("/usr/bin/curl"), None),
            (searched("\"rm -rf\""), None),
            (
                searched("curl").with(Container, Pattern::Exact("web-1".into())),
                None,
            ),
            (searched("curl").with(Pid, Pattern::Exact("7".into())), None),
            (all(), None),
        ];
        for (q, want) in cases {
            let got = word_search(&q);
            assert_eq!(got.as_ref().map(|(w, p)| (w.as_str(), *p)), want, "{q:?}");
        }
        let (_dir, s) = store(&spread());
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        assert_eq!(plan_words(r, &searched("curl")).unwrap(), None);
    }

    /// Sixty events over five hours: three containers, rules on most, counts of 1 to 5.
    pub(in crate::store) fn spread() -> Vec<Event> {
        (0..60u32)
            .map(|n| {
                let time = format!(
                    "2026-11-29T{:02}:{:02}:{:02}.{n:06}Z",
                    8 + n / 12,
                    (n * 7) % 60,
                    n % 60
                );
                let mut e = event(&format!("e{n}"), n, &time);
                e.container = ["web-1", "web-2", "db"][n as usize % 3].into();
                e.rule = (n % 4 != 0).then(|| format!("rule-{}", n % 3));
                e.count = u64::from(n % 5) + 1;
                e
            })
            .collect()
    }

    /// Every row of a rollup table but the words' (whose backfill is `word_rows::backfill`), as
    /// text.
    fn dump(c: &Connection, table: &str) -> Vec<String> {
        let mut select = c
            .prepare(&format!(
                "SELECT * FROM {table} WHERE field <> 'word' ORDER BY 1, 2, 3, 4, 5"
            ))
            .unwrap();
        let columns = select.column_count();
        select
            .query_map([], |r| {
                Ok((0..columns)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join(" "))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The rollup as stored, and as the backfill scripts make it from the events stored.
    fn rollup_and_backfill(s: &Sqlite) -> [(Vec<String>, Vec<String>); 3] {
        let c = s.reader_for_tests();
        let tables = ["audit_counts", "audit_totals", "audit_hours"];
        let kept = tables.map(|t| dump(&c, t));
        c.execute_batch(&format!(
            "BEGIN; DELETE FROM audit_counts; DELETE FROM audit_totals; {}{}{}",
            include_str!("rollup_backfill.sql"),
            include_str!("rollup_marginals.sql"),
            include_str!("rollup_hours.sql")
        ))
        .unwrap();
        let rebuilt = tables.map(|t| dump(&c, t));
        c.execute_batch("ROLLBACK").unwrap();
        let [a, b, h] = kept;
        let [x, y, z] = rebuilt;
        [(a, x), (b, y), (h, z)]
    }

    /// `audit_hours` as stored, and as the sums of `audit_counts` over every type and effect of
    /// each field, value and hour: what every batch, retention and backfill must keep equal (on
    /// either store). The rows, as text.
    pub(in crate::store) fn hours_and_their_counts(
        r: &mut dyn Reader,
    ) -> (Vec<String>, Vec<String>) {
        let mut rows = |sql: &str| {
            let mut out = Vec::new();
            r.rows(sql, &[], &mut |row| {
                out.push(format!("{row:?}"));
                Ok(true)
            })
            .unwrap();
            out
        };
        (
            rows("SELECT field, value, hour, events, n FROM audit_hours ORDER BY 1, 2, 3"),
            rows(
                "SELECT field, value, hour, CAST(sum(events) AS BIGINT), CAST(sum(n) AS BIGINT) \
                 FROM audit_counts WHERE field <> 'word' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            ),
        )
    }

    /// Batches (duplicates among them), retention and migration 13's backfill keep each row of
    /// `audit_hours` the sum of its hour's rows of `audit_counts`.
    #[test]
    fn the_hours_are_the_sums_of_the_counts_after_batches_retention_and_the_backfill() {
        let events = spread();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = Sqlite::open(&path).unwrap();
        let agree = |s: &Sqlite| {
            let c = s.reader_for_tests();
            let (hours, counts) = hours_and_their_counts(&mut Snapshot::of(&c).unwrap());
            assert_eq!(hours, counts);
            hours.len()
        };
        for batch in [&events[..25], &events[20..45], &events[..]] {
            s.add_audits(batch, "defender", "t").unwrap();
            assert!(agree(&s) > 0);
        }
        s.expire("2026-11-29T09:30:00.000000Z", 7).unwrap();
        let before = agree(&s);
        // A database of migration 12 (the same events and counts, no `audit_hours`): migration
        // 13 builds it from the counts.
        drop(s);
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "DROP TABLE audit_hours; DROP TABLE audit_uncounted; \
                 DROP TABLE audit_chunks; DROP TABLE audit_bits; DROP TABLE audit_sealing; \
                 DELETE FROM audit_counts WHERE field = 'word'; PRAGMA user_version = 12;",
            )
            .unwrap();
        let s = Sqlite::open(&path).unwrap();
        assert_eq!(agree(&s), before);
        s.expire("2026-11-30T00:00:00.000000Z", 7).unwrap();
        assert_eq!(agree(&s), 0);
    }

    fn every_event(s: &Sqlite) -> Tally {
        let c = s.reader_for_tests();
        let (events, n): (i64, i64) = c
            .query_row(
                "SELECT sum(events), sum(n) FROM audit_totals \
                 WHERE field = '*' AND type = '' AND effect = ''",
                [],
                |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?.unwrap_or(0),
                        r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    ))
                },
            )
            .unwrap();
        Tally {
            events: events as u64,
            n: n as u64,
        }
    }

    #[test]
    fn stored_batches_and_retention_keep_the_rollup_as_the_backfill_makes_it() {
        let events = spread();
        let (_dir, s) = store(&events[..40]);
        // Delivered again with new ones: the duplicates count once.
        assert_eq!(s.add_audits(&events[30..], "defender", "t").unwrap(), 20);
        let n: u64 = events.iter().map(|e| e.count).sum();
        assert_eq!(every_event(&s), Tally { events: 60, n });
        for (kept, rebuilt) in rollup_and_backfill(&s) {
            assert!(!kept.is_empty());
            assert_eq!(kept, rebuilt);
        }
        // Retention in the middle of 10:00 deletes the hours before it and what they counted.
        let expired = s.expire("2026-11-29T10:30:00.000000Z", 7).unwrap();
        assert_eq!(expired.audits, 24);
        let left: Vec<&Event> = events
            .iter()
            .filter(|e| e.time.as_str() >= "2026-11-29T10")
            .collect();
        assert_eq!(
            every_event(&s),
            Tally {
                events: left.len() as u64,
                n: left.iter().map(|e| e.count).sum()
            }
        );
        for (kept, rebuilt) in rollup_and_backfill(&s) {
            assert_eq!(kept, rebuilt);
        }
        // Everything gone: no row is left counting nothing.
        s.expire("2026-11-30T00:00:00.000000Z", 7).unwrap();
        for (kept, _) in rollup_and_backfill(&s) {
            assert_eq!(kept, Vec::<String>::new());
        }
    }

    #[test]
    fn the_rollup_answers_as_the_events_do() {
        use AuditField::*;
        let (_dir, s) = store(&spread());
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        let mut spans = Spans::default();
        let t = |hm: &str| Some(format!("2026-11-29T{hm}Z"));
        let exact = |f: AuditField, v: &str| (f, Pattern::Exact(v.into()));
        let glob = |f: AuditField, v: &str| (f, Pattern::parse(v).unwrap());
        let filters = [
            vec![],
            vec![exact(Container, "web-1")],
            vec![glob(Container, "web-*")],
            vec![glob(Container, "zz*")],
            vec![glob(Rule, "*-1"), exact(Type, Kind::ALL[1].as_str())],
            vec![glob(Effect, "[ap]*")],
            vec![exact(Effect, crate::events::Effect::ALL[0].as_str())],
            vec![
                exact(Type, Kind::ALL[0].as_str()),
                exact(Effect, crate::events::Effect::ALL[1].as_str()),
            ],
        ];
        let ranges = [
            (None, None),
            (t("10:00:00.000000"), None),
            (t("09:25:00.000000"), None),
            (t("08:40:13.000000"), t("11:05:00.000000")),
            (None, t("10:20:00.000000")),
            (t("09:10:00.000000"), t("09:50:00.000000")),
        ];
        for fields in &filters {
            for (since, until) in &ranges {
                for (limit, offset) in [(100, 0), (2, 1)] {
                    let q = AuditQuery {
                        fields: fields.clone(),
                        since: since.clone(),
                        until: until.clone(),
                        limit,
                        offset,
                        ..all()
                    };
                    let route = |ask| plan(&q, ask).unwrap_or_else(|| panic!("{ask:?} of {q:?}"));
                    // The partial hours summed by SQL, and from their samples kept across the
                    // queries (each read anew when the range changes, kept while it does not).
                    for mut kept in [None, Some(&mut spans)] {
                        assert_eq!(
                            count(r, &q, &route(Ask::Count), kept.as_deref_mut()).unwrap(),
                            audits::count(r, &q).unwrap(),
                            "{q:?}"
                        );
                        for group in [Container, Type, Effect, Rule] {
                            let Some(route) = plan(&q, Ask::Stats(group)) else {
                                continue;
                            };
                            let raw = sampled(r, &q, u32::MAX)
                                .stats(group, limit, offset)
                                .unwrap();
                            let got = stats(r, &q, &route, group, kept.as_deref_mut()).unwrap();
                            assert_eq!(got, raw, "{group:?} of {q:?}");
                        }
                        for minutes in [60, 120, 1440] {
                            let raw = sampled(r, &q, u32::MAX).histogram(minutes, limit, offset);
                            let route = route(Ask::Histogram(minutes));
                            let got = histogram(r, &q, &route, minutes, kept.as_deref_mut());
                            assert_eq!(got.unwrap(), raw, "{minutes} of {q:?}");
                        }
                    }
                }
            }
        }
    }

    /// A glob on the rolled-up field is read as the values it matches (from their all-time rows,
    /// a glob on a value each), whose rows are then read by their keys; an exact value, more
    /// values than [`MOST_GLOBBED`], or a glob on type or effect alone, are not.
    #[test]
    fn a_glob_on_the_rolled_up_field_is_read_as_the_values_it_matches() {
        use AuditField::*;
        let (_dir, s) = store(&spread());
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        let mut values = |field: AuditField, pattern: &str| {
            let q = all().with(field, Pattern::parse(pattern).unwrap());
            globbed(r, &plan(&q, Ask::Count).unwrap()).unwrap()
        };
        let cases = [
            (Container, "web-*", Some(vec!["web-1", "web-2"])),
            (Container, "*b*", Some(vec!["db", "web-1", "web-2"])),
            (Container, "zz*", Some(vec![])),
            (Rule, "rule-[!0]", Some(vec!["rule-1", "rule-2"])),
            (Container, "db", None),
            (Type, "p*", None),
        ];
        for (field, pattern, want) in cases {
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(values(field, pattern), want, "{field:?} {pattern}");
        }
        let q = all().with(Container, Pattern::parse("web-*").unwrap());
        let route = plan(&q, Ask::Histogram(60)).unwrap();
        let among = globbed(r, &route).unwrap().unwrap();
        let (sql, _) = rows_select(Dialect::Sqlite, &q, &route, Ask::Histogram(60), &among);
        assert!(
            sql.contains("value IN (?2, ?3)") && !sql.contains("GLOB"),
            "{sql}"
        );
    }

    /// A deep offset moved into the time range by the hours' counts pages as the offset over
    /// every match does: every offset, across hour boundaries and past the end, with filters the
    /// rollup counts (exact, glob, type) and time ranges on and off the hour.
    #[test]
    fn hours_skipped_by_their_counts_page_as_the_offset_does() {
        use AuditField::*;
        let (_dir, s) = store(&spread());
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        let t = |hm: &str| Some(format!("2026-11-29T{hm}Z"));
        let glob = |f: AuditField, v: &str| Pattern::parse(v).map(|p| (f, p)).unwrap();
        let queries = [
            all(),
            all().with(Container, Pattern::Exact("web-1".into())),
            AuditQuery {
                fields: vec![glob(Container, "web-*"), glob(Type, "[dp]*")],
                ..all()
            },
            AuditQuery {
                since: t("08:40:13.000000"),
                until: t("11:05:00.000000"),
                ..all()
            },
            AuditQuery {
                until: t("12:00:00.000000"),
                ..all().with(Rule, Pattern::Exact("rule-1".into()))
            },
        ];
        let mut moved = 0;
        for q in queries {
            for offset in 0..=62 {
                let q = AuditQuery {
                    offset,
                    limit: 7,
                    ..q.clone()
                };
                let mut values = Vec::new();
                let sql = format!(
                    "SELECT id FROM audits WHERE {} ORDER BY time DESC, seq DESC {}",
                    conditions(Dialect::Sqlite, &q, &[], &mut values),
                    audits::page(&q, &mut values)
                );
                let mut select = c.prepare(&sql).unwrap();
                let want: Vec<String> = select
                    .query_map(rusqlite::params_from_iter(values), |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let skipped = skip_hours(r, &q, 0).unwrap();
                moved += usize::from(skipped.is_some());
                let got: Vec<String> = audits::audits(
                    r,
                    skipped.as_ref().unwrap_or(&q),
                    crate::store::bitmaps::SHIFT,
                )
                .unwrap()
                .into_iter()
                .map(|e| e.event.id)
                .collect();
                assert_eq!(got, want, "{skipped:?} for {q:?}");
            }
        }
        assert!(moved > 100, "{moved}");
        // Below its offset, or beyond what the rollup counts, a list is not moved.
        let deep = AuditQuery {
            offset: 30,
            ..all()
        };
        assert_eq!(skip_hours(r, &deep, 31).unwrap(), None);
        let searched = AuditQuery {
            search: Some(crate::store::Search::parse("message").unwrap()),
            ..deep.clone()
        };
        assert_eq!(skip_hours(r, &searched, 0).unwrap(), None);
    }

    /// The top values of a field for one type and effect (or any) are the first rows of one
    /// range of `audit_totals_by_n`: no sum, no sort, whatever the number of values.
    #[test]
    fn top_values_are_the_first_rows_of_an_index_range() {
        use AuditField::*;
        let (_dir, s) = store(&spread());
        let c = s.reader_for_tests();
        let (kind, effect) = (
            Kind::ALL[0].as_str(),
            crate::events::Effect::ALL[0].as_str(),
        );
        let exact = |f: AuditField, v: &str| (f, Pattern::Exact(v.into()));
        for fields in [
            vec![],
            vec![exact(Type, kind)],
            vec![exact(Effect, effect)],
            vec![exact(Type, kind), exact(Effect, effect)],
        ] {
            let q = AuditQuery {
                fields,
                limit: 10,
                ..all()
            };
            let route = plan(&q, Ask::Stats(Domain)).unwrap();
            let p = audits::tests::explain(&c, top(Dialect::Sqlite, &q, &route, Domain).unwrap());
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].starts_with(
                    "SEARCH audit_totals USING COVERING INDEX audit_totals_by_n \
                     (field=? AND type=? AND effect=?"
                ),
                "{p:?}"
            );
        }
        // A glob on type, a summary by effect, a time range, a filter on the field: no top read.
        let glob = all().with(Type, Pattern::parse("d*").unwrap());
        let ranged = AuditQuery {
            since: Some("2026-11-29T10:00:00.000000Z".into()),
            ..all()
        };
        let web = all().with(Domain, Pattern::parse("e1*").unwrap());
        for (q, group) in [
            (&glob, Domain),
            (&all(), Effect),
            (&ranged, Domain),
            (&web, Domain),
        ] {
            let route = plan(q, Ask::Stats(group)).unwrap();
            assert_eq!(
                top(Dialect::Sqlite, q, &route, group),
                None,
                "{group:?} of {q:?}"
            );
        }
    }

    /// Which rows of the rollup a question reads, as SQLite plans it: over hours with no
    /// condition on type or effect, and no summary by either nor histogram (which needs the
    /// effect), `audit_hours` (one row per value and hour), by its key for one value or a glob's
    /// range and by its index by hour for every value; otherwise `audit_counts` (a row per type
    /// and effect); all of time, `audit_totals`.
    #[test]
    fn a_range_over_every_type_and_effect_reads_one_row_per_value_and_hour() {
        use AuditField::*;
        let (_dir, s) = store(&spread());
        let c = s.reader_for_tests();
        let week = |fields: Vec<(AuditField, Pattern)>| AuditQuery {
            fields,
            since: Some("2026-11-22T10:30:00.000000Z".into()),
            ..all()
        };
        let exact = |f: AuditField, v: &str| (f, Pattern::Exact(v.into()));
        let glob = |f: AuditField, v: &str| (f, Pattern::parse(v).unwrap());
        let until = AuditQuery {
            until: Some("2026-11-29T10:00:00.000000Z".into()),
            ..all().with(Container, Pattern::Exact("web-1".into()))
        };
        let hours_by_key = "SEARCH audit_hours USING PRIMARY KEY (field=? AND value=? AND hour>?)";
        let hours_by_hour =
            "SEARCH audit_hours USING COVERING INDEX audit_hours_by_hour (field=? AND hour>?)";
        let counts_by_key =
            "SEARCH audit_counts USING PRIMARY KEY (field=? AND value=? AND hour>?)";
        let counts_by_hour =
            "SEARCH audit_counts USING COVERING INDEX audit_counts_by_hour (field=? AND hour>?)";
        // (query, ask, the values a chunk of the top values' walk reads, the plan's one line)
        let cases: Vec<(AuditQuery, Ask, &[&str], &str)> = vec![
            // Every value since an hour (field `*` has one), from the index by hour.
            (week(vec![]), Ask::Count, &[], hours_by_hour),
            (week(vec![]), Ask::Stats(Container), &[], hours_by_hour),
            // The top values' walk: each value's hours by the key, a chunk in one statement.
            (week(vec![]), Ask::Stats(Domain), &["x.test"], hours_by_key),
            (
                week(vec![]),
                Ask::Stats(Domain),
                &["x.test", "y.test", "z.test"],
                hours_by_key,
            ),
            (
                week(vec![exact(Container, "web-1")]),
                Ask::Count,
                &[],
                hours_by_key,
            ),
            (
                week(vec![glob(Container, "web-*")]),
                Ask::Stats(Container),
                &[],
                "SEARCH audit_hours USING PRIMARY KEY (field=? AND value>? AND value<?)",
            ),
            (
                until,
                Ask::Count,
                &[],
                "SEARCH audit_hours USING PRIMARY KEY (field=? AND value=? AND hour<?)",
            ),
            // A type or effect asked or filtered on: the rows per type and effect.
            (week(vec![]), Ask::Stats(Type), &[], counts_by_hour),
            (week(vec![]), Ask::Stats(Effect), &[], counts_by_hour),
            (week(vec![]), Ask::Histogram(180), &[], counts_by_hour),
            (
                week(vec![exact(Type, "dns")]),
                Ask::Count,
                &[],
                counts_by_hour,
            ),
            (
                week(vec![exact(Type, "dns"), exact(Container, "web-1")]),
                Ask::Count,
                &[],
                counts_by_key,
            ),
            (
                week(vec![exact(Effect, "alert")]),
                Ask::Stats(Rule),
                &["rule-1", "rule-2"],
                counts_by_key,
            ),
            (
                week(vec![glob(Effect, "a*")]),
                Ask::Stats(Container),
                &[],
                counts_by_hour,
            ),
            // All of time: the totals.
            (
                all(),
                Ask::Count,
                &[],
                "SEARCH audit_totals USING PRIMARY KEY (field=? AND value=? AND type=? AND effect=?)",
            ),
        ];
        for (q, ask, among, want) in cases {
            let route = plan(&q, ask).unwrap_or_else(|| panic!("{ask:?} of {q:?}"));
            let among: Vec<String> = among.iter().map(|v| v.to_string()).collect();
            let select = rows_select(Dialect::Sqlite, &q, &route, ask, &among);
            let p = audits::tests::explain(&c, select);
            // (Then, for some, a B-tree of the few groups.)
            assert_eq!(p[0], want, "{ask:?} of {q:?}");
            assert!(p[1..].iter().all(|l| l.contains("B-TREE")), "{p:?}");
        }
    }

    /// Events over three days, the containers' and rules' counts unlike their all-time order.
    fn days() -> Vec<Event> {
        (0..144u32)
            .map(|n| {
                let time = format!(
                    "2026-11-{:02}T{:02}:{:02}:00.{n:06}Z",
                    27 + n / 48,
                    n % 48 / 2,
                    (n * 13) % 60
                );
                let mut e = event(&format!("d{n}"), n, &time);
                // Early days mostly `old-*`, the last mostly `web-*`.
                e.container = match (n / 48, n % 4) {
                    (2, 0) | (0 | 1, 1..) => format!("old-{}", n % 3),
                    _ => format!("web-{}", n % 5),
                };
                e.rule = (n % 5 != 0).then(|| format!("rule-{}", n % 7));
                e.count = u64::from(n % 4) + 1;
                e
            })
            .collect()
    }

    /// Over ranges of more than a day, the top values (walked in all-time order, each one's
    /// hours read from `audit_hours`), the totals and the histograms are what the events say.
    #[test]
    fn ranges_of_days_answer_as_the_events_do() {
        use AuditField::*;
        let (_dir, s) = store(&days());
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        let t = |at: &str| Some(format!("2026-11-{at}Z"));
        let ranges = [
            (t("27T05:30:00.000000"), None),
            (t("28T00:00:00.000000"), None),
            (t("27T10:15:00.000000"), t("29T20:45:00.000000")),
            (None, t("29T03:00:00.000000")),
        ];
        for fields in [
            vec![],
            vec![(Container, Pattern::parse("web-*").unwrap())],
            vec![(Type, Pattern::Exact(Kind::ALL[0].as_str().into()))],
        ] {
            for (since, until) in &ranges {
                for (limit, offset) in [(3, 0), (2, 2), (100, 0)] {
                    let q = AuditQuery {
                        fields: fields.clone(),
                        since: since.clone(),
                        until: until.clone(),
                        limit,
                        offset,
                        ..all()
                    };
                    let route = |ask| plan(&q, ask).unwrap_or_else(|| panic!("{ask:?} of {q:?}"));
                    let mut kept = Spans::default();
                    assert_eq!(
                        count(r, &q, &route(Ask::Count), Some(&mut kept)).unwrap(),
                        audits::count(r, &q).unwrap(),
                        "{q:?}"
                    );
                    for group in [Container, Rule, Type] {
                        let Some(route) = plan(&q, Ask::Stats(group)) else {
                            continue;
                        };
                        let raw = sampled(r, &q, u32::MAX)
                            .stats(group, limit, offset)
                            .unwrap();
                        let got = stats(r, &q, &route, group, Some(&mut kept)).unwrap();
                        assert_eq!(got, raw, "{group:?} of {q:?}");
                    }
                    let raw = sampled(r, &q, u32::MAX).histogram(180, limit, offset);
                    let got = histogram(r, &q, &route(Ask::Histogram(180)), 180, Some(&mut kept));
                    assert_eq!(got.unwrap(), raw, "{q:?}");
                }
            }
        }
    }

    /// The sample of `q`'s newest `size` events.
    fn sampled(r: &mut dyn Reader, q: &AuditQuery, size: u32) -> Sample {
        let mut kept = None;
        Sample::of(r, q, size, &mut kept).unwrap();
        kept.unwrap()
    }

    /// What the rollup cannot answer is counted over the newest events, and says so when cut.
    #[test]
    fn summaries_beyond_the_rollup_count_the_newest_events() {
        let events = spread();
        let (_dir, s) = store(&events);
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        let q = all().with(AuditField::Pid, Pattern::parse("1*").unwrap());
        let mut newest: Vec<&Event> = events.iter().collect();
        newest.sort_by(|a, b| b.time.cmp(&a.time));
        newest.truncate(5);
        let cut = sampled(r, &q, 5);
        assert_eq!(cut.cut, Some(5));
        assert_eq!(
            cut.stats(AuditField::Type, 100, 0)
                .unwrap()
                .iter()
                .map(|(_, n)| n)
                .sum::<u64>(),
            newest.iter().map(|e| e.count).sum::<u64>()
        );
        let whole = sampled(r, &q, 60);
        assert_eq!(whole.cut, None);
        assert_eq!(
            whole
                .stats(AuditField::Type, 100, 0)
                .unwrap()
                .iter()
                .map(|(_, n)| n)
                .sum::<u64>(),
            events.iter().map(|e| e.count).sum::<u64>()
        );
        assert_eq!(
            cut.histogram(60, 100, 0)
                .iter()
                .map(|b| b.count)
                .sum::<u64>(),
            newest.iter().map(|e| e.count).sum::<u64>()
        );
        assert_eq!(sampled(r, &q, 61).cut, None);
    }
}
