//! ECS task metadata v4: `defender run` learns the container, image, task, cluster, family and
//! service from `$ECS_CONTAINER_METADATA_URI_V4`, served here by a local stand-in for the ECS
//! agent that replays the documented responses for a Fargate task (tests/golden/ecs/). Flags and
//! environment win; an endpoint that fails is reported and the run goes on. Rules select the
//! container by that identity, and it reaches the console in audits and heartbeats.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::console::{self, Console};
use common::{HANG_GUARD, World, finish_within, output_within, stderr, wait_until};
use serde_json::json;

const DOCKER_ID: &str = "3f6a0b1c2d4e4f5a8b9c0d1e2f3a4b5c-1234567890";
const TASK_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:task/default/3f6a0b1c2d4e4f5a8b9c0d1e2f3a4b5c";
const IMAGE: &str = "111122223333.dkr.ecr.us-west-2.amazonaws.com/twistlock-fargate-auto:latest";

/// What the stand-in endpoint does with a request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers `/v4/ID` and `/v4/ID/task` with the recorded responses.
    Replay,
    /// Like `Replay`, with the container response stripped of its `Labels`.
    NoLabels,
    /// Like `Replay`, with the task response naming the service, as the agent does on EC2.
    WithService,
    /// Like `Replay`, with the task response missing (404).
    NoTask,
    /// Reads the request and never answers.
    Silent,
    /// Answers 200 with a body that is not JSON.
    Garbage,
}

struct Endpoint {
    addr: SocketAddr,
    /// The paths requested, in order.
    paths: Arc<Mutex<Vec<String>>>,
}

impl Endpoint {
    fn uri(&self) -> String {
        format!("http://{}/v4/{DOCKER_ID}", self.addr)
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(common::repo_path(&format!("tests/golden/ecs/{name}"))).unwrap()
}

fn serve(behaviour: Behaviour) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.lock().unwrap().push(path.clone());
            let container = format!("/v4/{DOCKER_ID}");
            let (status, body) = match behaviour {
                Behaviour::Silent => {
                    // Hold the connection open, answering nothing.
                    std::thread::sleep(common::HANG_GUARD);
                    continue;
                }
                Behaviour::Garbage => ("200 OK", "<html>metadata</html>".to_string()),
                _ if path == container => {
                    let mut v: serde_json::Value =
                        serde_json::from_str(&fixture("container.json")).unwrap();
                    if matches!(behaviour, Behaviour::NoLabels) {
                        v.as_object_mut().unwrap().remove("Labels");
                    }
                    ("200 OK", v.to_string())
                }
                Behaviour::NoTask if path == format!("{container}/task") => {
                    ("404 Not Found", "404 page not found".to_string())
                }
                _ if path == format!("{container}/task") => {
                    let mut v: serde_json::Value =
                        serde_json::from_str(&fixture("task.json")).unwrap();
                    if matches!(behaviour, Behaviour::WithService) {
                        v["ServiceName"] = "orders-api".into();
                    }
                    ("200 OK", v.to_string())
                }
                _ => ("404 Not Found", "404 page not found".to_string()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Endpoint { addr, paths }
}

/// No mkdir in the sample's container: the rule matches only if the defender knows its name
/// and image.
const POLICY: &str = r#"{"rules": [{"name": "sample: no mkdir",
    "collections": {"containers": ["twistlock-fargate-task"], "images": ["*/twistlock-fargate-auto:*"]},
    "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#;

/// `defender run` (no --container/--image) around `command`, with the metadata URI set.
fn run_with_metadata(
    w: &World,
    uri: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    command: &[&str],
) -> std::process::Output {
    let policy = w.policy(POLICY);
    let mut cmd = w.unnamed_command(Some(&policy), extra, command);
    cmd.env("ECS_CONTAINER_METADATA_URI_V4", uri);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_within(&mut cmd)
}

#[test]
fn audits_carry_the_container_image_and_task_from_the_metadata() {
    let endpoint = serve(Behaviour::Replay);
    let w = World::new();
    let out = run_with_metadata(
        &w,
        &endpoint.uri(),
        &["--log-level", "info"],
        &[],
        &["mkdir", "made"],
    );
    let err = stderr(&out);
    // The rule scoped to the sample's container applied: mkdir was prevented.
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(!w.path("made").exists());
    let audits = w.audits_of("process");
    assert_eq!(audits.len(), 1, "{err}");
    assert_eq!(audits[0]["container"], "twistlock-fargate-task");
    assert_eq!(audits[0]["image"], IMAGE);
    assert_eq!(audits[0]["task"], TASK_ARN);
    assert_eq!(audits[0]["rule"], "sample: no mkdir");
    // Cluster and family are logged; the labels named the task, and /task was asked for the
    // service, which a Fargate task's response does not have.
    assert!(
        err.contains("cluster arn:aws:ecs:us-west-2:111122223333:cluster/default, family twistlock-fargate-task revision 4, service -"),
        "{err}"
    );
    assert_eq!(
        endpoint.paths(),
        [format!("/v4/{DOCKER_ID}"), format!("/v4/{DOCKER_ID}/task")]
    );
    // The cluster by its name, the family; no service.
    assert_eq!(audits[0]["cluster"], "default");
    assert_eq!(audits[0]["family"], "twistlock-fargate-task");
    assert!(audits[0].get("service").is_none(), "{}", audits[0]);
    assert!(
        w.audits_of("defender")
            .iter()
            .all(|e| !e["message"].as_str().unwrap().contains("metadata"))
    );
}

#[test]
fn without_labels_the_task_response_names_the_task() {
    let endpoint = serve(Behaviour::NoLabels);
    let w = World::new();
    let out = run_with_metadata(&w, &endpoint.uri(), &[], &[], &["mkdir", "made"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    let audits = w.audits_of("process");
    assert_eq!(audits[0]["task"], TASK_ARN);
    assert_eq!(audits[0]["container"], "twistlock-fargate-task");
    assert_eq!(
        endpoint.paths(),
        [format!("/v4/{DOCKER_ID}"), format!("/v4/{DOCKER_ID}/task")]
    );
}

#[test]
fn flags_and_environment_win_over_the_metadata() {
    let endpoint = serve(Behaviour::Replay);
    let w = World::new();
    // The environment names another container, which the rule does not cover: nothing enforced.
    let out = run_with_metadata(
        &w,
        &endpoint.uri(),
        &[],
        &[("DEFENDER_CONTAINER", "renamed")],
        &["mkdir", "made"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(w.path("made").exists());

    // A flag for the image, the metadata for the name: both must match the rule.
    let w = World::new();
    let out = run_with_metadata(
        &w,
        &endpoint.uri(),
        &["--image", "registry/twistlock-fargate-auto:2"],
        &[],
        &["mkdir", "made"],
    );
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    let audits = w.audits_of("process");
    assert_eq!(audits[0]["image"], "registry/twistlock-fargate-auto:2");
    assert_eq!(audits[0]["container"], "twistlock-fargate-task");
    assert_eq!(audits[0]["task"], TASK_ARN);
}

/// The run goes on with the defaults, and the failure is on stderr and in a `defender` audit.
fn assert_reported(w: &World, out: &std::process::Output, reason: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the command's own status: {err}"
    );
    assert!(
        err.contains("defender: warn: ECS task metadata could not be read"),
        "{err}"
    );
    let events = w.audits_of("defender");
    let report = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("ECS task metadata could not be read")
        })
        .unwrap_or_else(|| panic!("no defender event: {events:?}"));
    let message = report["message"].as_str().unwrap();
    assert!(message.contains(reason), "{message}");
    assert_eq!(report["effect"], "alert");
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(report["container"], host.as_str());
    assert_eq!(report["image"], "unknown");
    assert!(report.get("task").is_none());
}

#[test]
fn an_unreachable_endpoint_is_reported_and_the_run_goes_on() {
    // A port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let w = World::new();
    let uri = format!("http://{addr}/v4/{DOCKER_ID}");
    let out = run_with_metadata(&w, &uri, &[], &[], &["sh", "-c", "exit 3"]);
    assert_reported(&w, &out, "Connection refused");
}

#[test]
fn an_endpoint_that_never_answers_times_out() {
    let endpoint = serve(Behaviour::Silent);
    let w = World::new();
    let out = run_with_metadata(&w, &endpoint.uri(), &[], &[], &["sh", "-c", "exit 3"]);
    assert_reported(&w, &out, "timeout");
}

#[test]
fn an_answer_that_is_not_metadata_is_reported() {
    let endpoint = serve(Behaviour::Garbage);
    let w = World::new();
    let out = run_with_metadata(&w, &endpoint.uri(), &[], &[], &["sh", "-c", "exit 3"]);
    assert_reported(&w, &out, "not JSON");
}

/// Rules scoped by cluster, family and service: the ECS identity of the metadata selects them.
const SCOPED: &str = r#"{"rules": [
    {"name": "orders service", "collections": {"clusters": ["default"], "families": ["twistlock-*"],
        "services": ["orders-*"]}, "processes": {"effect": "prevent", "deny": ["mkdir"]}},
    {"name": "other cluster", "collections": {"clusters": ["prod"]},
        "processes": {"effect": "prevent", "deny": ["mkdir"]}}
]}"#;

/// `defender run` with `policy`, the metadata URI set, and `extra` flags.
fn run_scoped(
    w: &World,
    policy: &str,
    uri: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let policy = w.policy(policy);
    let mut cmd = w.unnamed_command(Some(&policy), extra, &["mkdir", "made"]);
    cmd.env("ECS_CONTAINER_METADATA_URI_V4", uri);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_within(&mut cmd)
}

#[test]
fn rules_select_by_cluster_family_and_service_from_the_metadata() {
    let endpoint = serve(Behaviour::WithService);
    let w = World::new();
    let out = run_scoped(&w, SCOPED, &endpoint.uri(), &[], &[]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(!w.path("made").exists());
    let audits = w.audits_of("process");
    assert_eq!(audits.len(), 1, "{}", stderr(&out));
    assert_eq!(audits[0]["rule"], "orders service");
    assert_eq!(audits[0]["cluster"], "default");
    assert_eq!(audits[0]["family"], "twistlock-fargate-task");
    assert_eq!(audits[0]["service"], "orders-api");
    assert_eq!(audits[0]["task"], TASK_ARN);
}

/// On Fargate the metadata names no service: a rule that names services does not apply (it was
/// meant for ECS services), and neither does one for another cluster.
#[test]
fn a_rule_naming_services_does_not_match_an_unknown_service() {
    let endpoint = serve(Behaviour::Replay);
    let w = World::new();
    let out = run_scoped(&w, SCOPED, &endpoint.uri(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(w.path("made").exists());
    assert!(w.audits_of("process").is_empty());
}

/// `--service` gives what the metadata lacks; the variables and flags win over the metadata, and
/// a cluster given as an ARN is known by its name.
#[test]
fn flags_and_environment_name_the_cluster_family_and_service() {
    let endpoint = serve(Behaviour::Replay);
    let w = World::new();
    let out = run_scoped(
        &w,
        SCOPED,
        &endpoint.uri(),
        &["--service", "orders-web"],
        &[],
    );
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    let audits = w.audits_of("process");
    assert_eq!(audits[0]["rule"], "orders service");
    assert_eq!(audits[0]["service"], "orders-web");

    let w = World::new();
    let env = [
        (
            "DEFENDER_CLUSTER",
            "arn:aws:ecs:eu-west-1:111122223333:cluster/prod",
        ),
        ("DEFENDER_SERVICE", "orders-web"),
        // Empty counts as unset: the metadata's family.
        ("DEFENDER_FAMILY", ""),
    ];
    let out = run_scoped(&w, SCOPED, &endpoint.uri(), &[], &env);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    let audits = w.audits_of("process");
    assert_eq!(audits[0]["rule"], "other cluster");
    assert_eq!(audits[0]["cluster"], "prod");
    assert_eq!(audits[0]["family"], "twistlock-fargate-task");

    // No metadata at all (the helper unsets it): only the flags name the identity.
    let w = World::new();
    let policy = w.policy(SCOPED);
    let flags = [
        "--cluster",
        "default",
        "--family",
        "twistlock-x",
        "--service",
        "orders-1",
    ];
    let out = output_within(&mut w.unnamed_command(Some(&policy), &flags, &["mkdir", "made"]));
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert_eq!(w.audits_of("process")[0]["rule"], "orders service");
}

/// The labels named the task, cluster and family: a task response that fails costs only the
/// service, and is no metadata failure.
#[test]
fn a_missing_task_response_costs_only_the_service() {
    let endpoint = serve(Behaviour::NoTask);
    let w = World::new();
    let out = run_with_metadata(&w, &endpoint.uri(), &[], &[], &["mkdir", "made"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(126), "{err}");
    let audits = w.audits_of("process");
    assert_eq!(audits[0]["task"], TASK_ARN);
    assert_eq!(audits[0]["cluster"], "default");
    assert!(audits[0].get("service").is_none(), "{}", audits[0]);
    assert!(err.contains("ECS task metadata: no service name"), "{err}");
    assert!(
        w.audits_of("defender")
            .iter()
            .all(|e| !e["message"].as_str().unwrap().contains("metadata"))
    );
}

/// The identity reaches the console: its audits carry it (and filter on it), and so do the
/// defender's heartbeats (the defenders list).
#[test]
fn the_console_receives_the_ecs_identity_in_audits_and_heartbeats() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    c.put_policy(SCOPED);
    let identity = [
        "--cluster",
        "default",
        "--family",
        "twistlock-fargate-task",
        "--service",
        "orders-api",
    ];
    // The command waits on its stdin, so the defender runs (and beats) until it is closed.
    let mut child = console::defender(
        &w,
        &c.url(),
        &w.path("state"),
        &identity,
        &["sh", "-c", "mkdir made; read line"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("defender starts");
    let listed = || {
        let a = c.call("GET", "/api/v1/defenders", Some(console::ADMIN), &[], None);
        a.json().as_array().unwrap().clone()
    };
    let seen = wait_until(HANG_GUARD, || {
        c.audits("service=orders-api&type=process").len() == 1 && !listed().is_empty()
    });
    drop(child.stdin.take());
    let out = finish_within(child, HANG_GUARD);
    assert!(seen, "{}", stderr(&out));
    let audit = &c.audits("cluster=default&family=twistlock-fargate-task")[0];
    assert_eq!(audit["rule"], "orders service");
    assert_eq!(audit["service"], "orders-api");
    let defender = &listed()[0];
    assert_eq!(
        (
            &defender["cluster"],
            &defender["family"],
            &defender["service"]
        ),
        (
            &json!("default"),
            &json!("twistlock-fargate-task"),
            &json!("orders-api")
        )
    );
    assert!(!w.path("made").exists());
}
