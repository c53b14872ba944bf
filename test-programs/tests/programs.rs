//! Each test program is built as a program and refuses a call without arguments. Having an
//! integration test is also what makes `cargo test --workspace` build this package's programs
//! (under their own names, next to `defender`) before it runs any test: the defender's tests run
//! them from there.

use std::process::Command;

/// Every program of `src/bin/`, with the path cargo built it at.
const PROGRAMS: [(&str, &str); 9] = [
    ("attack_listener", env!("CARGO_BIN_EXE_attack_listener")),
    ("attack_raw", env!("CARGO_BIN_EXE_attack_raw")),
    ("attack_seccomp", env!("CARGO_BIN_EXE_attack_seccomp")),
    ("attack_signals", env!("CARGO_BIN_EXE_attack_signals")),
    ("attack_swap", env!("CARGO_BIN_EXE_attack_swap")),
    ("exec_helper", env!("CARGO_BIN_EXE_exec_helper")),
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
