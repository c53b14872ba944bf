//! `defender policy import-prisma` (docs/migration.md), run as users run it: golden conversions of
//! Prisma Cloud App-Embedded policies of both shapes (with and without the custom rules export),
//! every converted document accepted by `defender policy check`, the report lines on stderr, and
//! exit status 2 with a message naming the file and the JSON path for inputs it cannot convert.

mod common;

use std::process::Output;

use common::{World, defender_cli, golden, repo_path, stderr, stdout};

const POLICY: &str = "tests/golden/prisma/app-embedded.json";
const CUSTOM: &str = "tests/golden/prisma/custom-rules.json";
const NEWER: &str = "tests/golden/prisma/newer-shape.json";

/// `defender policy import-prisma ARGS` (paths relative to the repository), with `stdin`.
fn import(args: &[&str], stdin: Option<&str>) -> Output {
    defender_cli(&[&["policy", "import-prisma"], args].concat(), stdin)
}

/// An import that must succeed: (document, report lines).
fn import_ok(args: &[&str], stdin: Option<&str>) -> (String, Vec<String>) {
    let out = import(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(0),
        "import-prisma {}: {}",
        args.join(" "),
        stderr(&out)
    );
    let reports = stderr(&out).lines().map(str::to_owned).collect();
    (stdout(&out), reports)
}

/// An import that must fail with status 2: its stderr.
fn import_refused(args: &[&str], stdin: Option<&str>) -> String {
    let out = import(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(2),
        "import-prisma {} should be refused; stdout:\n{}\nstderr:\n{}",
        args.join(" "),
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "", "nothing is written for a refused input");
    stderr(&out)
}

/// Asserts that `defender policy check` accepts the document, and returns its summary.
fn checked(document: &str) -> String {
    let world = World::new();
    let path = world.policy(document);
    let out = defender_cli(&["policy", "check", path.to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "policy check refused the converted document:\n{}\n{document}",
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn app_embedded_policy_with_its_custom_rules() {
    let (document, reports) = import_ok(&[POLICY, "--custom-rules", CUSTOM], None);
    golden("tests/golden/prisma/app-embedded.expected.json", &document);
    golden(
        "tests/golden/prisma/app-embedded.reports.txt",
        &(reports.join("\n") + "\n"),
    );
    let summary = checked(&document);
    assert!(
        summary.contains(r#"customRules[0] "netcat listener": processes; used by"#),
        "{summary}"
    );
    // The lines a migrating user must see, each naming where the setting was.
    for want in [
        r#"rules[0] "shop-web: only node, AWS and Stripe": processes.checkCryptoMiners: not carried over (no equivalent): true"#,
        r#"rules[0] "shop-web: only node, AWS and Stripe": filesystem.blacklist: not carried over (no equivalent): ["/etc/shadow","/root/.ssh"]"#,
        r#"rules[0] "shop-web: only node, AWS and Stripe": processes.blacklist[1]: left out: "bin/ncat" is not an absolute path glob"#,
        r#"rules[1] "batch jobs": collections[1] "finance reports": labels: not carried over"#,
        r#"rules[1] "batch jobs": collections: 2 collections of different scopes: carried as one rule each ("batch jobs", "batch jobs (2)")"#,
        r#"rules[2] "legacy: off": processes.effect: "ignore" has no equivalent: carried as "alert""#,
        r#"custom rule 20 "shadow read": type: not carried over (the defender has no file system sensor)"#,
        r#"custom rule 31 "root shell in /tmp": script:1:45: left out, with its references in rules[0] "shop-web: only node, AWS and Stripe": unknown field proc.cwd"#,
        "custom rules export: 2 of its 6 custom rules are referenced by no rule: not carried over",
    ] {
        assert!(
            reports.iter().any(|line| line.starts_with(want)),
            "no report line starting with {want:?} in:\n{}",
            reports.join("\n")
        );
    }
}

#[test]
fn app_embedded_policy_without_the_export_drops_the_references() {
    let (document, reports) = import_ok(&[POLICY], None);
    checked(&document);
    assert!(!document.contains("customRules"), "{document}");
    let references: Vec<&String> = reports
        .iter()
        .filter(|l| l.contains("(no custom rules export)"))
        .collect();
    // Three references in rules[0], two in rules[1] (carried into both of its pieces, reported once).
    assert_eq!(references.len(), 5, "{}", reports.join("\n"));
    assert!(references[0].starts_with(
        r#"rules[0] "shop-web: only node, AWS and Stripe": customRules[0]: custom rule 12: not carried over (no custom rules export)"#
    ));
}

#[test]
fn newer_shape_and_standard_input() {
    let text = std::fs::read_to_string(repo_path(NEWER)).unwrap();
    let (document, reports) = import_ok(&["-", "--custom-rules", CUSTOM], Some(&text));
    golden("tests/golden/prisma/newer-shape.expected.json", &document);
    golden(
        "tests/golden/prisma/newer-shape.reports.txt",
        &(reports.join("\n") + "\n"),
    );
    checked(&document);
    // The same from a file.
    assert_eq!(
        import_ok(&[NEWER, "--custom-rules", CUSTOM], None),
        (document, reports)
    );
}

#[test]
fn inputs_that_cannot_be_converted_are_refused_with_file_and_path() {
    let world = World::new();
    let write = |name: &str, text: &str| {
        let path = world.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let not_json = write("not-json.json", "{\"rules\": [\n  {\"name\": \"a\",}\n]}");
    let wrong_shape = write(
        "wrong.json",
        r#"{"rules": [{"name": "a", "network": {"effect": "alert", "whitelistIPs": "10.0.0.0/8"}}]}"#,
    );
    let unknown_id = write(
        "unknown-id.json",
        r#"{"rules": [{"name": "a", "customRules": [{"_id": 99, "action": "audit", "effect": "alert"}]}]}"#,
    );
    let missing = world.path("missing.json").to_str().unwrap().to_owned();
    let directory = world.path("").to_str().unwrap().to_owned();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![&not_json],
            format!(
                "defender: error: {not_json}: malformed JSON at line 2 column 16: trailing comma"
            ),
        ),
        (
            vec![&wrong_shape],
            format!(
                "defender: error: {wrong_shape}: rules[0].network.whitelistIPs: expected a list, \
                 found the string \"10.0.0.0/8\""
            ),
        ),
        (
            // The export given as the policy.
            vec![CUSTOM],
            format!(
                "defender: error: {CUSTOM}: document: expected the App-Embedded runtime policy (an \
                 object with `rules`, as GET /api/v1/policies/runtime/app-embedded returns it), \
                 found a list; the custom rules export goes to --custom-rules"
            ),
        ),
        (
            // The policy given as the export.
            vec![POLICY, "--custom-rules", POLICY],
            format!(
                "defender: error: {POLICY}: document: expected the custom rules export (a list, as \
                 GET /api/v1/custom-rules returns it), found an object; the runtime policy is the \
                 FILE argument"
            ),
        ),
        (
            vec![&unknown_id, "--custom-rules", CUSTOM],
            format!(
                "defender: error: {unknown_id}: rules[0].customRules[0]._id: custom rule 99 is not \
                 in the custom rules export: export the custom rules of the same console (GET \
                 /api/v1/custom-rules)"
            ),
        ),
        (
            vec![&missing],
            format!("defender: error: {missing}: No such file or directory (os error 2)"),
        ),
        (
            vec![POLICY, "--custom-rules", &missing],
            format!("defender: error: {missing}: No such file or directory (os error 2)"),
        ),
        (
            vec![&directory],
            format!("defender: error: {directory}: Is a directory (os error 21)"),
        ),
        (
            vec!["-", "--custom-rules", "-"],
            "defender: error: only one of FILE and --custom-rules can be `-` (standard input)"
                .to_owned(),
        ),
    ];
    for (args, want) in cases {
        let got = import_refused(&args, Some(""));
        assert_eq!(got.trim_end(), want, "{args:?}");
    }
    // Standard input is named as such.
    assert_eq!(
        import_refused(&["-"], Some("[]")).lines().next().unwrap(),
        "defender: error: standard input: document: expected the App-Embedded runtime policy (an \
         object with `rules`, as GET /api/v1/policies/runtime/app-embedded returns it), found a \
         list; the custom rules export goes to --custom-rules"
    );
}

#[test]
fn a_bad_flag_is_status_2_with_the_usage() {
    let out = import(&[POLICY, "--custom-rule", CUSTOM], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--custom-rules"), "{}", stderr(&out));
}
