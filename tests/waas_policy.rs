//! The WAAS policy end to end, but for the firewall itself: `defender run --waas-policy` (a valid
//! document put in force, an invalid one refused naming the rule and field, the command never
//! started); the console's `/api/v1/policies/firewall/app/app-embedded` with the runtime policy's
//! lifecycle (ETag, long poll, `If-Match`, revisions, restore, authors, activity log, roles, 400
//! naming the field); a real defender under `--console` receiving revisions, auditing each,
//! keeping the last on disk and saying which ports it protects in its heartbeats; the
//! `/policy/waas` page in a real browser (save, stale save refused with the text kept, an invalid
//! document's problem shown) and its CSRF check.
//!
//! Debian packages: chromium, chromium-driver (browser test).

mod common;

use common::console::{self, ADMIN, Console, DEFENDER, POLICY};
use common::webdriver::Browser;
use common::{HANG_GUARD, World, wait_until};
use serde_json::{Value, json};

const WAAS: &str = "/api/v1/policies/firewall/app/app-embedded";
const REVISIONS: &str = "/api/v1/policies/firewall/app/app-embedded/revisions";

/// A WAAS document with one rule `name` for the tests' container protecting `port`.
fn protecting(name: &str, port: u16) -> String {
    json!({"rules": [{
        "name": name,
        "collections": {"containers": ["test-container"]},
        "apps": [{"port": port, "protections": {"sqli": "prevent", "xss": "alert"},
                  "deniedSources": ["203.0.113.0/24"]}]
    }]})
    .to_string()
}

/// A WAAS document whose second denied source is no CIDR.
const BAD_SOURCE: &str = r#"{"rules": [{"name": "orders front end", "apps": [{"port": 8080, "deniedSources": ["203.0.113.0/24", "not-a-cidr"]}]}]}"#;
const BAD_SOURCE_FIELD: &str = r#"rules[0] "orders front end": apps[0].deniedSources[1]"#;

fn served(c: &Console) -> (Option<String>, String) {
    let a = c.call("GET", WAAS, Some(ADMIN), &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    (a.etag, a.body)
}

fn put(c: &Console, token: &str, headers: &[(&str, &str)], body: &str) -> console::Answer {
    c.call("PUT", WAAS, Some(token), headers, Some(body))
}

/// A named token of `role`, made by the admin: its secret.
fn token(c: &Console, name: &str, role: &str) -> String {
    let body = json!({ "name": name, "role": role }).to_string();
    let a = c.call("POST", "/api/v1/tokens", Some(ADMIN), &[], Some(&body));
    assert_eq!(a.status, 201, "token {name}: {}", a.body);
    a.json()["token"].as_str().unwrap().to_owned()
}

#[test]
fn the_flag_puts_a_valid_document_in_force_and_refuses_an_invalid_one() {
    let w = World::new();
    let valid = w.path("waas.json");
    std::fs::write(&valid, protecting("web", 8080)).unwrap();
    let out = common::output_within(
        w.command(None, &["--log-level", "info"], &["true"])
            .env("DEFENDER_WAAS_POLICY", &valid),
    );
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let want = format!(
        "WAAS rule in force: \"web\" (the WAAS policy file {}), protecting ports [8080]",
        valid.display()
    );
    assert!(stderr.contains(&want), "{stderr}");

    // A rule for other containers: none in force here.
    std::fs::write(
        &valid,
        r#"{"rules": [{"name": "db", "collections": {"containers": ["db-*"]}, "apps": [{"port": 5432}]}]}"#,
    )
    .unwrap();
    let out = common::output_within(&mut w.command(
        None,
        &[
            "--log-level",
            "info",
            "--waas-policy",
            valid.to_str().unwrap(),
        ],
        &["true"],
    ));
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no WAAS rule in force"), "{stderr}");

    // Invalid: exit 125 as for an invalid --policy, naming the file, the rule and the field;
    // the command never ran.
    let invalid = w.path("bad.json");
    let ran = w.path("ran");
    for (document, field) in [
        (BAD_SOURCE, BAD_SOURCE_FIELD),
        (
            r#"{"rules": [{"name": "web", "apps": [{"port": 80, "protections": {"sqli": "block"}}]}]}"#,
            r#"rules[0] "web": apps[0].protections.sqli: unknown variant `block`"#,
        ),
    ] {
        std::fs::write(&invalid, document).unwrap();
        let script = format!("touch {}", ran.display());
        let out = common::output_within(&mut w.command(
            None,
            &["--waas-policy", invalid.to_str().unwrap()],
            &["sh", "-c", &script],
        ));
        let stderr = common::stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        let want = format!("{}: invalid WAAS policy: {field}", invalid.display());
        assert!(stderr.contains(&want), "want {want}:\n{stderr}");
        assert!(!ran.exists());
    }
    let out = common::output_within(&mut w.command(
        None,
        &["--waas-policy", w.path("missing.json").to_str().unwrap()],
        &["true"],
    ));
    assert_eq!(out.status.code(), Some(125));
    assert!(
        common::stderr(&out).contains("missing.json: No such file"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn the_console_keeps_the_waas_policy_with_the_runtime_policys_lifecycle() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let runtime_before = c.call("GET", POLICY, Some(ADMIN), &[], None);

    // A new console serves no firewall, as revision 1 by the console.
    let (etag, document) = served(&c);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(
        serde_json::from_str::<Value>(&document).unwrap(),
        json!({"rules": []})
    );

    // Saved by an operator, read by an auditor and a defender; neither of those may write.
    let operator = token(&c, "ops", "operator");
    let auditor = token(&c, "audit", "auditor");
    let a = put(
        &c,
        &operator,
        &[("If-Match", "\"1\"")],
        &protecting("web", 8080),
    );
    assert_eq!(
        (a.status, a.etag.as_deref()),
        (200, Some("\"2\"")),
        "{}",
        a.body
    );
    assert_eq!(a.json(), json!({"revision": 2, "changed": true}));
    for reader in [auditor.as_str(), DEFENDER] {
        let a = c.call("GET", WAAS, Some(reader), &[], None);
        assert_eq!((a.status, a.etag.as_deref()), (200, Some("\"2\"")));
        assert_eq!(a.json()["rules"][0]["apps"][0]["port"], 8080);
        assert_eq!(put(&c, reader, &[], &protecting("x", 1)).status, 403);
    }
    assert_eq!(c.call("GET", WAAS, None, &[], None).status, 401);
    // The same document again is no new revision.
    let a = put(&c, ADMIN, &[], &protecting("web", 8080));
    assert_eq!(a.json(), json!({"revision": 2, "changed": false}));

    // Invalid: 400 naming the rule and field; nothing changes.
    let a = put(&c, ADMIN, &[], BAD_SOURCE);
    assert_eq!(a.status, 400, "{}", a.body);
    let answer = a.json();
    assert_eq!(
        answer["error"],
        "invalid WAAS policy; the WAAS policy in force is unchanged"
    );
    assert_eq!(answer["problems"][0]["field"], BAD_SOURCE_FIELD);
    let text = answer["problems"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("{BAD_SOURCE_FIELD}: \"not-a-cidr\" is not a CIDR")),
        "{text}"
    );
    // A stale If-Match: 412, nothing changes.
    let a = put(
        &c,
        ADMIN,
        &[("If-Match", "\"1\"")],
        &protecting("late", 9090),
    );
    assert_eq!(a.status, 412, "{}", a.body);
    let error = a.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.starts_with("the WAAS policy changed: revision 2 (by ops"),
        "{error}"
    );
    assert_eq!(served(&c).0.as_deref(), Some("\"2\""));

    // Revisions, newest first with authors and rule counts; people only.
    let list = c
        .call("GET", REVISIONS, Some(auditor.as_str()), &[], None)
        .json();
    let shown: Vec<(u64, &str, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap();
            (n("revision"), r["by"].as_str().unwrap(), n("rules"))
        })
        .collect();
    assert_eq!(shown, [(2, "ops", 1), (1, "console", 0)]);
    assert_eq!(
        c.call("GET", REVISIONS, Some(DEFENDER), &[], None).status,
        403
    );
    let a = c.call("GET", &format!("{REVISIONS}/1"), Some(ADMIN), &[], None);
    assert_eq!((a.status, a.etag.as_deref()), (200, Some("\"1\"")));
    assert_eq!(a.body, document);

    // A defender's long poll from revision 2 gets the restore of revision 1 as revision 3.
    std::thread::scope(|s| {
        let poll = s.spawn(|| {
            let path = format!("{WAAS}?wait=60");
            c.call(
                "GET",
                &path,
                Some(DEFENDER),
                &[("If-None-Match", "\"2\"")],
                None,
            )
        });
        let waiting = "a WAAS policy poll waits up to 60 s for a change from revision 2";
        assert!(
            wait_until(HANG_GUARD, || c.log().contains(waiting)),
            "{}",
            c.log()
        );
        let restore = format!("{REVISIONS}/1/restore");
        assert_eq!(
            c.call("POST", &restore, Some(auditor.as_str()), &[], None)
                .status,
            403
        );
        let a = c.call(
            "POST",
            &restore,
            Some(ADMIN),
            &[("If-Match", "\"2\"")],
            None,
        );
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(a.json(), json!({"revision": 3, "changed": true}));
        let a = poll.join().unwrap();
        assert_eq!((a.status, a.etag.as_deref()), (200, Some("\"3\"")));
        assert_eq!(a.body, document);
    });
    let a = c.call(
        "GET",
        WAAS,
        Some(DEFENDER),
        &[("If-None-Match", "\"3\"")],
        None,
    );
    assert_eq!(a.status, 304);

    // The activity log names each revision; the runtime policy was never touched.
    let log = c.call("GET", "/api/v1/activity?limit=100", Some(ADMIN), &[], None);
    let saved: Vec<(String, Value)> = log
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "waasPolicy")
        .map(|e| (e["actor"].as_str().unwrap().to_owned(), e["detail"].clone()))
        .collect();
    assert_eq!(
        saved,
        [
            ("admin".to_owned(), json!({"revision": 3})),
            ("ops".to_owned(), json!({"revision": 2}))
        ]
    );
    let runtime_after = c.call("GET", POLICY, Some(ADMIN), &[], None);
    assert_eq!(
        (runtime_after.etag, runtime_after.body),
        (runtime_before.etag, runtime_before.body)
    );

    // Kept across a restart.
    let mut c = c;
    c.restart();
    assert_eq!(served(&c), (Some("\"3\"".to_owned()), document));
}

/// The `defender` events of `w` that contain `text`, once there is one.
fn wait_for_event(w: &World, text: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let seen = wait_until(HANG_GUARD, || {
        found = console::defender_events(w, text);
        !found.is_empty()
    });
    assert!(seen, "no defender event with {text:?}: {:?}", w.audits());
    found
}

#[test]
fn a_defender_under_the_console_applies_each_waas_revision_and_audits_it() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    assert_eq!(
        put(&c, ADMIN, &[], &protecting("web", 8080)).json()["revision"],
        2
    );
    let stop = w.path("stop");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done", stop.display());
    let state = w.path("state");
    let child = common::spawn_piped(&mut console::defender(
        &w,
        &c.url(),
        &state,
        &[],
        &["sh", "-c", &script],
    ));

    // Revision 2 is in force before the command starts, audited, and kept on disk.
    let applied = wait_for_event(&w, "WAAS policy revision 2 from the console applied");
    assert_eq!(
        applied[0]["message"],
        "WAAS policy revision 2 from the console applied: WAAS rule \"web\" is in force for \
         this container, protecting ports [8080]"
    );
    let cached = || -> Value {
        let text = std::fs::read_to_string(state.join("waas-policy.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    assert_eq!(cached()["revision"], "2");
    assert_eq!(cached()["policy"]["rules"][0]["name"], "web");
    // Its heartbeats name the ports actually behind the firewall: none, since this command binds
    // none (tests/waas.rs checks a port taken over).
    let beat = || {
        let a = c.call("GET", "/api/v1/defenders", Some(ADMIN), &[], None);
        a.json()[0].clone()
    };
    assert!(
        wait_until(HANG_GUARD, || beat().is_object()),
        "no heartbeat"
    );
    assert_eq!(beat()["protects"], Value::Null, "{}", beat());

    // A change while it runs: applied as soon as the long poll hears of it.
    let waiting = "a WAAS policy poll waits up to 30 s for a change from revision 2";
    assert!(
        wait_until(HANG_GUARD, || c.log().contains(waiting)),
        "{}",
        c.log()
    );
    let other = json!({"rules": [{"name": "db only", "collections": {"containers": ["db-*"]},
                                  "apps": [{"port": 5432}]}]});
    assert_eq!(
        put(&c, ADMIN, &[], &other.to_string()).json()["revision"],
        3
    );
    let applied = wait_for_event(&w, "WAAS policy revision 3 from the console applied");
    assert_eq!(
        applied[0]["message"],
        "WAAS policy revision 3 from the console applied: no WAAS rule matches this container: \
         no port is protected"
    );
    assert!(wait_until(HANG_GUARD, || cached()["revision"] == "3"));
    // The audits reach the console too.
    assert!(wait_until(HANG_GUARD, || {
        c.audits("type=defender&limit=100").iter().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("WAAS policy revision 3 from the console applied"))
        })
    }));
    std::fs::write(&stop, "").unwrap();
    let out = common::finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(console::defender_events(&w, "rejected").is_empty());

    // The next start, the console away: the cached revision 3 is in force.
    let mut c = c;
    c.kill();
    let out = common::output_within(&mut console::defender(
        &w,
        &c.url(),
        &state,
        &["--log-level", "info"],
        &["true"],
    ));
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("no WAAS rule in force (the cached WAAS policy revision 3)"),
        "{stderr}"
    );
}

#[test]
fn a_console_without_the_waas_endpoint_means_no_waas_from_it() {
    // A console that does not know the endpoint (an older one, played by a Python server that
    // answers the runtime policy and 404 for the rest) means no WAAS: said once, no error loop,
    // and the --waas-policy file stays in force.
    let w = World::new();
    let python = common::require("python3");
    let port = console::free_port();
    let server = format!(
        r#"
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        with open("{log}", "a") as f: f.write(self.path + "\n")
        if self.path.startswith("{POLICY}"):
            if self.headers.get("If-None-Match") == '"1"':
                import time; time.sleep(1)
                self.send_response(304); self.send_header("ETag", '"1"'); self.end_headers(); return
            body = json.dumps({{"rules": []}}).encode()
            self.send_response(200); self.send_header("ETag", '"1"')
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
    def do_POST(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#,
        log = w.path("asked").display()
    );
    let mut old_console = std::process::Command::new(python)
        .arg("-c")
        .arg(&server)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    assert!(wait_until(HANG_GUARD, || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    let file = w.path("waas.json");
    std::fs::write(&file, protecting("local", 8081)).unwrap();
    let stop = w.path("stop");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done", stop.display());
    let child = common::spawn_piped(&mut console::defender(
        &w,
        &url,
        &w.path("state"),
        &["--waas-policy", file.to_str().unwrap()],
        &["sh", "-c", &script],
    ));
    let said = wait_for_event(&w, "serves no WAAS policy");
    assert_eq!(
        said[0]["message"],
        format!(
            "Console {url} serves no WAAS policy (HTTP 404): the WAAS policy file {} stays in force",
            file.display()
        )
    );
    // The WAAS feed asked once at first contact and once from its thread, and waits minutes
    // before the next: while the runtime feed polls three more times (a poll a second), it
    // does not ask again.
    let asked = || std::fs::read_to_string(w.path("asked")).unwrap_or_default();
    let count = |prefix: &str| asked().lines().filter(|l| l.starts_with(prefix)).count();
    let runtime_polls = count(POLICY);
    assert!(wait_until(HANG_GUARD, || count(POLICY) >= runtime_polls + 3));
    assert_eq!(count(WAAS), 2, "{}", asked());
    std::fs::write(&stop, "").unwrap();
    let out = common::finish_within(child, HANG_GUARD);
    let _ = old_console.kill();
    let _ = old_console.wait();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        console::defender_events(&w, "serves no WAAS policy").len(),
        1
    );
}

#[test]
fn the_waas_page_saves_refuses_stale_and_invalid_saves_and_checks_csrf() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let b = Browser::start();
    console::log_in(&b, &c);
    let base = c.url();

    // From the navigation: no rules yet.
    b.click("a[href=\"/policy/waas\"]");
    assert!(wait_until(HANG_GUARD, || b.text("#revision") == "1"));
    assert!(b.text("#no-rules").contains("No rules"));

    // Saved: the new revision, its rule and port shown.
    b.type_into("#document", &protecting("web", 8080));
    b.click("#save");
    assert!(
        wait_until(HANG_GUARD, || b.text("#saved").contains("Saved revision 2")),
        "{}",
        b.source()
    );
    let row = b.text("#rule-0");
    assert!(row.contains("web") && row.contains("port 8080"), "{row}");
    assert!(row.contains("sqli prevent"), "{row}");
    assert_eq!(served(&c).0.as_deref(), Some("\"2\""));

    // Invalid: the problem named, the text kept, nothing saved.
    b.type_into("#document", BAD_SOURCE);
    b.click("#save");
    assert!(
        wait_until(HANG_GUARD, || b.text("#errors").contains(BAD_SOURCE_FIELD)),
        "{}",
        b.source()
    );
    let kept = b.eval("return document.getElementById('document').value");
    assert_eq!(kept, BAD_SOURCE);
    assert_eq!(served(&c).0.as_deref(), Some("\"2\""));

    // Opened at revision 2, saved after someone else's revision 3: refused, the text kept.
    b.goto(&format!("{base}/policy/waas"));
    assert!(wait_until(HANG_GUARD, || b.text("#revision") == "2"));
    assert_eq!(
        put(&c, ADMIN, &[], &protecting("theirs", 9000)).json()["revision"],
        3
    );
    let mine = protecting("mine", 7000);
    b.type_into("#document", &mine);
    b.click("#save");
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#stale")
            .contains("changed since you opened it (revision 3 by admin")),
        "{}",
        b.source()
    );
    assert_eq!(
        b.eval("return document.getElementById('document').value"),
        mine
    );
    let (etag, document) = served(&c);
    assert_eq!(etag.as_deref(), Some("\"3\""));
    assert!(document.contains("theirs"), "{document}");
    // Saving the kept text again replaces revision 3, knowingly.
    b.click("#save");
    assert!(wait_until(HANG_GUARD, || b
        .text("#saved")
        .contains("Saved revision 4")));
    assert!(served(&c).1.contains("mine"));

    // A form from another site (no session CSRF token): refused, nothing changed.
    let session = c.login("", ADMIN).unwrap();
    let form = [
        ("document", r#"{"rules": []}"#),
        ("revision", "4"),
        ("csrf", "forged"),
    ];
    let a = c.browse("POST", "/policy/waas", Some(&session), Some(&form));
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("CSRF"), "{}", a.body);
    assert_eq!(served(&c).0.as_deref(), Some("\"4\""));
}
