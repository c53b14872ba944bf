//! The policy on the command line (docs/cli.md and docs/policy.md): `defender policy
//! check`, `defender policy default`, `defender run` refusing an invalid policy or bad flags (125,
//! COMMAND never started), the compiled-in default policy in force without `--policy`, the
//! 126/127 statuses for a COMMAND that cannot be executed or does not exist, `DEFENDER_*`
//! variables set to "" counting as not set, and the order of policy sources `--help` states.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// `defender policy ARGS...`.
fn policy_cmd(args: &[&str]) -> Output {
    let mut c = Command::new(defender());
    c.arg("policy").args(args);
    output_within(&mut c)
}

/// `defender policy check FILE`.
fn check(file: &Path) -> Output {
    policy_cmd(&["check", file.to_str().unwrap()])
}

/// `defender run [extra] -- sh -c 'touch MARKER'` with the world's policy file (if any); returns the
/// output and whether the command ran (the marker exists).
fn run_marker(world: &World, policy: Option<&Path>, extra: &[&str]) -> (Output, bool) {
    let marker = world.path("command-ran");
    let _ = std::fs::remove_file(&marker);
    let script = format!("touch '{}'", marker.display());
    let out = output_within(&mut world.command(policy, extra, &["sh", "-c", &script]));
    (out, marker.exists())
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// A document with these rules (each a JSON object).
fn doc(rules: &[&str]) -> String {
    format!(r#"{{"rules": [{}]}}"#, rules.join(", "))
}

// ---- invalid policies ----

/// Each case: a document, and every line the error report must contain (naming rule and field).
fn invalid_cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let ok = r#"{"name": "ok", "processes": {"effect": "alert", "deny": ["nc"]}}"#;
    vec![
        (
            "malformed JSON",
            r#"{"rules": ["#.to_owned(),
            vec!["malformed JSON"],
        ),
        (
            "trailing comma",
            r#"{"rules": [{"name": "web",}]}"#.to_owned(),
            vec!["malformed JSON"],
        ),
        (
            "unknown top-level field",
            r#"{"rules": [], "rule": []}"#.to_owned(),
            vec!["unknown field `rule`"],
        ),
        (
            "unknown field in a rule",
            doc(&[r#"{"name": "web", "procesess": {"effect": "prevent", "deny": ["nc"]}}"#]),
            vec![r#"rules[0] "web": procesess: unknown field `procesess`"#],
        ),
        (
            "unknown field inside processes",
            doc(&[
                ok,
                r#"{"name": "web", "processes": {"effect": "prevent", "denny": ["nc"]}}"#,
            ]),
            vec![r#"rules[1] "web": processes.denny: unknown field `denny`"#],
        ),
        (
            "unknown field inside network.outbound",
            doc(&[
                r#"{"name": "web", "network": {"effect": "prevent", "outbound": {"alow": []}}}"#,
            ]),
            vec![r#"rules[0] "web": network.outbound.alow: unknown field `alow`"#],
        ),
        (
            "effect deny",
            doc(&[r#"{"name": "web", "processes": {"effect": "deny", "deny": ["nc"]}}"#]),
            vec![r#"rules[0] "web": processes.effect: unknown variant `deny`"#],
        ),
        (
            "bad glob",
            doc(&[
                ok,
                r#"{"name": "web", "processes": {"effect": "alert", "deny": ["nc", "[a-"]}}"#,
            ]),
            vec![r#"rules[1] "web": processes.deny[1]: "[a-" is not a valid glob"#],
        ),
        (
            "CIDR /33",
            doc(&[
                r#"{"name": "web", "network": {"effect": "alert", "outbound": {"deny": ["10.0.0.0/33"]}}}"#,
            ]),
            vec![
                r#"rules[0] "web": network.outbound.deny[0]: "10.0.0.0/33" is not an IP address or CIDR"#,
            ],
        ),
        (
            "not an IP",
            doc(&[
                r#"{"name": "web", "network": {"effect": "alert", "outbound": {"allow": ["10.0.0.0/8", "not-an-ip"]}}}"#,
            ]),
            vec![
                r#"rules[0] "web": network.outbound.allow[1]: "not-an-ip" is not an IP address or CIDR"#,
            ],
        ),
        (
            "port 70000",
            doc(&[
                r#"{"name": "web", "network": {"effect": "alert", "outboundPorts": {"allow": ["70000"]}}}"#,
            ]),
            vec![r#"rules[0] "web": network.outboundPorts.allow[0]: "70000" is not a port"#],
        ),
        (
            "port 0",
            doc(&[
                ok,
                r#"{"name": "api", "network": {"effect": "alert", "listeningPorts": {"deny": ["0"]}}}"#,
            ]),
            vec![r#"rules[1] "api": network.listeningPorts.deny[0]: "0" is not a port"#],
        ),
        (
            "port range 9-3",
            doc(&[
                r#"{"name": "web", "network": {"effect": "alert", "outboundPorts": {"deny": ["80", "9-3"]}}}"#,
            ]),
            vec![r#"rules[0] "web": network.outboundPorts.deny[1]: "9-3" is not a port range"#],
        ),
        (
            "duplicate rule names",
            doc(&[
                ok,
                r#"{"name": "web"}"#,
                r#"{"name": "web", "disabled": true}"#,
            ]),
            vec![r#"rules[2] "web": name: duplicate of rules[1]"#],
        ),
        // Custom rules: each error names the custom rule (or the rule referencing it) and, for a
        // script, the line and column.
        (
            "custom rule script syntax error",
            custom_doc(
                &[(
                    "netcat listener",
                    "processes",
                    r#"proc.name in (\"nc\", \"ncat\") and proc.cmdline contains"#,
                )],
                &[("netcat listener", "alert")],
            ),
            vec![
                r#"customRules[0] "netcat listener": script:1:54: expected a value after "contains", found the end of the script"#,
            ],
        ),
        (
            "custom rule unbalanced parenthesis on line 2",
            custom_doc(
                &[
                    ("ok", "processes", r#"proc.name = \"a\""#),
                    (
                        "paren",
                        "processes",
                        r#"(proc.name = \"a\" or\n proc.uid = 0"#,
                    ),
                ],
                &[("paren", "alert")],
            ),
            vec![r#"customRules[1] "paren": script:2:14: expected "and", "or" or ")""#],
        ),
        (
            "custom rule unknown field",
            custom_doc(
                &[("typo", "processes", r#"proc.nam = \"nc\""#)],
                &[("typo", "alert")],
            ),
            vec![r#"customRules[0] "typo": script:1:1: unknown field proc.nam"#],
        ),
        (
            "custom rule field of another event type",
            custom_doc(
                &[("dns in processes", "processes", r#"dns.name = \"x.test\""#)],
                &[("dns in processes", "alert")],
            ),
            vec![
                r#"customRules[0] "dns in processes": script:1:1: dns.name is a field of dns events, not of processes events"#,
            ],
        ),
        (
            "custom rule listening field in network-outgoing, line 2",
            custom_doc(
                &[(
                    "ports",
                    "network-outgoing",
                    r#"net.outgoing_port = 22 or\n  net.listening_port = 22"#,
                )],
                &[("ports", "prevent")],
            ),
            vec![
                r#"customRules[0] "ports": script:2:3: net.listening_port is a field of listening events, not of network-outgoing events"#,
            ],
        ),
        (
            "custom rule value of the wrong type",
            custom_doc(
                &[
                    ("port", "network-outgoing", r#"net.outgoing_port = \"x\""#),
                    ("tty", "processes", "proc.interactive = 3"),
                    (
                        "ip",
                        "network-outgoing",
                        r#"net.outgoing_ip = \"10.0.0.0/33\""#,
                    ),
                ],
                &[],
            ),
            vec![
                r#"customRules[0] "port": script:1:21: net.outgoing_port compares with integers, not "x""#,
                r#"customRules[1] "tty": script:1:20: proc.interactive compares with true or false, not 3"#,
                r#"customRules[2] "ip": script:1:19: "10.0.0.0/33" is not an IP address or a CIDR"#,
            ],
        ),
        (
            "reference to a custom rule not in the library",
            custom_doc(
                &[("ok", "processes", r#"proc.name = \"a\""#)],
                &[("ok", "alert"), ("missing", "prevent")],
            ),
            vec![
                r#"rules[0] "web": customRules[1].name: no custom rule named "missing" in the library"#,
            ],
        ),
        (
            "filesystem custom rule",
            custom_doc(
                &[("files", "filesystem", r#"file.path = \"/etc/shadow\""#)],
                &[],
            ),
            vec![r#"customRules[0] "files": type: filesystem custom rules are not supported yet"#],
        ),
        (
            "unknown custom rule type",
            custom_doc(&[("k8s", "kubernetes-audit", "x")], &[]),
            vec![r#"customRules[0] "k8s": type: unknown variant `kubernetes-audit`"#],
        ),
        (
            "duplicate custom rule name",
            custom_doc(
                &[
                    ("dup", "dns", r#"dns.name = \"a.test\""#),
                    ("dup", "dns", r#"dns.name = \"b.test\""#),
                ],
                &[("dup", "alert")],
            ),
            vec![r#"customRules[1] "dup": name: duplicate of customRules[0]"#],
        ),
        (
            "custom rule reference with effect deny",
            custom_doc(
                &[("ok", "processes", r#"proc.name = \"a\""#)],
                &[("ok", "deny")],
            ),
            vec![r#"rules[0] "web": customRules[0].effect: unknown variant `deny`"#],
        ),
    ]
}

/// A document with the custom rules `library` (name, type, script: JSON string contents) and one
/// rule `web` referencing `references` (name, effect).
fn custom_doc(library: &[(&str, &str, &str)], references: &[(&str, &str)]) -> String {
    let library: Vec<String> = library
        .iter()
        .map(|(name, kind, script)| {
            format!(r#"{{"name": "{name}", "type": "{kind}", "script": "{script}"}}"#)
        })
        .collect();
    let references: Vec<String> = references
        .iter()
        .map(|(name, effect)| format!(r#"{{"name": "{name}", "effect": "{effect}"}}"#))
        .collect();
    format!(
        r#"{{"customRules": [{}], "rules": [{{"name": "web", "customRules": [{}]}}]}}"#,
        library.join(", "),
        references.join(", ")
    )
}

#[test]
fn policy_check_rejects_invalid_policies_with_exit_2_naming_rule_and_field() {
    let world = World::new();
    let mut failures = Vec::new();
    for (case, json, want) in invalid_cases() {
        let out = check(&world.policy(&json));
        let report = format!("{}{}", stdout(&out), stderr(&out));
        if code(&out) != Some(2) {
            failures.push(format!(
                "{case}: exit {:?}, want 2; output:\n{report}",
                code(&out)
            ));
        }
        for line in &want {
            if !report.contains(line) {
                failures.push(format!(
                    "{case}: the report lacks {line:?}; it is:\n{report}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn run_refuses_invalid_policies_with_125_and_never_starts_the_command() {
    let world = World::new();
    let mut failures = Vec::new();
    for (case, json, want) in invalid_cases() {
        let policy = world.policy(&json);
        let (out, ran) = run_marker(&world, Some(&policy), &[]);
        let err = stderr(&out);
        if code(&out) != Some(125) {
            failures.push(format!(
                "{case}: exit {:?}, want 125; stderr:\n{err}",
                code(&out)
            ));
        }
        if ran {
            failures.push(format!("{case}: the command ran under an invalid policy"));
        }
        if !out.stdout.is_empty() {
            failures.push(format!(
                "{case}: the defender wrote to stdout: {:?}",
                stdout(&out)
            ));
        }
        for line in &want {
            if !err.contains(line) {
                failures.push(format!("{case}: stderr lacks {line:?}; it is:\n{err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The same refusal when the policy comes from the environment (every flag has a variable).
#[test]
fn run_refuses_an_invalid_policy_from_the_environment() {
    let world = World::new();
    let policy = world.policy(&doc(&[
        r#"{"name": "web", "processes": {"effect": "deny"}}"#,
    ]));
    let marker = world.path("command-ran");
    let script = format!("touch '{}'", marker.display());
    let mut c = world.command(None, &[], &["sh", "-c", &script]);
    c.env("DEFENDER_POLICY", &policy);
    let out = output_within(&mut c);
    assert_eq!(code(&out), Some(125), "stderr:\n{}", stderr(&out));
    assert!(!marker.exists(), "the command ran under an invalid policy");
    assert!(
        stderr(&out).contains(r#"rules[0] "web": processes.effect: unknown variant `deny`"#),
        "stderr:\n{}",
        stderr(&out)
    );
}

#[test]
fn every_error_of_a_policy_is_reported() {
    let world = World::new();
    let policy = world.policy(&doc(&[
        r#"{"name": "web", "network": {"effect": "prevent",
             "outbound": {"deny": ["10.0.0.0/33"]},
             "outboundPorts": {"allow": ["70000", "443", "9-3"]}}}"#,
        r#"{"name": "db", "processes": {"effect": "deny", "deny": ["nc"]}}"#,
        r#"{"name": "ok", "processes": {"effect": "alert", "deny": ["nmap"]}}"#,
        r#"{"name": "web", "procesess": {}}"#,
        r#"{"name": "glob", "processes": {"effect": "alert", "allow": ["[a-"]}}"#,
    ]));
    let want = [
        r#"rules[0] "web": network.outbound.deny[0]: "10.0.0.0/33" is not an IP address or CIDR"#,
        r#"rules[0] "web": network.outboundPorts.allow[0]: "70000" is not a port"#,
        r#"rules[0] "web": network.outboundPorts.allow[2]: "9-3" is not a port range"#,
        r#"rules[1] "db": processes.effect: unknown variant `deny`"#,
        r#"rules[3] "web": name: duplicate of rules[0]"#,
        r#"rules[3] "web": procesess: unknown field `procesess`"#,
        r#"rules[4] "glob": processes.allow[0]: "[a-" is not a valid glob"#,
    ];
    let checked = check(&policy);
    let (run, ran) = run_marker(&world, Some(&policy), &[]);
    for (what, out, text, status) in [
        (
            "policy check",
            &checked,
            format!("{}{}", stdout(&checked), stderr(&checked)),
            2,
        ),
        ("run", &run, stderr(&run), 125),
    ] {
        assert_eq!(code(out), Some(status), "{what}: output:\n{text}");
        for line in want {
            assert!(
                text.contains(line),
                "{what}: {line:?} is not reported; the report is:\n{text}"
            );
        }
        let reported = text.lines().filter(|l| l.contains("rules[")).count();
        assert_eq!(
            reported,
            want.len(),
            "{what}: one line per error; the report is:\n{text}"
        );
    }
    assert!(!ran, "the command ran under an invalid policy");
}

#[test]
fn run_with_a_missing_policy_file_is_125() {
    let world = World::new();
    let missing = world.path("no-such-policy.json");
    let (out, ran) = run_marker(&world, Some(&missing), &[]);
    assert_eq!(code(&out), Some(125), "stderr:\n{}", stderr(&out));
    assert!(!ran, "the command ran without its policy");
    assert!(
        stderr(&out).contains("no-such-policy.json"),
        "stderr:\n{}",
        stderr(&out)
    );
}

#[test]
fn policy_check_of_a_missing_file_fails_naming_it() {
    let world = World::new();
    let out = check(&world.path("no-such-policy.json"));
    assert_eq!(
        code(&out),
        Some(2),
        "output:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("no-such-policy.json"),
        "stderr:\n{}",
        stderr(&out)
    );
}

// ---- valid policies ----

/// The example document of docs/policy.md, verbatim.
const SPEC_EXAMPLE: &str = r#"{
  "rules": [
    {
      "name": "fargate-sample: no mkdir, only AWS DNS",
      "disabled": false,
      "collections": { "images": ["*"], "containers": ["twistlock-fargate-task"] },
      "processes": { "effect": "prevent", "allow": [], "deny": ["mkdir", "/usr/bin/nc*"] },
      "network": {
        "effect": "prevent",
        "outbound":       { "allow": [], "deny": ["203.0.113.0/24", "2001:db8::/32"] },
        "outboundPorts":  { "allow": ["80", "443", "8000-8100"], "deny": [] },
        "listeningPorts": { "allow": ["8080"], "deny": [] }
      },
      "dns": { "effect": "prevent", "allow": ["*.amazonaws.com", "example.org"], "deny": [] }
    }
  ]
}"#;

#[test]
fn policy_check_accepts_a_valid_policy_with_one_line_per_rule() {
    let world = World::new();
    let names = [
        "fargate-sample: no mkdir, only AWS DNS",
        "web",
        "debug images",
        "everything else",
    ];
    let mut rules: Vec<String> = Vec::new();
    let spec: Value = serde_json::from_str(SPEC_EXAMPLE).unwrap();
    rules.push(spec["rules"][0].to_string());
    rules.push(
        r#"{"name": "web", "collections": {"containers": ["web-*"]},
            "network": {"effect": "alert", "outboundPorts": {"allow": ["443", "8000-8100"]},
                        "listeningPorts": {"deny": ["22"]}},
            "dns": {"effect": "block", "deny": ["*.evil.example", "evil.example."]}}"#
            .to_owned(),
    );
    rules.push(
        r#"{"name": "debug images", "disabled": true, "collections": {"images": ["*", "-*debug*"]},
            "processes": {"effect": "disable"}}"#
            .to_owned(),
    );
    rules.push(
        r#"{"name": "everything else", "network": {"effect": "prevent",
            "outbound": {"allow": ["10.0.0.0/8", "::ffff:192.0.2.1", "fd00::/8"]}}}"#
            .to_owned(),
    );
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    let out = check(&world.policy(&doc(&refs)));
    assert_eq!(code(&out), Some(0), "stderr:\n{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        names.len(),
        "one summary line per rule:\n{text}"
    );
    for (i, (line, name)) in lines.iter().zip(names).enumerate() {
        let head = format!("rules[{i}] {name:?}");
        assert!(
            line.starts_with(&head),
            "line {i} should start with {head}: {line}"
        );
    }

    // The spec's own example on its own.
    let out = check(&world.policy(SPEC_EXAMPLE));
    assert_eq!(
        code(&out),
        Some(0),
        "the example of docs/policy.md is rejected:\n{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
}

// ---- the default policy ----

/// `policy default`, parsed.
fn default_policy() -> (String, Value) {
    let out = policy_cmd(&["default"]);
    assert_eq!(code(&out), Some(0), "stderr:\n{}", stderr(&out));
    let text = stdout(&out);
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("`policy default` is not JSON ({e}):\n{text}"));
    (text, value)
}

/// Every value of an `effect` key anywhere in `v`.
fn effects(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "effect" {
                    found.push(v.as_str().unwrap_or("(not a string)").to_owned());
                }
                effects(v, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| effects(i, found)),
        _ => {}
    }
}

#[test]
fn the_default_policy_is_valid_alert_only_and_denies_attack_tools() {
    let world = World::new();
    let (text, value) = default_policy();

    let out = check(&world.policy(&text));
    assert_eq!(
        code(&out),
        Some(0),
        "`policy check` rejects `policy default`:\n{}",
        stderr(&out)
    );
    let rules = value["rules"].as_array().expect("rules");
    assert!(!rules.is_empty(), "the default policy has no rule:\n{text}");
    assert_eq!(
        stdout(&out).lines().count(),
        rules.len(),
        "{}",
        stdout(&out)
    );

    let mut found = Vec::new();
    effects(&value, &mut found);
    assert!(
        found.iter().any(|e| e == "alert"),
        "no alert effect: {found:?}"
    );
    assert!(
        found.iter().all(|e| e == "alert" || e == "disable"),
        "the default policy must only alert: {found:?}"
    );

    // The first rule applies to every container and denies the tools of the spec.
    let rule = &rules[0];
    assert_ne!(rule["disabled"], Value::Bool(true));
    for list in ["images", "containers"] {
        let patterns = &rule["collections"][list];
        assert!(
            patterns.is_null()
                || patterns
                    .as_array()
                    .is_some_and(|p| p.iter().any(|x| x == "*")),
            "collections.{list} of the default rule is {patterns}"
        );
    }
    let deny: Vec<&str> = rule["processes"]["deny"]
        .as_array()
        .expect("processes.deny")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for tool in ["nmap", "nc"] {
        assert!(deny.contains(&tool), "{tool} is not denied: {deny:?}");
    }
    assert!(
        deny.iter().any(|d| d.starts_with("xmrig")),
        "xmrig is not denied: {deny:?}"
    );
}

/// Copies `program` into the world as `nmap`, which the default policy denies.
fn fake_nmap(world: &World, program: &str) -> PathBuf {
    let nmap = world.path("nmap");
    std::fs::copy(require(program), &nmap).unwrap();
    nmap
}

/// Without `--policy`, the default policy alerts on `nmap` launched as the command itself, and
/// lets it run.
#[test]
fn without_a_policy_the_default_alerts_but_does_not_prevent_the_command() {
    let world = World::new();
    let nmap = fake_nmap(&world, "echo");
    let (_, default) = default_policy();
    let rule = default["rules"][0]["name"].as_str().unwrap().to_owned();

    let out = output_within(&mut world.command(None, &[], &[nmap.to_str().unwrap(), "scan-ran"]));
    assert_eq!(code(&out), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "scan-ran\n",
        "nmap did not run; stderr:\n{}",
        stderr(&out)
    );
    let audits = world.audits_of("process");
    assert_eq!(audits.len(), 1, "one alert for the launch: {audits:#?}");
    let a = &audits[0];
    assert_eq!(a["effect"], "alert", "{a:#}");
    assert_eq!(a["attack"], "processExplicitlyDenied", "{a:#}");
    assert_eq!(a["rule"], rule.as_str(), "{a:#}");
    assert_eq!(a["process"], nmap.to_str().unwrap(), "{a:#}");
}

/// The same for `nmap` launched from a shell found on PATH: it runs, the shell sees its status.
#[test]
fn without_a_policy_a_denied_tool_started_by_the_workload_runs_and_is_audited() {
    let world = World::new();
    let nmap = fake_nmap(&world, "true");
    let path = format!(
        "{}:{}",
        world.dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = world.command(
        None,
        &[],
        &["sh", "-c", "nmap -sS 192.0.2.1; echo \"nmap-status=$?\""],
    );
    c.env("PATH", path);
    let out = output_within(&mut c);
    assert_eq!(code(&out), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "nmap-status=0\n",
        "nmap was prevented; stderr:\n{}",
        stderr(&out)
    );
    let audits = world.audits_of("process");
    assert_eq!(audits.len(), 1, "one alert: {audits:#?}");
    assert_eq!(audits[0]["effect"], "alert", "{:#}", audits[0]);
    assert_eq!(
        audits[0]["process"],
        nmap.to_str().unwrap(),
        "{:#}",
        audits[0]
    );
    assert_eq!(
        audits[0]["cmdline"], "nmap -sS 192.0.2.1",
        "{:#}",
        audits[0]
    );
}

// ---- bad flags, missing or non-executable commands ----

#[test]
fn bad_flags_are_125_and_the_command_never_starts() {
    let world = World::new();
    let cases: &[(&str, &[&str])] = &[
        ("unknown log level", &["--log-level", "loud"]),
        ("grace period not a number", &["--grace-period", "soon"]),
        ("negative grace period", &["--grace-period=-1"]),
        ("unknown flag", &["--no-such-flag"]),
    ];
    let mut failures = Vec::new();
    for (case, extra) in cases {
        let (out, ran) = run_marker(&world, None, extra);
        if code(&out) != Some(125) || ran || !out.stdout.is_empty() || out.stderr.is_empty() {
            failures.push(format!(
                "{case} ({extra:?}): exit {:?} (want 125), command ran: {ran}, stdout {:?}, stderr:\n{}",
                code(&out),
                stdout(&out),
                stderr(&out)
            ));
        }
    }
    // The same through the environment.
    let marker = world.path("command-ran");
    let script = format!("touch '{}'", marker.display());
    let mut c = world.command(None, &[], &["sh", "-c", &script]);
    c.env("DEFENDER_LOG", "loud");
    let out = output_within(&mut c);
    if code(&out) != Some(125) || marker.exists() {
        failures.push(format!(
            "DEFENDER_LOG=loud: exit {:?}, command ran: {}",
            code(&out),
            marker.exists()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_missing_command_is_125() {
    let world = World::new();
    for args in [
        &["run", "--"][..],
        &["run"][..],
        &["run", "--log-level", "info", "--"][..],
    ] {
        let mut c = Command::new(defender());
        c.args(args)
            .current_dir(world.dir.path())
            .env_remove("DEFENDER_POLICY");
        let out = output_within(&mut c);
        assert_eq!(
            code(&out),
            Some(125),
            "`defender {}`: stderr:\n{}",
            args.join(" "),
            stderr(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "usage errors go to stderr: {:?}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("COMMAND"),
            "the error names the missing COMMAND:\n{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_command_before_the_double_dash_is_rejected_with_125() {
    let world = World::new();
    let marker = world.path("command-ran");
    let mut c = Command::new(defender());
    c.args(["run", "touch"])
        .arg(&marker)
        .current_dir(world.dir.path())
        .env_remove("DEFENDER_POLICY");
    let out = output_within(&mut c);
    assert_eq!(code(&out), Some(125), "stderr:\n{}", stderr(&out));
    assert!(!marker.exists());
}

#[test]
fn a_command_that_does_not_exist_is_127() {
    let world = World::new();
    let absent = world.path("no-such-dir/no-such-command");
    for command in ["no-such-command-for-the-defender", absent.to_str().unwrap()] {
        let out = output_within(&mut world.command(None, &[], &[command]));
        assert_eq!(
            code(&out),
            Some(127),
            "{command}: stderr:\n{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(command),
            "{command}: the message names it:\n{}",
            stderr(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{command}: stdout {:?}",
            stdout(&out)
        );
    }
}

#[test]
fn a_command_that_cannot_be_executed_is_126() {
    let world = World::new();
    // A plain file without any execute bit (root may execute only files with one).
    let plain = world.path("not-executable");
    std::fs::write(&plain, "#!/bin/sh\ntouch ran\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Executable, but no format the kernel knows (ENOEXEC).
    let garbage = world.path("garbage");
    std::fs::write(&garbage, b"\x00\x01\x02 not a program\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A directory.
    let dir = world.path("a-directory");
    std::fs::create_dir(&dir).unwrap();

    for command in [&plain, &garbage, &dir] {
        let command = command.to_str().unwrap();
        let out = output_within(&mut world.command(None, &[], &[command]));
        assert_eq!(
            code(&out),
            Some(126),
            "{command}: stderr:\n{}",
            stderr(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{command}: stdout {:?}",
            stdout(&out)
        );
    }
    assert!(!world.path("ran").exists(), "the non-executable script ran");

    // Found on PATH by name, but not executable.
    let mut c = world.command(None, &[], &["not-executable"]);
    c.env(
        "PATH",
        format!("{}:/usr/bin:/bin", world.dir.path().display()),
    );
    let out = output_within(&mut c);
    assert_eq!(
        code(&out),
        Some(126),
        "not-executable on PATH: stderr:\n{}",
        stderr(&out)
    );
    assert!(!world.path("ran").exists(), "the non-executable script ran");
}

/// Every policy of the repository's `policies/` is valid, and the custom rules demo of
/// docs/policy.md does what it says: `/bin/echo hello` runs, `/bin/echo --password secret` is
/// refused by its arguments alone (a custom rule on `proc.cmdline`), and the shell goes on.
#[test]
fn the_repositorys_policies_are_valid_and_the_custom_rules_demo_works() {
    let dir = repo_path("policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let out = check(file);
        assert_eq!(code(&out), Some(0), "{}: {}", file.display(), stderr(&out));
    }
    let world = World::new();
    let demo = repo_path("policies/custom-rules.json");
    let script = r#"p=--pass; /bin/echo hello; /bin/echo ${p}word secret; echo "exit $?""#;
    let out = output_within(&mut world.command(Some(&demo), &[], &["sh", "-c", script]));
    assert_eq!(stdout(&out), "hello\nexit 126\n", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/bin/echo: Operation not permitted"),
        "{}",
        stderr(&out)
    );
    let events = world.audits_of("process");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["attack"], "customRule");
    assert_eq!(events[0]["customRule"], "password on a command line");
    assert_eq!(events[0]["cmdline"], "/bin/echo --password secret");
}

/// Every variable of `defender run`, with a value it refuses (proving the variable is read) or
/// `None` when no value of it alone is refused.
const RUN_VARIABLES: [(&str, Option<&str>); 12] = [
    ("DEFENDER_POLICY", Some("/nonexistent/policy.json")),
    ("DEFENDER_CONSOLE", Some("http://127.0.0.1:1")),
    ("DEFENDER_TOKEN", Some("a-token")),
    ("DEFENDER_CONSOLE_CA", None),
    ("DEFENDER_STATE_DIR", None),
    ("DEFENDER_WAIT_FOR_CONSOLE", Some("soon")),
    ("DEFENDER_CONTAINER", None),
    ("DEFENDER_IMAGE", None),
    ("DEFENDER_AUDIT_FILE", None),
    ("DEFENDER_LOG", Some("loud")),
    ("DEFENDER_GRACE_PERIOD", Some("soon")),
    ("DEFENDER_KEEP_CAPABILITIES", Some("CAP_NOPE")),
];

#[test]
fn every_defender_variable_set_to_the_empty_string_counts_as_not_set() {
    let world = World::new();
    let run = |vars: &[(&str, &str)]| {
        let marker = world.path("command-ran");
        let _ = std::fs::remove_file(&marker);
        let script = format!("touch '{}'", marker.display());
        let mut c = world.unnamed_command(None, &[], &["sh", "-c", &script]);
        c.envs(vars.iter().copied());
        let out = output_within(&mut c);
        (out, marker.exists())
    };
    // Each kind: a path, a URL, a secret, a number, a name, a list; alone, then all at once.
    for (var, bad) in RUN_VARIABLES {
        let (out, ran) = run(&[(var, "")]);
        assert_eq!(
            (code(&out), ran),
            (Some(0), true),
            "{var}=: {}",
            stderr(&out)
        );
        if let Some(bad) = bad {
            let (out, ran) = run(&[(var, bad)]);
            assert_eq!((code(&out), ran), (Some(125), false), "{var}={bad}");
        }
    }
    let all: Vec<(&str, &str)> = RUN_VARIABLES.iter().map(|(v, _)| (*v, "")).collect();
    let (out, ran) = run(&all);
    assert_eq!((code(&out), ran), (Some(0), true), "{}", stderr(&out));
    // The default names the container, not "": the events say the hostname.
    assert!(
        world
            .audits_of("defender")
            .iter()
            .all(|e| e["container"] != "" && e["image"] == "unknown"),
        "{:?}",
        world.audits()
    );

    // An empty token with a console is no token: refused before anything starts, not sent.
    let (out, ran) = run(&[
        ("DEFENDER_CONSOLE", "http://127.0.0.1:1"),
        ("DEFENDER_TOKEN", ""),
    ]);
    assert_eq!((code(&out), ran), (Some(125), false));
    assert!(
        stderr(&out).contains("--console needs --token (DEFENDER_TOKEN)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_help_states_the_order_of_policy_sources() {
    let (help, _) = defender_cli_ok(&["run", "--help"], None);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains(
            "With --console too, the policy in force until the console answers is the last \
             console policy kept in the state directory, else this file, else the default \
             policy; the console's answer then replaces it"
        ),
        "{help}"
    );
}
