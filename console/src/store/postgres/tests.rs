//! The PostgreSQL store's own tests, against a real server started once for the test process
//! (a database each), and the fixture the stores' shared tests use.

use std::sync::OnceLock;

use super::Postgres;
use crate::documents::Doc;
use crate::store::{Put, Store};

#[path = "../../../../tests/common/postgres.rs"]
#[allow(dead_code, reason = "the integration tests use the rest")]
mod server;

/// The test process's server.
pub fn server() -> &'static server::PgServer {
    static SERVER: OnceLock<server::PgServer> = OnceLock::new();
    SERVER.get_or_init(server::PgServer::start)
}

/// A store on a new, empty database; its URL, to open more stores on it (other instances).
pub fn store() -> (Postgres, String) {
    let url = server().create_database();
    (
        Postgres::open(&url, None).expect("opening the test database"),
        url,
    )
}

#[test]
fn two_instances_store_revisions_in_turn_and_hear_of_each_others() {
    let (a, url) = store();
    let b = Postgres::open(&url, None).unwrap();
    let heard = b.changes().expect("PostgreSQL announces changes");
    // The listener subscribed: it wakes once when it starts listening.
    b.run(heard.notified());
    let first = match a
        .put_policy(Doc::Runtime, "{\"rules\": []}", "t1", "alice", Some(0))
        .unwrap()
    {
        Put::Saved(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.revision, 1);
    // B hears of A's revision through the database.
    b.run(heard.notified());
    assert_eq!(b.policy(Doc::Runtime).unwrap().unwrap().revision, 1);
    // B, still at "none", is behind and told what is newest; at 1 it stores 2.
    match b
        .put_policy(Doc::Runtime, "{}", "t2", "bob", Some(0))
        .unwrap()
    {
        Put::Behind(newest) => assert_eq!(newest, first),
        other => panic!("{other:?}"),
    }
    match b
        .put_policy(Doc::Runtime, "{}", "t2", "bob", Some(1))
        .unwrap()
    {
        Put::Saved(p) => assert_eq!((p.revision, p.by.as_deref()), (2, Some("bob"))),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.revisions(Doc::Runtime).unwrap().len(), 2);
    // Each document has its own revisions.
    assert_eq!(a.policy(Doc::Waas).unwrap(), None);
}

#[test]
fn one_instance_per_period_takes_its_turn() {
    let (a, url) = store();
    let b = Postgres::open(&url, None).unwrap();
    assert!(
        a.turn(
            "retention",
            "2026-12-07T10:00:00.000000Z",
            "2026-12-07T09:05:00.000000Z"
        )
        .unwrap()
    );
    // Within the period: taken already, by whoever asks.
    assert!(
        !b.turn(
            "retention",
            "2026-12-07T10:01:00.000000Z",
            "2026-12-07T09:06:00.000000Z"
        )
        .unwrap()
    );
    assert!(
        !a.turn(
            "retention",
            "2026-12-07T10:02:00.000000Z",
            "2026-12-07T09:07:00.000000Z"
        )
        .unwrap()
    );
    // The next period: one of them again.
    assert!(
        b.turn(
            "retention",
            "2026-12-07T11:00:00.000000Z",
            "2026-12-07T10:05:00.000000Z"
        )
        .unwrap()
    );
    assert!(
        !a.turn(
            "retention",
            "2026-12-07T11:00:01.000000Z",
            "2026-12-07T10:05:01.000000Z"
        )
        .unwrap()
    );
    // Another task has its own turns.
    assert!(
        a.turn(
            "other",
            "2026-12-07T11:00:01.000000Z",
            "2026-12-07T10:05:01.000000Z"
        )
        .unwrap()
    );
}

#[test]
fn a_lease_is_held_by_one_instance_until_its_connection_ends() {
    let (a, url) = store();
    let b = Postgres::open(&url, None).unwrap();
    let held = a.lease("webhook x").unwrap().expect("free");
    assert!(held.held());
    assert!(b.lease("webhook x").unwrap().is_none(), "held by A");
    assert!(
        b.lease("webhook y").unwrap().is_some(),
        "another lease is free"
    );
    // The holder's session ends (its instance died): the lock goes with it.
    let pid = server().psql(
        "postgres",
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted LIMIT 1",
    );
    server().psql("postgres", &format!("SELECT pg_terminate_backend({pid})"));
    assert!(!held.held(), "the lease knows it is lost");
    assert!(b.lease("webhook x").unwrap().is_some(), "B takes it over");
}
