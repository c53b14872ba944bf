//! Heartbeats written in batches by the real `defender-console`: one entry per defender waits in
//! memory (its last heartbeat's fields), the batch reaches the database (it survives a SIGKILL
//! once the console says it wrote it), a read of the defenders writes what waits first, and a
//! SIGTERM writes what waits before the console ends.

mod common;

use std::path::Path;

use common::console::{ADMIN, Console, DEFENDER, token_args};
use common::{HANG_GUARD, wait_until};
use serde_json::{Value, json};

const HEARTBEAT: &str = "/api/v1/defenders/heartbeat";
const DEFENDERS: &str = "/api/v1/defenders";

/// A console writing heartbeats every `every`.
fn start(data: &Path, every: &str) -> Console {
    let mut args = token_args();
    args.extend(["--heartbeat-flush".to_owned(), every.to_owned()]);
    Console::start_with(data, "127.0.0.1:0", &args)
}

fn beat(c: &Console, id: &str, revision: &str) {
    let body = json!({"id": id, "container": format!("{id}-c"), "image": "orders:1",
        "version": "t", "revision": revision});
    let a = c.call(
        "POST",
        HEARTBEAT,
        Some(DEFENDER),
        &[],
        Some(&body.to_string()),
    );
    assert_eq!(a.status, 204, "{}", a.body);
}

/// The defenders listed, as (id, revision), sorted.
fn listed(c: &Console) -> Vec<(String, String)> {
    let a = c.call("GET", DEFENDERS, Some(ADMIN), &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    let mut all: Vec<(String, String)> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d: &Value| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["revision"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

/// The console's `heartbeats …` lines (one per batch written).
fn writes(c: &Console) -> Vec<String> {
    c.log()
        .lines()
        .filter(|l| l.starts_with("defender-console: heartbeats received="))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_batch_written_by_the_timer_is_in_the_database_and_on_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut c = start(&data, "100ms");
    beat(&c, "run-1", "1");
    // The console says it wrote the batch: no read of the defenders asked it to.
    assert!(
        wait_until(HANG_GUARD, || writes(&c)
            .iter()
            .any(|l| l.contains("received=1 written=1 transactions=1"))),
        "{}",
        c.log()
    );
    // Killed without a chance to write anything more: what the timer wrote is what remains.
    c.kill();
    c.restart();
    assert_eq!(listed(&c), [("run-1".to_owned(), "1".to_owned())]);
}

#[test]
fn a_defender_waits_once_reads_write_first_and_a_sigterm_writes_what_waits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The timer never writes within the test: only a read or the stop does.
    let mut c = start(&data, "1h");
    beat(&c, "run-1", "1");
    beat(&c, "run-1", "2");
    beat(&c, "run-2", "2");
    assert_eq!(writes(&c), Vec::<String>::new(), "{}", c.log());
    let status = c.terminate();
    assert!(status.success(), "{status:?}: {}", c.log());
    // Written at the stop, after the signal: three heartbeats, two defenders, one transaction.
    let log = c.log();
    let stopping = log.find("defender-console: stopping").expect(&log);
    let written = log
        .find("defender-console: heartbeats received=3 written=2 transactions=1 ")
        .expect(&log);
    assert!(stopping < written, "{log}");

    c.restart();
    assert_eq!(
        listed(&c),
        [
            ("run-1".to_owned(), "2".to_owned()),
            ("run-2".to_owned(), "2".to_owned())
        ]
    );
    // A read right after a heartbeat shows it: the read writes what waits first.
    beat(&c, "run-3", "2");
    assert_eq!(listed(&c).len(), 3);
    assert_eq!(writes(&c).len(), 1, "{}", c.log());
}
