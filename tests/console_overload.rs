//! The console short of descriptors and the fleet coming back after a restart, against the real
//! processes: with a low open-file limit (`prlimit`) and its connections held by long polls, what
//! defenders send is refused (503, `Retry-After`, counted and logged) while an administrator is
//! still served; accepting that fails for want of descriptors is counted and logged, and serving
//! resumes once connections end. A defender whose long poll a console restart cut waits a random
//! pause within the first backoff window before it polls again, and does poll the new console.
//! The listening socket's queue is the one asked for (`ss`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::console::{self, ADMIN, Console, DEFENDER, POLICY};
use common::{HANG_GUARD, World, wait_until};
use prometheus_parse::{Sample, Scrape, Value as Metric};

/// The open-file limit the console is started with.
const NOFILE: usize = 256;

fn scrape(c: &Console) -> Scrape {
    let text = c.call("GET", "/metrics", None, &[], None);
    assert_eq!(text.status, 200, "{}", text.body);
    Scrape::parse(text.body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matches =
        |x: &&Sample| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v));
    match s.samples.iter().find(matches).map(|x| &x.value) {
        Some(Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v)) => *v,
        _ => 0.0,
    }
}

fn refused(s: &Scrape, reason: &str) -> f64 {
    value(
        s,
        "defender_console_connections_refused_total",
        &[("reason", reason)],
    )
}

/// A defender's long poll for a change from revision 1, sent on a connection of its own.
fn hold_poll(c: &Console) -> TcpStream {
    let mut s = TcpStream::connect(&c.addr).unwrap();
    write!(
        s,
        "GET {POLICY}?wait=120 HTTP/1.1\r\nHost: console\r\nAuthorization: Bearer {DEFENDER}\r\n\
         If-None-Match: \"1\"\r\n\r\n"
    )
    .unwrap();
    s
}

/// `request` on a connection of its own, and the whole answer (the connection is closed after).
fn raw(c: &Console, request: &str) -> String {
    let mut s = TcpStream::connect(&c.addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn short_of_descriptors_defenders_are_refused_and_the_administrator_served() {
    let w = World::new();
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let c = Console::start_under(&w.path("data"), &["prlimit", &nofile]);
    assert!(
        c.log().contains(&format!("open files: limit {NOFILE},")),
        "{}",
        c.log()
    );

    // Long polls, one at a time, each held or refused before the next: until one is refused.
    let mut held = Vec::new();
    let refused_poll = loop {
        assert!(held.len() < NOFILE, "no poll was refused: {}", c.log());
        let mut poll = hold_poll(&c);
        let mut answered = false;
        let settled = wait_until(HANG_GUARD, || {
            let s = scrape(&c);
            answered = refused(&s, "reserve") > 0.0;
            answered
                || value(&s, "defender_console_long_polls_open", &[]) == (held.len() + 1) as f64
        });
        assert!(settled, "poll {} neither held nor refused", held.len());
        if answered {
            let mut answer = String::new();
            poll.set_read_timeout(Some(HANG_GUARD)).unwrap();
            // Closed by the console after its answer.
            poll.read_to_string(&mut answer).unwrap();
            break answer;
        }
        held.push(poll);
    };
    let head = refused_poll.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{refused_poll}");
    assert!(head.contains("retry-after: 5\r\n"), "{refused_poll}");
    assert!(head.contains("connection: close\r\n"), "{refused_poll}");
    // Most of the limit went to polls; the reserve is left.
    assert!(held.len() > NOFILE / 2, "{} polls held", held.len());

    // A new connection makes it crowded again: a heartbeat on one is refused too; the
    // administrator on one is served.
    let beat = r#"{"id": "d1", "container": "c", "image": "i", "version": "1"}"#;
    let a = raw(
        &c,
        &format!(
            "POST /api/v1/defenders/heartbeat HTTP/1.1\r\nHost: console\r\n\
             Authorization: Bearer {DEFENDER}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{beat}",
            beat.len()
        ),
    );
    assert!(a.starts_with("HTTP/1.1 503"), "{a}");
    let a = raw(
        &c,
        &format!(
            "GET /api/v1/defenders HTTP/1.1\r\nHost: console\r\nAuthorization: Bearer {ADMIN}\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let s = scrape(&c);
    assert_eq!(refused(&s, "reserve"), 2.0);
    assert!(c.log().contains("connections refused: "), "{}", c.log());

    // Idle connections past the reserve: accepting fails; counted and logged, not spun on.
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(&c.addr).unwrap())
        .collect();
    assert!(
        wait_until(HANG_GUARD, || c.log().contains("descriptors (")),
        "{}",
        c.log()
    );
    // The connections end: descriptors come back, and the administrator is served again.
    drop(idle);
    drop(held);
    let a = c.call("GET", "/api/v1/defenders", Some(ADMIN), &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    let s = scrape(&c);
    assert!(refused(&s, "descriptors") >= 1.0);
    let failures = c
        .log()
        .lines()
        .filter(|l| l.contains("connections refused: ") && l.contains("descriptors ("))
        .count();
    // At most one line a second however often accepting failed.
    assert!(
        (failures as f64) <= refused(&s, "descriptors"),
        "{failures} lines"
    );
}

#[test]
fn the_listen_queue_is_sized_for_a_fleet_reconnecting() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let port = c.addr.rsplit(':').next().unwrap();
    let out = std::process::Command::new(common::require("ss"))
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // State, Recv-Q, Send-Q (a listening socket's queue), local address, peer.
    let queue: u64 = text.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(queue, somaxconn.min(4096), "{text}");
    assert!(
        c.log().contains(&format!("listen queue {queue} ")),
        "{}",
        c.log()
    );
}

/// The pauses a defender logged before polling `path` again, in order.
fn pauses(log: &str, path: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(&format!("policy poll {path}: ")))
        .filter_map(|l| {
            l.rsplit_once("next in ")?
                .1
                .strip_suffix(" ms")?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn a_defender_cut_off_by_a_console_restart_polls_again_after_a_random_pause() {
    let w = World::new();
    let mut c = Console::start(&w.path("data"));
    let log = w.path("defender.log");
    let child = console::defender_until_stopped(&w, &c.url(), &["--log-level", "debug"], &log);
    let waiting = |c: &Console| c.log().matches("a policy poll waits").count();
    assert!(wait_until(HANG_GUARD, || waiting(&c) >= 1), "{}", c.log());

    // The restart cuts the poll; the defender polls the new console.
    c.restart();
    assert!(
        wait_until(HANG_GUARD, || waiting(&c) >= 1),
        "{}\n{}",
        c.log(),
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let pauses = pauses(&text, POLICY);
    assert!(!pauses.is_empty(), "{text}");
    // Failures in a row: below 250 ms, 500 ms, 1 s, ... 5 s at most.
    for (n, pause) in pauses.iter().enumerate() {
        let ceiling = (250u64 << n.min(5)).min(5000);
        assert!(*pause < ceiling, "pause {n}: {pause} ms; {pauses:?}");
    }

    std::fs::write(w.path("stop"), "").unwrap();
    let out = common::finish_within(child, HANG_GUARD);
    assert!(out.status.success(), "{}", common::stderr(&out));
}
