//! DNS enforcement end to end (issue 3): real resolver clients inside the test's own network world
//! (tests/common/networld.rs: a private network namespace, a dnsmasq that logs every question, a
//! private resolv.conf), each run natively and under the real `defender` binary. Every client
//! asks its own way: glibc (`getent`, `curl`, `wget`, python's `socket.getaddrinfo`: connect +
//! send/sendmmsg), ISC's `dig` over UDP and TCP, musl (`test-programs/src/bin/resolve.rs` built for musl:
//! sendto on an unconnected socket) and Go's pattern (`net_helper dns-connect-write`: connect +
//! write). Under `prevent` a denied name fails fast as "not found", its query never reaches the
//! server, and one `dns` audit names the domain and the client; allowed names resolve exactly as
//! natively; `alert` lets denied names resolve and audits them (docs/policy.md, docs/audit.md).
//!
//! Debian packages: libc-bin (getent), curl, wget, dnsutils (dig), python3, dnsmasq-base,
//! iproute2, util-linux; the musl helper: `cargo build --release --target
//! x86_64-unknown-linux-musl --example resolve` (.ci/run).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::networld::{
    BIG_COUNT, BIG_NAME, NAMESERVER, NetWorld, TTL, WEB, assert_blocked, check_audit,
    musl_test_program,
};
use common::{require, stderr, stdout, test_program};
use serde_json::{Value, json};

/// How fast a prevented name must fail: the "under a second". A swallowed query would
/// take the world's resolver timeout (2 s, twice) or dig's (3 s).
const FAIL_FAST: Duration = Duration::from_secs(1);

const RULE: &str = "dns-test";

/// One rule with only a `dns` section.
fn dns_policy(effect: &str, allow: &[&str], deny: &[&str]) -> String {
    json!({"rules": [{"name": RULE, "dns": {"effect": effect, "allow": allow, "deny": deny}}]})
        .to_string()
}

fn canon(p: impl AsRef<Path>) -> String {
    std::fs::canonicalize(p.as_ref())
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.as_ref().display()))
        .display()
        .to_string()
}

/// A resolver client: how to make it resolve (and, for the HTTP clients, fetch from) a name, and
/// how it says "not found".
struct Client {
    /// The command resolving `name`.
    argv: fn(&str) -> Vec<String>,
    /// The executable the audit must name (its real path).
    exe: fn() -> String,
    /// Whether `out` is the client's "not found".
    not_found: fn(&Output) -> bool,
    /// What the client found, normalized for comparing a defender run with a native one (for dig:
    /// the answer section, TTLs included).
    answer: fn(&Output) -> String,
    /// musl: the defender sends the nameserver a substitute `invalid.` query in place of a denied
    /// one (the contract's exception); every other client's denied query must not reach it at all.
    musl: bool,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn getent() -> Client {
    Client {
        argv: |name| strings(&["getent", "hosts", name]),
        exe: || canon(require("getent")),
        not_found: |o| o.status.code() == Some(2) && o.stdout.is_empty(),
        answer: stdout,
        musl: false,
    }
}

fn curl() -> Client {
    Client {
        argv: |name| {
            strings(&["curl", "-sS", "--max-time", "20"])
                .into_iter()
                .chain([format!("http://{name}/index.html")])
                .collect()
        },
        exe: || canon(require("curl")),
        // curl: 6 = "Couldn't resolve host".
        not_found: |o| o.status.code() == Some(6),
        answer: stdout,
        musl: false,
    }
}

fn wget() -> Client {
    Client {
        argv: |name| {
            strings(&["wget", "-nv", "--tries=1", "-O", "-"])
                .into_iter()
                .chain([format!("http://{name}/index.html")])
                .collect()
        },
        exe: || canon(require("wget")),
        // wget: 4 = network failure, here "unable to resolve host address".
        not_found: |o| {
            o.status.code() == Some(4) && stderr(o).contains("unable to resolve host address")
        },
        answer: stdout,
        musl: false,
    }
}

/// dig's answer section and status, without the parts that differ between runs (id, timing).
fn dig_answer(o: &Output) -> String {
    let out = stdout(o);
    let status = out
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or(s).to_owned())
        .unwrap_or_default();
    let answers: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    format!("status: {status}\n{}", answers.join("\n"))
}

fn dig() -> Client {
    Client {
        argv: |name| strings(&["dig", "+time=3", "+tries=1", name, "A"]),
        exe: || canon(require("dig")),
        not_found: |o| stdout(o).contains("status: NXDOMAIN"),
        answer: dig_answer,
        musl: false,
    }
}

fn dig_tcp() -> Client {
    Client {
        argv: |name| strings(&["dig", "+tcp", "+time=3", "+tries=1", name, "A"]),
        ..dig()
    }
}

/// python3's `socket.getaddrinfo`: prints the addresses found, or the gaierror and exits 3.
const PYTHON_LOOKUP: &str = "import socket, sys\n\
try:\n    infos = socket.getaddrinfo(sys.argv[1], 80, proto=socket.IPPROTO_TCP)\n\
except socket.gaierror as e:\n    print('gaierror', e.errno, e, file=sys.stderr)\n    sys.exit(3)\n\
print('\\n'.join(sorted({i[4][0] for i in infos})))\n";

fn python() -> Client {
    Client {
        argv: |name| strings(&["/usr/bin/python3", "-c", PYTHON_LOOKUP, name]),
        exe: || canon("/usr/bin/python3"),
        // EAI_NONAME is -2: "Name or service not known".
        not_found: |o| o.status.code() == Some(3) && stderr(o).contains("gaierror -2"),
        answer: stdout,
        musl: false,
    }
}

fn musl() -> Client {
    Client {
        argv: |name| {
            vec![
                musl_test_program("resolve").display().to_string(),
                name.to_owned(),
            ]
        },
        exe: || canon(musl_test_program("resolve")),
        // musl's EAI_NONAME: "Name does not resolve".
        not_found: |o| o.status.code() == Some(2) && stderr(o).contains("Name does not resolve"),
        answer: stdout,
        musl: true,
    }
}

fn go_style() -> Client {
    Client {
        argv: |name| {
            vec![
                test_program("net_helper").display().to_string(),
                "dns-connect-write".into(),
                NAMESERVER.into(),
                name.into(),
            ]
        },
        exe: || canon(test_program("net_helper")),
        not_found: |o| stdout(o).contains("rcode=3"),
        answer: stdout,
        musl: false,
    }
}

fn argv_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The one `dns` audit of a run: there must be exactly one.
fn one_dns_audit(nw: &NetWorld, out: &Output) -> Value {
    let audits = nw.audits_of("dns");
    assert_eq!(
        audits.len(),
        1,
        "expected exactly one dns audit, got {audits:#?}\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    audits.into_iter().next().unwrap()
}

/// Checks every field of a `dns` audit the contract fixes.
fn check_dns_audit(a: &Value, effect: &str, domain: &str, process: &str, explicit: bool) {
    let verdict = check_audit(a, "dns", effect, RULE, explicit, process);
    assert_eq!(a["domain"], domain, "{a}");
    assert_eq!(
        a["message"],
        format!(
            "DNS resolution of domain name {domain} triggered by {process} {verdict} by a runtime rule"
        ),
        "{a}"
    );
}

/// Under `prevent`, `client` looking up `denied.test` fails fast as "not found"; the DNS server
/// never sees the question (musl: only the substitute `invalid.`); one audit names the domain
/// and the client.
fn prevented(client: Client) {
    let nw = NetWorld::new();
    let argv = (client.argv)("denied.test");
    let argv = argv_refs(&argv);
    // The world resolves the name natively: what the defender stops is real.
    let native = nw.native(&argv);
    assert!(
        !(client.not_found)(&native),
        "denied.test must resolve natively: {native:?}"
    );
    let before = nw.dns_queries().len();

    let (out, took) = nw.run_timed(&dns_policy("prevent", &[], &["denied.test"]), &argv);
    assert!(
        (client.not_found)(&out),
        "expected \"not found\" under prevent: {out:?}"
    );
    assert!(
        took < FAIL_FAST,
        "a prevented name must fail fast; the run took {took:?}"
    );
    let asked: Vec<String> = nw.dns_queries()[before..]
        .iter()
        .map(|q| q.name.clone())
        .collect();
    if client.musl {
        assert!(
            asked.iter().all(|n| n == "invalid"),
            "the DNS server saw more than the substitute `invalid.` query: {asked:?}"
        );
    } else {
        assert!(
            asked.is_empty(),
            "the DNS server saw questions from the prevented run: {asked:?}"
        );
    }
    let a = one_dns_audit(&nw, &out);
    check_dns_audit(&a, "prevent", "denied.test", &(client.exe)(), true);
}

/// Under a rule denying another name, `client` resolves (and fetches) `allowed.test` exactly as
/// natively, through the real server, with no audit.
fn allowed(client: Client) {
    let nw = NetWorld::new();
    let argv = (client.argv)("allowed.test");
    let argv = argv_refs(&argv);
    let native = nw.native(&argv);
    let native_answer = (client.answer)(&native);
    assert!(
        native.status.success()
            && (native_answer.contains(WEB) || native_answer.contains("hello from")),
        "allowed.test must resolve natively: {native:?}"
    );
    let before = nw.dns_queries().len();

    let out = nw.run(&dns_policy("prevent", &[], &["denied.test"]), &argv);
    assert_eq!(
        (client.answer)(&out),
        native_answer,
        "allowed.test must resolve as natively; stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), native.status.code(), "{out:?}");
    let asked: Vec<String> = nw.dns_queries()[before..]
        .iter()
        .map(|q| q.name.clone())
        .collect();
    assert!(
        asked.iter().any(|n| n == "allowed.test"),
        "the DNS server never saw allowed.test: {asked:?}"
    );
    assert_eq!(nw.audits_of("dns"), Vec::<Value>::new());
}

/// Under `alert`, `client` resolves (and fetches) `denied.test` as natively, and one audit says so.
fn alerted(client: Client) {
    let nw = NetWorld::new();
    let argv = (client.argv)("denied.test");
    let argv = argv_refs(&argv);
    let native = nw.native(&argv);
    let out = nw.run(&dns_policy("alert", &[], &["denied.test"]), &argv);
    assert_eq!(
        (client.answer)(&out),
        (client.answer)(&native),
        "alert must let denied.test resolve as natively; stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), native.status.code(), "{out:?}");
    let a = one_dns_audit(&nw, &out);
    check_dns_audit(&a, "alert", "denied.test", &(client.exe)(), true);
}

/// `prevent::getent`, `allowed::getent`, `alert::getent`, ... for every client.
macro_rules! per_client {
    ($($client:ident),* $(,)?) => {
        mod prevent {
            $(#[test] fn $client() { super::prevented(super::$client()) })*
        }
        mod allowed {
            $(#[test] fn $client() { super::allowed(super::$client()) })*
        }
        mod alert {
            $(#[test] fn $client() { super::alerted(super::$client()) })*
        }
    };
}

per_client!(getent, curl, wget, dig, dig_tcp, python, musl, go_style);

// ---------------------------------------------------------------------------------------------
// The world itself, natively (no defender): what every test above relies on.
// ---------------------------------------------------------------------------------------------

#[test]
fn world_resolves_natively_through_its_own_server() {
    let nw = NetWorld::new();
    let out = nw.native(&["getent", "hosts", "allowed.test"]);
    assert_eq!(stdout(&out).split_whitespace().next(), Some(WEB), "{out:?}");
    let out = nw.native(&["getent", "hosts", "nowhere.test"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown names are NXDOMAIN: {out:?}"
    );
    let out = nw.native(&["dig", "+time=3", "+tries=1", "invalid.", "A"]);
    assert!(stdout(&out).contains("status: NXDOMAIN"), "{out:?}");
    let out = nw.native(&["dig", "+time=3", "+tries=1", "allowed.test", "A"]);
    assert_eq!(
        dig_answer(&out),
        format!("status: NOERROR\nallowed.test.\t\t{TTL}\tIN\tA\t{WEB}")
    );
    let names = nw.dns_names();
    for name in ["allowed.test", "nowhere.test", "invalid"] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Beyond one client: allow lists, names as written, record types, TCP fallback, block, disable.
// ---------------------------------------------------------------------------------------------

#[test]
fn names_outside_the_allow_list_are_not_allowed() {
    let nw = NetWorld::new();
    let policy = dns_policy("prevent", &["allowed.test"], &[]);
    let out = nw.run(&policy, &["getent", "hosts", "other.test"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let a = one_dns_audit(&nw, &out);
    check_dns_audit(
        &a,
        "prevent",
        "other.test",
        &canon(require("getent")),
        false,
    );
    let out = nw.run(&policy, &["getent", "hosts", "allowed.test"]);
    assert_eq!(stdout(&out).split_whitespace().next(), Some(WEB), "{out:?}");
    assert_eq!(nw.audits_of("dns").len(), 1, "{:#?}", nw.audits_of("dns"));
    assert!(!nw.dns_names().iter().any(|n| n == "other.test"));
}

#[test]
fn names_match_case_insensitively_and_without_the_trailing_dot() {
    let nw = NetWorld::new();
    let out = nw.run(
        &dns_policy("prevent", &[], &["denied.test"]),
        &["getent", "hosts", "DeNied.TEST."],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let a = one_dns_audit(&nw, &out);
    check_dns_audit(
        &a,
        "prevent",
        "denied.test",
        &canon(require("getent")),
        true,
    );
    assert!(nw.dns_names().is_empty());
}

#[test]
fn every_record_type_is_checked() {
    let nw = NetWorld::new();
    let policy = dns_policy("prevent", &[], &["denied.test"]);
    for kind in ["AAAA", "TXT", "MX"] {
        let out = nw.run(
            &policy,
            &["dig", "+time=3", "+tries=1", "denied.test", kind],
        );
        assert!(stdout(&out).contains("status: NXDOMAIN"), "{kind}: {out:?}");
    }
    let audits = nw.audits_of("dns");
    assert_eq!(audits.len(), 3, "one audit per run: {audits:#?}");
    assert!(audits.iter().all(|a| a["domain"] == "denied.test"));
    assert!(nw.dns_names().is_empty());
}

/// A query sent straight to a server that is not the configured nameserver (malware with its own
/// resolver address) is checked too.
#[test]
fn queries_to_any_server_are_checked() {
    let nw = NetWorld::new();
    let policy = dns_policy("prevent", &[], &["denied.test"]);
    for transport in ["+notcp", "+tcp"] {
        let argv = [
            "dig",
            transport,
            "+time=3",
            "+tries=1",
            &format!("@{WEB}"),
            "denied.test",
            "A",
        ];
        let out = nw.run(&policy, &argv);
        assert!(
            stdout(&out).contains("status: NXDOMAIN"),
            "{transport}: {out:?}"
        );
    }
    let audits = nw.audits_of("dns");
    assert_eq!(audits.len(), 2, "one audit per run: {audits:#?}");
    for a in &audits {
        check_dns_audit(a, "prevent", "denied.test", &canon(require("dig")), true);
    }
}

/// A TCP Fast Open send carries its data in the SYN, so a DNS query sent that way would reach the
/// server before the forwarder could check it: under DNS enforcement it is refused with
/// EOPNOTSUPP (a resolver then connects first), and the server never sees the question.
#[test]
fn dns_over_tcp_fast_open_is_refused() {
    let nw = NetWorld::new();
    let policy = dns_policy("prevent", &["*.amazonaws.com"], &[]);
    let script = format!(
        "import socket, struct\n\
         q = struct.pack('>HHHHHH', 7, 0x100, 1, 0, 0, 0) + b'\\x03tfo\\x04evil\\x07example\\x00' + struct.pack('>HH', 1, 1)\n\
         s = socket.socket()\n\
         try:\n    s.sendto(struct.pack('>H', len(q)) + q, socket.MSG_FASTOPEN, ('{NAMESERVER}', 53)); print('sent')\n\
         except OSError as e: print('errno', e.errno)\n"
    );
    let out = nw.run(&policy, &["python3", "-c", &script]);
    assert_eq!(
        stdout(&out).trim(),
        format!("errno {}", libc::EOPNOTSUPP),
        "{out:?}"
    );
    assert!(
        !nw.dns_queries().iter().any(|q| q.name.contains("evil")),
        "the server saw the question"
    );
}

/// glibc gets big.test's answer truncated over UDP and asks again over TCP: through the defender
/// the same two questions reach the server and the same 40 addresses come back.
#[test]
fn truncated_answers_fall_back_to_tcp_as_natively() {
    let nw = NetWorld::new();
    let argv = ["getent", "ahostsv4", BIG_NAME];
    let native = nw.native(&argv);
    let native_asked = nw.dns_queries().len();
    let addrs = |o: &Output| {
        let mut v: Vec<String> = stdout(o)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(addrs(&native).len(), BIG_COUNT, "{native:?}");
    let out = nw.run(
        &dns_policy("prevent", &[BIG_NAME, "allowed.test"], &["denied.test"]),
        &argv,
    );
    assert_eq!(addrs(&out), addrs(&native), "{out:?}");
    let queries = nw.dns_queries();
    assert_eq!(
        queries.len() - native_asked,
        native_asked,
        "the defender run must ask what the native run asked: {queries:?}"
    );
    assert_eq!(nw.audits_of("dns"), Vec::<Value>::new());
}

/// A resolver's socket is registered at the forwarder with the process that connected it, whose
/// id the supervisor keeps with the calling thread's pidfd once read (supervisor/net.rs,
/// `Pidfds`). Lookups from a thread that is not the process's first: every audit names the
/// process, never the thread, whether its id was read (the first lookup) or kept (the next).
#[test]
fn audits_of_a_thread_name_its_process_lookup_after_lookup() {
    let nw = NetWorld::new();
    let helper = test_program("net_helper");
    let helper_s = helper.display().to_string();
    let names = ["one.denied.test", "two.denied.test", "allowed.test"];
    let argv: Vec<&str> = [helper_s.as_str(), "thread-resolve"]
        .into_iter()
        .chain(names)
        .collect();
    let out = nw.run(&dns_policy("prevent", &[], &["*.denied.test"]), &argv);
    let text = stdout(&out);
    let ids: Vec<u64> = text
        .split_whitespace()
        .take(2)
        .map(|f| f.split_once('=').and_then(|(_, v)| v.parse().ok()).unwrap())
        .collect();
    let (pid, tid) = (ids[0], ids[1]);
    assert_ne!(
        pid, tid,
        "the lookups must come from a second thread: {text}"
    );
    for (name, want) in [
        ("one.denied.test", "failed"),
        ("two.denied.test", "failed"),
        ("allowed.test", "ok"),
    ] {
        assert!(text.contains(&format!("{name}={want}")), "{name}: {text}");
    }
    let audits = nw.audits_of("dns");
    let domains: Vec<&str> = audits.iter().filter_map(|a| a["domain"].as_str()).collect();
    assert_eq!(domains, names[..2], "{audits:#?}");
    for a in &audits {
        check_dns_audit(
            a,
            "prevent",
            a["domain"].as_str().unwrap(),
            &canon(&helper),
            true,
        );
        assert_eq!(a["pid"], pid, "the process, not thread {tid}: {a}");
    }
}

#[test]
fn block_stops_the_container() {
    let nw = NetWorld::new();
    let out = nw.run(
        &dns_policy("block", &[], &["denied.test"]),
        &["sh", "-c", "getent hosts denied.test; echo survived"],
    );
    assert_blocked(&nw, &out);
    let a = one_dns_audit(&nw, &out);
    check_dns_audit(&a, "block", "denied.test", &canon(require("getent")), true);
    assert!(!nw.dns_names().iter().any(|n| n == "denied.test"));
}

#[test]
fn disabled_dns_checks_nothing() {
    let nw = NetWorld::new();
    for policy in [
        dns_policy("disable", &[], &["denied.test"]),
        json!({"rules": [{"name": RULE, "processes": {"effect": "prevent", "deny": ["nmap"]}}]})
            .to_string(),
    ] {
        let out = nw.run(&policy, &["getent", "hosts", "denied.test"]);
        assert_eq!(stdout(&out).split_whitespace().next(), Some(WEB), "{out:?}");
    }
    assert_eq!(
        common::without_capability_report(nw.audits()),
        Vec::<Value>::new()
    );
    assert_eq!(nw.dns_names(), vec!["denied.test".to_owned()]);
}

/// A query sent with `sendto` is judged on one copy of its payload, and that copy is what goes
/// out: a thread flipping the name in the caller's buffer between an allowed and a denied one
/// never gets the denied one to the server.
#[test]
fn sendto_queries_are_decided_on_a_copy_of_the_payload() {
    let nw = NetWorld::new();
    // Same length, differing within 8 bytes: one aligned store flips the whole difference.
    let (allowed, denied) = ("allowed.test", "denied0.test");
    let helper = test_program("net_helper").display().to_string();
    let argv = [
        helper.as_str(),
        "race-dns",
        NAMESERVER,
        allowed,
        denied,
        "300",
    ];
    let native = nw.native(&argv);
    // Natively the flipper may or may not win a given race (on a busy machine it can sleep
    // through the whole loop): only check that the helper works. Under the defender each trapped
    // send blocks the caller, so the flipper runs; the audits show the denied name was seen.
    assert!(stdout(&native).contains("sent=300"), "{native:?}");
    let before = nw.dns_queries().len();
    let out = nw.run(&dns_policy("prevent", &[], &[denied]), &argv);
    assert!(stdout(&out).starts_with("race: "), "{out:?}");
    let asked: Vec<String> = nw.dns_queries()[before..]
        .iter()
        .map(|q| q.name.clone())
        .collect();
    assert!(
        !asked.iter().any(|n| n == denied),
        "the denied name reached the server: {out:?}"
    );
    assert!(
        asked.iter().any(|n| n == allowed),
        "the allowed name must still go out: {asked:?}"
    );
    assert!(
        nw.audits_of("dns").iter().all(|a| a["domain"] == denied),
        "{:#?}",
        nw.audits_of("dns")
    );
    assert!(
        !nw.audits_of("dns").is_empty(),
        "the denied name was never judged"
    );
}

/// Allowed answers come back untouched: same addresses, same TTL, over UDP and TCP.
#[test]
fn allowed_answers_keep_their_ttl() {
    let nw = NetWorld::new();
    let policy = dns_policy("prevent", &["allowed.test"], &[]);
    for tcp in [false, true] {
        let mut argv = vec!["dig", "+time=3", "+tries=1", "allowed.test", "A"];
        if tcp {
            argv.insert(1, "+tcp");
        }
        let out = nw.run(&policy, &argv);
        assert_eq!(
            dig_answer(&out),
            format!("status: NOERROR\nallowed.test.\t\t{TTL}\tIN\tA\t{WEB}"),
            "tcp: {tcp}: {out:?}"
        );
    }
}
