//! Operating the console, against the real `defender-console` process: `/healthz` and `/readyz`
//! (with the database file replaced under it), `/metrics` read by a Prometheus text-format parser
//! (values that move with ingestion and long polls; `--metrics-token`), webhooks delivering every
//! stored audit exactly once to a real HTTP receiver (across restarts of the receiver and of the
//! console, as Slack summaries, past a refusing receiver, never holding ingestion up), one console
//! per SQLite database, and the request log lines.

mod common;

use common::console::{ADMIN, AUDITS, Console, DEFENDER, POLICY};
use common::receiver::{Mode, Receiver};
use common::{HANG_GUARD, World, finish_within, spawn_piped, wait_until};
use prometheus_parse::{Scrape, Value as Metric};
use serde_json::{Value, json};

const HEARTBEAT: &str = "/api/v1/defenders/heartbeat";

fn event(id: &str) -> Value {
    json!({
        "id": id, "time": "2026-12-06T10:00:00Z", "type": "process", "effect": "prevent",
        "rule": "r1", "attack": "processExplicitlyDenied", "container": "orders-1",
        "image": "orders:1.2", "pid": 42, "process": "/usr/bin/nc", "message": "nc was denied",
        "count": 1
    })
}

/// POSTs these events as one batch with the defender token: `(received, stored)`.
fn send(c: &Console, ids: &[&str]) -> (u64, u64) {
    let batch = Value::Array(ids.iter().map(|id| event(id)).collect());
    let a = c.call(
        "POST",
        AUDITS,
        Some(DEFENDER),
        &[],
        Some(&batch.to_string()),
    );
    assert_eq!(a.status, 200, "POST audits: {}", a.body);
    let j = a.json();
    (
        j["received"].as_u64().unwrap(),
        j["stored"].as_u64().unwrap(),
    )
}

/// The console's flags: the test tokens, plus `extra`.
fn flags(extra: &[&str]) -> Vec<String> {
    ["--admin-token", ADMIN, "--defender-token", DEFENDER]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

fn start(w: &World, extra: &[&str]) -> Console {
    Console::start_with(&w.path("console"), "127.0.0.1:0", &flags(extra))
}

/// `/metrics`, parsed as a Prometheus server reads it.
fn scrape(c: &Console, token: Option<&str>) -> Scrape {
    let a = c.call("GET", "/metrics", token, &[], None);
    assert_eq!(a.status, 200, "GET /metrics: {}", a.body);
    Scrape::parse(a.body.lines().map(|l| Ok(l.to_owned()))).expect("the Prometheus text format")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match x.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => v,
            ref other => panic!("{name}: not a single value: {other:?}"),
        })
}

fn metric(c: &Console, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&scrape(c, None), name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

fn ids(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn health_and_readiness_follow_the_database_file() {
    let w = World::new();
    let c = start(&w, &[]);
    let health = c.call("GET", "/healthz", None, &[], None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(c.call("GET", "/readyz", None, &[], None).status, 200);

    // The database file replaced under the running console by something that is not a
    // database: the console still serves (healthz), but is not ready; the file put back, it is.
    let db = c.data.join("console.db");
    let saved = w.path("saved.db");
    std::fs::hard_link(&db, &saved).unwrap();
    let garbage = w.path("garbage");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    std::fs::rename(&garbage, &db).unwrap();
    let not_ready = c.call("GET", "/readyz", None, &[], None);
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    let why = not_ready.json()["error"].as_str().unwrap().to_owned();
    assert!(why.starts_with("the database does not answer: "), "{why}");
    assert!(why.contains("the database file was replaced"), "{why}");
    assert_eq!(c.call("GET", "/healthz", None, &[], None).status, 200);

    std::fs::remove_file(&db).unwrap();
    let gone = c.call("GET", "/readyz", None, &[], None);
    assert_eq!(gone.status, 503, "a missing file: {}", gone.body);
    assert!(gone.body.contains("No such file"), "{}", gone.body);

    std::fs::rename(&saved, &db).unwrap();
    let back = c.call("GET", "/readyz", None, &[], None);
    assert_eq!((back.status, back.body.as_str()), (200, "ready\n"));
}

#[test]
fn a_second_console_on_the_same_sqlite_database_is_refused_until_the_first_ends() {
    let w = World::new();
    let mut first = start(&w, &[]);
    // A second console on the same data directory would also act as the only instance (every
    // webhook sent twice, retention run twice): it does not start, and says why.
    let second = finish_within(
        spawn_piped(
            std::process::Command::new(common::console::console_bin())
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&first.data)
                .args(flags(&[])),
        ),
        HANG_GUARD,
    );
    let said = common::stderr(&second);
    assert!(!second.status.success(), "{said}");
    let db = first.data.join("console.db");
    assert!(said.contains(&db.display().to_string()), "{said}");
    assert!(
        said.contains("another console has this database open"),
        "{said}"
    );
    // The first goes on serving.
    assert_eq!(first.call("GET", "/readyz", None, &[], None).status, 200);
    send(&first, &["kept-1"]);
    // The lock goes with the process however it ends: killed (SIGKILL), its database opens
    // again.
    first.restart();
    assert_eq!(first.call("GET", "/readyz", None, &[], None).status, 200);
    assert_eq!(send(&first, &["kept-1", "kept-2"]), (2, 1));
}

#[test]
fn metrics_move_with_ingestion_long_polls_and_defenders() {
    let w = World::new();
    let c = start(&w, &[]);
    let first = scrape(&c, None);
    assert_eq!(
        value(&first, "defender_console_audits_received_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&first, "defender_console_audits_stored_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&first, "defender_console_long_polls_open", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&first, "defender_console_defenders_connected", &[]),
        Some(0.0)
    );
    assert!(value(&first, "defender_console_database_size_bytes", &[]).unwrap() > 0.0);

    // Stored goes up by the new events only; received by every event of a batch answered 200.
    assert_eq!(send(&c, &["m1", "m2", "m3"]), (3, 3));
    assert_eq!(send(&c, &["m2", "m3", "m4", "m5"]), (4, 2));
    let after = scrape(&c, None);
    assert_eq!(
        value(&after, "defender_console_audits_received_total", &[]),
        Some(7.0)
    );
    assert_eq!(
        value(&after, "defender_console_audits_stored_total", &[]),
        Some(5.0)
    );

    let beat =
        json!({"id": "run-1", "container": "orders-1", "image": "orders:1.2", "version": "t"});
    let a = c.call(
        "POST",
        HEARTBEAT,
        Some(DEFENDER),
        &[],
        Some(&beat.to_string()),
    );
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(metric(&c, "defender_console_defenders_connected", &[]), 1.0);

    // A long poll is counted open while it waits, and no longer once answered.
    let etag = c.call("GET", POLICY, Some(ADMIN), &[], None).etag.unwrap();
    std::thread::scope(|s| {
        let poll = s.spawn(|| {
            c.call(
                "GET",
                &format!("{POLICY}?wait=60"),
                Some(DEFENDER),
                &[("If-None-Match", &etag)],
                None,
            )
        });
        assert!(
            wait_until(HANG_GUARD, || {
                metric(&c, "defender_console_long_polls_open", &[]) == 1.0
            }),
            "the poll was never counted open"
        );
        c.put_policy(
            r#"{"rules": [{"name": "no mkdir", "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#,
        );
        assert_eq!(poll.join().unwrap().status, 200);
    });
    assert!(wait_until(HANG_GUARD, || {
        metric(&c, "defender_console_long_polls_open", &[]) == 0.0
    }));

    // Latency by route template: a revision's number is not a label value.
    assert_eq!(
        c.call(
            "GET",
            &format!("{POLICY}/revisions/1"),
            Some(ADMIN),
            &[],
            None
        )
        .status,
        200
    );
    let s = scrape(&c, None);
    let histogram = |route: &str| {
        s.samples
            .iter()
            .find(|x| {
                x.metric == "defender_console_request_duration_seconds"
                    && x.labels.get("route") == Some(route)
                    && x.labels.get("status") == Some("200")
            })
            .map(|x| match &x.value {
                Metric::Histogram(buckets) => buckets.last().unwrap().count,
                other => panic!("not a histogram: {other:?}"),
            })
    };
    assert_eq!(histogram(AUDITS), Some(2.0));
    assert_eq!(histogram(&format!("{POLICY}/revisions/:n")), Some(1.0));
    for sample in &s.samples {
        if let Some(route) = sample.labels.get("route") {
            assert!(!route.ends_with("/1"), "a raw path as a label: {route}");
        }
    }
}

#[test]
fn metrics_require_the_metrics_token_when_one_is_given() {
    let w = World::new();
    let c = start(&w, &["--metrics-token", "scrape-me"]);
    for token in [None, Some("wrong"), Some(ADMIN)] {
        let a = c.call("GET", "/metrics", token, &[], None);
        assert_eq!(a.status, 401, "{token:?}: {}", a.body);
    }
    let s = scrape(&c, Some("scrape-me"));
    assert!(value(&s, "defender_console_audits_stored_total", &[]).is_some());
    // Health stays open: probes carry no token.
    assert_eq!(c.call("GET", "/healthz", None, &[], None).status, 200);
    assert_eq!(c.call("GET", "/readyz", None, &[], None).status, 200);
}

#[test]
fn every_stored_event_reaches_the_webhook_once_across_restarts() {
    let w = World::new();
    let mut first = Receiver::start(0, Mode::Answer(200));
    let port = first.port;
    let url = first.url().replace("://", "://hook-user:hook-secret@");
    let mut c = start(&w, &["--webhook", &url]);
    let webhook = [("webhook", "0")];

    assert_eq!(send(&c, &["a1", "a2", "a3"]), (3, 3));
    // A duplicate is not stored again, so not delivered again.
    assert_eq!(send(&c, &["a3", "a4"]), (2, 1));
    assert!(wait_until(HANG_GUARD, || first.accepted().len() == 4));
    let delivered = first.accepted();
    assert_eq!(ids(&delivered), ["a1", "a2", "a3", "a4"]);
    // The event itself, as the API shows it, with the token that delivered it.
    assert_eq!(delivered[0]["container"], "orders-1");
    assert_eq!(delivered[0]["source"], "defender");
    // The URL's user information as basic authentication ("hook-user:hook-secret").
    assert_eq!(
        first.received()[0].authorization.as_deref(),
        Some("Basic aG9vay11c2VyOmhvb2stc2VjcmV0")
    );

    // The receiver stops; events sent meanwhile wait, and arrive once it is back on its port.
    first.stop();
    let failures = metric(&c, "defender_console_webhook_failures_total", &webhook);
    assert_eq!(send(&c, &["b1", "b2", "b3"]), (3, 3));
    assert!(
        wait_until(HANG_GUARD, || {
            metric(&c, "defender_console_webhook_failures_total", &webhook) > failures
        }),
        "the webhook never tried the stopped receiver"
    );
    let mut second = Receiver::start(port, Mode::Answer(200));
    assert!(wait_until(HANG_GUARD, || second.accepted().len() == 3));
    assert_eq!(ids(&second.accepted()), ["b1", "b2", "b3"]);
    assert_eq!(
        metric(&c, "defender_console_webhook_deliveries_total", &webhook),
        7.0
    );

    // The console killed while an event waits for the receiver: after its restart the event
    // arrives once, and nothing delivered before comes again.
    second.stop();
    let failures = metric(&c, "defender_console_webhook_failures_total", &webhook);
    assert_eq!(send(&c, &["c1"]), (1, 1));
    assert!(wait_until(HANG_GUARD, || {
        metric(&c, "defender_console_webhook_failures_total", &webhook) > failures
    }));
    c.restart();
    let third = Receiver::start(port, Mode::Answer(200));
    assert_eq!(send(&c, &["c2"]), (1, 1));
    assert!(wait_until(HANG_GUARD, || third.accepted().len() == 2));
    assert_eq!(ids(&third.accepted()), ["c1", "c2"]);

    // Neither the URL's credentials nor its path are in the log.
    let log = c.log();
    assert!(log.contains("webhook 0 (http://127.0.0.1:"), "{log}");
    assert!(
        !log.contains("hook-secret") && !log.contains("/hook"),
        "{log}"
    );
}

#[test]
fn slack_format_posts_a_one_line_summary() {
    let w = World::new();
    let receiver = Receiver::start(0, Mode::Answer(200));
    let c = start(
        &w,
        &["--webhook", &receiver.url(), "--webhook-format", "slack"],
    );
    let mut e = event("s1");
    e["message"] = json!("<!channel> look\nhere");
    let a = c.call(
        "POST",
        AUDITS,
        Some(DEFENDER),
        &[],
        Some(&json!([e]).to_string()),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(wait_until(HANG_GUARD, || receiver.accepted().len() == 1));
    let body = &receiver.accepted()[0];
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(
        body["text"],
        "defender: prevent process in container orders-1 (image orders:1.2): &lt;!channel&gt; \
         look here [rule r1]"
    );
}

#[test]
fn a_refused_event_is_skipped_after_five_refusals_and_counted() {
    let w = World::new();
    let receiver = Receiver::start(0, Mode::Answer(400));
    let c = start(&w, &["--webhook", &receiver.url()]);
    let webhook = [("webhook", "0")];
    assert_eq!(send(&c, &["r1"]), (1, 1));
    assert!(wait_until(HANG_GUARD, || {
        metric(&c, "defender_console_webhook_skipped_total", &webhook) == 1.0
    }));
    let refused = receiver.received();
    assert_eq!(refused.len(), 5, "{refused:?}");
    assert!(refused.iter().all(|r| r.body.contains("\"r1\"")));
    receiver.set_mode(Mode::Answer(200));
    assert_eq!(send(&c, &["r2"]), (1, 1));
    assert!(wait_until(HANG_GUARD, || receiver.accepted().len() == 1));
    assert_eq!(ids(&receiver.accepted()), ["r2"]);
    assert_eq!(
        metric(&c, "defender_console_webhook_failures_total", &webhook),
        5.0
    );
    assert!(c.log().contains("audit r1: refused 5 times (status 400"));
}

#[test]
fn a_receiver_that_never_answers_does_not_hold_ingestion_up() {
    let w = World::new();
    let receiver = Receiver::start(0, Mode::Hold);
    let c = start(&w, &["--webhook", &receiver.url()]);
    assert_eq!(send(&c, &["h1"]), (1, 1));
    assert!(wait_until(HANG_GUARD, || !receiver.received().is_empty()));
    assert!(receiver.first_held_open());

    // While the webhook's request for h1 is held open, unanswered, batches are stored at once.
    assert_eq!(send(&c, &["h2", "h3"]), (2, 2));
    assert_eq!(send(&c, &["h4"]), (1, 1));
    assert!(
        receiver.first_held_open(),
        "the console gave up the held request before ingestion answered"
    );
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.body.contains("\"h1\""))
    );
    assert_eq!(c.audits("limit=10").len(), 4);

    // Answered at last, it gets everything, in order, once.
    receiver.set_mode(Mode::Answer(200));
    receiver.release();
    assert!(wait_until(HANG_GUARD, || receiver.accepted().len() == 4));
    assert_eq!(ids(&receiver.accepted()), ["h1", "h2", "h3", "h4"]);
}

#[test]
fn each_request_is_logged_with_its_caller_and_never_a_secret() {
    let w = World::new();
    let c = start(&w, &[]);
    let made = c.call(
        "POST",
        "/api/v1/tokens",
        Some(ADMIN),
        &[],
        Some(r#"{"name": "ci-bot", "role": "auditor"}"#),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let token = made.json()["token"].as_str().unwrap().to_owned();
    let user = json!({"username": "alice", "password": "correct horse battery", "role": "auditor"});
    let a = c.call(
        "POST",
        "/api/v1/users",
        Some(ADMIN),
        &[],
        Some(&user.to_string()),
    );
    assert_eq!(a.status, 201, "{}", a.body);

    let a = c.call(
        "GET",
        &format!("{AUDITS}?container=secret-query&limit=5"),
        Some(&token),
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let session = c.login("alice", "correct horse battery").unwrap();
    assert_eq!(c.browse("GET", "/audits", Some(&session), None).status, 200);
    assert_eq!(
        c.call("GET", AUDITS, Some("not-a-token"), &[], None).status,
        401
    );

    let line = |needle: &str| -> Option<String> {
        c.log()
            .lines()
            .find(|l| l.starts_with("defender-console: request ") && l.contains(needle))
            .map(str::to_owned)
    };
    let wanted = [
        format!("method=GET path={AUDITS} route={AUDITS} status=200 "),
        "path=/audits route=/audits status=200 ".to_owned(),
        format!("path={AUDITS} route={AUDITS} status=401 "),
        "method=POST path=/login route=/login status=303 ".to_owned(),
    ];
    assert!(
        wait_until(HANG_GUARD, || wanted.iter().all(|w| line(w).is_some())),
        "{}",
        c.log()
    );
    assert!(line(&wanted[0]).unwrap().ends_with(" caller=ci-bot"));
    assert!(line(&wanted[1]).unwrap().ends_with(" caller=alice"));
    assert!(line(&wanted[2]).unwrap().ends_with(" caller=-"));
    let ms = line(&wanted[0]).unwrap();
    let ms = ms.split(" ms=").nth(1).unwrap().split(' ').next().unwrap();
    assert!(ms.parse::<f64>().unwrap() >= 0.0, "{ms}");

    let log = c.log();
    for secret in [
        token.as_str(),
        ADMIN,
        DEFENDER,
        "not-a-token",
        session.as_str(),
        "correct horse",
        "secret-query",
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}
