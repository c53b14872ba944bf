//! Several console instances on one PostgreSQL database (started by the test) act as one console:
//! a policy saved through one wakes a long poll held on another, by the database's notification;
//! the same audit batch sent to two is stored once; a token made on one works on the other and is
//! revoked everywhere; an instance older than the database's schema stores no audits; and behind a
//! real load balancer (HAProxy), a defender whose console instance is killed mid-run moves to the
//! other with no audit lost or stored twice.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::console::{self, ADMIN, AUDITS, Console, DEFENDER, POLICY, token_args};
use common::postgres::PgServer;
use common::receiver::{Mode, Receiver};
use common::{HANG_GUARD, World, finish_within, require, spawn_piped, wait_until};
use serde_json::Value;

/// A console instance on database `url`, its own data directory `data`.
fn instance(data: &Path, url: &str) -> Console {
    let mut args = token_args();
    args.extend(["--database".to_owned(), url.to_owned()]);
    Console::start_with(data, "127.0.0.1:0", &args)
}

/// `n` instances on one new database of `pg`.
fn fleet(pg: &PgServer, dir: &Path, n: usize) -> Vec<Console> {
    std::fs::create_dir_all(dir).unwrap();
    let url = pg.create_database();
    (0..n)
        .map(|i| instance(&dir.join(format!("console{i}")), &url))
        .collect()
}

#[test]
fn a_policy_saved_through_one_instance_wakes_a_poll_held_on_another() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let [a, b]: [Console; 2] = fleet(&pg, dir.path(), 2).try_into().ok().unwrap();
    // Both serve revision 1, the compiled-in default, stored once.
    let revision = |c: &Console| c.call("GET", POLICY, Some(DEFENDER), &[], None).etag;
    assert_eq!(revision(&a).as_deref(), Some("\"1\""));
    assert_eq!(revision(&b).as_deref(), Some("\"1\""));

    // A long poll held on B, from revision 1.
    let url = format!("{}{POLICY}?wait=60", b.url());
    let poll = std::thread::spawn(move || {
        let answer = ureq::get(&url)
            .header("Authorization", &format!("Bearer {DEFENDER}"))
            .header("If-None-Match", "\"1\"")
            .call()
            .unwrap();
        let etag = answer
            .headers()
            .get("etag")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        (answer.status().as_u16(), etag)
    });
    assert!(
        wait_until(HANG_GUARD, || b.log().contains("poll waits up to")),
        "{}",
        b.log()
    );
    let put = a.put_policy(r#"{"rules": [{"name": "through a"}]}"#);
    assert_eq!(put, 2);
    let (status, etag) = poll.join().unwrap();
    assert_eq!((status, etag.as_str()), (200, "\"2\""));
    // It was the database's notification that woke B, not its periodic check.
    assert!(
        b.log().contains(
            "policy revision 2, saved through another console instance, is in force (notified)"
        ),
        "{}",
        b.log()
    );
    // A change made through B is checked against the revision in force everywhere: a stale
    // If-Match is refused on both.
    let stale = b.call(
        "PUT",
        POLICY,
        Some(ADMIN),
        &[("If-Match", "\"1\"")],
        Some(r#"{"rules": []}"#),
    );
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert_eq!(b.put_policy(r#"{"rules": []}"#), 3);
    assert!(wait_until(HANG_GUARD, || revision(&a).as_deref() == Some("\"3\"")));
}

#[test]
fn the_database_is_reached_over_tls_checked_against_the_authority_given() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = console::tls_files(dir.path());
    let pg = PgServer::start_tls(&cert, &key);
    let url = format!("{}?sslmode=require", pg.create_database());
    let mut args = token_args();
    args.extend([
        "--database".to_owned(),
        url.clone(),
        "--database-ca".to_owned(),
    ]);
    args.push(ca.to_str().unwrap().to_owned());
    let c = Console::start_with(&dir.path().join("data"), "127.0.0.1:0", &args);
    assert_eq!(c.call("GET", "/readyz", None, &[], None).status, 200);
    // The server saw the console's connections encrypted.
    let encrypted = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE ssl AND datname LIKE 'test_%'",
    );
    assert_ne!(encrypted, "0");
    // Trusting only the public authorities, a console refuses the test's certificate and does
    // not start.
    let refused = finish_within(
        spawn_piped(
            Command::new(console::console_bin())
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path().join("other"))
                .args(["--admin-token", ADMIN, "--defender-token", DEFENDER])
                .args(["--database", &url]),
        ),
        HANG_GUARD,
    );
    let said = common::stderr(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("--database postgres://127.0.0.1:"), "{said}");
    assert!(said.to_lowercase().contains("certificate"), "{said}");
    assert!(
        !said.contains("postgres@"),
        "the URL's user information is not repeated: {said}"
    );
}

fn batch(ids: &[String]) -> String {
    let events: Vec<Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "id": id, "time": "2026-12-07T08:00:00Z", "type": "process",
                "effect": "alert", "container": "web", "image": "img:1", "pid": 7,
                "process": "/bin/true", "message": "a launch", "count": 1
            })
        })
        .collect();
    serde_json::to_string(&events).unwrap()
}

#[test]
fn an_audit_sent_to_two_instances_is_stored_once_and_tokens_are_shared() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let [a, b]: [Console; 2] = fleet(&pg, dir.path(), 2).try_into().ok().unwrap();
    let ids: Vec<String> = (0..500).map(|i| format!("event-{i}")).collect();
    let body = batch(&ids);
    // The same batch, to both at once.
    let stored: Vec<u64> = std::thread::scope(|s| {
        [&a, &b]
            .map(|c| {
                let body = &body;
                s.spawn(move || {
                    let answer = c.call("POST", AUDITS, Some(DEFENDER), &[], Some(body));
                    assert_eq!(answer.status, 200, "{}", answer.body);
                    answer.json()["stored"].as_u64().unwrap()
                })
            })
            .map(|t| t.join().unwrap())
            .to_vec()
    });
    assert_eq!(stored.iter().sum::<u64>(), 500, "{stored:?}");
    for c in [&a, &b] {
        let found = c.call(
            "GET",
            &format!("{AUDITS}?limit=1000"),
            Some(ADMIN),
            &[],
            None,
        );
        assert_eq!(found.total_count, Some(500));
        let unique: BTreeSet<String> = found
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(unique.len(), 500);
    }
    assert_eq!(
        pg.psql(&database(&pg), "SELECT count(*) FROM audits"),
        "500"
    );

    // A token made through A works through B; revoked through B, it works nowhere.
    let made = a.call(
        "POST",
        "/api/v1/tokens",
        Some(ADMIN),
        &[],
        Some(r#"{"name": "reader", "role": "auditor"}"#),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let token = made.json()["token"].as_str().unwrap().to_owned();
    let read = |c: &Console| c.call("GET", AUDITS, Some(&token), &[], None).status;
    assert_eq!((read(&a), read(&b)), (200, 200));
    let revoked = b.call("DELETE", "/api/v1/tokens/reader", Some(ADMIN), &[], None);
    assert!(revoked.status < 300, "{}", revoked.body);
    assert_eq!((read(&a), read(&b)), (401, 401));
}

#[test]
fn an_instance_older_than_the_database_schema_stores_no_audits() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap();
    let c = instance(&dir.path().join("console"), &url);
    let post = |id: &str| {
        c.call(
            "POST",
            AUDITS,
            Some(DEFENDER),
            &[],
            Some(&batch(&[id.to_owned()])),
        )
    };
    assert_eq!(post("before").status, 200);
    // A newer console migrated the database (recorded as migrations record themselves): this
    // older instance would store events without what the new schema counts beside them.
    let known: u64 = pg
        .psql(db, "SELECT max(version) FROM schema_migrations")
        .parse()
        .unwrap();
    let newer = known + 1;
    let record =
        format!("INSERT INTO schema_migrations (version, applied) VALUES ({newer}, 'now')");
    pg.psql(db, &record);
    let refused = post("during");
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert!(
        refused.body.contains(&format!(
            "the database is at schema version {newer}, not this console's {known}: this \
             console stores no audits"
        )),
        "{}",
        refused.body
    );
    assert_eq!(
        pg.psql(db, "SELECT count(*) FROM audits WHERE id = 'during'"),
        "0"
    );
    assert_eq!(c.call("GET", "/readyz", None, &[], None).status, 503);
    // Versions agreeing again, the batch sent again is stored.
    pg.psql(
        db,
        &format!("DELETE FROM schema_migrations WHERE version = {newer}"),
    );
    let again = post("during");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["stored"], 1);
}

#[test]
fn a_webhook_is_delivered_by_one_instance_and_taken_over_when_it_dies() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, Mode::Answer(200));
    let url = pg.create_database();
    let mut consoles: Vec<Console> = (0..2)
        .map(|i| {
            let mut args = token_args();
            args.extend(["--database", &url, "--webhook", &receiver.url()].map(String::from));
            Console::start_with(&dir.path().join(format!("c{i}")), "127.0.0.1:0", &args)
        })
        .collect();
    let holds = |c: &Console| c.log().contains("delivering from this console instance");
    assert!(wait_until(HANG_GUARD, || consoles.iter().any(holds)));
    let holder = consoles.iter().position(holds).unwrap();
    let other = 1 - holder;
    assert!(!holds(&consoles[other]), "one instance holds the lease");
    let ids = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| format!("hook-{i}"))
            .collect::<Vec<_>>()
    };
    let post = |c: &Console, ids: &[String]| {
        let a = c.call("POST", AUDITS, Some(DEFENDER), &[], Some(&batch(ids)));
        assert_eq!(a.status, 200, "{}", a.body);
    };
    let delivered = || -> Vec<String> {
        receiver
            .accepted()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Stored through the instance that does not deliver: the holder finds them in the database.
    post(&consoles[other], &ids(0, 30));
    assert!(wait_until(HANG_GUARD, || delivered().len() >= 30));
    // The holder dies; the other takes the lease over and delivers what follows.
    consoles[holder].kill();
    post(&consoles[other], &ids(30, 30));
    assert!(
        wait_until(HANG_GUARD, || delivered().len() >= 60),
        "{}",
        consoles[other].log()
    );
    assert!(holds(&consoles[other]));
    let got = delivered();
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an event delivered twice: {got:?}");
    assert_eq!(unique, ids(0, 60).iter().collect::<BTreeSet<_>>());
}

/// The name of the only test database on `pg`.
fn database(pg: &PgServer) -> String {
    pg.psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'test_%' LIMIT 1",
    )
}

/// A process killed when dropped unless taken first (a test that fails leaves none behind).
struct Killed(Option<Child>);

impl Killed {
    fn take(&mut self) -> Child {
        self.0.take().expect("taken once")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// HAProxy in front of `consoles`, health-checked by `/readyz`, sending everything to the first
/// instance that is up (so that a test knows which one a defender talks to); its URL.
fn balancer(dir: &Path, consoles: &[&Console]) -> (Killed, String) {
    let port = console::free_port();
    let servers: String = consoles
        .iter()
        .enumerate()
        .map(|(i, c)| format!("  server c{i} {} check inter 100ms fall 1 rise 1\n", c.addr))
        .collect();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode http\n  timeout connect 1s\n  timeout client 5m\n  \
             timeout server 5m\n  retries 3\n  option redispatch\n\
             frontend fleet\n  bind 127.0.0.1:{port}\n  default_backend consoles\n\
             backend consoles\n  balance first\n  option httpchk GET /readyz\n{servers}"
        ),
    )
    .unwrap();
    let child = Killed(Some(
        Command::new(require("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let url = format!("http://127.0.0.1:{port}");
    let health = format!("{url}/healthz");
    assert!(
        wait_until(HANG_GUARD, || ureq::get(&health).call().is_ok()),
        "haproxy serves"
    );
    (child, url)
}

/// A workload that runs `/bin/true` in phases: each time the file `goN` appears (N from 1), 20
/// more, then writes `doneN`; after phase 2 it waits for the file `stop`, then ends.
const PHASES: &str = r#"for phase in 1 2; do
    while [ ! -e "go$phase" ]; do sleep 0.02; done
    i=0; while [ $i -lt 20 ]; do /bin/true; i=$((i+1)); done
    touch "done$phase"; done
    while [ ! -e stop ]; do sleep 0.02; done"#;

#[test]
fn behind_a_load_balancer_a_killed_instance_loses_no_audit_and_doubles_none() {
    let pg = PgServer::start();
    let w = World::new();
    let mut consoles = fleet(&pg, &w.path("fleet"), 2);
    let (haproxy, url) = balancer(&w.path("."), &[&consoles[0], &consoles[1]]);
    consoles[0].put_policy(
        r#"{"rules": [{"name": "watch true", "collections": {"containers": ["test-container"]},
            "processes": {"effect": "alert", "deny": ["/bin/true"]}}]}"#,
    );
    let mut child = Killed(Some(spawn_piped(&mut console::defender(
        &w,
        &url,
        &w.path("state"),
        &[],
        &["sh", "-c", PHASES],
    ))));
    // Launches, as the console counts them: the defender sends repeats as one event with a count.
    let at_console = |c: &Console| -> u64 {
        c.audits("container=test-container&process=/bin/true&limit=10000")
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum()
    };
    std::fs::write(w.path("go1"), "").unwrap();
    assert!(
        wait_until(HANG_GUARD, || at_console(&consoles[1]) >= 20),
        "phase 1's audits arrive: {} at the console",
        at_console(&consoles[1]),
    );
    // The defender talks to the first instance: its long poll waits there.
    assert!(
        consoles[0].log().contains("policy poll waits"),
        "{}",
        consoles[0].log()
    );
    assert!(!consoles[1].log().contains("policy poll waits"));
    // It dies; the second phase's audits and polls can only go through the other.
    consoles[0].kill();
    std::fs::write(w.path("go2"), "").unwrap();
    assert!(
        wait_until(HANG_GUARD, || at_console(&consoles[1]) >= 40),
        "phase 2's audits arrive through the instance left: {}",
        at_console(&consoles[1])
    );
    // Its policy comes through the instance left too: a revision saved there is applied.
    let third = consoles[1].put_policy(
        r#"{"rules": [{"name": "watch true again", "collections": {"containers": ["test-container"]},
            "processes": {"effect": "alert", "deny": ["/bin/true"]}}]}"#,
    );
    let applied = format!("Policy revision {third} from the console applied");
    assert!(
        wait_until(HANG_GUARD, || !console::defender_events(&w, &applied)
            .is_empty()),
        "the defender's policy moved: {}",
        consoles[1].log()
    );
    std::fs::write(w.path("stop"), "").unwrap();
    let out = finish_within(child.take(), HANG_GUARD);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    drop(haproxy);

    let launches = w.audits_of("process");
    let local: BTreeSet<String> = launches
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let counted: u64 = launches.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 40, "{launches:?}");
    let remote: Vec<String> = consoles[1]
        .audits("container=test-container&type=process&limit=10000")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<String> = remote.iter().cloned().collect();
    assert_eq!(unique.len(), remote.len(), "an audit stored twice");
    assert_eq!(
        unique, local,
        "every audit written locally is at the console"
    );
}
