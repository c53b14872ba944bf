//! Audit ingestion under concurrency against the real `defender-console` process: batches
//! posted at once from many connections (stored by group commit), with ids overlapping between
//! them, are each stored once and each answered its own count; a policy saved while batches are
//! in flight is answered without waiting for them to drain.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use common::console::{ADMIN, AUDITS, Console, DEFENDER};
use serde_json::{Value, json};

const POLICY: &str =
    r#"{"rules": [{"name": "no mkdir", "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#;

/// Posting threads; each id is posted by two of them (thread `t` and `t + THREADS / 2`).
const THREADS: usize = 16;
const BATCHES: usize = 6;
const EVENTS: usize = 300;

fn event(id: usize) -> Value {
    json!({
        "id": format!("e{id}"), "time": format!("2026-11-29T10:{:02}:{:02}Z", id / 60 % 60, id % 60),
        "type": "process", "effect": "alert", "container": format!("c{}", id % 7),
        "image": "img", "pid": 1, "process": "/bin/mkdir", "message": format!("event n{id}"),
        "count": 1
    })
}

/// The batch `b` of thread `t`: ids shared with the thread half the threads away.
fn batch(t: usize, b: usize) -> String {
    let first = ((t % (THREADS / 2)) * BATCHES + b) * EVENTS;
    Value::Array((first..first + EVENTS).map(event).collect()).to_string()
}

#[test]
fn concurrent_batches_store_each_id_once_and_a_policy_is_saved_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let c = Console::start(&dir.path().join("data"));
    let answered = AtomicUsize::new(0);
    let total = THREADS * BATCHES;
    let (first_tx, first_rx) = mpsc::channel();
    let (stored, revision, answered_at_put) = std::thread::scope(|s| {
        let posters: Vec<_> = (0..THREADS)
            .map(|t| {
                let (c, answered, first_tx) = (&c, &answered, first_tx.clone());
                s.spawn(move || {
                    let mut stored = 0;
                    for b in 0..BATCHES {
                        let a = c.call("POST", AUDITS, Some(DEFENDER), &[], Some(&batch(t, b)));
                        assert_eq!(a.status, 200, "{}", a.body);
                        let body = a.json();
                        assert_eq!(body["received"], EVENTS, "{body}");
                        stored += body["stored"].as_u64().unwrap();
                        answered.fetch_add(1, Ordering::SeqCst);
                        let _ = first_tx.send(());
                    }
                    stored
                })
            })
            .collect();
        // Batches are flowing (one was answered, the others are queued or being sent): save a
        // policy now.
        first_rx.recv().unwrap();
        let revision = c.put_policy(POLICY);
        let answered_at_put = answered.load(Ordering::SeqCst);
        let stored: u64 = posters.into_iter().map(|p| p.join().unwrap()).sum();
        (stored, revision, answered_at_put)
    });
    // The policy was answered before the batches had all been: it did not wait for the queue.
    assert!(
        answered_at_put < total,
        "the PUT was answered only after all {total} batches"
    );
    // The console starts at revision 1 (its default policy).
    assert_eq!(revision, 2);
    // Every id posted twice, counted new once in all the answers, stored once.
    let distinct = (THREADS / 2) * BATCHES * EVENTS;
    assert_eq!(stored, distinct as u64);
    let a = c.call("GET", &format!("{AUDITS}?limit=1"), Some(ADMIN), &[], None);
    assert_eq!(a.total_count, Some(distinct as u64), "{}", a.body);
    for id in [0, distinct / 2, distinct - 1] {
        let a = c.call("GET", &format!("{AUDITS}?q=n{id}"), Some(ADMIN), &[], None);
        assert_eq!(a.total_count, Some(1), "e{id}: {}", a.body);
    }
}
