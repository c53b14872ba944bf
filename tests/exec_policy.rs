//! Exec enforcement end to end: the real `defender` binary around real programs (dash, coreutils,
//! busybox, python3) and `test-programs/src/bin/exec_helper.rs` for the exec paths a shell never takes. Each
//! test checks what the workload sees (EPERM, exit status, files not created), what the audit says
//! (docs/audit.md) and which rule was in force (docs/policy.md).
//!
//! Debian packages: coreutils, dash, busybox-static, python3-minimal (`/usr/bin/python3`).

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{
    RaceTally, World, process_policy, race_until_killed, stderr, stdout, without_capability_report,
};
use serde_json::Value;

/// PATH for every command: the system's tools only (no pyenv shims or cargo bins from the
/// developer's PATH), so that a PATH search is the same on every machine. On a merged-/usr system
/// a shell searching it tries `/usr/bin/mkdir`, then `/bin/mkdir`: two execs of one file.
const SYSTEM_PATH: &str = "/usr/bin:/bin";

/// What a shell prints when an exec fails with EPERM.
const EPERM_TEXT: &str = "Operation not permitted";

/// `exec_helper`'s exit status when the exec it tried returned.
const HELPER_EXEC_FAILED: i32 = 111;

/// `defender run`'s exit status when a `block` effect stopped the container.
const BLOCKED_EXIT: i32 = 99;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn canon(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
        .display()
        .to_string()
}

/// The first `dir/name` on SYSTEM_PATH, as a shell searching PATH executes it (not resolved).
fn which(name: &str) -> String {
    SYSTEM_PATH
        .split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("{name} is not on {SYSTEM_PATH}"))
}

/// The world's directory as the kernel names it (a process's cwd, the real path of its files).
fn root(w: &World) -> String {
    canon(w.dir.path())
}

/// `defender run` under `policy` for container `test-container`, image `test/image:1`, with PATH
/// set to SYSTEM_PATH unless `env` overrides it.
fn run_env(w: &World, policy: &str, env: &[(&str, &str)], command: &[&str]) -> Output {
    let p = w.policy(policy);
    let mut c = w.command(Some(&p), &[], command);
    c.env("PATH", SYSTEM_PATH);
    for (k, v) in env {
        c.env(k, v);
    }
    common::output_within(&mut c)
}

fn run(w: &World, policy: &str, command: &[&str]) -> Output {
    run_env(w, policy, &[], command)
}

/// `defender run` for another container and image than the World's default.
fn run_as(w: &World, container: &str, image: &str, policy: &str, command: &[&str]) -> Output {
    let p = w.policy(policy);
    let mut c = Command::new(common::defender());
    c.arg("run")
        .arg("--audit-file")
        .arg(w.audit_path())
        .arg("--container")
        .arg(container)
        .arg("--image")
        .arg(image)
        .arg("--policy")
        .arg(&p)
        .arg("--")
        .args(command)
        .current_dir(w.dir.path())
        .env("PATH", SYSTEM_PATH);
    for var in [
        "DEFENDER_POLICY",
        "DEFENDER_CONSOLE",
        "DEFENDER_AUDIT_FILE",
        "DEFENDER_CONTAINER",
        "DEFENDER_IMAGE",
    ] {
        c.env_remove(var);
    }
    common::output_within(&mut c)
}

/// One rule named `r` for every container with this `processes` section.
fn procs(processes: &str) -> String {
    process_policy("r", processes)
}

fn deny(effect: &str, entries: &[&str]) -> String {
    procs(&format!(
        r#"{{"effect": "{effect}", "deny": {}}}"#,
        json_list(entries)
    ))
}

fn allow(effect: &str, entries: &[&str]) -> String {
    procs(&format!(
        r#"{{"effect": "{effect}", "allow": {}}}"#,
        json_list(entries)
    ))
}

fn json_list(entries: &[&str]) -> String {
    serde_json::to_string(entries).unwrap()
}

/// Everything worth seeing when an assertion fails.
fn show(w: &World, o: &Output) -> String {
    format!(
        "status: {:?}\nstdout: {}\nstderr: {}\naudits: {}",
        o.status,
        stdout(o),
        stderr(o),
        fs::read_to_string(w.audit_path()).unwrap_or_else(|_| "(no audit file)".into())
    )
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// The `process` audits; asserts there is exactly `n`.
fn process_audits(w: &World, o: &Output, n: usize) -> Vec<Value> {
    let a = w.audits_of("process");
    assert_eq!(a.len(), n, "expected {n} process audit(s)\n{}", show(w, o));
    a
}

fn no_audits(w: &World, o: &Output) {
    assert!(
        without_capability_report(w.audits()).is_empty(),
        "expected no audit at all\n{}",
        show(w, o)
    );
}

/// RFC 3339, UTC, microseconds: `2026-11-29T06:58:16.123456Z`.
fn assert_time_format(t: &str) {
    let b = t.as_bytes();
    let digits = [
        0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25,
    ];
    let ok = b.len() == 27
        && digits.iter().all(|&i| b[i].is_ascii_digit())
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ]
        .iter()
        .all(|&(i, c)| b[i] == c);
    assert!(ok, "time {t:?} is not RFC 3339 UTC with microseconds");
    humantime::parse_rfc3339(t).unwrap_or_else(|e| panic!("time {t:?}: {e}"));
}

/// The fields every process audit must have, whatever the launch.
fn assert_process_event(e: &Value, effect: &str, attack: &str) {
    assert_eq!(e["type"], "process", "{e}");
    assert_eq!(e["effect"], effect, "{e}");
    assert_eq!(e["attack"], attack, "{e}");
    assert_eq!(e["rule"], "r", "{e}");
    assert_eq!(e["container"], "test-container", "{e}");
    assert_eq!(e["image"], "test/image:1", "{e}");
    assert_eq!(e["count"], 1, "{e}");
    assert!(e["pid"].as_u64().is_some_and(|p| p > 1), "pid: {e}");
    assert!(e["id"].as_str().is_some_and(|s| !s.is_empty()), "id: {e}");
    assert_time_format(e["time"].as_str().unwrap_or(""));
    let verdict = match attack {
        "processExplicitlyDenied" => "is explicitly denied",
        "processNotAllowed" => "is not allowed",
        other => panic!("unexpected attack {other}"),
    };
    let message = format!(
        "{} launched from {} {verdict} by a runtime rule. Full command: {}",
        e["process"].as_str().unwrap_or("?"),
        e["parent"].as_str().unwrap_or("?"),
        e["cmdline"].as_str().unwrap_or("?"),
    );
    assert_eq!(e["message"], message.as_str(), "{e}");
}

fn str_of<'a>(e: &'a Value, field: &str) -> &'a str {
    e[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {e}"))
}

fn assert_prevented(w: &World, o: &Output) {
    assert!(
        stderr(o).contains(EPERM_TEXT),
        "expected EPERM on stderr\n{}",
        show(w, o)
    );
}

/// Copies a system binary into the world (a file of its own: its real path is the copy).
fn copy_exe(w: &World, from: impl AsRef<Path>, to: &str) -> PathBuf {
    let dest = w.path(to);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::copy(from.as_ref(), &dest).unwrap();
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
    dest
}

fn script(w: &World, name: &str, text: &str) -> PathBuf {
    let p = w.path(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// `test-programs/src/bin/exec_helper.rs`, the exec paths a shell never takes.
fn helper() -> String {
    common::test_program("exec_helper").display().to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. A denied name, prevented: what the shell sees and what the audit says
// ---------------------------------------------------------------------------------------------

#[test]
fn mkdir_denied_by_name_is_prevented_and_audited_once() {
    let w = World::new();
    let o = run(
        &w,
        &deny("prevent", &["mkdir"]),
        &["sh", "-c", "mkdir d; echo rc=$?"],
    );
    assert_prevented(&w, &o);
    assert!(
        stdout(&o).contains("rc=126"),
        "the shell reports the failed exec\n{}",
        show(&w, &o)
    );
    assert_eq!(
        code(&o),
        Some(0),
        "sh itself exits 0 (echo)\n{}",
        show(&w, &o)
    );
    assert!(!w.path("d").exists(), "the directory must not be created");

    // The shell tried /usr/bin/mkdir and /bin/mkdir (same file): one attempt, one audit.
    let a = process_audits(&w, &o, 1);
    let e = &a[0];
    let mkdir = which("mkdir");
    let dash = canon("/bin/sh");
    assert_process_event(e, "prevent", "processExplicitlyDenied");
    assert_eq!(str_of(e, "process"), mkdir);
    assert_eq!(str_of(e, "parent"), dash);
    assert_eq!(str_of(e, "cmdline"), "mkdir d");
    assert_eq!(
        str_of(e, "message"),
        format!(
            "{mkdir} launched from {dash} is explicitly denied by a runtime rule. Full command: mkdir d"
        )
    );
    assert!(e.get("task").is_none(), "no ECS task here: {e}");
    assert!(
        ["domain", "ip", "port"].iter().all(|f| e.get(f).is_none()),
        "no network fields on a process event: {e}"
    );
}

#[test]
fn every_attempt_is_its_own_audit_with_a_unique_id() {
    let w = World::new();
    let o = run(
        &w,
        &deny("prevent", &["mkdir"]),
        &["sh", "-c", "mkdir a; mkdir b; mkdir a; echo done"],
    );
    assert!(stdout(&o).contains("done"), "{}", show(&w, &o));
    let a = process_audits(&w, &o, 3);
    let cmdlines: Vec<&str> = a.iter().map(|e| str_of(e, "cmdline")).collect();
    assert_eq!(cmdlines, ["mkdir a", "mkdir b", "mkdir a"]);
    let mut ids: Vec<&str> = a.iter().map(|e| str_of(e, "id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids must be unique: {a:?}");
    for e in &a {
        assert_process_event(e, "prevent", "processExplicitlyDenied");
    }
    assert!(!w.path("a").exists() && !w.path("b").exists());
}

/// The audit file holds what the workload did (command lines, paths): created 0600 whatever the
/// umask the defender inherits (0 here, which would leave a file made without a mode 0666).
#[test]
fn the_audit_file_is_created_private_to_its_owner() {
    use std::os::unix::process::CommandExt;
    let w = World::new();
    let p = w.policy(&deny("prevent", &["mkdir"]));
    let mut c = w.command(Some(&p), &[], &["sh", "-c", "mkdir d"]);
    c.env("PATH", SYSTEM_PATH);
    // SAFETY: the closure runs in the forked child before exec and only calls umask(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        c.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        });
    }
    let o = common::output_within(&mut c);
    assert!(!w.path("d").exists(), "{}", show(&w, &o));
    process_audits(&w, &o, 1);
    let mode = fs::metadata(w.audit_path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "{mode:o}");
}

// ---------------------------------------------------------------------------------------------
// 2. Allow lists, with each effect
// ---------------------------------------------------------------------------------------------

const SHELL_ONLY: &[&str] = &["sh", "dash", "true", "echo"];

#[test]
fn allow_list_prevents_what_it_does_not_name() {
    let w = World::new();
    let o = run(
        &w,
        &allow("prevent", SHELL_ONLY),
        &["sh", "-c", "true && ls; echo rc=$?"],
    );
    assert_prevented(&w, &o);
    assert!(stdout(&o).contains("rc=126"), "{}", show(&w, &o));
    assert!(
        !stdout(&o).contains("policy.json"),
        "ls must not run\n{}",
        show(&w, &o)
    );
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processNotAllowed");
    assert_eq!(str_of(&a[0], "process"), which("ls"));
    assert_eq!(str_of(&a[0], "cmdline"), "ls");
    assert_eq!(str_of(&a[0], "parent"), canon("/bin/sh"));
}

#[test]
fn allow_list_with_alert_lets_it_run_and_audits() {
    let w = World::new();
    let o = run(
        &w,
        &allow("alert", SHELL_ONLY),
        &["sh", "-c", "ls; echo rc=$?"],
    );
    assert!(
        stdout(&o).contains("policy.json"),
        "ls runs and lists the directory\n{}",
        show(&w, &o)
    );
    assert!(stdout(&o).contains("rc=0"), "{}", show(&w, &o));
    assert!(!stderr(&o).contains(EPERM_TEXT), "{}", show(&w, &o));
    assert_eq!(code(&o), Some(0));
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "alert", "processNotAllowed");
    assert_eq!(str_of(&a[0], "process"), which("ls"));
}

/// Whether any process's command line contains `marker`, and the matches.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(c) = fs::read(entry.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(marker) {
                found.push(format!("{}: {c}", name.to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn allow_list_with_block_stops_the_whole_container() {
    let w = World::new();
    // Sleep durations unique to this test run, so its processes can be found in /proc.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let marker = format!("{}{nanos:09}", std::process::id());
    let (s1, s2) = (format!("300.{marker}"), format!("301.{marker}"));
    // Each sleeper writes its pid before becoming sleep; the shell waits for both, so both are
    // alive when `ls` is launched.
    let script = format!(
        "sh -c 'echo $$ > p1; exec sleep {s1}' & \
         sh -c 'echo $$ > p2; exec sleep {s2}' & \
         while [ ! -s p1 ] || [ ! -s p2 ]; do :; done; \
         ls; echo after"
    );
    let policy = allow("block", &["sh", "dash", "true", "echo", "sleep"]);
    let o = run(&w, &policy, &["sh", "-c", &script]);

    assert_eq!(code(&o), Some(BLOCKED_EXIT), "{}", show(&w, &o));
    assert!(
        !stdout(&o).contains("after"),
        "the shell must be killed before it goes on\n{}",
        show(&w, &o)
    );
    assert!(
        !stdout(&o).contains("policy.json"),
        "ls must not run\n{}",
        show(&w, &o)
    );
    for p in ["p1", "p2"] {
        let pid =
            fs::read_to_string(w.path(p)).unwrap_or_else(|e| panic!("{p}: {e}\n{}", show(&w, &o)));
        assert!(!pid.trim().is_empty(), "{p} is empty");
    }
    let left = processes_with(&marker);
    assert!(
        left.is_empty(),
        "processes of the blocked container survive: {left:?}"
    );

    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "block", "processNotAllowed");
    assert_eq!(str_of(&a[0], "process"), which("ls"));
    let blocks: Vec<Value> = w
        .audits_of("defender")
        .into_iter()
        .filter(|e| e["effect"] == "block")
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "one defender block event\n{}",
        show(&w, &o)
    );
    let b = &blocks[0];
    assert_eq!(b["rule"], "r", "{b}");
    assert_eq!(b["container"], "test-container", "{b}");
    assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
    assert_time_format(str_of(b, "time"));
}

#[test]
fn the_commands_end_during_an_exec_stop_is_seen() {
    // Under an allow list every launch ends in an exec stop, and the kernel tells the tracer of a
    // stop with a SIGCHLD as well; the supervisor takes that SIGCHLD where it handles the stop
    // (`await_exec`) instead of in another turn of its loop, then reaps every child that changed.
    // The command here exits while the launch it started in the background is decided on and
    // stopped, so its end and the stop's news meet: seen, the end makes the defender stop the
    // orphan (`sleep`, TERM) and exit with the command's status; missed, it would wait for the
    // sleep to end, a thousand seconds. (The narrowest case, an end between the stop's report and
    // the take, which only the reap after the take tells of, lasts microseconds: no test can aim
    // at it, and the reap is there for it.)
    let w = World::new();
    let policy = allow("prevent", &["sh", "dash", "sleep"]);
    for round in 0..10 {
        let o = run(&w, &policy, &["sh", "-c", "sleep 1000 & exit 3"]);
        assert_eq!(code(&o), Some(3), "round {round}: {}", show(&w, &o));
    }
    assert!(
        w.audits_of("process").is_empty(),
        "nothing was refused: {:?}",
        w.audits_of("process")
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Symlinks and busybox: the name as executed and the real path
// ---------------------------------------------------------------------------------------------

#[test]
fn busybox_symlink_is_denied_by_its_link_name() {
    let busybox = common::require("busybox");
    let w = World::new();
    symlink(&busybox, w.path("mkdir")).unwrap();

    // Control: the link works as mkdir when nothing denies it.
    let o = run(&w, &deny("prevent", &["rmdir"]), &["./mkdir", "made"]);
    assert_eq!(code(&o), Some(0), "{}", show(&w, &o));
    assert!(
        w.path("made").is_dir(),
        "busybox as mkdir creates directories"
    );

    let w = World::new();
    symlink(&busybox, w.path("mkdir")).unwrap();
    let abs_w = format!("{}/mkdir", root(&w));
    let o = run(
        &w,
        &deny("prevent", &["mkdir"]),
        &[
            "sh",
            "-c",
            &format!("./mkdir x; echo rc=$?; {abs_w} y; echo rc=$?"),
        ],
    );
    assert_prevented(&w, &o);
    assert_eq!(stdout(&o).matches("rc=126").count(), 2, "{}", show(&w, &o));
    assert!(!w.path("x").exists() && !w.path("y").exists());
    let a = process_audits(&w, &o, 2);
    for (e, cmd) in a
        .iter()
        .zip(["./mkdir x".to_string(), format!("{abs_w} y")])
    {
        assert_process_event(e, "prevent", "processExplicitlyDenied");
        assert_eq!(str_of(e, "process"), abs_w, "as executed, made absolute");
        assert_eq!(str_of(e, "cmdline"), cmd);
    }
}

#[test]
fn busybox_symlink_is_denied_by_its_real_path() {
    let busybox = common::require("busybox");
    let w = World::new();
    symlink(&busybox, w.path("mkdir")).unwrap();
    let o = run(
        &w,
        &deny("prevent", &["busybox"]),
        &["sh", "-c", "./mkdir x; echo rc=$?"],
    );
    assert_prevented(&w, &o);
    assert!(!w.path("x").exists());
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    let process = str_of(&a[0], "process");
    let as_executed = format!("{}/mkdir", root(&w));
    assert!(
        process == as_executed || process == canon(&busybox),
        "process is the launched file (as executed or real): {process}"
    );
}

#[test]
fn allow_list_admits_a_busybox_symlink_by_its_link_name() {
    let busybox = common::require("busybox");
    let w = World::new();
    symlink(&busybox, w.path("ls")).unwrap();
    symlink(&busybox, w.path("mkdir")).unwrap();
    let o = run(&w, &allow("prevent", &["ls"]), &["./ls"]);
    assert_eq!(code(&o), Some(0), "{}", show(&w, &o));
    assert!(
        stdout(&o).contains("policy.json"),
        "busybox ls lists the directory\n{}",
        show(&w, &o)
    );
    no_audits(&w, &o);

    // The same allow list keeps other applets out (the entrypoint is a process like any other).
    let o = run(&w, &allow("prevent", &["ls"]), &["./mkdir", "x"]);
    assert_eq!(code(&o), Some(126), "{}", show(&w, &o));
    assert!(!w.path("x").exists());
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processNotAllowed");
}

#[test]
fn innocent_symlink_name_to_mkdir_is_denied_by_real_path() {
    let w = World::new();
    symlink(which("mkdir"), w.path("harmless")).unwrap();
    let o = run(
        &w,
        &deny("prevent", &["mkdir"]),
        &["sh", "-c", "./harmless x; echo rc=$?"],
    );
    assert_prevented(&w, &o);
    assert!(stdout(&o).contains("rc=126"), "{}", show(&w, &o));
    assert!(!w.path("x").exists());
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    let process = str_of(&a[0], "process");
    let as_executed = format!("{}/harmless", root(&w));
    assert!(
        process == as_executed || process == canon(which("mkdir")),
        "process is the launched file (as executed or real): {process}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Relative paths, PATH lookups, path globs
// ---------------------------------------------------------------------------------------------

#[test]
fn relative_paths_are_made_absolute_against_the_callers_cwd() {
    let w = World::new();
    copy_exe(&w, which("true"), "bin/tool");
    fs::create_dir(w.path("sub")).unwrap();
    let tool = format!("{}/bin/tool", root(&w));

    // Control: a pattern for another directory leaves the tool alone.
    let o = run(
        &w,
        &deny("prevent", &[&format!("{}/other/*", root(&w))]),
        &["sh", "-c", "./bin/tool; echo rc=$?"],
    );
    assert!(stdout(&o).contains("rc=0"), "{}", show(&w, &o));
    no_audits(&w, &o);

    let o = run(
        &w,
        &deny("prevent", &[&tool]),
        &[
            "sh",
            "-c",
            "./bin/tool 1; echo rc=$?; cd sub && ../bin/tool 2; echo rc=$?; ./../bin/./tool 3; echo rc=$?",
        ],
    );
    assert_eq!(stdout(&o).matches("rc=126").count(), 3, "{}", show(&w, &o));
    let a = process_audits(&w, &o, 3);
    for (e, cmd) in a
        .iter()
        .zip(["./bin/tool 1", "../bin/tool 2", "./../bin/./tool 3"])
    {
        assert_process_event(e, "prevent", "processExplicitlyDenied");
        assert_eq!(str_of(e, "process"), tool, "normalized absolute path");
        assert_eq!(str_of(e, "cmdline"), cmd);
    }
}

#[test]
fn path_lookup_through_a_private_directory() {
    let w = World::new();
    copy_exe(&w, which("true"), "pbin/mytool");
    let pbin = format!("{}/pbin", root(&w));
    let path = format!("{pbin}:{SYSTEM_PATH}");
    let env = [("PATH", path.as_str())];

    let o = run_env(
        &w,
        &deny("prevent", &["mytool"]),
        &env,
        &["sh", "-c", "mytool; echo rc=$?"],
    );
    assert_prevented(&w, &o);
    assert!(stdout(&o).contains("rc=126"), "{}", show(&w, &o));
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    assert_eq!(str_of(&a[0], "process"), format!("{pbin}/mytool"));

    // The entrypoint found through PATH is judged the same way.
    let w2 = World::new();
    copy_exe(&w2, which("true"), "pbin/mytool");
    let pbin2 = format!("{}/pbin", root(&w2));
    let path2 = format!("{pbin2}:{SYSTEM_PATH}");
    let o = run_env(
        &w2,
        &deny("prevent", &["mytool"]),
        &[("PATH", &path2)],
        &["mytool"],
    );
    assert_eq!(code(&o), Some(126), "{}", show(&w2, &o));
    let a = process_audits(&w2, &o, 1);
    assert_eq!(str_of(&a[0], "process"), format!("{pbin2}/mytool"));
}

#[test]
fn path_glob_matches_the_file_actually_executed() {
    let busybox = common::require("busybox");
    let w = World::new();
    // A private mkdir (a busybox copy) ahead of the system one on PATH.
    copy_exe(&w, &busybox, "pbin/mkdir");
    let path = format!("{}/pbin:{SYSTEM_PATH}", root(&w));
    let policy = deny("prevent", &["/usr/bin/mkd*"]);

    let o = run_env(
        &w,
        &policy,
        &[("PATH", &path)],
        &["sh", "-c", "mkdir private; echo rc=$?"],
    );
    assert!(
        stdout(&o).contains("rc=0"),
        "the private mkdir does not match /usr/bin/mkd*\n{}",
        show(&w, &o)
    );
    assert!(w.path("private").is_dir());
    no_audits(&w, &o);

    let o = run(&w, &policy, &["sh", "-c", "mkdir system; echo rc=$?"]);
    assert_prevented(&w, &o);
    assert!(!w.path("system").exists());
    let a = process_audits(&w, &o, 1);
    assert_eq!(str_of(&a[0], "process"), which("mkdir"));

    // /bin/mkdir: on a merged-/usr system its real path is /usr/bin/mkdir, which the glob matches.
    let w = World::new();
    let o = run(&w, &policy, &["sh", "-c", "/bin/mkdir viabin; echo rc=$?"]);
    if canon("/bin/mkdir").starts_with("/usr/bin/mkd") {
        assert_prevented(&w, &o);
        assert!(!w.path("viabin").exists());
        let a = process_audits(&w, &o, 1);
        assert_eq!(str_of(&a[0], "process"), "/bin/mkdir", "as executed");
    } else {
        assert!(
            w.path("viabin").is_dir(),
            "/bin/mkdir is its own file here\n{}",
            show(&w, &o)
        );
        no_audits(&w, &o);
    }
}

#[test]
fn path_globs_star_stays_in_one_directory_double_star_does_not() {
    let w = World::new();
    copy_exe(&w, which("true"), "bin/tool");
    copy_exe(&w, which("true"), "top");
    let r = root(&w);

    let o = run(
        &w,
        &deny("prevent", &[&format!("{r}/*")]),
        &["sh", "-c", "./bin/tool; echo nested=$?; ./top; echo top=$?"],
    );
    assert!(
        stdout(&o).contains("nested=0"),
        "`*` does not cross `/`\n{}",
        show(&w, &o)
    );
    assert!(stdout(&o).contains("top=126"), "{}", show(&w, &o));
    let a = process_audits(&w, &o, 1);
    assert_eq!(str_of(&a[0], "process"), format!("{r}/top"));

    let w = World::new();
    copy_exe(&w, which("true"), "bin/tool");
    copy_exe(&w, which("true"), "top");
    let r = root(&w);
    let o = run(
        &w,
        &deny("prevent", &[&format!("{r}/**")]),
        &[
            "sh",
            "-c",
            "./bin/tool; echo nested=$?; ./top; echo top=$?; true; echo sys=$?",
        ],
    );
    let out = stdout(&o);
    assert!(
        out.contains("nested=126") && out.contains("top=126"),
        "{}",
        show(&w, &o)
    );
    assert!(
        out.contains("sys=0"),
        "/usr/bin/true is outside the glob\n{}",
        show(&w, &o)
    );
    process_audits(&w, &o, 2);
}

// ---------------------------------------------------------------------------------------------
// 5. `#!` scripts: the script and its interpreter
// ---------------------------------------------------------------------------------------------

#[test]
fn script_with_a_denied_interpreter_is_prevented() {
    let python = common::require("python3");
    let w = World::new();
    script(
        &w,
        "s.py",
        &format!("#!{}\nprint('py-ran')\n", python.display()),
    );

    let o = run(
        &w,
        &deny("prevent", &["rmdir"]),
        &["sh", "-c", "./s.py; echo rc=$?"],
    );
    assert!(
        stdout(&o).contains("py-ran"),
        "control: the script runs\n{}",
        show(&w, &o)
    );

    let w2 = World::new();
    script(
        &w2,
        "s.py",
        &format!("#!{}\nprint('py-ran')\n", python.display()),
    );
    let o = run(
        &w2,
        &deny("prevent", &["python3"]),
        &["sh", "-c", "./s.py; echo rc=$?"],
    );
    assert_prevented(&w2, &o);
    assert!(!stdout(&o).contains("py-ran"), "{}", show(&w2, &o));
    assert!(stdout(&o).contains("rc=126"), "{}", show(&w2, &o));
    let a = process_audits(&w2, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    assert_eq!(
        str_of(&a[0], "process"),
        python.display().to_string(),
        "the interpreter violated"
    );
    assert_eq!(str_of(&a[0], "cmdline"), "./s.py");
    assert_eq!(str_of(&a[0], "parent"), canon("/bin/sh"));
}

#[test]
fn interpreter_is_judged_by_its_real_path_too() {
    // `#!/bin/sh` runs dash: deny ["dash"] stops the script. The launcher is env, not a shell.
    let w = World::new();
    script(&w, "x.sh", "#!/bin/sh\necho script-ran\n");
    let o = run(&w, &deny("prevent", &["dash"]), &["/usr/bin/env", "./x.sh"]);
    assert_eq!(
        code(&o),
        Some(126),
        "env reports the failed exec\n{}",
        show(&w, &o)
    );
    assert_prevented(&w, &o);
    assert!(!stdout(&o).contains("script-ran"));
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    let process = str_of(&a[0], "process");
    assert!(
        process == "/bin/sh" || process == canon("/bin/sh"),
        "the interpreter: {process}"
    );
    assert_eq!(str_of(&a[0], "parent"), canon("/usr/bin/env"));
}

#[test]
fn script_itself_must_be_allowed_not_only_its_interpreter() {
    let w = World::new();
    script(&w, "x.sh", "#!/bin/sh\necho script-ran\n");
    let o = run(
        &w,
        &allow("prevent", &["sh", "dash", "true"]),
        &["sh", "-c", "./x.sh; echo rc=$?"],
    );
    assert_prevented(&w, &o);
    assert!(!stdout(&o).contains("script-ran"), "{}", show(&w, &o));
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processNotAllowed");
    assert_eq!(str_of(&a[0], "process"), format!("{}/x.sh", root(&w)));

    let w = World::new();
    script(&w, "x.sh", "#!/bin/sh\necho script-ran\n");
    let o = run(
        &w,
        &allow("prevent", &["sh", "dash", "true", "x.sh"]),
        &["sh", "-c", "./x.sh; echo rc=$?"],
    );
    assert!(
        stdout(&o).contains("script-ran"),
        "allowed script, allowed interpreter\n{}",
        show(&w, &o)
    );
    assert!(stdout(&o).contains("rc=0"), "{}", show(&w, &o));
    no_audits(&w, &o);
}

#[test]
fn env_shebang_runs_env_then_judges_the_real_interpreter() {
    common::require("python3");
    let w = World::new();
    script(&w, "e.py", "#!/usr/bin/env python3\nprint('env-py')\n");
    let o = run(
        &w,
        &deny("prevent", &["rmdir"]),
        &["sh", "-c", "./e.py; echo rc=$?"],
    );
    assert!(
        stdout(&o).contains("env-py"),
        "control: the script runs\n{}",
        show(&w, &o)
    );
    no_audits(&w, &o);

    let w = World::new();
    script(&w, "e.py", "#!/usr/bin/env python3\nprint('env-py')\n");
    let o = run(
        &w,
        &deny("prevent", &["python3"]),
        &["sh", "-c", "./e.py; echo rc=$?"],
    );
    assert_prevented(&w, &o);
    assert!(!stdout(&o).contains("env-py"), "{}", show(&w, &o));
    assert!(
        stdout(&o).contains("rc=126"),
        "env exits 126 when its exec fails\n{}",
        show(&w, &o)
    );
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    assert_eq!(str_of(&a[0], "process"), which("python3"));
    assert_eq!(
        str_of(&a[0], "parent"),
        canon("/usr/bin/env"),
        "env launched it"
    );

    // And env itself can be what is denied.
    let w = World::new();
    script(&w, "e.py", "#!/usr/bin/env python3\nprint('env-py')\n");
    let o = run(
        &w,
        &deny("prevent", &["env"]),
        &["sh", "-c", "./e.py; echo rc=$?"],
    );
    assert_prevented(&w, &o);
    assert!(!stdout(&o).contains("env-py"), "{}", show(&w, &o));
    let a = process_audits(&w, &o, 1);
    assert_eq!(str_of(&a[0], "process"), "/usr/bin/env");
}

// ---------------------------------------------------------------------------------------------
// 6. execveat, fexecve, memfd, /proc/self/fd
// ---------------------------------------------------------------------------------------------

/// Runs `exec_helper SUB ARGS...` as the entrypoint.
fn helper_run(w: &World, policy: &str, sub: &str, args: &[&str]) -> Output {
    let h = helper();
    let mut command = vec![h.as_str(), sub];
    command.extend_from_slice(args);
    run(w, policy, &command)
}

/// The helper's exec failed with `errno`.
fn assert_helper_errno(w: &World, o: &Output, sub: &str, errno: i32) {
    assert_eq!(code(o), Some(HELPER_EXEC_FAILED), "{}", show(w, o));
    assert!(
        stderr(o).contains(&format!("{sub}: errno={errno} ")),
        "expected errno {errno}\n{}",
        show(w, o)
    );
}

/// `mkdir x` launched through `sub`; the prevented launch's audit.
fn assert_prevented_mkdir_via_helper(w: &World, o: &Output, sub: &str, process: &str) {
    assert_helper_errno(w, o, sub, libc::EPERM);
    assert!(!w.path("x").exists(), "mkdir must not run");
    let a = process_audits(w, o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    assert_eq!(str_of(&a[0], "process"), process);
    assert_eq!(str_of(&a[0], "cmdline"), "mkdir x");
    assert_eq!(str_of(&a[0], "parent"), canon(helper()));
}

#[test]
fn execveat_on_an_fd_is_judged_by_the_file() {
    let mkdir = canon(which("mkdir"));
    for sub in ["execveat-fd", "execveat-opath", "fexecve"] {
        let w = World::new();
        let o = helper_run(
            &w,
            &deny("prevent", &["rmdir"]),
            sub,
            &[&mkdir, "mkdir", "x"],
        );
        assert_eq!(code(&o), Some(0), "{sub}: control\n{}", show(&w, &o));
        assert!(w.path("x").is_dir(), "{sub}: control runs mkdir");
        no_audits(&w, &o);

        let w = World::new();
        let o = helper_run(
            &w,
            &deny("prevent", &["mkdir"]),
            sub,
            &[&mkdir, "mkdir", "x"],
        );
        assert_prevented_mkdir_via_helper(&w, &o, sub, &mkdir);
    }
}

#[test]
fn execveat_relative_to_a_directory_fd() {
    let mkdir = canon(which("mkdir"));
    let (dir, name) = mkdir.rsplit_once('/').unwrap();
    // A path glob: it matches only if the name is resolved against the dirfd (not the cwd).
    let w = World::new();
    let o = helper_run(
        &w,
        &deny("prevent", &[&mkdir]),
        "execveat-dirfd",
        &[dir, name, "mkdir", "x"],
    );
    assert_prevented_mkdir_via_helper(&w, &o, "execveat-dirfd", &mkdir);

    let w = World::new();
    let o = helper_run(
        &w,
        &deny("prevent", &["rmdir"]),
        "execveat-dirfd",
        &[dir, name, "mkdir", "x"],
    );
    assert_eq!(code(&o), Some(0), "control\n{}", show(&w, &o));
    assert!(w.path("x").is_dir());
}

#[test]
fn memfd_exec_is_judged_by_its_memfd_name() {
    let mkdir = canon(which("mkdir"));
    let w = World::new();
    let o = helper_run(
        &w,
        &deny("prevent", &["rmdir"]),
        "memfd",
        &[&mkdir, "mkdir", "x"],
    );
    assert_eq!(
        code(&o),
        Some(0),
        "control: a memfd copy of mkdir runs\n{}",
        show(&w, &o)
    );
    assert!(w.path("x").is_dir());

    let w = World::new();
    let o = helper_run(
        &w,
        &deny("prevent", &["/memfd:*"]),
        "memfd",
        &[&mkdir, "mkdir", "x"],
    );
    assert_helper_errno(&w, &o, "memfd", libc::EPERM);
    assert!(!w.path("x").exists());
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    let process = str_of(&a[0], "process");
    assert!(
        process.starts_with("/memfd:exec_helper_copy"),
        "the memfd's name: {process}"
    );
    assert_eq!(str_of(&a[0], "cmdline"), "mkdir x");

    // An allow list keeps out fileless programs without naming them.
    let w = World::new();
    let o = helper_run(
        &w,
        &allow("prevent", &["exec_helper", "mkdir"]),
        "memfd",
        &[&mkdir, "mkdir", "x"],
    );
    assert_helper_errno(&w, &o, "memfd", libc::EPERM);
    assert!(!w.path("x").exists());
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processNotAllowed");
}

#[test]
fn exec_through_proc_self_fd_is_judged_on_the_callers_file() {
    // execve("/proc/self/fd/N"): `self` is the caller, so the real path is the file the caller
    // opened (glibc's fexecve fallback and runc's self-exec do this).
    let mkdir = canon(which("mkdir"));
    let w = World::new();
    let o = helper_run(
        &w,
        &allow("prevent", &["exec_helper", "mkdir"]),
        "proc-fd",
        &[&mkdir, "mkdir", "x"],
    );
    assert_eq!(
        code(&o),
        Some(0),
        "mkdir is allowed, however it is named\n{}",
        show(&w, &o)
    );
    assert!(w.path("x").is_dir());
    no_audits(&w, &o);

    let w = World::new();
    let o = helper_run(
        &w,
        &deny("prevent", &["mkdir"]),
        "proc-fd",
        &[&mkdir, "mkdir", "x"],
    );
    assert!(
        !w.path("x").exists(),
        "mkdir must not run\n{}",
        show(&w, &o)
    );
    assert_helper_errno(&w, &o, "proc-fd", libc::EPERM);
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    assert_eq!(str_of(&a[0], "cmdline"), "mkdir x");
    assert_eq!(str_of(&a[0], "parent"), canon(helper()));
}

// ---------------------------------------------------------------------------------------------
// 7. Other ABIs: i386 `int 0x80`, x32
// ---------------------------------------------------------------------------------------------

/// Whether this kernel runs i386 system calls from a 64-bit process (`ia32_emulation`): asks the
/// helper, outside the defender, for `getpid` through `int 0x80`.
fn int80_available() -> bool {
    let child = common::spawn_piped(Command::new(helper()).arg("int80-getpid"));
    let pid = i64::from(child.id());
    let o = common::finish_within(child, common::HANG_GUARD);
    let out = stdout(&o);
    let got = out
        .trim()
        .strip_prefix("int80-getpid=")
        .and_then(|n| n.parse::<i64>().ok());
    match got {
        Some(p) if p == pid => true,
        Some(p) if p == -i64::from(libc::ENOSYS) => false,
        // Without ia32 emulation, 6.7+ kernels may not even have the `int 0x80` gate: SIGSEGV.
        None if o.status.code().is_none() => false,
        other => panic!("unexpected int80-getpid result {other:?}: {o:?}"),
    }
}

#[test]
fn i386_execve_is_trapped_and_judged() {
    let mkdir = which("mkdir");
    let w = World::new();
    let o = helper_run(
        &w,
        &deny("prevent", &["mkdir"]),
        "int80-execve",
        &[&mkdir, "mkdir", "x"],
    );
    assert!(
        !w.path("x").exists(),
        "mkdir must not run\n{}",
        show(&w, &o)
    );
    if !int80_available() {
        eprintln!("note: this kernel has no i386 emulation; int 0x80 execve must fail outright");
        assert_ne!(code(&o), Some(0), "{}", show(&w, &o));
        return;
    }
    // The audit's command line is read through 32-bit pointers.
    assert_prevented_mkdir_via_helper(&w, &o, "int80-execve", &mkdir);

    // Allowed under an enforcing rule: the i386 exec goes through, verified and all.
    let w = World::new();
    let o = helper_run(
        &w,
        &deny("prevent", &["rmdir"]),
        "int80-execve",
        &[&mkdir, "mkdir", "x"],
    );
    assert_eq!(code(&o), Some(0), "{}", show(&w, &o));
    assert!(w.path("x").is_dir());
    no_audits(&w, &o);

    // No rule for this container: nothing is judged, the exec simply works.
    let w = World::new();
    let other = r#"{"rules": [{"name": "r", "collections": {"containers": ["other"]}, "processes": {"effect": "prevent", "deny": ["true"]}}]}"#;
    let o = helper_run(&w, other, "int80-execve", &[&which("true")]);
    assert_eq!(code(&o), Some(0), "{}", show(&w, &o));
    no_audits(&w, &o);
}

#[test]
fn x32_execve_is_refused_outright() {
    let mkdir = which("mkdir");
    // Most distribution kernels are built without x32 (CONFIG_X86_X32_ABI) and answer ENOSYS
    // themselves; only where x32 works does this test show the filter's own refusal.
    let native = tempfile::tempdir().unwrap();
    let probe = common::output_within(
        Command::new(helper())
            .args(["x32-execve", &mkdir, "mkdir", "x"])
            .current_dir(native.path()),
    );
    if native.path().join("x").is_dir() {
        eprintln!("x32 works on this kernel: checking that the filter refuses it");
    } else {
        eprintln!(
            "note: no x32 on this kernel ({}); checking ENOSYS all the same",
            stderr(&probe).trim()
        );
    }
    let rule_for_us = deny("prevent", &["rmdir"]);
    let rule_for_others = r#"{"rules": [{"name": "r", "collections": {"containers": ["other"]}, "processes": {"effect": "prevent", "deny": ["rmdir"]}}]}"#;
    for policy in [rule_for_us.as_str(), rule_for_others] {
        let w = World::new();
        let o = helper_run(&w, policy, "x32-execve", &[&mkdir, "mkdir", "x"]);
        assert_helper_errno(&w, &o, "x32-execve", libc::ENOSYS);
        assert!(!w.path("x").exists());
        no_audits(&w, &o);
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Which rule is in force
// ---------------------------------------------------------------------------------------------

const MKDIR_X: &[&str] = &["sh", "-c", "mkdir x; echo rc=$?"];

/// Runs `mkdir x` under `policy` as `container`/`image`; returns whether it was prevented, after
/// checking that outcome, directory and audits agree.
fn mkdir_prevented(policy: &str, container: &str, image: &str) -> bool {
    let w = World::new();
    let o = run_as(&w, container, image, policy, MKDIR_X);
    let ran = w.path("x").is_dir();
    if ran {
        assert!(stdout(&o).contains("rc=0"), "{}", show(&w, &o));
        no_audits(&w, &o);
    } else {
        assert_prevented(&w, &o);
        let a = process_audits(&w, &o, 1);
        assert_eq!(a[0]["container"], container);
        assert_eq!(a[0]["image"], image);
    }
    !ran
}

fn rule(name: &str, collections: &str, processes: &str) -> String {
    format!(r#"{{"name": "{name}", "collections": {collections}, "processes": {processes}}}"#)
}

fn policy_of(rules: &[String]) -> String {
    format!(r#"{{"rules": [{}]}}"#, rules.join(", "))
}

const DENY_MKDIR: &str = r#"{"effect": "prevent", "deny": ["mkdir"]}"#;
const DENY_RMDIR: &str = r#"{"effect": "prevent", "deny": ["rmdir"]}"#;

#[test]
fn first_matching_rule_wins() {
    let policy = policy_of(&[
        rule("mine", r#"{"containers": ["test-container"]}"#, DENY_RMDIR),
        rule("everyone", r#"{"containers": ["*"]}"#, DENY_MKDIR),
    ]);
    assert!(
        !mkdir_prevented(&policy, "test-container", "test/image:1"),
        "the first rule is in force"
    );
    assert!(
        mkdir_prevented(&policy, "someone-else", "test/image:1"),
        "the second rule for others"
    );

    // The audit names the rule in force.
    let w = World::new();
    let o = run_as(&w, "someone-else", "i", &policy, MKDIR_X);
    let a = process_audits(&w, &o, 1);
    assert_eq!(a[0]["rule"], "everyone");
}

#[test]
fn exclusions_take_containers_out_of_a_rule() {
    let policy = policy_of(&[rule("r", r#"{"containers": ["*", "-test-*"]}"#, DENY_MKDIR)]);
    assert!(!mkdir_prevented(&policy, "test-container", "test/image:1"));
    assert!(mkdir_prevented(&policy, "prod-container", "test/image:1"));

    let policy = policy_of(&[rule("r", r#"{"images": ["*", "-*debug*"]}"#, DENY_MKDIR)]);
    assert!(!mkdir_prevented(&policy, "c", "app:debug-1"));
    assert!(mkdir_prevented(&policy, "c", "app:1"));
}

#[test]
fn disabled_rules_are_skipped() {
    let off = |name: &str, processes: &str| {
        format!(r#"{{"name": "{name}", "disabled": true, "processes": {processes}}}"#)
    };
    let policy = policy_of(&[off("off", DENY_MKDIR)]);
    assert!(
        !mkdir_prevented(&policy, "test-container", "test/image:1"),
        "a disabled rule enforces nothing"
    );

    // Skipped, not ending the search: the next rule is in force.
    let policy = policy_of(&[off("off", DENY_RMDIR), rule("on", r#"{}"#, DENY_MKDIR)]);
    assert!(mkdir_prevented(&policy, "test-container", "test/image:1"));
}

#[test]
fn collections_match_case_insensitively_and_need_both_lists() {
    let policy = policy_of(&[rule(
        "r",
        r#"{"containers": ["TEST-Container"], "images": ["TEST/IMAGE:*"]}"#,
        DENY_MKDIR,
    )]);
    assert!(mkdir_prevented(&policy, "test-container", "test/image:1"));

    let policy = policy_of(&[rule(
        "r",
        r#"{"containers": ["test-container"], "images": ["other/*"]}"#,
        DENY_MKDIR,
    )]);
    assert!(
        !mkdir_prevented(&policy, "test-container", "test/image:1"),
        "images must match too"
    );
}

#[test]
fn no_matching_rule_enforces_and_audits_nothing() {
    let policy = policy_of(&[rule("r", r#"{"containers": ["other"]}"#, DENY_MKDIR)]);
    let w = World::new();
    let o = run(&w, &policy, MKDIR_X);
    assert!(stdout(&o).contains("rc=0"), "{}", show(&w, &o));
    assert!(w.path("x").is_dir());
    no_audits(&w, &o);
    let audit = fs::read_to_string(w.audit_path()).unwrap_or_default();
    assert!(
        audit.trim().is_empty(),
        "the audit file is empty or absent: {audit:?}"
    );
}

#[test]
fn disable_effect_enforces_nothing() {
    let w = World::new();
    let o = run(&w, &deny("disable", &["mkdir"]), MKDIR_X);
    assert!(w.path("x").is_dir(), "{}", show(&w, &o));
    no_audits(&w, &o);
}

// ---------------------------------------------------------------------------------------------
// 9. The entrypoint
// ---------------------------------------------------------------------------------------------

#[test]
fn denied_entrypoint_exits_126_with_an_audit() {
    let w = World::new();
    let o = run(&w, &deny("prevent", &["mkdir"]), &["mkdir", "x"]);
    assert_eq!(code(&o), Some(126), "{}", show(&w, &o));
    assert!(!w.path("x").exists());
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "prevent", "processExplicitlyDenied");
    assert_eq!(str_of(&a[0], "process"), which("mkdir"));
    assert_eq!(str_of(&a[0], "cmdline"), "mkdir x");
    assert_eq!(
        str_of(&a[0], "parent"),
        canon(common::defender()),
        "the defender launched it"
    );
    assert!(
        stdout(&o).is_empty(),
        "the defender's diagnostics never go to stdout\n{}",
        show(&w, &o)
    );
}

#[test]
fn entrypoint_under_alert_runs_and_is_audited() {
    let w = World::new();
    let o = run(&w, &deny("alert", &["mkdir"]), &["mkdir", "x"]);
    assert_eq!(code(&o), Some(0), "{}", show(&w, &o));
    assert!(w.path("x").is_dir());
    let a = process_audits(&w, &o, 1);
    assert_process_event(&a[0], "alert", "processExplicitlyDenied");
}

#[test]
fn missing_command_exits_127_and_non_executable_126() {
    let w = World::new();
    let o = run(
        &w,
        &deny("prevent", &["mkdir"]),
        &["no-such-command-for-the-defender-test"],
    );
    assert_eq!(code(&o), Some(127), "{}", show(&w, &o));
    assert!(w.audits_of("process").is_empty(), "{}", show(&w, &o));

    let w = World::new();
    let o = run(&w, &deny("prevent", &["mkdir"]), &["./no-such-file"]);
    assert_eq!(code(&o), Some(127), "{}", show(&w, &o));

    let w = World::new();
    fs::write(w.path("data"), "not a program\n").unwrap();
    let o = run(&w, &deny("prevent", &["mkdir"]), &["./data"]);
    assert_eq!(
        code(&o),
        Some(126),
        "exists but cannot be executed\n{}",
        show(&w, &o)
    );
    assert!(w.audits_of("process").is_empty(), "{}", show(&w, &o));
}

// ---------------------------------------------------------------------------------------------
// 10. The exec path swapped between the check and the exec (TOCTOU)
// ---------------------------------------------------------------------------------------------

/// How many children `race-exec` forks per run: enough for the flip to win the race many times
/// (about a quarter of the attempts), a second or two each on a 2-core machine.
const RACE_ATTEMPTS: u32 = 300;

fn race_tally(w: &World, o: &Output) -> RaceTally {
    RaceTally::parse(&stdout(o))
        .unwrap_or_else(|| panic!("no tally from race-exec\n{}", show(w, o)))
}

#[test]
fn race_swapping_the_exec_path_after_the_check_never_runs_the_denied_program() {
    // Each child of the helper execve's a buffer that another thread flips between `good` (a
    // copy of true, allowed) and `evil` (not allowed), so the supervisor may decide on one path
    // and the kernel, re-reading it after CONTINUE, execute the other. Under an allow list the
    // supervisor checks the file that actually runs at the exec stop and kills a violation
    // before its first instruction. `evil` is tried as a binary (a copy of dash, given a command)
    // and as a `#!/bin/sh` script, whose interpreter is allowed: either way, if it ever runs it
    // appends to `marker` and exits 42. In "scripts", `good` is an allowed `#!/bin/sh` script too,
    // so both run the same interpreter and only the script name in its argv tells them apart.
    // Paths `<dir>/good` and `<dir>/evil` have equal length. Nothing denied running is not
    // enough: the runs go on until the exec-stop check was seen killing a child (SIGKILL in the
    // tally and its audit naming `evil`), the proof that the race was won and caught.
    for kind in ["binary", "script", "scripts"] {
        let tallies = race_until_killed(kind, || race_round(kind));
        println!("{kind} evil: {tallies:?}");
    }
}

/// One run of `race-exec` for `kind` (see the test above), checked; its tally.
fn race_round(kind: &str) -> RaceTally {
    let w = World::new();
    let r = root(&w);
    let (good, evil, marker) = (
        format!("{r}/good"),
        format!("{r}/evil"),
        format!("{r}/marker"),
    );
    if kind == "scripts" {
        script(&w, "good", "#!/bin/sh\nexit 0\n");
    } else {
        copy_exe(&w, which("true"), "good");
    }
    let proof = format!("echo ran >> {marker}; exit 42");
    let argv: Vec<&str> = if kind == "binary" {
        copy_exe(&w, canon("/bin/sh"), "evil");
        vec!["sh", "-c", &proof]
    } else {
        script(&w, "evil", &format!("#!/bin/sh\n{proof}\n"));
        vec![]
    };
    let attempts = RACE_ATTEMPTS.to_string();
    let mut args = vec![good.as_str(), evil.as_str(), attempts.as_str()];
    args.extend(&argv);
    let policy = allow("prevent", &["exec_helper", "good", "sh", "dash"]);
    let o = helper_run(&w, &policy, "race-exec", &args);

    assert_eq!(code(&o), Some(0), "{kind}: {}", show(&w, &o));
    let t = race_tally(&w, &o);
    assert!(
        !Path::new(&marker).exists(),
        "{kind}: the denied program ran {} time(s); {t:?}\n{}",
        fs::read_to_string(&marker)
            .unwrap_or_default()
            .lines()
            .count(),
        show(&w, &o)
    );
    assert_eq!(
        t.other,
        0,
        "{kind}: every child ran `good`, was killed, or failed with EPERM; {t:?}\n{}",
        show(&w, &o)
    );
    assert_eq!(
        t.ran_allowed + t.killed + t.eperm,
        RACE_ATTEMPTS,
        "{kind}: {t:?}"
    );
    assert!(
        t.killed + t.eperm > 0,
        "{kind}: no exec was ever decided on `evil`: the race did not happen; {t:?}"
    );

    // The after-the-fact kills (the supervisor no longer knows the parent): each names what
    // ran: the binary itself, or for a script its interpreter, with the script in the command
    // line. Floods fold into one audit with a count, so the counts add up.
    let audits = w.audits_of("process");
    let kills: Vec<&Value> = audits.iter().filter(|e| e["parent"] == "unknown").collect();
    for e in &kills {
        assert_eq!(e["effect"], "prevent", "{kind}: {e}");
        assert_eq!(e["attack"], "processNotAllowed", "{kind}: {e}");
        let named = match kind {
            "script" | "scripts" => str_of(e, "cmdline").contains("/evil"),
            _ => str_of(e, "process").ends_with("/evil"),
        };
        assert!(named, "{kind}: {e}");
    }
    let killed: u64 = kills.iter().filter_map(|e| e["count"].as_u64()).sum();
    assert_eq!(
        killed,
        u64::from(t.killed),
        "{kind}: one audit per kill; {t:?}\n{}",
        show(&w, &o)
    );
    if t.eperm > 0 {
        assert!(
            audits
                .iter()
                .any(|e| e["parent"] != "unknown" && str_of(e, "process").ends_with("/evil")),
            "{kind}: the denials name evil\n{}",
            show(&w, &o)
        );
    }
    t
}
