//! Network enforcement end to end (issue 3): outbound connections and the sends that carry a
//! destination, listening ports, io_uring, in the test's own network world
//! (tests/common/networld.rs), each run natively and under the real `defender` binary.
//! `test-programs/src/bin/net_helper.rs` makes the exact calls (connect, sendto, sendmsg, sendmmsg, bind,
//! io_uring_setup) and prints the errno; curl and python3 are the real programs. Denied calls fail
//! with EPERM and write the audits of spec/audit.md; allowed ones behave as natively.
//!
//! Debian packages: curl, python3, coreutils (sha256sum), dnsmasq-base, iproute2, util-linux.

mod common;

use std::path::Path;
use std::process::Output;

use common::networld::{
    DENIED_IP, DENIED_IP6, NetWorld, WEB, WEB6, assert_blocked, check_audit, only,
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
        ("sendmmsg", "sendmmsg=2"),
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
    // Sends to an address no rule denies go out.
    let allowed = format!("{WEB}:9");
    for (call, ok) in [
        ("sendto", "sendto=ok"),
        ("sendmsg", "sendmsg=ok"),
        ("sendmmsg", "sendmmsg=2"),
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
    // through the whole loop): only check that the helper works.
    let natively = tally(&native(&nw, &args));
    assert_eq!(
        natively["allowed"] + natively["denied"],
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
    assert_eq!(guarded["other"], 0, "{guarded:?}");
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
            (vec!["sendmmsg", denied.as_str()], "sendmmsg=2"),
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
