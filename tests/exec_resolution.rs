//! Paths are resolved as the kernel resolves them for the caller: `..` after a symlink, `/proc/self`
//! reached through other names, interpreters that change while their script does not, and callers
//! whose memory the supervisor may not read.

mod common;

use common::{World, process_policy, require, stdout};

fn prevent(deny: &str) -> String {
    process_policy(
        "resolution",
        &format!(r#"{{"effect": "prevent", "deny": [{deny}]}}"#),
    )
}

fn assert_one_denial(w: &World, out: &std::process::Output, process_suffix: &str) {
    let audits = w.audits_of("process");
    assert_eq!(
        audits.len(),
        1,
        "{audits:?}\nstderr: {}",
        common::stderr(out)
    );
    let process = audits[0]["process"].as_str().unwrap();
    assert!(process.ends_with(process_suffix), "{process}");
}

#[test]
fn proc_self_behind_dotdot_is_the_callers() {
    let w = World::new();
    // /proc/1/../self is /proc/self: the caller's fd 3 (true), not the supervisor's.
    std::os::unix::fs::symlink("/proc/1/../self/fd/3", w.path("q3")).unwrap();
    let out = w.run(
        &prevent(r#""true""#),
        &["sh", "-c", "exec 3</usr/bin/true; ./q3; echo rc=$?"],
    );
    assert!(stdout(&out).contains("rc=126"), "{}", stdout(&out));
    assert_one_denial(&w, &out, "/q3");
}

#[test]
fn dotdot_after_a_symlink_climbs_from_its_target() {
    require("id");
    let w = World::new();
    // u -> /usr, so u/../usr/bin/id is /usr/bin/id; read as text it would be the harmless decoy.
    std::os::unix::fs::symlink("/usr", w.path("u")).unwrap();
    std::fs::create_dir_all(w.path("usr/bin")).unwrap();
    std::fs::write(w.path("usr/bin/id"), "decoy").unwrap();
    let cmd = format!("{}/u/../usr/bin/id; echo rc=$?", w.dir.path().display());
    let out = w.run(&prevent(r#""/usr/bin/id*""#), &["sh", "-c", &cmd]);
    assert!(stdout(&out).contains("rc=126"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("uid="), "id ran: {}", stdout(&out));
    assert_one_denial(&w, &out, "/usr/bin/id");
}

#[test]
fn a_scripts_interpreter_is_looked_at_every_time() {
    require("id");
    let w = World::new();
    let dir = w.dir.path().display().to_string();
    std::os::unix::fs::symlink("/bin/sh", w.path("interp")).unwrap();
    let script = w.path("s");
    std::fs::write(&script, format!("#!{dir}/interp\necho script-ran\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The same script twice; in between, its interpreter becomes id.
    let cmd = "./s; ln -sfn /usr/bin/id interp; ./s; echo rc=$?";
    let out = w.run(&prevent(r#""/usr/bin/id*""#), &["sh", "-c", cmd]);
    let text = stdout(&out);
    assert!(
        text.contains("script-ran"),
        "the first run is allowed: {text}"
    );
    assert!(
        text.contains("rc=126") && !text.contains("uid="),
        "the second must be prevented: {text}"
    );
    // Reported by the interpreter's name as the script wrote it.
    assert_one_denial(&w, &out, "/interp");
}

#[test]
fn a_launch_that_cannot_be_inspected_is_denied_unless_the_rule_only_alerts() {
    let setpriv = require("setpriv");
    let w = World::new();
    // Without CAP_SYS_PTRACE the supervisor may not read a process of another uid.
    let run = |policy: Option<&str>| {
        let mut c = std::process::Command::new(&setpriv);
        c.args(["--bounding-set=-sys_ptrace", "--"])
            .arg(common::defender())
            .arg("run");
        c.arg("--audit-file").arg(w.audit_path());
        if let Some(p) = policy {
            c.arg("--policy").arg(w.policy(p));
        }
        c.args([
            "--",
            "sh",
            "-c",
            "setpriv --reuid=65534 --regid=65534 --clear-groups /bin/true; echo rc=$?",
        ]);
        c.current_dir(w.dir.path()).output().unwrap()
    };
    let out = run(Some(&prevent(r#""nmap""#)));
    assert!(
        stdout(&out).contains("rc=126"),
        "prevent fails closed: {}",
        stdout(&out)
    );

    let _ = std::fs::remove_file(w.audit_path());
    let out = run(None);
    assert!(
        stdout(&out).contains("rc=0"),
        "the default policy only alerts: {}",
        stdout(&out)
    );
    let events = w.audits_of("defender");
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Could not inspect a launch")),
        "{events:?}"
    );
}
