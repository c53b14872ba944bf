//! The fleet load generator (`bench/loadgen`) run for real against the real `defender-console`: a
//! small fleet whose every poller must see every PUT's revision, whose acknowledged audit events
//! must all be in the console (no more, no fewer), and whose heartbeats must each name a
//! defender the console lists; its report must hold a figure for everything it claims to measure.
//! The figures themselves are the benchmark's (docs/benchmarks.md), not asserted here.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::console::{ADMIN, AUDITS, Console, DEFENDER, POLICY, loadgen_bin};
use common::{finish_within, spawn_piped, stdout};
use serde_json::Value;

const DEFENDERS: u64 = 50;
const PUTS: u64 = 3;

#[test]
fn a_small_fleet_sees_every_revision_and_every_acknowledged_event_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Console::start(&dir.path().join("data"));
    let report_path = dir.path().join("report.json");
    let mut cmd = Command::new(loadgen_bin());
    cmd.args(["--console", &c.url()])
        .args(["--defenders", &DEFENDERS.to_string()])
        .args(["--duration", "3s", "--heartbeat", "1s"])
        .args(["--audit-rate", "2", "--events", "10"])
        .args(["--puts", &PUTS.to_string(), "--put-interval", "300ms"])
        // Generous: a loaded test machine must not turn into a missed revision.
        .args(["--put-timeout", "60s", "--ramp-timeout", "60s"])
        // Two source addresses: the connections are bound before they connect.
        .args(["--sources", "2"])
        .args(["--pid", &c.pid().unwrap().to_string()])
        .arg("--out")
        .arg(&report_path)
        .args(["--defender-token", DEFENDER])
        .env("LOADGEN_ADMIN_TOKEN", ADMIN);
    let out = finish_within(spawn_piped(&mut cmd), Duration::from_secs(300));
    succeeded(&out);
    let text = std::fs::read_to_string(&report_path).unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();

    assert_eq!(r["errors"]["total"], 0, "{text}");
    // The report is meant to be shared: the command line it records leaves the token's value out.
    assert!(!text.contains(DEFENDER) && !text.contains(ADMIN), "{text}");

    let p = &r["pollers"];
    assert_eq!(p["contacted"], DEFENDERS, "{p}");
    assert_eq!(p["held"], DEFENDERS, "{p}");
    assert_eq!(p["held_by_console"], DEFENDERS, "{p}");
    assert_eq!(p["lost"], 0, "{p}");
    assert!(p["all_held_after"].is_number(), "{p}");

    // Every PUT made the next revision, and every poller saw each one.
    let puts = r["puts"].as_array().unwrap();
    assert_eq!(puts.len() as u64, PUTS, "{text}");
    for (k, put) in puts.iter().enumerate() {
        assert_eq!(put["revision"], 2 + k as u64, "{put}");
        assert_eq!(put["seen"], DEFENDERS, "{put}");
        assert_eq!(put["missed"], 0, "{put}");
        assert_eq!(put["propagation"]["count"], DEFENDERS, "{put}");
        assert_eq!(put["from_sent"]["count"], DEFENDERS, "{put}");
        assert!(put["put_ms"].is_number(), "{put}");
    }
    assert_eq!(r["propagation"]["count"], DEFENDERS * PUTS, "{text}");
    let policy = c.call("GET", POLICY, Some(ADMIN), &[], None);
    assert_eq!(policy.etag.as_deref(), Some("\"4\""));

    // What the console stored is exactly what it acknowledged.
    let i = &r["ingestion"];
    let acked = i["events_acked"].as_u64().unwrap();
    assert!(acked > 0, "{i}");
    assert_eq!(i["events_stored"], acked, "{i}");
    assert_eq!(i["events_unsent"], 0, "{i}");
    assert_eq!(i["batch_latency"]["count"], i["batches"], "{i}");
    let listed = c.call("GET", &format!("{AUDITS}?limit=1"), Some(ADMIN), &[], None);
    assert_eq!(listed.total_count, Some(acked));

    // Each simulated defender's heartbeats made it one defender of the console's list.
    assert!(
        r["heartbeats"]["sent"].as_u64().unwrap() >= DEFENDERS,
        "{text}"
    );
    let defenders = c.call("GET", "/api/v1/defenders", Some(ADMIN), &[], None);
    assert_eq!(defenders.json().as_array().unwrap().len() as u64, DEFENDERS);

    // The console's memory was read with the polls held.
    assert!(r["rss"]["held_kib"].as_u64().unwrap() > 0, "{text}");
    assert!(r["rss"]["per_held_poll_kib"].is_number(), "{text}");
}

/// A fleet made by two load generator processes, as one larger than a process's descriptors
/// is: the one that makes the PUTs waits until the console counts both processes' polls, the
/// other only polls until it is sent SIGTERM, and `loadgen merge` finds that every poller of
/// both saw every revision. The order is the processes' own synchronisation: the PUTs wait for
/// every poll held, and the signal goes after the PUTs' process has ended.
#[test]
fn two_load_generators_make_one_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let c = Console::start(&dir.path().join("data"));
    let pid = c.pid().unwrap().to_string();
    let path = |name: &str| dir.path().join(name);
    let loadgen = |source_base: &str, part: &str| {
        let mut cmd = Command::new(loadgen_bin());
        cmd.args(["--console", &c.url(), "--pid", &pid])
            .args(["--defenders", &DEFENDERS.to_string()])
            .args(["--heartbeat", "0s", "--audit-rate", "0"])
            .args(["--sources", "1", "--source-base", source_base])
            .args(["--ramp-timeout", "60s"])
            .arg("--record")
            .arg(path(part))
            .args(["--defender-token", DEFENDER])
            .env("LOADGEN_ADMIN_TOKEN", ADMIN);
        cmd
    };
    let mut poller = loadgen("127.0.2.1", "poller.json");
    poller.args(["--puts", "0", "--duration", "1h"]);
    let poller = spawn_piped(&mut poller);
    let mut leader = loadgen("127.0.1.1", "leader.json");
    leader
        .args(["--puts", &PUTS.to_string(), "--put-interval", "300ms"])
        .args(["--put-timeout", "60s", "--duration", "1s"])
        .args(["--expect-polls", &(2 * DEFENDERS).to_string()]);
    let out = finish_within(spawn_piped(&mut leader), Duration::from_secs(300));
    succeeded(&out);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(poller.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = finish_within(poller, Duration::from_secs(120));
    succeeded(&out);

    let merged = path("merged.json");
    let mut merge = Command::new(loadgen_bin());
    merge
        .arg("merge")
        .arg("--out")
        .arg(&merged)
        .arg(path("leader.json"))
        .arg(path("poller.json"));
    let out = finish_within(spawn_piped(&mut merge), Duration::from_secs(60));
    succeeded(&out);
    let text = std::fs::read_to_string(&merged).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["errors"]["total"], 0, "{text}");
    assert_eq!(m["defenders"], 2 * DEFENDERS, "{text}");
    assert_eq!(m["held_by_console"], 2 * DEFENDERS, "{text}");
    let puts = m["puts"].as_array().unwrap();
    assert_eq!(puts.len() as u64, PUTS, "{text}");
    for (k, put) in puts.iter().enumerate() {
        assert_eq!(put["revision"], 2 + k as u64, "{put}");
        assert_eq!(put["seen"], 2 * DEFENDERS, "{put}");
        assert_eq!(put["missed"], 0, "{put}");
    }
    assert_eq!(
        m["propagation_from_sent"]["count"],
        2 * DEFENDERS * PUTS,
        "{text}"
    );
    assert!(m["rss"]["per_held_poll_kib"].is_number(), "{text}");
}

/// A load generator's run ended with status 0 (no error counted); what it said otherwise.
fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}
