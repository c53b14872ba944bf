//! What every store does alike, checked on each: the tests of behaviour (not of one backend's
//! plans or files) run through [`each_store`] on SQLite (a file in a temporary directory) and on
//! PostgreSQL (a new database of the test server).

use super::{Postgres, Sqlite, Store};

/// Runs `test` on a new SQLite store, then on a new PostgreSQL store, saying which one failed.
pub fn each_store(test: impl Fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Sqlite::open(&dir.path().join("db")).unwrap();
    run("SQLite", &sqlite, &test);
    let (postgres, _): (Postgres, String) = super::postgres::tests::store();
    run("PostgreSQL", &postgres, &test);
}

/// [`each_store`], each store holding `events` (stored as one batch by the token `defender`).
pub fn each_store_with(events: &[crate::events::Event], test: impl Fn(&dyn Store)) {
    each_store(|s| {
        s.add_audits(events, "defender", "t").unwrap();
        test(s);
    });
}

fn run(name: &str, store: &dyn Store, test: &impl Fn(&dyn Store)) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(store)));
    if let Err(panic) = outcome {
        eprintln!("the test failed on {name}");
        std::panic::resume_unwind(panic);
    }
}

mod behaviour {
    use super::each_store;
    use crate::documents::Doc;
    use crate::store::audits::tests::event;
    use crate::store::{Beat, Heartbeat, Put};

    #[test]
    fn a_revision_is_stored_after_the_one_its_writer_saw() {
        each_store(|s| {
            assert_eq!(s.policy(Doc::Runtime).unwrap(), None);
            let first = s
                .put_policy(Doc::Runtime, r#"{"rules": [1]}"#, "t1", "alice", Some(0))
                .unwrap()
                .saved();
            assert_eq!((first.revision, first.by.as_deref()), (1, Some("alice")));
            // A writer that saw none is behind, and told what is newest.
            assert_eq!(
                s.put_policy(Doc::Runtime, "{}", "t2", "bob", Some(0))
                    .unwrap(),
                Put::Behind(first.clone())
            );
            let second = s
                .put_policy(Doc::Runtime, r#"{"rules": [1, 2]}"#, "t2", "bob", Some(1))
                .unwrap()
                .saved();
            assert_eq!(second.revision, 2);
            assert_eq!(s.policy(Doc::Runtime).unwrap(), Some(second));
            assert_eq!(s.revision(Doc::Runtime, 1).unwrap(), Some(first));
            assert_eq!(s.revision(Doc::Runtime, 3).unwrap(), None);
            assert_eq!(s.revision(Doc::Runtime, u64::MAX).unwrap(), None);
            let listed: Vec<(u64, u64)> = s
                .revisions(Doc::Runtime)
                .unwrap()
                .iter()
                .map(|r| (r.revision, r.rules))
                .collect();
            assert_eq!(listed, [(2, 2), (1, 1)]);
            // The WAAS policy is numbered on its own.
            let waas = s
                .put_policy(Doc::Waas, r#"{"rules": []}"#, "t3", "carol", None)
                .unwrap()
                .saved();
            assert_eq!(waas.revision, 1);
            assert_eq!(s.policy(Doc::Runtime).unwrap().unwrap().revision, 2);
        });
    }

    #[test]
    fn heartbeats_keep_each_defender_once_latest_first() {
        each_store(|s| {
            let beat = |id: &str, revision: &str| Heartbeat {
                id: id.into(),
                container: "web".into(),
                image: "img".into(),
                task: Some("task-1".into()),
                cluster: Some("prod".into()),
                family: None,
                service: None,
                version: "1.0".into(),
                revision: Some(revision.into()),
                protects: vec![8080],
            };
            let coalesced = |b: Heartbeat, first: &str, last: &str| Beat {
                beat: b,
                observed: Default::default(),
                first: first.into(),
                last: last.into(),
            };
            s.heartbeats(&[
                coalesced(beat("a", "1"), "t1", "t1"),
                coalesced(beat("b", "1"), "t2", "t2"),
            ])
            .unwrap();
            // A defender seen before keeps when it was first seen.
            s.heartbeats(&[coalesced(beat("a", "2"), "t3", "t4")])
                .unwrap();
            let seen = s.defenders().unwrap();
            assert_eq!(seen.len(), 2);
            assert_eq!(seen[0].beat, beat("a", "2"));
            assert_eq!(
                (seen[0].first_seen.as_str(), seen[0].last_seen.as_str()),
                ("t1", "t4")
            );
            assert_eq!(seen[1].beat.id, "b");
        });
    }

    #[test]
    fn an_event_of_the_longest_fields_a_console_takes_is_stored() {
        // As parse_batch leaves it: indexed fields cut to their bound, texts whole (the defender
        // cuts those at 32 KiB), a command line of many words and one word too long to index.
        let mut e = event("long", 1, "2026-12-07T08:00:00.000000Z");
        e.process = "p".repeat(crate::events::INDEXED_MAX_BYTES);
        e.domain = Some("d".repeat(crate::events::INDEXED_MAX_BYTES));
        e.message = format!("{} {}", "w ".repeat(16_000), "x".repeat(3000));
        e.cmdline = Some("a1 ".repeat(10_000));
        each_store(|s| {
            assert_eq!(
                s.add_audits(std::slice::from_ref(&e), "defender", "t")
                    .unwrap(),
                1
            );
        });
    }

    #[test]
    fn an_event_is_stored_once_whoever_delivers_it_and_cursors_start_at_the_newest() {
        each_store(|s| {
            let t = "2026-12-07T08:00:00.000000Z";
            let batch = [event("x", 1, t), event("y", 2, t), event("x", 3, t)];
            // Within a batch: the first of one id.
            assert_eq!(s.add_audits(&batch, "defender", "t").unwrap(), 2);
            assert_eq!(s.add_audits(&batch[..2], "other", "t").unwrap(), 0);
            assert_eq!(
                s.add_audits(&[event("z", 1, t), event("y", 9, t)], "other", "t")
                    .unwrap(),
                1
            );
            // A new webhook starts after the newest stored; its cursor moves as told.
            let start = s.delivery_cursor("hook").unwrap();
            assert!(start >= 3, "{start}");
            s.set_delivery_cursor("hook", start - 1).unwrap();
            assert_eq!(s.delivery_cursor("hook").unwrap(), start - 1);
        });
    }
}

mod deep {
    use super::each_store_with;
    use crate::events::Event;
    use crate::store::audits::tests::{all, event};
    use crate::store::query::{AuditField, AuditQuery, Pattern};
    use crate::store::rollup::DEEP;

    /// A deep offset, moved past the hours it skips by their counts, pages as the offset over
    /// every event does, on each store: at the boundary of the plan, across hours, past the end,
    /// with a filter and with a time range that starts inside an hour.
    #[test]
    fn a_deep_offset_pages_as_every_event_sorted_does() {
        let n = DEEP + 2_000;
        let events: Vec<Event> = (0..n)
            .map(|i| {
                // Ten hours, arrival out of time order within each.
                let s = (i * 7_919) % (10 * 3_600);
                let time = format!(
                    "2026-11-29T{:02}:{:02}:{:02}.{:06}Z",
                    s / 3_600,
                    s / 60 % 60,
                    s % 60,
                    i
                );
                let mut e = event(&format!("e{i}"), i, &time);
                e.container = if i % 20 == 0 { "web-0" } else { "web-1" }.into();
                e
            })
            .collect();
        let mut order: Vec<&Event> = events.iter().collect();
        order.sort_by(|a, b| b.time.cmp(&a.time));
        let since = "2026-11-29T00:30:00.000000Z";
        each_store_with(&events, |s| {
            let web = all().with(AuditField::Container, Pattern::Exact("web-1".into()));
            let ranged = AuditQuery {
                since: Some(since.into()),
                ..all()
            };
            for (q, keep) in [
                (all(), &(|_: &Event| true) as &dyn Fn(&Event) -> bool),
                (web, &|e: &Event| e.container == "web-1"),
                (ranged, &|e: &Event| e.time.as_str() >= since),
            ] {
                let selected: Vec<&str> = order
                    .iter()
                    .filter(|e| keep(e))
                    .map(|e| e.id.as_str())
                    .collect();
                for offset in [DEEP - 1, DEEP, DEEP + 13, selected.len() as u32 - 5, n] {
                    let q = AuditQuery {
                        offset,
                        limit: 10,
                        ..q.clone()
                    };
                    let got = crate::store::audits::tests::ids(s, &q);
                    let want: Vec<&str> = selected
                        .iter()
                        .skip(offset as usize)
                        .take(10)
                        .copied()
                        .collect();
                    assert_eq!(got, want, "{q:?}");
                }
            }
        });
    }
}
