//! The console's pages in a real browser (Debian's headless Chromium through WebDriver): log in,
//! see the audit of a prevented `mkdir` (and a later one arrive by live refresh), filter by type;
//! edit the policy, see the validation error of a bad port inline, then save a good one. A
//! hostile audit is shown as text, and its filter link keeps it whole.
//!
//! Debian packages: chromium, chromium-driver.

mod common;

use common::console::{self, ADMIN, AUDITS, Console, DEFENDER, POLICY};
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
    // The pages need the admin token: first the login page.
    b.goto(&format!("{base}/audits"));
    assert!(b.current_url().ends_with("/login"), "{}", b.current_url());
    b.type_into("#token", "not-the-token");
    b.click("#login");
    assert!(
        wait_until(HANG_GUARD, || b
            .text("#errors")
            .contains("not the admin token")),
        "{}",
        b.source()
    );
    b.type_into("#token", ADMIN);
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

/// What a workload chooses (a command line, a container name) or a stolen defender token sends:
/// markup that runs if it is not escaped, and the characters that end a query string's value.
const HOSTILE: &str =
    r#"<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> & 'q' a?b=c#d +%20"#;

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
    b.type_into("#token", ADMIN);
    b.click("#login");
    assert!(
        wait_until(HANG_GUARD, || first_row_cell(&b, 7) == message.as_str()),
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
    assert_eq!(first_row_cell(&b, 7), message.as_str());
    assert!(!hostile_ran(&b), "{}", b.source());

    // The container's link filters the page by exactly that container.
    b.click("#rows tr.audit td:nth-child(4) a");
    assert!(
        wait_until(HANG_GUARD, || b.poll_eval(
            "const f = document.getElementById('filter-container'); return f && f.value"
        ) == container.as_str()),
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
