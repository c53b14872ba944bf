//! Network enforcement end to end (issue 3): outbound connections and the sends that carry a
//! destination, listening ports, io_uring, in the test's own network world
//! (tests/common/networld.rs), each run natively and under the real `defender` binary.
//! `test-programs/src/bin/net_helper.rs` makes the exact calls (connect, sendto, sendmsg, sendmmsg, bind,
//! io_uring_setup) and prints the errno; curl and python3 are the real programs. Denied calls fail
//! with EPERM and write the audits of docs/audit.md; allowed ones behave as natively, including
//! what performing a call for the caller would change (SIGPIPE, `msg_len`, the bind privilege);
//! what would get past the checks (source routes, ancillary data, non-IP families) is refused.
//!
//! Debian packages: curl, python3, coreutils (sha256sum), dnsmasq-base, iproute2, util-linux.

mod common;

use std::path::Path;
use std::process::Output;

use common::networld::{
    DENIED_IP, DENIED_IP6, NetWorld, WEB, WEB6, as_nobody, assert_blocked, check_audit, only,
};
use common::{require, stderr, stdout, test_program};
use serde_json::{Value, json};

const RULE: &str = "net-test";

/// One rule with a `network` section built from `sections` (`outbound`, `outboundPorts`,
/// `listeningPorts`, each `{"allow": [...], "deny": [...]}`).
fn net_policy(effect: &str, sections: Value) -> String {
    let mut network = json!({"effect": effect});
    for (k, v) in sections.as_object().expect("sections").iter() {
        network[k] = v.clone();
    }
    json!({"rules": [{"name": RULE, "network": network}]}).to_string()
}

fn outbound_deny(effect: &str, deny: &[&str]) -> String {
    net_policy(effect, json!({"outbound": {"allow": [], "deny": deny}}))
}

fn canon(p: impl AsRef<Path>) -> String {
    std::fs::canonicalize(p.as_ref())
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.as_ref().display()))
        .display()
        .to_string()
}

fn helper() -> String {
    test_program("net_helper").display().to_string()
}

/// `net_helper ARGS...` natively inside the world; its one result line (`connect=ok`, ...).
fn native(nw: &NetWorld, args: &[&str]) -> String {
    let h = helper();
    let mut argv = vec![h.as_str()];
    argv.extend_from_slice(args);
    let out = nw.native(&argv);
    result_line(&out)
}

/// `net_helper ARGS...` under the defender with `policy`; its result line.
fn guarded(nw: &NetWorld, policy: &str, args: &[&str]) -> String {
    let h = helper();
    let mut argv = vec![h.as_str()];
    argv.extend_from_slice(args);
    let out = nw.run(policy, &argv);
    result_line(&out)
}

fn result_line(out: &Output) -> String {
    let s = stdout(out);
    assert!(
        !s.trim().is_empty(),
        "net_helper printed nothing: {out:?}\nstderr: {}",
        stderr(out)
    );
    s.trim().to_owned()
}

/// Checks every field of a `network` audit the contract fixes.
fn check_network_audit(a: &Value, effect: &str, ip: &str, port: u16, explicit: bool) {
    check_network_audit_of(
        a,
        effect,
        ip,
        port,
        explicit,
        &canon(test_program("net_helper")),
    );
}

fn check_network_audit_of(
    a: &Value,
    effect: &str,
    ip: &str,
    port: u16,
    explicit: bool,
    process: &str,
) {
    let verdict = check_audit(a, "network", effect, RULE, explicit, process);
    assert_eq!(a["ip"], ip, "{a}");
    assert_eq!(a["port"], port, "{a}");
    assert_eq!(
        a["message"],
        format!("Outbound connection by {process} to {ip}:{port} {verdict} by a runtime rule"),
        "{a}"
    );
}

fn check_listen_audit(a: &Value, effect: &str, port: u16, explicit: bool, process: &str) {
    let verdict = check_audit(a, "listen", effect, RULE, explicit, process);
    assert_eq!(a["port"], port, "{a}");
    assert_eq!(
        a["message"],
        format!("Process {process} listening on port {port} {verdict} by a runtime rule"),
        "{a}"
    );
}

/// The network audits written since `before` of them were there.
fn network_audits_since(nw: &NetWorld, before: usize) -> Vec<Value> {
    nw.audits_of("network").split_off(before)
}

// ---------------------------------------------------------------------------------------------
// Outbound: connect
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_to_a_denied_cidr_fails_with_eperm() {
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{DENIED_IP}:80"));
    let target = format!("{DENIED_IP}:80");
    assert_eq!(native(&nw, &["connect", "tcp", &target]), "connect=ok");
    let policy = outbound_deny("prevent", &["203.0.113.0/24"]);
    assert_eq!(
        guarded(&nw, &policy, &["connect", "tcp", &target]),
        "connect=EPERM"
    );
    let a = only(nw.audits_of("network"));
    check_network_audit(&a, "prevent", DENIED_IP, 80, true);

    // A UDP connect is an outbound connection too.
    let udp = format!("{DENIED_IP}:53");
    assert_eq!(native(&nw, &["connect", "udp", &udp]), "connect=ok");
    assert_eq!(
        guarded(&nw, &policy, &["connect", "udp", &udp]),
        "connect=EPERM"
    );
    let a = only(network_audits_since(&nw, 1));
    check_network_audit(&a, "prevent", DENIED_IP, 53, true);
}

#[test]
fn ports_outside_the_allow_list_or_denied_fail() {
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{WEB}:8080"));
    nw.serve_http(&format!("{WEB}:8081"));
    let policy = net_policy(
        "prevent",
        json!({"outboundPorts": {"allow": ["80", "8000-8080"], "deny": ["8080"]}}),
    );
    let at = |port: u16| format!("{WEB}:{port}");
    for port in [80, 8080, 8081] {
        assert_eq!(
            native(&nw, &["connect", "tcp", &at(port)]),
            "connect=ok",
            "port {port} natively"
        );
    }
    assert_eq!(
        guarded(&nw, &policy, &["connect", "tcp", &at(80)]),
        "connect=ok"
    );
    assert!(nw.audits_of("network").is_empty());
    assert_eq!(
        guarded(&nw, &policy, &["connect", "tcp", &at(8081)]),
        "connect=EPERM"
    );
    assert_eq!(
        guarded(&nw, &policy, &["connect", "tcp", &at(8080)]),
        "connect=EPERM",
        "deny wins over allow"
    );
    let audits = nw.audits_of("network");
    assert_eq!(audits.len(), 2, "{audits:#?}");
    check_network_audit(&audits[0], "prevent", WEB, 8081, false);
    check_network_audit(&audits[1], "prevent", WEB, 8080, true);
}

#[test]
fn ipv4_mapped_ipv6_destinations_match_ipv4_rules() {
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{DENIED_IP}:80"));
    let mapped = format!("[::ffff:{DENIED_IP}]:80");
    assert_eq!(native(&nw, &["connect", "tcp", &mapped]), "connect=ok");
    assert_eq!(native(&nw, &["sendto", &mapped]), "sendto=ok");
    let policy = outbound_deny("prevent", &["203.0.113.0/24"]);
    assert_eq!(
        guarded(&nw, &policy, &["connect", "tcp", &mapped]),
        "connect=EPERM"
    );
    assert_eq!(guarded(&nw, &policy, &["sendto", &mapped]), "sendto=EPERM");
    let audits = nw.audits_of("network");
    assert_eq!(audits.len(), 2, "{audits:#?}");
    for a in &audits {
        check_network_audit(a, "prevent", DENIED_IP, 80, true);
    }
}

#[test]
fn ipv6_destinations_are_checked() {
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("[{DENIED_IP6}]:80"));
    nw.serve_http(&format!("[{WEB6}]:80"));
    let denied = format!("[{DENIED_IP6}]:80");
    let allowed = format!("[{WEB6}]:80");
    assert_eq!(native(&nw, &["connect", "tcp", &denied]), "connect=ok");
    let policy = outbound_deny("prevent", &["2001:db8::/32"]);
    assert_eq!(
        guarded(&nw, &policy, &["connect", "tcp", &denied]),
        "connect=EPERM"
    );
    assert_eq!(
        guarded(&nw, &policy, &["connect", "tcp", &allowed]),
        "connect=ok"
    );
    let a = only(nw.audits_of("network"));
    check_network_audit(&a, "prevent", DENIED_IP6, 80, true);
}

/// Loopback is exempt from `allow` lists (containers of one task talk over localhost), not from
/// `deny` entries.
#[test]
fn loopback_is_exempt_from_allow_lists_not_from_deny() {
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{DENIED_IP}:80"));
    nw.serve_http("127.0.0.1:8000");
    nw.serve_http("[::1]:8000");
    let allow = net_policy(
        "prevent",
        json!({"outbound": {"allow": ["10.80.0.0/16"], "deny": []}}),
    );
    for (target, want) in [
        (format!("{WEB}:80"), "connect=ok"),
        ("127.0.0.1:8000".to_owned(), "connect=ok"),
        ("[::1]:8000".to_owned(), "connect=ok"),
        (format!("{DENIED_IP}:80"), "connect=EPERM"),
    ] {
        assert_eq!(native(&nw, &["connect", "tcp", &target]), "connect=ok");
        assert_eq!(
            guarded(&nw, &allow, &["connect", "tcp", &target]),
            want,
            "{target} under an allow list of 10.80.0.0/16"
        );
    }
    let a = only(nw.audits_of("network"));
    check_network_audit(&a, "prevent", DENIED_IP, 80, false);

    let deny = outbound_deny("prevent", &["127.0.0.0/8", "::1/128"]);
    assert_eq!(
        guarded(&nw, &deny, &["connect", "tcp", "127.0.0.1:8000"]),
        "connect=EPERM"
    );
    assert_eq!(
        guarded(&nw, &deny, &["connect", "tcp", "[::1]:8000"]),
        "connect=EPERM"
    );
    let audits = network_audits_since(&nw, 1);
    assert_eq!(audits.len(), 2, "{audits:#?}");
    check_network_audit(&audits[0], "prevent", "127.0.0.1", 8000, true);
    check_network_audit(&audits[1], "prevent", "::1", 8000, true);

    // The unspecified address reaches the host itself: natively 0.0.0.0 and :: connect to the
    // loopback servers, so a loopback deny refuses them, and a loopback-exempt allow list lets
    // them through.
    for (target, shown) in [("0.0.0.0:8000", "0.0.0.0"), ("[::]:8000", "::")] {
        assert_eq!(native(&nw, &["connect", "tcp", target]), "connect=ok");
        assert_eq!(
            guarded(&nw, &deny, &["connect", "tcp", target]),
            "connect=EPERM",
            "{target} under a loopback deny"
        );
        assert_eq!(
            guarded(&nw, &allow, &["connect", "tcp", target]),
            "connect=ok",
            "{target} under an allow list (loopback is exempt)"
        );
        let last = network_audits_since(&nw, 3);
        assert_eq!(last.last().unwrap()["ip"], shown, "{last:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound: the sends that carry a destination
// ---------------------------------------------------------------------------------------------

#[test]
fn udp_sends_to_a_denied_address_fail() {
    let nw = NetWorld::new();
    let target = format!("{DENIED_IP}:9");
    let policy = outbound_deny("prevent", &["203.0.113.0/24"]);
    for (call, ok) in [
        ("sendto", "sendto=ok"),
        ("sendmsg", "sendmsg=ok"),
        ("sendmmsg", "sendmmsg=2 lens=10,12"),
    ] {
        assert_eq!(native(&nw, &[call, &target]), ok);
        assert_eq!(
            guarded(&nw, &policy, &[call, &target]),
            format!("{call}=EPERM")
        );
    }
    let audits = nw.audits_of("network");
    assert_eq!(audits.len(), 3, "one audit per run: {audits:#?}");
    for a in &audits {
        check_network_audit(a, "prevent", DENIED_IP, 9, true);
    }
    // Sends to an address no rule denies go out. The supervisor performs them on a copy, and
    // writes each message's `msg_len` back into the caller's `sendmmsg` headers (0 otherwise).
    let allowed = format!("{WEB}:9");
    for (call, ok) in [
        ("sendto", "sendto=ok"),
        ("sendmsg", "sendmsg=ok"),
        ("sendmmsg", "sendmmsg=2 lens=10,12"),
    ] {
        assert_eq!(guarded(&nw, &policy, &[call, &allowed]), ok);
    }
    assert_eq!(nw.audits_of("network").len(), 3);
}

/// The defender decides on one copy of the address and connects exactly that copy: a thread
/// flipping the caller's sockaddr between an allowed and a denied address never gets a socket
/// connected to the denied one.
#[test]
fn connect_is_decided_on_a_copy_of_the_address() {
    let nw = NetWorld::new();
    let args = ["race-connect", WEB, DENIED_IP, "9", "2000"];
    // Natively the flipper may or may not win a given race (on a busy machine it can sleep
    // through the whole loop): only check that the helper works. The kernel copies the address
    // byte by byte (`copy_from_user`), so a copy made while the word is stored can be torn, a mix
    // of the two addresses: "other", natively as under the defender, whose copy
    // (`process_vm_readv`) is no more atomic; what it decides on is that copy, whatever it holds.
    let natively = tally(&native(&nw, &args));
    assert_eq!(
        natively["allowed"] + natively["denied"] + natively["other"],
        2000,
        "{natively:?}"
    );
    let guarded = tally(&guarded(
        &nw,
        &outbound_deny("prevent", &["203.0.113.0/24"]),
        &args,
    ));
    assert_eq!(
        guarded["denied"], 0,
        "sockets got connected to the denied address: {guarded:?}"
    );
    // The supervisor saw both values (each trapped call blocks the caller, so the flipper runs),
    // and the kernel never connected to the one it had refused.
    assert!(
        guarded["allowed"] > 0 && guarded["eperm"] > 0,
        "both addresses must have been judged: {guarded:?}"
    );
    assert_eq!(
        guarded["allowed"] + guarded["eperm"] + guarded["other"],
        2000,
        "{guarded:?}"
    );
}

/// `race: k=v k=v ...` as a map.
fn tally(line: &str) -> std::collections::BTreeMap<String, u64> {
    line.strip_prefix("race: ")
        .unwrap_or_else(|| panic!("not a race tally: {line:?}"))
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            (k.to_owned(), v.parse().expect("a count"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Effects
// ---------------------------------------------------------------------------------------------

#[test]
fn alert_lets_the_connection_through_and_audits_it() {
    let nw = NetWorld::new();
    let curl = [
        "curl",
        "-sS",
        "--max-time",
        "20",
        &format!("http://{WEB}/index.html"),
    ]
    .map(str::to_owned);
    let curl: Vec<&str> = curl.iter().map(String::as_str).collect();
    let want = stdout(&nw.native(&curl));
    assert!(want.contains("hello from"), "{want:?}");
    let out = nw.run(&outbound_deny("alert", &["10.80.0.1/32"]), &curl);
    assert_eq!(stdout(&out), want, "{out:?}");
    assert!(out.status.success(), "{out:?}");
    let a = only(nw.audits_of("network"));
    check_network_audit_of(&a, "alert", WEB, 80, true, &canon(require("curl")));
}

#[test]
fn block_stops_the_container() {
    let nw = NetWorld::new();
    let script = format!("{} connect tcp {DENIED_IP}:80; echo survived", helper());
    let out = nw.run(
        &outbound_deny("block", &["203.0.113.0/24"]),
        &["sh", "-c", &script],
    );
    assert_blocked(&nw, &out);
    let a = only(nw.audits_of("network"));
    check_network_audit(&a, "block", DENIED_IP, 80, true);
}

// ---------------------------------------------------------------------------------------------
// Allowed connections carry data unchanged, both ways
// ---------------------------------------------------------------------------------------------

/// 10 MB down and 10 MB up through an allowed connection (name resolved through the defender
/// too): the bytes that arrive are the bytes that were sent.
#[test]
fn allowed_connections_carry_ten_megabytes_both_ways_unchanged() {
    let nw = NetWorld::new();
    let data = pseudo_random(10 * 1024 * 1024);
    let served = nw.web_file("ten.bin", &data);
    let policy = json!({"rules": [{
        "name": RULE,
        // The nameserver is a destination like any other: the allow list must name it.
        "network": {"effect": "prevent", "outbound": {"allow": ["10.80.0.0/16", "10.53.0.1/32"], "deny": ["203.0.113.0/24"]}},
        "dns": {"effect": "prevent", "allow": ["allowed.test"], "deny": []},
    }]})
    .to_string();
    let got = nw.path("got.bin");
    let out = nw.run(
        &policy,
        &[
            "curl",
            "-sS",
            "--max-time",
            "60",
            "-o",
            got.to_str().unwrap(),
            "http://allowed.test/ten.bin",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read(&got).unwrap() == data,
        "the 10 MB download arrived changed"
    );

    let sha = std::process::Command::new(require("sha256sum"))
        .arg(&served)
        .output()
        .expect("sha256sum");
    let want = stdout(&sha).split_whitespace().next().unwrap().to_owned();
    let upload = format!("@{}", served.display());
    let out = nw.run(
        &policy,
        &[
            "curl",
            "-sS",
            "--max-time",
            "60",
            "-H",
            "Expect:",
            "--data-binary",
            &upload,
            "http://allowed.test/upload",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        want,
        "the server's sha256 of the 10 MB upload"
    );
    assert_eq!(nw.audits_of("network"), Vec::<Value>::new());
    assert_eq!(nw.audits_of("dns"), Vec::<Value>::new());
}

/// Bytes no compressor or lucky alignment would pass through unchanged by accident.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Listening ports
// ---------------------------------------------------------------------------------------------

#[test]
fn python_http_server_on_a_port_outside_the_listening_allow_list_fails() {
    let nw = NetWorld::new();
    let policy = net_policy(
        "prevent",
        json!({"listeningPorts": {"allow": ["8080"], "deny": []}}),
    );
    let out = nw.run(
        &policy,
        &[
            "/usr/bin/python3",
            "-m",
            "http.server",
            "2222",
            "--bind",
            "127.0.0.1",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "python must report EPERM: {}",
        stderr(&out)
    );
    let audits = nw.audits_of("listen");
    assert_eq!(audits.len(), 1, "{audits:#?}");
    check_listen_audit(
        &audits[0],
        "prevent",
        2222,
        false,
        &canon("/usr/bin/python3"),
    );
    assert!(nw.audits_of("network").is_empty());
}

#[test]
fn binds_are_checked_on_non_zero_ports_tcp_and_udp() {
    let nw = NetWorld::new();
    let policy = net_policy(
        "prevent",
        json!({"listeningPorts": {"allow": ["8000-8100"], "deny": ["8081"]}}),
    );
    let process = canon(test_program("net_helper"));
    for (args, want) in [
        (["bind", "tcp", "0.0.0.0:8080"], "bind=ok"),
        (["bind", "tcp", "[::]:8080"], "bind=ok"),
        (["bind", "udp", "0.0.0.0:8080"], "bind=ok"),
        // Port 0: the kernel picks; nothing to check.
        (["bind", "tcp", "127.0.0.1:0"], "bind=ok"),
        (["bind", "udp", "0.0.0.0:0"], "bind=ok"),
        (["bind", "tcp", "0.0.0.0:2222"], "bind=EPERM"),
        (["bind", "udp", "0.0.0.0:2222"], "bind=EPERM"),
        (["bind", "tcp", "[::]:8081"], "bind=EPERM"),
    ] {
        assert_eq!(native(&nw, &args), "bind=ok", "{args:?} natively");
        assert_eq!(guarded(&nw, &policy, &args), want, "{args:?}");
    }
    let audits = nw.audits_of("listen");
    assert_eq!(audits.len(), 3, "{audits:#?}");
    check_listen_audit(&audits[0], "prevent", 2222, false, &process);
    check_listen_audit(&audits[1], "prevent", 2222, false, &process);
    check_listen_audit(&audits[2], "prevent", 8081, true, &process);
}

#[test]
fn listen_alert_lets_the_bind_through_and_audits_it() {
    let nw = NetWorld::new();
    let policy = net_policy(
        "alert",
        json!({"listeningPorts": {"allow": ["8080"], "deny": []}}),
    );
    assert_eq!(
        guarded(&nw, &policy, &["bind", "tcp", "0.0.0.0:2222"]),
        "bind=ok"
    );
    let audits = nw.audits_of("listen");
    assert_eq!(audits.len(), 1, "{audits:#?}");
    check_listen_audit(
        &audits[0],
        "alert",
        2222,
        false,
        &canon(test_program("net_helper")),
    );
}

// ---------------------------------------------------------------------------------------------
// io_uring, unix sockets, and rules without network sections
// ---------------------------------------------------------------------------------------------

/// io_uring's CONNECT and SENDMSG never pass seccomp: while network or DNS enforcement is on,
/// `io_uring_setup` is refused, said at start and at each attempt.
#[test]
fn io_uring_is_refused_while_network_enforcement_is_on() {
    let nw = NetWorld::new();
    assert_eq!(
        native(&nw, &["io-uring"]),
        "io_uring_setup=ok",
        "io_uring must work natively for this test to mean anything"
    );
    let dns_only =
        json!({"rules": [{"name": RULE, "dns": {"effect": "alert", "deny": ["denied.test"]}}]})
            .to_string();
    for policy in [outbound_deny("prevent", &["203.0.113.0/24"]), dns_only] {
        // Said once at start, whether or not the workload ever tries.
        let before = io_uring_reports(&nw);
        assert_eq!(
            guarded(&nw, &policy, &["connect", "tcp", &format!("{WEB}:80")]),
            "connect=ok"
        );
        assert_eq!(
            io_uring_reports(&nw),
            before + 1,
            "expected one defender audit about io_uring at start: {:#?}",
            nw.audits_of("defender")
        );
        let before = io_uring_reports(&nw);
        assert_eq!(
            guarded(&nw, &policy, &["io-uring"]),
            "io_uring_setup=EPERM",
            "{policy}"
        );
        let reports = io_uring_reports(&nw);
        assert!(
            reports >= before + 2,
            "expected a defender audit about io_uring at start and one for the attempt: {:#?}",
            nw.audits_of("defender")
        );
    }
}

fn io_uring_reports(nw: &NetWorld) -> usize {
    nw.audits_of("defender")
        .iter()
        .filter(|a| {
            a["message"]
                .as_str()
                .is_some_and(|m| m.contains("io_uring"))
        })
        .count()
}

#[test]
fn unix_sockets_are_never_checked() {
    let nw = NetWorld::new();
    let dir = nw.path("sockets");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.to_str().unwrap();
    let policy = net_policy(
        "prevent",
        json!({
            "outbound": {"allow": ["10.80.0.1/32"], "deny": ["0.0.0.0/0", "::/0"]},
            "outboundPorts": {"allow": ["80"], "deny": []},
            "listeningPorts": {"allow": ["8080"], "deny": []},
        }),
    );
    assert_eq!(native(&nw, &["unix", dir]), "unix=ok");
    assert_eq!(guarded(&nw, &policy, &["unix", dir]), "unix=ok");
    assert!(nw.audits_of("network").is_empty());
    assert!(nw.audits_of("listen").is_empty());
}

/// A rule with no network and no dns section, or both `disable`, traps and audits nothing
/// network-related: every call behaves as natively, io_uring included.
#[test]
fn rules_without_network_sections_check_nothing() {
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{DENIED_IP}:80"));
    let lists = json!({
        "outbound": {"allow": [], "deny": ["0.0.0.0/0", "::/0"]},
        "listeningPorts": {"allow": ["8080"], "deny": []},
    });
    let mut disabled = json!({"effect": "disable"});
    for (k, v) in lists.as_object().unwrap() {
        disabled[k] = v.clone();
    }
    let policies = [
        json!({"rules": [{"name": RULE, "processes": {"effect": "prevent", "deny": ["nmap"]}}]}),
        json!({"rules": [{"name": RULE, "network": disabled, "dns": {"effect": "disable", "deny": ["*"]}}]}),
    ];
    let denied = format!("{DENIED_IP}:80");
    for policy in policies.map(|p| p.to_string()) {
        for (args, want) in [
            (vec!["connect", "tcp", denied.as_str()], "connect=ok"),
            (vec!["sendto", denied.as_str()], "sendto=ok"),
            (vec!["sendmmsg", denied.as_str()], "sendmmsg=2 lens=10,12"),
            (vec!["bind", "tcp", "0.0.0.0:2222"], "bind=ok"),
            (vec!["io-uring"], "io_uring_setup=ok"),
        ] {
            assert_eq!(
                guarded(&nw, &policy, &args),
                want,
                "{args:?} under {policy}"
            );
        }
        let out = nw.run(&policy, &["getent", "hosts", "denied.test"]);
        assert_eq!(stdout(&out).split_whitespace().next(), Some(WEB), "{out:?}");
    }
    assert_eq!(
        common::without_capability_report(nw.audits()),
        Vec::<Value>::new()
    );
}

// ---------------------------------------------------------------------------------------------
// What performing a call for the caller changes, put back; what would get past the checks, refused
// ---------------------------------------------------------------------------------------------

/// Socket calls by name, each printing `NAME=ok` or `NAME=ERRNO` (`SIGPIPE` cases print how the
/// signal came). Python, because its `socket` module makes each call as written, ancillary data
/// and setsockopt bytes included.
const SOCKET_CALLS: &str = r#"
import array, errno, os, signal, socket, sys

def report(name, call):
    try:
        call()
        print(name + "=ok")
    except OSError as e:
        print(name + "=" + errno.errorcode.get(e.errno, str(e.errno)))

def sendmsg(cmsg):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return lambda: s.sendmsg([b"x"], cmsg, 0, (sys.argv[1], 9))

def broken_pipe(flags):
    # SIGPIPE blocked (Python ignores it: back to default first), so that it stays pending and
    # says who sent it: the kernel's own has the sender's pid, a kill(2) its killer's.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGPIPE])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    c = socket.create_connection(listener.getsockname())
    listener.accept()[0].close()
    # The first send after the peer's FIN draws its RST; a send after that breaks the pipe.
    err = "none"
    for _ in range(100000):
        try:
            c.sendmsg([b"x"], [], flags)
        except OSError as e:
            err = errno.errorcode.get(e.errno, str(e.errno))
            break
    info = signal.sigtimedwait([signal.SIGPIPE], 0)
    if info is None:
        sender = "none"
    elif info.si_pid == os.getpid():
        sender = "self"
    elif info.si_pid == os.getppid():
        sender = "parent"
    else:
        sender = "pid %d" % info.si_pid
    return "send=%s sigpipe=%s" % (err, sender)

rthdr = bytes([0, 2, 0, 1, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
ip_nops = b"\x01\x01\x01\x00"
for name in sys.argv[2:]:
    if name == "cmsg-ttl":
        report(name, sendmsg([(socket.IPPROTO_IP, socket.IP_TTL, (5).to_bytes(4, sys.byteorder))]))
    elif name == "cmsg-retopts":
        # IP_RETOPTS (7): IP options for this datagram, a source route among them.
        report(name, sendmsg([(socket.IPPROTO_IP, 7, ip_nops)]))
    elif name == "cmsg-rights":
        report(name, sendmsg([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0]).tobytes())]))
    elif name == "ip-options":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        report(name, lambda: s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, ip_nops))
    elif name == "ipv6-rthdr":
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        report(name, lambda: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, rthdr))
    elif name == "vsock":
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        report(name, lambda: s.connect((2, 9999)))
    elif name == "netlink":
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        report(name, lambda: s.bind((0, 0)))
    elif name in ("bind-80", "bind-8080"):
        s = socket.socket()
        report(name, lambda: s.bind(("127.0.0.1", int(name[5:]))))
    elif name == "sigpipe":
        print(name + ": " + broken_pipe(0))
    elif name == "sigpipe-nosignal":
        print(name + ": " + broken_pipe(socket.MSG_NOSIGNAL))
    else:
        sys.exit("unknown call " + name)
"#;

/// [`SOCKET_CALLS`] `calls` (sends go to `WEB:9`), natively or under the defender with `policy`,
/// prefixed by `prefix` (e.g. `setpriv` to another user); its output lines.
fn socket_calls(nw: &NetWorld, policy: Option<&str>, prefix: &[&str], calls: &[&str]) -> String {
    let mut argv = prefix.to_vec();
    argv.extend(["/usr/bin/python3", "-c", SOCKET_CALLS, WEB]);
    argv.extend_from_slice(calls);
    let out = match policy {
        Some(p) => nw.run(p, &argv),
        None => nw.native(&argv),
    };
    assert!(out.status.success(), "{calls:?}: {out:?}");
    stdout(&out)
}

/// The `defender` events whose message starts with `what`.
fn refusals(nw: &NetWorld, what: &str) -> Vec<Value> {
    nw.audits_of("defender")
        .into_iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with(what)))
        .collect()
}

/// A `defender` event refusing `what` by python, under the rule.
fn check_refusal(e: &Value, what: &str) {
    let m = e["message"].as_str().unwrap();
    let by = format!("{what} by {} (pid ", canon("/usr/bin/python3"));
    assert!(m.starts_with(&by), "{m}");
    assert!(
        m.contains("refused while network and DNS calls are checked"),
        "{m}"
    );
    assert_eq!(e["rule"], RULE, "{e}");
    assert_eq!(e["container"], "test-container", "{e}");
}

/// The supervisor sends with MSG_NOSIGNAL (its own SIGPIPE would be ignored, not the caller's);
/// when the kernel would have signalled the caller, the supervisor does. Natively the kernel's
/// SIGPIPE names the sender itself; under the defender, the supervisor (the command's parent).
/// With MSG_NOSIGNAL the caller asked for none and gets none.
#[test]
fn a_send_on_a_broken_connection_gets_its_sigpipe_as_from_the_kernel() {
    let nw = NetWorld::new();
    let calls = ["sigpipe", "sigpipe-nosignal"];
    assert_eq!(
        socket_calls(&nw, None, &[], &calls),
        "sigpipe: send=EPIPE sigpipe=self\nsigpipe-nosignal: send=EPIPE sigpipe=none\n"
    );
    let policy = outbound_deny("prevent", &["203.0.113.0/24"]);
    assert_eq!(
        socket_calls(&nw, Some(&policy), &[], &calls),
        "sigpipe: send=EPIPE sigpipe=parent\nsigpipe-nosignal: send=EPIPE sigpipe=none\n"
    );
}

/// A bind the supervisor performs carries its own CAP_NET_BIND_SERVICE; so a bind below
/// `net.ipv4.ip_unprivileged_port_start` (1024 in the world's fresh network namespace) by a
/// caller without the capability is refused with the kernel's own EACCES, and one by a caller
/// with it goes through.
#[test]
fn a_bind_below_the_unprivileged_ports_needs_the_callers_own_capability() {
    let nw = NetWorld::new();
    let start = nw.native(&["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]);
    assert_eq!(stdout(&start).trim(), "1024", "{start:?}");
    let nobody = as_nobody();
    let nobody: Vec<&str> = nobody.iter().map(String::as_str).collect();
    let calls = ["bind-80", "bind-8080"];
    let policy = outbound_deny("prevent", &["203.0.113.0/24"]);
    assert_eq!(
        socket_calls(&nw, None, &nobody, &calls),
        "bind-80=EACCES\nbind-8080=ok\n"
    );
    assert_eq!(
        socket_calls(&nw, Some(&policy), &nobody, &calls),
        "bind-80=EACCES\nbind-8080=ok\n"
    );
    assert_eq!(
        socket_calls(&nw, Some(&policy), &[], &calls),
        "bind-80=ok\nbind-8080=ok\n"
    );
    assert!(nw.audits_of("listen").is_empty(), "{:?}", nw.audits());
}

/// Ancillary data on a send the supervisor performs is limited to kinds that need no privilege
/// and cannot send the datagram elsewhere: a TTL passes, IP options (a source route) and
/// SCM_RIGHTS (meaningless on an IP socket, which the kernel takes) get EPERM, to an address the
/// rule allows, each with a `defender` event naming the refused kind.
#[test]
fn ancillary_data_that_could_redirect_or_needs_privilege_is_refused() {
    let nw = NetWorld::new();
    let calls = ["cmsg-ttl", "cmsg-retopts", "cmsg-rights"];
    assert_eq!(
        socket_calls(&nw, None, &[], &calls),
        "cmsg-ttl=ok\ncmsg-retopts=ok\ncmsg-rights=ok\n"
    );
    let policy = outbound_deny("prevent", &["203.0.113.0/24"]);
    assert_eq!(
        socket_calls(&nw, Some(&policy), &[], &calls),
        "cmsg-ttl=ok\ncmsg-retopts=EPERM\ncmsg-rights=EPERM\n"
    );
    assert!(nw.audits_of("network").is_empty(), "{:?}", nw.audits());
    let events = refusals(&nw, "Ancillary data");
    assert_eq!(events.len(), 2, "{:#?}", nw.audits());
    // IP_RETOPTS is (SOL_IP 0, 7); SCM_RIGHTS is (SOL_SOCKET 1, 1).
    check_refusal(&events[0], "Ancillary data of level 0 and type 7 on a send");
    check_refusal(&events[1], "Ancillary data of level 1 and type 1 on a send");
}

/// A source route set with setsockopt (IP_OPTIONS, IPV6_RTHDR) would send later packets to
/// another host first: refused with EPERM while network calls are checked, each with a
/// `defender` event. Natively IP_OPTIONS succeeds and the kernel refuses a type-0 routing
/// header itself (EINVAL): the defender's EPERM comes before it.
#[test]
fn source_routes_are_refused_while_network_calls_are_checked() {
    let nw = NetWorld::new();
    let calls = ["ip-options", "ipv6-rthdr"];
    assert_eq!(
        socket_calls(&nw, None, &[], &calls),
        "ip-options=ok\nipv6-rthdr=EINVAL\n"
    );
    let policy = outbound_deny("prevent", &["203.0.113.0/24"]);
    assert_eq!(
        socket_calls(&nw, Some(&policy), &[], &calls),
        "ip-options=EPERM\nipv6-rthdr=EPERM\n"
    );
    let events = refusals(&nw, "A source route");
    assert_eq!(events.len(), 2, "{:#?}", nw.audits());
    for e in &events {
        check_refusal(e, "A source route (setsockopt)");
    }
}

/// A family that reaches other hosts by other means than an IP address (here AF_VSOCK) cannot
/// be judged: refused under a `prevent` network section, with a `defender` event; let through
/// under `alert`. Netlink stays on the host: performed under `prevent` too.
#[test]
fn non_ip_families_are_refused_under_prevent() {
    let nw = NetWorld::new();
    let calls = ["vsock", "netlink"];
    let native = socket_calls(&nw, None, &[], &calls);
    assert!(
        native.ends_with("netlink=ok\n") && !native.contains("vsock=EPERM"),
        "{native}"
    );
    let prevent = outbound_deny("prevent", &["203.0.113.0/24"]);
    assert_eq!(
        socket_calls(&nw, Some(&prevent), &[], &calls),
        "vsock=EPERM\nnetlink=ok\n"
    );
    let events = refusals(&nw, "A socket call of address family");
    check_refusal(
        &only(events),
        &format!("A socket call of address family {}", libc::AF_VSOCK),
    );
    let alert = outbound_deny("alert", &["203.0.113.0/24"]);
    assert_eq!(socket_calls(&nw, Some(&alert), &[], &calls), native);
    assert_eq!(
        refusals(&nw, "A socket call of address family").len(),
        1,
        "{:#?}",
        nw.audits()
    );
}
