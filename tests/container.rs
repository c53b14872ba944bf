//! The seed's sample scenario in a real container engine. The sample app (an entry script that
//! runs mkdir and wget, then sleeps) is built FROM scratch by Dockerfile.example, then started
//! two ways, each with `--cap-drop ALL --cap-add SYS_PTRACE` under Docker's default seccomp
//! profile and without a network (the DNS question goes to 127.0.0.1, where nothing answers):
//! - as ECS would run the protected task definition in task-definitions/: the carrier container
//!   fills a volume with the binary, the app container starts through the protected entryPoint
//!   with the definition's environment and mounts;
//! - as the image Dockerfile.example builds, the defender embedded.
//!
//! Each time the audits show mkdir prevented, and `docker stop` ends the container through the
//! defender's signal forwarding: the script's TERM trap runs and the status is 143; a container
//! docker had to kill after its timeout would show 137.
//!
//! The embedded image also runs hardened as Fargate tasks are (a read-only root file system, a
//! user that is not root) against a console: it starts, enforces the console's policy, and its
//! audits, kept in memory, reach the console.

mod common;

use std::path::Path;

use serde_json::Value;

use common::console::{self, Console};
use common::docker::{Docker, static_binary, static_busybox};
use common::{HANG_GUARD, repo_path, require, stderr, stdout, wait_until};

const DOCKERFILE: &str = "Dockerfile.example";
const POLICY: &str = "task-definitions/twistlock-fargate-task.policy.json";
const RULE: &str = "twistlock-fargate-task: no mkdir, DNS only to AWS";

/// One test at a time: the builds share Docker's build cache, and one test removing its images
/// at its end must not pull a cached stage from under another's build.
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The build context Dockerfile.example wants, laid out by the script docs/embedding.md documents.
fn context() -> tempfile::TempDir {
    // What the script copies, checked here so that a missing package fails loudly.
    static_busybox();
    require("wget");
    require("ldd");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(repo_path("sample-app/context.sh"))
        .arg(dir.path())
        .env("DEFENDER", static_binary())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sample-app/context.sh: {}",
        common::stderr(&out)
    );
    dir
}

/// `docker build -f Dockerfile.example [--target T] -t NAME CONTEXT`.
fn build(docker: &Docker, context: &Path, target: Option<&str>, what: &str) -> String {
    let tag = docker.image(what);
    let dockerfile = repo_path(DOCKERFILE);
    let mut args = vec![
        "build",
        "-q",
        "-f",
        dockerfile.to_str().unwrap(),
        "-t",
        &tag,
    ];
    if let Some(t) = target {
        args.extend(["--target", t]);
    }
    args.push(context.to_str().unwrap());
    docker.ok(&args);
    tag
}

/// A resolver configuration sending DNS to 127.0.0.1 (nothing listens there).
fn resolv_conf(dir: &Path) -> String {
    let path = dir.join("resolv.conf");
    std::fs::write(&path, "nameserver 127.0.0.1\n").unwrap();
    format!("{}:/etc/resolv.conf:ro", path.display())
}

/// How one run of the sample ended.
struct Stopped {
    stdout: String,
    stderr: String,
    exit_code: i64,
    /// `/proc/1/status` of the container, read while it ran.
    pid1_status: String,
}

impl Stopped {
    fn audits(&self, kind: &str) -> Vec<Value> {
        self.stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["type"] == kind)
            .collect()
    }
}

/// Starts `run_args` detached, waits for the sample to reach its sleep, reads PID 1's status,
/// stops the container and collects what happened.
fn run_and_stop(docker: &Docker, run_args: &[&str]) -> Stopped {
    let name = docker.container("sample");
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend_from_slice(run_args);
    docker.ok(&args);
    let logs = || {
        let out = docker.output(&["logs", &name]);
        (stdout(&out), stderr(&out))
    };
    let reached = wait_until(HANG_GUARD, || logs().0.contains("sample: sleeping"));
    assert!(reached, "the sample did not reach its sleep: {:?}", logs());
    let pid1_status = docker.ok(&["exec", &name, "/bin/cat", "/proc/1/status"]);
    docker.ok(&["stop", &name]);
    let exit_code = docker
        .ok(&["inspect", "-f", "{{.State.ExitCode}}", &name])
        .trim()
        .parse()
        .unwrap();
    let (stdout, stderr) = logs();
    Stopped {
        stdout,
        stderr,
        exit_code,
        pid1_status,
    }
}

/// The container's PID 1 is the defender, under Docker's seccomp profile.
fn assert_defender_is_pid1_under_docker_seccomp(s: &Stopped) {
    let field = |key: &str| {
        s.pid1_status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("Name:"), "defender", "{}", s.pid1_status);
    assert_eq!(field("Seccomp:"), "2", "{}", s.pid1_status);
    assert_eq!(field("Seccomp_filters:"), "1", "{}", s.pid1_status);
}

/// mkdir was prevented and audited; `docker stop` reached the script and it ended on TERM.
fn assert_mkdir_prevented_and_stopped_gracefully(s: &Stopped, image: &str) {
    let all = format!("stdout:\n{}\nstderr:\n{}", s.stdout, s.stderr);
    assert!(s.stdout.contains("sample: mkdir exited 126"), "{all}");
    let mkdir = s.audits("process");
    assert_eq!(mkdir.len(), 1, "{all}");
    let e = &mkdir[0];
    assert_eq!(e["process"], "/bin/mkdir");
    assert_eq!(e["effect"], "prevent");
    assert_eq!(e["attack"], "processExplicitlyDenied");
    assert_eq!(e["rule"], RULE);
    assert_eq!(e["container"], "twistlock-fargate-task");
    assert_eq!(e["image"], image);
    assert_eq!(e["cmdline"], "/bin/mkdir /tmp/twistlock-test");
    // TERM went through the defender to the script, whose trap ended it: 143, not docker's
    // SIGKILL after its stop timeout (137).
    assert!(s.stdout.contains("sample: TERM received, exiting"), "{all}");
    assert_eq!(s.exit_code, 143, "{all}");
}

/// The sample task as ECS would run its protected definition.
fn run_protected_task(docker: &Docker) -> Stopped {
    let ctx = context();
    let carrier = build(docker, ctx.path(), Some("defender"), "carrier");
    let app = build(docker, ctx.path(), Some("app"), "app");
    let def: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path(
            "task-definitions/twistlock-fargate-task.protected.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let container = |name: &str| -> &Value {
        def["containerDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };

    // The image stands in for matthewabq/twistlock-fargate-auto: what it runs is what the
    // image config the definition was embedded with says.
    let inspected: Value = serde_json::from_str(&docker.ok(&["image", "inspect", &app])).unwrap();
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path(
            "task-definitions/twistlock-fargate-auto.image.json",
        ))
        .unwrap(),
    )
    .unwrap();
    for key in ["Entrypoint", "Cmd"] {
        assert_eq!(
            strings(&inspected[0]["Config"][key]),
            strings(&config["config"][key]),
            "{key}"
        );
    }

    // The task volume, filled by the carrier, which must succeed (dependsOn SUCCESS).
    let volume = docker.volume("binary");
    let c = container("defender");
    let entry = strings(&c["entryPoint"]);
    let mount = format!(
        "{volume}:{}",
        c["mountPoints"][0]["containerPath"].as_str().unwrap()
    );
    let mut args = vec![
        "run",
        "--rm",
        "-v",
        &mount,
        "--entrypoint",
        &entry[0],
        &carrier,
    ];
    args.extend(entry[1..].iter().map(String::as_str));
    let out = docker.output(&args);
    assert!(
        out.status.success() && common::stderr(&out).contains("installed /opt/defender/defender"),
        "carrier: {}",
        common::stderr(&out)
    );

    // The app container, as the definition says: entryPoint, command, environment, mounts,
    // capabilities. The policy file stands in for the console of issue 4.
    let c = container("twistlock-fargate-task");
    let mut run: Vec<String> = vec![
        "--cap-drop".into(),
        "ALL".into(),
        "--network".into(),
        "none".into(),
    ];
    for cap in strings(&c["linuxParameters"]["capabilities"]["add"]) {
        run.extend(["--cap-add".into(), cap]);
    }
    for m in c["mountPoints"].as_array().unwrap() {
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        run.extend([
            "-v".into(),
            format!("{volume}:{}{ro}", m["containerPath"].as_str().unwrap()),
        ]);
    }
    for e in c["environment"].as_array().unwrap() {
        run.extend([
            "-e".into(),
            format!(
                "{}={}",
                e["name"].as_str().unwrap(),
                e["value"].as_str().unwrap()
            ),
        ]);
    }
    run.extend([
        "-v".into(),
        resolv_conf(ctx.path()),
        "-v".into(),
        format!(
            "{}:/etc/defender/policy.json:ro",
            repo_path(POLICY).display()
        ),
        "-e".into(),
        "DEFENDER_POLICY=/etc/defender/policy.json".into(),
    ]);
    let entry = strings(&c["entryPoint"]);
    run.extend(["--entrypoint".into(), entry[0].clone(), app]);
    run.extend(entry[1..].iter().cloned());
    run.extend(strings(&c["command"]));
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    run_and_stop(docker, &run)
}

#[test]
fn the_protected_sample_task_prevents_mkdir_and_stops_gracefully() {
    let _one = exclusive();
    let docker = Docker::new();
    let s = run_protected_task(&docker);
    assert_defender_is_pid1_under_docker_seccomp(&s);
    // DEFENDER_IMAGE from the definition names the image.
    assert_mkdir_prevented_and_stopped_gracefully(&s, "matthewabq/twistlock-fargate-auto");
}

#[test]
fn the_protected_sample_task_denies_dns_outside_the_allow_list() {
    let _one = exclusive();
    let docker = Docker::new();
    let s = run_protected_task(&docker);
    let all = format!("stdout:\n{}\nstderr:\n{}", s.stdout, s.stderr);
    let dns = s.audits("dns");
    let e = dns
        .iter()
        .find(|e| e["domain"] == "www.example.com")
        .unwrap_or_else(|| panic!("no dns audit for www.example.com: {all}"));
    assert_eq!(e["process"], "/usr/bin/wget");
    assert_eq!(e["effect"], "prevent");
    assert_eq!(e["rule"], RULE);
    // The policy's DNS section is an allow list (`*.amazonaws.com`): outside it, not allowed.
    assert_eq!(e["attack"], "dnsNotAllowed");
    assert_eq!(
        e["message"],
        "DNS resolution of domain name www.example.com triggered by /usr/bin/wget is not allowed by a runtime rule"
    );
    assert_eq!(e["container"], "twistlock-fargate-task");
    // A prevented lookup fails fast as "not found": wget gives up (exit 4, network failure).
    assert!(s.stdout.contains("sample: wget exited 4"), "{all}");
}

#[test]
fn dockerfile_example_builds_and_runs_protected() {
    let _one = exclusive();
    let docker = Docker::new();
    let ctx = context();
    // The carrier stage under a name of its own, so that it goes away with the test: the final
    // image does not descend from it.
    build(&docker, ctx.path(), Some("defender"), "carrier");
    let image = build(&docker, ctx.path(), None, "example");
    let resolv = resolv_conf(ctx.path());
    let s = run_and_stop(
        &docker,
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "SYS_PTRACE",
            "--network",
            "none",
            "-v",
            &resolv,
            "-e",
            "DEFENDER_CONTAINER=twistlock-fargate-task",
            &image,
        ],
    );
    assert_defender_is_pid1_under_docker_seccomp(&s);
    assert_mkdir_prevented_and_stopped_gracefully(&s, "unknown");
}

#[test]
fn a_read_only_root_file_system_and_a_user_with_a_console_start_and_enforce() {
    let _one = exclusive();
    let docker = Docker::new();
    let ctx = context();
    build(&docker, ctx.path(), Some("defender"), "carrier");
    let image = build(&docker, ctx.path(), None, "example");
    let data = tempfile::tempdir().unwrap();
    let c = Console::start(&data.path().join("data"));
    c.put_policy(&std::fs::read_to_string(repo_path(POLICY)).unwrap());
    let resolv = resolv_conf(ctx.path());
    let env_console = format!("DEFENDER_CONSOLE={}", c.url());
    let env_token = format!("DEFENDER_TOKEN={}", console::DEFENDER);
    // The host's network, where the console listens on 127.0.0.1; DNS still goes to 127.0.0.1.
    // The image's DEFENDER_POLICY is emptied, as a task definition does to unset it: the console's
    // policy is the one in force.
    let s = run_and_stop(
        &docker,
        &[
            "--read-only",
            "--user",
            "1000:1000",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "SYS_PTRACE",
            "--network",
            "host",
            "-v",
            &resolv,
            "-e",
            "DEFENDER_CONTAINER=twistlock-fargate-task",
            "-e",
            "DEFENDER_POLICY=",
            "-e",
            &env_console,
            "-e",
            &env_token,
            &image,
        ],
    );
    let all = format!("stdout:\n{}\nstderr:\n{}", s.stdout, s.stderr);
    assert_defender_is_pid1_under_docker_seccomp(&s);
    assert_mkdir_prevented_and_stopped_gracefully(&s, "unknown");
    let memory: Vec<Value> = s
        .audits("defender")
        .into_iter()
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            m.starts_with("No writable state directory (") && m.contains("Read-only file system")
        })
        .collect();
    assert_eq!(memory.len(), 1, "{all}");
    // Delivered from memory: the prevention and the event saying where the audits waited.
    assert!(
        wait_until(HANG_GUARD, || c.audits("type=process").len() == 1),
        "{all}"
    );
    assert!(wait_until(HANG_GUARD, || {
        c.audits("type=defender&limit=1000")
            .iter()
            .any(|e| e["message"] == memory[0]["message"])
    }));
}

/// The hardened container of the test above with a token the console refuses: a configuration
/// error, said and final (exit status 125, the command never started), not a container running
/// the default policy with nobody told.
#[test]
fn a_wrong_token_exits_125_with_its_message() {
    let _one = exclusive();
    let docker = Docker::new();
    let ctx = context();
    build(&docker, ctx.path(), Some("defender"), "carrier");
    let image = build(&docker, ctx.path(), None, "example");
    let data = tempfile::tempdir().unwrap();
    let c = Console::start(&data.path().join("data"));
    let env_console = format!("DEFENDER_CONSOLE={}", c.url());
    let name = docker.container("wrong-token");
    let out = docker.output(&[
        "run",
        "--name",
        &name,
        "--read-only",
        "--user",
        "1000:1000",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "SYS_PTRACE",
        "--network",
        "host",
        "-e",
        "DEFENDER_POLICY=",
        "-e",
        &env_console,
        "-e",
        "DEFENDER_TOKEN=not-the-token",
        &image,
    ]);
    let all = format!("stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(125), "{all}");
    assert!(
        stderr(&out).contains("refused the token given in --token (DEFENDER_TOKEN)"),
        "{all}"
    );
    // The sample never ran.
    assert!(!stdout(&out).contains("sample:"), "{all}");
}
