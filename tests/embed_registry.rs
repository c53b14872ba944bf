//! `defender fargate embed --from-registry` against a local registry (tests/common/registry.py)
//! serving an image built FROM scratch by the local engine and converted from `docker save` to
//! the registry layout: a single-platform Docker manifest, an OCI index and a Docker manifest
//! list, with no auth, a Bearer token challenge and Basic auth; the output is the one
//! `--image-config` gives for the `docker image inspect` of the same image; refusals say why.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::docker::{DOCKER_GUARD, Docker};
use common::{defender, finish_within, golden, repo_path, require, spawn_piped, stderr, stdout};

const USER: &str = "puller";
const PASSWORD: &str = "s3cret";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The image's configuration: what `--from-registry` must find.
const DOCKERFILE: &str = r#"FROM scratch
COPY hello /hello
USER 1000
WORKDIR /srv
ENTRYPOINT ["/app", "--serve"]
CMD ["--port", "8080"]
"#;

/// A test's scratch directory: the registry layout under `registry/`, the `docker image inspect`
/// output of the image, and an empty Docker config directory (so that the tester's own
/// credentials are never read).
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    /// Builds the image, saves it and writes the repositories `app` (a Docker v2 manifest),
    /// `multi` (an OCI index: arm64 first, with another configuration, then amd64), `list` (a
    /// Docker manifest list) and `bad` (a config blob that does not match its digest).
    fn new() -> Layout {
        let layout = Layout {
            dir: tempfile::tempdir().unwrap(),
        };
        let docker = Docker::new();
        let context = layout.path("context");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("hello"), "hello\n").unwrap();
        std::fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
        let image = docker.image("registry");
        // No cache: a cached step is another test's image, which that test removes when it ends,
        // perhaps in the middle of this build.
        let context = context.to_str().unwrap();
        docker.ok(&["build", "-q", "--no-cache", "-t", &image, context]);
        std::fs::write(
            layout.path("inspect.json"),
            docker.ok(&["image", "inspect", &image]),
        )
        .unwrap();
        let saved = layout.path("saved");
        std::fs::create_dir_all(&saved).unwrap();
        let tar = saved.join("image.tar");
        docker.ok(&["save", "-o", tar.to_str().unwrap(), &image]);
        run(Command::new(require("tar"))
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&saved));

        // docker save: manifest.json names the config file and the layer tars.
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(saved.join("manifest.json")).unwrap())
                .unwrap();
        let config = std::fs::read(saved.join(manifest[0]["Config"].as_str().unwrap())).unwrap();
        let layers: Vec<Vec<u8>> = manifest[0]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| std::fs::read(saved.join(l.as_str().unwrap())).unwrap())
            .collect();
        let mut other: Value = serde_json::from_slice(&config).unwrap();
        other["config"]["Entrypoint"] = json!(["/wrong-platform"]);
        other["architecture"] = json!("arm64");
        let other = serde_json::to_vec(&other).unwrap();

        let image_manifest = |repo: &str, media_type: &str, config: &[u8]| -> Vec<u8> {
            let (config_type, layer_type) = if media_type == OCI_MANIFEST {
                (
                    "application/vnd.oci.image.config.v1+json",
                    "application/vnd.oci.image.layer.v1.tar",
                )
            } else {
                (
                    "application/vnd.docker.container.image.v1+json",
                    "application/vnd.docker.image.rootfs.diff.tar",
                )
            };
            let layers: Vec<Value> = layers
                .iter()
                .map(|l| json!({"mediaType": layer_type, "size": l.len(), "digest": layout.blob(repo, l)}))
                .collect();
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": {"mediaType": config_type, "size": config.len(), "digest": layout.blob(repo, config)},
                "layers": layers,
            }))
            .unwrap()
        };
        let entry = |manifest: &[u8], media_type: &str, architecture: &str| {
            json!({"mediaType": media_type, "size": manifest.len(), "digest": digest(manifest),
                   "platform": {"architecture": architecture, "os": "linux"}})
        };

        let single = image_manifest("app", DOCKER_MANIFEST, &config);
        layout.manifest("app", "v1", &single);

        let amd64 = image_manifest("multi", OCI_MANIFEST, &config);
        let arm64 = image_manifest("multi", OCI_MANIFEST, &other);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entry(&arm64, OCI_MANIFEST, "arm64"), entry(&amd64, OCI_MANIFEST, "amd64")],
        }))
        .unwrap();
        layout.manifest("multi", &digest(&amd64), &amd64);
        layout.manifest("multi", &digest(&arm64), &arm64);
        layout.manifest("multi", "v1", &index);

        let amd64 = image_manifest("list", DOCKER_MANIFEST, &config);
        let list = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [entry(&amd64, DOCKER_MANIFEST, "amd64")],
        }))
        .unwrap();
        layout.manifest("list", &digest(&amd64), &amd64);
        layout.manifest("list", "v1", &list);

        // The config blob the manifest names, replaced by the other platform's configuration.
        let bad = image_manifest("bad", DOCKER_MANIFEST, &config);
        layout.manifest("bad", "v1", &bad);
        std::fs::write(
            layout.path(&format!("registry/bad/blobs/{}", digest(&config))),
            &other,
        )
        .unwrap();

        std::fs::create_dir_all(layout.path("docker-config")).unwrap();
        layout
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn put(&self, repo: &str, kind: &str, name: &str, bytes: &[u8]) {
        let dir = self.path(&format!("registry/{repo}/{kind}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    /// Stores a blob of `repo`; its digest.
    fn blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = digest(bytes);
        self.put(repo, "blobs", &d, bytes);
        d
    }

    fn manifest(&self, repo: &str, reference: &str, bytes: &[u8]) {
        self.put(repo, "manifests", reference, bytes);
    }

    /// Writes the Docker config file with credentials for `registry`.
    fn docker_login(&self, registry: &str, user: &str, password: &str) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        std::fs::write(
            self.path("docker-config/config.json"),
            json!({"auths": {registry: {"auth": auth}}}).to_string(),
        )
        .unwrap();
    }

    /// A task definition running `image` twice without an entryPoint: once as the image says,
    /// once with a command of its own.
    fn task_definition(&self, image: &str) -> PathBuf {
        let path = self.path("task.json");
        let def = json!({
            "family": "shop",
            "containerDefinitions": [
                {"name": "web", "image": image, "essential": true},
                {"name": "worker", "image": image, "command": ["--worker"]},
            ],
        });
        std::fs::write(&path, serde_json::to_string_pretty(&def).unwrap()).unwrap();
        path
    }

    /// `defender fargate embed --task-definition TASK ARGS` with this layout's Docker config.
    fn embed(&self, task: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(defender());
        cmd.args(["fargate", "embed", "--task-definition"])
            .arg(task)
            .args(args)
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env("HOME", self.path("home"));
        finish_within(spawn_piped(&mut cmd), DOCKER_GUARD)
    }
}

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
}

/// The registry server, stopped when dropped; its request log is its stderr.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    /// Serves `layout`'s registry with `auth`: `none`, `basic` or `token`.
    fn start(layout: &Layout, auth: &str) -> Registry {
        Registry::start_with_public(layout, auth, "")
    }

    /// Serves with `auth`, the repositories of `public` (comma-separated) readable with an
    /// anonymous token.
    fn start_with_public(layout: &Layout, auth: &str, public: &str) -> Registry {
        let log = layout.path(&format!("registry-{auth}.log"));
        let mut child = Command::new(require("python3"))
            .arg(repo_path("tests/common/registry.py"))
            .arg(layout.path("registry"))
            .args([auth, USER, PASSWORD, public])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // The port is printed once the socket listens: no request can come too early.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("registry.py did not start: {line:?}"));
        Registry { child, port, log }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn image(&self, repo: &str) -> String {
        format!("{}/{repo}:v1", self.host())
    }

    /// The requests served so far, `GET PATH AUTH-SCHEME` each.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    stdout(out)
}

/// What `--image-config IMAGE=inspect.json` gives for the task definition of `image`.
fn with_image_config(layout: &Layout, image: &str) -> String {
    let task = layout.task_definition(image);
    let inspect = format!("{image}={}", layout.path("inspect.json").display());
    ok(&layout.embed(&task, &["--image-config", &inspect]))
}

#[test]
fn a_single_platform_image_embeds_as_its_image_config_does() {
    let layout = Layout::new();
    let registry = Registry::start(&layout, "none");
    let image = registry.image("app");
    let task = layout.task_definition(&image);
    let got = ok(&layout.embed(&task, &["--from-registry"]));
    assert_eq!(got, with_image_config(&layout, &image));
    golden(
        "tests/golden/fargate/from-registry.protected.json",
        &got.replace(&registry.host(), "127.0.0.1:PORT"),
    );
    let requests = registry.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /v2/app/blobs/sha256:")),
        "{requests:?}"
    );
}

#[test]
fn manifest_lists_lead_to_the_linux_amd64_image_through_a_token_challenge() {
    let layout = Layout::new();
    let registry = Registry::start(&layout, "token");
    layout.docker_login(&registry.host(), USER, PASSWORD);
    for repo in ["multi", "list"] {
        let image = registry.image(repo);
        let task = layout.task_definition(&image);
        let got = ok(&layout.embed(&task, &["--from-registry"]));
        assert_eq!(got, with_image_config(&layout, &image), "{repo}");
    }
    let requests = registry.requests();
    // Challenged, an anonymous token refused, a token from the realm with the credentials, then
    // the platform manifest by digest with the token.
    for want in [
        "GET /v2/multi/manifests/v1 -",
        "GET /token -",
        "GET /token Basic",
        "GET /v2/multi/manifests/v1 Bearer",
        "GET /v2/multi/manifests/sha256:",
        "GET /v2/list/manifests/sha256:",
    ] {
        assert!(
            requests.iter().any(|r| r.starts_with(want)),
            "{want}: {requests:?}"
        );
    }
}

#[test]
fn credentials_go_only_to_a_registry_that_refuses_anonymous_reading() {
    let layout = Layout::new();
    let registry = Registry::start_with_public(&layout, "token", "app");
    let image = registry.image("app");
    let task = layout.task_definition(&image);
    // A token meant for another registry (ECR's) would be refused here: it is never sent.
    let got = ok(&layout.embed(&task, &["--from-registry", "--registry-token", "for-ecr"]));
    assert_eq!(got, with_image_config(&layout, &image));
    let requests = registry.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("GET /token -")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("Basic")),
        "{requests:?}"
    );
}

#[test]
fn a_registry_token_is_the_password_of_user_aws_by_default() {
    let layout = Layout::new();
    let registry = Registry::start(&layout, "basic");
    let image = registry.image("app");
    let task = layout.task_definition(&image);
    let got = ok(&layout.embed(
        &task,
        &[
            "--from-registry",
            "--registry-token",
            PASSWORD,
            "--registry-user",
            USER,
        ],
    ));
    assert_eq!(got, with_image_config(&layout, &image));
    // The default user is ECR's; this registry wants another.
    let out = layout.embed(&task, &["--from-registry", "--registry-token", PASSWORD]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused access (401): check the credentials"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn refusals_say_why() {
    let layout = Layout::new();
    let token = Registry::start(&layout, "token");
    let open = Registry::start(&layout, "none");
    let unknown = open.image("nothing");
    let cases = [
        (
            token.image("app"),
            "refused access (401): no credentials for it in the Docker config file, nor --registry-token",
        ),
        (open.image("bad"), "content does not match its digest"),
        (unknown.clone(), "no such image in the registry"),
    ];
    for (image, want) in cases {
        let out = layout.embed(&layout.task_definition(&image), &["--from-registry"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{image}: {err}");
        assert!(err.contains(want), "{image}: {err}");
        assert!(err.contains(&format!("--from-registry: {image}")), "{err}");
        assert!(stdout(&out).is_empty(), "{image}: {}", stdout(&out));
    }
    layout.docker_login(&token.host(), USER, "wrong");
    let out = layout.embed(
        &layout.task_definition(&token.image("app")),
        &["--from-registry"],
    );
    assert!(
        stderr(&out).contains("refused access (401): check the credentials"),
        "{}",
        stderr(&out)
    );
}
