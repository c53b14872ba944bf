//! The console is built as a program, answers `--help` with its flags, and refuses an unknown
//! flag. Having an integration test is also what makes `cargo test --workspace` build the
//! `defender-console` binary (next to `defender`) before it runs any test: the defender's console
//! tests (tests/console_*.rs at the workspace root) drive it from there.

use std::process::Command;

const CONSOLE: &str = env!("CARGO_BIN_EXE_defender-console");

#[test]
fn help_names_the_flags_and_an_unknown_flag_is_refused() {
    let help = Command::new(CONSOLE).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{help:?}");
    for flag in [
        "--listen",
        "--data-dir",
        "--admin-token",
        "--defender-token",
        "--tls-cert",
        "--session-idle",
    ] {
        assert!(text.contains(flag), "--help does not name {flag}: {text}");
    }
    let bad = Command::new(CONSOLE)
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert!(!bad.status.success(), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--no-such-flag"),
        "{bad:?}"
    );
}
