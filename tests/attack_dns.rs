//! DNS messages crafted to be read one way by the defender and another by a lenient name server
//! (issue 9, attack 5): no question counted but the question bytes present, two questions, bytes
//! after the last record, a response, a compression loop, an unassigned opcode, and over TCP two
//! messages in one segment or one message split across segments. A real client (python3 with
//! plain sockets) sends them under the real defender to a lenient server of the test's own
//! (tests/common/raw_dns_server.py, which logs every message that reaches it, raw) through each
//! path a message takes: a connected UDP socket and a TCP connection (the forwarder), and an
//! unconnected UDP socket (judged where `sendto` is trapped).
//!
//! Under `prevent` the server never receives the message (its log), the client gets FORMERR (an
//! unconnected `sendto` fails with EPERM), and a `dns` audit names the reason; under `alert` the
//! message reaches the server unchanged and is audited; under `block` the container is stopped.
//!
//! Debian packages: python3, dnsmasq-base, iproute2, util-linux.

mod common;

use std::process::Output;

use common::networld::{NetWorld, WEB, assert_blocked, check_audit};
use common::{stderr, stdout};
use serde_json::{Value, json};

const RULE: &str = "dns-attack";

/// The lenient server's address (the world's dnsmasq is on another).
const SERVER: &str = WEB;

fn policy(effect: &str) -> String {
    json!({"rules": [{"name": RULE, "dns": {"effect": effect, "deny": ["denied.test"]}}]})
        .to_string()
}

/// The client: `MODE SERVER ARGS...`. `udp-connect` and `udp-sendto` send each argument (hex) as
/// one datagram and print the reply's rcode (or `errno N`, or `timeout`); `tcp N SEGMENT...`
/// sends each segment (hex) with its own `send` (TCP_NODELAY), then prints the rcode of each of
/// the N framed replies it reads (or `closed`).
const CLIENT: &str = r#"
import socket, sys
mode, server, args = sys.argv[1], sys.argv[2], sys.argv[3:]
def show(a):
    print(f"id={int.from_bytes(a[:2], 'big')} rcode={a[3] & 15}" if len(a) >= 4 else "short")
if mode.startswith("udp"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(20)
    if mode == "udp-connect":
        s.connect((server, 53))
    for m in args:
        try:
            if mode == "udp-connect":
                s.send(bytes.fromhex(m))
            else:
                s.sendto(bytes.fromhex(m), (server, 53))
        except OSError as e:
            print("errno", e.errno)
            continue
        try:
            show(s.recv(65536))
        except socket.timeout:
            print("timeout")
else:
    s = socket.create_connection((server, 53), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for seg in args[1:]:
        s.sendall(bytes.fromhex(seg))
    buf = b""
    for _ in range(int(args[0])):
        while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
            more = s.recv(65536)
            if not more:
                break
            buf += more
        if len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
            print("closed")
            break
        n = int.from_bytes(buf[:2], "big")
        show(buf[2 : 2 + n])
        buf = buf[2 + n :]
"#;

// ---------------------------------------------------------------------------------------------
// Messages.
// ---------------------------------------------------------------------------------------------

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend(flags.to_be_bytes());
    for c in counts {
        h.extend(c.to_be_bytes());
    }
    h
}

/// A question for `name`, type A, class IN.
fn question(name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

/// A standard query (RD) for `name`.
fn query(id: u16, name: &str) -> Vec<u8> {
    [header(id, 0x0100, [1, 0, 0, 0]), question(name)].concat()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A TCP DNS message: its length, then itself.
fn framed(m: &[u8]) -> Vec<u8> {
    [&(m.len() as u16).to_be_bytes()[..], m].concat()
}

/// One malformed message, the reason the audit must give, and the domain it must name.
struct Case {
    what: &'static str,
    msg: Vec<u8>,
    reason: &'static str,
    domain: &'static str,
}

fn cases() -> Vec<Case> {
    // \x01a then a pointer back to the name's own start: a loop.
    let mut looped = header(6, 0x0100, [1, 0, 0, 0]);
    looped.extend([1, b'a', 0xc0, 12, 0, 1, 0, 1]);
    vec![
        Case {
            what: "no question counted, the question present",
            msg: [header(1, 0x0100, [0, 0, 0, 0]), question("denied.test")].concat(),
            reason: "0 questions, not one",
            domain: "denied.test",
        },
        Case {
            what: "two questions, the first allowed",
            msg: [
                header(2, 0x0100, [2, 0, 0, 0]),
                question("allowed.test"),
                question("denied.test"),
            ]
            .concat(),
            reason: "2 questions, not one",
            domain: "allowed.test",
        },
        Case {
            what: "a second question past the counted one",
            msg: [query(3, "allowed.test"), question("denied.test")].concat(),
            reason: "17 bytes after the last record",
            domain: "allowed.test",
        },
        Case {
            what: "a response",
            msg: [header(4, 0x8100, [1, 0, 0, 0]), question("denied.test")].concat(),
            reason: "a response, not a query",
            domain: "denied.test",
        },
        Case {
            what: "a compression loop",
            msg: looped,
            reason: "a compression pointer in the question name",
            domain: "",
        },
        Case {
            what: "an unassigned opcode",
            msg: [header(5, 0x1900, [1, 0, 0, 0]), question("denied.test")].concat(),
            reason: "opcode 3, not a standard query",
            domain: "denied.test",
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Running and checking.
// ---------------------------------------------------------------------------------------------

/// The world, its lenient server, and the client's script (`client.py`).
fn world() -> NetWorld {
    let mut nw = NetWorld::new();
    nw.serve_raw_dns(SERVER);
    std::fs::write(nw.path("client.py"), CLIENT).unwrap();
    nw
}

fn python() -> String {
    std::fs::canonicalize("/usr/bin/python3")
        .unwrap()
        .display()
        .to_string()
}

/// The client under the defender with `effect`; its output lines, and the `dns` audits it added.
fn attack(nw: &NetWorld, effect: &str, mode: &str, args: &[String]) -> (Output, Vec<Value>) {
    let before = nw.audits_of("dns").len();
    let mut argv = vec!["/usr/bin/python3", "client.py", mode, SERVER];
    argv.extend(args.iter().map(String::as_str));
    let out = nw.run(&policy(effect), &argv);
    let audits = nw.audits_of("dns")[before..].to_vec();
    (out, audits)
}

/// The client's output lines.
fn lines(out: &Output) -> Vec<String> {
    stdout(out).lines().map(str::to_owned).collect()
}

/// A `dns` audit of a malformed message.
fn check_malformed(a: &Value, effect: &str, reason: &str, domain: &str) {
    check_audit(a, "dns", effect, RULE, false, &python());
    assert_eq!(a["domain"], domain, "{a}");
    assert_eq!(
        a["message"],
        format!(
            "Malformed DNS message ({reason}) sent by {} is not allowed by a runtime rule",
            python()
        ),
        "{a}"
    );
}

/// Whether any message that reached the server holds `needle`.
fn server_saw(nw: &NetWorld, needle: &[u8]) -> bool {
    nw.raw_dns_messages(SERVER)
        .iter()
        .any(|(_, m)| m.windows(needle.len()).any(|w| w == needle))
}

const DENIED: &[u8] = b"\x06denied\x04test\x00";

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

/// Natively, the lenient server reads what it is sent: what the defender stops is real.
#[test]
fn natively_every_malformed_message_reaches_the_server() {
    let nw = world();
    for case in cases() {
        let msg = hex(&case.msg);
        let out = nw.native(&["/usr/bin/python3", "client.py", "udp-connect", SERVER, &msg]);
        assert!(stdout(&out).contains("rcode=0"), "{}: {out:?}", case.what);
        assert!(
            nw.raw_dns_messages(SERVER)
                .iter()
                .any(|(kind, m)| kind == "udp" && *m == case.msg),
            "{}",
            case.what
        );
    }
}

/// Under `prevent`, each malformed message sent on a connected UDP socket (the forwarder) is
/// answered FORMERR with its id, never reaches the server, and is audited with its reason.
#[test]
fn prevent_refuses_malformed_datagrams() {
    let nw = world();
    for case in cases() {
        let (out, audits) = attack(&nw, "prevent", "udp-connect", &[hex(&case.msg)]);
        let id = u16::from_be_bytes([case.msg[0], case.msg[1]]);
        assert_eq!(
            lines(&out),
            [format!("id={id} rcode=1")],
            "{}: {}",
            case.what,
            stderr(&out)
        );
        assert_eq!(audits.len(), 1, "{}: {audits:#?}", case.what);
        check_malformed(&audits[0], "prevent", case.reason, case.domain);
    }
    assert_eq!(
        nw.raw_dns_messages(SERVER),
        vec![],
        "the server received a refused message"
    );
}

/// An unconnected socket's `sendto` (musl's resolver) is judged where it is trapped: a malformed
/// message is refused with EPERM and audited, and nothing reaches the server.
#[test]
fn prevent_refuses_malformed_sendto() {
    let nw = world();
    for case in cases() {
        let (out, audits) = attack(&nw, "prevent", "udp-sendto", &[hex(&case.msg)]);
        assert_eq!(
            lines(&out),
            [format!("errno {}", libc::EPERM)],
            "{}: {}",
            case.what,
            stderr(&out)
        );
        assert_eq!(audits.len(), 1, "{}: {audits:#?}", case.what);
        check_malformed(&audits[0], "prevent", case.reason, case.domain);
    }
    assert_eq!(nw.raw_dns_messages(SERVER), vec![]);
}

/// Over TCP each length-prefixed message is judged on its own: two in one segment (an allowed
/// query, then a denied one, then a malformed one) get the server's answer, NXDOMAIN and FORMERR;
/// only the first reaches the server.
#[test]
fn prevent_judges_each_message_of_a_tcp_segment() {
    let nw = world();
    let allowed = query(10, "allowed.test");
    let denied = query(11, "denied.test");
    let malformed = [header(12, 0x0100, [0, 0, 0, 0]), question("denied.test")].concat();
    let segment = [framed(&allowed), framed(&denied), framed(&malformed)].concat();
    let (out, audits) = attack(&nw, "prevent", "tcp", &["3".into(), hex(&segment)]);
    assert_eq!(
        lines(&out),
        ["id=10 rcode=0", "id=11 rcode=3", "id=12 rcode=1"],
        "{}",
        stderr(&out)
    );
    assert_eq!(nw.raw_dns_messages(SERVER), vec![("tcp".into(), allowed)]);
    assert_eq!(audits.len(), 2, "{audits:#?}");
    check_audit(&audits[0], "dns", "prevent", RULE, true, &python());
    assert_eq!(audits[0]["domain"], "denied.test");
    check_malformed(&audits[1], "prevent", "0 questions, not one", "denied.test");
}

/// A message split across segments (inside its length, inside its name) is judged whole: the
/// denied one is refused and never reaches the server, the allowed one reaches it unchanged.
#[test]
fn prevent_judges_a_message_split_across_segments() {
    let nw = world();
    let denied = framed(&query(20, "denied.test"));
    let allowed = framed(&query(21, "allowed.test"));
    let segments = [
        &denied[..1],
        &denied[1..20],
        &denied[20..],
        &allowed[..15],
        &allowed[15..],
    ]
    .map(hex);
    let mut args = vec!["2".to_string()];
    args.extend(segments);
    let (out, audits) = attack(&nw, "prevent", "tcp", &args);
    assert_eq!(
        lines(&out),
        ["id=20 rcode=3", "id=21 rcode=0"],
        "{}",
        stderr(&out)
    );
    assert_eq!(
        nw.raw_dns_messages(SERVER),
        vec![("tcp".into(), allowed[2..].to_vec())]
    );
    assert_eq!(audits.len(), 1, "{audits:#?}");
    assert_eq!(audits[0]["domain"], "denied.test");
}

/// A malformed message over TCP is answered FORMERR, and the connection goes on.
#[test]
fn prevent_refuses_malformed_tcp_messages() {
    let nw = world();
    for case in cases() {
        let (out, audits) = attack(
            &nw,
            "prevent",
            "tcp",
            &["1".into(), hex(&framed(&case.msg))],
        );
        let id = u16::from_be_bytes([case.msg[0], case.msg[1]]);
        assert_eq!(
            lines(&out),
            [format!("id={id} rcode=1")],
            "{}: {}",
            case.what,
            stderr(&out)
        );
        assert_eq!(audits.len(), 1, "{}: {audits:#?}", case.what);
        check_malformed(&audits[0], "prevent", case.reason, case.domain);
    }
    assert!(!server_saw(&nw, DENIED));
    assert_eq!(nw.raw_dns_messages(SERVER), vec![]);
}

/// Under `alert` every malformed message reaches the server unchanged, on every path, and each is
/// audited.
#[test]
fn alert_passes_malformed_messages_and_audits_them() {
    let nw = world();
    for case in cases() {
        for mode in ["udp-connect", "udp-sendto", "tcp"] {
            let args = match mode {
                "tcp" => vec!["1".into(), hex(&framed(&case.msg))],
                _ => vec![hex(&case.msg)],
            };
            let (out, audits) = attack(&nw, "alert", mode, &args);
            let id = u16::from_be_bytes([case.msg[0], case.msg[1]]);
            assert_eq!(
                lines(&out),
                [format!("id={id} rcode=0")],
                "{} ({mode}): {}",
                case.what,
                stderr(&out)
            );
            let want = (mode.split('-').next().unwrap().to_owned(), case.msg.clone());
            assert_eq!(
                nw.raw_dns_messages(SERVER).last(),
                Some(&want),
                "{} ({mode})",
                case.what
            );
            assert_eq!(audits.len(), 1, "{} ({mode}): {audits:#?}", case.what);
            check_malformed(&audits[0], "alert", case.reason, case.domain);
        }
    }
}

/// Under `block` a malformed message stops the container, and never reaches the server.
#[test]
fn block_stops_the_container_on_a_malformed_message() {
    let nw = world();
    let case = &cases()[0];
    let script = format!(
        "/usr/bin/python3 client.py udp-connect {SERVER} {}; echo survived",
        hex(&case.msg)
    );
    let before = nw.audits_of("dns").len();
    let out = nw.run(&policy("block"), &["sh", "-c", &script]);
    assert_blocked(&nw, &out);
    let audits = nw.audits_of("dns")[before..].to_vec();
    assert_eq!(audits.len(), 1, "{audits:#?}");
    check_malformed(&audits[0], "block", case.reason, case.domain);
    assert!(
        !lines(&out).iter().any(|l| l.contains("rcode")),
        "no answer under block: {out:?}"
    );
    assert_eq!(nw.raw_dns_messages(SERVER), vec![]);
}

/// Legitimate queries through the same paths still work: dig (EDNS with a cookie) over UDP and
/// TCP to the lenient server, and plain queries from the client, reach it unchanged.
#[test]
fn well_formed_queries_still_pass() {
    let nw = world();
    for transport in ["+notcp", "+tcp"] {
        let out = nw.run(
            &policy("prevent"),
            &[
                "dig",
                transport,
                "+time=5",
                "+tries=1",
                &format!("@{SERVER}"),
                "allowed.test",
                "A",
            ],
        );
        assert!(
            stdout(&out).contains("status: NOERROR"),
            "{transport}: {out:?}"
        );
    }
    let q = query(30, "allowed.test");
    for mode in ["udp-connect", "udp-sendto"] {
        let (out, audits) = attack(&nw, "prevent", mode, &[hex(&q)]);
        assert_eq!(lines(&out), ["id=30 rcode=0"], "{mode}: {}", stderr(&out));
        assert_eq!(audits, Vec::<Value>::new());
    }
    let seen = nw.raw_dns_messages(SERVER);
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen[2..].iter().all(|(_, m)| *m == q));
    assert_eq!(nw.audits_of("dns"), Vec::<Value>::new());
}
