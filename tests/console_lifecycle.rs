//! The policy's lifecycle on the real console: `If-Match` (a stale revision gets 412 and changes
//! nothing; of concurrent replacements expecting the same revision exactly one wins), every
//! revision kept with its author, one revision's document, restore (seen by a waiting long poll
//! and enforced by a real defender), revisions of an older console (no author; a document
//! validated again, refused), "which rule applies"; the pages refuse stale changes with 412, and
//! in a real browser: the history's diff between two revisions, restore, a rule's switch, the
//! "which rule applies" form and a stale editor save.
//!
//! Debian packages: chromium, chromium-driver (browser test); python3 (its sqlite3 module writes
//! an older console's revisions).

mod common;

use std::sync::Barrier;

use common::console::{self, ADMIN, Console, DEFENDER, POLICY};
use common::webdriver::Browser;
use common::{HANG_GUARD, World, wait_until};
use serde_json::{Value, json};

const REVISIONS: &str = "/api/v1/policies/runtime/app-embedded/revisions";
const RESOLVE: &str = "/api/v1/policies/runtime/app-embedded/resolve";

const NO_MKDIR: &str = r#"{"rules": [{"name": "no mkdir", "collections": {"containers": ["test-container"]},
    "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#;
const ALLOW_ALL: &str = r#"{"rules": [{"name": "open", "processes": {"effect": "alert"}}]}"#;

/// The policy served now: (ETag, document).
fn served(c: &Console) -> (Option<String>, String) {
    let a = c.call("GET", POLICY, Some(ADMIN), &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    (a.etag, a.body)
}

fn put_if(c: &Console, tag: &str, body: &str) -> console::Answer {
    c.call("PUT", POLICY, Some(ADMIN), &[("If-Match", tag)], Some(body))
}

/// A rule named `name` that denies `program`.
fn deny(name: &str, program: &str) -> String {
    json!({"rules": [{"name": name, "processes": {"effect": "prevent", "deny": [program]}}]})
        .to_string()
}

#[test]
fn a_stale_if_match_is_refused_and_changes_nothing() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    assert_eq!(c.put_policy(NO_MKDIR), 2);
    let before = served(&c);
    let revisions_before = c.call("GET", REVISIONS, Some(ADMIN), &[], None).body;

    // Written from revision 1 while 2 is in force: refused, naming the revision in force.
    let a = put_if(&c, "\"1\"", ALLOW_ALL);
    assert_eq!(a.status, 412, "{}", a.body);
    let error = a.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("revision 2 (by admin"), "{error}");
    assert_eq!(served(&c), before);
    assert_eq!(
        c.call("GET", REVISIONS, Some(ADMIN), &[], None).body,
        revisions_before
    );
    // A weak tag never matches (If-Match compares strongly); a malformed one is a 400.
    assert_eq!(put_if(&c, "W/\"2\"", ALLOW_ALL).status, 412);
    let a = put_if(&c, "2", ALLOW_ALL);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.json()["error"].as_str().unwrap().starts_with("If-Match"));
    assert_eq!(served(&c), before);

    // The revision in force (or one of a list naming it, or *) is accepted.
    let a = put_if(&c, "\"2\"", ALLOW_ALL);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), json!({"revision": 3, "changed": true}));
    let a = put_if(&c, "\"1\", \"3\"", NO_MKDIR);
    assert_eq!(a.json(), json!({"revision": 4, "changed": true}));
    let a = put_if(&c, "*", ALLOW_ALL);
    assert_eq!(a.json(), json!({"revision": 5, "changed": true}));

    // Four editors save different documents, all made from revision 5, at once: one wins, the
    // others are told that the winner's revision is in force.
    let documents: Vec<String> = (0..4)
        .map(|i| deny(&format!("editor {i}"), "mkdir"))
        .collect();
    let start = Barrier::new(documents.len());
    let answers: Vec<console::Answer> = std::thread::scope(|s| {
        let threads: Vec<_> = documents
            .iter()
            .map(|d| {
                let start = &start;
                let c = &c;
                s.spawn(move || {
                    start.wait();
                    put_if(c, "\"5\"", d)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        3,
        "{statuses:?}"
    );
    let winner = statuses.iter().position(|s| *s == 200).unwrap();
    assert_eq!(answers[winner].json()["revision"], 6);
    for (i, a) in answers.iter().enumerate() {
        if i != winner {
            let error = a.json()["error"].as_str().unwrap().to_owned();
            assert!(error.contains("revision 6 "), "{error}");
        }
    }
    let (etag, document) = served(&c);
    assert_eq!(etag.as_deref(), Some("\"6\""));
    let name = format!("editor {winner}");
    assert_eq!(
        serde_json::from_str::<Value>(&document).unwrap()["rules"][0]["name"],
        name
    );
}

#[test]
fn revisions_are_kept_with_their_authors_and_restored() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let (_, first) = served(&c);
    assert_eq!(c.put_policy(NO_MKDIR), 2);
    let (_, no_mkdir) = served(&c);
    assert_eq!(c.put_policy(ALLOW_ALL), 3);

    // Newest first, with time, author (the console itself for its first, compiled-in one) and
    // rule count.
    let list = c.call("GET", REVISIONS, Some(ADMIN), &[], None).json();
    let list = list.as_array().unwrap();
    let shown: Vec<(u64, &str, u64)> = list
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap(),
                r["by"].as_str().unwrap(),
                r["rules"].as_u64().unwrap(),
            )
        })
        .collect();
    let default_rules = serde_json::from_str::<Value>(&first).unwrap()["rules"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert_eq!(
        shown,
        [
            (3, "admin", 1),
            (2, "admin", 1),
            (1, "console", default_rules)
        ]
    );
    let times: Vec<&str> = list.iter().map(|r| r["time"].as_str().unwrap()).collect();
    assert!(times[0] >= times[1] && times[1] >= times[2], "{times:?}");
    // Only people read them.
    assert_eq!(
        c.call("GET", REVISIONS, Some(DEFENDER), &[], None).status,
        403
    );

    // One revision's document, as it was served while in force.
    let a = c.call("GET", &format!("{REVISIONS}/2"), Some(ADMIN), &[], None);
    assert_eq!((a.status, a.etag.as_deref()), (200, Some("\"2\"")));
    assert_eq!(a.body, no_mkdir);
    let a = c.call("GET", &format!("{REVISIONS}/9"), Some(ADMIN), &[], None);
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (404, Some("no revision 9"))
    );
    let a = c.call("GET", &format!("{REVISIONS}/two"), Some(ADMIN), &[], None);
    assert_eq!(a.status, 400, "{}", a.body);

    // A defender waiting for a change from revision 3 gets revision 2's document as revision 4.
    let restore = |n: u64, headers: &[(&str, &str)]| {
        let path = format!("{REVISIONS}/{n}/restore");
        c.call("POST", &path, Some(ADMIN), headers, None)
    };
    std::thread::scope(|s| {
        let poll = s.spawn(|| {
            let path = format!("{POLICY}?wait=60");
            c.call(
                "GET",
                &path,
                Some(DEFENDER),
                &[("If-None-Match", "\"3\"")],
                None,
            )
        });
        let waiting = "a policy poll waits up to 60 s for a change from revision 3";
        assert!(
            wait_until(HANG_GUARD, || c.log().contains(waiting)),
            "{}",
            c.log()
        );
        let a = restore(2, &[]);
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(a.json(), json!({"revision": 4, "changed": true}));
        let a = poll.join().unwrap();
        assert_eq!((a.status, a.etag.as_deref()), (200, Some("\"4\"")));
        assert_eq!(a.body, no_mkdir);
    });
    // Restoring the document in force is no new revision; a stale If-Match or a missing
    // revision changes nothing; a defender may not restore.
    let a = restore(2, &[]);
    assert_eq!(
        (a.status, a.json()),
        (200, json!({"revision": 4, "changed": false}))
    );
    assert_eq!(restore(3, &[("If-Match", "\"3\"")]).status, 412);
    assert_eq!(restore(8, &[]).status, 404);
    let a = c.call(
        "POST",
        &format!("{REVISIONS}/3/restore"),
        Some(DEFENDER),
        &[],
        None,
    );
    assert_eq!(a.status, 403);
    assert_eq!(served(&c).0.as_deref(), Some("\"4\""));

    // A real defender enforces the restored revision: mkdir is prevented under revision 4 (that
    // of revision 2), allowed once revision 3 is restored as 5.
    let mkdir = |dir: &str| {
        let made = w.path(dir);
        let script = format!("mkdir {}", made.display());
        let out = common::output_within(&mut console::defender(
            &w,
            &c.url(),
            &w.path("state"),
            &[],
            &["sh", "-c", &script],
        ));
        (out.status.code(), made.exists(), common::stderr(&out))
    };
    let (code, made, stderr) = mkdir("under-4");
    assert_eq!((code, made), (Some(126), false), "{stderr}");
    assert_eq!(restore(3, &[("If-Match", "\"4\"")]).status, 201);
    let (code, made, stderr) = mkdir("under-5");
    assert_eq!((code, made), (Some(0), true), "{stderr}");
}

/// Runs `sql` on the console's database (the console stopped), with python3's sqlite3.
fn sql(c: &Console, sql: &str) {
    let script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
                  c.executescript(sys.argv[2]); c.commit()";
    let out = common::output_within(
        std::process::Command::new(common::require("python3"))
            .args(["-c", script])
            .arg(c.data.join("console.db"))
            .arg(sql),
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}

/// Revisions saved by an older console: no author (shown as unknown), and one whose document
/// this console's validation refuses, which is not restored.
#[test]
fn revisions_of_an_older_console_are_shown_and_validated_again() {
    let w = World::new();
    let mut c = Console::start(&w.path("data"));
    assert_eq!(c.put_policy(NO_MKDIR), 2);
    c.kill();
    // A typo an older validation let through, then a valid revision in force.
    sql(
        &c,
        r#"INSERT INTO policies (document, updated) VALUES
             ('{"rules": [{"name": "old", "procesess": {}}]}', '2026-01-01T00:00:00.000000Z'),
             ('{"rules": []}', '2026-01-02T00:00:00.000000Z');"#,
    );
    c.restart();
    let list = c.call("GET", REVISIONS, Some(ADMIN), &[], None).json();
    assert_eq!(list[0]["revision"], 4);
    assert_eq!(
        (&list[0]["by"], &list[1]["by"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(list[2]["by"], "admin");

    let a = c.call(
        "POST",
        &format!("{REVISIONS}/3/restore"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    let problems = a.json()["problems"].to_string();
    assert!(problems.contains("procesess"), "{problems}");
    assert_eq!(served(&c).0.as_deref(), Some("\"4\""));

    // The history page says who is not known.
    let page = c.call("GET", "/policy/history", Some(ADMIN), &[], None);
    assert!(
        page.body
            .contains(r#"<tr id="revision-4"><td>4</td><td>2026-01-02T00:00:00.000000Z</td><td class="by">unknown</td>"#),
        "{}",
        page.body
    );
}

#[test]
fn which_rule_applies_is_the_defenders_choice() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let policy = json!({"rules": [
        {"name": "web (off)", "disabled": true, "collections": {"containers": ["web-*"]}},
        {"name": "web", "collections": {"containers": ["web-*"], "images": ["nginx*"]},
         "processes": {"effect": "prevent", "deny": ["mkdir"]}},
        {"name": "orders", "collections": {"clusters": ["prod"], "services": ["orders-*"]}},
        {"name": "batch", "collections": {"families": ["batch"]}}
    ]});
    c.put_policy(&policy.to_string());
    let (_, document) = served(&c);
    let rules = serde_json::from_str::<Value>(&document).unwrap()["rules"].clone();
    let resolve =
        |query: &str| c.call("GET", &format!("{RESOLVE}?{query}"), Some(ADMIN), &[], None);
    let cases = [
        // The disabled first match is skipped.
        ("container=web-1&image=nginx:1", Some(1)),
        ("container=web-1&image=redis", None),
        (
            "container=db&image=pg&cluster=prod&service=orders-api",
            Some(2),
        ),
        // An ECS rule does not apply where its scope is unknown.
        ("container=db&image=pg&cluster=prod", None),
        (
            "container=db&image=pg&cluster=prod&service=orders-api&family=batch",
            Some(2),
        ),
        ("container=job&image=j&family=batch&service=", Some(3)),
        ("", None),
    ];
    for (query, want) in cases {
        let a = resolve(query);
        assert_eq!(a.status, 200, "{query}: {}", a.body);
        let want = match want {
            Some(i) => json!({"rule": rules[i], "index": i}),
            None => json!({"rule": null}),
        };
        assert_eq!(a.json(), want, "{query}");
    }
    let a = resolve("container=web-1&task=t1");
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("unknown parameter \"task\""),
        "{}",
        a.body
    );
    assert_eq!(resolve("image=a&image=b").status, 400);
    assert_eq!(c.call("GET", RESOLVE, None, &[], None).status, 401);
}

/// A form POSTed to a page with the admin token (as a bearer token: no session, hence no CSRF
/// token to carry).
fn submit(c: &Console, path: &str, fields: &[(&str, &str)]) -> console::Answer {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    c.call("POST", path, Some(ADMIN), &form, Some(&body.join("&")))
}

#[test]
fn the_pages_refuse_changes_made_from_a_stale_revision() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    assert_eq!(c.put_policy(NO_MKDIR), 2);
    let before = served(&c);
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("/policy", &[("document", ALLOW_ALL), ("revision", "1")]),
        (
            "/policy/rules/0/switch",
            &[("disabled", "true"), ("revision", "1")],
        ),
        ("/policy/history/1/restore", &[("revision", "1")]),
    ];
    for (path, fields) in cases {
        let a = submit(&c, path, fields);
        assert_eq!(a.status, 412, "{path}: {}", a.body);
        assert!(
            a.body
                .contains("the policy changed since you opened it (revision 2 by admin)"),
            "{path}: {}",
            a.body
        );
        assert!(
            a.body
                .contains("href=\"/policy/history?from=1&amp;to=2#diff\""),
            "{path}: {}",
            a.body
        );
        assert_eq!(served(&c), before, "{path}");
    }
    // An invalid document made from a stale revision: its problems, and the editor still
    // carries the stale revision, so that saving it corrected is refused too.
    let a = submit(&c, "/policy", &[("document", "{}"), ("revision", "1")]);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body.contains(r#"name="revision" value="1""#),
        "{}",
        a.body
    );
    assert_eq!(served(&c), before);
    // From the revision in force: done (the answer redirects to the policy page).
    submit(
        &c,
        "/policy/rules/0/switch",
        &[("disabled", "true"), ("revision", "2")],
    );
    let (etag, document) = served(&c);
    assert_eq!(etag.as_deref(), Some("\"3\""));
    assert_eq!(
        serde_json::from_str::<Value>(&document).unwrap()["rules"][0]["disabled"],
        true
    );
    assert_eq!(
        submit(
            &c,
            "/policy/rules/7/switch",
            &[("disabled", "true"), ("revision", "3")]
        )
        .status,
        404
    );
}

/// The texts of the elements matching `css`, once there are some.
fn texts(b: &Browser, css: &str) -> Vec<String> {
    let script = format!("return [...document.querySelectorAll('{css}')].map(e => e.textContent)");
    let mut found = Vec::new();
    wait_until(HANG_GUARD, || {
        found = b
            .poll_eval(&script)
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        !found.is_empty()
    });
    found
}

/// Waits for `css`'s text to contain `text`.
fn shows(b: &Browser, css: &str, text: &str) {
    assert!(
        wait_until(HANG_GUARD, || b.text(css).contains(text)),
        "{css} does not show {text:?}: {}",
        b.source()
    );
}

#[test]
fn history_diff_restore_switch_and_stale_save_in_a_real_browser() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let two = c.put_policy(&deny("web", "mkdir"));
    let three = c.put_policy(&deny("web", "curl"));
    let b = Browser::start();
    console::log_in(&b, &c);
    let base = c.url();

    // The history: revisions with author; pick two, the diff shows the changed line.
    b.goto(&format!("{base}/policy/history"));
    assert_eq!(b.text(&format!("#revision-{three} td.by")), "admin");
    b.click(&format!("#from-{two}"));
    b.click(&format!("#to-{three}"));
    b.click("#compare-button");
    assert_eq!(texts(&b, "#diff del"), ["-          \"mkdir\""]);
    assert_eq!(texts(&b, "#diff ins"), ["+          \"curl\""]);
    shows(
        &b,
        "#diff-title",
        &format!("Revision {two} → revision {three}"),
    );

    // Restore revision 2: its document is in force as the next revision.
    b.click(&format!("#restore-{two}"));
    let four = three + 1;
    shows(&b, "#saved", &format!("Saved revision {four}"));
    let (etag, document) = served(&c);
    assert_eq!(etag, Some(format!("\"{four}\"")));
    assert_eq!(
        document,
        c.call("GET", &format!("{REVISIONS}/{two}"), Some(ADMIN), &[], None)
            .body
    );

    // The rule's switch: disabled, shown so, and "which rule applies" skips it.
    let resolve_web = || {
        let path = format!("{RESOLVE}?container=test-container&image=i");
        c.call("GET", &path, Some(ADMIN), &[], None).json()
    };
    assert_eq!(resolve_web()["index"], 0);
    b.click("#switch-0");
    shows(&b, "#saved", &format!("Saved revision {}", four + 1));
    shows(&b, "#rule-0", "(disabled)");
    assert_eq!(b.text("#switch-0"), "Enable");
    assert_eq!(resolve_web(), json!({"rule": null}));
    // The form on the policy page says so too, and names the rule once it is on again.
    b.type_into("#resolve-container", "test-container");
    b.click("#resolve-button");
    shows(&b, "#resolved", "No rule applies");
    b.click("#switch-0");
    shows(&b, "#saved", &format!("Saved revision {}", four + 2));
    b.type_into("#resolve-container", "test-container");
    b.click("#resolve-button");
    shows(&b, "#resolved", "Rule 0, web, applies.");

    // A save from a page opened before someone else's change: refused, with the link to it.
    b.goto(&format!("{base}/policy"));
    let opened = four + 2;
    shows(&b, "#revision", &opened.to_string());
    let theirs = c.put_policy(&deny("theirs", "sh"));
    b.type_into("#document", &deny("mine", "ls"));
    b.click("#save");
    shows(
        &b,
        "#stale",
        &format!("changed since you opened it (revision {theirs} by admin)"),
    );
    let (etag, document) = served(&c);
    assert_eq!(etag, Some(format!("\"{theirs}\"")));
    assert!(
        document.contains("theirs") && !document.contains("mine"),
        "{document}"
    );
    // The link shows what they changed.
    b.click("#stale-diff");
    assert_eq!(
        texts(&b, "#diff ins"),
        ["+      \"name\": \"theirs\",", "+          \"sh\""]
    );
}
