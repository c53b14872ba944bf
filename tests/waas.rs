//! The web application firewall in place: a real HTTP application (tests/common/waas_app.py,
//! Python's http.server) started under the real defender with `--waas-policy`, binding the
//! protected port, and real clients (curl, sockets) in front: what passes arrives unchanged, what
//! is refused never arrives and is audited (docs/waas.md). Under a real console, a new WAAS
//! revision applies to a port already taken over, and heartbeats name that port.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::Instant;

use common::console::{self, ADMIN, Console};
use common::{HANG_GUARD, World, require, wait_until};
use serde_json::{Value, json};

/// A port free now (the kernel's pick), for the application to bind.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The application running under the defender, killed (with everything below it) when dropped.
struct Running {
    world: World,
    child: Option<Child>,
    port: u16,
    /// What the application's getsockname() says of each of its listeners.
    bound: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let pid = child.id() as i32;
            for p in common::descendants(pid).into_iter().chain([pid]) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = common::finish_within(child, HANG_GUARD);
        }
    }
}

/// Starts the application on `address` (PORT is replaced by a free port in `waas`, the WAAS
/// document; `None`: no `--waas-policy`) with `listeners` sockets, and waits until it listens.
fn start(waas: Option<&str>, address: &str, listeners: usize) -> Running {
    let app = common::repo_path("tests/common/waas_app.py");
    start_python(waas, |ready, port| {
        vec![
            app.display().to_string(),
            ready.to_owned(),
            address.to_string(),
            port.to_string(),
            listeners.to_string(),
        ]
    })
}

/// Starts `python3 ARGS` under the defender, `args` given the path of the file the program
/// writes once it listens (a line per listener: its address) and the port it binds, and waits
/// for that file.
fn start_python(waas: Option<&str>, args: impl FnOnce(&str, u16) -> Vec<String>) -> Running {
    let python = require("python3");
    let world = World::new();
    let port = free_port();
    let mut extra: Vec<String> = Vec::new();
    if let Some(doc) = waas {
        let path = world.path("waas.json");
        std::fs::write(&path, doc.replace("PORT", &port.to_string())).unwrap();
        extra.push("--waas-policy".into());
        extra.push(path.display().to_string());
    }
    let ready = world.path("ready");
    let mut command = vec![python.display().to_string()];
    command.extend(args(&ready.display().to_string(), port));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let child = common::spawn_piped(&mut world.command(None, &extra, &command));
    let child = common::wait_for_file(&world, child, "ready");
    let bound = std::fs::read_to_string(&ready)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    Running {
        world,
        child: Some(child),
        port,
        bound,
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The `waas` audits so far.
    fn waas_audits(&self) -> Vec<Value> {
        self.world.audits_of("waas")
    }

    /// Waits for a `waas` audit of `attack` and returns it.
    fn audit_of(&self, attack: &str) -> Value {
        let mut found = None;
        let seen = wait_until(HANG_GUARD, || {
            found = self
                .waas_audits()
                .into_iter()
                .find(|e| e["attack"] == attack);
            found.is_some()
        });
        assert!(
            seen,
            "no waas audit of {attack}; audits: {:#?}",
            self.world.audits()
        );
        found.unwrap()
    }
}

/// curl's output for `args`: the body, then a last line with the status code.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new(require("curl"))
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

const PROTECTED: &str = r#"{"rules": [{"name": "front", "apps": [{"port": PORT,
    "protections": {"sqli": "prevent", "xss": "prevent", "cmdi": "prevent", "codeInjection": "prevent",
                    "lfi": "prevent", "shellshock": "prevent", "attackTools": "prevent",
                    "malformedRequest": "prevent"},
    "deniedSources": ["127.0.0.3/32"],
    "maxBodyBytes": 100000}]}]}"#;

#[test]
fn benign_requests_arrive_unchanged_over_kept_alive_connections() {
    let app = start(Some(PROTECTED), "0.0.0.0", 1);
    // The application's socket sits on loopback, on a port of the kernel's choosing.
    assert_eq!(app.bound.len(), 1);
    assert!(
        app.bound[0].starts_with("('127.0.0.1', "),
        "{:?}",
        app.bound
    );
    assert_ne!(app.bound[0], format!("('127.0.0.1', {})", app.port));

    // Three requests, one connection: curl reports one connect, then none.
    let out = Command::new(require("curl"))
        .args(["-s", "--max-time", "20", "-w", "\n%{num_connects}\n"])
        .args([app.url("/a"), app.url("/b?x=1"), app.url("/c")])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let connects: Vec<&str> = out.lines().filter(|l| l.len() == 1).collect();
    assert_eq!(connects, ["1", "0", "0"], "{out}");
    assert!(out.contains(r#""path": "/b?x=1""#), "{out}");

    // The real peer in X-Forwarded-For, after what the client sent.
    let (code, body) = curl(&["-H", "X-Forwarded-For: 203.0.113.9", &app.url("/xff")]);
    assert_eq!(code, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["xff"][0], "203.0.113.9, 127.0.0.1", "{body}");

    // A body (text, some of it not ASCII), with a Content-Length and chunked, comes back byte
    // for byte.
    let data: Vec<u8> = (0..6_000u32)
        .flat_map(|i| format!("w{} é{} ", i * 7919 % 1000, i % 13).into_bytes())
        .collect();
    let file = app.world.path("body.bin");
    std::fs::write(&file, &data).unwrap();
    for chunked in [false, true] {
        let out = app.world.path("echo.bin");
        let mut c = Command::new(require("curl"));
        c.args(["-s", "--fail", "--max-time", "20", "-o"])
            .arg(&out)
            .args(["-H", "Content-Type: application/octet-stream"]);
        if chunked {
            c.args(["-H", "Transfer-Encoding: chunked"]);
        }
        let status = c
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(app.url("/echo"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chunked: {chunked}: {:#?}",
            app.world.audits()
        );
        assert_eq!(std::fs::read(&out).unwrap(), data, "chunked: {chunked}");
    }

    // A binary upload passes whatever its bytes spell: only a serialised Java object's magic is
    // looked for in it (docs/waas.md, "What is inspected").
    let upload: Vec<u8> = (0..20_000u32)
        .flat_map(|i| [(i % 251) as u8, 0, b';'])
        .chain(*b"\x00;cat /etc/passwd|id`id`<script>alert(1)</script>' OR '1'='1")
        .collect();
    let file = app.world.path("upload.bin");
    std::fs::write(&file, &upload).unwrap();
    let out = app.world.path("upload.out");
    let (code, body) = curl(&[
        "-o",
        out.to_str().unwrap(),
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &app.url("/echo"),
    ]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(std::fs::read(&out).unwrap(), upload);

    // The application's errors pass unchanged.
    assert_eq!(curl(&[&app.url("/status/404")]), (404, "status 404".into()));
    assert_eq!(curl(&[&app.url("/status/500")]), (500, "status 500".into()));
    assert!(app.waas_audits().is_empty(), "{:#?}", app.waas_audits());
}

/// Which of the application's accepted connections carried each of three requests sent by one
/// curl, on one client connection.
fn app_connections(app: &Running) -> Vec<u64> {
    let out = Command::new(require("curl"))
        .args(["-s", "--max-time", "20", "-w", "\n"])
        .args([app.url("/a"), app.url("/b"), app.url("/c")])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    out.lines()
        .map(|l| {
            let json: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {out}"));
            json["connection"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn each_client_connection_keeps_one_application_connection_alive() {
    let app = start(Some(PROTECTED), "127.0.0.1", 1);
    // One connection to the application for a client connection's requests, not one each.
    let first = app_connections(&app);
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(first.iter().all(|c| *c == first[0]), "{first:?}");
    // Another client connection has one of its own: never shared between clients.
    let second = app_connections(&app);
    assert_eq!(second.len(), 3, "{second:?}");
    assert!(second.iter().all(|c| *c == second[0]), "{second:?}");
    assert_ne!(first[0], second[0]);
}

/// An application that listens with a backlog of 0 and accepts nothing until the file `go`
/// exists next to its ready file; then it answers each connection's request `200 ok` and closes it.
const SLOW_ACCEPTING_APP: &str = r#"
import os, socket, sys, time
ready, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.bind(("127.0.0.1", port))
s.listen(0)
with open(ready + ".tmp", "w") as f:
    f.write("%s:%d\n" % s.getsockname())
os.rename(ready + ".tmp", ready)
go = os.path.join(os.path.dirname(ready), "go")
while not os.path.exists(go):
    time.sleep(0.01)
while True:
    c, _ = s.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = c.recv(4096)
        if not chunk:
            break
        head += chunk
    if head:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    c.close()
"#;

/// The local ports of this network namespace's TCP sockets in SYN-SENT towards port `to`
/// (/proc/net/tcp: `local_address rem_address st`, hexadecimal; state 02 is SYN-SENT).
fn syn_sent_to(to: u16) -> Vec<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |address: &str| {
        let hex = address.rsplit_once(':').map_or("", |(_, p)| p);
        u16::from_str_radix(hex, 16).ok()
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 3 && f[3] == "02" && port(f[2]) == Some(to)).then(|| port(f[1]))?
        })
        .collect()
}

#[test]
fn a_connect_dropped_by_a_full_accept_queue_is_tried_again_at_once() {
    let app = start_python(Some(PROTECTED), |ready, port| {
        vec![
            "-c".into(),
            SLOW_ACCEPTING_APP.into(),
            ready.into(),
            port.to_string(),
        ]
    });
    let backend: std::net::SocketAddr = app.bound[0].parse().unwrap();
    // One connection the application does not accept fills its queue (backlog 0): the kernel now
    // drops every SYN to it, and would send a dropped one again only after a second.
    let filler = TcpStream::connect(backend).unwrap();
    let url = app.url("/queued");
    let client = std::thread::spawn(move || curl(&[&url]));
    // The proxy's connect is unanswered: it is replaced by a fresh one (another local port)
    // rather than left to the kernel's retransmission from the same socket.
    let mut sockets = std::collections::BTreeSet::new();
    let replaced = wait_until(HANG_GUARD, || {
        sockets.extend(syn_sent_to(backend.port()));
        sockets.len() >= 2
    });
    assert!(replaced, "connects seen from local ports {sockets:?}");
    // Once the application accepts, the request arrives and is answered.
    drop(filler);
    std::fs::write(app.world.path("go"), "").unwrap();
    assert_eq!(client.join().unwrap(), (200, "ok".into()));
}

#[test]
fn a_value_too_long_to_read_whole_is_read_at_both_ends_and_refused() {
    let app = start(Some(PROTECTED), "127.0.0.1", 1);
    let post = |body: String| {
        let file = app.world.path("body.txt");
        std::fs::write(&file, body).unwrap();
        curl(&[
            "--data-binary",
            &format!("@{}", file.display()),
            &app.url("/echo"),
        ])
    };
    let cap = defender::waas::inspect::INSPECTED_VALUE_BYTES;
    let pad = "a".repeat(cap + 1000);
    let attack = "<script>alert(1)</script>";
    // At the cap, read whole and passed.
    let whole = format!("t={}", "a".repeat(cap));
    assert_eq!(post(whole.clone()), (200, whole));
    // Padded on both sides: the attack is in the unread middle, so the value is refused as one
    // too long to read.
    let (code, body) = post(format!("t={pad}{attack}{pad}"));
    assert_eq!(code, 403, "{body}");
    assert_eq!(app.audit_of("malformedRequest")["field"], "body:t");
    assert!(
        !app.waas_audits().iter().any(|a| a["attack"] == "xss"),
        "{:#?}",
        app.waas_audits()
    );
    // Padded on one side: the tail is read, and the attack is named.
    let (code, body) = post(format!("t={pad}{attack}"));
    assert_eq!(code, 403, "{body}");
    assert_eq!(app.audit_of("xss")["field"], "body:t");
}

#[test]
fn each_protection_refuses_its_attack_and_names_the_field() {
    let app = start(Some(PROTECTED), "0.0.0.0", 1);
    let q = |s: &str| app.url(&format!("/search?{s}"));
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("sqli", vec![q("id=1%27%20OR%20%271%27=%271")], "query:id"),
        (
            "xss",
            vec![
                "--data".into(),
                "name=<script>alert(1)</script>".into(),
                app.url("/form"),
            ],
            "body:name",
        ),
        (
            "cmdi",
            vec![q("host=127.0.0.1%3B%20cat%20/etc/passwd")],
            "query:host",
        ),
        ("lfi", vec![q("file=../../../../etc/passwd")], "query:file"),
        (
            "shellshock",
            vec![
                "-H".into(),
                "X-Probe: () { :; }; /bin/cat /etc/passwd".into(),
                app.url("/"),
            ],
            "header:X-Probe",
        ),
        (
            "attackTools",
            vec![
                "-A".into(),
                "sqlmap/1.7.2#stable (https://sqlmap.org)".into(),
                app.url("/"),
            ],
            "header:User-Agent",
        ),
        (
            "codeInjection",
            vec![q(
                "code=%3C%3Fphp%20system(%24_GET%5B%27c%27%5D)%3B%20%3F%3E",
            )],
            "query:code",
        ),
    ];
    // A serialised Java object, the attack that travels as a binary body.
    let serialised = app.world.path("object.ser");
    std::fs::write(&serialised, b"\xac\xed\x00\x05sr\x00\x11java.util.HashMap").unwrap();
    let cases = cases.into_iter().chain([(
        "codeInjection",
        vec![
            "-H".into(),
            "Content-Type: application/x-java-serialized-object".into(),
            "--data-binary".into(),
            format!("@{}", serialised.display()),
            app.url("/echo"),
        ],
        "body",
    )]);
    for (attack, args, field) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, body) = curl(&args);
        assert_eq!(code, 403, "{attack}: {body}");
        // The refusal's audit is the first of its request.
        let id = body
            .rsplit("Request id: ")
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let mut audit = Value::Null;
        let seen = wait_until(HANG_GUARD, || {
            audit = app
                .waas_audits()
                .into_iter()
                .find(|e| e["requestId"] == id.as_str() && e["attack"] == *attack)
                .unwrap_or(Value::Null);
            !audit.is_null()
        });
        assert!(
            seen,
            "{attack}: no audit of request {id}: {:#?}",
            app.world.audits()
        );
        assert_eq!(audit["field"], *field, "{attack}: {audit}");
        assert_eq!(audit["effect"], "prevent");
        assert_eq!(audit["rule"], "front");
        assert_eq!(audit["sourceIp"], "127.0.0.1");
        let message = audit["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{attack} detected in {field} of ")),
            "{message}"
        );
    }
    // A body over maxBodyBytes is refused unread.
    let big = app.world.path("big");
    std::fs::write(&big, "a=".to_string() + &"b".repeat(200_000)).unwrap();
    let (code, _) = curl(&[
        "--data-binary",
        &format!("@{}", big.display()),
        &app.url("/echo"),
    ]);
    assert_eq!(code, 403);
    assert_eq!(app.audit_of("malformedRequest")["field"], "body");
}

/// An application that parses any body as a form (tests/common/waas_app.py's `/form`, Python's
/// `parse_qs`) reads the fields of a body labelled binary: the firewall reads the text runs of a
/// binary body as such a form, so an attack after a control byte is refused and named, and a
/// binary upload with fields and no attack arrives.
#[test]
fn an_attack_in_a_binary_body_read_as_a_form_is_refused() {
    let app = start(Some(PROTECTED), "127.0.0.1", 1);
    let post = |name: &str, body: &[u8]| {
        let file = app.world.path(name);
        std::fs::write(&file, body).unwrap();
        curl(&[
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &app.url("/form"),
        ])
    };
    // The application does read a field out of such a body: benign, it arrives.
    let (code, body) = post("benign.bin", b"\x89PNG\x01\x00&q=summer+shoes&size=42");
    assert_eq!(code, 200, "{body}");
    let fields: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(fields["q"], json!(["summer shoes"]), "{body}");
    // The same with an attack in the field: refused, audited in the field's name.
    let (code, body) = post("attack.bin", b"\x89PNG\x01\x00&q=%27+OR+1%3D1--&size=42");
    assert_eq!(code, 403, "{body}");
    let audit = app.audit_of("sqli");
    assert_eq!(audit["field"], "body:q", "{audit}");
    assert_eq!(audit["effect"], "prevent");
}

#[test]
fn alert_passes_and_audits() {
    let doc = r#"{"rules": [{"name": "watch", "apps": [{"port": PORT, "protections": {"sqli": "alert"}}]}]}"#;
    let app = start(Some(doc), "127.0.0.1", 1);
    let (code, body) = curl(&[&app.url("/items?id=1%27%20OR%20%271%27=%271")]);
    assert_eq!(code, 200, "{body}");
    let audit = app.audit_of("sqli");
    assert_eq!(audit["effect"], "alert");
    assert_eq!(audit["field"], "query:id");
    assert_eq!(audit["method"], "GET");
}

#[test]
fn denied_sources_and_bans_refuse_a_second_address() {
    let doc = r#"{"rules": [{"name": "front", "apps": [{"port": PORT,
        "protections": {"sqli": "ban"}, "ban": {"minutes": 5},
        "deniedSources": ["127.0.0.3/32"]}]}]}"#;
    let app = start(Some(doc), "0.0.0.0", 1);
    let from = |source: &str, path: &str| curl(&["--interface", source, &app.url(path)]);
    assert_eq!(from("127.0.0.1", "/").0, 200);
    assert_eq!(from("127.0.0.3", "/").0, 403);
    let denied = app.audit_of("deniedSource");
    assert_eq!(denied["sourceIp"], "127.0.0.3");

    // An attack under `ban` from 127.0.0.2: refused, and so is its next, harmless request.
    assert_eq!(from("127.0.0.2", "/").0, 200);
    assert_eq!(from("127.0.0.2", "/?id=1%27%20OR%20%271%27=%271").0, 403);
    assert_eq!(app.audit_of("sqli")["sourceIp"], "127.0.0.2");
    assert_eq!(from("127.0.0.2", "/").0, 403);
    assert_eq!(app.audit_of("banned")["sourceIp"], "127.0.0.2");
    // Another address is not banned.
    assert_eq!(from("127.0.0.1", "/").0, 200);
}

#[test]
fn the_rate_limit_holds() {
    let doc = r#"{"rules": [{"name": "front", "apps": [{"port": PORT,
        "rateLimit": {"requestsPerSecond": 1, "burst": 3, "effect": "prevent"}}]}]}"#;
    let app = start(Some(doc), "127.0.0.1", 1);
    let started = Instant::now();
    let codes: Vec<u16> = (0..12).map(|_| curl(&[&app.url("/")]).0).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let passed = codes.iter().filter(|c| **c == 200).count();
    assert!(
        passed as f64 <= 3.0 + elapsed.ceil(),
        "{passed} passed in {elapsed:.2}s: {codes:?}"
    );
    assert!(codes.contains(&403), "{codes:?}");
    assert_eq!(app.audit_of("rateLimit")["sourceIp"], "127.0.0.1");
}

#[test]
fn ipv6_and_dual_stack_binds_are_taken_over() {
    let app = start(Some(PROTECTED), "::", 1);
    assert!(app.bound[0].starts_with("('::1', "), "{:?}", app.bound);
    for url in [
        format!("http://[::1]:{}/v6", app.port),
        format!("http://127.0.0.1:{}/v4", app.port),
    ] {
        let (code, body) = curl(&[&url]);
        assert_eq!(code, 200, "{url}: {body}");
    }
    let (code, _) = curl(&[&format!(
        "http://[::1]:{}/?id=1%27%20OR%20%271%27=%271",
        app.port
    )]);
    assert_eq!(code, 403);
    assert_eq!(app.audit_of("sqli")["sourceIp"], "::1");
}

#[test]
fn reuseport_listeners_share_one_front() {
    let app = start(Some(PROTECTED), "127.0.0.1", 2);
    assert_eq!(app.bound.len(), 2);
    assert_eq!(
        app.bound[0], app.bound[1],
        "both sockets joined one loopback port"
    );
    let mut seen = std::collections::BTreeSet::new();
    let both = wait_until(HANG_GUARD, || {
        let (code, body) = curl(&[&app.url("/which")]);
        assert_eq!(code, 200, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        seen.insert(json["listener"].as_u64().unwrap());
        seen.len() == 2
    });
    assert!(both, "only listener {seen:?} answered");
}

#[test]
fn websocket_upgrades_pass_after_the_handshake_is_checked_and_no_other() {
    let app = start(Some(PROTECTED), "127.0.0.1", 1);
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "{}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"\x81\x02hi").unwrap();
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"\x81\x02hi");

    // Any other upgrade (h2c: HTTP/2 the firewall does not read) reaches the application without
    // its Upgrade header, to be answered as HTTP/1.1.
    let (code, body) = curl(&[
        "-H",
        "Upgrade: h2c",
        "-H",
        "Connection: Upgrade, HTTP2-Settings",
        &app.url("/h2c"),
    ]);
    assert_eq!(code, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["upgrade"], Value::Null, "{body}");

    // A handshake carrying an attack is refused like any request.
    let (code, _) = curl(&[
        "-H",
        "Upgrade: websocket",
        "-H",
        "Connection: Upgrade",
        &app.url("/ws?f=../../../../etc/passwd"),
    ]);
    assert_eq!(code, 403);
}

#[test]
fn tls_is_passed_through_and_reported_once() {
    let app = start(Some(PROTECTED), "127.0.0.1", 1);
    for _ in 0..2 {
        // A TLS record's first byte: passed raw, so the application itself answers the bytes.
        let mut s = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        s.write_all(b"\x16\x03\x01 not really TLS\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.contains("Bad request version"), "{answer:?}");
    }
    let reports = || {
        app.world
            .audits_of("defender")
            .into_iter()
            .filter(|e| e["message"].as_str().unwrap_or("").contains("TLS"))
            .count()
    };
    assert!(wait_until(HANG_GUARD, || reports() > 0));
    assert_eq!(reports(), 1, "{:#?}", app.world.audits());
}

#[test]
fn requests_outside_the_openapi_document_are_violations() {
    let doc = r#"{"rules": [{"name": "api", "apps": [{"port": PORT, "apiEffect": "prevent",
        "openapi": {"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
                    "paths": {"/items": {"get": {"responses": {"200": {"description": "ok"}}}}}}}]}]}"#;
    let app = start(Some(doc), "127.0.0.1", 1);
    assert_eq!(curl(&[&app.url("/items")]).0, 200);
    assert_eq!(curl(&[&app.url("/admin")]).0, 403);
    assert_eq!(app.audit_of("apiViolation")["url"], "/admin");
}

/// The defender's threads' names.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn without_a_waas_rule_no_proxy_starts() {
    let app = start(None, "127.0.0.1", 1);
    // The application has its port itself.
    assert_eq!(app.bound, [format!("('127.0.0.1', {})", app.port)]);
    assert_eq!(curl(&[&app.url("/")]).0, 200);
    let pid = app.child.as_ref().unwrap().id();
    let supervisor = common::supervisor_of(pid as i32) as u32;
    for p in [pid, supervisor] {
        let names = thread_names(p);
        assert!(!names.iter().any(|n| n == "waas-proxy"), "{p}: {names:?}");
    }

    // With one, the thread is there.
    let app = start(Some(PROTECTED), "127.0.0.1", 1);
    let pid = app.child.as_ref().unwrap().id();
    let supervisor = common::supervisor_of(pid as i32) as u32;
    let names: Vec<String> = [pid, supervisor]
        .into_iter()
        .flat_map(thread_names)
        .collect();
    assert!(names.iter().any(|n| n == "waas-proxy"), "{names:?}");
}

#[test]
fn console_revisions_apply_to_a_port_taken_over_and_heartbeats_name_it() {
    let python = require("python3");
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let port = free_port();
    let waas = |sqli: &str| {
        json!({"rules": [{"name": "web", "collections": {"containers": ["test-container"]},
                          "apps": [{"port": port, "protections": {"sqli": sqli}}]}]})
        .to_string()
    };
    let put = |doc: String| {
        let a = c.call(
            "PUT",
            "/api/v1/policies/firewall/app/app-embedded",
            Some(ADMIN),
            &[],
            Some(&doc),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    };
    put(waas("alert"));
    let ready = w.path("ready");
    let app = common::repo_path("tests/common/waas_app.py");
    let child = common::spawn_piped(&mut console::defender(
        &w,
        &c.url(),
        &w.path("state"),
        &[],
        &[
            python.to_str().unwrap(),
            app.to_str().unwrap(),
            ready.to_str().unwrap(),
            "127.0.0.1",
            &port.to_string(),
        ],
    ));
    let child = common::wait_for_file(&w, child, "ready");
    let app = Running {
        world: w,
        child: Some(child),
        port,
        bound: Vec::new(),
    };
    // The heartbeat names the port taken over.
    let protects = || {
        let a = c.call("GET", "/api/v1/defenders", Some(ADMIN), &[], None);
        a.json()[0]["protects"].clone()
    };
    assert!(
        wait_until(HANG_GUARD, || protects() == json!([port])),
        "{}",
        protects()
    );
    let attack = app.url("/items?id=1%27%20OR%20%271%27=%271");
    assert_eq!(curl(&[&attack]).0, 200, "alert passes");
    assert_eq!(app.audit_of("sqli")["effect"], "alert");

    // A new revision applies to the port already taken over, from its next request.
    put(waas("prevent"));
    assert!(wait_until(HANG_GUARD, || {
        !console::defender_events(&app.world, "WAAS policy revision 3").is_empty()
    }));
    assert_eq!(curl(&[&attack]).0, 403);
    assert!(wait_until(HANG_GUARD, || {
        app.waas_audits()
            .iter()
            .any(|e| e["attack"] == "sqli" && e["effect"] == "prevent")
    }));

    // A revision that no longer protects the port: it stays behind the proxy, uninspected, and
    // no longer counts as protected.
    let elsewhere = json!({"rules": [{"name": "web", "collections": {"containers": ["test-container"]},
                                      "apps": [{"port": port.wrapping_add(1),
                                                "protections": {"sqli": "prevent"}}]}]});
    put(elsewhere.to_string());
    assert!(wait_until(HANG_GUARD, || {
        !console::defender_events(&app.world, "WAAS policy revision 4").is_empty()
    }));
    assert_eq!(curl(&[&attack]).0, 200);
    let (code, echoed) = curl(&["--data-binary", "streamed as it came", &app.url("/echo")]);
    assert_eq!((code, echoed.as_str()), (200, "streamed as it came"));
    assert!(
        wait_until(HANG_GUARD, || protects() == Value::Null),
        "{}",
        protects()
    );
}
