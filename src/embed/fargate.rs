//! `defender fargate embed`: rewrites an ECS task definition so that every container starts under
//! `defender run`, the binary coming from a carrier container through a task volume.
//!
//! What is added (and nothing else is touched):
//! - a task volume `defender`, and a carrier container `defender` that copies its binary into it
//!   (`/defender install /opt/defender`) and exits: `essential: false`, so its exit ends nothing;
//!   it logs like the first container with a log configuration, so a failed install is seen;
//! - in every protected container (all but the carrier, or those `--exclude`/`--only` select):
//!   the volume mounted read-only at `/opt/defender`, a `dependsOn` on the carrier with `SUCCESS`
//!   (the binary is there before the container starts), `SYS_PTRACE` (the only capability Fargate
//!   lets a task add; the defender needs it to read the memory of processes of other uids and to
//!   verify launches), `DEFENDER_CONTAINER`/`DEFENDER_IMAGE`, the console settings, and an
//!   `entryPoint` that is the defender followed by the original one;
//! - in a container with a read-only root file system: the task volume `defender-state` at
//!   `/var/lib/defender`, and `DEFENDER_STATE_DIR` a directory of its own in it (the defender
//!   keeps its cached policy and audit spool there, and the volume is shared).
//!
//! Names the embedding needs that the definition already uses otherwise (a container `defender`
//! that is no carrier, a volume `defender` or `defender-state` with no carrier, another volume at
//! `/opt/defender` or `/var/lib/defender`) are refused, naming the collision: picking a free name
//! instead would make a protected definition differ from run to run and hide the surprise.
//!
//! Every step first looks whether it was already done, so embedding a protected definition again
//! changes nothing. The `describe-task-definition` wrapper is unwrapped and the fields that
//! `register-task-definition` refuses are dropped, so the output registers as it is.

use serde_json::{Map, Value, json};

use super::image_config::ImageConfigs;
use super::{
    BINARY_DIR, CARRIER_BINARY, Launch, is_defender, normalize_image, protected_entrypoint,
};
use crate::supervisor::caps::Capability;

/// The carrier container's name, and the task volume's.
pub const CARRIER: &str = "defender";
/// The task volume that gives hardened containers a writable state directory.
pub const STATE_VOLUME: &str = "defender-state";
/// Where that volume is mounted: the defender's default state directory, so that an image made
/// for the defender (that directory owned by its user) keeps working.
pub const STATE_MOUNT: &str = "/var/lib/defender";
/// The carrier image used when none is given and the definition has no carrier yet.
pub const DEFAULT_IMAGE: &str = concat!("defender:", env!("CARGO_PKG_VERSION"));

/// Fields `describe-task-definition` adds that `register-task-definition` refuses.
const READ_ONLY_FIELDS: [&str; 8] = [
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
];

/// How the defender token reaches the containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// In clear, as the `DEFENDER_TOKEN` environment variable.
    Plain(String),
    /// As an ECS `secrets` entry: ECS reads the secret (Secrets Manager or SSM) at start.
    Secret(String),
}

/// How the console's CA certificates reach the containers (`DEFENDER_CONSOLE_CA`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleCa {
    /// The PEM text itself, as an environment variable.
    Pem(String),
    /// As an ECS `secrets` entry holding the PEM text.
    Secret(String),
}

/// Which containers are protected; the others keep their definition untouched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    #[default]
    All,
    Exclude(Vec<String>),
    Only(Vec<String>),
}

impl Selection {
    /// `--exclude` and `--only` are exclusive (the command line says so).
    pub fn new(exclude: Vec<String>, only: Vec<String>) -> Selection {
        match (exclude.is_empty(), only.is_empty()) {
            (false, _) => Selection::Exclude(exclude),
            (true, false) => Selection::Only(only),
            (true, true) => Selection::All,
        }
    }

    /// Whether the container `name` is protected (not left alone).
    pub fn protects(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Exclude(names) => !names.iter().any(|n| n == name),
            Selection::Only(names) => names.iter().any(|n| n == name),
        }
    }

    /// The first name given that is none of `containers`, with its flag.
    fn unknown<'a>(&'a self, containers: &[&str]) -> Option<(&'static str, &'a str)> {
        let (flag, names) = match self {
            Selection::All => return None,
            Selection::Exclude(names) => ("--exclude", names),
            Selection::Only(names) => ("--only", names),
        };
        names
            .iter()
            .find(|n| !containers.contains(&n.as_str()))
            .map(|n| (flag, n.as_str()))
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub console: Option<String>,
    pub token: Option<Token>,
    pub console_ca: Option<ConsoleCa>,
    /// `DEFENDER_WAIT_FOR_CONSOLE`, in seconds.
    pub wait_for_console: Option<f64>,
    pub selection: Selection,
    /// The carrier image; `None` keeps an existing carrier's image, or uses [`DEFAULT_IMAGE`].
    pub defender_image: Option<String>,
    pub images: ImageConfigs,
}

/// The protected task definition, and what the user should know about it.
#[derive(Debug)]
pub struct Embedded {
    pub definition: Value,
    pub warnings: Vec<String>,
}

impl Embedded {
    /// The definition as `register-task-definition --cli-input-json` takes it.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.definition)
            .expect("a serde_json::Value always serializes");
        text.push('\n');
        text
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FargateError {
    #[error("the task definition is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the task definition: {0}")]
    Shape(String),
    #[error("containerDefinitions[{index}]: {what}")]
    Container { index: usize, what: String },
    #[error(
        "container {container:?} (image {image}) {reason}: pass --from-registry to read it from \
         the registry, or --image-config {image}=FILE, FILE being the output of `docker image \
         inspect {image}` (or the image's OCI config), or write its entryPoint and command into \
         the task definition"
    )]
    NeedsImageConfig {
        container: String,
        image: String,
        reason: &'static str,
    },
    #[error(
        "container {container:?}: its image {image} has neither ENTRYPOINT nor CMD (--image-config), so there is nothing to start"
    )]
    NothingToRun { container: String, image: String },
    #[error(
        "container {CARRIER:?} exists and is not the defender's carrier (it does not run `{CARRIER_BINARY} install`): the carrier needs that name; rename the container"
    )]
    CarrierTaken,
    #[error(
        "the task definition has a volume {name:?} but no defender carrier container: the defender needs that name for {needed}; rename the volume and its mountPoints"
    )]
    VolumeTaken {
        name: &'static str,
        needed: &'static str,
    },
    #[error(
        "container {container:?} mounts the volume {volume:?} at {path}, where the defender needs its volume {ours:?}; move that mount"
    )]
    MountTaken {
        container: String,
        volume: String,
        path: &'static str,
        ours: &'static str,
    },
    #[error("{flag} {name:?}: the task definition has no container so named (it has {containers})")]
    NoSuchContainer {
        flag: &'static str,
        name: String,
        containers: String,
    },
    #[error(
        "--image-config {image}: no protected container runs this image (they run {images}); check the reference"
    )]
    UnusedImageConfig { image: String, images: String },
    #[error("--exclude leaves no container to protect")]
    NothingSelected,

    #[error("--console {0:?}: expected an http:// or https:// URL")]
    Console(String),
    /// The defender refuses to start (125) with a console and no token, or a token and no
    /// console: better said now than by every task.
    #[error(
        "container {container:?} would run the defender with {has} but no {lacks}, and the defender refuses to start so; pass {pass}"
    )]
    HalfConsole {
        container: String,
        has: &'static str,
        lacks: &'static str,
        pass: &'static str,
    },
    #[error("runtimePlatform.cpuArchitecture is {0}: the defender is built for x86_64 only")]
    Architecture(String),
}

/// Protects every container of the task definition in `text`.
pub fn embed(text: &str, opts: &Options) -> Result<Embedded, FargateError> {
    if let Some(url) = &opts.console
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(FargateError::Console(url.clone()));
    }
    let mut def = unwrap(serde_json::from_str(text)?)?;
    for field in READ_ONLY_FIELDS {
        def.shift_remove(field);
    }
    if let Some(arch) = def
        .get("runtimePlatform")
        .and_then(|p| p.get("cpuArchitecture"))
        .and_then(Value::as_str)
        .filter(|a| !a.eq_ignore_ascii_case("X86_64"))
    {
        return Err(FargateError::Architecture(arch.into()));
    }
    // Volumes named like ours are ours only beside a container named like our carrier (which
    // the loop below checks is one): a definition protected before.
    let named_carrier = def
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["name"] == CARRIER));
    let volume_named = |name| {
        def.get("volumes")
            .and_then(Value::as_array)
            .is_some_and(|vs| vs.iter().any(|v| v["name"] == name))
    };
    for (name, needed) in [
        (CARRIER, "the volume the carrier fills with its binary"),
        (STATE_VOLUME, "the state directory of hardened containers"),
    ] {
        if !named_carrier && volume_named(name) {
            return Err(FargateError::VolumeTaken { name, needed });
        }
    }

    let containers = def
        .get_mut("containerDefinitions")
        .and_then(Value::as_array_mut)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| FargateError::Shape("containerDefinitions is missing or empty".into()))?;
    let names = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect::<Vec<_>>();
    if let Some((flag, name)) = opts.selection.unknown(&names) {
        return Err(FargateError::NoSuchContainer {
            flag,
            name: name.into(),
            containers: names.join(", "),
        });
    }
    let log_configuration = carrier_log_configuration(containers);
    let mut warnings = Vec::new();
    let mut carrier = None;
    let mut protected_images = Vec::new();
    let mut state_dirs = Vec::new();
    for (index, c) in containers.iter_mut().enumerate() {
        let c = c.as_object_mut().ok_or_else(|| FargateError::Container {
            index,
            what: "not an object".into(),
        })?;
        let name = c.get("name").and_then(Value::as_str);
        if name == Some(CARRIER) {
            if !is_carrier(c) {
                return Err(FargateError::CarrierTaken);
            }
            carrier = Some(index);
        } else if name.is_none_or(|name| opts.selection.protects(name)) {
            state_dirs.extend(protect(index, c, opts, &mut warnings)?);
            protected_images.extend(c["image"].as_str().map(normalize_image));
        }
    }
    // A carrier for nobody is a mistake in the flags, not a protected task.
    if protected_images.is_empty() {
        return Err(FargateError::NothingSelected);
    }
    if let Some(image) = opts
        .images
        .images()
        .find(|i| !protected_images.iter().any(|p| p == i))
    {
        let mut images: Vec<&str> = Vec::new();
        for image in &protected_images {
            if !images.contains(&image.as_str()) {
                images.push(image);
            }
        }
        return Err(FargateError::UnusedImageConfig {
            image: image.into(),
            images: images.join(", "),
        });
    }
    let uses_state = containers.iter().any(|c| {
        c["mountPoints"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["sourceVolume"] == STATE_VOLUME))
    });
    let carrier = match carrier {
        Some(index) => {
            if let Some(image) = &opts.defender_image {
                containers[index]["image"] = json!(image);
            }
            index
        }
        None => {
            let image = opts.defender_image.as_deref().unwrap_or_else(|| {
                warnings.push(format!(
                    "the carrier container runs the image {DEFAULT_IMAGE}: push the carrier image \
                     (Dockerfile.example, stage `defender`) under that name, or pass --defender-image"
                ));
                DEFAULT_IMAGE
            });
            containers.push(carrier_container(image));
            containers.len() - 1
        }
    };
    let carrier = containers[carrier]
        .as_object_mut()
        .expect("the carrier was checked to be an object");
    // What the carrier runs, made anew each time (an embedding again gives the same task).
    let mut install = vec![json!(CARRIER_BINARY), json!("install"), json!(BINARY_DIR)];
    for arg in &state_dirs {
        install.extend([json!("--state-dir"), json!(arg)]);
    }
    carrier.insert("entryPoint".into(), Value::Array(install));
    if !state_dirs.is_empty() {
        let mounts = list(carrier, "mountPoints").map_err(FargateError::Shape)?;
        mount(CARRIER, mounts, STATE_VOLUME, STATE_MOUNT, false)?;
    }
    if carrier.get("logConfiguration").is_none_or(Value::is_null) {
        match log_configuration {
            LogConfiguration::Copy(config) => {
                carrier.insert("logConfiguration".into(), config);
            }
            LogConfiguration::OnlyFirelens => warnings.push(
                "the carrier container gets no logConfiguration: every container logs through \
                 FireLens, and a carrier logging there would wait for a log router that waits \
                 for it; give the log router one (awslogs) to see install failures"
                    .into(),
            ),
            LogConfiguration::None => {}
        }
    }
    let volumes = list(&mut def, "volumes").map_err(FargateError::Shape)?;
    if !volumes.iter().any(|v| v["name"] == CARRIER) {
        volumes.push(json!({ "name": CARRIER }));
    }
    if uses_state && !volumes.iter().any(|v| v["name"] == STATE_VOLUME) {
        volumes.push(json!({ "name": STATE_VOLUME }));
    }

    match &opts.token {
        Some(Token::Plain(_)) => warnings.push(
            "--token: the token is written into the task definition in clear text; \
             --token-secret ARN keeps it in Secrets Manager or SSM Parameter Store"
                .into(),
        ),
        Some(Token::Secret(arn)) if def.get("executionRoleArn").is_none() => {
            warnings.push(format!(
                "--token-secret: ECS reads secrets with the task execution role, and this task \
                 definition has no executionRoleArn; add one that may read {arn}"
            ))
        }
        _ => {}
    }
    Ok(Embedded {
        definition: Value::Object(def),
        warnings,
    })
}

/// The definition itself: `describe-task-definition` wraps it as `{"taskDefinition": {...}}`,
/// with the task's tags beside it, which `register-task-definition` takes inside.
fn unwrap(root: Value) -> Result<Map<String, Value>, FargateError> {
    let Value::Object(mut root) = root else {
        return Err(FargateError::Shape("not a JSON object".into()));
    };
    let Some(inner) = root.shift_remove("taskDefinition") else {
        return Ok(root);
    };
    let Value::Object(mut def) = inner else {
        return Err(FargateError::Shape(
            "taskDefinition is not an object".into(),
        ));
    };
    if let Some(tags) = root.shift_remove("tags")
        && tags.as_array().is_some_and(|t| !t.is_empty())
        && !def.contains_key("tags")
    {
        def.insert("tags".into(), tags);
    }
    Ok(def)
}

/// The log configuration the carrier gets.
#[derive(Debug, PartialEq)]
enum LogConfiguration {
    Copy(Value),
    /// Every container that has one logs through FireLens: the log router may itself depend on
    /// the carrier (when protected), so a carrier logging there would never start.
    OnlyFirelens,
    None,
}

/// The first container's log configuration, FireLens ones aside (see [`LogConfiguration`]).
fn carrier_log_configuration(containers: &[Value]) -> LogConfiguration {
    let configs: Vec<&Value> = containers
        .iter()
        .filter(|c| c["name"] != CARRIER)
        .map(|c| &c["logConfiguration"])
        .filter(|l| l.is_object())
        .collect();
    match configs.iter().find(|l| l["logDriver"] != "awsfirelens") {
        Some(config) => LogConfiguration::Copy((*config).clone()),
        None if configs.is_empty() => LogConfiguration::None,
        None => LogConfiguration::OnlyFirelens,
    }
}

/// Whether an ECS `user` (`user`, `user:group`, `uid`, `uid:gid`) is root.
fn runs_as_root(user: &str) -> bool {
    matches!(
        user.split(':').next().map(str::trim),
        Some("" | "0" | "root")
    )
}

/// The uid and gid of a task definition's `user` given in numbers (`UID` or `UID:GID`; a lone
/// uid's group is the same number, as Docker takes it), or `None` for names. Pure.
fn numeric_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    Some((uid.trim().parse().ok()?, gid.trim().parse().ok()?))
}

/// Whether `c`, named like the carrier, is one: it runs `…/defender install DIR`.
fn is_carrier(c: &Map<String, Value>) -> bool {
    let argv = strings(c, "entryPoint").ok().flatten().unwrap_or_default();
    matches!(argv.as_slice(), [program, install, ..] if is_defender(program) && install == "install")
}

fn carrier_container(image: &str) -> Value {
    json!({
        "name": CARRIER,
        "image": image,
        "essential": false,
        "entryPoint": [CARRIER_BINARY, "install", BINARY_DIR],
        "mountPoints": [
            { "sourceVolume": CARRIER, "containerPath": BINARY_DIR, "readOnly": false }
        ]
    })
}

/// The capabilities a container asks for itself (`linuxParameters.capabilities.add`) that the
/// defender takes from its command unless kept: one warning each, naming what to set if the
/// workload really needs it (keeping it reopens what it guards, SECURITY.md).
fn removed_yet_asked(container: &str, asked: &[String], kept: &[Capability]) -> Vec<String> {
    asked
        .iter()
        .filter_map(|name| Capability::parse(name).ok().map(|cap| (name, cap)))
        .filter(|(_, cap)| cap.is_removed_by_default() && !kept.contains(cap))
        .map(|(name, cap)| {
            format!(
                "container {container:?} adds {name} itself: the defender removes {cap} from the \
                 command, since it would let the command subvert its supervisor; if the workload \
                 needs it, add {} to DEFENDER_KEEP_CAPABILITIES in its environment",
                name.trim().to_ascii_uppercase().trim_start_matches("CAP_")
            )
        })
        .collect()
}

/// What the container's environment keeps on purpose (`DEFENDER_KEEP_CAPABILITIES`).
fn kept_capabilities(c: &Map<String, Value>) -> Vec<Capability> {
    c.get("environment")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e["name"] == "DEFENDER_KEEP_CAPABILITIES")
        .filter_map(|e| e["value"].as_str())
        .flat_map(|v| v.split(','))
        .filter_map(|name| Capability::parse(name).ok())
        .collect()
}

/// Makes container `c` start under the defender, with everything the defender needs. Returns the
/// `--state-dir DIR=UID:GID` argument of the carrier when the container runs as another user than
/// root and needs a state directory the carrier must make its own.
fn protect(
    index: usize,
    c: &mut Map<String, Value>,
    opts: &Options,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, FargateError> {
    let field = |c: &Map<String, Value>, key: &str| -> Result<String, FargateError> {
        c.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| FargateError::Container {
                index,
                what: format!("{key} is missing or not a string"),
            })
    };
    let name = field(c, "name")?;
    let image = field(c, "image")?;
    let shape = |what: String| FargateError::Container {
        index,
        what: format!("{name:?}: {what}"),
    };
    // A container protected before got SYS_PTRACE from us, for the supervisor.
    let protected_before = strings(c, "entryPoint")
        .ok()
        .flatten()
        .and_then(|argv| argv.first().cloned())
        .is_some_and(|program| is_defender(&program));
    let entry = entry_point(c).map_err(&shape)?;
    let command = strings(c, "command").map_err(&shape)?;
    if let Some(rewrite) = rewrite(&name, &image, entry, command, &opts.images)? {
        c.insert("entryPoint".into(), json!(rewrite.entry_point));
        if let Some(command) = rewrite.command {
            c.insert("command".into(), json!(command));
        }
    }

    let mounts = list(c, "mountPoints").map_err(&shape)?;
    mount(&name, mounts, CARRIER, BINARY_DIR, true)?;
    // The defender's state directory defaults to `/var/lib/defender`, else `$TMPDIR`: on a
    // read-only root file system neither is writable, and a non-root user can write neither
    // `/var/lib/defender` nor a volume, which Fargate makes root's (mode 0755). So both get a
    // directory of their own in the task volume; for a non-root user the carrier, which runs as
    // root, makes it that user's (`defender install --state-dir`).
    let read_only_root = c.get("readonlyRootFilesystem") == Some(&Value::Bool(true));
    let has = |c: &Map<String, Value>, key: &str, name: &str| {
        c.get(key)
            .and_then(Value::as_array)
            .is_some_and(|entries| entries.iter().any(|e| e["name"] == name))
    };
    let user = c
        .get("user")
        .and_then(Value::as_str)
        .filter(|u| !runs_as_root(u))
        .map(str::to_owned);
    let owner = user.as_deref().and_then(numeric_user);
    // A state directory set by hand (or by an embedding before) is kept. One directory per
    // container: the defender locks its state directory, and the volume is the task's.
    let state_dir = ((read_only_root || owner.is_some())
        && !has(c, "environment", "DEFENDER_STATE_DIR"))
    .then(|| format!("{STATE_MOUNT}/{name}"));
    if let Some(dir) = &state_dir {
        let mounts = list(c, "mountPoints").map_err(&shape)?;
        mount(&name, mounts, STATE_VOLUME, STATE_MOUNT, false)?;
        if let (Some(user), None) = (&user, owner) {
            warnings.push(format!(
                "container {name:?} runs as user {user}, a name the carrier cannot give its state \
                 directory {dir} to (it knows numbers only): its defender keeps its state in \
                 memory unless the image has {STATE_MOUNT} owned by that user; give the user as \
                 UID:GID to have the directory made its own"
            ));
        }
    }
    // An embedding before gave the directory already (an embedding again gives the same task):
    // the carrier still makes it.
    let given = c
        .get("environment")
        .and_then(Value::as_array)
        .and_then(|env| env.iter().find(|e| e["name"] == "DEFENDER_STATE_DIR"))
        .and_then(|e| e["value"].as_str())
        .filter(|dir| *dir == format!("{STATE_MOUNT}/{name}"))
        .map(str::to_owned);
    let carrier_arg = state_dir
        .clone()
        .or(given)
        .zip(owner)
        .map(|(dir, (uid, gid))| format!("{dir}={uid}:{gid}"));
    let depends = list(c, "dependsOn").map_err(&shape)?;
    if !depends.iter().any(|d| d["containerName"] == CARRIER) {
        depends.push(json!({ "containerName": CARRIER, "condition": "SUCCESS" }));
    }
    let linux = object(c, "linuxParameters").map_err(&shape)?;
    let capabilities = object(linux, "capabilities").map_err(&shape)?;
    let add = list(capabilities, "add").map_err(&shape)?;
    let asked: Vec<String> = add
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| !(protected_before && *a == "SYS_PTRACE"))
        .map(str::to_string)
        .collect();
    if !add.iter().any(|a| a == "SYS_PTRACE") {
        add.push(json!("SYS_PTRACE"));
    }
    warnings.extend(removed_yet_asked(&name, &asked, &kept_capabilities(c)));

    set_named(c, "environment", "DEFENDER_CONTAINER", "value", &name).map_err(&shape)?;
    set_named(c, "environment", "DEFENDER_IMAGE", "value", &image).map_err(&shape)?;
    if let Some(dir) = &state_dir {
        set_named(c, "environment", "DEFENDER_STATE_DIR", "value", dir).map_err(&shape)?;
    }
    if let Some(url) = &opts.console {
        set_named(c, "environment", "DEFENDER_CONSOLE", "value", url).map_err(&shape)?;
    }
    match &opts.token {
        Some(Token::Plain(token)) => {
            remove_named(c, "secrets", "DEFENDER_TOKEN");
            set_named(c, "environment", "DEFENDER_TOKEN", "value", token).map_err(&shape)?;
        }
        Some(Token::Secret(arn)) => {
            remove_named(c, "environment", "DEFENDER_TOKEN");
            set_named(c, "secrets", "DEFENDER_TOKEN", "valueFrom", arn).map_err(&shape)?;
        }
        None => {}
    }
    match &opts.console_ca {
        Some(ConsoleCa::Pem(pem)) => {
            remove_named(c, "secrets", "DEFENDER_CONSOLE_CA");
            set_named(c, "environment", "DEFENDER_CONSOLE_CA", "value", pem).map_err(&shape)?;
        }
        Some(ConsoleCa::Secret(arn)) => {
            remove_named(c, "environment", "DEFENDER_CONSOLE_CA");
            set_named(c, "secrets", "DEFENDER_CONSOLE_CA", "valueFrom", arn).map_err(&shape)?;
        }
        None => {}
    }
    if let Some(seconds) = opts.wait_for_console {
        let seconds = seconds.to_string();
        set_named(
            c,
            "environment",
            "DEFENDER_WAIT_FOR_CONSOLE",
            "value",
            &seconds,
        )
        .map_err(&shape)?;
    }
    // What the container had already counts: a definition protected before, or set by hand.
    let console = has(c, "environment", "DEFENDER_CONSOLE");
    let token = has(c, "environment", "DEFENDER_TOKEN") || has(c, "secrets", "DEFENDER_TOKEN");
    let half = |has, lacks, pass| FargateError::HalfConsole {
        container: name.clone(),
        has,
        lacks,
        pass,
    };
    match (console, token) {
        (true, false) => Err(half(
            "DEFENDER_CONSOLE",
            "DEFENDER_TOKEN",
            "--token-secret ARN (or --token TOKEN) with --console",
        )),
        (false, true) => Err(half(
            "DEFENDER_TOKEN",
            "DEFENDER_CONSOLE",
            "--console URL with the token",
        )),
        _ => Ok(carrier_arg),
    }
}

/// Mounts `volume` at `path` unless it is mounted already; another volume at `path` is refused.
fn mount(
    container: &str,
    mounts: &mut Vec<Value>,
    volume: &'static str,
    path: &'static str,
    read_only: bool,
) -> Result<(), FargateError> {
    if let Some(other) = mounts
        .iter()
        .find(|m| m["containerPath"] == path && m["sourceVolume"] != volume)
    {
        return Err(FargateError::MountTaken {
            container: container.into(),
            volume: other["sourceVolume"].as_str().unwrap_or_default().into(),
            path,
            ours: volume,
        });
    }
    if !mounts.iter().any(|m| m["sourceVolume"] == volume) {
        mounts
            .push(json!({ "sourceVolume": volume, "containerPath": path, "readOnly": read_only }));
    }
    Ok(())
}

/// A container's `entryPoint` as ECS reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// Missing, null or `[]`: the image's ENTRYPOINT applies.
    Unset,
    /// `[""]`: the image's ENTRYPOINT is cleared; the command runs on its own.
    Cleared,
    Set(Vec<String>),
}

fn entry_point(c: &Map<String, Value>) -> Result<Entry, String> {
    Ok(match strings(c, "entryPoint")? {
        None => Entry::Unset,
        Some(e) if e.is_empty() => Entry::Unset,
        Some(e) if e == [""] => Entry::Cleared,
        Some(e) => Entry::Set(e),
    })
}

/// `c[key]` as a list of strings; `None` when missing, null or `[]` (Docker then uses the
/// image's).
fn strings(c: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    let not_strings = || format!("{key} is not a list of strings");
    match c.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.is_empty() => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(not_strings),
        Some(_) => Err(not_strings()),
    }
}

/// The new `entryPoint`, and the `command` to write (`None`: the field stays as it is).
#[derive(Debug, PartialEq, Eq)]
struct Rewrite {
    entry_point: Vec<String>,
    command: Option<Vec<String>>,
}

/// What the container runs, as Docker composes it from the definition and the image, and how
/// to write it so that it starts under the defender; `None` when it already does.
///
/// Setting `entryPoint` makes ECS drop the image's CMD, so a CMD that came from the image is
/// written into `command`. A `command` from the definition stays where it is, so that ECS
/// overrides of `command` still reach the original entrypoint.
fn rewrite(
    name: &str,
    image: &str,
    entry: Entry,
    command: Option<Vec<String>>,
    images: &ImageConfigs,
) -> Result<Option<Rewrite>, FargateError> {
    let needs = |reason: &'static str| FargateError::NeedsImageConfig {
        container: name.into(),
        image: image.into(),
        reason,
    };
    let (launch, command_from_image) = match (entry, command) {
        (Entry::Set(entrypoint), command) => (
            Launch {
                entrypoint,
                cmd: command.unwrap_or_default(),
            },
            false,
        ),
        (Entry::Cleared, Some(cmd)) => (
            Launch {
                entrypoint: Vec::new(),
                cmd,
            },
            false,
        ),
        (Entry::Cleared, None) => {
            let config = images.get(image).ok_or_else(|| {
                needs("clears the entryPoint ([\"\"]) and sets no command, so it runs the image's CMD, which the task definition does not show")
            })?;
            (
                Launch {
                    entrypoint: Vec::new(),
                    cmd: config.cmd.clone(),
                },
                true,
            )
        }
        (Entry::Unset, command) => {
            let config = images.get(image).ok_or_else(|| match command {
                Some(_) => needs("sets a command but no entryPoint, so the image's ENTRYPOINT, which the task definition does not show, decides how it runs"),
                None => needs("sets neither entryPoint nor command, so it runs the image's ENTRYPOINT and CMD, which the task definition does not show"),
            })?;
            let from_image = command.is_none();
            (
                Launch {
                    entrypoint: config.entrypoint.clone(),
                    cmd: command.unwrap_or_else(|| config.cmd.clone()),
                },
                from_image,
            )
        }
    };
    if launch.is_empty() {
        return Err(FargateError::NothingToRun {
            container: name.into(),
            image: image.into(),
        });
    }
    if launch.is_protected() {
        return Ok(None);
    }
    Ok(Some(Rewrite {
        entry_point: protected_entrypoint(&launch.entrypoint),
        command: (command_from_image && !launch.cmd.is_empty()).then_some(launch.cmd),
    }))
}

/// `map[key]` as a list, created when missing or null.
fn list<'a>(map: &'a mut Map<String, Value>, key: &str) -> Result<&'a mut Vec<Value>, String> {
    let v = map.entry(key).or_insert(Value::Null);
    if v.is_null() {
        *v = json!([]);
    }
    v.as_array_mut()
        .ok_or_else(|| format!("{key} is not a list"))
}

/// `map[key]` as an object, created when missing or null.
fn object<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    let v = map.entry(key).or_insert(Value::Null);
    if v.is_null() {
        *v = json!({});
    }
    v.as_object_mut()
        .ok_or_else(|| format!("{key} is not an object"))
}

/// Sets `{"name": name, field: value}` in the list `key` (`environment`, `secrets`): in place
/// when the name is there, appended otherwise.
fn set_named(
    map: &mut Map<String, Value>,
    key: &str,
    name: &str,
    field: &str,
    value: &str,
) -> Result<(), String> {
    let entries = list(map, key)?;
    match entries.iter_mut().find(|e| e["name"] == name) {
        Some(entry) => entry[field] = json!(value),
        None => entries.push(json!({ "name": name, field: value })),
    }
    Ok(())
}

/// Removes the entries named `name` from the list `key`, if there is such a list.
fn remove_named(map: &mut Map<String, Value>, key: &str, name: &str) {
    if let Some(entries) = map.get_mut(key).and_then(Value::as_array_mut) {
        entries.retain(|e| e["name"] != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn launch(entrypoint: &[&str], cmd: &[&str]) -> Launch {
        Launch {
            entrypoint: strs(entrypoint),
            cmd: strs(cmd),
        }
    }

    const D: &str = "/opt/defender/defender";

    #[test]
    fn capabilities_the_container_asks_for_that_the_command_loses_are_warned_about() {
        let keep = |v: &[&str]| {
            v.iter()
                .map(|n| Capability::parse(n).unwrap())
                .collect::<Vec<_>>()
        };
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&[], &[], &[]),
            // Not removed by the defender: nothing to say.
            (&["NET_RAW", "CHOWN"], &[], &[]),
            (&["SYS_PTRACE"], &[], &["SYS_PTRACE"]),
            (&["cap_net_admin", "NET_RAW"], &[], &["NET_ADMIN"]),
            // Kept on purpose already.
            (
                &["SYS_PTRACE", "SYS_ADMIN"],
                &["SYS_PTRACE"],
                &["SYS_ADMIN"],
            ),
            // Not a capability name: ECS refuses it, not this warning.
            (&["BOGUS"], &[], &[]),
        ];
        for (asked, kept, warned) in cases {
            let w = removed_yet_asked("app", &strs(asked), &keep(kept));
            assert_eq!(w.len(), warned.len(), "{asked:?} {kept:?}: {w:?}");
            for (text, cap) in w.iter().zip(*warned) {
                assert!(
                    text.contains(&format!("add {cap} to DEFENDER_KEEP_CAPABILITIES")),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn what_runs_is_composed_like_docker_does() {
        let images = ImageConfigs::from_pairs(&[
            ("app", launch(&["/entry"], &["serve"])),
            ("cmd-only", launch(&[], &["/run.sh"])),
            ("empty", launch(&[], &[])),
            ("protected", launch(&[D, "run", "--", "/entry"], &[])),
        ]);
        type Case<'a> = (
            &'a str,
            Entry,
            Option<&'a [&'a str]>,
            Result<Option<(Vec<&'a str>, Option<Vec<&'a str>>)>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            // both in the definition: no image needed; command stays where it is
            (
                "none",
                Entry::Set(strs(&["/bin/app"])),
                Some(&["-v"]),
                Ok(Some((vec![D, "run", "--", "/bin/app"], None))),
            ),
            // entryPoint set, no command: the image's CMD is dropped by ECS, as before
            (
                "app",
                Entry::Set(strs(&["/bin/app"])),
                None,
                Ok(Some((vec![D, "run", "--", "/bin/app"], None))),
            ),
            // [""] and a command: the command alone
            (
                "none",
                Entry::Cleared,
                Some(&["/bin/sh", "-c", "x"]),
                Ok(Some((vec![D, "run", "--"], None))),
            ),
            // [""] and no command: the image's CMD, now written into command
            (
                "cmd-only",
                Entry::Cleared,
                None,
                Ok(Some((vec![D, "run", "--"], Some(vec!["/run.sh"])))),
            ),
            ("none", Entry::Cleared, None, Err("clears the entryPoint")),
            // nothing set: the image's ENTRYPOINT and CMD
            (
                "app",
                Entry::Unset,
                None,
                Ok(Some((vec![D, "run", "--", "/entry"], Some(vec!["serve"])))),
            ),
            // a command only: the image's ENTRYPOINT before it
            (
                "app",
                Entry::Unset,
                Some(&["other"]),
                Ok(Some((vec![D, "run", "--", "/entry"], None))),
            ),
            (
                "none",
                Entry::Unset,
                Some(&["x"]),
                Err("sets a command but no entryPoint"),
            ),
            (
                "none",
                Entry::Unset,
                None,
                Err("sets neither entryPoint nor command"),
            ),
            (
                "empty",
                Entry::Unset,
                None,
                Err("neither ENTRYPOINT nor CMD"),
            ),
            // already protected, by the definition or by the image
            (
                "none",
                Entry::Set(strs(&[D, "run", "--", "/bin/app"])),
                None,
                Ok(None),
            ),
            ("protected", Entry::Unset, None, Ok(None)),
        ];
        for (image, entry, command, want) in cases {
            let got = rewrite("c", image, entry.clone(), command.map(strs), &images);
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    let want = want.map(|(e, c)| Rewrite {
                        entry_point: strs(&e),
                        command: c.map(|c| strs(&c)),
                    });
                    assert_eq!(got, want, "{image} {entry:?} {command:?}");
                }
                (Err(e), Err(want)) => {
                    let e = e.to_string();
                    assert!(e.contains(want), "{image} {entry:?}: {e}");
                }
                (got, want) => panic!("{image} {entry:?} {command:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn entry_points_are_read_like_ecs_does() {
        let cases = [
            (json!({}), Ok(Entry::Unset)),
            (json!({"entryPoint": null}), Ok(Entry::Unset)),
            (json!({"entryPoint": []}), Ok(Entry::Unset)),
            (json!({"entryPoint": [""]}), Ok(Entry::Cleared)),
            (
                json!({"entryPoint": ["/a", ""]}),
                Ok(Entry::Set(strs(&["/a", ""]))),
            ),
            (json!({"entryPoint": "/a"}), Err(())),
            (json!({"entryPoint": [1]}), Err(())),
        ];
        for (c, want) in cases {
            let got = entry_point(c.as_object().unwrap()).map_err(|_| ());
            assert_eq!(got, want, "{c}");
        }
    }

    #[test]
    fn root_is_recognized_in_every_form_of_user() {
        let cases = [
            ("1000:1000", false),
            ("app", false),
            ("nobody:root", false),
            ("root", true),
            ("0", true),
            ("0:1000", true),
            ("root:app", true),
            ("", true),
        ];
        for (user, want) in cases {
            assert_eq!(runs_as_root(user), want, "{user:?}");
        }
    }

    #[test]
    fn selections_pick_containers_and_name_unknown_ones() {
        let names = ["app", "log_router", "envoy"];
        let s = |e: &[&str], o: &[&str]| Selection::new(strs(e), strs(o));
        let cases = [
            (s(&[], &[]), vec!["app", "log_router", "envoy"], None),
            (s(&["envoy", "log_router"], &[]), vec!["app"], None),
            (s(&[], &["app"]), vec!["app"], None),
            (
                s(&["envoy", "xray"], &[]),
                vec!["app", "log_router"],
                Some(("--exclude", "xray")),
            ),
            (s(&[], &["App"]), vec![], Some(("--only", "App"))),
        ];
        for (selection, protected, unknown) in cases {
            let got: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| selection.protects(n))
                .collect();
            assert_eq!(got, protected, "{selection:?}");
            assert_eq!(selection.unknown(&names), unknown, "{selection:?}");
        }
    }

    #[test]
    fn the_carrier_logs_like_the_first_container_not_through_firelens() {
        let awslogs = json!({"logDriver": "awslogs", "options": {"awslogs-group": "g"}});
        let splunk = json!({"logDriver": "splunk"});
        let firelens = json!({"logDriver": "awsfirelens"});
        let c = |name: &str, log: &Value| json!({"name": name, "logConfiguration": log});
        let cases = [
            (vec![json!({"name": "a"})], LogConfiguration::None),
            (
                vec![c("a", &Value::Null), c("b", &splunk), c("c", &awslogs)],
                LogConfiguration::Copy(splunk.clone()),
            ),
            (
                vec![c("a", &firelens), c("router", &awslogs)],
                LogConfiguration::Copy(awslogs.clone()),
            ),
            (vec![c("a", &firelens)], LogConfiguration::OnlyFirelens),
            // An existing carrier's own is not a container's.
            (
                vec![c(CARRIER, &awslogs), c("a", &splunk)],
                LogConfiguration::Copy(splunk.clone()),
            ),
        ];
        for (containers, want) in cases {
            assert_eq!(
                carrier_log_configuration(&containers),
                want,
                "{containers:?}"
            );
        }
    }

    #[test]
    fn mounts_are_added_once_and_never_over_another_volume() {
        let mut mounts = vec![json!({"sourceVolume": "tmp", "containerPath": "/tmp"})];
        mount("a", &mut mounts, CARRIER, BINARY_DIR, true).unwrap();
        mount("a", &mut mounts, CARRIER, BINARY_DIR, true).unwrap();
        assert_eq!(mounts.len(), 2);
        let mut taken = vec![json!({"sourceVolume": "var", "containerPath": STATE_MOUNT})];
        let e = mount("a", &mut taken, STATE_VOLUME, STATE_MOUNT, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("mounts the volume \"var\" at /var/lib/defender"),
            "{e}"
        );
    }

    #[test]
    fn named_entries_are_replaced_in_place() {
        let mut c =
            json!({"environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        let c = c.as_object_mut().unwrap();
        set_named(c, "environment", "A", "value", "9").unwrap();
        set_named(c, "environment", "C", "value", "3").unwrap();
        remove_named(c, "environment", "B");
        remove_named(c, "secrets", "B");
        assert_eq!(
            c["environment"],
            json!([{"name": "A", "value": "9"}, {"name": "C", "value": "3"}])
        );
        assert!(!c.contains_key("secrets"));
        let mut bad = json!({"environment": {"A": "1"}});
        assert!(
            set_named(
                bad.as_object_mut().unwrap(),
                "environment",
                "A",
                "value",
                "1"
            )
            .is_err()
        );
    }
}
