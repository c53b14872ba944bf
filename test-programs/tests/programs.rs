//! Each test program is built as a program and refuses a call without arguments. Having an
//! integration test is also what makes `cargo test --workspace` build this package's programs
//! (under their own names, next to `defender`) before it runs any test: the defender's tests run
//! them from there.

use std::process::Command;

/// Every program of `src/bin/`, with the path cargo built it at.
const PROGRAMS: [(&str, &str); 10] = [
    ("attack_listener", env!("CARGO_BIN_EXE_attack_listener")),
    ("attack_raw", env!("CARGO_BIN_EXE_attack_raw")),
    ("attack_seccomp", env!("CARGO_BIN_EXE_attack_seccomp")),
    ("attack_signals", env!("CARGO_BIN_EXE_attack_signals")),
    ("attack_swap", env!("CARGO_BIN_EXE_attack_swap")),
    ("exec_helper", env!("CARGO_BIN_EXE_exec_helper")),
    ("fast_http", env!("CARGO_BIN_EXE_fast_http")),
    ("flood", env!("CARGO_BIN_EXE_flood")),
    ("net_helper", env!("CARGO_BIN_EXE_net_helper")),
    ("resolve", env!("CARGO_BIN_EXE_resolve")),
];

#[test]
fn every_program_refuses_a_call_without_arguments_with_its_usage() {
    for (name, path) in PROGRAMS {
        let out = Command::new(path)
            .output()
            .unwrap_or_else(|e| panic!("{name} ({path}): {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} succeeded without arguments");
        assert!(
            stderr.contains("usage"),
            "{name} without arguments did not print its usage: {stderr}"
        );
    }
}

/// `exec_helper race-argv`, without the defender: the flip is real (the kernel copies the
/// forbidden argument now and then, so `touch` creates both files), every child runs, and the tally
/// says so. A usage without the flipping argument in ARGV is refused.
#[test]
fn race_argv_natively_runs_both_arguments() {
    let dir = std::env::temp_dir().join(format!("race-argv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let helper = env!("CARGO_BIN_EXE_exec_helper");
    let out = Command::new(helper)
        .args(["race-argv", "/usr/bin/touch", "good", "evil", "200"])
        .args(["touch", "good"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let both = dir.join("good").exists() && dir.join("evil").exists();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("race: ran_allowed=200 killed=0 eperm=0 other=0"),
        "{stdout}"
    );
    assert!(both, "the kernel never read the other argument: {stdout}");

    let out = Command::new(helper)
        .args([
            "race-argv",
            "/usr/bin/touch",
            "good",
            "evil",
            "1",
            "touch",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `exec_helper race-setsid`, without the defender and without a terminal to give up: every child
/// runs the program. A round count that is not a number is refused.
#[test]
fn race_setsid_runs_every_child() {
    let helper = env!("CARGO_BIN_EXE_exec_helper");
    let out = Command::new(helper)
        .args(["race-setsid", "/bin/true", "20", "true"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("race: ran_allowed=20 killed=0 eperm=0 other=0"),
        "{stdout}"
    );
    let out = Command::new(helper)
        .args(["race-setsid", "/bin/true", "many", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
