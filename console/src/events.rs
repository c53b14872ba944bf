//! Audit events as the console receives, stores and serves them: the defender's own wire type
//! ([`Event`], the fields of `docs/audit.md`), checked strictly on the way in (a batch with one
//! bad event is refused whole), the query of a query string that selects them ([`AuditFilter`],
//! the API's and the pages'), and written out as JSON or CSV.

use std::collections::BTreeMap;

pub use defender::audit::{Effect, Event, Kind};

use crate::store::{AuditField, AuditQuery, Pattern, Search, StoredEvent};

/// The most events one request may carry.
pub const MAX_BATCH: usize = 10_000;

/// `name` as one of `all`, by its `as_str` name.
pub fn parse_name<T: Copy>(name: &str, all: &[T], as_str: impl Fn(T) -> &'static str) -> Option<T> {
    all.iter().copied().find(|v| as_str(*v) == name)
}

/// A batch from a request body: every event well-formed, or an error naming the first bad one
/// (`[3].time: ...`). Times come back normalized (UTC, microseconds), so that they sort as text.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Event>, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut events: Vec<Event> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| match e.path().to_string() {
            path if path == "." => e.inner().to_string(),
            path => format!("{path}: {}", e.inner()),
        })?;
    de.end().map_err(|e| e.to_string())?;
    if events.len() > MAX_BATCH {
        return Err(format!(
            "{} events in one batch; at most {MAX_BATCH}",
            events.len()
        ));
    }
    for (i, event) in events.iter_mut().enumerate() {
        check(event).map_err(|(field, message)| format!("[{i}].{field}: {message}"))?;
    }
    Ok(events)
}

/// What serde cannot say about one event.
fn check(e: &mut Event) -> Result<(), (&'static str, String)> {
    if e.id.is_empty() || e.id.len() > 128 || e.id.chars().any(char::is_control) {
        return Err(("id", "must be 1 to 128 printable characters".into()));
    }
    e.time = normalize_time(&e.time).map_err(|m| ("time", m))?;
    for (field, value) in [
        ("container", &e.container),
        ("image", &e.image),
        ("process", &e.process),
        ("message", &e.message),
    ] {
        if value.is_empty() {
            return Err((field, "must not be empty".into()));
        }
    }
    if e.count == 0 {
        return Err(("count", "must be at least 1".into()));
    }
    // The fields a filter reads from an index: PostgreSQL refuses an index entry of more than
    // about 2.7 KB, and an event refused for it would be an event the workload hid (it chooses
    // its process's path). Cut, so that it is stored and found by a glob on its start.
    let optional = [
        &mut e.task,
        &mut e.cluster,
        &mut e.family,
        &mut e.service,
        &mut e.rule,
        &mut e.attack,
        &mut e.custom_rule,
        &mut e.parent,
        &mut e.domain,
        &mut e.ip,
        &mut e.method,
        &mut e.source_ip,
        &mut e.field,
        &mut e.request_id,
    ];
    for s in [&mut e.container, &mut e.image, &mut e.process]
        .into_iter()
        .chain(optional.into_iter().flatten())
    {
        defender::audit::cut(s, INDEXED_MAX_BYTES, "");
    }
    Ok(())
}

/// The longest value of a field with an index (every filter but `message`, `cmdline` and `url`)
/// the console stores; a longer one is cut to it, marked.
pub const INDEXED_MAX_BYTES: usize = 1024;

/// An RFC 3339 UTC time (`2026-11-29T10:00:00Z`, fractions optional), as audit events write it:
/// microseconds, `Z`.
pub fn normalize_time(text: &str) -> Result<String, String> {
    let t = humantime::parse_rfc3339_weak(text.trim())
        .map_err(|e| format!("{text:?} is not an RFC 3339 UTC time ({e})"))?;
    Ok(humantime::format_rfc3339_micros(t).to_string())
}

/// The most events (or summary rows) one query may return, whatever its default.
pub const MAX_LIMIT: u32 = 10_000;

/// An audit query as a query string writes it (the API's and the audits page's): a filter value
/// per field (exact text or a glob, as written), the text search `q`, the time range and the page.
/// Empty values (as an HTML form sends them) are no filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub fields: BTreeMap<AuditField, String>,
    pub q: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

impl AuditFilter {
    /// A query string's filter. Every parameter must be a filter's: an unknown one, one given
    /// twice, or a `limit` or `offset` that is not a whole number is an error naming it.
    pub fn parse(query: Option<&str>) -> Result<AuditFilter, String> {
        let (filter, _) = AuditFilter::parse_with(query, &[])?;
        Ok(filter)
    }

    /// As [`parse`](Self::parse), but the parameters named in `extra` (the caller's own, such as
    /// a summary's `group`) are accepted too and returned, by name, non-empty ones only.
    pub fn parse_with(
        query: Option<&str>,
        extra: &[&'static str],
    ) -> Result<(AuditFilter, BTreeMap<&'static str, String>), String> {
        let mut filter = AuditFilter::default();
        let mut extras = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        let number = |name: &str, value: &str| {
            value.parse::<u32>().map_err(|_| {
                format!(
                    "{name}: {value:?} is not a whole number from 0 to {}",
                    u32::MAX
                )
            })
        };
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !seen.insert(name.to_string()) {
                return Err(format!("{name}: given more than once"));
            }
            if let Some(known) = extra.iter().find(|e| **e == name) {
                if !value.is_empty() {
                    extras.insert(*known, value.into_owned());
                }
                continue;
            }
            let given = Some(value.to_string()).filter(|v| !v.is_empty());
            match &*name {
                "q" => filter.q = given,
                "since" => filter.since = given,
                "until" => filter.until = given,
                "limit" => filter.limit = given.map(|v| number("limit", &v)).transpose()?,
                "offset" => filter.offset = given.map(|v| number("offset", &v)).transpose()?,
                other => {
                    let field = AuditField::parse(other).ok_or_else(|| {
                        format!("{other}: unknown parameter (the audit fields, q, since, until, limit, offset{})", extra.iter().map(|e| format!(", {e}")).collect::<String>())
                    })?;
                    if let Some(v) = given {
                        filter.fields.insert(field, v);
                    }
                }
            }
        }
        Ok((filter, extras))
    }

    /// The filter value of `field`, as written.
    pub fn get(&self, field: AuditField) -> Option<&str> {
        self.fields.get(&field).map(String::as_str)
    }

    /// Filters `field` to exactly `value` (its glob characters escaped).
    pub fn set_exact(&mut self, field: AuditField, value: &str) {
        self.fields.insert(field, Pattern::literal(value));
    }

    /// The parameters given, in a stable order: what [`parse`](Self::parse) reads back into the
    /// same filter.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<(&'static str, String)> = self
            .fields
            .iter()
            .map(|(f, v)| (f.name(), v.clone()))
            .collect();
        for (name, value) in [
            ("q", &self.q),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            pairs.extend(value.clone().map(|v| (name, v)));
        }
        pairs.extend(self.limit.map(|n| ("limit", n.to_string())));
        pairs.extend(self.offset.map(|n| ("offset", n.to_string())));
        pairs.retain(|(_, v)| !v.is_empty());
        pairs
    }

    /// `?name=value&...` for the parameters given (empty when none), encoded as a form sends them.
    pub fn query_string(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs() {
            query.append_pair(name, &value);
        }
        match query.finish() {
            q if q.is_empty() => q,
            q => format!("?{q}"),
        }
    }

    /// The storage query, `default_limit` events when no limit is given and at most the larger
    /// of it and [`MAX_LIMIT`]. A bad glob, an exact `type` or `effect` that is none, an exact
    /// `pid` or `port` that is no number, a `q` with nothing to search for or a time that is not
    /// RFC 3339 is an error naming the parameter.
    pub fn query(&self, default_limit: u32) -> Result<AuditQuery, String> {
        let time = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| normalize_time(t).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let mut fields = Vec::new();
        for (field, value) in &self.fields {
            let name = field.name();
            let pattern = Pattern::parse(value).map_err(|e| format!("{name}: {value:?}: {e}"))?;
            if let Pattern::Exact(exact) = &pattern {
                let known = match field {
                    AuditField::Type => parse_name(exact, &Kind::ALL, Kind::as_str).is_some(),
                    AuditField::Effect => parse_name(exact, &Effect::ALL, Effect::as_str).is_some(),
                    f if f.numeric() => exact.parse::<i64>().is_ok(),
                    _ => true,
                };
                if !known {
                    return Err(match field {
                        AuditField::Type => format!("type: unknown type {exact:?}"),
                        AuditField::Effect => format!("effect: unknown effect {exact:?}"),
                        _ => format!("{name}: {exact:?} is not a number"),
                    });
                }
            }
            fields.push((*field, pattern));
        }
        let search = self
            .q
            .as_deref()
            .map(|q| Search::parse(q).map_err(|e| format!("q: {e}")))
            .transpose()?;
        Ok(AuditQuery {
            fields,
            search,
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

/// The CSV columns: the fields of `docs/audit.md`, in its order.
/// `source`, the token that delivered an event, comes last: it is the console's, not the event's.
const COLUMNS: [&str; 28] = [
    "id",
    "time",
    "type",
    "effect",
    "rule",
    "attack",
    "customRule",
    "container",
    "image",
    "task",
    "cluster",
    "family",
    "service",
    "pid",
    "process",
    "cmdline",
    "parent",
    "domain",
    "ip",
    "port",
    "message",
    "count",
    "method",
    "url",
    "sourceIp",
    "field",
    "requestId",
    "source",
];

/// The events as CSV (RFC 4180), a header line first.
pub fn to_csv(events: &[StoredEvent]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for StoredEvent { event: e, source } in events {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let row = [
            e.id.clone(),
            e.time.clone(),
            e.kind.as_str().into(),
            e.effect.as_str().into(),
            opt(&e.rule),
            opt(&e.attack),
            opt(&e.custom_rule),
            e.container.clone(),
            e.image.clone(),
            opt(&e.task),
            opt(&e.cluster),
            opt(&e.family),
            opt(&e.service),
            e.pid.to_string(),
            e.process.clone(),
            opt(&e.cmdline),
            opt(&e.parent),
            opt(&e.domain),
            opt(&e.ip),
            e.port.map(|p| p.to_string()).unwrap_or_default(),
            e.message.clone(),
            e.count.to_string(),
            opt(&e.method),
            opt(&e.url),
            opt(&e.source_ip),
            opt(&e.field),
            opt(&e.request_id),
            opt(source),
        ];
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Quotes a cell when needed. A cell a spreadsheet would run as a formula (the workload chooses
/// command lines) gets a leading `'`, as OWASP advises for CSV exports.
fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event(id: &str) -> serde_json::Value {
        serde_json::json!({
            "id": id, "time": "2026-11-29T10:00:00.5Z", "type": "process", "effect": "prevent",
            "rule": "r", "attack": "processExplicitlyDenied", "container": "web", "image": "img:1",
            "pid": 7, "process": "/bin/mkdir", "cmdline": "mkdir x", "parent": "/bin/sh",
            "message": "m", "count": 1
        })
    }

    #[test]
    fn indexed_fields_are_cut_to_what_an_index_takes_and_texts_are_not() {
        let mut e = event("long");
        let path = format!("/{}/x", "é".repeat(2000));
        e["process"] = path.clone().into();
        e["domain"] = "d".repeat(1025).into();
        e["message"] = "m ".repeat(10_000).into();
        e["cmdline"] = "c".repeat(5000).into();
        let parsed = &parse_batch(serde_json::to_string(&[e]).unwrap().as_bytes()).unwrap()[0];
        let cut = format!("… (truncated, {} bytes in all)", path.len());
        assert!(parsed.process.ends_with(&cut), "{}", parsed.process);
        // At a character's boundary (é is two bytes), never past the bound.
        assert_eq!(parsed.process.len() - cut.len(), INDEXED_MAX_BYTES - 1);
        assert!(path.starts_with(parsed.process.trim_end_matches(&cut)));
        assert!(
            parsed
                .domain
                .as_deref()
                .unwrap()
                .ends_with("(truncated, 1025 bytes in all)")
        );
        assert_eq!(parsed.message.len(), 20_000);
        assert_eq!(parsed.cmdline.as_deref().map(str::len), Some(5000));
        // A value of the bound itself is kept whole.
        let mut e = event("exact");
        e["process"] = "p".repeat(INDEXED_MAX_BYTES).into();
        let parsed = &parse_batch(serde_json::to_string(&[e]).unwrap().as_bytes()).unwrap()[0];
        assert_eq!(parsed.process.len(), INDEXED_MAX_BYTES);
    }

    #[test]
    fn batches_are_whole_or_refused_with_the_place() {
        let good = serde_json::json!([event("a"), event("b")]).to_string();
        let events = parse_batch(good.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].time, "2026-11-29T10:00:00.500000Z");

        let cases: &[(&str, serde_json::Value, &str)] = &[
            ("type", "virus".into(), "[1].type: unknown variant `virus`"),
            ("time", "yesterday".into(), "[1].time: \"yesterday\" is not"),
            ("id", "".into(), "[1].id: must be 1 to 128"),
            ("count", 0.into(), "[1].count: must be at least 1"),
            ("pid", "x".into(), "[1].pid: invalid type"),
            ("extra", 1.into(), "[1].extra: unknown field `extra`"),
            ("container", "".into(), "[1].container: must not be empty"),
        ];
        for (field, value, want) in cases {
            let mut bad = event("b");
            bad[field] = value.clone();
            let body = serde_json::json!([event("a"), bad]).to_string();
            let err = parse_batch(body.as_bytes()).unwrap_err();
            assert!(err.starts_with(want), "{field}: {err}");
        }
        assert!(parse_batch(b"{}").is_err());
        assert!(parse_batch(b"[] x").is_err());
    }

    /// The defender's audit of a malformed DNS message (no domain could be read) ships as is.
    #[test]
    fn malformed_dns_audits_are_accepted() {
        let scope = defender::audit::Scope {
            container: "web".into(),
            image: "img:1".into(),
            ..defender::audit::Scope::default()
        };
        let finding = defender::dns::Finding {
            pid: 7,
            process: "/usr/bin/python3".into(),
            domain: String::new(),
            cause: defender::policy::Attack::NotAllowed.into(),
            effect: defender::policy::Effect::Prevent,
            malformed: Some(defender::dns::query::Reason::Pointer),
            unread: false,
        };
        let event = serde_json::to_value(finding.event(&scope, "r")).unwrap();
        let events = parse_batch(serde_json::json!([event]).to_string().as_bytes()).unwrap();
        assert_eq!(events[0].domain.as_deref(), Some(""));
        assert_eq!(events[0].attack.as_deref(), Some("dnsNotAllowed"));
    }

    fn filter(query: &str) -> Result<AuditQuery, String> {
        AuditFilter::parse(Some(query))?.query(100)
    }

    #[test]
    fn query_strings_parse_strictly_and_name_what_is_wrong() {
        let q = filter(
            "type=process&effect=&container=orders-*&pid=7&customRule=nc+l&q=curl&\
             since=2026-11-29T10:00:00Z&limit=5&offset=2&sourceIp=192.0.2.*",
        )
        .unwrap();
        assert_eq!(
            q.fields,
            [
                (AuditField::Container, Pattern::parse("orders-*").unwrap()),
                (AuditField::Type, Pattern::Exact("process".into())),
                (AuditField::CustomRule, Pattern::Exact("nc l".into())),
                (AuditField::Pid, Pattern::Exact("7".into())),
                (AuditField::SourceIp, Pattern::parse("192.0.2.*").unwrap()),
            ]
        );
        assert_eq!(q.search, Some(Search::parse("curl").unwrap()));
        assert_eq!(q.since.as_deref(), Some("2026-11-29T10:00:00.000000Z"));
        assert_eq!((q.limit, q.offset), (5, 2));
        assert_eq!(filter("").unwrap().limit, 100);
        assert_eq!(filter("limit=999999").unwrap().limit, MAX_LIMIT);
        // Globs on the fields with fixed values are allowed.
        assert!(filter("type=d*&effect=[ap]*&port=44*").is_ok());
        for (bad, want) in [
            ("colour=red", "colour: unknown parameter"),
            ("container=a&container=b", "container: given more than once"),
            ("limit=ten", "limit: \"ten\" is not a whole number"),
            ("offset=-1", "offset: \"-1\" is not"),
            ("type=virus", "type: unknown type"),
            ("effect=deny", "effect: unknown effect"),
            ("pid=x", "pid: \"x\" is not a number"),
            ("port=1.5", "port: \"1.5\" is not a number"),
            ("image=[abc", "image: \"[abc\": `[` opens a class"),
            ("q=%22*%22", "q: "),
            ("until=tomorrow", "until: "),
        ] {
            let err = filter(bad).unwrap_err();
            assert!(err.starts_with(want), "{bad}: {err}");
        }
        // A summary's own parameters, where the caller accepts them.
        let (f, extra) =
            AuditFilter::parse_with(Some("group=image&container=x"), &["group", "histogram"])
                .unwrap();
        assert_eq!(
            (
                f.get(AuditField::Container),
                extra.get("group").map(String::as_str)
            ),
            (Some("x"), Some("image"))
        );
        assert!(
            AuditFilter::parse(Some("group=image"))
                .unwrap_err()
                .starts_with("group: unknown")
        );
    }

    #[test]
    fn filters_write_back_what_they_read() {
        let text = "container=a+b%26c%3Dd*&rule=%5Cx&q=%22rm+-rf%22&since=2026&limit=5&offset=1";
        let f = AuditFilter::parse(Some(text)).unwrap();
        assert_eq!(AuditFilter::parse(Some(&f.query_string()[1..])).unwrap(), f);
        let mut exact = AuditFilter::default();
        exact.set_exact(AuditField::Container, "we*b[1]");
        assert_eq!(
            exact.query(1).unwrap().fields,
            [(AuditField::Container, Pattern::Exact("we*b[1]".into()))]
        );
    }

    /// Events as delivered by the token `defender`.
    fn stored(events: Vec<Event>) -> Vec<StoredEvent> {
        let source = Some("defender".to_owned());
        events
            .into_iter()
            .map(|event| StoredEvent {
                event,
                source: source.clone(),
            })
            .collect()
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        for (cell, want) in [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("-x,y", "\"'-x,y\""),
        ] {
            assert_eq!(csv_cell(cell), want);
        }
        let events = parse_batch(serde_json::json!([event("a")]).to_string().as_bytes()).unwrap();
        let csv = to_csv(&stored(events));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "a,2026-11-29T10:00:00.500000Z,process,prevent,r,processExplicitlyDenied,,web,img:1,,,,,7,/bin/mkdir,mkdir x,/bin/sh,,,,m,1,,,,,,defender"
        );
        // The ECS identity follows the task.
        let mut ecs = event("e");
        ecs["task"] = "arn:task".into();
        ecs["cluster"] = "prod".into();
        ecs["family"] = "orders".into();
        ecs["service"] = "orders-api".into();
        let events = parse_batch(serde_json::json!([ecs]).to_string().as_bytes()).unwrap();
        assert!(
            to_csv(&stored(events.clone()))
                .contains(",web,img:1,arn:task,prod,orders,orders-api,7,"),
            "{}",
            to_csv(&stored(events.clone()))
        );
        let mut custom = event("c");
        custom["attack"] = "customRule".into();
        custom["customRule"] = "netcat, listener".into();
        let events = parse_batch(serde_json::json!([custom]).to_string().as_bytes()).unwrap();
        assert!(
            to_csv(&stored(events.clone()))
                .contains(",prevent,r,customRule,\"netcat, listener\",web,"),
            "{}",
            to_csv(&stored(events.clone()))
        );
        // The firewall's request fields follow the count.
        let mut waas = event("w");
        waas["type"] = "waas".into();
        waas["attack"] = "sqli".into();
        waas["method"] = "POST".into();
        waas["url"] = "/login?next=/".into();
        waas["sourceIp"] = "10.0.0.9".into();
        waas["field"] = "body:user".into();
        waas["requestId"] = "r-1".into();
        let events = parse_batch(serde_json::json!([waas]).to_string().as_bytes()).unwrap();
        assert!(
            to_csv(&stored(events.clone()))
                .ends_with(",m,1,POST,/login?next=/,10.0.0.9,body:user,r-1,defender\r\n"),
            "{}",
            to_csv(&stored(events.clone()))
        );
    }
}
