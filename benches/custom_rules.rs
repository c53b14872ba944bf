//! The cost of evaluating custom rules per event (docs/benchmarks.md, "Custom rules"): a rule in
//! force with 1, 10 and 100 custom rules of a type, and an event that none of them matches, so
//! that every script is evaluated (the worst case: the first true reference stops the search).
//!
//! `cargo bench --bench custom_rules` measures; under `cargo test` (no `--bench` argument) it only
//! runs each case a few times, so the suite checks that it still works without spending time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use defender::policy::custom::{Facts, Kind, Process, Protocol, Subject};

/// `n` custom rules of `kind`, all referenced by the one rule, with scripts of the shapes users
/// write: lists of names, command-line tests, parents, users, paths, destinations.
fn policy(kind: Kind, n: usize) -> String {
    let script = |i: usize| match (kind, i % 4) {
        (Kind::Processes, 0) => format!(
            r#"proc.name in (\"nc{i}\", \"ncat{i}\", \"netcat{i}\") and proc.cmdline contains \" -l{i}\""#
        ),
        (Kind::Processes, 1) => {
            format!(r#"proc.name in (\"sh\", \"bash\") and proc.pname = \"web{i}\""#)
        }
        (Kind::Processes, 2) => format!(
            r#"proc.user = \"user{i}\" or (proc.path startswith \"/opt/tool{i}/\" and not proc.interactive)"#
        ),
        (Kind::Processes, _) => {
            format!(r#"proc.cmdline contains \"--secret-{i}\" and proc.uid >= {i}"#)
        }
        (_, 0) => format!(
            r#"net.outgoing_port = {} and net.protocol = \"tcp\""#,
            1000 + i
        ),
        (_, 1) => format!(r#"net.outgoing_ip in (\"10.{i}.0.0/16\", \"2001:db8:{i:x}::/48\")"#),
        (_, 2) => format!(r#"proc.name = \"curl{i}\" and net.outgoing_ip = \"169.254.169.254\""#),
        (_, _) => format!(
            r#"net.outgoing_port in ({}, {}) and proc.user = \"u{i}\""#,
            2000 + i,
            3000 + i
        ),
    };
    let library: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name": "c{i}", "type": "{}", "script": "{}"}}"#,
                kind.as_str(),
                script(i)
            )
        })
        .collect();
    let refs: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name": "c{i}", "effect": "prevent"}}"#))
        .collect();
    format!(
        r#"{{"customRules": [{}], "rules": [{{"name": "r", "customRules": [{}]}}]}}"#,
        library.join(", "),
        refs.join(", ")
    )
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let process = Process {
        name: "node".into(),
        path: "/usr/local/bin/node".into(),
        cmdline: "node /app/server.js --port 8080 --workers 4".into(),
        pname: "sh".into(),
        ppath: "/usr/bin/dash".into(),
        user: "app".into(),
        uid: 1000,
        interactive: false,
        unread: Default::default(),
    };
    let cases = [
        (
            Kind::Processes,
            Facts {
                process: &process,
                subject: Subject::Launch,
            },
        ),
        (
            Kind::NetworkOutgoing,
            Facts {
                process: &process,
                subject: Subject::Outgoing {
                    ip: "192.0.2.10".parse().unwrap(),
                    port: 443,
                    protocol: Protocol::Tcp,
                },
            },
        ),
    ];
    println!("| custom rules | event | ns per event (median of 7 runs) |");
    println!("|---|---|---|");
    for (kind, facts) in cases {
        for n in [1, 10, 100] {
            let policy =
                defender::policy::parse(&policy(kind, n)).expect("the bench policy is valid");
            let rule = policy.rule_for("c", "i").expect("one rule for everything");
            let custom = rule.custom(kind);
            assert!(
                custom.decide(&[facts]).is_none(),
                "no script matches the event"
            );
            let iterations: u32 = if measuring { 2_000_000 / n as u32 } else { 10 };
            let mut runs: Vec<Duration> = (0..7)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        black_box(custom.decide(black_box(&[facts])));
                    }
                    start.elapsed() / iterations
                })
                .collect();
            runs.sort();
            println!("| {n} | {} | {} |", kind.as_str(), runs[3].as_nanos());
        }
    }
}
