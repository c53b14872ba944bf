//! Helpers shared by the integration tests: run the real `defender` binary around real programs,
//! with a policy written to a temporary file and audits collected from `--audit-file`.

#![allow(dead_code)] // each test file uses its own subset

pub mod console;
pub mod docker;
pub mod networld;
pub mod postgres;
pub mod receiver;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The `defender` binary cargo built for these tests.
pub fn defender() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_defender"))
}

/// A program of `test-programs/` (the package `defender-test-programs`): built on first use for the
/// profile and target of the `defender` under test, found next to it. `cargo test --workspace`
/// builds them before any test runs; `cargo test --test NAME` builds only that test, and building
/// again when they exist is a no-op for cargo that keeps a stale program from being used.
pub fn test_program(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(build_test_programs) {
        panic!("{e}");
    }
    let path = defender().with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p defender-test-programs --bin {name}` \
         (`cargo test --workspace --all-targets` does)",
        path.display()
    );
    path
}

/// The root of the target directory the tests were built in (`target/`, or `CARGO_TARGET_DIR`):
/// it holds `.rustc_info.json`; below it, a `--target` build has one directory per target triple.
pub fn target_root() -> PathBuf {
    let defender = defender();
    let above = defender
        .parent()
        .and_then(Path::parent)
        .expect("target dir");
    if above.join(".rustc_info.json").exists() {
        above.to_path_buf()
    } else {
        above.parent().expect("target dir").to_path_buf()
    }
}

/// `cargo build -p defender-test-programs` into the directory, profile and target the tests were
/// built for, so that the programs end up next to the `defender` binary under test.
fn build_test_programs() -> Result<(), String> {
    let defender = defender();
    let profile_dir = defender.parent().unwrap();
    let mut c = Command::new(env!("CARGO"));
    c.args([
        "build",
        "--quiet",
        "-p",
        "defender-test-programs",
        "--bins",
        "--manifest-path",
    ])
    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    let target_dir = target_root();
    let above = profile_dir.parent().unwrap();
    if above != target_dir {
        c.arg("--target").arg(above.file_name().unwrap());
    }
    c.arg("--target-dir").arg(target_dir);
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") => {}
        Some("release") => {
            c.arg("--release");
        }
        Some(profile) => {
            c.args(["--profile", profile]);
        }
        None => return Err(format!("{}: no profile directory", defender.display())),
    }
    let o = c.output().map_err(|e| format!("running cargo: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the test programs (`cargo build -p defender-test-programs`) failed:\n{}",
            stderr(&o)
        ))
    }
}

/// What `exec_helper race-exec` and `race-argv0` counted of their children's ends, from the
/// `race: ran_allowed=A killed=K eperm=E other=O` line: ran the allowed program, killed by SIGKILL
/// (the defender's exec-stop check), refused with EPERM (the decision at the trapped call), other.
#[derive(Debug)]
pub struct RaceTally {
    pub ran_allowed: u32,
    pub killed: u32,
    pub eperm: u32,
    pub other: u32,
}

impl RaceTally {
    /// The tally in the helper's standard output, if it printed one.
    pub fn parse(stdout: &str) -> Option<RaceTally> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("race: ran_allowed="))?;
        let field = |name: &str| -> Option<u32> {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
        };
        Some(RaceTally {
            ran_allowed: field("ran_allowed")?,
            killed: field("killed")?,
            eperm: field("eperm")?,
            other: field("other")?,
        })
    }
}

/// Runs `round` (one run of a race, checked by the caller, returning its tally) again and again
/// until a round has a child killed by the defender's exec-stop check, then returns every
/// round's tally. A round where the flip never lands between the supervisor's read and the
/// kernel's proves nothing about that check, so one round is not enough; [`HANG_GUARD`] bounds
/// the rounds, and the test fails if no kill was seen within it.
pub fn race_until_killed(what: &str, mut round: impl FnMut() -> RaceTally) -> Vec<RaceTally> {
    let start = std::time::Instant::now();
    let mut tallies = Vec::new();
    loop {
        let t = round();
        let killed = t.killed > 0;
        tallies.push(t);
        if killed {
            return tallies;
        }
        assert!(
            start.elapsed() < HANG_GUARD,
            "{what}: the exec-stop check never killed a child in {} rounds: {tallies:?}",
            tallies.len()
        );
    }
}

/// A scratch directory with a policy file and an audit file.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        World {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `json` as the policy file and returns its path.
    pub fn policy(&self, json: &str) -> PathBuf {
        let p = self.path("policy.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    pub fn audit_path(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    /// `defender run --policy P --audit-file A [extra] -- command...`, not yet started.
    pub fn command(&self, policy: Option<&Path>, extra: &[&str], command: &[&str]) -> Command {
        let mut flags = vec!["--container", "test-container", "--image", "test/image:1"];
        flags.extend_from_slice(extra);
        self.unnamed_command(policy, &flags, command)
    }

    /// Like [`World::command`], without `--container`/`--image`; none of the environment that
    /// names the container (`DEFENDER_CONTAINER`, `DEFENDER_IMAGE`, ECS metadata) passes either.
    pub fn unnamed_command(
        &self,
        policy: Option<&Path>,
        extra: &[&str],
        command: &[&str],
    ) -> Command {
        let mut c = Command::new(defender());
        c.arg("run").arg("--audit-file").arg(self.audit_path());
        if let Some(p) = policy {
            c.arg("--policy").arg(p);
        }
        c.args(extra)
            .arg("--")
            .args(command)
            .current_dir(self.dir.path());
        c.env_remove("DEFENDER_POLICY")
            .env_remove("DEFENDER_WAAS_POLICY")
            .env_remove("DEFENDER_CONSOLE")
            .env_remove("DEFENDER_AUDIT_FILE")
            .env_remove("DEFENDER_CONTAINER")
            .env_remove("DEFENDER_IMAGE")
            .env_remove("ECS_CONTAINER_METADATA_URI_V4");
        c
    }

    /// Runs `command` under `policy_json` and waits for it.
    pub fn run(&self, policy_json: &str, command: &[&str]) -> Output {
        let p = self.policy(policy_json);
        self.command(Some(&p), &[], command)
            .stdin(Stdio::null())
            .output()
            .expect("defender runs")
    }

    /// Every audit event written so far. A line still being written (no newline yet) is not one:
    /// a test that polls the file while the defender runs can read half of the last line.
    pub fn audits(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.audit_path()) {
            Ok(text) => text[..text.rfind('\n').map_or(0, |end| end + 1)]
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}"))
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The audit events of one `type`.
    pub fn audits_of(&self, kind: &str) -> Vec<Value> {
        self.audits()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }
}

/// Whether `e` is the `defender` event that every start as root writes, naming the capabilities
/// the command gave up (or kept): not an audit of anything the command did.
pub fn is_capability_report(e: &Value) -> bool {
    e["type"] == "defender"
        && e["message"].as_str().is_some_and(|m| {
            m.starts_with("Capabilities removed from the command")
                || m.starts_with("No capability was removed from the command")
        })
}

/// `audits` without the start-up capability report ([`is_capability_report`]).
pub fn without_capability_report(audits: Vec<Value>) -> Vec<Value> {
    audits
        .into_iter()
        .filter(|e| !is_capability_report(e))
        .collect()
}

/// A policy with one rule whose `processes` section is `processes` (a JSON object).
pub fn process_policy(name: &str, processes: &str) -> String {
    format!(r#"{{"rules": [{{"name": "{name}", "processes": {processes}}}]}}"#)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails loudly when a tool the tests need is not installed (`.ci/run` installs it).
pub fn require(tool: &str) -> PathBuf {
    for dir in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is not installed; .ci/run installs the packages the tests need");
}

// ---- Running the defender in the background, with a deadline that only guards against hangs ----

/// How long any one defender run may take before a test gives up on it (a failure guard against
/// hangs, never a timing measurement).
pub const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts `cmd` with stdin closed and stdout/stderr piped.
pub fn spawn_piped(cmd: &mut Command) -> std::process::Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("defender starts")
}

/// Waits for `child` (started by [`spawn_piped`]) and collects its output. If it is still running
/// after `guard`, kills it and every descendant of it and panics with what it wrote so far.
pub fn finish_within(mut child: std::process::Child, guard: std::time::Duration) -> Output {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + guard;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let pid = child.id() as i32;
            let mut doomed = descendants(pid);
            doomed.push(pid);
            for p in doomed {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!(
                "the defender (pid {pid}) was still running after {guard:?}; killed it. stderr:\n{stderr}"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `cmd` run to completion with stdin closed, under [`HANG_GUARD`].
pub fn output_within(cmd: &mut Command) -> Output {
    finish_within(spawn_piped(cmd), HANG_GUARD)
}

/// One line of `/proc/PID/status` (`State`, `PPid`, ...), without the key; `None` if the process
/// is gone.
pub fn proc_status(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

/// Every process whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let want = parent.to_string();
    all_pids()
        .into_iter()
        .filter(|&p| proc_status(p, "PPid").as_deref() == Some(want.as_str()))
        .collect()
}

/// The supervisor of a defender a test started. The defender is not PID 1 in the tests, so the
/// process started is the keeper, and the supervisor (the command's parent) is its only child.
pub fn supervisor_of(keeper: i32) -> i32 {
    let mut found = Vec::new();
    assert!(
        wait_until(HANG_GUARD, || {
            found = children_of(keeper);
            found.len() == 1
        }),
        "the keeper (pid {keeper}) has no single child: {found:?}"
    );
    found[0]
}

/// Every process below `ancestor` in the process tree.
pub fn descendants(ancestor: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut frontier = vec![ancestor];
    while let Some(p) = frontier.pop() {
        for c in children_of(p) {
            found.push(c);
            frontier.push(c);
        }
    }
    found
}

/// The pids in /proc.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `cond` every 20 ms until it holds or `guard` has passed; returns whether it held.
pub fn wait_until(guard: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + guard;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// ---- Golden files and the embedding commands ----

/// A path in the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Asserts that the golden file `relative` (in the repository) holds `actual`; with
/// `UPDATE_GOLDEN=1` in the environment, writes it instead (then review the diff).
pub fn golden(relative: &str, actual: &str) {
    let path = repo_path(relative);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{relative}: {e}; `UPDATE_GOLDEN=1 cargo test` writes it"));
    if want != actual {
        let (n, (w, a)) = want
            .lines()
            .chain(std::iter::repeat("<end>"))
            .zip(actual.lines().chain(std::iter::repeat("<end>")))
            .enumerate()
            .find(|(_, (w, a))| w != a)
            .unwrap_or((0, ("", "")));
        panic!(
            "{relative} is not what the tool makes now; first difference at line {}:\n  file: {w}\n  tool: {a}\n\
             If the change is intended, `UPDATE_GOLDEN=1 cargo test` rewrites the file.\nThe tool made:\n{actual}",
            n + 1
        );
    }
}

/// `defender ARGS` from the repository's root, with `stdin` as its input, run to completion.
pub fn defender_cli(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(defender())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("defender starts");
    let mut input = child.stdin.take().unwrap();
    // A command refused before it reads its input closes the pipe early; that is not an error here.
    let _ = input.write_all(stdin.unwrap_or("").as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}

/// [`defender_cli`], which must succeed: (stdout, stderr).
pub fn defender_cli_ok(args: &[&str], stdin: Option<&str>) -> (String, String) {
    let out = defender_cli(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(0),
        "defender {}: {}",
        args.join(" "),
        stderr(&out)
    );
    (stdout(&out), stderr(&out))
}

/// Waits (under the hang guard) until `file` exists in the world's directory; on failure kills the
/// defender and everything below it, and panics with its stderr.
pub fn wait_for_file(world: &World, child: std::process::Child, file: &str) -> std::process::Child {
    use nix::sys::signal::{self, Signal};
    use nix::unistd::Pid;
    let path = world.path(file);
    if wait_until(HANG_GUARD, || path.exists()) {
        return child;
    }
    let pid = child.id() as i32;
    for p in descendants(pid).into_iter().chain([pid]) {
        let _ = signal::kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let out = finish_within(child, HANG_GUARD);
    panic!(
        "the command never created {file}; defender status {:?}, stderr:\n{}",
        out.status,
        stderr(&out)
    );
}
