//! The release binary is static and enforces inside an empty container: no libc, no shell of its
//! own, PID 1, under the engine's default seccomp profile and capabilities.

mod common;

use std::process::Command;

use common::docker::{Docker, static_binary, static_busybox};

#[test]
fn release_binary_is_statically_linked() {
    let out = Command::new(common::require("file"))
        .arg(static_binary())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("statically linked") || text.contains("static-pie linked"),
        "{text}"
    );
    assert!(
        !text.contains("interpreter"),
        "a dynamic loader is named: {text}"
    );
}

/// The budget of the static binary copied into every container (docs/benchmarks.md, "Binary
/// size"): its symbols stripped, its relocations packed, its cold crates built for size.
#[test]
fn release_binary_is_within_its_size_budget() {
    const BUDGET: u64 = 6 * 1024 * 1024;
    let size = std::fs::metadata(static_binary()).unwrap().len();
    assert!(
        size <= BUDGET,
        "the static binary is {size} bytes, over the {BUDGET} of the budget \
         (a build with CARGO_PROFILE_RELEASE_STRIP=none keeps its symbols and is larger)"
    );
    // Packed relocations (RELR), which musl's start-up applies: RELA would take about 0.4 MB.
    let out = Command::new(common::require("readelf"))
        .args(["--dynamic", "--wide"])
        .arg(static_binary())
        .output()
        .unwrap();
    assert!(
        common::stdout(&out).contains("(RELR)"),
        "{}",
        common::stdout(&out)
    );
}

/// The packages of the console's server (web framework, templates, SQLite, password hashing,
/// charts, metrics) that the defender must not depend on. (tokio and hyper are the defender's own
/// too since the web application firewall: its proxy, started only when a WAAS rule protects a
/// port.)
const CONSOLE_ONLY: [&str; 7] = [
    "axum",
    "maud",
    "rusqlite",
    "libsqlite3-sys",
    "argon2",
    "plotters",
    "prometheus-client",
];

/// The names of the packages `package` depends on (itself included) in normal builds for the
/// static target, as cargo resolves the workspace.
fn dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--manifest-path"])
        .arg(common::repo_path("Cargo.toml"))
        .args(["-p", package, "-e", "normal", "--prefix", "none"])
        .args(["--target", "x86_64-unknown-linux-musl", "--format", "{p}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    common::stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The console is a workspace member of its own: its server dependencies are not the defender's
/// by construction, whatever the target.
#[test]
fn the_defender_package_depends_on_none_of_the_console_dependencies() {
    let defender = dependencies("defender");
    for name in CONSOLE_ONLY {
        assert!(
            !defender.iter().any(|d| d == name),
            "the defender depends on {name}"
        );
    }
    // The names do find what the console links.
    let console = dependencies("defender-console");
    for name in CONSOLE_ONLY {
        assert!(console.iter().any(|d| d == name), "{name}: {console:?}");
    }
}

/// The console's dependencies (web framework, SQLite) are the console's: the defender, copied into
/// every container, links none of them. Found by what their code carries:
/// SQLite's file header string, and the source paths of panic locations.
#[test]
fn release_binary_links_none_of_the_console_dependencies() {
    let binary = std::fs::read(static_binary()).unwrap();
    let contains = |needle: &str| binary.windows(needle.len()).any(|w| w == needle.as_bytes());
    for marker in ["SQLite format 3", "/axum-", "/rusqlite-"] {
        assert!(!contains(marker), "the defender binary contains {marker:?}");
    }
    // The markers do find what is linked: the console client's HTTP crate, the firewall's proxy.
    assert!(contains("/ureq-"));
    assert!(contains("/hyper-"));
}

#[test]
fn enforces_in_an_empty_container() {
    let docker = Docker::new();
    let busybox = static_busybox();

    // A root file system with nothing but the defender, a static busybox and a policy.
    let w = common::World::new();
    let rootfs = w.path("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(static_binary(), rootfs.join("defender")).unwrap();
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "mkdir", "echo", "ls", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        rootfs.join("policy.json"),
        r#"{"rules": [{"name": "empty-container", "collections": {"containers": ["static-test"]},
             "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#,
    )
    .unwrap();
    let tag = docker.image("static");
    let tar = w.path("rootfs.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    docker.ok(&["import", tar.to_str().unwrap(), &tag]);

    let name = docker.container("static");
    let out = docker.output(&[
        "run",
        "--rm",
        "--name",
        &name,
        &tag,
        "/defender",
        "run",
        "--policy",
        "/policy.json",
        "--container",
        "static-test",
        "--",
        // With a path, because busybox's shell runs a bare `mkdir` as an in-process applet, with
        // no exec for any exec-based defense to see (docs/limits.md).
        "/bin/sh",
        "-c",
        "/bin/mkdir /made; echo rc=$?; ls -d /made || echo absent; cat /proc/1/comm",
    ]);
    let stdout = common::stdout(&out);
    let stderr = common::stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("rc=126"), "mkdir was not refused: {stdout}");
    assert!(
        stdout.contains("absent"),
        "the directory was created: {stdout}"
    );
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    // The defender is the container's PID 1.
    assert!(stdout.trim_end().ends_with("defender"), "{stdout}");
    let audit: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["type"] == "process")
        .collect();
    assert_eq!(audit.len(), 1, "stderr: {stderr}");
    assert_eq!(audit[0]["process"], "/bin/mkdir");
    assert_eq!(audit[0]["container"], "static-test");
    assert_eq!(audit[0]["effect"], "prevent");
    assert_eq!(audit[0]["parent"], "/bin/busybox");
}
