//! Attack: the workload installs seccomp filters of its own to get between its calls and the
//! defender's listener. The kernel allows one listener per filter chain (seccomp_attach_filter
//! refuses a second with EBUSY, has_duplicate_listener), and when several filters answer, the most
//! restrictive action wins (seccomp_run_filters), so an ALLOW of the workload's never outranks the
//! defender's USER_NOTIF.

mod common;

use common::{World, stdout, test_program};

const POLICY: &str = r#"{"rules":[{"name":"no mkdir","processes":{"effect":"prevent","allow":[],"deny":["mkdir"]}}]}"#;

fn attack(w: &World, mode: &str, target: &std::path::Path) -> std::process::Output {
    w.run(
        POLICY,
        &[
            test_program("attack_seccomp").to_str().unwrap(),
            mode,
            "/bin/mkdir",
            target.to_str().unwrap(),
        ],
    )
}

fn assert_mkdir_prevented(w: &World, target: &std::path::Path) {
    assert!(!target.exists(), "the denied mkdir ran");
    let audits = w.audits_of("process");
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert_eq!(audits[0]["attack"], "processExplicitlyDenied");
    assert_eq!(audits[0]["process"], "/bin/mkdir");
}

#[test]
fn a_second_listener_is_refused_by_the_kernel() {
    // Natively the same program installs its listener: the refusal below is the defender's filter.
    let native = std::process::Command::new(test_program("attack_seccomp"))
        .args(["listener", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(stdout(&native).trim(), "listener=ok", "{native:?}");

    let w = World::new();
    let target = w.path("made-by-mkdir");
    let o = attack(&w, "listener", &target);
    let out = stdout(&o);
    assert!(out.contains("listener=EBUSY"), "{o:?}");
    assert!(out.contains("exec=EPERM"), "{o:?}");
    assert_mkdir_prevented(&w, &target);
}

#[test]
fn a_filter_that_allows_everything_does_not_outrank_the_defender() {
    let w = World::new();
    let target = w.path("made-by-mkdir");
    let o = attack(&w, "allow-all", &target);
    let out = stdout(&o);
    assert!(
        out.contains("allow-all=ok"),
        "the workload's filter is installed: {o:?}"
    );
    assert!(out.contains("exec=EPERM"), "{o:?}");
    assert_mkdir_prevented(&w, &target);
}
