//! Delivery: the carrier image `Dockerfile.carrier` builds, fills a volume with the binary, and a
//! second container that mounts that volume is protected by it; the CloudFormation template
//! `deploy/sample-task.json` passes `cfn-lint`, and its task definition is the one
//! `defender fargate embed` makes of the sample task, so that the two cannot drift.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value, json};

use common::docker::{Docker, static_binary, static_busybox};
use common::{defender_cli_ok, repo_path};

const TEMPLATE: &str = "deploy/sample-task.json";

/// `docker build --no-cache -q -f DOCKERFILE -t NAME CONTEXT`. Without the cache: another test
/// binary's cached step may be removed mid-build when its test ends.
fn build(docker: &Docker, dockerfile: &Path, context: &Path, what: &str) -> String {
    let tag = docker.image(what);
    docker.ok(&[
        "build",
        "--no-cache",
        "-q",
        "-f",
        dockerfile.to_str().unwrap(),
        "-t",
        &tag,
        context.to_str().unwrap(),
    ]);
    tag
}

#[test]
fn the_carrier_image_installs_the_binary_that_protects_a_second_container() {
    let docker = Docker::new();

    // The carrier, from a context holding only the static release binary.
    let carrier_ctx = tempfile::tempdir().unwrap();
    std::fs::copy(static_binary(), carrier_ctx.path().join("defender")).unwrap();
    let carrier = build(
        &docker,
        &repo_path("Dockerfile.carrier"),
        carrier_ctx.path(),
        "carrier",
    );

    // Run as the carrier `fargate embed` writes for a container running as uid 1000 on a
    // read-only root file system: the binary into one volume, and that container's state
    // directory, owned by it, into the state volume (Docker, like Fargate, makes a volume root's).
    let volume = docker.volume("binary");
    let state = docker.volume("state");
    let mount = format!("{volume}:/opt/defender");
    let state_mount = format!("{state}:/var/lib/defender");
    let out = docker.output(&[
        "run",
        "--rm",
        "-v",
        &mount,
        "-v",
        &state_mount,
        "--entrypoint",
        "/defender",
        &carrier,
        "install",
        "/opt/defender",
        "--state-dir",
        "/var/lib/defender/app=1000:1000",
    ]);
    assert!(
        out.status.success()
            && common::stderr(&out).contains("installed /opt/defender/defender")
            && common::stderr(&out).contains("made the state directory /var/lib/defender/app"),
        "carrier: {}{}",
        common::stdout(&out),
        common::stderr(&out)
    );

    // An app with nothing of the defender: busybox FROM scratch.
    let app_ctx = tempfile::tempdir().unwrap();
    std::fs::copy(static_busybox(), app_ctx.path().join("busybox")).unwrap();
    let app_dockerfile = app_ctx.path().join("Dockerfile");
    std::fs::write(
        &app_dockerfile,
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    let app = build(&docker, &app_dockerfile, app_ctx.path(), "app");

    // The app runs the binary from the volume, read-only as the protected task mounts it.
    let policy = app_ctx.path().join("policy.json");
    std::fs::write(
        &policy,
        common::process_policy(
            "carrier test: no mkdir",
            r#"{"effect": "prevent", "deny": ["mkdir"]}"#,
        ),
    )
    .unwrap();
    let binary = format!("{volume}:/opt/defender:ro");
    let policy_mount = format!("{}:/etc/defender/policy.json:ro", policy.display());
    let name = docker.container("app");
    // `/bin/mkdir` by path: busybox's shell would run a bare `mkdir` in process, with no exec.
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
        "none",
        "-v",
        &binary,
        "-v",
        &policy_mount,
        "-v",
        &state_mount,
        "-e",
        "DEFENDER_STATE_DIR=/var/lib/defender/app",
        &app,
        "/opt/defender/defender",
        "run",
        "--container",
        "app",
        "--policy",
        "/etc/defender/policy.json",
        "--",
        "/bin/sh",
        "-c",
        "/bin/mkdir /made; echo \"mkdir exited $?\"; test -e /made && echo made; true",
    ]);
    let all = format!(
        "stdout:\n{}\nstderr:\n{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    assert!(out.status.success(), "{all}");
    assert_eq!(common::stdout(&out), "mkdir exited 126\n", "{all}");
    // Its state directory was writable: no fallback to memory.
    assert!(
        !common::stderr(&out).contains("No writable state directory"),
        "{all}"
    );
    let prevented: Vec<Value> = common::stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "process")
        .collect();
    assert_eq!(prevented.len(), 1, "{all}");
    assert_eq!(prevented[0]["process"], "/bin/mkdir", "{all}");
    assert_eq!(prevented[0]["effect"], "prevent", "{all}");
    assert_eq!(prevented[0]["rule"], "carrier test: no mkdir", "{all}");
}

/// `cfn-lint`, from the PATH (pip installs it where pip's scripts go); missing, the test fails.
fn cfn_lint(template: &Path) -> std::process::Output {
    Command::new("cfn-lint")
        .arg(template)
        .output()
        .unwrap_or_else(|e| panic!("cfn-lint: {e}; .ci/run installs it (pip install cfn-lint)"))
}

#[test]
fn the_cloudformation_template_passes_cfn_lint() {
    let out = cfn_lint(&repo_path(TEMPLATE));
    assert!(
        out.status.success(),
        "cfn-lint {TEMPLATE}:\n{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
}

/// The values the test gives the template's parameters (and `AWS::Region`), and the embedding.
const PARAMETERS: [(&str, &str); 7] = [
    (
        "AppImage",
        "111122223333.dkr.ecr.us-west-2.amazonaws.com/twistlock-fargate-auto:1",
    ),
    (
        "DefenderImage",
        "111122223333.dkr.ecr.us-west-2.amazonaws.com/defender:0.1.0",
    ),
    ("ConsoleUrl", "https://console.example.com"),
    (
        "TokenSecretArn",
        "arn:aws:secretsmanager:us-west-2:111122223333:secret:defender-token-AbCdEf",
    ),
    (
        "ExecutionRoleArn",
        "arn:aws:iam::111122223333:role/ecsTaskExecutionRole",
    ),
    ("LogGroup", "/ecs/defender-sample"),
    ("AWS::Region", "us-west-2"),
];

fn parameter(name: &str) -> &'static str {
    PARAMETERS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{TEMPLATE}: Ref {name}: not a parameter the test knows"))
        .1
}

/// A CloudFormation property value as the ECS API spells it: `Ref`s replaced by the test's
/// values, keys from PascalCase to camelCase, except those of a log configuration's `Options`
/// (the log driver's own names). Any other intrinsic function is refused: the comparison
/// would not know what it means.
fn as_ecs_json(value: &Value, keep_keys: bool) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("Ref") => {
            json!(parameter(map["Ref"].as_str().unwrap()))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                assert!(
                    !key.starts_with("Fn::"),
                    "{TEMPLATE}: {key}: only Ref is resolved by this test"
                );
                let key = if keep_keys {
                    key.clone()
                } else {
                    let mut chars = key.chars();
                    let first = chars.next().unwrap().to_ascii_lowercase();
                    std::iter::once(first).chain(chars).collect()
                };
                out.insert(key.clone(), as_ecs_json(v, key == "options"));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| as_ecs_json(v, false)).collect()),
        other => other.clone(),
    }
}

/// The sample task as the walkthrough of docs/embedding.md prepares it: its image in ECR, an
/// execution role, and the app logging to CloudWatch Logs (where the audits are read).
fn prepared_sample() -> Value {
    let mut def: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("task-definitions/twistlock-fargate-task.json"))
            .unwrap(),
    )
    .unwrap();
    def["executionRoleArn"] = json!(parameter("ExecutionRoleArn"));
    let app = &mut def["containerDefinitions"][0];
    app["image"] = json!(parameter("AppImage"));
    app["logConfiguration"] = json!({
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": parameter("LogGroup"),
            "awslogs-region": parameter("AWS::Region"),
            "awslogs-stream-prefix": "twistlock-fargate-task"
        }
    });
    def
}

#[test]
fn the_templates_task_definition_is_what_fargate_embed_makes_of_the_sample() {
    let image_config = format!(
        "{}=task-definitions/twistlock-fargate-auto.image.json",
        parameter("AppImage")
    );
    let (out, _) = defender_cli_ok(
        &[
            "fargate",
            "embed",
            "--task-definition",
            "-",
            "--image-config",
            &image_config,
            "--console",
            parameter("ConsoleUrl"),
            "--token-secret",
            parameter("TokenSecretArn"),
            "--defender-image",
            parameter("DefenderImage"),
        ],
        Some(&prepared_sample().to_string()),
    );
    let embedded: Value = serde_json::from_str(&out).unwrap();

    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path(TEMPLATE)).unwrap()).unwrap();
    let resource = &template["Resources"]["TaskDefinition"];
    assert_eq!(resource["Type"], "AWS::ECS::TaskDefinition");
    let from_template = as_ecs_json(&resource["Properties"], false);
    assert_eq!(
        from_template,
        embedded,
        "{TEMPLATE}: the task definition is not what `defender fargate embed` makes now:\n{}",
        serde_json::to_string_pretty(&embedded).unwrap()
    );
    // Every parameter is used by the task definition (none left over from an older template).
    for name in template["Parameters"].as_object().unwrap().keys() {
        assert!(
            out.contains(parameter(name)),
            "{TEMPLATE}: parameter {name} is not used"
        );
    }
}
