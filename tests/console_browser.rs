//! The console's pages in a real browser (Debian's headless Chromium through WebDriver): log in,
//! see the audit of a prevented `mkdir` (and a later one arrive by live refresh), filter by type;
//! edit the policy, see the validation error of a bad port inline, then save a good one. The
//! custom rules library: add one with a script error and see it under the script with its
//! position, fix it and see it saved; rename one and see the policy page's references follow;
//! a deletion the runtime rules forbid is refused; audits filtered by custom rule. A hostile
//! audit is shown as text, and its filter link keeps it whole. People: an operator the admin
//! created logs in and edits the policy; an auditor sees no save button; the admin creates a
//! token on the people page and sees it once.
//!
//! Debian packages: chromium, chromium-driver.

mod common;

use common::console::{self, ADMIN, AUDITS, Console, DEFENDER, POLICY, log_in, log_in_as};
use common::webdriver::Browser;
use common::{HANG_GUARD, World, wait_until};
use serde_json::json;

const NO_MKDIR: &str =
    r#"{"rules": [{"name": "no mkdir", "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#;

/// Runs `sh -c script` under a defender connected to `c` and waits for it.
fn run(w: &World, c: &Console, script: &str) {
    let out = common::output_within(&mut console::defender(
        w,
        &c.url(),
        &w.path("state"),
        &[],
        &["sh", "-c", script],
    ));
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
}

/// The `data-type` of every audit row shown.
fn row_types(b: &Browser) -> Vec<String> {
    let types = b.poll_eval(
        "return [...document.querySelectorAll('#rows tr.audit')].map(r => r.dataset.type)",
    );
    types
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn audits_and_policy_pages_in_a_real_browser() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    c.put_policy(NO_MKDIR);
    run(&w, &c, "mkdir /tmp/first-try");
    assert!(wait_until(HANG_GUARD, || c.audits("type=process").len() == 1));

    let b = Browser::start();
    let base = c.url();
    // The pages need a login: the admin token as the password, for the first start.
    b.goto(&format!("{base}/audits"));
    assert!(b.current_url().ends_with("/login"), "{}", b.current_url());
    b.type_into("#password", "not-the-token");
    b.click("#login");
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#errors")
            .contains("Wrong user name or password")),
        "{}",
        b.source()
    );
    b.type_into("#password", ADMIN);
    b.click("#login");

    // The audit of the prevented mkdir, newest first, with the defender's own events.
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#rows")
            .contains("mkdir /tmp/first-try")),
        "{}",
        b.source()
    );
    let rows = b.text("#rows");
    assert!(
        rows.contains("explicitly denied by a runtime rule"),
        "{rows}"
    );
    assert!(
        rows.contains("no mkdir") && rows.contains("prevent"),
        "{rows}"
    );
    let types = row_types(&b);
    assert!(
        types.contains(&"process".into()) && types.contains(&"defender".into()),
        "{types:?}"
    );

    // A new violation shows up without reloading the page (live refresh).
    b.eval("document.body.dataset.marker = 'same page'; return null");
    run(&w, &c, "mkdir /tmp/second-try");
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#rows")
            .contains("mkdir /tmp/second-try")),
        "{}",
        b.text("#rows")
    );
    assert_eq!(b.eval("return document.body.dataset.marker"), "same page");

    // Filter by type.
    b.click("#filter-type option[value=\"defender\"]");
    b.click("#apply");
    assert!(
        wait_until(HANG_GUARD, || {
            let types = row_types(&b);
            !types.is_empty() && types.iter().all(|t| t == "defender")
        }),
        "{:?}",
        row_types(&b)
    );
    assert!(b.current_url().contains("type=defender"));
    assert!(!b.text("#rows").contains("mkdir /tmp/"));
    b.click("#filter-type option[value=\"process\"]");
    b.click("#apply");
    assert!(
        wait_until(HANG_GUARD, || row_types(&b) == ["process", "process"]),
        "{:?}",
        row_types(&b)
    );
    let rows = b.text("#rows");
    // Newest first.
    assert!(
        rows.find("second-try").unwrap() < rows.find("first-try").unwrap(),
        "{rows}"
    );

    // The policy: rules in order with scope and effects.
    b.goto(&format!("{base}/policy"));
    let rules = b.text("#rules");
    assert!(
        rules.contains("no mkdir") && rules.contains("prevent") && rules.contains("mkdir"),
        "{rules}"
    );
    let revision = b.text("#revision");

    // A bad port: the error, inline, and nothing saved.
    let bad = r#"{"rules": [{"name": "web", "network": {"effect": "prevent", "outboundPorts": {"allow": ["70000"]}}}]}"#;
    b.type_into("#document", bad);
    b.click("#save");
    let error = r#"rules[0] "web": network.outboundPorts.allow[0]: "70000" is not a port"#;
    assert!(
        wait_until(HANG_GUARD, || b.text("#errors").contains(error)),
        "{}",
        b.source()
    );
    assert_eq!(b.text("#revision"), revision);
    assert!(
        b.eval("return document.getElementById('document').value")
            .as_str()
            .unwrap()
            .contains("70000")
    );
    assert_eq!(
        c.call("GET", POLICY, Some(ADMIN), &[], None).etag,
        Some(format!("\"{revision}\""))
    );

    // Fixed: saved as the next revision, shown, and served to defenders.
    let good = bad.replace("70000", "8080");
    b.type_into("#document", &good);
    b.click("#save");
    let next = revision.parse::<u64>().unwrap() + 1;
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#saved")
            .contains(&format!("Saved revision {next}"))),
        "{}",
        b.source()
    );
    assert!(b.text("#rules").contains("8080"));
    let served = c.call("GET", POLICY, Some(ADMIN), &[], None);
    assert_eq!(served.etag, Some(format!("\"{next}\"")));
    assert_eq!(
        served.json()["rules"][0]["network"]["outboundPorts"]["allow"][0],
        "8080"
    );

    // The defenders page lists the defenders that ran.
    b.goto(&format!("{base}/defenders"));
    assert!(
        b.text("#defenders").contains("test-container"),
        "{}",
        b.source()
    );
}

/// A runtime rule that switches on one custom rule of the library.
const WITH_LIBRARY: &str = r#"{
    "customRules": [{"name": "ssh out", "type": "network-outgoing", "script": "net.outgoing_port = 22"}],
    "rules": [{"name": "orders", "customRules": [{"name": "ssh out", "effect": "prevent"}],
               "processes": {"effect": "prevent", "deny": ["mkdir"]}}]
}"#;

/// The revision the page shows, once it shows one.
fn revision(b: &Browser) -> u64 {
    let mut shown = String::new();
    wait_until(HANG_GUARD, || {
        shown = b.text("#revision");
        !shown.is_empty()
    });
    shown
        .parse()
        .unwrap_or_else(|_| panic!("{shown:?}: {}", b.source()))
}

#[test]
fn the_custom_rules_library_in_a_real_browser() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let first = c.put_policy(WITH_LIBRARY);
    let b = Browser::start();
    log_in(&b, &c);

    // The policy page shows the rule's custom rules with their effects, linked to the library.
    b.goto(&format!("{}/policy", c.url()));
    assert_eq!(
        b.text("#rule-0 td.references"),
        "ssh out: prevent",
        "{}",
        b.source()
    );
    b.click("#rule-0 td.references a");
    assert!(
        wait_until(HANG_GUARD, || b
            .current_url()
            .ends_with("/policy/custom-rules#custom-0")),
        "{}",
        b.current_url()
    );
    assert_eq!(revision(&b), first);
    let row = "#custom-rules tr[data-name=\"ssh out\"]";
    assert_eq!(b.text(&format!("{row} td.used-by")), "orders: prevent");

    // A new custom rule whose script stops short on its second line: the error under the
    // script, with its line and column, and nothing saved.
    b.type_into("#custom-name", "netcat listener");
    b.click("#custom-type option[value=\"processes\"]");
    b.type_into(
        "#custom-script",
        "proc.name in (\"nc\", \"ncat\")\nand proc.cmdline contains",
    );
    b.type_into("#custom-message", "a netcat listener <was> started");
    b.click("#custom-save");
    assert!(
        wait_until(HANG_GUARD, || b.text("#error-script").contains(
            "script:2:26: expected a value after \"contains\", found the end of the script"
        )),
        "{}",
        b.source()
    );
    assert!(b.text("#errors").contains("Not saved"), "{}", b.source());
    assert_eq!(revision(&b), first);
    assert_eq!(
        c.call("GET", POLICY, Some(ADMIN), &[], None).etag,
        Some(format!("\"{first}\""))
    );
    // The form holds what was typed.
    let typed = b.eval("return document.getElementById('custom-script').value");
    assert!(
        typed
            .as_str()
            .unwrap()
            .ends_with("and proc.cmdline contains"),
        "{typed}"
    );
    assert_eq!(
        b.eval("return document.getElementById('custom-name').value"),
        "netcat listener"
    );

    // Fixed: saved as the next revision, listed, and served to defenders as typed (the
    // browser's CRLF line break kept as a line feed).
    let script = "proc.name in (\"nc\", \"ncat\")\nand proc.cmdline contains \" -l\"";
    b.type_into("#custom-script", script);
    b.click("#custom-save");
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#saved")
            .contains(&format!("Saved revision {}", first + 1))),
        "{}",
        b.source()
    );
    let added = "#custom-rules tr[data-name=\"netcat listener\"]";
    assert!(
        b.text(added).contains("a netcat listener <was> started"),
        "{}",
        b.source()
    );
    assert_eq!(b.text(&format!("{added} td.used-by")), "no rule");
    let served = c.call("GET", POLICY, Some(ADMIN), &[], None).json();
    assert_eq!(served["customRules"][1]["name"], "netcat listener");
    assert_eq!(served["customRules"][1]["script"], script);

    // Renamed: the runtime rule's reference follows, and the policy page shows it.
    b.click(&format!("{row} a.edit"));
    assert!(
        wait_until(HANG_GUARD, || b.eval(
            "const n = document.getElementById('custom-name'); return n && n.value"
        ) == "ssh out"),
        "{}",
        b.source()
    );
    b.type_into("#custom-name", "ssh outbound");
    b.click("#custom-save");
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#saved")
            .contains(&format!("Saved revision {}", first + 2))),
        "{}",
        b.source()
    );
    b.goto(&format!("{}/policy", c.url()));
    assert_eq!(b.text("#rule-0 td.references"), "ssh outbound: prevent");

    // Deleting it while the rule uses it: refused, with the validation error, nothing saved.
    b.click("#library");
    b.click("#custom-rules tr[data-name=\"ssh outbound\"] button.delete");
    assert!(
        wait_until(HANG_GUARD, || b.text("#errors").contains(
            "rules[0] \"orders\": customRules[0].name: no custom rule named \"ssh outbound\""
        )),
        "{}",
        b.source()
    );
    assert_eq!(revision(&b), first + 2);
    assert!(
        b.find("#custom-rules tr[data-name=\"ssh outbound\"]")
            .is_some()
    );
    // The one no rule uses goes.
    b.click(&format!("{added} button.delete"));
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#saved")
            .contains(&format!("Saved revision {}", first + 3))),
        "{}",
        b.source()
    );
    assert!(b.find(added).is_none(), "{}", b.source());

    // An audit of a custom rule: shown, and its custom rule filters the audits page.
    let mut events: Vec<serde_json::Value> = ["nc -l 4444", "mkdir x"]
        .iter()
        .enumerate()
        .map(|(i, cmdline)| {
            json!({
                "id": format!("c{i}"), "time": format!("2026-11-29T10:00:0{i}Z"),
                "type": "process", "effect": "block", "rule": "orders", "attack": "customRule",
                "customRule": "netcat listener", "container": "orders-1", "image": "img:1",
                "pid": 7, "process": "/usr/bin/nc", "cmdline": cmdline, "parent": "/bin/sh",
                "message": format!("a netcat listener <was> started. Full command: {cmdline}"),
                "count": 1
            })
        })
        .collect();
    events[1]["customRule"] = "other".into();
    let sent = c.call(
        "POST",
        AUDITS,
        Some(DEFENDER),
        &[],
        Some(&serde_json::Value::Array(events).to_string()),
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    b.goto(&format!("{}/audits", c.url()));
    let custom_cell = "#rows tr.audit td.custom-rule a";
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#rows")
            .contains("Full command: nc -l 4444")),
        "{}",
        b.source()
    );
    assert_eq!(
        b.eval("return document.querySelectorAll('#rows tr.audit').length"),
        2
    );
    // The newest is the other one; the second row's custom rule is the netcat listener.
    b.click("#rows tr.audit:nth-child(2) td.custom-rule a");
    assert!(
        wait_until(HANG_GUARD, || b.poll_eval(
            "const f = document.getElementById('filter-customRule'); return f && f.value"
        ) == "netcat listener"),
        "{}",
        b.source()
    );
    assert!(
        wait_until(HANG_GUARD, || b.poll_eval(
            "return document.querySelectorAll('#rows tr.audit').length"
        ) == 1),
        "{}",
        b.source()
    );
    assert_eq!(b.text(custom_cell), "netcat listener");
}

/// What a workload chooses (a command line, a container name) or a stolen defender token sends:
/// markup that runs if it is not escaped, and the characters that end a query string's value.
const HOSTILE: &str =
    r#"<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> & 'q' a?b=c#d +%20"#;

/// The audits table's column of the message (from 1).
const MESSAGE: u32 = 8;

/// The text of cell `n` (from 1) of the first audit row; `null` when there is none.
fn first_row_cell(b: &Browser, n: u32) -> serde_json::Value {
    b.poll_eval(&format!(
        "const c = document.querySelector('#rows tr.audit td:nth-child({n})'); \
         return c && c.textContent"
    ))
}

/// Whether anything of [`HOSTILE`] became markup or ran.
fn hostile_ran(b: &Browser) -> bool {
    b.eval(
        "return window.pwned !== undefined \
         || document.querySelectorAll('#rows img, #rows script').length > 0",
    ) != false
}

#[test]
fn hostile_audits_are_shown_as_text_and_their_filter_links_keep_them() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let container = format!("web {HOSTILE}");
    let cmdline = format!("sh -c {HOSTILE}");
    let message = format!(
        "/bin/sh launched from /bin/sh is explicitly denied by a runtime rule. Full command: {cmdline}"
    );
    let event = json!({
        "id": "hostile-1", "time": "2026-11-29T10:00:00Z", "type": "process", "effect": "prevent",
        "rule": format!("rule {HOSTILE}"), "attack": "processExplicitlyDenied",
        "container": container, "image": "img:1", "pid": 7, "process": "/bin/sh",
        "cmdline": cmdline, "parent": "/bin/sh", "message": message, "count": 1
    });
    let body = json!([event]).to_string();
    let sent = c.call("POST", AUDITS, Some(DEFENDER), &[], Some(&body));
    assert_eq!(sent.status, 200, "{}", sent.body);

    let b = Browser::start();
    b.goto(&format!("{}/login", c.url()));
    b.type_into("#password", ADMIN);
    b.click("#login");
    assert!(
        wait_until(HANG_GUARD, || first_row_cell(&b, MESSAGE)
            == message.as_str()),
        "{}",
        b.source()
    );
    assert_eq!(first_row_cell(&b, 4), container.as_str());
    assert!(!hostile_ran(&b), "{}", b.source());
    // The live refresh writes the rows it fetches into the page: they are text too.
    b.eval("document.querySelector('#rows tr.audit').dataset.old = 'yes'; return null");
    assert!(
        wait_until(HANG_GUARD, || b.poll_eval(
            "const r = document.querySelector('#rows tr.audit'); return r && !r.dataset.old"
        ) == true),
        "no refresh: {}",
        b.source()
    );
    assert_eq!(first_row_cell(&b, MESSAGE), message.as_str());
    assert!(!hostile_ran(&b), "{}", b.source());

    // The container's link filters the page by exactly that container: its glob character
    // (`?`) written as itself.
    b.click("#rows tr.audit td:nth-child(4) a");
    let exactly = container.replace('?', "\\?");
    assert!(
        wait_until(HANG_GUARD, || b.poll_eval(
            "const f = document.getElementById('filter-container'); return f && f.value"
        ) == exactly.as_str()),
        "{}",
        b.source()
    );
    assert!(
        b.current_url().contains("container="),
        "{}",
        b.current_url()
    );
    assert!(
        wait_until(HANG_GUARD, || first_row_cell(&b, 4) == container.as_str()),
        "{}",
        b.source()
    );
    assert_eq!(
        b.eval("return document.querySelectorAll('#rows tr.audit').length"),
        1
    );
    assert!(!hostile_ran(&b), "{}", b.source());
}

/// A user the admin creates through the API.
fn add_user(c: &Console, username: &str, password: &str, role: &str) {
    let body = json!({"username": username, "password": password, "role": role}).to_string();
    let a = c.call("POST", "/api/v1/users", Some(ADMIN), &[], Some(&body));
    assert_eq!(a.status, 201, "{}", a.body);
}

#[test]
fn an_operator_edits_the_policy_and_an_auditor_only_reads_it() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    add_user(&c, "olga", "olga's long password", "operator");
    add_user(&c, "audrey", "audrey's long password", "auditor");
    let b = Browser::start();

    log_in_as(&b, &c, "olga", "olga's long password");
    assert_eq!(b.text("#who"), "olga (operator)");
    b.goto(&format!("{}/policy", c.url()));
    let before = revision(&b);
    b.type_into("#document", NO_MKDIR);
    b.click("#save");
    assert!(
        wait_until(HANG_GUARD, || b.text("#saved").contains("Saved revision")),
        "{}",
        b.source()
    );
    assert_eq!(revision(&b), before + 1);
    let activity = c
        .call("GET", "/api/v1/activity", Some(ADMIN), &[], None)
        .json();
    let policy = activity
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "policy")
        .unwrap()
        .clone();
    assert_eq!(policy["actor"], "olga");
    assert_eq!(policy["detail"]["revision"], before + 1);
    b.click("#logout");
    assert!(
        wait_until(HANG_GUARD, || b.current_url().ends_with("/login")),
        "{}",
        b.current_url()
    );

    log_in_as(&b, &c, "audrey", "audrey's long password");
    assert_eq!(b.text("#who"), "audrey (auditor)");
    b.goto(&format!("{}/policy", c.url()));
    assert_eq!(revision(&b), before + 1);
    assert!(b.find("#document").is_some(), "{}", b.source());
    assert!(b.find("#save").is_none(), "{}", b.source());
    // The people page is the admin's only, and not in her navigation.
    assert!(b.find("header a[href=\"/people\"]").is_none());
}

#[test]
fn the_admin_creates_a_token_on_the_people_page_and_sees_it_once() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let b = Browser::start();
    log_in(&b, &c);
    b.click("header a[href=\"/people\"]");
    assert!(
        wait_until(HANG_GUARD, || b.find("#add-token").is_some()),
        "{}",
        b.source()
    );
    b.type_into("#token-name", "orders");
    b.click("#token-role option[value=\"defender\"]");
    b.type_into("#token-collections", r#"{"containers": ["orders-*"]}"#);
    b.click("#add-token");
    let mut token = String::new();
    assert!(
        wait_until(HANG_GUARD, || {
            token = b.text("#new-token");
            !token.is_empty()
        }),
        "{}",
        b.source()
    );
    assert_eq!(token.len(), 64, "{token}");
    // The token works, with the role and scope given.
    let beat = |container: &str| {
        json!({"id": container, "container": container, "image": "i", "version": "0"}).to_string()
    };
    let heartbeat = |container: &str| {
        let body = beat(container);
        c.call(
            "POST",
            "/api/v1/defenders/heartbeat",
            Some(&token),
            &[],
            Some(&body),
        )
        .status
    };
    assert_eq!((heartbeat("orders-1"), heartbeat("billing")), (204, 403));
    // Shown once: the people page lists it, never again with its secret.
    b.goto(&format!("{}/people", c.url()));
    assert!(
        wait_until(HANG_GUARD, || b.text("#tokens").contains("orders")),
        "{}",
        b.source()
    );
    assert!(b.find("#new-token").is_none());
    assert!(!b.source().contains(&token));
    // Revoked from the page: refused at once.
    b.click("#tokens tr[data-name=\"orders\"] button.revoke");
    assert!(
        wait_until(HANG_GUARD, || b.find("#tokens button.revoke").is_none()),
        "{}",
        b.source()
    );
    assert_eq!(heartbeat("orders-1"), 401);
}
