//! The SQLite side of audit queries: a query's conditions as SQL (exact values by `=`, globs by
//! `GLOB`, the text search by the FTS5 table `audits_text`), the pages of events and their count,
//! the summaries (by field, by time), and the batches of retention. Every value reaches SQLite as
//! a bound parameter; the only text built from a request is the FTS5 query, whose terms are
//! quoted here.

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::query::{AuditField, AuditQuery, Bucket, GlobPart, Pattern, Search};
use super::{StoreError, StoredEvent};
use crate::events::{Effect, Event, Kind, parse_name};

/// Migration 8: the text search (an FTS5 index of the searched fields, kept by triggers and
/// built for the rows already there) and an index per filter, each ending with `time` so that one
/// filter's events come newest first without a sort (the rowid `seq` ends every index). Fields
/// most events lack are indexed where present only.
pub const MIGRATION: &str = "
CREATE VIRTUAL TABLE audits_text USING fts5(
    message, cmdline, process, domain, ip, url, content = 'audits', content_rowid = 'seq'
);
CREATE TRIGGER audits_text_insert AFTER INSERT ON audits BEGIN
    INSERT INTO audits_text (rowid, message, cmdline, process, domain, ip, url)
    VALUES (new.seq, new.message, new.cmdline, new.process, new.domain, new.ip, new.url);
END;
CREATE TRIGGER audits_text_delete AFTER DELETE ON audits BEGIN
    INSERT INTO audits_text (audits_text, rowid, message, cmdline, process, domain, ip, url)
    VALUES ('delete', old.seq, old.message, old.cmdline, old.process, old.domain, old.ip, old.url);
END;
INSERT INTO audits_text (audits_text) VALUES ('rebuild');
CREATE INDEX audits_by_container ON audits (container, time);
CREATE INDEX audits_by_image ON audits (image, time);
CREATE INDEX audits_by_type ON audits (type, time);
CREATE INDEX audits_by_effect ON audits (effect, time);
CREATE INDEX audits_by_rule ON audits (rule, time) WHERE rule IS NOT NULL;
CREATE INDEX audits_by_attack ON audits (attack, time) WHERE attack IS NOT NULL;
CREATE INDEX audits_by_custom_rule ON audits (custom_rule, time) WHERE custom_rule IS NOT NULL;
CREATE INDEX audits_by_task ON audits (task, time) WHERE task IS NOT NULL;
CREATE INDEX audits_by_cluster ON audits (cluster, time) WHERE cluster IS NOT NULL;
CREATE INDEX audits_by_family ON audits (family, time) WHERE family IS NOT NULL;
CREATE INDEX audits_by_service ON audits (service, time) WHERE service IS NOT NULL;
CREATE INDEX audits_by_pid ON audits (pid, time);
CREATE INDEX audits_by_process ON audits (process, time);
CREATE INDEX audits_by_cmdline ON audits (cmdline, time) WHERE cmdline IS NOT NULL;
CREATE INDEX audits_by_parent ON audits (parent, time) WHERE parent IS NOT NULL;
CREATE INDEX audits_by_domain ON audits (domain, time) WHERE domain IS NOT NULL;
CREATE INDEX audits_by_ip ON audits (ip, time) WHERE ip IS NOT NULL;
CREATE INDEX audits_by_port ON audits (port, time) WHERE port IS NOT NULL;
CREATE INDEX audits_by_source ON audits (source, time) WHERE source IS NOT NULL;
CREATE INDEX audits_by_method ON audits (method, time) WHERE method IS NOT NULL;
CREATE INDEX audits_by_url ON audits (url, time) WHERE url IS NOT NULL;
CREATE INDEX audits_by_source_ip ON audits (source_ip, time) WHERE source_ip IS NOT NULL;
CREATE INDEX audits_by_field ON audits (field, time) WHERE field IS NOT NULL;
CREATE INDEX audits_by_request_id ON audits (request_id, time) WHERE request_id IS NOT NULL;
";

/// The columns of a [`StoredEvent`], in the order [`stored_event`] reads them.
pub const COLUMNS: &str = "id, time, type, effect, rule, attack, custom_rule, container, image, \
                           task, pid, process, cmdline, parent, domain, ip, port, message, count, \
                           cluster, family, service, source, method, url, source_ip, field, \
                           request_id";

/// The column of a field.
fn column(field: AuditField) -> &'static str {
    match field {
        AuditField::Container => "container",
        AuditField::Image => "image",
        AuditField::Type => "type",
        AuditField::Effect => "effect",
        AuditField::Rule => "rule",
        AuditField::Attack => "attack",
        AuditField::CustomRule => "custom_rule",
        AuditField::Task => "task",
        AuditField::Cluster => "cluster",
        AuditField::Family => "family",
        AuditField::Service => "service",
        AuditField::Pid => "pid",
        AuditField::Process => "process",
        AuditField::Cmdline => "cmdline",
        AuditField::Parent => "parent",
        AuditField::Domain => "domain",
        AuditField::Ip => "ip",
        AuditField::Port => "port",
        AuditField::Source => "source",
        AuditField::Method => "method",
        AuditField::Url => "url",
        AuditField::SourceIp => "source_ip",
        AuditField::Field => "field",
        AuditField::RequestId => "request_id",
    }
}

/// A glob in SQLite's `GLOB` syntax: the same `*`, `?` and classes (`[^...]` for `[!...]`), and
/// no escape character, so that a literal `*`, `?` or `[` is written as a class of itself.
pub fn sqlite_glob(parts: &[GlobPart]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            GlobPart::Text(text) => {
                for c in text.chars() {
                    match c {
                        '*' | '?' | '[' => {
                            out.push('[');
                            out.push(c);
                            out.push(']');
                        }
                        c => out.push(c),
                    }
                }
            }
            GlobPart::Any => out.push('*'),
            GlobPart::One => out.push('?'),
            GlobPart::Class { negated, set } => {
                out.push('[');
                // A non-negated set never starts with `^` (the parser reads that as negation).
                if *negated {
                    out.push('^');
                }
                out.push_str(set);
                out.push(']');
            }
        }
    }
    out
}

/// The FTS5 query of a search: each term a quoted string (a `"` doubled, so nothing in it is
/// syntax), a prefix term followed by `*`, all joined by `AND`.
pub fn fts_query(search: &Search) -> String {
    search
        .terms
        .iter()
        .map(|t| {
            let quoted = format!("\"{}\"", t.text.replace('"', "\"\""));
            if t.prefix {
                format!("{quoted} *")
            } else {
                quoted
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A query's `WHERE` clause (`1` when it has no condition) and its parameters, numbered from 1.
fn conditions(q: &AuditQuery) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    let mut bind = |clause: &str, value: Value, clauses: &mut Vec<String>| {
        values.push(value);
        clauses.push(clause.replace('?', &format!("?{}", values.len())));
    };
    for (field, pattern) in &q.fields {
        let column = column(*field);
        match pattern {
            Pattern::Exact(text) => {
                // A number's field compares numbers (the parser checked it is one).
                let value = match text.parse::<i64>() {
                    Ok(n) if field.numeric() => Value::Integer(n),
                    _ => Value::Text(text.clone()),
                };
                bind(&format!("{column} = ?"), value, &mut clauses);
            }
            Pattern::Glob(parts) => bind(
                &format!("{column} GLOB ?"),
                Value::Text(sqlite_glob(parts)),
                &mut clauses,
            ),
        }
    }
    if let Some(search) = &q.search {
        bind(
            "seq IN (SELECT rowid FROM audits_text WHERE audits_text MATCH ?)",
            Value::Text(fts_query(search)),
            &mut clauses,
        );
    }
    if let Some(since) = &q.since {
        bind("time >= ?", Value::Text(since.clone()), &mut clauses);
    }
    if let Some(until) = &q.until {
        bind("time < ?", Value::Text(until.clone()), &mut clauses);
    }
    match clauses.is_empty() {
        true => ("1".into(), values),
        false => (clauses.join(" AND "), values),
    }
}

/// `LIMIT ?n OFFSET ?n+1` after `values`, with them.
fn page(q: &AuditQuery, values: &mut Vec<Value>) -> String {
    values.push(Value::Integer(q.limit.into()));
    values.push(Value::Integer(q.offset.into()));
    format!("LIMIT ?{} OFFSET ?{}", values.len() - 1, values.len())
}

/// The SQL of a page of events, and its parameters.
pub fn select(q: &AuditQuery) -> (String, Vec<Value>) {
    let (conditions, mut values) = conditions(q);
    let page = page(q, &mut values);
    let sql = format!(
        "SELECT {COLUMNS} FROM audits WHERE {conditions} ORDER BY time DESC, seq DESC {page}"
    );
    (sql, values)
}

pub fn audits(c: &Connection, q: &AuditQuery) -> Result<Vec<StoredEvent>, StoreError> {
    let (sql, values) = select(q);
    let mut select = c.prepare_cached(&sql)?;
    let rows = select.query_map(params_from_iter(values), stored_event)?;
    rows.collect::<Result<_, _>>().map_err(StoreError::from)
}

/// How many events match, whatever the limit and offset.
pub fn count(c: &Connection, q: &AuditQuery) -> Result<u64, StoreError> {
    let (conditions, values) = conditions(q);
    let sql = format!("SELECT count(*) FROM audits WHERE {conditions}");
    let n: i64 = c
        .prepare_cached(&sql)?
        .query_row(params_from_iter(values), |r| r.get(0))?;
    Ok(n as u64)
}

/// The SQL of a summary by `group`, and its parameters.
pub fn stats_select(q: &AuditQuery, group: AuditField) -> (String, Vec<Value>) {
    let (conditions, mut values) = conditions(q);
    let page = page(q, &mut values);
    let column = column(group);
    let sql = format!(
        "SELECT {column}, sum(count) AS n FROM audits WHERE {conditions} AND {column} IS NOT NULL \
         GROUP BY {column} ORDER BY n DESC, {column} {page}"
    );
    (sql, values)
}

/// The events' `count`s summed per value of `group`, largest first (ties by value).
pub fn stats(
    c: &Connection,
    q: &AuditQuery,
    group: AuditField,
) -> Result<Vec<(String, u64)>, StoreError> {
    let (sql, values) = stats_select(q, group);
    let mut select = c.prepare_cached(&sql)?;
    let rows = select.query_map(params_from_iter(values), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect::<Result<_, _>>().map_err(StoreError::from)
}

/// The events' `count`s summed per bucket of `minutes` and effect, oldest bucket first: the
/// newest `limit` buckets (after skipping `offset`) that hold events. Buckets start at multiples
/// of their width since the Unix epoch (a 60-minute bucket starts at a full hour UTC).
pub fn histogram(c: &Connection, q: &AuditQuery, minutes: u32) -> Result<Vec<Bucket>, StoreError> {
    let (conditions, mut values) = conditions(q);
    let page = page(q, &mut values);
    values.push(Value::Integer(i64::from(minutes) * 60));
    let width = values.len();
    let sql = format!(
        "WITH b AS (
             SELECT CAST(strftime('%s', time) AS INTEGER) / ?{width} * ?{width} AS start,
                    effect, sum(count) AS n
             FROM audits WHERE {conditions} GROUP BY start, effect)
         SELECT strftime('%Y-%m-%dT%H:%M:%SZ', start, 'unixepoch'), effect, n FROM b
         WHERE start IN (SELECT DISTINCT start FROM b ORDER BY start DESC {page})
         ORDER BY start, effect"
    );
    let mut select = c.prepare_cached(&sql)?;
    let rows = select.query_map(params_from_iter(values), |r| {
        let effect: String = r.get(1)?;
        Ok(Bucket {
            start: r.get(0)?,
            effect: parse_name(&effect, &Effect::ALL, Effect::as_str)
                .ok_or_else(|| unknown(1, effect))?,
            count: r.get::<_, i64>(2)? as u64,
        })
    })?;
    rows.collect::<Result<_, _>>().map_err(StoreError::from)
}

/// The tables retention empties, and the column that says how old a row is.
pub const EXPIRING: [(&str, &str); 4] = [
    ("audits", "time"),
    ("activity", "time"),
    ("defenders", "last_seen"),
    ("observations", "last_seen"),
];

/// Deletes at most `batch` rows of `table` older than `cutoff`; how many it deleted.
pub fn expire_batch(
    c: &Connection,
    (table, age): (&str, &str),
    cutoff: &str,
    batch: u32,
) -> Result<u64, StoreError> {
    let deleted = c
        .prepare_cached(&format!(
            "DELETE FROM {table} WHERE rowid IN \
                 (SELECT rowid FROM {table} WHERE {age} < ?1 LIMIT ?2)"
        ))?
        .execute(rusqlite::params![cutoff, batch])?;
    Ok(deleted as u64)
}

fn unknown(column: usize, value: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown value {value:?}").into(),
    )
}

/// One row of [`COLUMNS`].
pub fn stored_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let kind: String = r.get(2)?;
    let effect: String = r.get(3)?;
    let event = Event {
        id: r.get(0)?,
        time: r.get(1)?,
        kind: parse_name(&kind, &Kind::ALL, Kind::as_str).ok_or_else(|| unknown(2, kind))?,
        effect: parse_name(&effect, &Effect::ALL, Effect::as_str)
            .ok_or_else(|| unknown(3, effect))?,
        rule: r.get(4)?,
        attack: r.get(5)?,
        custom_rule: r.get(6)?,
        container: r.get(7)?,
        image: r.get(8)?,
        task: r.get(9)?,
        cluster: r.get(19)?,
        family: r.get(20)?,
        service: r.get(21)?,
        pid: r.get(10)?,
        process: r.get(11)?,
        cmdline: r.get(12)?,
        parent: r.get(13)?,
        domain: r.get(14)?,
        ip: r.get(15)?,
        port: r.get(16)?,
        method: r.get(23)?,
        url: r.get(24)?,
        source_ip: r.get(25)?,
        field: r.get(26)?,
        request_id: r.get(27)?,
        message: r.get(17)?,
        count: r.get::<_, i64>(18)? as u64,
    };
    Ok(StoredEvent {
        event,
        source: r.get(22)?,
    })
}
