//! The audits page as a triage tool and the defenders page, in a real browser (Debian's headless
//! Chromium through WebDriver) against the real console, fed through its API with the defender
//! token: the total and the next page, a count clicked to narrow the list (a hostile container's
//! name, glob characters and markup, shown as text and selected exactly), the text search, the
//! chart and its legend, an event's own page with every field; the defenders page with the
//! revision each runs, the ports it protects and its audits by effect, linked to the list.
//!
//! Debian packages: chromium, chromium-driver.

mod common;

use std::time::{Duration, SystemTime};

use common::console::{AUDITS, Console, DEFENDER, log_in};
use common::webdriver::Browser;
use common::{HANG_GUARD, World, wait_until};
use serde_json::{Value, json};

/// A container name a hostile workload chose: markup, quotes and glob characters.
const HOSTILE: &str =
    r#"web* [x] <img src=x onerror="window.pwned=1"><script>window.pwned=2</script> & 'q'"#;

/// `at` as audit events write times.
fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Posts `events` with the defender token.
fn post(c: &Console, events: &[Value]) {
    let body = Value::from(events.to_vec()).to_string();
    let sent = c.call("POST", AUDITS, Some(DEFENDER), &[], Some(&body));
    assert_eq!(sent.status, 200, "{}", sent.body);
}

/// A process audit of `container`, `ago` before now, saying `message`.
fn process(id: &str, container: &str, effect: &str, ago: Duration, message: &str) -> Value {
    json!({
        "id": id, "time": time(SystemTime::now() - ago), "type": "process", "effect": effect,
        "rule": "triage", "attack": "processExplicitlyDenied", "container": container,
        "image": "img:1", "pid": 100, "process": "/bin/sh", "cmdline": format!("sh -c {message}"),
        "parent": "/bin/sh", "message": message, "count": 1
    })
}

/// The text of `#total`, once the page shows one.
fn total(b: &Browser) -> String {
    let mut text = String::new();
    wait_until(HANG_GUARD, || {
        text = b.text("#total");
        !text.is_empty()
    });
    text
}

/// The text of cell `n` (from 1) of every audit row shown.
fn column(b: &Browser, n: u32) -> Vec<String> {
    let cells = b.poll_eval(&format!(
        "return [...document.querySelectorAll('#rows tr.audit td:nth-child({n})')]\
         .map(c => c.textContent)"
    ));
    cells
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect()
}

/// Whether anything of [`HOSTILE`] became markup or ran.
fn hostile_ran(b: &Browser) -> bool {
    b.eval(
        "return window.pwned !== undefined \
         || document.querySelectorAll('main img').length > 0 \
         || [...document.querySelectorAll('script')].some(s => !s.textContent.includes('setInterval'))",
    ) != false
}

/// The audits table's columns (from 1).
const CONTAINER: u32 = 4;
const MESSAGE: u32 = 8;

#[test]
fn the_audits_page_pages_counts_narrows_charts_and_details() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    // 60 process audits, one every 30 s up to a minute ago, a third of them from the hostile
    // container; the newest of all, a web application firewall's.
    let mut events: Vec<Value> = (0..60)
        .map(|i| {
            let container = if i % 3 == 0 { HOSTILE } else { "orders-1" };
            let effect = if i % 2 == 0 { "prevent" } else { "alert" };
            let message = if i == 42 {
                "needle in the haystack".to_owned()
            } else {
                format!("event {i:03}")
            };
            let ago = Duration::from_secs(60 + (60 - i) * 30);
            process(&format!("e{i}"), container, effect, ago, &message)
        })
        .collect();
    events.push(json!({
        "id": "waas-1", "time": time(SystemTime::now() - Duration::from_secs(30)), "type": "waas",
        "effect": "block", "rule": "triage", "attack": "sqlInjection", "container": "orders-1",
        "image": "img:1", "pid": 7, "process": "/usr/bin/python3", "ip": "203.0.113.9",
        "port": 8080, "method": "POST", "url": "/login?next=%27%20OR%201=1", "sourceIp": "203.0.113.9",
        "field": "query:next", "requestId": "req-7", "message": "SQL injection in query:next",
        "count": 1
    }));
    post(&c, &events);

    let b = Browser::start();
    log_in(&b, &c);
    let base = c.url();

    // The first page of 50, and the total.
    assert_eq!(total(&b), "1–50 of 61", "{}", b.source());
    let first = column(&b, MESSAGE);
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], "SQL injection in query:next");
    assert_eq!(first[1], "event 059");
    assert!(!hostile_ran(&b), "{}", b.source());

    // The chart: an SVG titled, its axes labelled, a legend entry per effect.
    let chart = b.poll_eval(
        "const s = document.querySelector('svg#chart'); return s && {\
           title: s.querySelector('title').textContent, \
           texts: [...s.querySelectorAll('text')].map(t => t.textContent.trim())}",
    );
    let title = chart["title"].as_str().unwrap_or_default();
    assert!(
        title.starts_with("Audit events over time by effect"),
        "{chart}"
    );
    let texts: Vec<&str> = chart["texts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for label in ["alert", "prevent", "block", "time (UTC)", "events"] {
        assert!(texts.contains(&label), "{label} is not in {chart}");
    }

    // The next page: the next rows, to the oldest.
    b.click("#next");
    assert!(
        wait_until(HANG_GUARD, || b.text("#total") == "51–61 of 61"),
        "{}",
        b.source()
    );
    let second = column(&b, MESSAGE);
    let want: Vec<String> = (0..=10).rev().map(|i| format!("event {i:03}")).collect();
    assert_eq!(second, want);
    assert!(b.find("#next").is_none());
    b.click("#previous");
    assert!(
        wait_until(HANG_GUARD, || b.text("#total") == "1–50 of 61"),
        "{}",
        b.source()
    );

    // The counts by container: orders-1 first (41), then the hostile one (20), shown as text.
    let counts = b.poll_eval(
        "return [...document.querySelectorAll('#count-container li')].map(l => \
           [l.querySelector('a').textContent, l.querySelector('.count').textContent])",
    );
    assert_eq!(counts, json!([["orders-1", "41"], [HOSTILE, "20"]]));
    // Clicking one narrows the list to exactly that container (its `*` and `[x]` not a glob).
    b.click("#count-container li:nth-child(2) a");
    assert!(
        wait_until(HANG_GUARD, || b.text("#total") == "1–20 of 20"),
        "{}",
        b.source()
    );
    assert!(
        b.current_url().contains("container="),
        "{}",
        b.current_url()
    );
    let containers = column(&b, CONTAINER);
    assert_eq!(containers.len(), 20);
    assert!(containers.iter().all(|c| c == HOSTILE), "{containers:?}");
    assert!(!hostile_ran(&b), "{}", b.source());
    // The other counts follow the filter.
    assert_eq!(
        b.eval("return document.querySelector('#count-container .count').textContent"),
        "20"
    );

    // The text search.
    b.goto(&format!("{base}/audits"));
    b.type_into("#filter-q", "needle");
    b.click("#apply");
    assert!(
        wait_until(HANG_GUARD, || b.text("#total") == "1–1 of 1"),
        "{}",
        b.source()
    );
    assert_eq!(column(&b, MESSAGE), ["needle in the haystack"]);

    // An unknown filter is said, not ignored.
    b.goto(&format!("{base}/audits?contianer=web"));
    assert!(
        wait_until(HANG_GUARD, || b.text("#errors").contains("contianer")),
        "{}",
        b.source()
    );

    // An event's own page: every field the API returns for it, as text.
    b.goto(&format!("{base}/audits"));
    b.click("#rows tr.audit:first-child a.detail");
    assert!(
        wait_until(HANG_GUARD, || b.find("#event").is_some()),
        "{}",
        b.source()
    );
    assert!(
        b.current_url().contains("/audits/event?id=waas-1"),
        "{}",
        b.current_url()
    );
    let shown = b.poll_eval(
        "return Object.fromEntries([...document.querySelectorAll('#event tr')]\
           .map(r => [r.dataset.field, r.querySelector('td.value').textContent]))",
    );
    let stored = c.audits("requestId=req-7");
    let stored = stored[0].as_object().unwrap();
    for name in [
        "method",
        "url",
        "sourceIp",
        "field",
        "requestId",
        "source",
        "port",
    ] {
        assert!(stored.contains_key(name), "{name} is not in {stored:?}");
    }
    assert_eq!(shown.as_object().unwrap().len(), stored.len(), "{shown}");
    for (name, value) in stored {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(shown[name], text.as_str(), "{name}");
    }

    // A hostile event's page: its container as text.
    b.goto(&format!("{base}/audits/event?id=e0"));
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#event tr[data-field=\"container\"] td.value")
            == HOSTILE),
        "{}",
        b.source()
    );
    assert!(!hostile_ran(&b), "{}", b.source());
}

/// How many bar parts (and the legend swatch) of the chart are filled with the block colour.
const BLOCK_PARTS: &str = "const s = document.querySelector('svg#chart'); return s && \
    [...s.querySelectorAll('rect')].filter(r => (r.getAttribute('fill') || '').toUpperCase() == '#6A1040').length";

#[test]
fn the_live_refresh_brings_the_total_counts_chart_and_rows_up_to_date() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let minute = Duration::from_secs(60);
    post(
        &c,
        &[
            process("o1", "orders-1", "alert", minute, "one"),
            process("o2", "orders-1", "block", 2 * minute, "two"),
        ],
    );
    let b = Browser::start();
    log_in(&b, &c);
    assert_eq!(total(&b), "1–2 of 2", "{}", b.source());
    // The chart's title ends with the total it draws.
    let charted = |total: &str| {
        b.poll_eval("return document.querySelector('svg#chart title').textContent")
            .as_str()
            .is_some_and(|t| t.ends_with(&format!(" {total} in all")))
    };
    assert!(charted("2"), "{}", b.source());
    let block_parts = b.poll_eval(BLOCK_PARTS);

    // After the page loaded: two new events of a new container, and a blocked one three hours
    // ago, in a bucket of the chart that had no bar.
    post(
        &c,
        &[
            process("l1", "late-1", "alert", Duration::from_secs(20), "late one"),
            process("l2", "late-1", "alert", Duration::from_secs(10), "late two"),
            process("l3", "late-1", "block", 180 * minute, "late three"),
        ],
    );
    // The refresh (every 2 s) brings them without a reload: the total, the counts, the chart,
    // the rows.
    assert!(
        wait_until(HANG_GUARD, || b.text("#total") == "1–5 of 5"),
        "{}",
        b.source()
    );
    let late = "return [...document.querySelectorAll('#count-container li')].map(l => \
        [l.querySelector('a').textContent, l.querySelector('.count').textContent])";
    assert!(
        wait_until(HANG_GUARD, || b.eval(late)
            == json!([["late-1", "3"], ["orders-1", "2"]])),
        "{}",
        b.source()
    );
    assert!(charted("5"), "{}", b.source());
    assert_eq!(
        b.eval(BLOCK_PARTS),
        json!(block_parts.as_u64().unwrap() + 1),
        "{}",
        b.source()
    );
    assert_eq!(
        column(&b, MESSAGE),
        ["late two", "late one", "one", "two", "late three"]
    );
    // The switch is outside what the refresh replaces: the refresh never turns it back on.
    assert_eq!(
        b.eval(
            "return document.getElementById('results').contains(document.getElementById('live'))"
        ),
        false
    );
    assert!(!hostile_ran(&b), "{}", b.source());
}

#[test]
fn the_defenders_page_shows_revision_ports_and_audits_by_effect() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let revision = c.put_policy(r#"{"rules": []}"#);
    let beat = |id: &str, container: &str, revision: &str, protects: &[u16]| {
        let body = json!({
            "id": id, "container": container, "image": "img:1", "version": "0.1",
            "revision": revision, "protects": protects
        })
        .to_string();
        let a = c.call(
            "POST",
            "/api/v1/defenders/heartbeat",
            Some(DEFENDER),
            &[],
            Some(&body),
        );
        assert_eq!(a.status, 204, "{}", a.body);
    };
    let hour = Duration::from_secs(3600);
    post(
        &c,
        &[
            process("p1", "orders-1", "prevent", hour, "one"),
            process("p2", "orders-1", "prevent", hour, "two"),
            process("p3", "orders-1", "prevent", hour, "three"),
            process("a1", "orders-1", "alert", hour, "four"),
            // Older than the page's 24 hours.
            process("old", "orders-1", "prevent", 48 * hour, "old"),
            process("b1", "billing", "alert", hour, "billing"),
        ],
    );

    let b = Browser::start();
    log_in(&b, &c);
    // Just before the page, so that they count as connected (a heartbeat in the last 15 s).
    beat("d-orders", "orders-1", &revision.to_string(), &[8080, 8443]);
    beat("d-billing", "billing", "1", &[]);
    b.goto(&format!("{}/defenders", c.url()));
    let orders = "#defenders tr[data-id=\"d-orders\"]";
    let billing = "#defenders tr[data-id=\"d-billing\"]";
    assert!(
        wait_until(HANG_GUARD, || b.find(orders).is_some()),
        "{}",
        b.source()
    );
    assert_eq!(
        b.text(&format!("{orders} td.revision")),
        format!("{revision} (in force)")
    );
    assert_eq!(
        b.text(&format!("{billing} td.revision")),
        "1 (not in force)"
    );
    assert_eq!(b.text(&format!("{orders} td.protects")), "8080, 8443");
    assert_eq!(b.text(&format!("{billing} td.protects")), "—");
    assert_eq!(b.text(&format!("{orders} td.state")), "connected");
    let counts = |row: &str| {
        ["alert", "prevent", "block"].map(|e| b.text(&format!("{row} a[data-effect=\"{e}\"]")))
    };
    assert_eq!(counts(orders), ["alert 1", "prevent 3", "block 0"]);
    assert_eq!(counts(billing), ["alert 1", "prevent 0", "block 0"]);

    // A count leads to those audits.
    b.click(&format!("{orders} a[data-effect=\"prevent\"]"));
    assert!(
        wait_until(HANG_GUARD, || b.text("#total") == "1–3 of 3"),
        "{}",
        b.source()
    );
    assert_eq!(column(&b, CONTAINER), ["orders-1"; 3]);
    assert_eq!(column(&b, 3), ["prevent"; 3]);
    // Charted from 24 hours ago.
    assert!(b.find("svg#chart").is_some(), "{}", b.source());
}
