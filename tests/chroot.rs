//! A caller that chroots: its exec paths are resolved inside its own root, symlinks included.

mod common;

use common::{World, process_policy, require};

#[test]
fn launches_after_chroot_are_resolved_inside_the_new_root() {
    let busybox = require("busybox");
    require("chroot");
    let w = World::new();
    let jail = w.path("jail");
    for dir in ["bin", "opt"] {
        std::fs::create_dir_all(jail.join(dir)).unwrap();
    }
    std::fs::copy(&busybox, jail.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", jail.join("bin/sh")).unwrap();
    // Inside the jail, /bin/harmless is an absolute symlink to /opt/mkdir: it names nothing
    // outside, and something denied inside.
    std::fs::copy(&busybox, jail.join("opt/mkdir")).unwrap();
    std::os::unix::fs::symlink("/opt/mkdir", jail.join("bin/harmless")).unwrap();

    let policy = process_policy("no mkdir", r#"{"effect": "prevent", "deny": ["mkdir"]}"#);
    let jail_arg = jail.to_str().unwrap();
    let out = w.run(
        &policy,
        &[
            "chroot",
            jail_arg,
            "/bin/sh",
            "-c",
            "/bin/harmless; echo rc=$?",
        ],
    );
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert!(
        stderr.contains("Operation not permitted"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("rc=126"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let audits = w.audits_of("process");
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert_eq!(audits[0]["process"], "/bin/harmless");
    assert_eq!(audits[0]["attack"], "processExplicitlyDenied");
    assert_eq!(audits[0]["cmdline"], "/bin/harmless");
}
