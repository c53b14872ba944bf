//! A console upgraded in place: the database of the console before custom rules (made here with
//! that console's own CREATE TABLE statements, and rows in them) is opened by this one, which
//! keeps the policy revision in force and the audits, and stores and filters the new `customRule`
//! field from then on, across restarts.
//!
//! The console's own test: it needs SQLite (rusqlite, a dependency of the console) to write the old
//! database, and its binary, which cargo hands to this package's tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const CONSOLE: &str = env!("CARGO_BIN_EXE_defender-console");
const ADMIN: &str = "upgrade-admin-token";
const DEFENDER: &str = "upgrade-defender-token";
const AUDITS: &str = "/api/v1/audits/runtime/app-embedded";

/// The tables of the console before custom rules, as it created them (schema version 0), with the
/// rows it would have written: a policy revision and an audit event.
const PREVIOUS: &str = r#"
CREATE TABLE policies (
    revision INTEGER PRIMARY KEY,
    document TEXT NOT NULL,
    updated  TEXT NOT NULL
);
CREATE TABLE audits (
    seq       INTEGER PRIMARY KEY,
    id        TEXT NOT NULL UNIQUE,
    time      TEXT NOT NULL,
    type      TEXT NOT NULL,
    effect    TEXT NOT NULL,
    rule      TEXT,
    attack    TEXT,
    container TEXT NOT NULL,
    image     TEXT NOT NULL,
    task      TEXT,
    pid       INTEGER NOT NULL,
    process   TEXT NOT NULL,
    cmdline   TEXT,
    parent    TEXT,
    domain    TEXT,
    ip        TEXT,
    port      INTEGER,
    message   TEXT NOT NULL,
    count     INTEGER NOT NULL,
    received  TEXT NOT NULL
);
CREATE INDEX audits_by_time ON audits (time DESC, seq DESC);
CREATE TABLE defenders (
    id         TEXT PRIMARY KEY,
    container  TEXT NOT NULL,
    image      TEXT NOT NULL,
    task       TEXT,
    version    TEXT NOT NULL,
    revision   TEXT,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);
INSERT INTO policies (document, updated) VALUES
    ('{"rules": [{"name": "old", "disabled": false}]}', '2026-11-28T09:00:00.000000Z');
INSERT INTO audits (id, time, type, effect, rule, attack, container, image, pid, process,
                    cmdline, parent, message, count, received)
VALUES ('old-1', '2026-11-28T10:00:00.000000Z', 'process', 'prevent', 'old',
        'processExplicitlyDenied', 'web', 'img:1', 7, '/usr/bin/mkdir', 'mkdir x', '/bin/sh',
        'mkdir was denied', 1, '2026-11-28T10:00:00.100000Z');
"#;

/// A console on a free port over `data`; killed when dropped.
struct Console {
    child: Child,
    addr: String,
}

impl Console {
    fn start(data: &std::path::Path) -> Console {
        let mut child = Command::new(CONSOLE)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--admin-token", ADMIN, "--defender-token", DEFENDER])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            if log.read_line(&mut line).unwrap() == 0 {
                panic!("the console stopped: {seen}");
            }
            if let Some((_, url)) = line.trim().split_once("listening on http://") {
                break url.to_owned();
            }
            seen.push_str(&line);
        };
        // The rest of its log is not needed; reading it keeps the console from blocking on it.
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
        Console { child, addr }
    }

    /// One request on its own connection: (status, ETag, body).
    fn call(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let etag = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("etag: ")
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        (status, etag, body.to_owned())
    }

    fn audits(&self, query: &str) -> Vec<serde_json::Value> {
        let (status, _, body) = self.call("GET", &format!("{AUDITS}?{query}"), ADMIN, "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(events: &[serde_json::Value]) -> Vec<&str> {
    events.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

#[test]
fn a_database_of_the_previous_console_is_upgraded_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    rusqlite::Connection::open(data.join("console.db"))
        .unwrap()
        .execute_batch(PREVIOUS)
        .unwrap();

    let c = Console::start(&data);
    // The revision in force stays the one stored: no new default revision.
    let (status, etag, policy) = c.call("GET", "/api/v1/policies/runtime/app-embedded", ADMIN, "");
    assert_eq!((status, etag.as_str()), (200, "\"1\""), "{policy}");
    assert!(policy.contains("\"old\""), "{policy}");
    let old = c.audits("");
    assert_eq!(ids(&old), ["old-1"]);
    assert_eq!(old[0]["cmdline"], "mkdir x");
    assert!(old[0].get("customRule").is_none(), "{}", old[0]);

    let new = serde_json::json!([{
        "id": "new-1", "time": "2026-11-29T10:00:00Z", "type": "process", "effect": "block",
        "rule": "web", "attack": "customRule", "customRule": "netcat listener",
        "container": "web", "image": "img:1", "pid": 8, "process": "/usr/bin/nc",
        "cmdline": "nc -l 4444", "parent": "/bin/sh", "message": "a netcat listener", "count": 1
    }]);
    let (status, _, body) = c.call("POST", AUDITS, DEFENDER, &new.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&c.audits("customRule=netcat+listener")), ["new-1"]);
    drop(c);

    // Started again on the upgraded database: nothing to do, nothing lost.
    let c = Console::start(&data);
    let all = c.audits("");
    assert_eq!(ids(&all), ["new-1", "old-1"]);
    assert_eq!(all[0]["customRule"], "netcat listener");
    assert_eq!(ids(&c.audits("customRule=netcat+listener")), ["new-1"]);
}
