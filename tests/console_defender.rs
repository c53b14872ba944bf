//! A defender connected to the real console (`--console`): the console's policy is enforced and
//! replaced while the command runs; audits reach the console exactly once across a console crash;
//! a cached policy or a wait covers a console that is down at start; HTTPS with a custom CA.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::console::{self, Console, DEFENDER};
use common::{HANG_GUARD, World, finish_within, spawn_piped, wait_until};
use serde_json::Value;

fn deny(name: &str, program: &str) -> String {
    format!(
        r#"{{"rules": [{{"name": "{name}", "collections": {{"containers": ["test-container"]}},
            "processes": {{"effect": "prevent", "deny": ["{program}"]}}}}]}}"#
    )
}

/// A workload that tries `mkdir d<N>` every 50 ms until the file `stop` exists, writing
/// `N created` or `N denied` to `tries` each time.
const TRY_MKDIR: &str = r#"i=0; while [ ! -e stop ]; do i=$((i+1));
    if mkdir "d$i" 2>/dev/null; then echo "$i created"; else echo "$i denied"; fi >> tries;
    sleep 0.05; done"#;

/// The defender running TRY_MKDIR against console `c`, in the background.
fn start_trying(w: &World, c: &Console) -> std::process::Child {
    let state = w.path("state");
    spawn_piped(&mut console::defender(
        w,
        &c.url(),
        &state,
        &[],
        &["sh", "-c", TRY_MKDIR],
    ))
}

fn tries(w: &World) -> Vec<String> {
    std::fs::read_to_string(w.path("tries"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn time_of(event: &Value) -> SystemTime {
    humantime::parse_rfc3339(event["time"].as_str().unwrap()).unwrap()
}

#[test]
fn a_policy_put_while_the_command_runs_decides_the_next_exec() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let first = c.put_policy(&deny("no mkdir", "mkdir"));
    let child = start_trying(&w, &c);

    let applied = |revision: u64| {
        console::defender_events(
            &w,
            &format!("Policy revision {revision} from the console applied"),
        )
    };
    assert!(
        wait_until(HANG_GUARD, || tries(&w).len() >= 3),
        "the workload runs"
    );
    assert_eq!(applied(first).len(), 1);
    assert!(
        tries(&w).iter().all(|t| t.ends_with("denied")),
        "{:?}",
        tries(&w)
    );

    let put_at = SystemTime::now();
    let second = c.put_policy(&deny("no rmdir", "rmdir"));
    assert!(
        wait_until(HANG_GUARD, || applied(second).len() == 1),
        "{:?}",
        w.audits()
    );
    let applied_at = time_of(&applied(second)[0]);
    // The issue's bound; long polling makes it a matter of milliseconds.
    let latency = applied_at.duration_since(put_at).unwrap_or_default();
    assert!(
        latency < Duration::from_secs(2),
        "applied {latency:?} after the PUT"
    );
    assert!(
        applied(second)[0]["message"]
            .as_str()
            .unwrap()
            .contains("rule \"no rmdir\" is in force"),
        "{:?}",
        applied(second)
    );

    assert!(wait_until(HANG_GUARD, || tries(&w)
        .iter()
        .any(|t| t.ends_with("created"))));
    std::fs::write(w.path("stop"), "").unwrap();
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));

    // Every exec after the new revision was in force was decided by it: no denial audited after
    // it, every try after the last denial created its directory.
    let denials = w.audits_of("process");
    assert!(denials.len() >= 3, "{denials:?}");
    assert!(
        denials
            .iter()
            .all(|e| e["rule"] == "no mkdir" && time_of(e) < applied_at)
    );
    let all = tries(&w);
    let last_denied = all.iter().rposition(|t| t.ends_with("denied")).unwrap();
    assert!(
        all[last_denied + 1..]
            .iter()
            .all(|t| t.ends_with("created")),
        "{all:?}"
    );
    assert!(w.path(&format!("d{}", all.len())).is_dir());
}

#[test]
fn audits_survive_a_console_crash_exactly_once() {
    let w = World::new();
    let mut c = Console::start(&w.path("data"));
    c.put_policy(&deny("no mkdir", "mkdir"));
    let child = start_trying(&w, &c);
    let at_console = |c: &Console| c.audits("type=process&limit=10000").len();

    assert!(
        wait_until(HANG_GUARD, || at_console(&c) >= 5),
        "audits arrive"
    );
    c.kill();
    // The workload keeps violating while the console is away; the defender keeps enforcing.
    let during = w.audits_of("process").len();
    assert!(wait_until(HANG_GUARD, || w.audits_of("process").len() >= during + 20));
    c.restart();
    assert!(
        wait_until(HANG_GUARD, || at_console(&c) >= during + 20),
        "the spool is delivered once the console is back"
    );
    std::fs::write(w.path("stop"), "").unwrap();
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));

    // Every event written locally is at the console once: none lost, none twice.
    let local: Vec<String> = w
        .audits()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let remote: Vec<String> = c
        .audits("container=test-container&limit=10000")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let unique = |v: &[String]| {
        v.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<String>>()
    };
    assert_eq!(
        unique(&remote).len(),
        remote.len(),
        "duplicates at the console"
    );
    assert_eq!(unique(&local), unique(&remote));
    // The outage and the return were audited, and delivered too.
    for text in ["unreachable", "reachable again"] {
        assert!(
            !console::defender_events(&w, text).is_empty(),
            "{text}: {:?}",
            w.audits()
        );
    }
    // Enforced throughout: every try was denied, no directory was made.
    let all = tries(&w);
    assert!(
        all.len() >= 25 && all.iter().all(|t| t.ends_with("denied")),
        "{all:?}"
    );
    assert_eq!(w.audits_of("process").len(), all.len());
    assert!(!w.path("d1").exists());
}

/// Runs `sh -c script` under a defender whose console is down.
fn run_while_down(w: &World, state: &Path, extra: &[&str], script: &str) -> std::process::Output {
    let down = format!("http://127.0.0.1:{}", console::free_port());
    common::output_within(&mut console::defender(
        w,
        &down,
        state,
        extra,
        &["sh", "-c", script],
    ))
}

#[test]
fn a_console_down_at_start_means_the_cached_policy_then_the_file_then_the_default() {
    let w = World::new();
    let state = w.path("state");
    let mut c = Console::start(&w.path("data"));
    let revision = c.put_policy(&deny("no mkdir", "mkdir"));
    let out = common::output_within(&mut console::defender(&w, &c.url(), &state, &[], &["true"]));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    c.kill();

    // Cached: the console's last word is enforced.
    let out = run_while_down(&w, &state, &[], "mkdir cached");
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
    assert!(!w.path("cached").exists());
    let said = console::defender_events(&w, "unreachable at start");
    assert_eq!(said.len(), 1, "{:?}", w.audits());
    let message = said[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("enforcing the cached policy revision {revision}")),
        "{message}"
    );

    // Nothing cached: --policy, then the compiled-in default (which lets mkdir run).
    let file = w.policy(&deny("file: no mkdir", "mkdir"));
    let extra = ["--policy", file.to_str().unwrap()];
    let out = run_while_down(&w, &w.path("state2"), &extra, "mkdir from-file");
    assert_eq!(out.status.code(), Some(126));
    assert!(!w.path("from-file").exists());
    let out = run_while_down(&w, &w.path("state3"), &[], "mkdir default");
    assert_eq!(out.status.code(), Some(0));
    assert!(w.path("default").is_dir());
    let said: Vec<String> = console::defender_events(&w, "unreachable at start")
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(said.len(), 3);
    assert!(
        said[1].contains(&format!("enforcing the policy file {}", file.display())),
        "{}",
        said[1]
    );
    assert!(
        said[2].contains("enforcing the default policy"),
        "{}",
        said[2]
    );
    // The undelivered audits wait in the spool of each state directory.
    assert!(std::fs::read_dir(state.join("spool")).unwrap().count() > 0);
}

#[test]
fn with_the_wait_option_the_command_starts_only_once_the_console_answers() {
    let w = World::new();
    // Nobody answers within the wait: 125, and the command never ran.
    let out = run_while_down(
        &w,
        &w.path("state"),
        &["--wait-for-console", "1"],
        "touch ran",
    );
    assert_eq!(out.status.code(), Some(125), "{}", common::stderr(&out));
    assert!(!w.path("ran").exists());
    assert!(
        common::stderr(&out).contains("did not answer within 1 s"),
        "{}",
        common::stderr(&out)
    );

    // The console comes up while the defender waits: then the command runs, under its policy.
    let port = console::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let script = "touch ran; mkdir made";
    let mut cmd = console::defender(
        &w,
        &url,
        &w.path("state"),
        &["--wait-for-console", "60"],
        &["sh", "-c", script],
    );
    let child = spawn_piped(&mut cmd);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !w.path("ran").exists(),
        "the command started before the console answered"
    );
    let mut c = Console::start_with(
        &w.path("data"),
        &format!("127.0.0.1:{port}"),
        &[
            "--admin-token",
            console::ADMIN,
            "--defender-token",
            DEFENDER,
        ]
        .map(str::to_owned),
    );
    c.put_policy(&deny("no mkdir", "mkdir"));
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
    assert!(w.path("ran").exists() && !w.path("made").exists());
    c.kill();
}

#[test]
fn https_with_a_custom_ca() {
    let w = World::new();
    let (ca, cert, key) = console::tls_files(w.dir.path());
    let args = [
        "--admin-token",
        console::ADMIN,
        "--defender-token",
        DEFENDER,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]
    .map(str::to_owned);
    let mut c = Console::start_with(&w.path("data"), "127.0.0.1:0", &args);
    c.trust(&ca);
    assert!(c.url().starts_with("https://"));
    let revision = c.put_policy(&deny("no mkdir", "mkdir"));

    let ca_flag = ["--console-ca", ca.to_str().unwrap()];
    let out = common::output_within(&mut console::defender(
        &w,
        &c.url(),
        &w.path("state"),
        &ca_flag,
        &["sh", "-c", "mkdir over-tls"],
    ));
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
    assert!(!w.path("over-tls").exists());
    let applied = format!("Policy revision {revision} from the console applied");
    assert_eq!(
        console::defender_events(&w, &applied).len(),
        1,
        "{:?}",
        w.audits()
    );
    assert!(wait_until(HANG_GUARD, || c.audits("type=process").len() == 1));

    // Without the CA the console's certificate is not trusted: it counts as unreachable.
    let out = common::output_within(&mut console::defender(
        &w,
        &c.url(),
        &w.path("state2"),
        &[],
        &["true"],
    ));
    assert_eq!(out.status.code(), Some(0));
    let said = console::defender_events(&w, "unreachable at start");
    assert!(
        said[0]["message"].as_str().unwrap().contains("certificate"),
        "{said:?}"
    );
}
