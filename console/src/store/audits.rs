//! Audit queries: their SQLite schema (the FTS5 table `audits_text` and the filters' indexes), a
//! query's conditions as SQL in either dialect (exact values by `=`, globs by the backend's
//! pattern match or by the `IN` of the values they match, the text search by the backend's
//! full-text index), the pages of events and their count (planned in `lists`) read through a
//! [`Reader`], and the batches of retention. Every value reaches the database as a bound
//! parameter; the only text built from a request is the full-text query, whose terms are quoted
//! here (SQLite) or in `sql` (PostgreSQL).

use rusqlite::Connection;

use super::query::{AuditField, AuditQuery, GlobPart, Pattern, Search};
use super::sql::{self, Dialect, Reader, Value};
use super::{StoreError, StoredEvent, lists};
use crate::events::{Effect, Event, Kind, parse_name};

/// Migration 8: the text search (an FTS5 index of the searched fields, kept by triggers and
/// built for the rows already there) and an index per filter, each ending with `time` so that one
/// filter's events come newest first without a sort (the rowid `seq` ends every index). Fields
/// most events lack are indexed where present only. Every index costs each stored event a B-tree
/// insertion, so four filters go without one: `pid` (a process's number, short-lived and filtered
/// along with its container), `source` (a handful of tokens: no index would narrow much), `cmdline`
/// and `url` (long texts, whose words the text search indexes already).
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
CREATE INDEX audits_by_process ON audits (process, time);
CREATE INDEX audits_by_parent ON audits (parent, time) WHERE parent IS NOT NULL;
CREATE INDEX audits_by_domain ON audits (domain, time) WHERE domain IS NOT NULL;
CREATE INDEX audits_by_ip ON audits (ip, time) WHERE ip IS NOT NULL;
CREATE INDEX audits_by_port ON audits (port, time) WHERE port IS NOT NULL;
CREATE INDEX audits_by_method ON audits (method, time) WHERE method IS NOT NULL;
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
pub(super) fn column(field: AuditField) -> &'static str {
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
pub(super) fn fts_query(search: &Search) -> String {
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

/// A query's `WHERE` clause in `dialect` (`1 = 1` when it has no condition), its parameters
/// appended to `values` (numbered after those already there). A glob that `expanded` (per
/// condition, see [`lists::Expanded`]) lists the values of is an `IN` of them, which its index
/// answers by ranges (none: no row).
pub(super) fn conditions(
    dialect: Dialect,
    q: &AuditQuery,
    expanded: &[Option<Vec<String>>],
    values: &mut Vec<Value>,
) -> String {
    let mut clauses = Vec::new();
    let bind = |value: Value, values: &mut Vec<Value>| {
        values.push(value);
        format!("?{}", values.len())
    };
    for (i, (field, pattern)) in q.fields.iter().enumerate() {
        let column = column(*field);
        match (pattern, expanded.get(i).and_then(Option::as_ref)) {
            (Pattern::Exact(text), _) => {
                // A number's field compares numbers (the parser checked it is one).
                let value = match text.parse::<i64>() {
                    Ok(n) if field.numeric() => Value::Integer(n),
                    _ => Value::Text(text.clone()),
                };
                clauses.push(format!("{column} = {}", bind(value, values)));
            }
            // PostgreSQL has no empty `IN ()`.
            (Pattern::Glob(_), Some(matched)) if matched.is_empty() => clauses.push("1 = 0".into()),
            (Pattern::Glob(_), Some(matched)) => {
                let list: Vec<String> = matched
                    .iter()
                    .map(|v| bind(Value::Text(v.clone()), values))
                    .collect();
                clauses.push(format!("{column} IN ({})", list.join(", ")));
            }
            (Pattern::Glob(parts), None) => {
                // A glob matches a number's text: SQLite's `GLOB` reads it so, PostgreSQL's `~`
                // takes only text.
                let column = match (dialect, field.numeric()) {
                    (Dialect::Postgres, true) => format!("CAST({column} AS TEXT)"),
                    _ => column.to_owned(),
                };
                clauses.push(dialect.glob(&column, parts, values));
            }
        }
    }
    if let Some(search) = &q.search {
        clauses.push(dialect.search(search, values));
    }
    if let Some(since) = &q.since {
        clauses.push(format!(
            "time >= {}",
            bind(Value::Text(since.clone()), values)
        ));
    }
    if let Some(until) = &q.until {
        clauses.push(format!(
            "time < {}",
            bind(Value::Text(until.clone()), values)
        ));
    }
    match clauses.is_empty() {
        true => "1 = 1".into(),
        false => clauses.join(" AND "),
    }
}

/// `LIMIT ?n OFFSET ?n+1` after `values`, with them.
pub(super) fn page(q: &AuditQuery, values: &mut Vec<Value>) -> String {
    values.push(Value::Integer(q.limit.into()));
    values.push(Value::Integer(q.offset.into()));
    format!("LIMIT ?{} OFFSET ?{}", values.len() - 1, values.len())
}

/// The events the rows of `sql` ([`COLUMNS`]) are.
fn events(r: &mut dyn Reader, sql: &str, values: &[Value]) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::new();
    r.rows(sql, values, &mut |row| {
        out.push(stored_event(row)?);
        Ok(true)
    })?;
    Ok(out)
}

/// A page of events, by the plan [`lists::select`] picks (the bitmap index's chunks of
/// `2^shift` positions), read in `r`'s snapshot with the values its globs expanded into.
pub fn audits(
    r: &mut dyn Reader,
    q: &AuditQuery,
    shift: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let (sql, values) = lists::select(r, q, shift)?;
    events(r, &sql, &values)
}

/// The event of this id (ids are unique).
pub fn by_id(r: &mut dyn Reader, id: &str) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM audits WHERE id = ?1");
    Ok(events(r, &sql, &[Value::Text(id.into())])?.pop())
}

/// Up to `limit` events stored after arrival position `seq`, oldest first, each with its own.
pub fn after(
    r: &mut dyn Reader,
    seq: i64,
    limit: u32,
) -> Result<Vec<(i64, StoredEvent)>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, seq FROM audits WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let mut out = Vec::new();
    r.rows(
        &sql,
        &[Value::Integer(seq), Value::Integer(limit.into())],
        &mut |row| {
            out.push((super::sql::int(row, 28)?, stored_event(row)?));
            Ok(true)
        },
    )?;
    Ok(out)
}

/// How many events match, whatever the limit and offset.
pub fn count(r: &mut dyn Reader, q: &AuditQuery) -> Result<u64, StoreError> {
    lists::count(r, q)
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

/// A stored type or effect this console does not know, and the column it was read from.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: unknown value {value:?}")]
pub struct Unknown {
    pub column: usize,
    pub value: String,
}

impl From<Unknown> for StoreError {
    fn from(e: Unknown) -> StoreError {
        StoreError {
            source: Box::new(e),
        }
    }
}

/// The effect stored in column `i` of `row`.
pub(super) fn effect(row: &[Value], i: usize) -> Result<Effect, StoreError> {
    let effect = sql::text(row, i)?;
    parse_name(&effect, &Effect::ALL, Effect::as_str).ok_or_else(|| {
        Unknown {
            column: i,
            value: effect,
        }
        .into()
    })
}

/// One row of [`COLUMNS`] (more columns may follow).
pub fn stored_event(r: &[Value]) -> Result<StoredEvent, StoreError> {
    use sql::{int, number, opt_number, opt_text, text};
    let kind = text(r, 2)?;
    let event = Event {
        id: text(r, 0)?,
        time: text(r, 1)?,
        kind: parse_name(&kind, &Kind::ALL, Kind::as_str).ok_or(Unknown {
            column: 2,
            value: kind,
        })?,
        effect: effect(r, 3)?,
        rule: opt_text(r, 4)?,
        attack: opt_text(r, 5)?,
        custom_rule: opt_text(r, 6)?,
        container: text(r, 7)?,
        image: text(r, 8)?,
        task: opt_text(r, 9)?,
        cluster: opt_text(r, 19)?,
        family: opt_text(r, 20)?,
        service: opt_text(r, 21)?,
        pid: number(r, 10)?,
        process: text(r, 11)?,
        cmdline: opt_text(r, 12)?,
        parent: opt_text(r, 13)?,
        domain: opt_text(r, 14)?,
        ip: opt_text(r, 15)?,
        port: opt_number(r, 16)?,
        method: opt_text(r, 23)?,
        url: opt_text(r, 24)?,
        source_ip: opt_text(r, 25)?,
        field: opt_text(r, 26)?,
        request_id: opt_text(r, 27)?,
        message: text(r, 17)?,
        count: int(r, 18)? as u64,
    };
    Ok(StoredEvent {
        event,
        source: opt_text(r, 22)?,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::query::Search;
    use crate::store::sqlite::Snapshot;
    use crate::store::{Beat, Bucket, Expired};
    use crate::store::{Sqlite, Store};

    /// An event whose every field is `{id}-{field}`-like, so that each filter tells them apart.
    pub(in crate::store) fn event(id: &str, n: u32, time: &str) -> Event {
        let text = |field: &str| Some(format!("{id}-{field}"));
        Event {
            id: id.into(),
            time: time.into(),
            kind: Kind::ALL[n as usize % Kind::ALL.len()],
            effect: Effect::ALL[n as usize % Effect::ALL.len()],
            rule: text("rule"),
            attack: text("attack"),
            custom_rule: text("custom"),
            container: format!("{id}-container"),
            image: format!("{id}-image"),
            task: text("task"),
            cluster: text("cluster"),
            family: text("family"),
            service: text("service"),
            pid: 100 + n,
            process: format!("/usr/bin/{id}-process"),
            cmdline: Some(format!("{id}-process --flag {id}-arg")),
            parent: text("parent"),
            domain: Some(format!("{id}.example.com")),
            ip: Some(format!("10.0.0.{n}")),
            port: Some(8000 + n as u16),
            method: Some(if n.is_multiple_of(2) { "GET" } else { "POST" }.into()),
            url: Some(format!("/api/{id}?x=1")),
            source_ip: Some(format!("192.0.2.{n}")),
            field: text("field"),
            request_id: text("request"),
            message: format!("Event {id} message"),
            count: u64::from(n) + 1,
        }
    }

    pub(in crate::store) fn store(events: &[Event]) -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("db")).unwrap();
        s.add_audits(events, "defender", "t").unwrap();
        (dir, s)
    }

    pub(in crate::store) fn all() -> AuditQuery {
        AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        }
    }

    pub(in crate::store) fn ids(s: &dyn Store, q: &AuditQuery) -> Vec<String> {
        s.audits(q)
            .unwrap()
            .into_iter()
            .map(|e| e.event.id)
            .collect()
    }

    /// The value of `field` in a stored event, as a filter compares it.
    fn value(e: &StoredEvent, field: AuditField) -> Option<String> {
        let e2 = &e.event;
        match field {
            AuditField::Container => Some(e2.container.clone()),
            AuditField::Image => Some(e2.image.clone()),
            AuditField::Type => Some(e2.kind.as_str().into()),
            AuditField::Effect => Some(e2.effect.as_str().into()),
            AuditField::Rule => e2.rule.clone(),
            AuditField::Attack => e2.attack.clone(),
            AuditField::CustomRule => e2.custom_rule.clone(),
            AuditField::Task => e2.task.clone(),
            AuditField::Cluster => e2.cluster.clone(),
            AuditField::Family => e2.family.clone(),
            AuditField::Service => e2.service.clone(),
            AuditField::Pid => Some(e2.pid.to_string()),
            AuditField::Process => Some(e2.process.clone()),
            AuditField::Cmdline => e2.cmdline.clone(),
            AuditField::Parent => e2.parent.clone(),
            AuditField::Domain => e2.domain.clone(),
            AuditField::Ip => e2.ip.clone(),
            AuditField::Port => e2.port.map(|p| p.to_string()),
            AuditField::Source => e.source.clone(),
            AuditField::Method => e2.method.clone(),
            AuditField::Url => e2.url.clone(),
            AuditField::SourceIp => e2.source_ip.clone(),
            AuditField::Field => e2.field.clone(),
            AuditField::RequestId => e2.request_id.clone(),
        }
    }

    #[test]
    fn every_field_filters_exactly_and_by_glob() {
        let t = |n: u32| format!("2026-11-29T10:00:{n:02}.000000Z");
        let events: Vec<Event> = ["a1", "a2", "b1"]
            .iter()
            .enumerate()
            .map(|(n, id)| event(id, n as u32, &t(n as u32)))
            .collect();
        crate::store::tests::each_store_with(&events, |s| {
            let stored = s.audits(&all()).unwrap();
            for field in AuditField::ALL {
                // Exactly the value of each event: the events of that value.
                for e in &stored {
                    let v = value(e, field).unwrap();
                    let want: Vec<String> = stored
                        .iter()
                        .filter(|o| value(o, field).as_deref() == Some(&v))
                        .map(|o| o.event.id.clone())
                        .collect();
                    let q = all().with(field, Pattern::Exact(v.clone()));
                    assert_eq!(ids(s, &q), want, "{field:?} = {v}");
                    assert_eq!(s.count_audits(&q).unwrap(), want.len() as u64);
                }
                // Globs: as the reference matcher says.
                for glob in ["a*", "*1*", "?1*", "[ab]2*", "[!a]*", "*", "*-*", "x*"] {
                    let pattern = Pattern::parse(glob).unwrap();
                    let want: Vec<String> = stored
                        .iter()
                        .filter(|o| value(o, field).is_some_and(|v| pattern.matches(&v)))
                        .map(|o| o.event.id.clone())
                        .collect();
                    let q = all().with(field, pattern);
                    assert_eq!(ids(s, &q), want, "{field:?} GLOB {glob}");
                }
            }
            // A glob's literal characters are matched as such.
            let mut odd = event("odd", 9, &t(9));
            odd.container = "we*b[1]?".into();
            s.add_audits(&[odd], "defender", "t").unwrap();
            for (glob, want) in [
                (r"we\*b\[1\]\?", vec!["odd"]),
                (r"we\**", vec!["odd"]),
                (r"*\[1]?", vec!["odd"]),
                (r"we\*b[[]*", vec!["odd"]),
                ("we?b*", vec!["odd"]),
                (r"w\*", vec![]),
            ] {
                let q = all().with(AuditField::Container, Pattern::parse(glob).unwrap());
                assert_eq!(ids(s, &q), want, "{glob}");
            }
            // Conditions add up.
            let q = all()
                .with(AuditField::Container, Pattern::parse("a*").unwrap())
                .with(AuditField::Pid, Pattern::Exact("101".into()));
            assert_eq!(ids(s, &q), ["a2"]);
        });
    }

    fn search(q: &str) -> AuditQuery {
        AuditQuery {
            search: Some(Search::parse(q).unwrap()),
            ..all()
        }
    }

    #[test]
    fn text_search_is_words_of_every_searched_field_and_never_syntax() {
        let t = |n: u32| format!("2026-11-29T10:00:{n:02}.000000Z");
        let mut curl = event("c", 1, &t(1));
        curl.message = "Process /usr/bin/curl launched".into();
        curl.cmdline = Some("curl -s \"http://x\" NEAR AND OR NOT *".into());
        curl.process = "/usr/bin/curl".into();
        let mut dns = event("d", 2, &t(2));
        dns.message = "DNS resolution".into();
        dns.process = "/opt/resolver".into();
        dns.cmdline = None;
        dns.domain = Some("evil.example".into());
        dns.ip = Some("203.0.113.7".into());
        dns.url = Some("/login?user=admin".into());
        crate::store::tests::each_store_with(&[curl, dns], |s| {
            for (q, want) in [
                ("curl", vec!["c"]),
                ("CURL launched", vec!["c"]),
                ("cur", vec!["c"]),   // a prefix
                (r#""cur""#, vec![]), // a quoted phrase is whole words
                ("/usr/bin/curl", vec!["c"]),
                ("usr/bin", vec!["c"]),
                ("bin/usr", vec![]), // the words of a term in their order
                ("evil.example", vec!["d"]),
                ("203.0.113.7", vec!["d"]),
                ("admin", vec!["d"]),
                ("curl evil", vec![]),       // every term
                ("example", vec!["d", "c"]), // the message, domain, url... any field
                // Search syntax is text: quotes, stars, operators, minus signs.
                (r#"NEAR"#, vec!["c"]),
                (r#"curl -s"#, vec!["c"]),
                (r#"-launched"#, vec!["c"]),
                (r#"curl OR evil"#, vec![]),
                (r#"NOT curl"#, vec!["c"]),
                (r#""http://x" *"#, vec!["c"]),
                (r#"curl" "x"#, vec!["c"]),
                (r#"x"near"#, vec!["c"]), // a quote inside a word separates like punctuation
                ("curl AND", vec!["c"]),
                ("(curl", vec!["c"]),
                ("curl:", vec!["c"]),
                ("message:curl", vec![]), // no column filter: `message` is a word
                ("^curl", vec!["c"]),
                ("curl*", vec!["c"]),
                ("c+url", vec![]),
            ] {
                assert_eq!(ids(s, &search(q)), want, "{q}");
            }
        });
    }

    /// The text search's two plans (its matches sorted, or the events walked newest first with
    /// each one's words checked) and pages after an offset, on either store, against the order
    /// the events themselves give: time, then arrival.
    #[test]
    fn many_matches_and_deep_pages_come_in_the_lists_order() {
        let n = lists::PROBE as u32 + 400;
        // Times out of arrival order, several events a second.
        let second = |i: u32| (i * 37) % 1_000;
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let s = second(i);
                let time = format!("2026-11-29T10:{:02}:{:02}.000000Z", s / 60, s % 60);
                let mut e = event(&format!("e{i}"), i, &time);
                let word = match (i % 100, i % 10) {
                    (0, _) => "rare",
                    (_, 0) => "quiet",
                    _ => "curl",
                };
                e.message = format!("event {i} ran {word}");
                e.container = format!("c{}", i % 3);
                e
            })
            .collect();
        let newest_first = |keep: &dyn Fn(u32) -> bool, q: &AuditQuery| -> Vec<String> {
            let mut kept: Vec<u32> = (0..n).filter(|i| keep(*i)).collect();
            kept.sort_by_key(|i| std::cmp::Reverse((second(*i), *i)));
            kept.iter()
                .skip(q.offset as usize)
                .take(q.limit as usize)
                .map(|i| format!("e{i}"))
                .collect()
        };
        crate::store::tests::each_store_with(&events, |s| {
            let cases: [(AuditQuery, &dyn Fn(u32) -> bool); 7] = [
                (search("curl"), &|i| i % 10 != 0), // many: walked
                (search("quiet"), &|i| i % 100 != 0 && i % 10 == 0), // fewer: sorted on SQLite
                (search("rare"), &|i| i % 100 == 0), // too few for a walk on PostgreSQL
                (
                    search("curl").with(AuditField::Container, Pattern::Exact("c1".into())),
                    &|i| i % 10 != 0 && i % 3 == 1,
                ),
                (
                    AuditQuery {
                        since: Some("2026-11-29T10:08:00.000000Z".into()),
                        ..search("curl")
                    },
                    &|i| i % 10 != 0 && second(i) >= 480,
                ),
                (all(), &|_| true),
                (
                    all().with(AuditField::Container, Pattern::Exact("c2".into())),
                    &|i| i % 3 == 2,
                ),
            ];
            for (q, keep) in cases {
                let pages = [
                    (100, 0),
                    (5, 0),
                    (37, 300),
                    (50, 1_900),
                    (100, n - 30),
                    (5, n),
                ];
                for (limit, offset) in pages {
                    let page = AuditQuery {
                        limit,
                        offset,
                        ..q.clone()
                    };
                    assert_eq!(ids(s, &page), newest_first(keep, &page), "{page:?}");
                }
                let total = (0..n).filter(|i| keep(*i)).count() as u64;
                assert_eq!(s.count_audits(&q).unwrap(), total, "{q:?}");
            }
        });
    }

    #[test]
    fn counts_summaries_and_histograms() {
        // Minute 10:00: three events; minute 10:01: one; 10:07: one.
        let times = [
            "2026-11-29T10:00:01.000000Z",
            "2026-11-29T10:00:59.999999Z",
            "2026-11-29T10:00:30.000000Z",
            "2026-11-29T10:01:00.000000Z",
            "2026-11-29T10:07:00.000000Z",
        ];
        let events: Vec<Event> = times
            .iter()
            .enumerate()
            .map(|(n, t)| {
                let mut e = event(&format!("e{n}"), n as u32, t);
                e.container = if n < 3 { "web" } else { "db" }.into();
                e.count = 10 * (n as u64 + 1);
                e
            })
            .collect();
        crate::store::tests::each_store_with(&events, |s| {
            let page = AuditQuery {
                limit: 2,
                offset: 1,
                ..all()
            };
            assert_eq!(ids(s, &page), ["e3", "e1"]);
            assert_eq!(s.count_audits(&page).unwrap(), 5);
            // Sums of `count`: web 10+20+30, db 40+50.
            assert_eq!(
                s.audit_stats(&all(), AuditField::Container).unwrap().rows,
                [("web".to_owned(), 60), ("db".to_owned(), 90)]
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
            );
            let one = AuditQuery { limit: 1, ..all() };
            assert_eq!(
                s.audit_stats(&one, AuditField::Container).unwrap().rows,
                [("db".to_owned(), 90)]
            );
            for group in AuditField::GROUPS {
                let groups = s.audit_stats(&all(), group).unwrap().rows;
                assert_eq!(groups.iter().map(|(_, n)| n).sum::<u64>(), 150, "{group:?}");
                assert!(groups.windows(2).all(|w| w[0].1 >= w[1].1), "{groups:?}");
            }
            // Effects cycle over the events: e0 and e3 share one.
            let effect = |n: usize| Effect::ALL[n % Effect::ALL.len()];
            let bucket = |start: &str, effect, count| Bucket {
                start: start.into(),
                effect,
                count,
            };
            let mut minute = vec![
                bucket("2026-11-29T10:00:00Z", effect(0), 10),
                bucket("2026-11-29T10:00:00Z", effect(1), 20),
                bucket("2026-11-29T10:00:00Z", effect(2), 30),
            ];
            minute.sort_by_key(|b| b.effect.as_str());
            minute.push(bucket("2026-11-29T10:01:00Z", effect(3), 40));
            minute.push(bucket("2026-11-29T10:07:00Z", effect(4), 50));
            assert_eq!(s.audit_histogram(&all(), 1).unwrap().rows, minute);
            // Five-minute buckets start at multiples of five minutes.
            let five = s.audit_histogram(&all(), 5).unwrap().rows;
            let starts: Vec<&str> = five.iter().map(|b| b.start.as_str()).collect();
            assert!(
                starts
                    .iter()
                    .all(|s| ["2026-11-29T10:00:00Z", "2026-11-29T10:05:00Z"].contains(s)),
                "{five:?}"
            );
            assert_eq!(five.iter().map(|b| b.count).sum::<u64>(), 150);
            // `limit` keeps the newest buckets.
            let newest = s.audit_histogram(&one, 1).unwrap().rows;
            assert_eq!(newest, [bucket("2026-11-29T10:07:00Z", effect(4), 50)]);
            // Filters apply.
            let web = all().with(AuditField::Container, Pattern::Exact("web".into()));
            assert_eq!(
                s.audit_histogram(&web, 60).unwrap().rows.len(),
                3.min(Effect::ALL.len())
            );
        });
    }

    #[test]
    fn expiry_deletes_what_is_older_and_nothing_else() {
        let old = event("old", 1, "2026-11-01T00:00:00.000000Z");
        let new = event("new", 2, "2026-11-29T00:00:00.000000Z");
        let (_dir, s) = store(&[old.clone(), new.clone()]);
        let extra: Vec<Event> = (0..25)
            .map(|n| event(&format!("x{n}"), n, "2026-11-02T00:00:00.000000Z"))
            .collect();
        s.add_audits(&extra, "defender", "t").unwrap();
        let expired = s.expire("2026-11-15T00:00:00.000000Z", 10).unwrap();
        assert_eq!(expired.audits, 26);
        assert_eq!(ids(&s, &all()), ["new"]);
        // The text index forgot them too.
        assert_eq!(ids(&s, &search("old")), Vec::<String>::new());
        assert_eq!(ids(&s, &search("new")), ["new"]);
        let c = s.reader_for_tests();
        c.execute_batch("INSERT INTO audits_text (audits_text) VALUES ('integrity-check')")
            .unwrap();
        // Nothing more to delete.
        assert_eq!(
            s.expire("2026-11-15T00:00:00.000000Z", 10).unwrap(),
            Default::default()
        );
    }

    /// The activity log, defenders and their observations go by the same cutoff.
    #[test]
    fn expiry_covers_activity_defenders_and_observations() {
        use crate::store::{ActivityEntry, ActivityQuery, Heartbeat};
        use defender::activity::{Entry, Kind as Seen, Observed};
        crate::store::tests::each_store_with(&[], |s| {
            let (old, new) = ("2026-11-01T00:00:00.000000Z", "2026-11-29T00:00:00.000000Z");
            for (time, action) in [(old, "old"), (new, "new")] {
                s.add_activity(&ActivityEntry {
                    time: time.into(),
                    actor: "admin".into(),
                    action: action.into(),
                    detail: serde_json::json!({}),
                })
                .unwrap();
                let beat = Heartbeat {
                    id: action.into(),
                    container: action.into(),
                    image: "img".into(),
                    task: None,
                    cluster: None,
                    family: None,
                    service: None,
                    version: "0".into(),
                    revision: None,
                    protects: vec![],
                };
                let seen = Observed {
                    entries: vec![Entry {
                        kind: Seen::Dns,
                        value: format!("{action}.test"),
                        count: 1,
                    }],
                    dropped: Default::default(),
                };
                s.heartbeats(&[Beat::one(beat, seen, time)]).unwrap();
            }
            let expired = s.expire("2026-11-15T00:00:00.000000Z", 1).unwrap();
            assert_eq!(
                expired,
                Expired {
                    audits: 0,
                    activity: 1,
                    defenders: 1,
                    observations: 1
                }
            );
            let actions: Vec<String> = s
                .activity(&ActivityQuery {
                    limit: 10,
                    ..Default::default()
                })
                .unwrap()
                .into_iter()
                .map(|a| a.action)
                .collect();
            assert_eq!(actions, ["new"]);
            let defenders: Vec<String> = s
                .defenders()
                .unwrap()
                .into_iter()
                .map(|d| d.beat.id)
                .collect();
            assert_eq!(defenders, ["new"]);
            let observed: Vec<String> = s
                .observations(None)
                .unwrap()
                .into_iter()
                .map(|o| o.value)
                .collect();
            assert_eq!(observed, ["new.test"]);
        });
    }

    /// A PostgreSQL database as the plans see it, which keeps every statement it is given (and
    /// the number of its parameters): a glob's walk finds two values, the text search more
    /// matches than the probe (SQLite's plan) and three events, all matching, in its walk
    /// (PostgreSQL's), a page of a glob's value range as many entries as asked, a list of
    /// `seq`s three; anything else no row.
    #[derive(Default)]
    struct Recorder {
        statements: Vec<(String, usize)>,
    }

    impl Reader for Recorder {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }

        fn rows(
            &mut self,
            sql: &str,
            values: &[Value],
            row: &mut dyn FnMut(&[Value]) -> Result<bool, StoreError>,
        ) -> Result<(), StoreError> {
            self.statements.push((sql.into(), values.len()));
            let rows: Vec<Vec<Value>> = if sql.starts_with("WITH RECURSIVE") {
                ["web-1", "web-2"]
                    .map(|v| vec![Value::Text(v.into())])
                    .into()
            } else if sql.starts_with("SELECT seq, words @@") {
                (1..=3)
                    .map(|seq| vec![Value::Integer(seq), Value::Integer(1)])
                    .collect()
            } else if sql.starts_with("SELECT time, seq") {
                let Some(Value::Integer(limit)) = values.last() else {
                    panic!("{sql}");
                };
                (0..*limit)
                    .map(|n| {
                        vec![
                            Value::Text("2026-11-29T10:00:00.000000Z".into()),
                            Value::Integer(10_000 - n),
                        ]
                    })
                    .collect()
            } else if sql.starts_with("SELECT seq") {
                (1..=3).map(|seq| vec![Value::Integer(seq)]).collect()
            } else {
                vec![]
            };
            for r in &rows {
                if !row(r)? {
                    break;
                }
            }
            Ok(())
        }

        fn version(&mut self) -> Result<i64, StoreError> {
            Ok(1)
        }
    }

    /// The plans' statements on PostgreSQL: none of SQLite's own syntax, every parameter
    /// numbered and used, every sum read as an integer cast, every subquery in `FROM` named; and
    /// PostgreSQL's pieces where SQLite's were.
    #[test]
    fn the_plans_speak_postgresql_on_postgresql() {
        use crate::store::rollup::{self, Ask};
        use crate::store::sample::Sample;
        let glob = |f, g: &str| all().with(f, Pattern::parse(g).unwrap());
        let hours = AuditQuery {
            since: Some("2026-11-29T08:30:00.000000Z".into()),
            until: Some("2026-11-29T12:15:00.000000Z".into()),
            ..glob(AuditField::Container, "web-*")
        };
        let queries = [
            all(),
            glob(AuditField::Container, "web-*"),
            glob(AuditField::Pid, "1*"),
            search("curl"),
            // Past the matches: an empty page.
            AuditQuery {
                offset: 5,
                ..search("curl")
            },
            AuditQuery {
                search: Search::parse("/usr/bin").ok(),
                ..glob(AuditField::Image, "n*")
            },
            all().with(AuditField::Port, Pattern::Exact("80".into())),
            hours.clone(),
            AuditQuery {
                fields: vec![],
                ..hours.clone()
            },
        ];
        let r = &mut Recorder::default();
        for q in &queries {
            let (sql, values) = lists::select(r, q, crate::store::bitmaps::SHIFT).unwrap();
            r.rows(&sql, &values, &mut |_| Ok(true)).unwrap();
            lists::count(r, q).unwrap();
            lists::newest(r, q, 100).unwrap();
            Sample::of(r, q, 10, &mut None).unwrap();
            for ask in [
                Ask::Count,
                Ask::Stats(AuditField::Domain),
                Ask::Stats(AuditField::Effect),
                Ask::Histogram(60),
            ] {
                let Some(route) = rollup::plan(q, ask) else {
                    continue;
                };
                // The partial hours summed by SQL, and sampled.
                for kept in [None, Some(&mut Default::default())] {
                    match ask {
                        Ask::Count => drop(rollup::count(r, q, &route, kept).unwrap()),
                        Ask::Stats(g) => drop(rollup::stats(r, q, &route, g, kept).unwrap()),
                        Ask::Histogram(m) => {
                            drop(rollup::histogram(r, q, &route, m, kept).unwrap())
                        }
                    }
                }
            }
        }
        by_id(r, "x").unwrap();
        let placeholder = regex::Regex::new(r"\?([0-9]*)").unwrap();
        // SQLite's `WHERE 1` (true), which PostgreSQL refuses.
        let bare_one = regex::Regex::new(r"WHERE 1( [^=]|$)").unwrap();
        let all_sql: Vec<&str> = r.statements.iter().map(|(sql, _)| sql.as_str()).collect();
        for (sql, n) in &r.statements {
            for sqlite in ["GLOB", "MATCH", "INDEXED BY", "strftime", "rowid", "IN ()"] {
                assert!(!sql.contains(sqlite), "{sqlite}: {sql}");
            }
            assert!(!bare_one.is_match(sql), "{sql}");
            assert_eq!(
                sql.matches("sum(").count(),
                sql.matches("CAST(sum(").count(),
                "{sql}"
            );
            let mut used: Vec<usize> = placeholder
                .captures_iter(sql)
                .map(|c| c[1].parse().unwrap_or_else(|_| panic!("a bare `?`: {sql}")))
                .collect();
            used.sort_unstable();
            used.dedup();
            assert_eq!(used, (1..=*n).collect::<Vec<_>>(), "{sql}");
            for (at, _) in sql.match_indices("FROM (") {
                let mut depth = 0;
                let end = sql[at + 5..]
                    .char_indices()
                    .find(|(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map(|(i, _)| at + 5 + i + 1)
                    .unwrap();
                assert!(sql[end..].starts_with(" AS "), "{}: {sql}", &sql[at..end]);
            }
        }
        for postgres in [
            " ~ ?",
            "WHERE CAST(pid AS TEXT) ~ ?1",
            "words @@ CAST(CAST(?",
            "(time, seq) < (?",
            "extract(epoch FROM CAST(time AS timestamptz))",
            "seq IN (NULL)",
            "FROM audits WHERE seq IN (?1, ?2, ?3) ORDER BY time DESC, seq DESC",
            "FROM audit_counts WHERE",
            "FROM audit_totals WHERE field = ?1",
            "SELECT time, effect, count,",
        ] {
            assert!(
                all_sql.iter().any(|sql| sql.contains(postgres)),
                "no statement has {postgres:?}"
            );
        }
    }

    /// Each filter alone is answered from its index, a glob with a literal prefix too, and the
    /// text search from the FTS5 table.
    #[test]
    fn filters_use_their_indexes() {
        let (_dir, s) = store(&[event("a", 1, "2026-11-29T10:00:00.000000Z")]);
        let c = s.reader_for_tests();
        // The check that no earlier arrival is newer than the page's last: the index by time
        // (or the filter's) from that event on, not every earlier arrival by `seq`.
        for (q, index) in [
            (all(), "audits_by_time (time>?)"),
            (
                all().with(AuditField::Container, Pattern::Exact("x".into())),
                "audits_by_container (container=? AND time>?)",
            ),
        ] {
            let r = &Snapshot::of(&c).unwrap();
            let late = lists::late_select(r, &q, &vec![], ("2026", 7), 9);
            let p = explain(&c, late).join("; ");
            assert_eq!(
                p,
                format!("SEARCH audits USING COVERING INDEX {index}"),
                "{q:?}"
            );
        }
        // A range's `since` is left out (the page's last event is after it): SQLite would start
        // the index's range there, not at the page's last.
        let since = AuditQuery {
            since: Some("2026-11-01T00:00:00.000000Z".into()),
            ..all()
        };
        let (sql, _) =
            lists::late_select(&Snapshot::of(&c).unwrap(), &since, &vec![], ("2026", 7), 9);
        assert!(!sql.contains("time >="), "{sql}");
        let r = &mut Snapshot::of(&c).unwrap();
        let mut plan = |q: &AuditQuery| {
            explain(
                &c,
                lists::select(r, q, crate::store::bitmaps::SHIFT).unwrap(),
            )
            .join("; ")
        };
        for field in AuditField::ALL {
            let exact = match field {
                AuditField::Pid | AuditField::Port => "1",
                _ => "x",
            };
            let p = plan(&all().with(field, Pattern::Exact(exact.into())));
            if [
                AuditField::Pid,
                AuditField::Source,
                AuditField::Cmdline,
                AuditField::Url,
            ]
            .contains(&field)
            {
                // Newest first, the condition checked on each.
                assert_eq!(p, "SCAN audits USING INDEX audits_by_time", "{field:?}");
                continue;
            }
            let index = format!("USING INDEX audits_by_{}", column(field));
            assert!(
                p.contains(&index) && !p.contains("TEMP B-TREE"),
                "{field:?}: {p}"
            );
        }
        // A word: its last arrivals read from the full-text index, the page then by `seq`.
        let p = plan(&search("curl"));
        assert_eq!(p, "SEARCH audits USING INTEGER PRIMARY KEY (rowid=?)");
        let p = plan(&AuditQuery {
            since: Some("2026".into()),
            ..all()
        });
        assert!(p.contains("USING INDEX audits_by_time"), "{p}");
    }

    /// The lines of a statement's `EXPLAIN QUERY PLAN`.
    pub(in crate::store) fn explain(
        c: &rusqlite::Connection,
        (sql, values): (String, Vec<Value>),
    ) -> Vec<String> {
        let mut explain = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = explain
            .query_map(rusqlite::params_from_iter(values), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// A glob's values are read from its index, one seek each; the list over two or more of them
    /// is merged from their index ranges read newest first (only the page is sorted, then read by
    /// `seq`), and their count counts the ranges. The text search's many matches: the events of
    /// the other conditions newest first from their index, then the page by `seq`.
    #[test]
    fn globs_and_words_read_their_indexes() {
        let events: Vec<Event> = (0..6)
            .map(|n| {
                let mut e = event(
                    &format!("e{n}"),
                    n,
                    &format!("2026-11-29T10:00:0{n}.000000Z"),
                );
                e.container = format!("web-{}", n % 3);
                e
            })
            .collect();
        let (_dir, s) = store(&events);
        let c = s.reader_for_tests();
        for field in AuditField::ALL
            .into_iter()
            .filter(|f| lists::expandable(*f))
        {
            let sql = lists::distinct_values_sql(column(field));
            let p = explain(&c, (sql, vec![Value::Text("x".into())]));
            let seek = format!(
                "SEARCH audits USING COVERING INDEX audits_by_{} (",
                column(field)
            );
            assert_eq!(
                p.iter().filter(|l| l.starts_with(&seek)).count(),
                2,
                "{field:?}: {p:?}"
            );
            assert!(
                !p.iter().any(|l| l.starts_with("SCAN audits")),
                "{field:?}: {p:?}"
            );
        }
        let web = all().with(AuditField::Container, Pattern::parse("web-*").unwrap());
        let r = &mut Snapshot::of(&c).unwrap();
        let p = explain(
            &c,
            lists::select(r, &web, crate::store::bitmaps::SHIFT).unwrap(),
        );
        let range = "SEARCH audits USING COVERING INDEX audits_by_container (container=?)";
        assert_eq!(p.iter().filter(|l| *l == range).count(), 3, "{p:?}");
        assert!(
            p.iter()
                .any(|l| l.contains("INTEGER PRIMARY KEY (rowid=?)")),
            "{p:?}"
        );
        assert!(!p.iter().any(|l| l.starts_with("SCAN audits")), "{p:?}");
        let expanded = lists::expand(r, &web).unwrap();
        let p = explain(&c, lists::count_select(r, &web, &expanded));
        assert_eq!(p, [range], "{p:?}");
        // The sample's merge: a value's pages, the first and those after an entry, each one
        // range of the value's index read newest first (no sort).
        let [first, after] = lists::pages("container = ?1", 1);
        let text = |t: &str| Value::Text(t.into());
        let p = explain(&c, (first, vec![text("web-1"), Value::Integer(16)]));
        assert_eq!(p, [range], "{p:?}");
        let key = vec![
            text("web-1"),
            text("2026"),
            Value::Integer(9),
            Value::Integer(16),
        ];
        let p = explain(&c, (after, key));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "SEARCH audits USING COVERING INDEX audits_by_container (container=? AND time<"
            ),
            "{p:?}"
        );
        let p = explain(&c, lists::walk_select(r, &search("curl"), &vec![]));
        assert_eq!(p, ["SCAN audits USING COVERING INDEX audits_by_time"]);
        let p = explain(&c, lists::count_select(r, &search("curl"), &vec![]));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("VIRTUAL TABLE INDEX"), "{p:?}");
    }
}
