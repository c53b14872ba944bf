//! Allow lists judge what runs: a name the workload made after the command started (a symlink, a
//! hard link, a renamed copy, a bind mount) is not a name the image gave, and does not satisfy an
//! allow list. Links that came with the image keep working, and deny entries still see every name.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{RaceTally, World, process_policy, require, stderr, stdout};

/// The programs the attacks use are allowed; `touch` (the denied program: its effect is a file
/// that must not exist) is not.
fn allow_list() -> String {
    process_policy(
        "allow by name",
        r#"{"effect": "prevent", "allow": ["true", "sh", "dash", "ln", "cp", "chmod", "mount", "unshare", "job"]}"#,
    )
}

/// Runs `sh -c cmd` under the allow list with CAP_SYS_ADMIN left to the command (a workload
/// whose deployment grants it), for the mount attacks.
fn run_with_sys_admin(w: &World, cmd: &str) -> Output {
    let policy = w.policy(&allow_list());
    w.command(Some(&policy), KEEP_SYS_ADMIN, &["sh", "-c", cmd])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("defender runs")
}

/// What leaves CAP_SYS_ADMIN to the command (the defender removes it otherwise).
const KEEP_SYS_ADMIN: &[&str] = &["--keep-capability", "SYS_ADMIN"];

/// The denied program.
fn touch() -> PathBuf {
    require("touch")
}

/// Waits until inode timestamps have moved past the ctime of `made`, so that a defender started
/// next takes its start mark after it: within one tick of the kernel's coarse clock, a file made
/// before the start has the same ctime as one made after, and counts as new.
fn after_the_tick_of(made: &Path) {
    let then = std::fs::symlink_metadata(made).unwrap();
    let probe = made.with_extension("tick");
    loop {
        std::fs::write(&probe, "").unwrap();
        let now = std::fs::metadata(&probe).unwrap();
        std::fs::remove_file(&probe).unwrap();
        if (now.ctime(), now.ctime_nsec()) > (then.ctime(), then.ctime_nsec()) {
            return;
        }
    }
}

/// The launch of `touch` was refused: it made nothing, the shell saw EPERM (126), and one
/// `processNotAllowed` audit names `process`.
fn assert_refused(w: &World, out: &Output, made: &str, process: &Path) {
    let (o, e) = (stdout(out), stderr(out));
    assert!(
        !w.path(made).exists(),
        "the denied program ran\nstdout: {o}\nstderr: {e}"
    );
    assert!(o.contains("rc=126"), "stdout: {o}\nstderr: {e}");
    let audits = w.audits_of("process");
    assert_eq!(audits.len(), 1, "{audits:?}\nstderr: {e}");
    assert_eq!(audits[0]["attack"], "processNotAllowed", "{audits:?}");
    assert_eq!(
        audits[0]["process"].as_str(),
        process.to_str(),
        "{audits:?}"
    );
}

#[test]
fn a_symlink_made_after_the_start_does_not_lend_its_name() {
    let w = World::new();
    let touch = touch();
    let cmd = format!(
        "ln -s {} ./true && ./true made; echo rc=$?",
        touch.display()
    );
    let out = w.run(&allow_list(), &["sh", "-c", &cmd]);
    assert_refused(&w, &out, "made", &touch);
}

#[test]
fn a_symlink_made_after_the_start_on_a_noexec_tmpfs_does_not_lend_its_name() {
    require("mount");
    let w = World::new();
    let touch = touch();
    let tmpfs = w.path("noexec");
    std::fs::create_dir(&tmpfs).unwrap();
    let _mounted = Mounted::new(&["-t", "tmpfs", "-o", "noexec", "tmpfs"], &tmpfs);
    // A copy could not run from there (noexec); a symlink to a program elsewhere can.
    let cmd = format!(
        "cd noexec && ln -s {} ./true && ./true ../made; echo rc=$?",
        touch.display()
    );
    let out = w.run(&allow_list(), &["sh", "-c", &cmd]);
    assert_refused(&w, &out, "made", &touch);
}

#[test]
fn a_symlink_that_came_before_the_start_lends_its_name() {
    let w = World::new();
    let touch = touch();
    // As a busybox-style link shipped in the image.
    std::os::unix::fs::symlink(&touch, w.path("true")).unwrap();
    after_the_tick_of(&w.path("true"));
    let out = w.run(&allow_list(), &["sh", "-c", "./true made; echo rc=$?"]);
    assert!(
        w.path("made").exists(),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("rc=0"), "{}", stdout(&out));
    assert!(w.audits_of("process").is_empty(), "{:?}", w.audits());
}

#[test]
fn a_new_link_to_a_link_of_the_image_goes_by_the_image_links_name() {
    // As `python -m venv` links venv/bin/python3 to the image's /usr/bin/python3 (itself a link
    // to python3.11): the new link's own name lends nothing, the image's link lends its name to a
    // program started under it.
    let w = World::new();
    let touch = touch();
    std::fs::create_dir(w.path("img")).unwrap();
    std::fs::create_dir(w.path("venv")).unwrap();
    std::os::unix::fs::symlink(&touch, w.path("img/true")).unwrap();
    after_the_tick_of(&w.path("img/true"));
    let out = w.run(
        &allow_list(),
        &[
            "sh",
            "-c",
            "ln -s ../img/true venv/true && ./venv/true made; echo rc=$?",
        ],
    );
    assert!(
        w.path("made").exists(),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(w.audits_of("process").is_empty(), "{:?}", w.audits());
}

#[test]
fn a_hard_link_of_the_image_does_not_lend_its_name_to_another_applet() {
    // Busybox installed as hard links (`busybox --install` without -s): every name is a real
    // path, none is the program's own.
    let w = World::new();
    let bin = w.path("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(require("busybox"), bin.join("busybox")).unwrap();
    for name in ["true", "sh"] {
        std::fs::hard_link(bin.join("busybox"), bin.join(name)).unwrap();
    }
    after_the_tick_of(&bin.join("sh"));
    let out = w.run(
        &allow_list(),
        &[
            "./bin/sh",
            "-c",
            "./bin/true && echo true-ran; (exec -a touch ./bin/true made); echo rc=$?",
        ],
    );
    assert!(stdout(&out).contains("true-ran"), "{}", stderr(&out));
    assert_refused(&w, &out, "made", &bin.join("true"));
}

#[test]
fn a_link_of_the_image_does_not_lend_its_name_to_another_applet() {
    // Busybox runs what argv[0] names: started through the image's `true` link as `touch`, it is
    // touch, and `true` is not its name.
    let busybox = require("busybox");
    let w = World::new();
    let bin = w.path("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["true", "sh"] {
        std::os::unix::fs::symlink(&busybox, bin.join(name)).unwrap();
    }
    after_the_tick_of(&bin.join("sh"));
    let out = w.run(
        &allow_list(),
        &[
            "./bin/sh",
            "-c",
            "./bin/true && echo true-ran; (exec -a touch ./bin/true made); echo rc=$?",
        ],
    );
    assert!(stdout(&out).contains("true-ran"), "{}", stderr(&out));
    assert_refused(&w, &out, "made", &busybox);
}

#[test]
fn a_decision_remembered_for_a_link_does_not_survive_its_replacement() {
    // The image's ./true runs twice (the second launch is a cache hit); then the workload
    // replaces the link with a new one to touch, under the same path.
    let w = World::new();
    std::os::unix::fs::symlink(require("true"), w.path("true")).unwrap();
    after_the_tick_of(&w.path("true"));
    let cmd = format!(
        "./true && ./true && echo twice; ln -sfn {} ./true && ./true made; echo rc=$?",
        touch().display()
    );
    let out = w.run(&allow_list(), &["sh", "-c", &cmd]);
    assert!(stdout(&out).contains("twice"), "{}", stderr(&out));
    assert_refused(&w, &out, "made", &touch());
}

#[test]
fn a_busybox_link_of_the_image_still_runs_its_applet() {
    let busybox = require("busybox");
    let w = World::new();
    let bin = w.path("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(&busybox, bin.join("true")).unwrap();
    after_the_tick_of(&bin.join("true"));
    let out = w.run(&allow_list(), &["sh", "-c", "./bin/true; echo rc=$?"]);
    assert!(stdout(&out).contains("rc=0"), "{}", stderr(&out));
    assert!(w.audits_of("process").is_empty(), "{:?}", w.audits());
}

#[test]
fn a_deny_entry_still_catches_a_program_behind_a_new_link() {
    let w = World::new();
    let touch = touch();
    let policy = process_policy("no touch", r#"{"effect": "prevent", "deny": ["touch"]}"#);
    let cmd = format!(
        "ln -s {} ./harmless && ./harmless made; echo rc=$?",
        touch.display()
    );
    let out = w.run(&policy, &["sh", "-c", &cmd]);
    assert!(!w.path("made").exists());
    assert!(stdout(&out).contains("rc=126"), "{}", stdout(&out));
    let audits = w.audits_of("process");
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert_eq!(audits[0]["attack"], "processExplicitlyDenied");
}

#[test]
fn a_deny_entry_catches_a_multi_call_program_started_under_a_denied_name() {
    let busybox = require("busybox");
    let w = World::new();
    let bin = w.path("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["true", "sh"] {
        std::os::unix::fs::symlink(&busybox, bin.join(name)).unwrap();
    }
    let policy = process_policy("no touch", r#"{"effect": "prevent", "deny": ["touch"]}"#);
    let out = w.run(
        &policy,
        &[
            "./bin/sh",
            "-c",
            "(exec -a touch ./bin/true made); echo rc=$?",
        ],
    );
    assert!(!w.path("made").exists(), "{}", stderr(&out));
    assert!(stdout(&out).contains("rc=126"), "{}", stdout(&out));
    let audits = w.audits_of("process");
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert_eq!(audits[0]["attack"], "processExplicitlyDenied");
}

#[test]
fn a_new_link_to_a_script_interpreter_does_not_lend_its_name() {
    let w = World::new();
    let touch = touch();
    // The script is the image's; the interpreter its `#!` line names is a link made after start.
    let dir = w.dir.path().display();
    std::fs::create_dir(w.path("bin")).unwrap();
    std::fs::write(w.path("job"), format!("#!{dir}/bin/sh {dir}/made\n")).unwrap();
    std::fs::set_permissions(
        w.path("job"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    after_the_tick_of(&w.path("job"));
    let cmd = format!("ln -s {} ./bin/sh && ./job; echo rc=$?", touch.display());
    let out = w.run(&allow_list(), &["sh", "-c", &cmd]);
    assert_refused(&w, &out, "made", &touch);
}

#[test]
fn a_hard_link_made_after_the_start_lends_no_name() {
    let w = World::new();
    // The image's own program, hard-linked under an allowed name by the workload: link(2) updates
    // the inode's ctime, which tells it apart from the image's hard links.
    std::fs::copy(touch(), w.path("tool")).unwrap();
    after_the_tick_of(&w.path("tool"));
    let out = w.run(
        &allow_list(),
        &["sh", "-c", "ln ./tool ./true && ./true made; echo rc=$?"],
    );
    assert_refused(&w, &out, "made", &w.path("true"));
}

#[test]
fn a_hard_link_that_came_before_the_start_lends_its_name() {
    let w = World::new();
    std::fs::copy(touch(), w.path("tool")).unwrap();
    std::fs::hard_link(w.path("tool"), w.path("true")).unwrap();
    after_the_tick_of(&w.path("true"));
    let out = w.run(&allow_list(), &["sh", "-c", "./true made; echo rc=$?"]);
    assert!(w.path("made").exists(), "{}", stderr(&out));
    assert!(w.audits_of("process").is_empty(), "{:?}", w.audits());
}

#[test]
fn a_renamed_copy_made_after_the_start_lends_no_name() {
    let w = World::new();
    let cmd = format!("cp {} ./true && ./true made; echo rc=$?", touch().display());
    let out = w.run(&allow_list(), &["sh", "-c", &cmd]);
    assert_refused(&w, &out, "made", &w.path("true"));
}

#[test]
fn an_allowed_program_changed_after_the_start_is_no_longer_allowed_by_name() {
    // The documented cost: chmod (like any change) makes the file new, and a list of names cannot
    // tell it from a copy put in its place.
    let w = World::new();
    std::fs::copy(touch(), w.path("true")).unwrap();
    after_the_tick_of(&w.path("true"));
    let out = w.run(
        &allow_list(),
        &["sh", "-c", "chmod 755 ./true && ./true made; echo rc=$?"],
    );
    assert_refused(&w, &out, "made", &w.path("true"));
}

#[test]
fn a_bind_mount_made_after_the_start_lends_no_name() {
    require("mount");
    let w = World::new();
    let touch = touch();
    // An allowed program of the image; the workload (holding CAP_SYS_ADMIN) mounts the denied one
    // over it. Unmounted at the end whatever happens.
    std::fs::copy(require("true"), w.path("true")).unwrap();
    after_the_tick_of(&w.path("true"));
    let _cleanup = Mounted::adopt(&w.path("true"));
    let cmd = format!(
        "mount --bind {} ./true && ./true made; echo rc=$?",
        touch.display()
    );
    let out = run_with_sys_admin(&w, &cmd);
    assert_refused(&w, &out, "made", &w.path("true"));
}

#[test]
fn a_bind_mount_in_a_private_mount_namespace_is_caught_at_the_exec() {
    require("mount");
    require("unshare");
    let w = World::new();
    let touch = touch();
    std::fs::copy(require("true"), w.path("true")).unwrap();
    after_the_tick_of(&w.path("true"));
    // The supervisor looks at its own mount namespace, where ./true is still the image's: the
    // exec is decided on that file, and what runs (touch) is caught at the exec stop, before its
    // first instruction.
    let cmd = format!(
        "unshare -m --propagation private sh -c 'mount --bind {} ./true && ./true made'; echo rc=$?",
        touch.display()
    );
    let out = run_with_sys_admin(&w, &cmd);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(
        !w.path("made").exists(),
        "touch ran\nstdout: {o}\nstderr: {e}"
    );
    let audits = w.audits_of("process");
    assert_eq!(audits.len(), 1, "{audits:?}\nstderr: {e}");
    assert_eq!(audits[0]["attack"], "processNotAllowed", "{audits:?}");
}

/// A mount made by the test (or by the workload under it), lazily unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(args: &[&str], target: &Path) -> Mounted {
        let status = std::process::Command::new("mount")
            .args(args)
            .arg(target)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount {args:?} {}", target.display());
        Mounted(target.to_path_buf())
    }

    /// Unmounts whatever gets mounted on `target` before the drop.
    fn adopt(target: &Path) -> Mounted {
        Mounted(target.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn swapping_argv0_after_the_check_never_runs_another_applet() {
    // Busybox through the image's `true` link, started with an argv[0] that another thread flips
    // between `true` (allowed) and `touch` (not allowed), so that the supervisor may decide on one
    // name and the kernel, re-reading argv after CONTINUE, start busybox under the other. The
    // exec stop compares argv[0] with the name decided on and kills a mismatch before busybox
    // runs an instruction. Each child either ran true, was killed, or was refused (EPERM). The
    // runs go on until a child was killed (and its kill audited): the proof that the exec stop's
    // check fired, not only that nothing got through. The path and argv[0] lie in one page, as a
    // shell's do, so that the supervisor reads both in its one read ahead of the caller's memory
    // (`RemoteMemory::read_ahead`) and decides on that snapshot: the flip after it is caught.
    let busybox = require("busybox");
    let tallies = common::race_until_killed("argv0", || argv0_round(&busybox));
    println!("{tallies:?}");
}

/// How many children one run of `race-argv0` forks.
const ARGV0_ATTEMPTS: u32 = 300;

/// One run of `race-argv0` (see the test above), checked; its tally.
fn argv0_round(busybox: &Path) -> RaceTally {
    let w = World::new();
    let bin = w.path("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(busybox, bin.join("true")).unwrap();
    after_the_tick_of(&bin.join("true"));
    let policy = process_policy(
        "allow by name",
        r#"{"effect": "prevent", "allow": ["exec_helper", "true"]}"#,
    );
    let helper = common::test_program("exec_helper");
    let attempts = ARGV0_ATTEMPTS.to_string();
    let out = w.run(
        &policy,
        &[
            helper.to_str().unwrap(),
            "race-argv0",
            bin.join("true").to_str().unwrap(),
            "true",
            "touch",
            &attempts,
            "made",
        ],
    );
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(
        !w.path("made").exists(),
        "touch ran\nstdout: {o}\nstderr: {e}"
    );
    let t = RaceTally::parse(&o).unwrap_or_else(|| panic!("no tally\nstdout: {o}\nstderr: {e}"));
    assert_eq!(t.other, 0, "{o}");
    assert_eq!(t.ran_allowed + t.killed + t.eperm, ARGV0_ATTEMPTS, "{t:?}");
    assert!(t.killed + t.eperm > 0, "the race did not happen: {t:?}");
    // Every refusal and every kill is audited as not allowed (floods fold into counts).
    let audits = w.audits_of("process");
    assert!(!audits.is_empty(), "{e}");
    for a in &audits {
        assert_eq!(a["attack"], "processNotAllowed", "{a}");
    }
    let kills: u64 = audits
        .iter()
        .filter(|a| a["parent"] == "unknown")
        .map(|a| a["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(kills, u64::from(t.killed), "{audits:?}");
    t
}
