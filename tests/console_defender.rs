//! A defender connected to the real console (`--console`): the console's policy is enforced and
//! replaced while the command runs; audits reach the console exactly once across a console crash;
//! a cached policy (from this console only) or a wait covers a console that is down at start; a
//! token refused at start stops the defender (125), one refused later is said once each way while
//! the policy stays; with no writable state directory audits wait in memory; HTTPS with a custom
//! CA, from a file or as PEM text; events too big for the console, or refused by it, cost no other
//! event.

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

/// A workload that tries `mkdir d<N>` every 50 ms until the file `stop` exists (or its directory
/// is gone: a test that panicked), writing `N created` or `N denied` to `tries` each time.
const TRY_MKDIR: &str = r#"i=0; while [ ! -e stop ] && [ -e "$PWD" ]; do i=$((i+1));
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
    run_against(w, &down, state, extra, script)
}

/// Runs `sh -c script` under a defender with the console at `url`.
fn run_against(
    w: &World,
    url: &str,
    state: &Path,
    extra: &[&str],
    script: &str,
) -> std::process::Output {
    common::output_within(&mut console::defender(
        w,
        url,
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
    let out = run_against(&w, &c.url(), &state, &[], "mkdir cached");
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
    assert!(!w.path("cached").exists());
    let said = console::defender_events(&w, "unreachable at start");
    assert_eq!(said.len(), 1, "{:?}", w.audits());
    let message = said[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("enforcing the cached policy revision {revision}")),
        "{message}"
    );

    // Another console: what this one cached says nothing about it (the default lets mkdir run).
    let out = run_while_down(&w, &state, &[], "mkdir elsewhere");
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(w.path("elsewhere").is_dir());
    let said = console::defender_events(&w, "unreachable at start");
    let message = said[1]["message"].as_str().unwrap();
    assert!(
        message.contains("enforcing the default policy")
            && message.contains(&format!("it came from the console {}, not ", c.url())),
        "{message}"
    );
    std::fs::remove_file(state.join("policy.json")).unwrap();

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
    assert_eq!(said.len(), 4);
    assert!(
        said[2].contains(&format!("enforcing the policy file {}", file.display())),
        "{}",
        said[2]
    );
    assert!(
        said[3].contains("enforcing the default policy"),
        "{}",
        said[3]
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
    // Until then, a listener on the console's port accepts and drops the defender's attempts.
    let knocked = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    knocked.set_nonblocking(true).unwrap();
    let port = knocked.local_addr().unwrap().port();
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
    // Two attempts: the defender got no answer and tried again, still waiting.
    let mut attempts = 0;
    let retried = wait_until(HANG_GUARD, || {
        while knocked.accept().is_ok() {
            attempts += 1;
        }
        attempts >= 2
    });
    if !retried {
        let out = finish_within(child, Duration::ZERO);
        panic!(
            "{attempts} attempt(s) to reach the console; defender status {:?}: {}",
            out.status,
            common::stderr(&out)
        );
    }
    assert!(
        !w.path("ran").exists(),
        "the command started before the console answered"
    );
    drop(knocked);
    let tokens = [
        "--admin-token",
        console::ADMIN,
        "--defender-token",
        DEFENDER,
    ]
    .map(str::to_owned);
    // The policy is in the console's store before the defender can reach it (a PUT after the
    // console came up would race the defender's first fetch): put it through a first run of the
    // console on another port, then serve the same data on the port the defender waits on.
    let mut first = Console::start_with(
        &w.path("data"),
        &format!("127.0.0.1:{}", console::free_port()),
        &tokens,
    );
    first.put_policy(&deny("no mkdir", "mkdir"));
    first.kill();
    let mut c = Console::start_with(&w.path("data"), &format!("127.0.0.1:{port}"), &tokens);
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
    assert!(w.path("ran").exists() && !w.path("made").exists());
    c.kill();
}

/// Console flags with this defender token.
fn tokens(defender: &str) -> [String; 4] {
    [
        "--admin-token",
        console::ADMIN,
        "--defender-token",
        defender,
    ]
    .map(str::to_owned)
}

#[test]
fn a_token_refused_at_start_is_a_configuration_error_said_later_to_the_console() {
    let w = World::new();
    let state = w.path("state");
    let data = w.path("data");
    let mut c = Console::start_with(&data, "127.0.0.1:0", &tokens("another-token"));

    // With or without a wait: exit 125 before the command starts, naming the token's variable and
    // the console that refused it; not the default policy in silence.
    for extra in [&[][..], &["--wait-for-console", "600"]] {
        let out = run_against(&w, &c.url(), &state, extra, "touch ran");
        assert_eq!(out.status.code(), Some(125), "{}", common::stderr(&out));
        assert!(!w.path("ran").exists());
        let err = common::stderr(&out);
        let named = format!(
            "Console {} refused the token given in --token (DEFENDER_TOKEN) (HTTP 401",
            c.url()
        );
        assert!(
            err.contains(&named)
                && err.contains("the command was not started")
                && !err.contains("did not answer"),
            "{err}"
        );
    }
    let said = console::defender_events(&w, "refused the token given in --token");
    assert_eq!(said.len(), 2, "{:?}", w.audits());
    assert!(console::defender_events(&w, "enforcing").is_empty());
    let not_started = |c: &Console| {
        c.audits("type=defender&limit=10000")
            .into_iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("the command was not started")
            })
            .count()
    };

    // The console takes the token now: the next run with this state delivers those events.
    c.kill();
    let c = Console::start_with(&data, &c.addr, &tokens(DEFENDER));
    let out = run_against(&w, &c.url(), &state, &[], "true");
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(not_started(&c), 2, "{:?}", c.audits("limit=10000"));
}

#[test]
fn a_token_refused_while_running_keeps_the_policy_and_is_said_once_each_way() {
    let w = World::new();
    let data = w.path("data");
    let mut c = Console::start_with(&data, "127.0.0.1:0", &tokens(DEFENDER));
    let revision = c.put_policy(&deny("no mkdir", "mkdir"));
    let child = start_trying(&w, &c);
    let applied = format!("Policy revision {revision} from the console applied");
    assert!(wait_until(HANG_GUARD, || {
        console::defender_events(&w, &applied).len() == 1
    }));

    // The console now refuses the token (its defender token changed): the policy stays, and the
    // change is said once, however many polls, heartbeats and deliveries are refused.
    c.kill();
    let mut c = Console::start_with(&data, &c.addr, &tokens("another-token"));
    let refused = || console::defender_events(&w, "refused the token (HTTP 401");
    assert!(
        wait_until(HANG_GUARD, || !refused().is_empty()),
        "{:?}",
        w.audits()
    );
    let seen = tries(&w).len();
    assert!(wait_until(HANG_GUARD, || tries(&w).len() >= seen + 5));
    assert!(
        refused()[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("policy revision {revision} stays in force")),
        "{:?}",
        refused()
    );

    // Accepted again: said once; the audits kept meanwhile reach the console. The restart is an
    // outage the defender sees first (its poll cut, the port closed): the refusal is remembered
    // through it, and the first success says both.
    let unreachable = || console::defender_events(&w, "unreachable (");
    let outages = unreachable().len();
    c.kill();
    assert!(
        wait_until(HANG_GUARD, || unreachable().len() > outages),
        "{:?}",
        w.audits()
    );
    let c = Console::start_with(&data, &c.addr, &tokens(DEFENDER));
    let accepted = || console::defender_events(&w, "reachable again and accepts the token again");
    assert!(
        wait_until(HANG_GUARD, || !accepted().is_empty()),
        "{:?}",
        w.audits()
    );
    std::fs::write(w.path("stop"), "").unwrap();
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        (refused().len(), accepted().len()),
        (1, 1),
        "{:?}",
        w.audits()
    );
    let all = tries(&w);
    assert!(all.iter().all(|t| t.ends_with("denied")), "{all:?}");
    assert!(wait_until(HANG_GUARD, || {
        c.audits("type=process&limit=10000").len() == all.len()
    }));
}

#[test]
fn with_no_writable_state_directory_audits_wait_in_memory() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    c.put_policy(&deny("no mkdir", "mkdir"));
    // Nothing can be made under /proc, whoever runs the test.
    let state = Path::new("/proc/defender-state");
    let out = run_against(&w, &c.url(), state, &[], "mkdir made");
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
    assert!(!w.path("made").exists());
    let said = console::defender_events(&w, "No writable state directory");
    assert_eq!(said.len(), 1, "{:?}", w.audits());
    let message = said[0]["message"].as_str().unwrap();
    assert!(
        message.contains("/proc/defender-state: ")
            && message.contains("in memory (8 MiB in memory, the oldest dropped past it)")
            && message.contains("no console policy is kept"),
        "{message}"
    );
    assert!(wait_until(HANG_GUARD, || c.audits("type=process").len() == 1));
    assert!(wait_until(HANG_GUARD, || {
        c.audits("type=defender&limit=1000")
            .iter()
            .any(|e| e["message"] == message)
    }));
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

    // The PEM text itself in DEFENDER_CONSOLE_CA (a task definition carries no files) does the
    // same as the file.
    let pem = std::fs::read_to_string(&ca).unwrap();
    let out = common::output_within(
        console::defender(
            &w,
            &c.url(),
            &w.path("state-pem"),
            &[],
            &["sh", "-c", "mkdir over-tls"],
        )
        .env("DEFENDER_CONSOLE_CA", &pem),
    );
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
    assert!(!w.path("over-tls").exists());
    assert_eq!(
        console::defender_events(&w, &applied).len(),
        2,
        "{:?}",
        w.audits()
    );
    assert!(wait_until(HANG_GUARD, || c.audits("type=process").len() == 2));
    // The text is not shown back (nor taken for a file) when it holds no certificate.
    let out = common::output_within(
        console::defender(&w, &c.url(), &w.path("state-pem"), &[], &["true"]).env(
            "DEFENDER_CONSOLE_CA",
            "-----BEGIN CERTIFICATE-----\nnot base64\n",
        ),
    );
    assert_eq!(out.status.code(), Some(125), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("--console-ca (PEM text): "), "{err}");

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

/// Ids of `events`.
fn ids(events: &[Value]) -> std::collections::BTreeSet<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn huge_command_lines_cost_no_other_event_after_an_outage() {
    let w = World::new();
    let state = w.path("state");
    let no_mkdir = w.policy(&deny("no mkdir", "mkdir"));
    // Twelve denied mkdirs of 200 arguments of 4,000 bytes (800 KB each, and `message` repeats
    // it: 19 MB in all, more than the console takes in a request), then a small one. By its
    // path, so that each is one launch: a PATH search is one launch per directory, folded into one
    // audit only while the tries come within the same-attempt window, which a loaded machine
    // copying 800 KB per try can miss.
    let script = r#"big=$(head -c 4000 /dev/zero | tr '\0' x); set --; m=$(command -v mkdir);
        for i in $(seq 200); do set -- "$@" "$big$i"; done;
        for n in $(seq 12); do "$m" "huge$n" "$@" 2>/dev/null; done;
        "$m" small; exit 0"#;
    let out = run_while_down(
        &w,
        &state,
        &["--policy", no_mkdir.to_str().unwrap()],
        script,
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let local = w.audits_of("process");
    assert_eq!(local.len(), 13, "{}", common::stderr(&out));
    assert!(local[..12].iter().all(|e| {
        let cmdline = e["cmdline"].as_str().unwrap();
        cmdline.len() > 800_000 && !cmdline.contains("truncated")
    }));

    // The console is back: the next run with this state delivers the spool.
    let c = Console::start(&w.path("data"));
    let out = run_against(&w, &c.url(), &state, &[], "true");
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let remote = c.audits("type=process&limit=10000");
    assert_eq!(ids(&remote), ids(&local), "every event arrived");
    for e in &remote {
        let cmdline = e["cmdline"].as_str().unwrap();
        if cmdline.ends_with("mkdir small") {
            continue;
        }
        // Cut, saying how long it was; the local audit has it whole.
        let whole = local.iter().find(|l| l["id"] == e["id"]).unwrap()["cmdline"]
            .as_str()
            .unwrap()
            .len();
        for field in ["cmdline", "message"] {
            let text = e[field].as_str().unwrap();
            assert!(text.len() < 64 << 10, "{field}: {} bytes", text.len());
            assert!(
                text.ends_with("bytes in all; whole in the local audit)"),
                "{field}: {}",
                &text[text.len() - 100..]
            );
        }
        assert!(cmdline.contains(&format!("(truncated, {whole} bytes in all;")));
    }
    assert_eq!(
        remote
            .iter()
            .filter(|e| e["cmdline"]
                .as_str()
                .is_some_and(|c| c.ends_with("mkdir small")))
            .count(),
        1
    );
    assert!(console::defender_events(&w, "The console refused").is_empty());
}

#[test]
fn an_event_the_console_refuses_is_dropped_alone() {
    let w = World::new();
    let state = w.path("state");
    // A spool left with a bad event between two good ones (count 0: the console refuses the
    // batch that holds it).
    let event = |id: &str, count: u32| {
        format!(
            r#"{{"id":"{id}","time":"2026-01-01T00:00:00Z","type":"process","effect":"prevent","container":"test-container","image":"test-image","pid":1,"process":"/bin/x","message":"x","count":{count}}}"#
        )
    };
    std::fs::create_dir_all(state.join("spool")).unwrap();
    std::fs::write(
        state.join("spool/00000000000000000001-3.jsonl"),
        [event("good-1", 1), event("bad", 0), event("good-2", 1)].join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(
        state.join("spool/00000000000000000002-1.jsonl"),
        event("good-3", 1) + "\n",
    )
    .unwrap();

    let c = Console::start(&w.path("data"));
    let out = run_against(&w, &c.url(), &state, &[], "true");
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let remote = ids(&c.audits("type=process&limit=10000"));
    assert_eq!(
        remote,
        ["good-1", "good-2", "good-3"].map(str::to_owned).into()
    );
    let said = console::defender_events(&w, "The console refused 1 audit events (HTTP 400");
    assert_eq!(said.len(), 1, "{:?}", w.audits());
    assert!(
        said[0]["message"]
            .as_str()
            .unwrap()
            .contains("the other 3 of their batch delivered"),
        "{said:?}"
    );
    assert!(
        std::fs::read_dir(state.join("spool"))
            .unwrap()
            .next()
            .is_none()
    );
}
