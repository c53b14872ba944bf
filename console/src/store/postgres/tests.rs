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
    // The holder's session ends (its instance died): the lock goes with it. (The lock of this
    // test's database and of this lease's key: the tests running beside it take the ingestion's
    // advisory lock in theirs, and B's lease of `webhook y` may not have ended yet. A 64-bit
    // advisory key is `classid` (high half) and `objid` (low half) in `pg_locks`.)
    let database = url.rsplit('/').next().unwrap();
    let pid = server().psql(
        "postgres",
        &format!(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = \
             (SELECT oid FROM pg_database WHERE datname = '{database}') \
             AND ((CAST(classid AS BIGINT) << 32) | CAST(objid AS BIGINT)) = {}",
            super::listen::key("webhook x")
        ),
    );
    // With a timeout, `pg_terminate_backend` returns once the backend has exited (its locks
    // released), not when it was signalled: B's try below would otherwise race the exit.
    assert_eq!(
        server().psql(
            "postgres",
            &format!("SELECT pg_terminate_backend({pid}, 30000)")
        ),
        "t"
    );
    assert!(!held.held(), "the lease knows it is lost");
    assert!(b.lease("webhook x").unwrap().is_some(), "B takes it over");
}

/// A page of one exact filter reads that filter's index (field, time, seq) backwards, in the
/// list's order: no Sort node, however many events the value has. The PostgreSQL counterpart of
/// the SQLite store's `filters_use_their_indexes`. On a table of a few rows any plan is cheap, so
/// sequential and bitmap scans are ruled out for the snapshot: what is checked is that an index
/// gives the page in order, and that the plan's SQL lets PostgreSQL use it.
#[test]
fn a_page_of_one_exact_filter_reads_its_index_in_order() {
    use crate::store::audits::column;
    use crate::store::audits::tests::{all, event};
    use crate::store::lists;
    use crate::store::query::{AuditField, Pattern};

    let (s, _) = store();
    s.add_audits(
        &[
            event("a", 1, "2026-11-29T10:00:00.000000Z"),
            event("b", 2, "2026-11-29T11:00:00.000000Z"),
        ],
        "defender",
        "t",
    )
    .unwrap();
    // What the store does not index, as on SQLite: checked on the events read through the time
    // index, newest first.
    let unindexed = [
        AuditField::Pid,
        AuditField::Source,
        AuditField::Cmdline,
        AuditField::Url,
    ];
    for field in AuditField::ALL {
        let exact = match field {
            AuditField::Pid | AuditField::Port => "1",
            _ => "x",
        };
        let q = all().with(field, Pattern::Exact(exact.into()));
        let plan = plan(&s, &["enable_seqscan", "enable_bitmapscan"], |r| {
            lists::select(r, &q, crate::store::bitmaps::SHIFT)
        });
        let index = if unindexed.contains(&field) {
            "audits_by_time".to_string()
        } else {
            format!("audits_by_{}", column(field))
        };
        assert!(
            plan.contains(&format!("Index Scan Backward using {index} on audits"))
                && !plan.contains("Sort"),
            "{field:?}: {plan}"
        );
    }
}

/// PostgreSQL's plan (`EXPLAIN`, one line each) of the statement `statement` gives, in a snapshot
/// of `s` with the planner settings `off` turned off.
fn plan(
    s: &Postgres,
    off: &[&str],
    statement: impl FnOnce(
        &mut dyn crate::store::sql::Reader,
    )
        -> Result<(String, Vec<crate::store::sql::Value>), crate::store::StoreError>,
) -> String {
    s.read(|r| {
        for setting in off {
            r.rows(&format!("SET LOCAL {setting} = off"), &[], &mut |_| {
                Ok(true)
            })?;
        }
        let (sql, values) = statement(r)?;
        let mut lines = Vec::new();
        r.rows(&format!("EXPLAIN {sql}"), &values, &mut |row| {
            lines.push(crate::store::sql::text(row, 0)?);
            Ok(true)
        })?;
        Ok(lines.join("\n"))
    })
    .unwrap()
}

/// The text search's walk, and a page after an offset, as PostgreSQL plans them (the events
/// vacuumed and analysed, as autovacuum leaves them; sequential and bitmap scans ruled out, which
/// a table this small favours): the walk reads an index in the list's order (its words checked on
/// each row, never through the GIN index, whose matches would be sorted by time); a page after an
/// offset skips entries of an index alone (an index-only scan) and reads its own rows by `seq`.
#[test]
fn the_text_searchs_walk_and_a_deep_page_read_an_index_in_order() {
    use crate::store::audits::tests::{all, event};
    use crate::store::lists;
    use crate::store::query::{AuditField, AuditQuery, Pattern, Search};

    let (s, url) = store();
    let events: Vec<_> = (0..lists::PROBE + 200)
        .map(|i| {
            let time = format!("2026-11-29T10:{:02}:{:02}.000000Z", i / 60 % 60, i % 60);
            let mut e = event(&format!("e{i}"), i as u32, &time);
            e.message = format!("curl {i}");
            e.container = format!("c{}", i % 3);
            e
        })
        .collect();
    s.add_audits(&events, "defender", "t").unwrap();
    let database = url.rsplit('/').next().unwrap();
    server().psql(database, "VACUUM ANALYZE audits");
    let search = Search::parse("curl").unwrap();
    // Alone, or with a filter: whichever index the planner finds cheaper, in order.
    for q in [
        all(),
        all().with(AuditField::Container, Pattern::Exact("c1".into())),
    ] {
        let walk = plan(&s, &["enable_seqscan", "enable_bitmapscan"], |r| {
            let expanded = vec![None; q.fields.len()];
            Ok(lists::words_walk_select(r, &q, &expanded, &search, 5_000))
        });
        assert!(
            walk.contains("Index Scan Backward using audits_by_") && !walk.contains("Sort"),
            "{walk}"
        );
    }
    // The deep page of every event (with a filter, the planner may as well read the time index
    // and check the filter on each row, which a table this small makes cheap).
    let deep = AuditQuery {
        offset: 1_000,
        ..all()
    };
    let page = plan(&s, &["enable_seqscan", "enable_bitmapscan"], |r| {
        lists::select(r, &deep, crate::store::bitmaps::SHIFT)
    });
    // The rows are joined to the page's 100 keys (in whichever order the planner likes).
    assert!(
        page.contains("Index Only Scan Backward using audits_by_time"),
        "{page}"
    );
}

/// Batches (duplicates among them), retention and migration 2's backfill keep each row of
/// `audit_hours` the sum of its hour's rows of `audit_counts`, as on SQLite; and the rollup's
/// reads over a range with no type or effect are index-only scans of `audit_hours` (one value's
/// hours by the key, every value's by the index by hour).
#[test]
fn the_hours_are_the_sums_of_the_counts_and_read_from_an_index_alone() {
    use crate::store::audits::tests::all;
    use crate::store::query::{AuditField, AuditQuery};
    use crate::store::rollup::tests::{hours_and_their_counts, spread};
    use crate::store::rollup::{self, Ask};

    let (s, url) = store();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let events = spread();
    let agree = |s: &Postgres| {
        let (hours, counts) = s.read(|r| Ok(hours_and_their_counts(r))).unwrap();
        assert_eq!(hours, counts);
        hours.len()
    };
    for batch in [&events[..25], &events[20..45], &events[..]] {
        s.add_audits(batch, "defender", "t").unwrap();
        assert!(agree(&s) > 0);
    }
    s.expire("2026-11-29T09:30:00.000000Z", 7).unwrap();
    let before = agree(&s);
    // A database of migration 1 (the same events and counts, no `audit_hours`, no words'
    // rows): migration 2 builds it from the counts (and migration 3 the words' rows again).
    drop(s);
    server().psql(
        &database,
        "DROP TABLE audit_hours, audit_word_runs, audit_chunks, audit_bits, audit_sealing; \
         DELETE FROM audit_counts WHERE field = 'word'; \
         DELETE FROM schema_migrations WHERE version >= 2",
    );
    let s = Postgres::open(&url, None).unwrap();
    assert_eq!(agree(&s), before);
    server().psql(&database, "VACUUM ANALYZE audit_hours");
    let week = AuditQuery {
        since: Some("2026-11-22T10:30:00.000000Z".into()),
        ..all()
    };
    // (the question, the values of a chunk of the top values' walk, the index read). Every
    // value since an hour may be read from either index on a table this small; at 1,000,000
    // events PostgreSQL reads the index by hour (the 24 hours of containers: 2,937 rows).
    let chunk = ["web-1".to_owned(), "web-2".to_owned()];
    for (ask, among, index) in [
        (Ask::Count, &[][..], "audit_hours_pkey"),
        (
            Ask::Stats(AuditField::Container),
            &chunk[..],
            "audit_hours_pkey",
        ),
        (Ask::Stats(AuditField::Container), &[][..], "audit_hours_"),
    ] {
        let route = rollup::plan(&week, ask).unwrap();
        let plan = plan(&s, &["enable_seqscan", "enable_bitmapscan"], |r| {
            Ok(rollup::rows_select(r.dialect(), &week, &route, ask, among))
        });
        assert!(
            plan.contains(&format!("Index Only Scan using {index}")),
            "{ask:?}: {plan}"
        );
    }
    s.expire("2026-11-30T00:00:00.000000Z", 7).unwrap();
    assert_eq!(agree(&s), 0);
}

/// The count of a search of one word is read from its word's rows of the rollup (the hours) and
/// the events of the partial hours, and equals the count of the events whose words match (`@@`):
/// for a common word, a quoted word, an absent one, with type and effect, over ranges on and off
/// the hour; a prefix that names two words, or that a word with a digit also begins (`wget2`),
/// is counted from the events. After retention the runs of the hours gone go with them, and
/// migration 3's backfill makes from the events what ingestion made.
#[test]
fn a_search_of_one_word_is_counted_by_its_words_rows_as_by_its_events() {
    use crate::store::audits::tests::{all, event};
    use crate::store::query::{AuditField, AuditQuery, Pattern, Search};
    use crate::store::{audits, rollup};

    let (s, url) = store();
    let database = url.rsplit('/').next().unwrap();
    // Five hours from 08:00, an event every 5 minutes; `wget2` in the first hour only.
    let events: Vec<_> = (0..60u32)
        .map(|n| {
            let time = format!(
                "2026-11-29T{:02}:{:02}:{:02}.{n:06}Z",
                8 + n / 12,
                n % 12 * 5,
                n % 7
            );
            let mut e = event(&format!("e{n}"), n, &time);
            e.message = [
                "cat /etc/shadow by curl",
                "curls fetched payload",
                "wget payload",
            ][n as usize % 3]
                .into();
            if n < 12 {
                e.cmdline = Some("wget2 -q".into());
            }
            e.count = u64::from(n % 4) + 1;
            e
        })
        .collect();
    // In three batches, some events delivered twice: each counted once.
    s.add_audits(&events[..25], "defender", "t").unwrap();
    s.add_audits(&events[20..50], "defender", "t").unwrap();
    s.add_audits(&events[45..], "defender", "t").unwrap();
    let t = |hm: &str| Some(format!("2026-11-29T{hm}Z"));
    let ranges = [
        (None, None),
        (t("09:25:00.000000"), None),
        (t("08:40:13.000000"), t("11:05:00.000000")),
        (None, t("10:20:00.000000")),
        (t("10:00:00.000000"), t("12:00:00.000000")),
        (t("09:10:00.000000"), t("09:50:00.000000")),
    ];
    let (kind, effect) = (events[1].kind.as_str(), events[2].effect.as_str());
    let filters = [
        vec![],
        vec![(AuditField::Type, Pattern::Exact(kind.into()))],
        vec![(AuditField::Effect, Pattern::Exact(effect.into()))],
        vec![
            (AuditField::Type, Pattern::parse("[a-p]*").unwrap()),
            (AuditField::Effect, Pattern::Exact(effect.into())),
        ],
    ];
    // Every search over every filter and range: the plan expected (the word whose rows are
    // read, or none) and the count of the events.
    let check = |searches: &[(&str, Option<&str>)]| {
        let mut counted = 0;
        for (text, word) in searches {
            for fields in &filters {
                for (since, until) in &ranges {
                    let q = AuditQuery {
                        search: Some(Search::parse(text).unwrap()),
                        fields: fields.clone(),
                        since: since.clone(),
                        until: until.clone(),
                        ..all()
                    };
                    let route = s.read(|r| rollup::plan_words(r, &q)).unwrap();
                    assert_eq!(
                        route.as_ref().map(|r| (r.word, r.value.clone())),
                        word.map(|w| (true, Some(Pattern::Exact(w.into())))),
                        "{q:?}"
                    );
                    let events = s.read(|r| audits::count(r, &q)).unwrap();
                    assert_eq!(s.count_audits(&q).unwrap(), events, "{q:?}");
                    counted += events;
                }
            }
        }
        assert!(counted > 0);
    };
    check(&[
        ("shadow", Some("shadow")),
        ("SHAD", Some("shadow")),
        ("payload", Some("payload")),
        ("\"curl\"", Some("curl")),
        ("\"wget\"", Some("wget")),
        ("zzz", Some("zzz")),
        // `curl` and `curls`; `wget` and `wget2` (its run `wget`).
        ("curl", None),
        ("cur", None),
        ("wget", None),
        ("/etc/shadow", None),
    ]);

    // Migration 3's backfill makes the same rows and runs from the events.
    let words = "SELECT value, hour, type, effect, events, n FROM audit_counts \
                 WHERE field = 'word' ORDER BY 1, 2, 3, 4";
    let runs = "SELECT run, hour FROM audit_word_runs ORDER BY 1";
    let kept = [
        server().psql(database, words),
        server().psql(database, runs),
    ];
    assert!(
        kept[0].contains("payload") && kept[1].contains("wget"),
        "{kept:?}"
    );
    server().psql(
        database,
        &format!(
            "BEGIN; DELETE FROM audit_counts WHERE field = 'word'; DELETE FROM audit_word_runs;\n\
             {}\nCOMMIT;",
            include_str!("words_backfill.sql")
        ),
    );
    let rebuilt = [
        server().psql(database, words),
        server().psql(database, runs),
    ];
    assert_eq!(kept, rebuilt);

    // Retention of the first hour: its rows, and the run `wget` last seen in it, go with its
    // events; `wget` then names one word.
    let expired = s.expire("2026-11-29T09:30:00.000000Z", 7).unwrap();
    assert_eq!(expired.audits, 12);
    assert!(!server().psql(database, runs).contains("wget"));
    check(&[
        ("wget", Some("wget")),
        ("shadow", Some("shadow")),
        ("curl", None),
    ]);
}

/// A word with a filter on a rolled-up field is counted from the side the rollup sizes smaller:
/// a rare container's events are read first and each checked for the word (the conditions under
/// `OFFSET 0`, the word tested outside), a container with more events than the word by the plain
/// count of the word named whole (a prefix that names one stored word loses its `:*`); every
/// count equal to the plain count of the events, for exact values, a glob, an absent container,
/// with type and time; two rolled-up fields, or a prefix naming two words, are left to the plain
/// count.
#[test]
fn a_word_and_a_rolled_up_filter_are_counted_from_the_smaller_side() {
    use crate::store::audits::tests::{all, event};
    use crate::store::query::{AuditField, AuditQuery, Pattern, Search};
    use crate::store::sql::{Recorded, Value};
    use crate::store::{audits, words};

    let (s, _) = store();
    // 1,200 events over four hours: `curl` in half, `shadow` in the other half and `curls` in
    // one in six; container `rare` for 6 of them, `busy` for the rest.
    let events: Vec<_> = (0..1_200u32)
        .map(|n| {
            let time = format!("2026-11-29T{:02}:{:02}:00.000000Z", 8 + n / 300, n % 60);
            let mut e = event(&format!("e{n}"), n, &time);
            e.message = match n % 6 {
                0 => "curls fetched",
                1 | 3 | 5 => "shadow read",
                _ => "curl fetched",
            }
            .into();
            e.cmdline = None;
            e.container = if n % 200 == 7 { "rare" } else { "busy" }.into();
            e
        })
        .collect();
    s.add_audits(&events, "defender", "t").unwrap();
    let container = |v: &str| (AuditField::Container, Pattern::parse(v).unwrap());
    let kind = (
        AuditField::Type,
        Pattern::Exact(events[7].kind.as_str().into()),
    );
    let image = (AuditField::Image, Pattern::parse("*").unwrap());
    // (search, filters, since): the statement expected to count (`checked`: the conditions read
    // first; `whole`: the plain count of the word named whole; `None`: not this plan).
    let cases = [
        ("\"curl\"", vec![container("rare")], None, Some("checked")),
        ("\"curl\"", vec![container("busy")], None, Some("whole")),
        ("sha", vec![container("rare"), kind], None, Some("checked")),
        ("shadow", vec![container("busy")], None, Some("whole")),
        ("\"curl\"", vec![container("ra*")], None, Some("checked")),
        ("\"curl\"", vec![container("absent")], None, Some("checked")),
        (
            "shadow",
            vec![container("rare")],
            Some("2026-11-29T09:30:00.000000Z"),
            Some("checked"),
        ),
        (
            "shadow",
            vec![container("b*")],
            Some("2026-11-29T09:30:00.000000Z"),
            Some("whole"),
        ),
        ("\"curl\"", vec![container("rare"), image], None, None),
        ("curl", vec![container("rare")], None, None),
    ];
    let mut counted = 0;
    for (text, fields, since, expected) in cases {
        let q = AuditQuery {
            search: Some(Search::parse(text).unwrap()),
            fields,
            since: since.map(String::from),
            ..all()
        };
        let plain = s.read(|r| audits::count(r, &q)).unwrap();
        let (n, statements) = s
            .read(|r| {
                let mut recorded = Recorded {
                    inner: r,
                    statements: Vec::new(),
                };
                let n = words::count_on_postgres(&mut recorded, &q)?;
                Ok((n, recorded.statements))
            })
            .unwrap();
        // The last statement counted: the conditions' rows under `OFFSET 0`, or the word's
        // `tsquery` named whole (no `:*`).
        let (last, values) = statements.last().cloned().unwrap_or_default();
        let seen = n.map(|_| match last.contains("OFFSET 0") {
            true => "checked",
            false => "whole",
        });
        assert_eq!(seen, expected, "{q:?}: {last}");
        let whole =
            |v: &Value| matches!(v, Value::Text(t) if t.starts_with('\'') && !t.contains(":*"));
        assert!(n.is_none() || values.iter().any(whole), "{q:?}: {values:?}");
        assert_eq!(n.unwrap_or(plain), plain, "{q:?}");
        assert_eq!(s.count_audits(&q).unwrap(), plain, "{q:?}");
        counted += plain;
    }
    assert!(counted > 0);
}

/// Every connection of the console runs without JIT compilation and with bitmaps of 64 MB
/// ([`super::SESSION`]); settings given in the URL's `options` win over them.
#[test]
fn connections_run_without_jit_and_with_room_for_exact_bitmaps() {
    use crate::store::sql::text;
    let settings = |s: &Postgres| {
        s.read(|r| {
            let mut found = Vec::new();
            r.rows(
                "SELECT current_setting('jit'), current_setting('work_mem')",
                &[],
                &mut |row| {
                    found.push((text(row, 0)?, text(row, 1)?));
                    Ok(true)
                },
            )?;
            Ok(found)
        })
        .unwrap()
    };
    let (s, url) = store();
    assert_eq!(settings(&s), [("off".to_owned(), "64MB".to_owned())]);
    let given = Postgres::open(&format!("{url}?options=-c%20work_mem%3D8MB"), None).unwrap();
    assert_eq!(settings(&given), [("off".to_owned(), "8MB".to_owned())]);
}
