//! Learning (issue 13, part C): a real defender under a rule that alerts on everything reports
//! what its workload did (programs launched, names resolved, destinations reached) with its
//! heartbeats; the console proposes a rule of exactly that (`GET .../proposal`); saved first, that
//! rule lets the same workload run untouched and refuses another program, name, port and address.
//! The learning page in a real browser: the draft shown (a hostile program name as text), saved
//! as the first rule of a new revision.
//!
//! Debian packages: as tests/console_network.rs (dnsmasq-base, iproute2, util-linux, python3,
//! libc-bin, curl), and chromium, chromium-driver for the page.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::console::{self, ADMIN, Console, DEFENDER, POLICY, Place};
use common::networld::{DENIED_IP, NAMESERVER, NetWorld, WEB};
use common::webdriver::Browser;
use common::{HANG_GUARD, World, output_within, stderr, stdout, wait_until};
use serde_json::{Value, json};

const PROPOSAL: &str = "/api/v1/policies/runtime/app-embedded/proposal";

/// A rule that judges every launch, connection and DNS question and objects to none: the
/// activity goes on, unaudited, and only the activity report says what it was.
fn watch_everything() -> Value {
    json!({
        "name": "watch everything",
        "processes": {"effect": "alert"},
        "network": {"effect": "alert"},
        "dns": {"effect": "alert"}
    })
}

/// The workload the rule is learned from: it resolves a name, then fetches a page from it.
const WORKLOAD: &str = "getent hosts allowed.test > /dev/null && \
                        curl -sS -o /dev/null --max-time 10 http://allowed.test/index.html && \
                        echo workload-ok";

/// Runs `sh -c script` under a defender connected to `c`, in `place`, and waits for it.
fn run(place: &impl Place, c: &Console, state: &Path, script: &str) -> Output {
    output_within(&mut console::defender(
        place,
        &c.url(),
        state,
        &[],
        &["sh", "-c", script],
    ))
}

/// A minute ago, as the proposal's `since` takes it.
fn a_minute_ago() -> String {
    let t = SystemTime::now() - Duration::from_secs(60);
    humantime::format_rfc3339(t).to_string()
}

fn proposal(c: &Console, query: &str) -> Value {
    let a = c.call(
        "GET",
        &format!("{PROPOSAL}?{query}"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(a.status, 200, "proposal: {}", a.body);
    a.json()
}

/// The audits that say the workload did something a rule objected to.
fn objections(nw: &NetWorld) -> Vec<Value> {
    nw.audits()
        .into_iter()
        .filter(|a| a["type"] != "defender")
        .collect()
}

#[test]
fn a_rule_learned_from_a_real_run_lets_that_workload_run_and_refuses_anything_else() {
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{WEB}:80"));
    nw.serve_http(&format!("{WEB}:8080"));
    nw.serve_http(&format!("{DENIED_IP}:80"));
    let c = Console::start_in(&nw, &nw.path("data"));
    c.put_policy(&json!({"rules": [watch_everything()]}).to_string());
    let since = a_minute_ago();

    let out = run(&nw, &c, &nw.path("state"), WORKLOAD);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "workload-ok");
    assert!(objections(&nw).is_empty(), "{:#?}", nw.audits());

    // Nothing was audited: what the console learned came with the heartbeats.
    let query = format!("container=test-container&since={since}");
    let has = |rule: &Value, pointer: &str, value: &str| {
        rule.pointer(pointer)
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|v| v == value))
    };
    let mut rule = Value::Null;
    assert!(
        wait_until(HANG_GUARD, || {
            rule = proposal(&c, &query);
            has(&rule, "/dns/allow", "allowed.test") && has(&rule, "/network/outbound/allow", WEB)
        }),
        "{rule:#}"
    );
    assert_eq!(rule["name"], "learned: test-container");
    assert_eq!(
        rule["collections"],
        json!({"containers": ["test-container"], "images": ["*"]})
    );
    let processes = &rule["processes"];
    assert_eq!(processes["effect"], "prevent");
    for program in ["/usr/bin/sh", "/usr/bin/getent", "/usr/bin/curl"] {
        assert!(
            has(&rule, "/processes/allow", program),
            "{program}: {rule:#}"
        );
    }
    assert_eq!(processes["allow"].as_array().unwrap().len(), 3, "{rule:#}");
    assert_eq!(
        rule["dns"],
        json!({"effect": "prevent", "allow": ["allowed.test"], "deny": []})
    );
    // The name server is a destination like any other: without it no name would resolve.
    let network = &rule["network"];
    assert_eq!(network["effect"], "prevent");
    assert_eq!(network["outbound"]["allow"], json!([NAMESERVER, WEB]));
    assert_eq!(network["outboundPorts"]["allow"], json!(["53", "80"]));
    assert_eq!(
        network["listeningPorts"],
        json!({"allow": [], "deny": ["1-65535"]}),
        "nothing listened: every listening port refused"
    );
    // A scope that matched no container learns nothing.
    let other = proposal(&c, &format!("container=billing-*&since={since}"));
    assert_eq!(other["dns"]["deny"], json!(["*"]), "{other:#}");

    // Saved first, above the rule it was learned under.
    c.put_policy(&json!({"rules": [rule, watch_everything()]}).to_string());

    // The same workload runs, and nothing is refused or even audited.
    let out = run(&nw, &c, &nw.path("state"), WORKLOAD);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "workload-ok");
    assert!(objections(&nw).is_empty(), "{:#?}", nw.audits());

    // Anything else is refused: another name (NXDOMAIN: getent exits 2), another port of the
    // same server and another address (EPERM on connect: curl exits 7), another program (EPERM
    // on exec: the shell says 126).
    let script = format!(
        "getent hosts other.test; echo dns=$?; \
         curl -sS -o /dev/null --max-time 10 http://{WEB}:8080/index.html; echo port=$?; \
         curl -sS -o /dev/null --max-time 10 http://{DENIED_IP}/index.html; echo ip=$?; \
         mkdir made; echo mkdir=$?"
    );
    let out = run(&nw, &c, &nw.path("state"), &script);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["dns=2", "port=7", "ip=7", "mkdir=126"],
        "{}",
        stderr(&out)
    );
    assert!(!nw.path("made").exists());
    let refused: Vec<(String, String)> = objections(&nw)
        .iter()
        .map(|a| {
            let what = match a["type"].as_str().unwrap() {
                "dns" => a["domain"].as_str().unwrap().to_string(),
                "network" => format!("{}:{}", a["ip"].as_str().unwrap(), a["port"]),
                _ => a["process"].as_str().unwrap().to_string(),
            };
            assert_eq!(a["rule"], "learned: test-container", "{a}");
            assert_eq!(a["effect"], "prevent", "{a}");
            (a["type"].as_str().unwrap().to_string(), what)
        })
        .collect();
    let want = |t: &str, w: String| (t.to_string(), w);
    for expected in [
        want("dns", "other.test".into()),
        want("network", format!("{WEB}:8080")),
        want("network", format!("{DENIED_IP}:80")),
        want("process", "/usr/bin/mkdir".into()),
    ] {
        assert!(refused.contains(&expected), "{expected:?} in {refused:#?}");
    }
}

/// A program whose name is markup: the page must show it as text.
const HOSTILE: &str = r#"<img src=x onerror="window.pwned=1"> & 'q'"#;

#[test]
fn the_learning_page_shows_the_draft_and_saves_it_as_the_first_rule() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let watch = json!({"name": "watch launches", "processes": {"effect": "alert"}});
    c.put_policy(&json!({"rules": [watch]}).to_string());
    let dir = w.path("bin");
    std::fs::create_dir(&dir).unwrap();
    let program = dir.join(HOSTILE);
    std::fs::copy("/usr/bin/true", &program).unwrap();
    let program = program.display().to_string();
    let out = output_within(&mut console::defender(
        &w,
        &c.url(),
        &w.path("state"),
        &[],
        &[&program],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        wait_until(HANG_GUARD, || {
            proposal(&c, "container=test-container")["processes"]["allow"]
                .as_array()
                .is_some_and(|l| l.iter().any(|p| p == program.as_str()))
        }),
        "{:#}",
        proposal(&c, "container=test-container")
    );

    let b = Browser::start();
    console::log_in(&b, &c);
    // From the policy page, by its link.
    b.goto(&format!("{}/policy", c.url()));
    b.click("#learn");
    b.type_into("#container", "test-container");
    b.click("#show");
    assert!(
        wait_until(HANG_GUARD, || b.find("#seen-process").is_some()),
        "{}",
        b.source()
    );
    let shown = b.text("#seen-process");
    assert!(shown.contains(&program), "{shown}");
    let pwned = b.eval(
        "return window.pwned !== undefined || document.querySelectorAll('main img').length > 0",
    );
    assert_eq!(pwned, json!(false), "{}", b.source());
    let draft: Value =
        serde_json::from_value(b.eval("return document.querySelector('#rule').value"))
            .map(|text: String| serde_json::from_str(&text).unwrap())
            .unwrap();
    assert_eq!(draft["name"], "learned: test-container");
    assert!(
        draft["processes"]["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == program.as_str()),
        "{draft:#}"
    );

    b.click("#save");
    assert!(
        wait_until(HANG_GUARD, || b.find("#saved").is_some()),
        "{}",
        b.source()
    );
    assert!(
        b.text("#rule-0").contains("learned: test-container"),
        "{}",
        b.text("#rules")
    );
    assert!(
        b.text("#rule-1").contains("watch launches"),
        "{}",
        b.text("#rules")
    );
    let policy = c.call("GET", POLICY, Some(ADMIN), &[], None).json();
    assert_eq!(policy["rules"][0]["name"], draft["name"]);
    assert_eq!(
        policy["rules"][0]["processes"]["allow"],
        draft["processes"]["allow"]
    );
    assert_eq!(b.text("#revision"), "3");
}

#[test]
fn the_proposal_and_the_heartbeat_refuse_what_they_do_not_know() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    for (query, want) in [
        ("container=web&q=x", "unknown parameter \"q\""),
        ("since=yesterday", "since: "),
        ("image=[", "image: "),
    ] {
        let a = c.call(
            "GET",
            &format!("{PROPOSAL}?{query}"),
            Some(ADMIN),
            &[],
            None,
        );
        assert_eq!(a.status, 400, "{query}: {}", a.body);
        let error = a.json()["error"].as_str().unwrap().to_string();
        assert!(error.starts_with(want), "{query}: {error}");
    }
    let a = c.call("GET", PROPOSAL, Some(DEFENDER), &[], None);
    assert_eq!(a.status, 403, "{}", a.body);

    // A heartbeat whose activity is not of its kind's form is refused whole, naming the entry.
    let beat = |value: &str| {
        json!({
            "id": "d-1", "container": "web", "image": "img", "version": "0", "revision": null,
            "observed": {"entries": [
                {"kind": "dns", "value": "a.test", "count": 1},
                {"kind": "outbound", "value": value, "count": 1}
            ]}
        })
        .to_string()
    };
    let heartbeat = "/api/v1/defenders/heartbeat";
    let a = c.call(
        "POST",
        heartbeat,
        Some(DEFENDER),
        &[],
        Some(&beat("10.0.0.1")),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("heartbeat: observed.entries[1].value: "),
        "{}",
        a.body
    );
    assert_eq!(proposal(&c, "container=web")["dns"]["deny"], json!(["*"]));
    let a = c.call(
        "POST",
        heartbeat,
        Some(DEFENDER),
        &[],
        Some(&beat("10.0.0.1:443/tcp")),
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let rule = proposal(&c, "container=web");
    assert_eq!(rule["dns"]["allow"], json!(["a.test"]));
    assert_eq!(rule["network"]["outbound"]["allow"], json!(["10.0.0.1"]));
    assert_eq!(rule["network"]["outboundPorts"]["allow"], json!(["443"]));
}
