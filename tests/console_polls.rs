//! Policy reads served outside hyper (issue 15: a held poll's memory), against the real console
//! over raw TCP and curl: a poll is served natively (counted in
//! `defender_console_requests_native_total`), answered on a change and at its timeout; a
//! connection kept alive goes to hyper at its first other request and is served there; pipelined
//! requests are answered in order; a client closing a held poll lets it go; HTTP/1.0 closes after
//! its answer; a head split across two writes, a request that announces a body, a header given
//! twice go to hyper and are answered as hyper answers them; a native answer is hyper's, byte for
//! byte but for its date. A real defender's polls are all served natively, its heartbeats
//! besides.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};

use common::console::{self, ADMIN, Console, DEFENDER, POLICY};
use common::{HANG_GUARD, World, wait_until};

const NATIVE: &str = "defender_console_requests_native_total";
const OPEN: &str = "defender_console_long_polls_open";
const RULES: &str =
    r#"{"rules": [{"name": "no mkdir", "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#;

/// A policy read with the defender's token; `extra` are more header lines (each ending CRLF).
fn read(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: console\r\nAuthorization: Bearer {DEFENDER}\r\n{extra}\r\n"
    )
}

/// A poll for a change from `revision`, waiting up to `wait` seconds.
fn poll(revision: u64, wait: u64) -> String {
    read(
        &format!("{POLICY}?wait={wait}"),
        &format!("If-None-Match: \"{revision}\"\r\n"),
    )
}

/// A client connection speaking raw HTTP/1.1, answers read one at a time.
struct Raw {
    reader: BufReader<TcpStream>,
}

/// An answer: its head (status line and headers, the date left out) and body.
#[derive(Debug, PartialEq)]
struct Answer {
    head: String,
    body: String,
}

impl Answer {
    fn status(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }
}

impl Raw {
    fn connect(c: &Console) -> Raw {
        let s = TcpStream::connect(&c.addr).unwrap();
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        Raw {
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &str) {
        self.reader.get_mut().write_all(bytes.as_bytes()).unwrap();
    }

    /// The next answer (its body by its length; none for 304).
    fn answer(&mut self) -> Answer {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "closed: {head}"
            );
            if line == "\r\n" {
                break;
            }
            if !line.to_ascii_lowercase().starts_with("date: ") {
                head.push_str(&line);
            }
        }
        let answer = Answer {
            head,
            body: String::new(),
        };
        let length: usize = answer
            .header("content-length")
            .map_or(0, |n| n.trim().parse().unwrap());
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        Answer {
            body: String::from_utf8(body).unwrap(),
            ..answer
        }
    }

    /// Whether the console closed the connection (nothing more to read).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).unwrap();
        rest.is_empty()
    }
}

fn start(w: &World) -> Console {
    Console::start(&w.path("data"))
}

/// Waits for the console to say its `n`-th poll (in all) waits.
fn waiting(c: &Console, n: usize) {
    assert!(
        wait_until(HANG_GUARD, || c.log().matches("poll waits up to").count()
            >= n),
        "poll {n} never waited: {}",
        c.log()
    );
}

#[test]
fn a_poll_is_held_outside_hyper_answered_on_change_and_at_its_timeout() {
    let w = World::new();
    let c = start(&w);
    let mut d = Raw::connect(&c);

    d.send(&read(POLICY, ""));
    let first = d.answer();
    assert_eq!(first.status(), "HTTP/1.1 200 OK", "{first:?}");
    assert_eq!(first.header("etag"), Some("\"1\""));
    assert_eq!(c.metric(NATIVE), 1.0);

    // Held: counted open, served natively; the change answers it.
    d.send(&poll(1, 60));
    waiting(&c, 1);
    assert_eq!(c.metric(OPEN), 1.0);
    assert_eq!(c.metric(NATIVE), 2.0);
    assert_eq!(c.put_policy(RULES), 2);
    let changed = d.answer();
    assert_eq!(changed.status(), "HTTP/1.1 200 OK", "{changed:?}");
    assert_eq!(changed.header("etag"), Some("\"2\""));
    assert!(changed.body.contains("no mkdir"), "{}", changed.body);

    // No change within its wait: 304, on the same connection.
    d.send(&poll(2, 1));
    let unchanged = d.answer();
    assert_eq!(
        unchanged.status(),
        "HTTP/1.1 304 Not Modified",
        "{unchanged:?}"
    );
    assert_eq!(unchanged.header("etag"), Some("\"2\""));
    assert_eq!(c.metric(NATIVE), 3.0);
    assert_eq!(c.metric(OPEN), 0.0);

    // A heartbeat on the same connection goes to hyper, which keeps the connection: the poll
    // after it is served (by hyper), not counted.
    let beat = r#"{"id": "d1", "container": "c", "image": "i", "version": "1"}"#;
    d.send(&format!(
        "POST /api/v1/defenders/heartbeat HTTP/1.1\r\nHost: console\r\n\
         Authorization: Bearer {DEFENDER}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{beat}",
        beat.len()
    ));
    let beaten = d.answer();
    assert!(beaten.status().starts_with("HTTP/1.1 2"), "{beaten:?}");
    d.send(&poll(1, 60));
    let by_hyper = d.answer();
    assert_eq!(by_hyper.header("etag"), Some("\"2\""), "{by_hyper:?}");
    assert_eq!(c.metric(NATIVE), 3.0);

    // curl's poll: served natively, 304 at its timeout.
    let out = std::process::Command::new(common::require("curl"))
        .args(["-sS", "-i", "--max-time", "30"])
        .args(["-H", &format!("Authorization: Bearer {DEFENDER}")])
        .args(["-H", "If-None-Match: \"2\""])
        .arg(format!("{}{POLICY}?wait=1", c.url()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{text}");
    assert_eq!(c.metric(NATIVE), 4.0);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let w = World::new();
    let c = start(&w);
    let mut d = Raw::connect(&c);
    // A held poll with the next request already sent behind it, then a request for hyper.
    d.send(&format!(
        "{}{}GET /api/v1/defenders HTTP/1.1\r\nHost: console\r\nAuthorization: Bearer {ADMIN}\r\n\r\n",
        poll(1, 60),
        read(POLICY, "")
    ));
    waiting(&c, 1);
    assert_eq!(c.put_policy(RULES), 2);
    let held = d.answer();
    assert_eq!(held.header("etag"), Some("\"2\""), "{held:?}");
    let next = d.answer();
    assert_eq!(next.header("etag"), Some("\"2\""), "{next:?}");
    let listed = d.answer();
    assert_eq!(listed.status(), "HTTP/1.1 200 OK", "{listed:?}");
    assert_eq!(listed.body, "[]");
    assert_eq!(c.metric(NATIVE), 2.0);
}

#[test]
fn a_client_closing_a_held_poll_lets_it_go() {
    let w = World::new();
    let c = start(&w);
    let mut d = Raw::connect(&c);
    d.send(&poll(1, 120));
    waiting(&c, 1);
    assert_eq!(c.metric(OPEN), 1.0);
    assert_eq!(c.metric(NATIVE), 1.0);
    d.reader.get_ref().shutdown(Shutdown::Both).unwrap();
    drop(d);
    assert!(
        wait_until(HANG_GUARD, || c.metric(OPEN) == 0.0),
        "the poll is still held"
    );
}

#[test]
fn http_1_0_is_answered_natively_and_closed() {
    let w = World::new();
    let c = start(&w);
    let mut d = Raw::connect(&c);
    d.send(&read(POLICY, "").replace("HTTP/1.1", "HTTP/1.0"));
    let a = d.answer();
    assert_eq!(a.status(), "HTTP/1.0 200 OK", "{a:?}");
    assert_eq!(a.header("connection"), None, "{a:?}");
    assert!(d.closed());
    assert_eq!(c.metric(NATIVE), 1.0);
}

/// The console's receive queue on the connection whose client end is `client`: what it has not
/// read yet (`ss`).
fn unread(c: &Console, client: &TcpStream) -> Option<u64> {
    let port = c.addr.rsplit(':').next().unwrap();
    let peer = client.local_addr().unwrap().port();
    let out = std::process::Command::new(common::require("ss"))
        .args(["-tnH", &format!("sport = :{port} and dport = :{peer}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // State, Recv-Q, ...
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_head_split_across_two_writes_goes_to_hyper() {
    let w = World::new();
    let c = start(&w);
    let mut d = Raw::connect(&c);
    let whole = poll(1, 60);
    let (first, rest) = whole.split_at(whole.len() / 2);
    d.send(first);
    // Only hyper reads an incomplete head (the console peeks at it, and leaves it): once the
    // console's queue is empty, hyper has it.
    assert!(
        wait_until(HANG_GUARD, || unread(&c, d.reader.get_ref()) == Some(0)),
        "the half head was not read"
    );
    d.send(rest);
    waiting(&c, 1);
    assert_eq!(c.put_policy(RULES), 2);
    let a = d.answer();
    assert_eq!(a.header("etag"), Some("\"2\""), "{a:?}");
    assert_eq!(c.metric(NATIVE), 0.0);
}

/// `request` answered on a connection of its own (where policy reads are served natively), and
/// on one hyper already serves (after a request of another kind): both answers, each connection
/// closed after (`Connection: close`, or the console's choice).
fn both_ways(c: &Console, request: &str) -> (String, String) {
    let whole = |prefix: &str| {
        let mut s = TcpStream::connect(&c.addr).unwrap();
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        s.write_all(format!("{prefix}{request}").as_bytes())
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let undated: Vec<&str> = text
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with("date: "))
            .collect();
        undated.concat()
    };
    let alone = whole("");
    let listed = format!(
        "GET /api/v1/defenders HTTP/1.1\r\nHost: console\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
    );
    let after = whole(&listed);
    let (list, by_hyper) = after.split_at(after.find("[]").unwrap() + 2);
    assert!(list.starts_with("HTTP/1.1 200 OK\r\n"), "{after}");
    (alone, by_hyper.to_owned())
}

#[test]
fn requests_that_may_be_read_two_ways_are_answered_by_hyper() {
    let w = World::new();
    let c = start(&w);
    let close = "Connection: close\r\n";
    for (what, request) in [
        (
            "chunked",
            read(POLICY, &format!("{close}Transfer-Encoding: chunked\r\n"))
                + "5\r\nGET /\r\n0\r\n\r\n",
        ),
        (
            "a length",
            read(POLICY, &format!("{close}Content-Length: 5\r\n")) + "GET /",
        ),
        (
            "a zero length",
            read(POLICY, &format!("{close}Content-Length: 0\r\n")),
        ),
        (
            "a length and chunked",
            read(
                POLICY,
                &format!("{close}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"),
            ) + "0\r\n\r\n",
        ),
        (
            "two lengths",
            read(
                POLICY,
                &format!("{close}Content-Length: 0\r\nContent-Length: 5\r\n"),
            ) + "GET /",
        ),
        (
            "two hosts",
            read(POLICY, &format!("{close}Host: other\r\n")),
        ),
        (
            "two tokens, the second wrong",
            read(POLICY, &format!("{close}Authorization: Bearer wrong\r\n")),
        ),
        (
            "a folded header",
            read(POLICY, &format!("{close}X-A: b\r\n c\r\n")),
        ),
        (
            "an upgrade",
            read(
                POLICY,
                &format!("{close}Upgrade: websocket\r\nConnection: upgrade\r\n"),
            ),
        ),
    ] {
        let (alone, by_hyper) = both_ways(&c, &request);
        assert!(alone.starts_with("HTTP/1.1 "), "{what}: {alone}");
        assert_eq!(alone, by_hyper, "{what}");
    }
    assert_eq!(c.metric(NATIVE), 0.0);
}

#[test]
fn native_answers_are_hyper_s_but_for_the_date() {
    let w = World::new();
    let c = start(&w);
    for (what, request, status, native) in [
        (
            "the document",
            read(POLICY, "Connection: close\r\n"),
            "HTTP/1.1 200 OK",
            1.0,
        ),
        (
            "a poll timing out",
            read(
                &format!("{POLICY}?wait=1"),
                "If-None-Match: \"1\"\r\nConnection: close\r\n",
            ),
            "HTTP/1.1 304 Not Modified",
            2.0,
        ),
        (
            "a bad token",
            read(POLICY, "").replace(DEFENDER, "wrong"),
            "HTTP/1.1 401 Unauthorized",
            3.0,
        ),
        (
            "no token",
            "GET /api/v1/policies/firewall/app/app-embedded HTTP/1.1\r\nConnection: close\r\n\r\n"
                .into(),
            "HTTP/1.1 401 Unauthorized",
            4.0,
        ),
    ] {
        let (alone, by_hyper) = both_ways(&c, &request);
        assert!(alone.starts_with(status), "{what}: {alone}");
        assert_eq!(alone, by_hyper, "{what}");
        assert_eq!(c.metric(NATIVE), native, "{what}");
    }
}

/// The policy reads the console has answered (`request_duration`'s counts for the two policy
/// routes' `GET`s).
fn policy_reads_answered(c: &Console) -> f64 {
    let text = c.call("GET", "/metrics", None, &[], None).body;
    text.lines()
        .filter(|l| l.starts_with("defender_console_request_duration_seconds_count{"))
        .filter(|l| l.contains("method=\"GET\"") && l.contains("route=\"/api/v1/policies/"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_real_defender_s_polls_are_all_served_natively() {
    let w = World::new();
    let c = start(&w);
    let log = w.path("defender.log");
    let child = console::defender_until_stopped(&w, &c.url(), &[], &log);
    let heard = || {
        let a = c.call("GET", "/api/v1/defenders", Some(ADMIN), &[], None);
        a.status == 200 && a.json().as_array().is_some_and(|d| !d.is_empty())
    };
    // Its first heartbeat (a POST) has been answered, and its two polls are held.
    assert!(wait_until(HANG_GUARD, heard), "{}", c.log());
    assert!(
        wait_until(HANG_GUARD, || c.metric(OPEN) == 2.0),
        "{}",
        c.log()
    );
    // A change answers the runtime poll; the defender polls again, on a connection that has
    // never carried a heartbeat.
    assert_eq!(c.put_policy(RULES), 2);
    assert!(
        wait_until(HANG_GUARD, || c.log().contains("from revision 2")),
        "{}",
        c.log()
    );
    // Every policy read was native: those answered and those held, nothing else.
    let all_native = wait_until(HANG_GUARD, || {
        c.metric(NATIVE) == policy_reads_answered(&c) + c.metric(OPEN)
    });
    assert!(
        all_native,
        "{} native, {} answered, {} held",
        c.metric(NATIVE),
        policy_reads_answered(&c),
        c.metric(OPEN)
    );
    assert!(c.metric(NATIVE) >= 3.0);

    std::fs::write(w.path("stop"), "").unwrap();
    let out = common::finish_within(child, HANG_GUARD);
    assert!(out.status.success(), "{}", common::stderr(&out));
}
