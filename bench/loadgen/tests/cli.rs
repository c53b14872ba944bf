//! The load generator's command line: a flag it does not know is refused, naming it, with the
//! status that means "could not run" (2), before any connection is made. (Being an integration
//! test of this package also makes `cargo test --workspace` build the `loadgen` binary that
//! tests/console_fleet.rs drives.)

use std::process::Command;

#[test]
fn an_unknown_flag_is_refused_by_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--defenders", "1", "--no-such-flag"])
        .output()
        .expect("run loadgen");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}
