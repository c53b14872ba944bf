//! `defender fargate embed`: golden files for the seed's sample task, a multi-container task with
//! secrets and existing linuxParameters, `describe-task-definition` output, a hardened task, a
//! task with sidecars left alone, and a console's private CA; idempotence; every other field
//! surviving; and the errors that say what to pass or what collides (`refusals.txt`).

mod common;

use serde_json::{Value, json};

use common::{defender_cli, defender_cli_ok, golden, repo_path, stderr, stdout};

const SAMPLE: &str = "task-definitions/twistlock-fargate-task.json";
const SAMPLE_IMAGE: &str =
    "matthewabq/twistlock-fargate-auto=task-definitions/twistlock-fargate-auto.image.json";
const D: &str = "/opt/defender/defender";

/// `defender fargate embed ARGS`, which must succeed: (stdout, stderr).
fn embed_ok(args: &[&str], stdin: Option<&str>) -> (String, String) {
    defender_cli_ok(&[&["fargate", "embed"], args].concat(), stdin)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative)).unwrap()
}

fn container<'a>(def: &'a Value, name: &str) -> &'a Value {
    def["containerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// What a container runs: entryPoint followed by command.
fn argv(c: &Value) -> Vec<String> {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    [list(&c["entryPoint"]), list(&c["command"])].concat()
}

fn env<'a>(c: &'a Value, list: &str, name: &str) -> Vec<&'a Value> {
    c[list]
        .as_array()
        .map(|a| a.iter().filter(|e| e["name"] == name).collect())
        .unwrap_or_default()
}

/// The checks every protected app container passes.
fn assert_protected(def: &Value, name: &str, image: &str, runs: &[&str]) {
    let c = container(def, name);
    let want: Vec<String> = [D, "run", "--"]
        .iter()
        .chain(runs)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(argv(c), want, "{name}");
    assert_eq!(
        env(c, "environment", "DEFENDER_CONTAINER"),
        [&json!({"name": "DEFENDER_CONTAINER", "value": name})]
    );
    assert_eq!(
        env(c, "environment", "DEFENDER_IMAGE"),
        [&json!({"name": "DEFENDER_IMAGE", "value": image})]
    );
    let caps = c["linuxParameters"]["capabilities"]["add"]
        .as_array()
        .unwrap();
    assert_eq!(
        caps.iter().filter(|a| *a == "SYS_PTRACE").count(),
        1,
        "{name}"
    );
    let deps: Vec<&Value> = c["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["containerName"] == "defender")
        .collect();
    assert_eq!(
        deps,
        [&json!({"containerName": "defender", "condition": "SUCCESS"})]
    );
    let mounts: Vec<&Value> = c["mountPoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sourceVolume"] == "defender")
        .collect();
    assert_eq!(
        mounts,
        [&json!({"sourceVolume": "defender", "containerPath": "/opt/defender", "readOnly": true})]
    );
}

/// The carrier: copies the binary into the volume and exits, ending nothing.
fn assert_carrier(def: &Value, image: &str) {
    let carrier = container(def, "defender");
    assert_eq!(carrier["image"], image);
    assert_eq!(carrier["essential"], false);
    assert_eq!(
        argv(carrier)[..3],
        ["/defender", "install", "/opt/defender"]
    );
    assert_eq!(
        carrier["mountPoints"][0],
        json!({"sourceVolume": "defender", "containerPath": "/opt/defender", "readOnly": false})
    );
    let volumes = def["volumes"].as_array().unwrap();
    assert_eq!(
        volumes.iter().filter(|v| v["name"] == "defender").count(),
        1
    );
}

#[test]
fn the_sample_task_protected_form_is_what_the_tool_makes() {
    let (out, err) = embed_ok(
        &["--task-definition", SAMPLE, "--image-config", SAMPLE_IMAGE],
        None,
    );
    golden(
        "task-definitions/twistlock-fargate-task.protected.json",
        &out,
    );
    let def = json(&out);
    // [""] with no command: the image's CMD, under the defender.
    assert_protected(
        &def,
        "twistlock-fargate-task",
        "matthewabq/twistlock-fargate-auto",
        &["/entrypoint.sh"],
    );
    assert_carrier(&def, "defender:0.1.0");
    // The default carrier image is named, with what to do about it.
    assert!(
        err.contains("defender:0.1.0") && err.contains("--defender-image"),
        "{err}"
    );
    // Every other field as given.
    let sample = json(&read(SAMPLE));
    for key in [
        "requiresCompatibilities",
        "family",
        "networkMode",
        "memory",
        "cpu",
    ] {
        assert_eq!(def[key], sample[key], "{key}");
    }
    assert_eq!(
        container(&def, "twistlock-fargate-task")["portMappings"],
        json!([])
    );
}

#[test]
fn a_task_without_what_its_container_runs_needs_the_image_config() {
    let out = defender_cli(&["fargate", "embed", "--task-definition", SAMPLE], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    for part in [
        "container \"twistlock-fargate-task\"",
        "clears the entryPoint",
        "--image-config matthewabq/twistlock-fargate-auto=FILE",
        "docker image inspect matthewabq/twistlock-fargate-auto",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }

    // A command and no entryPoint: the image's ENTRYPOINT decides how it runs.
    let task = r#"{"containerDefinitions": [{"name": "w", "image": "img:1", "command": ["x"]}]}"#;
    let out = defender_cli(&["fargate", "embed"], Some(task));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("container \"w\" (image img:1) sets a command but no entryPoint")
            && err.contains("--image-config img:1=FILE"),
        "{err}"
    );
}

fn multi_container_args() -> Vec<&'static str> {
    vec![
        "--task-definition",
        "tests/golden/fargate/multi-container.json",
        "--console",
        "https://defender-console.internal:8083",
        "--token-secret",
        "arn:aws:secretsmanager:us-west-2:111122223333:secret:defender/token-XyZ",
        "--defender-image",
        "111122223333.dkr.ecr.us-west-2.amazonaws.com/defender:0.1.0",
        "--image-config",
        "111122223333.dkr.ecr.us-west-2.amazonaws.com/shop-worker:1.4.2=tests/golden/fargate/shop-worker.inspect.json",
        "--image-config",
        "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable=tests/golden/fargate/aws-for-fluent-bit.oci.json",
    ]
}

#[test]
fn a_multi_container_task_with_secrets_and_linux_parameters() {
    let (out, err) = embed_ok(&multi_container_args(), None);
    golden("tests/golden/fargate/multi-container.protected.json", &out);
    let warnings: Vec<&str> = err.lines().collect();
    // The web container runs as uid 1000 on a read-only root file system: the carrier makes its
    // state directory its own (in the golden), nothing to warn about.
    assert_eq!(warnings.len(), 2, "{err}");
    // The worker asks for SYS_PTRACE itself, which its command no longer holds unless kept.
    assert!(
        warnings[0].contains("container \"worker\" adds SYS_PTRACE itself")
            && warnings[0].contains("add SYS_PTRACE to DEFENDER_KEEP_CAPABILITIES"),
        "{err}"
    );
    // Everyone logs through FireLens, which the carrier cannot.
    assert!(
        warnings[1].contains("the carrier container gets no logConfiguration"),
        "{err}"
    );
    let def = json(&out);
    let ecr = "111122223333.dkr.ecr.us-west-2.amazonaws.com";
    // Both in the definition.
    assert_protected(
        &def,
        "web",
        &format!("{ecr}/shop-web:1.4.2"),
        &["/usr/local/bin/docker-entrypoint.sh", "node", "server.js"],
    );
    // A command only: the image's ENTRYPOINT (docker inspect) in front of it, not its CMD.
    assert_protected(
        &def,
        "worker",
        &format!("{ecr}/shop-worker:1.4.2"),
        &["/app/worker", "--queue", "orders"],
    );
    assert_eq!(
        container(&def, "worker")["command"],
        json!(["--queue", "orders"])
    );
    // Nothing: the image's CMD (OCI config), written into command.
    assert_protected(
        &def,
        "log_router",
        "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
        &["/bin/sh", "-c", "/entrypoint.sh"],
    );
    assert_carrier(&def, &format!("{ecr}/defender:0.1.0"));

    let web = container(&def, "web");
    // Existing entries stay, first and as they were.
    assert_eq!(
        web["linuxParameters"],
        json!({"initProcessEnabled": true, "capabilities": {"drop": ["NET_RAW"], "add": ["SYS_PTRACE"]},
               "tmpfs": [{"containerPath": "/tmp", "size": 64}]})
    );
    assert_eq!(
        web["dependsOn"][0],
        json!({"containerName": "log_router", "condition": "START"})
    );
    assert_eq!(web["mountPoints"][0]["sourceVolume"], "cache");
    assert_eq!(
        web["environment"][0],
        json!({"name": "NODE_ENV", "value": "production"})
    );
    // A stale DEFENDER_CONTAINER is corrected in place.
    assert_eq!(
        web["environment"][1],
        json!({"name": "DEFENDER_CONTAINER", "value": "web"})
    );
    // The token as a secret, beside the app's own; no clear-text copy anywhere.
    for c in def["containerDefinitions"].as_array().unwrap() {
        if c["name"] == "defender" {
            continue;
        }
        assert_eq!(
            env(c, "secrets", "DEFENDER_TOKEN"),
            [&json!({"name": "DEFENDER_TOKEN",
                     "valueFrom": "arn:aws:secretsmanager:us-west-2:111122223333:secret:defender/token-XyZ"})]
        );
        assert!(env(c, "environment", "DEFENDER_TOKEN").is_empty(), "{c}");
        assert_eq!(
            env(c, "environment", "DEFENDER_CONSOLE"),
            [
                &json!({"name": "DEFENDER_CONSOLE", "value": "https://defender-console.internal:8083"})
            ]
        );
    }
    assert_eq!(web["secrets"][0]["name"], "DB_PASSWORD");
}

#[test]
fn every_other_field_survives_untouched() {
    let (out, _) = embed_ok(&multi_container_args(), None);
    let before = json(&read("tests/golden/fargate/multi-container.json"));
    let after = json(&out);
    // Task level: everything but the added volume.
    for (key, value) in before.as_object().unwrap() {
        match key.as_str() {
            "containerDefinitions" => {}
            "volumes" => assert_eq!(after[key][0], value[0]),
            _ => assert_eq!(&after[key], value, "{key}"),
        }
    }
    // Container level: fields the embedding does not own are equal; the lists it adds to keep
    // their entries (DEFENDER_* aside).
    let owned = ["entryPoint", "command", "linuxParameters"];
    let extended = ["environment", "secrets", "mountPoints", "dependsOn"];
    for c in before["containerDefinitions"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let a = container(&after, name);
        for (key, value) in c.as_object().unwrap() {
            if owned.contains(&key.as_str()) {
                continue;
            }
            if extended.contains(&key.as_str()) {
                for entry in value.as_array().unwrap() {
                    let ours = entry["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("DEFENDER_"));
                    assert!(
                        ours || a[key].as_array().unwrap().contains(entry),
                        "{name}.{key}: {entry} lost"
                    );
                }
            } else {
                assert_eq!(&a[key], value, "{name}.{key}");
            }
        }
    }
}

#[test]
fn describe_task_definition_output_is_unwrapped_and_registers_as_is() {
    let args = [
        "--task-definition",
        "tests/golden/fargate/describe-task-definition.json",
        "--console",
        "http://10.0.0.5:8083",
        "--token",
        "s3cr3t",
        "--defender-image",
        "defender:0.1.0",
    ];
    let (out, err) = embed_ok(&args, None);
    golden(
        "tests/golden/fargate/describe-task-definition.protected.json",
        &out,
    );
    let def = json(&out);
    assert!(def.get("taskDefinition").is_none());
    for read_only in [
        "taskDefinitionArn",
        "revision",
        "status",
        "requiresAttributes",
        "compatibilities",
        "registeredAt",
        "registeredBy",
    ] {
        assert!(def.get(read_only).is_none(), "{read_only} kept");
    }
    // The tags beside the definition go inside, where register-task-definition takes them.
    assert_eq!(def["tags"], json!([{"key": "env", "value": "dev"}]));
    assert_eq!(def["placementConstraints"], json!([]));
    assert_protected(
        &def,
        "hello",
        "public.ecr.aws/docker/library/busybox:stable",
        &["sh", "-c", "echo hello; sleep 3600"],
    );
    let hello = container(&def, "hello");
    assert_eq!(
        env(hello, "environment", "DEFENDER_TOKEN"),
        [&json!({"name": "DEFENDER_TOKEN", "value": "s3cr3t"})]
    );
    // A token in clear text is warned about.
    assert!(err.contains("--token-secret"), "{err}");
}

#[test]
fn embedding_a_protected_definition_changes_nothing() {
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "task-definitions/twistlock-fargate-task.protected.json",
            vec![],
        ),
        (
            "tests/golden/fargate/multi-container.protected.json",
            multi_container_args()[2..].to_vec(),
        ),
        (
            "tests/golden/fargate/describe-task-definition.protected.json",
            vec![],
        ),
    ];
    for (file, options) in cases {
        let text = read(file);
        // With the options it was made with, and with none: nothing given, nothing changed.
        for opts in [options.clone(), vec![]] {
            let mut args = vec!["--task-definition", file];
            args.extend(&opts);
            let (out, _) = embed_ok(&args, None);
            assert_eq!(out, text, "{file} {opts:?}");
        }
    }
}

#[test]
fn reads_standard_input() {
    let (from_file, _) = embed_ok(
        &["--task-definition", SAMPLE, "--image-config", SAMPLE_IMAGE],
        None,
    );
    let (from_stdin, _) = embed_ok(&["--image-config", SAMPLE_IMAGE], Some(&read(SAMPLE)));
    assert_eq!(from_stdin, from_file);
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let one = |extra: &str| {
        format!(
            r#"{{"containerDefinitions": [{{"name": "a", "image": "i", "entryPoint": ["/a"]}}{extra}]}}"#
        )
    };
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        ("{".into(), vec![], "not JSON"),
        ("[]".into(), vec![], "not a JSON object"),
        (r#"{"family": "x"}"#.into(), vec![], "containerDefinitions is missing or empty"),
        (
            r#"{"containerDefinitions": [{"image": "i"}]}"#.into(),
            vec![],
            "containerDefinitions[0]: name is missing",
        ),
        (
            r#"{"containerDefinitions": [{"name": "a", "image": "i", "entryPoint": "/a"}]}"#.into(),
            vec![],
            "\"a\": entryPoint is not a list of strings",
        ),
        (
            r#"{"containerDefinitions": [{"name": "a", "image": "i", "entryPoint": ["/a"], "environment": {}}]}"#
                .into(),
            vec![],
            "\"a\": environment is not a list",
        ),
        (
            one(r#", {"name": "defender", "image": "mine", "entryPoint": ["/mine"]}"#),
            vec![],
            "container \"defender\" exists and is not the defender's carrier",
        ),
        (
            r#"{"runtimePlatform": {"cpuArchitecture": "ARM64"}, "containerDefinitions": [{"name": "a", "image": "i", "entryPoint": ["/a"]}]}"#
                .into(),
            vec![],
            "ARM64: the defender is built for x86_64 only",
        ),
        (one(""), vec!["--console", "console:8083"], "--console \"console:8083\""),
        (one(""), vec!["--token", "t", "--token-secret", "arn"], "cannot be used with"),
        // Half of what the defender needs for a console: it would refuse to start (125) in
        // every task.
        (
            one(""),
            vec!["--console", "https://c:8083"],
            "container \"a\" would run the defender with DEFENDER_CONSOLE but no DEFENDER_TOKEN, and the defender refuses to start so; pass --token-secret ARN (or --token TOKEN) with --console",
        ),
        (
            one(""),
            vec!["--token-secret", "arn"],
            "container \"a\" would run the defender with DEFENDER_TOKEN but no DEFENDER_CONSOLE, and the defender refuses to start so; pass --console URL",
        ),
        (
            r#"{"containerDefinitions": [{"name": "a", "image": "i", "entryPoint": ["/a"], "environment": [{"name": "DEFENDER_TOKEN", "value": "t"}]}]}"#
                .into(),
            vec![],
            "with DEFENDER_TOKEN but no DEFENDER_CONSOLE",
        ),
        (one(""), vec!["--image-config", "nofile"], "expected IMAGE=FILE"),
        (
            one(""),
            vec!["--image-config", "i=/no/such/file"],
            "--image-config i=/no/such/file: No such file",
        ),
        (
            r#"{"containerDefinitions": [{"name": "a", "image": "i"}]}"#.into(),
            vec!["--image-config", "i=tests/golden/fargate/empty.image.json"],
            "image i has neither ENTRYPOINT nor CMD",
        ),
    ];
    for (input, opts, want) in cases {
        let mut args = vec!["fargate", "embed"];
        args.extend(&opts);
        let out = defender_cli(&args, Some(&input));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{input} {opts:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
        assert!(
            stderr(&out).contains(want),
            "{input} {opts:?}: want {want:?} in {}",
            stderr(&out)
        );
    }
}

const HARDENED: &str = "tests/golden/fargate/hardened.json";
const SIDECARS: &str = "tests/golden/fargate/sidecars.json";
const DESCRIBED: &str = "tests/golden/fargate/describe-task-definition.json";
const CA: &str = "tests/golden/fargate/console-ca.pem";
const CONSOLE: &str = "https://defender-console.internal:8083";
const TOKEN_ARN: &str = "arn:aws:secretsmanager:us-west-2:111122223333:secret:defender/token-XyZ";
const CA_ARN: &str = "arn:aws:ssm:us-west-2:111122223333:parameter/defender/console-ca";

/// Each new golden: the input, the options it is made with, the output.
fn option_goldens() -> Vec<(&'static str, Vec<&'static str>, &'static str)> {
    vec![
        (
            HARDENED,
            vec!["--defender-image", "defender:0.1.0"],
            "tests/golden/fargate/hardened.protected.json",
        ),
        (
            SIDECARS,
            vec![
                "--defender-image",
                "defender:0.1.0",
                "--exclude",
                "log_router",
                "--exclude",
                "xray-daemon",
                "--exclude",
                "envoy",
            ],
            "tests/golden/fargate/sidecars.protected.json",
        ),
        (
            DESCRIBED,
            vec![
                "--defender-image",
                "defender:0.1.0",
                "--console",
                CONSOLE,
                "--token-secret",
                TOKEN_ARN,
                "--console-ca",
                CA,
                "--wait-for-console",
                "30",
            ],
            "tests/golden/fargate/describe-task-definition.console-ca.protected.json",
        ),
        (
            DESCRIBED,
            vec![
                "--defender-image",
                "defender:0.1.0",
                "--console",
                CONSOLE,
                "--token-secret",
                TOKEN_ARN,
                "--console-ca-secret",
                CA_ARN,
                "--wait-for-console",
                "2.5",
            ],
            "tests/golden/fargate/describe-task-definition.console-ca-secret.protected.json",
        ),
    ]
}

/// The golden made with `options` from `input`, checked; its parsed form.
fn embed_golden(input: &str, options: &[&str], output: &str) -> (Value, String) {
    let mut args = vec!["--task-definition", input];
    args.extend(options);
    let (out, err) = embed_ok(&args, None);
    golden(output, &out);
    (json(&out), err)
}

#[test]
fn hardened_containers_get_a_writable_state_volume() {
    let (input, options, output) = &option_goldens()[0];
    let (def, err) = embed_golden(input, options, output);
    let before = json(&read(HARDENED));
    // (container, the state directory given, or the one it had)
    let cases = [
        ("api", "/var/lib/defender/api", true),
        ("migrate", "/var/lib/defender/migrate", true),
        ("batch", "/data/defender", false),
    ];
    for (name, dir, mounted) in cases {
        let c = container(&def, name);
        assert_eq!(
            env(c, "environment", "DEFENDER_STATE_DIR"),
            [&json!({"name": "DEFENDER_STATE_DIR", "value": dir})],
            "{name}"
        );
        let state: Vec<&Value> = c["mountPoints"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["sourceVolume"] == "defender-state")
            .collect();
        let want = json!({"sourceVolume": "defender-state", "containerPath": "/var/lib/defender", "readOnly": false});
        assert_eq!(state, if mounted { vec![&want] } else { vec![] }, "{name}");
        // The hardening itself stays.
        let b = container(&before, name);
        for key in ["readonlyRootFilesystem", "user"] {
            assert_eq!(c[key], b[key], "{name}.{key}");
        }
    }
    // A non-root user on a writable root file system: $TMPDIR works, a root-owned volume would not.
    let report = container(&def, "report");
    assert!(env(report, "environment", "DEFENDER_STATE_DIR").is_empty());
    assert!(
        !report["mountPoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["sourceVolume"] == "defender-state")
    );
    let volumes: Vec<&Value> = def["volumes"].as_array().unwrap().iter().collect();
    assert_eq!(
        volumes,
        [
            &json!({"name": "tmp"}),
            &json!({"name": "data"}),
            &json!({"name": "defender"}),
            &json!({"name": "defender-state"})
        ]
    );
    // The carrier, which runs as root, makes the state directory of the container that runs as
    // uid 1000 that user's; nothing to warn about.
    assert_eq!(err.lines().count(), 0, "{err}");
    let carrier = container(&def, "defender");
    assert_eq!(
        carrier["entryPoint"],
        json!([
            "/defender",
            "install",
            "/opt/defender",
            "--state-dir",
            "/var/lib/defender/api=1000:1000"
        ])
    );
    assert!(
        carrier["mountPoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["sourceVolume"] == "defender-state")
    );
    // The carrier logs like the first container with a log configuration.
    assert_eq!(
        container(&def, "defender")["logConfiguration"],
        container(&before, "api")["logConfiguration"]
    );
}

#[test]
fn sidecars_left_alone_keep_their_definition() {
    let (input, options, output) = &option_goldens()[1];
    let (def, err) = embed_golden(input, options, output);
    assert!(err.is_empty(), "{err}");
    let before = json(&read(SIDECARS));
    for name in ["log_router", "xray-daemon", "envoy"] {
        assert_eq!(container(&def, name), container(&before, name), "{name}");
    }
    assert_protected(
        &def,
        "app",
        "111122223333.dkr.ecr.us-west-2.amazonaws.com/checkout:7.2.0",
        &["/checkout", "serve"],
    );
    // The app logs through FireLens; the carrier cannot (the router may wait for it), so it
    // logs like the router.
    assert_eq!(
        container(&def, "defender")["logConfiguration"],
        container(&before, "log_router")["logConfiguration"]
    );
    assert_eq!(def["proxyConfiguration"], before["proxyConfiguration"]);
    // --only the app is the same selection.
    let (only, _) = embed_ok(
        &[
            "--task-definition",
            SIDECARS,
            "--defender-image",
            "defender:0.1.0",
            "--only",
            "app",
        ],
        None,
    );
    assert_eq!(only, read(output));
}

#[test]
fn the_console_ca_travels_as_pem_text_or_as_a_secret() {
    let goldens = option_goldens();
    let (input, options, output) = &goldens[2];
    let (def, _) = embed_golden(input, options, output);
    let hello = container(&def, "hello");
    assert_eq!(
        env(hello, "environment", "DEFENDER_CONSOLE_CA"),
        [&json!({"name": "DEFENDER_CONSOLE_CA", "value": read(CA)})]
    );
    assert!(env(hello, "secrets", "DEFENDER_CONSOLE_CA").is_empty());
    assert_eq!(
        env(hello, "environment", "DEFENDER_WAIT_FOR_CONSOLE"),
        [&json!({"name": "DEFENDER_WAIT_FOR_CONSOLE", "value": "30"})]
    );

    let (input, options, output) = &goldens[3];
    let (def, _) = embed_golden(input, options, output);
    let hello = container(&def, "hello");
    assert_eq!(
        env(hello, "secrets", "DEFENDER_CONSOLE_CA"),
        [&json!({"name": "DEFENDER_CONSOLE_CA", "valueFrom": CA_ARN})]
    );
    assert!(env(hello, "environment", "DEFENDER_CONSOLE_CA").is_empty());
    assert_eq!(
        env(hello, "environment", "DEFENDER_WAIT_FOR_CONSOLE"),
        [&json!({"name": "DEFENDER_WAIT_FOR_CONSOLE", "value": "2.5"})]
    );

    // Moving the PEM text into a secret leaves no copy of it in clear.
    let (moved, _) = embed_ok(
        &[
            "--task-definition",
            "tests/golden/fargate/describe-task-definition.console-ca.protected.json",
            "--console",
            CONSOLE,
            "--console-ca-secret",
            CA_ARN,
            "--wait-for-console",
            "2.5",
        ],
        None,
    );
    assert_eq!(moved, read(output));
}

#[test]
fn the_new_options_embed_once() {
    for (_, options, output) in option_goldens() {
        let mut args = vec!["--task-definition", output];
        args.extend(&options);
        let (again, _) = embed_ok(&args, None);
        assert_eq!(again, read(output), "{output}");
    }
}

/// Every refusal of the new options, and of names that collide: the command, its exit status
/// and its message, in one golden file.
#[test]
fn refusals_name_what_collides_or_matches_nothing() {
    let app = r#"{"name": "app", "image": "app:1", "entryPoint": ["/app"]}"#;
    let task = |containers: &str, volumes: &str| {
        format!(r#"{{"containerDefinitions": [{containers}], "volumes": [{volumes}]}}"#)
    };
    let worker = r#"{"name": "worker", "image": "worker:1", "entryPoint": ["/w"]}"#;
    let two = task(&format!("{app}, {worker}"), "");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "a volume named like the carrier's",
            task(app, r#"{"name": "defender"}"#),
            vec![],
        ),
        (
            "a volume named like the state volume",
            task(
                app,
                r#"{"name": "defender-state", "host": {"sourcePath": "/srv"}}"#,
            ),
            vec![],
        ),
        (
            "a container named like the carrier",
            task(
                &format!(
                    r#"{app}, {{"name": "defender", "image": "mine:1", "entryPoint": ["/mine"]}}"#
                ),
                "",
            ),
            vec![],
        ),
        (
            "another volume where the binary goes",
            task(
                r#"{"name": "app", "image": "app:1", "entryPoint": ["/app"], "mountPoints": [{"sourceVolume": "tools", "containerPath": "/opt/defender"}]}"#,
                r#"{"name": "tools"}"#,
            ),
            vec![],
        ),
        (
            "another volume where the state goes",
            task(
                r#"{"name": "app", "image": "app:1", "entryPoint": ["/app"], "readonlyRootFilesystem": true, "mountPoints": [{"sourceVolume": "var", "containerPath": "/var/lib/defender"}]}"#,
                r#"{"name": "var"}"#,
            ),
            vec![],
        ),
        (
            "--exclude of no container",
            two.clone(),
            vec!["--exclude", "worker", "--exclude", "log-router"],
        ),
        ("--only of no container", two.clone(), vec!["--only", "App"]),
        (
            "--exclude of every container",
            two.clone(),
            vec!["--exclude", "worker", "--exclude", "app"],
        ),
        (
            "--exclude and --only",
            two.clone(),
            vec!["--exclude", "worker", "--only", "app"],
        ),
        (
            "--image-config of no container",
            two.clone(),
            vec![
                "--image-config",
                "nginx=tests/golden/fargate/shop-worker.inspect.json",
            ],
        ),
        (
            "--image-config of an excluded container only",
            two.clone(),
            vec![
                "--exclude",
                "worker",
                "--image-config",
                "worker:1=tests/golden/fargate/shop-worker.inspect.json",
            ],
        ),
        (
            "--console-ca without --console",
            two.clone(),
            vec!["--console-ca", CA],
        ),
        (
            "--console-ca and --console-ca-secret",
            two.clone(),
            vec![
                "--console",
                CONSOLE,
                "--token",
                "t",
                "--console-ca",
                CA,
                "--console-ca-secret",
                CA_ARN,
            ],
        ),
        (
            "--console-ca of no file",
            two.clone(),
            vec![
                "--console",
                CONSOLE,
                "--token",
                "t",
                "--console-ca",
                "/no/such.pem",
            ],
        ),
        (
            "--console-ca of no PEM",
            two.clone(),
            vec![
                "--console",
                CONSOLE,
                "--token",
                "t",
                "--console-ca",
                "tests/golden/fargate/hardened.json",
            ],
        ),
        (
            "--wait-for-console without --console",
            two.clone(),
            vec!["--wait-for-console", "30"],
        ),
        (
            "--wait-for-console 0",
            two.clone(),
            vec![
                "--console",
                CONSOLE,
                "--token",
                "t",
                "--wait-for-console",
                "0",
            ],
        ),
        (
            "--wait-for-console of no number",
            two.clone(),
            vec![
                "--console",
                CONSOLE,
                "--token",
                "t",
                "--wait-for-console",
                "soon",
            ],
        ),
    ];
    let mut report = String::new();
    for (what, input, opts) in cases {
        let mut args = vec!["fargate", "embed"];
        args.extend(&opts);
        let out = defender_cli(&args, Some(&input));
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{what}");
        report.push_str(&format!(
            "## {what}\n$ defender {} <<< '{input}'\n{}\n",
            args.join(" "),
            stderr(&out).trim_end()
        ));
    }
    golden("tests/golden/fargate/refusals.txt", &report);
}
