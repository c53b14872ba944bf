//! Network and DNS rules that arrive from the console while the command runs (issues 3 and 4): a
//! defender started with `--console` traps socket calls from the start, so a rule that the first
//! revision did not have decides the workload's next connect or lookup once the console sends it,
//! and stops deciding once the console takes it back. The console, the defender and the workload
//! all run inside the network tests' world (tests/common/networld.rs).
//!
//! Debian packages: as tests/network.rs and tests/dns.rs (dnsmasq-base, iproute2, util-linux,
//! python3, libc-bin).

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::console::{self, Console};
use common::networld::{DENIED_IP, NetWorld, WEB, check_audit};
use common::{HANG_GUARD, finish_within, require, spawn_piped, stderr, test_program, wait_until};
use serde_json::{Value, json};

const RULE: &str = "console-net";

/// The issue's bound: a policy PUT to the console decides the workload's calls within 2 s.
const ISSUE_BOUND: Duration = Duration::from_secs(2);

/// The first revision: a rule in force with neither a `network` nor a `dns` section.
fn without_network() -> String {
    json!({"rules": [{"name": RULE, "processes": {"effect": "prevent", "deny": ["nmap"]}}]})
        .to_string()
}

fn with_section(section: &str, body: Value) -> String {
    json!({"rules": [{
        "name": RULE,
        "processes": {"effect": "prevent", "deny": ["nmap"]},
        section: body,
    }]})
    .to_string()
}

fn canon(p: impl AsRef<Path>) -> String {
    std::fs::canonicalize(p.as_ref())
        .unwrap()
        .display()
        .to_string()
}

/// A console and a defender inside one network world, the defender running `sh -c LOOP` where
/// LOOP runs `attempt` every 50 ms until the file `stop` exists, appending one line per try to
/// the file `tries`.
struct Live {
    nw: NetWorld,
    console: Console,
    child: Option<Child>,
}

impl Live {
    /// `nw` with a console whose first revision is [`without_network`], and the defender
    /// running the loop against it.
    fn start(nw: NetWorld, attempt: &str) -> Live {
        let script = format!("while [ ! -e stop ]; do {attempt} >> tries; sleep 0.05; done");
        Live::start_command(nw, &["sh", "-c", &script])
    }

    /// [`Live::start`] with a workload of its own, which appends a line to `tries` for each try
    /// until `stop` exists.
    fn start_command(nw: NetWorld, command: &[&str]) -> Live {
        let console = Console::start_in(&nw, &nw.path("data"));
        let first = console.put_policy(&without_network());
        let child = spawn_piped(&mut console::defender(
            &nw,
            &console.url(),
            &nw.path("state"),
            &[],
            command,
        ));
        let live = Live {
            nw,
            console,
            child: Some(child),
        };
        assert!(
            wait_until(HANG_GUARD, || live.tries().len() >= 3),
            "the workload does not run: {:?}",
            live.nw.audits()
        );
        live.assert_applied(first);
        live
    }

    fn tries(&self) -> Vec<String> {
        std::fs::read_to_string(self.nw.path("tries"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the workload has made `n` more tries than now; returns them all.
    fn more_tries(&self, n: usize) -> Vec<String> {
        let now = self.tries().len();
        assert!(
            wait_until(HANG_GUARD, || self.tries().len() >= now + n),
            "the workload stopped trying: {:?}",
            self.tries()
        );
        self.tries()
    }

    /// The defender said it applied `revision` (it has by the time the workload obeys it).
    fn assert_applied(&self, revision: u64) {
        let text = format!("Policy revision {revision} from the console applied");
        assert!(
            wait_until(HANG_GUARD, || console::defender_events(&self.nw, &text)
                .len()
                == 1),
            "{text}: {:#?}",
            self.nw.audits()
        );
    }

    /// PUTs `policy`; then, within [`ISSUE_BOUND`] of the console storing it, a try must have
    /// made `failed` true and a `kind` audit must be in the audit file and at the console.
    /// Returns the revision.
    fn put_and_expect(&self, policy: &str, kind: &str, failed: impl Fn(&str) -> bool) -> u64 {
        let revision = self.console.put_policy(policy);
        let stored_at = Instant::now();
        let query = format!("type={kind}");
        let (mut refused, mut local, mut remote) = (false, false, false);
        wait_until(ISSUE_BOUND, || {
            refused = refused || self.tries().iter().any(|t| failed(t));
            local = local || !self.nw.audits_of(kind).is_empty();
            remote = remote || !self.console.audits(&query).is_empty();
            refused && local && remote
        });
        let took = stored_at.elapsed();
        assert!(
            refused && local && remote,
            "{took:?} after revision {revision}: a try refused: {refused}, a {kind} audit in the \
             audit file: {local}, at the console: {remote}\ntries: {:?}\naudits: {:#?}",
            self.tries(),
            self.nw.audits()
        );
        self.assert_applied(revision);
        revision
    }

    /// PUTs `policy`, which takes the rule back, and waits until it is applied and 3 tries
    /// came after the last one that was `refused`.
    fn put_and_expect_lifted(&self, policy: &str, refused: &str) {
        let revision = self.console.put_policy(policy);
        self.assert_applied(revision);
        let since_refused = || {
            let all = self.tries();
            all.len() - all.iter().rposition(|t| t == refused).map_or(0, |i| i + 1)
        };
        assert!(
            wait_until(HANG_GUARD, || since_refused() >= 3),
            "{:?}",
            self.tries()
        );
    }

    /// The `kind` audits at the console, each of which must have been written locally too.
    fn console_audits(&self, kind: &str) -> Vec<Value> {
        let local: Vec<Value> = self.nw.audits_of(kind);
        let remote = self.console.audits(&format!("type={kind}"));
        for r in &remote {
            assert!(
                local.iter().any(|l| l["id"] == r["id"]),
                "at the console, not in the audit file: {r}\nlocal: {local:#?}"
            );
        }
        remote
    }

    /// Stops the loop; the defender must exit 0.
    fn stop(&mut self) {
        std::fs::write(self.nw.path("stop"), "").unwrap();
        let out = finish_within(self.child.take().unwrap(), HANG_GUARD);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_network_rule_from_the_console_refuses_the_next_connects_and_its_removal_lets_them_through() {
    let mut nw = NetWorld::new();
    let target = format!("{DENIED_IP}:80");
    nw.serve_http(&target);
    let helper = test_program("net_helper").display().to_string();
    let mut live = Live::start(nw, &format!("{helper} connect tcp {target}"));

    // Without a network rule the connects go through, unaudited.
    let before = live.tries();
    assert!(before.iter().all(|t| t == "connect=ok"), "{before:?}");
    assert!(live.nw.audits_of("network").is_empty());

    let deny = with_section(
        "network",
        json!({"effect": "prevent", "outbound": {"deny": ["203.0.113.0/24"]}}),
    );
    live.put_and_expect(&deny, "network", |t| t == "connect=EPERM");
    let a = &live.nw.audits_of("network")[0];
    check_audit(
        a,
        "network",
        "prevent",
        RULE,
        true,
        &canon(test_program("net_helper")),
    );
    assert_eq!(
        (&a["ip"], &a["port"]),
        (&json!(DENIED_IP), &json!(80)),
        "{a}"
    );
    let remote = live.console_audits("network");
    assert!(remote.iter().any(|r| r["id"] == a["id"]), "{remote:#?}");

    // Once refused, refused: every later connect, until the rule goes.
    live.more_tries(3);
    live.put_and_expect_lifted(&without_network(), "connect=EPERM");
    live.stop();

    let all = live.tries();
    // The outcomes in order, repeats left out.
    let mut shape = all.clone();
    shape.dedup();
    assert_eq!(
        shape,
        ["connect=ok", "connect=EPERM", "connect=ok"],
        "{all:?}"
    );
    // Every refused connect audited (repeats folded into `count`), none let through.
    let eperms = all.iter().filter(|t| *t == "connect=EPERM").count();
    assert!(eperms >= 3, "{all:?}");
    assert_eq!(counted(&live.nw.audits_of("network")), eperms, "{all:?}");
}

/// How many violations `audits` stand for (a folded flood is one event with its `count`).
fn counted(audits: &[Value]) -> usize {
    audits
        .iter()
        .map(|a| a["count"].as_u64().unwrap() as usize)
        .sum()
}

#[test]
fn a_dns_rule_from_the_console_makes_the_next_lookups_fail_without_reaching_the_server() {
    // One line per try: getent's exit status, then what it printed.
    let mut live = Live::start(
        NetWorld::new(),
        r#"{ out=$(getent hosts denied.test); echo "$? $out"; }"#,
    );
    let resolved = format!("0 {WEB}");
    let asked = |live: &Live| {
        live.nw
            .dns_queries()
            .iter()
            .filter(|q| q.name == "denied.test")
            .count()
    };

    // Without a dns rule the name resolves, through the world's server.
    let before = live.tries();
    assert!(
        before.iter().all(|t| t.starts_with(&resolved)),
        "{before:?}"
    );
    assert!(asked(&live) >= before.len(), "{:?}", live.nw.dns_queries());

    // getent says "not found" with status 2. A lookup whose query the defender swallowed would
    // take the world's resolver timeout (2 s, twice) to fail: a failure within the bound is the
    // fast NXDOMAIN.
    let deny = with_section("dns", json!({"effect": "prevent", "deny": ["denied.test"]}));
    live.put_and_expect(&deny, "dns", |t| t == "2 ");
    let a = &live.nw.audits_of("dns")[0];
    check_audit(a, "dns", "prevent", RULE, true, &canon(require("getent")));
    assert_eq!(a["domain"], "denied.test", "{a}");
    let remote = live.console_audits("dns");
    assert!(remote.iter().any(|r| r["id"] == a["id"]), "{remote:#?}");

    // From the first refused lookup on, denied.test never reaches the server.
    let asked_then = asked(&live);
    let after = live.more_tries(5);
    assert_eq!(
        asked(&live),
        asked_then,
        "denied.test reached the server after the rule: {after:?}"
    );
    live.stop();

    let all = live.tries();
    let first_refused = all.iter().position(|t| t == "2 ").unwrap();
    assert!(
        all[..first_refused]
            .iter()
            .all(|t| t.starts_with(&resolved)),
        "{all:?}"
    );
    assert!(all[first_refused..].iter().all(|t| t == "2 "), "{all:?}");
    assert!(all.len() - first_refused >= 5, "{all:?}");
    // One audit per refused lookup (its A and AAAA questions are one lookup).
    assert_eq!(
        counted(&live.nw.audits_of("dns")),
        all.len() - first_refused,
        "{all:?}"
    );
}

/// A resolver that keeps one socket connected to the name server (c-ares, as in Node.js; nscd):
/// every 50 ms, one A query for denied.test on the same connected UDP socket, its answer's rcode
/// and answer count appended to `tries`.
const PERSISTENT_RESOLVER: &str = r#"
import os, socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.53.0.1", 53))
s.settimeout(5)
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
query += b"\x06denied\x04test\x00" + struct.pack(">HH", 1, 1)
while not os.path.exists("stop"):
    s.send(query)
    r = s.recv(512)
    with open("tries", "a") as f:
        f.write("rcode=%d answers=%d\n" % (r[3] & 15, struct.unpack(">H", r[6:8])[0]))
    time.sleep(0.05)
"#;

/// The socket was connected while no rule checked DNS; the rule that arrives later must still
/// decide every query sent on it.
#[test]
fn a_dns_rule_from_the_console_decides_queries_on_a_socket_connected_before_it() {
    let mut live = Live::start_command(
        NetWorld::new(),
        &["/usr/bin/python3", "-c", PERSISTENT_RESOLVER],
    );
    assert!(
        live.tries().iter().all(|t| t == "rcode=0 answers=1"),
        "{:?}",
        live.tries()
    );
    let deny = with_section("dns", json!({"effect": "prevent", "deny": ["denied.test"]}));
    live.put_and_expect(&deny, "dns", |t| t == "rcode=3 answers=0");
    let asked_then = live
        .nw
        .dns_queries()
        .iter()
        .filter(|q| q.name == "denied.test")
        .count();
    live.more_tries(5);
    live.stop();
    let asked_now = live
        .nw
        .dns_queries()
        .iter()
        .filter(|q| q.name == "denied.test")
        .count();
    assert_eq!(asked_now, asked_then, "{:?}", live.tries());
}
