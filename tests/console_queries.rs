//! Audit queries against the real `defender-console` process: every audit field as a filter,
//! exactly and by glob; the text search `q`, hostile text included; every plan of the list (globs
//! expanded or not, the text search's few or many matches) against the posted events; 400 naming
//! an unknown or bad parameter (the API, the CSV, the summaries); `X-Total-Count`; the summaries by field and by
//! time; retention (`--retention-days`) deleting old audits, activity, defenders and observations
//! and nothing else, checked in the API and in the database itself (python3's sqlite3).

mod common;

use std::path::Path;
use std::process::Command;

use common::console::{ADMIN, AUDITS, Answer, Console, DEFENDER, POLICY, token_args};
use common::{HANG_GUARD, require, wait_until};
use serde_json::{Value, json};

const STATS: &str = "/api/v1/audits/runtime/app-embedded/stats";

/// Every filter's parameter, as the events name the field.
const FIELDS: [&str; 24] = [
    "container",
    "image",
    "type",
    "effect",
    "rule",
    "attack",
    "customRule",
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
    "source",
    "method",
    "url",
    "sourceIp",
    "field",
    "requestId",
];

/// An event whose text fields end with its `id`: `a1` and `a2` share every prefix `b1` lacks.
fn event(id: &str, n: u64, time: &str) -> Value {
    let kinds = ["process", "dns", "waas"];
    let effects = ["alert", "prevent", "block"];
    let number: u64 = id[1..].parse::<u64>().unwrap() + if id.starts_with('a') { 100 } else { 200 };
    json!({
        "id": id, "time": time, "type": kinds[n as usize % 3], "effect": effects[n as usize % 3],
        "rule": format!("rule-{id}"), "attack": format!("attack-{id}"),
        "customRule": format!("custom {id}"), "container": format!("orders-{id}"),
        "image": format!("registry/img:1-{id}"), "task": format!("arn:task/{id}"),
        "cluster": format!("prod-{id}"), "family": format!("family-{id}"),
        "service": format!("svc-{id}"), "pid": number,
        "process": format!("/usr/bin/tool-{id}"), "cmdline": format!("tool --run {id}"),
        "parent": format!("/bin/sh-{id}"), "domain": format!("host.example-{id}"),
        "ip": format!("10.{}.0.{number}", number / 100), "port": 8000 + number,
        "method": format!("GET-{id}"), "url": format!("/api/x?q={id}"),
        "sourceIp": format!("192.0.2.{number}"), "field": format!("body.{id}"),
        "requestId": format!("req-{id}"), "message": format!("event {id} happened"),
        "count": n + 1
    })
}

fn post(c: &Console, events: &[Value]) {
    let body = Value::Array(events.to_vec()).to_string();
    let a = c.call("POST", AUDITS, Some(DEFENDER), &[], Some(&body));
    assert_eq!(a.status, 200, "{}", a.body);
}

fn get(c: &Console, path: &str) -> Answer {
    c.call("GET", path, Some(ADMIN), &[], None)
}

/// The audits of a query string, with `X-Total-Count`.
fn audits(c: &Console, query: &str) -> (Vec<String>, u64) {
    let a = get(c, &format!("{AUDITS}?{query}"));
    assert_eq!(a.status, 200, "{query}: {}", a.body);
    let ids = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, a.total_count.expect("X-Total-Count"))
}

fn ids(c: &Console, query: &str) -> Vec<String> {
    audits(c, query).0
}

/// A field's value as text, as a query string writes it.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn three(c: &Console) -> Vec<Value> {
    let t = |s: u32| format!("2026-11-29T10:00:{s:02}Z");
    post(
        c,
        &[
            event("a1", 0, &t(1)),
            event("a2", 1, &t(2)),
            event("b1", 2, &t(3)),
        ],
    );
    get(c, AUDITS).json().as_array().unwrap().clone()
}

#[test]
fn every_field_filters_exactly_and_by_glob() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let stored = three(&c);
    assert_eq!(stored.len(), 3);
    for field in FIELDS {
        for e in &stored {
            let value = text(&e[field]);
            let want: Vec<String> = stored
                .iter()
                .filter(|o| text(&o[field]) == value)
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                ids(&c, &format!("{field}={}", encode(&value))),
                want,
                "{field}={value}"
            );
        }
        // a1's value without its last character, then `*`: the events starting so.
        let a1 = text(&stored[2][field]);
        let prefix = &a1[..a1.len() - 1];
        let want: Vec<String> = stored
            .iter()
            .filter(|o| text(&o[field]).starts_with(prefix))
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        let glob = format!("{prefix}*");
        assert_eq!(
            ids(&c, &format!("{field}={}", encode(&glob))),
            want,
            "{field}={glob}"
        );
        if !["type", "effect", "source"].contains(&field) {
            assert_eq!(
                want,
                ["a2", "a1"],
                "{field}: the data should tell the events apart"
            );
        }
    }
    let cases: &[(&str, &[&str])] = &[
        ("container=orders-a?", &["a2", "a1"]),
        ("container=orders-%5B!a%5D*", &["b1"]),
        ("container=orders-%5Bab%5D1", &["b1", "a1"]),
        ("container=ORDERS-*", &[]),    // case counts
        ("image=registry*a2", &["a2"]), // `*` crosses `/`
        ("container=orders-a1*", &["a1"]),
        ("container=orders-%5C*", &[]), // an escaped `*` is itself
        ("container=orders-*&type=dns", &["a2"]),
        ("type=*s*&effect=%5Bab%5D*", &["b1", "a1"]),
        (
            "process=/usr/bin/*&since=2026-11-29T10:00:02Z",
            &["b1", "a2"],
        ),
        ("container=&type=", &["b1", "a2", "a1"]), // empty: no filter
    ];
    for (query, want) in cases {
        assert_eq!(ids(&c, query), *want, "{query}");
    }

    // The total counts the matches before the page; the CSV carries it too.
    assert_eq!(
        audits(&c, "container=orders-*&limit=1&offset=1"),
        (vec!["a2".into()], 3)
    );
    assert_eq!(
        audits(&c, "container=orders-a*&limit=1"),
        (vec!["a2".into()], 2)
    );
    assert_eq!(audits(&c, "container=nobody"), (vec![], 0));
    let csv = get(
        &c,
        &format!("{AUDITS}/download?container=orders-a*&limit=1"),
    );
    assert_eq!(
        (csv.status, csv.total_count),
        (200, Some(2)),
        "{}",
        csv.body
    );
    assert_eq!(csv.body.lines().count(), 2, "{}", csv.body);
}

/// Enough events for every plan of the list: globs expanded into a few values (the list merged
/// from one index range per value), into more values than the list merges (then `GLOB`), with no
/// literal start; the text search's words in more events than its threshold (the page found newest
/// first) and in a few (sorted). Every page equals the same page computed from the posted events.
#[test]
fn every_plan_of_the_list_answers_what_the_posted_events_say() {
    const N: u64 = 2_600; // the text search's threshold (2,000) and the pages below, and more
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    // Times out of arrival order, two or three events at each: the order is time, then arrival.
    let second = |n: u64| (n * 37) % 1_000;
    let container = |n: u64| match n % 2 {
        0 => format!("web-{}", n % 7),
        _ => format!("many-{}", n % 301),
    };
    let word = |n: u64| match n {
        n if n % 500 == 7 => "xmrig",
        n if n % 10 == 0 => "quiet",
        _ => "curl",
    };
    let events: Vec<Value> = (0..N)
        .map(|n| {
            let s = second(n);
            let time = format!("2026-11-29T10:{:02}:{:02}Z", s / 60, s % 60);
            let mut e = event(&format!("a{n}"), n, &time);
            e["container"] = container(n).into();
            e["message"] = format!("event {n} ran {}", word(n)).into();
            (e["ip"], e["sourceIp"]) = ("10.0.0.1".into(), "192.0.2.1".into());
            e
        })
        .collect();
    for batch in events.chunks(500) {
        post(&c, batch);
    }
    // The events `keep` selects, newest first, then one page of them.
    let expected = |keep: &dyn Fn(u64) -> bool, limit: usize, offset: usize| {
        let mut selected: Vec<u64> = (0..N).filter(|n| keep(*n)).collect();
        selected.sort_by_key(|n| std::cmp::Reverse((second(*n), *n)));
        let page = selected.iter().skip(offset).take(limit);
        (
            page.map(|n| format!("a{n}")).collect::<Vec<_>>(),
            selected.len() as u64,
        )
    };
    let kind = |n: u64| ["process", "dns", "waas"][n as usize % 3];
    let cases: &[(&str, &dyn Fn(u64) -> bool)] = &[
        ("container=web-*", &|n| n % 2 == 0), // 7 values, merged
        ("container=*-3", &|n| container(n).ends_with("-3")), // no literal start
        ("container=%3Feb-%5B0-2%5D", &|n| n % 2 == 0 && n % 7 <= 2),
        ("container=many-*", &|n| n % 2 == 1), // 301 values: more than a list merges
        ("container=web-%5B3%5D", &|n| container(n) == "web-3"), // one value
        ("container=nothing-*", &|_| false),
        ("container=web-*&type=dns", &|n| {
            n % 2 == 0 && kind(n) == "dns"
        }),
        ("container=web-*&since=2026-11-29T10:05:00Z", &|n| {
            n % 2 == 0 && second(n) >= 300
        }),
        ("q=curl", &|n| word(n) == "curl"), // more than the threshold: newest first
        ("q=event", &|_| true),             // every event
        ("q=xmrig", &|n| word(n) == "xmrig"), // a few: sorted
        ("q=quiet", &|n| word(n) == "quiet"),
        ("q=curl&container=web-*", &|n| {
            n % 2 == 0 && word(n) == "curl"
        }),
        ("q=curl&type=dns", &|n| {
            word(n) == "curl" && kind(n) == "dns"
        }),
        // A glob of many stars against every value: decided at once, nothing matches.
        (
            "container=*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
            &|_| false,
        ),
    ];
    // Pages across the values' boundaries and past the threshold by their offset.
    let pages = [(100, 0), (37, 300), (50, 1_000), (10_000, 0)];
    for (query, keep) in cases {
        for (limit, offset) in pages {
            assert_eq!(
                audits(&c, &format!("{query}&limit={limit}&offset={offset}")),
                expected(keep, limit, offset),
                "{query}&limit={limit}&offset={offset}"
            );
        }
    }
}

#[test]
fn the_text_search_finds_words_and_hostile_text_is_only_text() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let t = |s: u32| format!("2026-11-29T10:00:{s:02}Z");
    let mut curl = event("a1", 0, &t(1));
    curl["message"] = "Process /usr/bin/curl launched".into();
    curl["cmdline"] = r#"curl -s "http://evil.test/x" NEAR AND OR NOT * -v"#.into();
    let mut dns = event("b1", 1, &t(2));
    dns["domain"] = "exfil.evil.test".into();
    dns["message"] = "DNS resolution".into();
    let mut waas = event("b2", 2, &t(3));
    waas["url"] = "/login?user=admin' OR 1=1".into();
    post(&c, &[curl, dns, waas]);
    let cases: &[(&str, &[&str])] = &[
        ("curl", &["a1"]),
        ("CURL launched", &["a1"]),
        ("laun", &["a1"]),            // the last word of a term is a prefix
        ("\"laun\"", &[]),            // a quoted phrase is whole words
        ("evil.test", &["b1", "a1"]), // in the domain of one, the command line of the other
        ("exfil", &["b1"]),
        ("admin", &["b2"]),
        ("10.1.0.101", &["a1"]), // the ip: its numbers in order
        ("/usr/bin/curl", &["a1"]),
        ("curl exfil", &[]), // every term
        // What search syntaxes treat as operators is text here.
        ("NEAR", &["a1"]),
        ("curl OR exfil", &[]),
        ("NOT curl", &["a1"]),
        ("-v", &["a1"]),
        ("\"http://evil\"", &["a1"]),
        ("curl\" \"launched", &["a1"]),
        ("curl*", &["a1"]),
        ("curl AND", &["a1"]),
        ("(curl", &["a1"]),
        ("NEAR(", &["a1"]),
        ("message:curl", &[]),
        ("1=1", &["b2"]),
        ("admin'", &["b2"]),
    ];
    for (q, want) in cases {
        assert_eq!(ids(&c, &format!("q={}", encode(q))), *want, "q={q}");
    }
    // Nothing to search for: a 400 that says so, never a 500.
    for q in ["\"", "*", "-", "\"\"", "() - *", "^"] {
        let a = get(&c, &format!("{AUDITS}?q={}", encode(q)));
        assert_eq!(a.status, 400, "q={q}: {}", a.body);
        let error = a.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with("q: "), "q={q}: {error}");
    }
    // q filters the summaries too.
    let a = get(&c, &format!("{STATS}?group=container&q=evil"));
    assert_eq!(
        a.json(),
        json!([{"key": "orders-b1", "count": 2}, {"key": "orders-a1", "count": 1}])
    );
}

#[test]
fn unknown_and_bad_parameters_are_refused_naming_them() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    three(&c);
    let download = format!("{AUDITS}/download");
    let cases: &[(&str, &str, &str)] = &[
        (AUDITS, "colour=red", "colour: unknown parameter"),
        (&download, "colour=red", "colour: unknown parameter"),
        (STATS, "group=image&colour=red", "colour: unknown parameter"),
        (AUDITS, "group=image", "group: unknown parameter"),
        (
            AUDITS,
            "container=a&container=b",
            "container: given more than once",
        ),
        (AUDITS, "limit=ten", "limit: \"ten\" is not a whole number"),
        (
            &download,
            "offset=-2",
            "offset: \"-2\" is not a whole number",
        ),
        (AUDITS, "type=virus", "type: unknown type \"virus\""),
        (AUDITS, "effect=deny", "effect: unknown effect \"deny\""),
        (AUDITS, "pid=one", "pid: \"one\" is not a number"),
        (AUDITS, "port=80.5", "port: \"80.5\" is not a number"),
        (
            AUDITS,
            "image=img%5B1",
            "image: \"img[1\": `[` opens a class",
        ),
        (
            AUDITS,
            "service=%7Ba%2Cb%7D",
            "service: \"{a,b}\": `{`: alternatives",
        ),
        (AUDITS, "since=yesterday", "since: \"yesterday\" is not"),
        (
            STATS,
            "group=colour",
            "group: \"colour\" is none of container, image, rule, attack, type, effect, domain, process",
        ),
        (STATS, "", "group or histogram: exactly one"),
        (
            STATS,
            "group=image&histogram=5",
            "group or histogram: exactly one",
        ),
        (
            STATS,
            "histogram=0",
            "histogram: \"0\" is not a whole number of minutes",
        ),
        (STATS, "histogram=x", "histogram: \"x\" is not"),
        (STATS, "histogram=5&until=never", "until: "),
    ];
    for (path, query, want) in cases {
        let a = get(&c, &format!("{path}?{query}"));
        assert_eq!(a.status, 400, "{path}?{query}: {}", a.body);
        let error = a.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with(want), "{path}?{query}: {error}");
    }
    // The summaries are read like the audits: a token that may read them.
    let a = c.call(
        "GET",
        &format!("{STATS}?group=image"),
        Some(DEFENDER),
        &[],
        None,
    );
    assert_eq!(a.status, 403, "{}", a.body);
    let a = c.call("GET", &format!("{STATS}?group=image"), None, &[], None);
    assert_eq!(a.status, 401, "{}", a.body);
}

#[test]
fn summaries_group_every_field_and_bucket_time_by_effect() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let stored = three(&c);
    for group in [
        "container",
        "image",
        "rule",
        "attack",
        "type",
        "effect",
        "domain",
        "process",
    ] {
        let a = get(&c, &format!("{STATS}?group={group}"));
        assert_eq!(a.status, 200, "{group}: {}", a.body);
        // counts are the events' `count`s: b1 3, a2 2, a1 1, largest first.
        let want: Vec<Value> = stored
            .iter()
            .map(|e| json!({"key": e[group], "count": e["count"]}))
            .collect();
        assert_eq!(a.json(), Value::Array(want), "{group}");
    }
    // Filters, limits and offsets apply; events of one value are summed.
    let mut twin = event("a3", 0, "2026-11-29T10:00:04Z");
    twin["type"] = "waas".into();
    twin["count"] = 5.into();
    post(&c, &[twin]);
    let a = get(&c, &format!("{STATS}?group=type"));
    assert_eq!(
        a.json(),
        json!([{"key": "waas", "count": 8}, {"key": "dns", "count": 2}, {"key": "process", "count": 1}])
    );
    let a = get(
        &c,
        &format!("{STATS}?group=type&container=orders-a*&limit=1&offset=1"),
    );
    assert_eq!(a.json(), json!([{"key": "dns", "count": 2}]));

    // Buckets of one minute, by effect: 10:00 holds all four events.
    let mut late = event("b2", 1, "2026-11-29T10:07:30Z");
    late["count"] = 7.into();
    post(&c, &[late]);
    let a = get(&c, &format!("{STATS}?histogram=1"));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json(),
        json!([
            {"start": "2026-11-29T10:00:00Z", "count": 6, "effect": "alert"},
            {"start": "2026-11-29T10:00:00Z", "count": 3, "effect": "block"},
            {"start": "2026-11-29T10:00:00Z", "count": 2, "effect": "prevent"},
            {"start": "2026-11-29T10:07:00Z", "count": 7, "effect": "prevent"},
        ])
    );
    // Five minutes: 10:05 holds the late one; filtered by effect.
    let a = get(&c, &format!("{STATS}?histogram=5&effect=prevent"));
    assert_eq!(
        a.json(),
        json!([
            {"start": "2026-11-29T10:00:00Z", "count": 2, "effect": "prevent"},
            {"start": "2026-11-29T10:05:00Z", "count": 7, "effect": "prevent"},
        ])
    );
    // An hour: one bucket, aligned on the hour.
    let a = get(
        &c,
        &format!("{STATS}?histogram=60&since=2026-11-29T10:00:02Z"),
    );
    assert_eq!(
        a.json(),
        json!([
            {"start": "2026-11-29T10:00:00Z", "count": 5, "effect": "alert"},
            {"start": "2026-11-29T10:00:00Z", "count": 3, "effect": "block"},
            {"start": "2026-11-29T10:00:00Z", "count": 9, "effect": "prevent"},
        ])
    );
}

/// Forty-eight events over four hours (08:00 to 11:59): three containers, types, effects and
/// counts varying apart from each other.
fn spread() -> Vec<Value> {
    (0..48u64)
        .map(|n| {
            let time = format!(
                "2026-11-29T{:02}:{:02}:{:02}Z",
                8 + n / 12,
                (n * 13) % 60,
                n % 60
            );
            let mut e = event(&format!("r{n}"), n, &time);
            e["container"] = ["web-1", "web-2", "db"][n as usize % 3].into();
            e["type"] = ["process", "dns", "waas"][(n / 3) as usize % 3].into();
            e["effect"] = ["alert", "prevent", "block"][(n / 2) as usize % 3].into();
            e["count"] = (n % 5 + 1).into();
            e
        })
        .collect()
}

/// The sums of `count` per `key` of the events, as a summary lists them: largest first, ties by
/// key.
fn sums(events: &[&Value], key: impl Fn(&Value) -> Value) -> Vec<(Value, u64)> {
    let mut sums: Vec<(Value, u64)> = Vec::new();
    for e in events {
        let k = key(e);
        let n = e["count"].as_u64().unwrap();
        match sums.iter_mut().find(|(s, _)| *s == k) {
            Some((_, sum)) => *sum += n,
            None => sums.push((k, n)),
        }
    }
    sums
}

/// Totals, summaries and hourly histograms of queries the rollup of counts answers (a glob, a
/// `since` inside an hour, an `until`), as the posted events say, and as the same queries
/// answered from the events (an added `pid=*` matches every event but is not rolled up); no
/// summary says it was sampled.
#[test]
fn rolled_up_counts_agree_with_the_events() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let events = spread();
    post(&c, &events[..30]);
    // Delivered again with the rest: the duplicates count once.
    post(&c, &events[20..]);
    let time = |e: &Value| e["time"].as_str().unwrap().to_owned();
    type Filter = Box<dyn Fn(&Value) -> bool>;
    let queries: Vec<(&str, Filter)> = vec![
        ("", Box::new(|_| true)),
        (
            "container=web-*",
            Box::new(|e| e["container"].as_str().unwrap().starts_with("web-")),
        ),
        (
            "container=web-1&type=dns",
            Box::new(|e| e["container"] == "web-1" && e["type"] == "dns"),
        ),
        (
            "since=2026-11-29T09:20:30Z",
            Box::new(move |e| time(e).as_str() >= "2026-11-29T09:20:30Z"),
        ),
        (
            "effect=[ab]*&since=2026-11-29T08:40:00Z&until=2026-11-29T10:15:00Z",
            Box::new(move |e| {
                let t = e["time"].as_str().unwrap();
                e["effect"] != "prevent"
                    && ("2026-11-29T08:40:00Z".."2026-11-29T10:15:00Z").contains(&t)
            }),
        ),
        (
            "container=d*&until=2026-11-29T10:00:00Z",
            Box::new(|e| e["container"] == "db" && e["time"].as_str().unwrap() < "2026-11-29T10"),
        ),
    ];
    for (query, matches) in &queries {
        let matching: Vec<&Value> = events.iter().filter(|e| matches(e)).collect();
        assert!(!matching.is_empty(), "{query}");
        for query in [query.to_string(), format!("{query}&pid=*")] {
            let (_, total) = audits(&c, &format!("{query}&limit=1"));
            assert_eq!(total, matching.len() as u64, "{query}");
            for group in ["container", "type", "effect"] {
                let a = get(&c, &format!("{STATS}?group={group}&{query}"));
                assert_eq!((a.status, a.sampled), (200, None), "{query}: {}", a.body);
                let mut want = sums(&matching, |e| e[group].clone());
                want.sort_by(|a, b| {
                    b.1.cmp(&a.1)
                        .then_with(|| a.0.as_str().unwrap().cmp(b.0.as_str().unwrap()))
                });
                let want: Vec<Value> = want
                    .into_iter()
                    .map(|(key, count)| json!({"key": key, "count": count}))
                    .collect();
                assert_eq!(a.json(), Value::Array(want), "{group} of {query}");
            }
            for hours in [1u64, 2] {
                let a = get(&c, &format!("{STATS}?histogram={}&{query}", hours * 60));
                assert_eq!((a.status, a.sampled), (200, None), "{query}: {}", a.body);
                // Buckets start at multiples of their width since the epoch: at even hours.
                let mut want = sums(&matching, |e| {
                    let hour: u64 = e["time"].as_str().unwrap()[11..13].parse().unwrap();
                    json!([
                        format!("2026-11-29T{:02}:00:00Z", hour / hours * hours),
                        e["effect"]
                    ])
                });
                want.sort_by_key(|(k, _)| k.to_string());
                let want: Vec<Value> = want
                    .into_iter()
                    .map(|(k, count)| json!({"start": k[0], "count": count, "effect": k[1]}))
                    .collect();
                assert_eq!(a.json(), Value::Array(want), "{hours} h of {query}");
            }
        }
    }
}

/// More than 50,000 events matching a query the rollup cannot answer: its summaries count the
/// newest 50,000 and say so in `X-Sampled-Events`; its total stays exact, and the summaries the
/// rollup answers count every event and say nothing.
#[test]
fn summaries_beyond_the_rollup_say_they_counted_a_sample() {
    const SAMPLE: u64 = 50_000;
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let events: Vec<Value> = (0..=SAMPLE)
        .map(|n| {
            let kind = ["process", "dns"][n as usize % 2];
            json!({
                "id": format!("s{n}"), "type": kind,
                "effect": "alert", "time": format!("2026-11-29T10:{:02}:{:02}Z", n / 1000 % 60, n % 60),
                "container": "web", "image": "img", "pid": 7, "process": "/bin/x",
                "message": "m", "count": 1
            })
        })
        .collect();
    for batch in events.chunks(10_000) {
        post(&c, batch);
    }
    let total = |a: &Answer| -> u64 {
        a.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["count"].as_u64().unwrap())
            .sum()
    };
    for query in ["group=type&pid=7", "histogram=1", "histogram=60&pid=7"] {
        let a = get(&c, &format!("{STATS}?{query}"));
        assert_eq!(
            (a.status, a.sampled),
            (200, Some(SAMPLE)),
            "{query}: {}",
            a.body
        );
        assert_eq!(total(&a), SAMPLE, "{query}");
    }
    assert_eq!(audits(&c, "pid=7&limit=1").1, SAMPLE + 1);
    for query in ["group=type", "histogram=60", "group=type&container=w*"] {
        let a = get(&c, &format!("{STATS}?{query}"));
        assert_eq!((a.status, a.sampled), (200, None), "{query}: {}", a.body);
        assert_eq!(total(&a), SAMPLE + 1, "{query}");
    }
}

/// Runs SQL on the console's database with python3's sqlite3; the rows as JSON.
fn sql(data: &Path, statement: &str) -> Value {
    let script = "import json, sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1])\n\
                  rows = c.execute(sys.argv[2]).fetchall()\n\
                  c.commit()\n\
                  print(json.dumps(rows))";
    let out = Command::new(require("python3"))
        .args(["-c", script])
        .arg(data.join("console.db"))
        .arg(statement)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn retention_deletes_what_is_older_than_the_period_and_nothing_else() {
    let w = common::World::new();
    let data = w.path("data");
    let mut c = Console::start(&data);
    // Audits by their own time: two of ten days ago, one of an hour ago.
    let ago = |secs: u64| {
        humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() - std::time::Duration::from_secs(secs),
        )
        .to_string()
    };
    post(
        &c,
        &[
            event("a1", 0, &ago(10 * 86400)),
            event("a2", 1, &ago(10 * 86400 - 60)),
            event("b1", 2, &ago(3600)),
        ],
    );
    // Two defenders and what they observed; two lines of the activity log.
    for id in ["d-old", "d-new"] {
        let beat = json!({
            "id": id, "container": id, "image": "img", "version": "0",
            "observed": {"entries": [{"kind": "dns", "value": format!("{id}.test"), "count": 1}]}
        });
        let a = c.call(
            "POST",
            "/api/v1/defenders/heartbeat",
            Some(DEFENDER),
            &[],
            Some(&beat.to_string()),
        );
        assert_eq!(a.status, 204, "{}", a.body);
    }
    // Heartbeats wait in memory until written; a read of the defenders writes them first (the
    // kill below writes nothing more).
    assert_eq!(
        get(&c, "/api/v1/defenders")
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for policy in [
        r#"{"rules": []}"#,
        r#"{"rules": [{"name": "no mkdir", "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#,
    ] {
        c.put_policy(policy);
    }
    c.kill();
    // Made old behind the console's back, as if time had passed.
    let old = ago(3 * 86400);
    sql(
        &data,
        &format!(
            "UPDATE defenders SET last_seen = '{old}', first_seen = '{old}' WHERE id = 'd-old'"
        ),
    );
    sql(
        &data,
        &format!("UPDATE observations SET last_seen = '{old}' WHERE container = 'd-old'"),
    );
    sql(
        &data,
        &format!("UPDATE activity SET time = '{old}' WHERE seq = (SELECT min(seq) FROM activity)"),
    );
    let activity_before = sql(&data, "SELECT count(*) FROM activity")[0][0]
        .as_u64()
        .unwrap();

    let mut args = token_args();
    args.extend(["--retention-days".into(), "1".into()]);
    let c = Console::start_with(&data, "127.0.0.1:0", &args);
    let swept = wait_until(HANG_GUARD, || c.log().contains("retention: deleted"));
    assert!(swept, "no sweep: {}", c.log());
    // Audits go by whole hours: the line names the start of the cutoff's hour for them, and the
    // cutoff itself for the rest.
    let line = c
        .log()
        .lines()
        .find(|l| l.contains("retention: deleted"))
        .unwrap()
        .to_owned();
    let (audits, rest) = line
        .split_once("2 audits older than ")
        .and_then(|(_, after)| {
            after.split_once(", 1 activity entries, 1 defenders, 1 observations older than ")
        })
        .unwrap_or_else(|| panic!("{line}"));
    let cutoff = rest
        .strip_suffix(" (1 days)")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(audits.ends_with(":00:00.000000Z"), "{line}");
    assert_eq!(audits[..13], cutoff[..13], "{line}");
    assert_ne!(audits, cutoff, "{line}");
    assert_eq!(ids(&c, ""), ["b1"]);
    assert_eq!(ids(&c, "q=event"), ["b1"]); // the text index forgot them too
    let defenders = get(&c, "/api/v1/defenders").json();
    let names: Vec<&str> = defenders
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["d-new"]);
    let activity = get(&c, "/api/v1/activity").json();
    assert_eq!(
        activity.as_array().unwrap().len() as u64,
        activity_before - 1,
        "{activity}"
    );
    assert_eq!(
        sql(&data, "SELECT container FROM observations"),
        json!([["d-new"]])
    );
    // The policy's revisions are history, never expired.
    assert_eq!(get(&c, POLICY).status, 200);
    assert_eq!(sql(&data, "SELECT count(*) FROM policies"), json!([[3]]));
}

#[test]
fn retention_of_zero_days_keeps_everything() {
    let w = common::World::new();
    let data = w.path("data");
    let mut args = token_args();
    args.extend(["--retention-days".into(), "0".into()]);
    let mut c = Console::start_with(&data, "127.0.0.1:0", &args);
    post(&c, &[event("a1", 0, "2001-01-01T00:00:00Z")]);
    // Restarted with the same: no sweep, the old event is still there.
    c.restart();
    let off = wait_until(HANG_GUARD, || c.log().contains("retention: off"));
    assert!(off, "{}", c.log());
    assert_eq!(ids(&c, ""), ["a1"]);
    assert!(!c.log().contains("retention: deleted"), "{}", c.log());
}

/// Events `from` to `to` of the bitmap index's test: `c{i % 3}`, rule `r{i % 2}`, the word
/// `curl` in every fourth (`curly` in the next), one a millisecond from 10:00.
fn indexed(from: u32, to: u32) -> Vec<Value> {
    (from..to)
        .map(|i| {
            let message = match i % 4 {
                0 => "ran curl",
                1 => "ran curly",
                _ => "ran other",
            };
            json!({
                "id": format!("x{i}"),
                "time": format!("2026-11-29T10:{:02}:{:02}.{:03}Z", i / 60_000, i / 1000 % 60, i % 1000),
                "type": "process", "effect": "alert", "rule": format!("r{}", i % 2),
                "container": format!("c{}", i % 3), "image": "img", "pid": 1,
                "process": "/bin/sh", "message": message, "count": 1
            })
        })
        .collect()
}

/// The bitmap index: once 65,536 positions are stored, the console seals the first chunk (its
/// log says so, and the database holds it), and the totals of two large conditions (a container
/// and a rule, a glob and a rule, a word and a container) are exactly the events'; the page of a
/// rare pair (three events of container `rare` among 70,000) is its events, newest first. They
/// are the bitmaps' (the newest chunk's sealed to its last position): with a key's bitmaps
/// deleted behind the console's back, none is counted for it, nor listed.
#[test]
fn totals_and_rare_pages_come_from_the_sealed_chunks_bitmaps() {
    let w = common::World::new();
    let data = w.path("data");
    let mut c = Console::start(&data);
    const EVENTS: u32 = 70_000;
    // Positions 1 to 3, older than the rest.
    let rare: Vec<Value> = (0..3)
        .map(|k| {
            json!({
                "id": format!("rare{k}"), "time": format!("2026-11-29T09:00:0{k}.000Z"),
                "type": "process", "effect": "alert", "rule": "r0", "container": "rare",
                "image": "img", "pid": 1, "process": "/bin/sh", "message": "ran", "count": 1
            })
        })
        .collect();
    post(&c, &rare);
    for from in (0..EVENTS).step_by(10_000) {
        post(&c, &indexed(from, from + 10_000));
    }
    // Chunk 0 whole (positions 1 to 65,535), chunk 1 to the last position (65,536 to 70,003).
    let sealed = wait_until(HANG_GUARD, || {
        let log = c.log();
        log.contains("index: sealed chunk 0 (65535 events)")
            && log.contains("index: sealed chunk 1 to position 70004 (4468 events)")
    });
    assert!(sealed, "chunks not sealed: {}", c.log());
    assert_eq!(
        sql(
            &data,
            "SELECT chunk, events, words, upto FROM audit_chunks WHERE chunk = 0"
        ),
        json!([[0, 65535, 1, null]])
    );
    let count = |p: &dyn Fn(u32) -> bool| (0..EVENTS).filter(|i| p(*i)).count() as u64;
    let cases: [(&str, u64); 5] = [
        ("container=c0&rule=r0", count(&|i| i % 6 == 0)),
        ("container=c*&rule=r1", count(&|i| i % 2 == 1)),
        ("container=c1&rule=r1&type=process", count(&|i| i % 6 == 1)),
        ("q=curl&container=c2", count(&|i| i % 4 < 2 && i % 3 == 2)),
        (
            "q=%22curl%22&container=c2",
            count(&|i| i % 4 == 0 && i % 3 == 2),
        ),
    ];
    for (query, want) in cases {
        assert_eq!(audits(&c, &format!("{query}&limit=1")).1, want, "{query}");
    }
    let rare_page = audits(&c, "container=rare&rule=r0&limit=2");
    assert_eq!(rare_page, (vec!["rare2".into(), "rare1".into()], 3));
    c.kill();
    sql(
        &data,
        "DELETE FROM audit_bits WHERE key IN ('rule:r0', 'container:rare')",
    );
    let c = Console::start(&data);
    // Every position is sealed: none is counted from the events.
    assert_eq!(audits(&c, "container=c0&rule=r0&limit=1").1, 0);
    // The rare events are in the chunk alone: neither listed nor counted.
    assert_eq!(
        audits(&c, "container=rare&rule=r0&limit=2"),
        (Vec::new(), 0)
    );
}
