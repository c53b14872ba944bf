//! The command line (docs/cli.md): every flag of `defender run` also has an environment variable,
//! because in a Fargate task definition environment variables are how configuration travels.
//! A variable set to the empty string counts as not set ([`parse`]): a task definition cannot
//! unset a variable its image sets.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::uplink::Ca;

#[derive(Debug, Parser)]
#[command(
    name = "defender",
    version,
    about = "Runtime defense for one container: starts COMMAND under a seccomp supervisor that enforces the runtime policy."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the process's command line and environment. Every flag's environment variable that is
/// set to the empty string is ignored, as if it were not set: clap would otherwise take "" as a
/// value (a policy file named "", a token "").
pub fn parse() -> Result<Cli, clap::Error> {
    let matches = Cli::command()
        .mut_args(unset_if_empty)
        .mut_subcommands(|sub| sub.mut_args(unset_if_empty))
        .try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

/// `arg` without its environment variable when that is set to the empty string.
fn unset_if_empty(arg: Arg) -> Arg {
    let empty = arg
        .get_env()
        .and_then(std::env::var_os)
        .is_some_and(|value| value.is_empty());
    if empty { arg.env(None) } else { arg }
}

// RunArgs is large next to the other variants; a command line is parsed once per process.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start COMMAND under enforcement and stay its parent (PID 1 in a container).
    Run(RunArgs),
    /// Validate or print policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Protect the containers of an ECS task definition.
    #[command(subcommand)]
    Fargate(FargateCommand),
    /// Protect the image a Dockerfile builds.
    #[command(subcommand)]
    Dockerfile(DockerfileCommand),
    /// Copy this binary to DIR/defender: what a carrier container runs; needs no shell.
    Install {
        /// Created if missing.
        dir: PathBuf,
        /// Also make DIR owned by UID:GID, mode 0700: the state directory of a container that
        /// runs as that user (`fargate embed` sets it). Repeatable.
        #[arg(long = "state-dir", value_name = "DIR=UID:GID")]
        state_dirs: Vec<crate::embed::install::StateDir>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Local policy file. With --console too, the policy in force until the console answers is
    /// the last console policy kept in the state directory, else this file, else the default
    /// policy; the console's answer then replaces it.
    #[arg(long, env = "DEFENDER_POLICY", value_name = "PATH")]
    pub policy: Option<PathBuf>,
    /// Web application firewall (WAAS) policy file (docs/waas.md). With --console too, the
    /// console's WAAS document replaces it once the console answers (a console without one:
    /// this file stays in force).
    #[arg(long, env = "DEFENDER_WAAS_POLICY", value_name = "PATH")]
    pub waas_policy: Option<PathBuf>,
    /// Console base URL (http:// or https://).
    #[arg(long, env = "DEFENDER_CONSOLE", value_name = "URL")]
    pub console: Option<String>,
    /// Defender token for the console.
    #[arg(
        long,
        env = "DEFENDER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The CA certificates to trust for an https:// console, instead of the public roots: a PEM
    /// file, or the PEM text itself (a value starting with `-----BEGIN`).
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_CA",
        value_name = "FILE|PEM",
        hide_env_values = true
    )]
    pub console_ca: Option<Ca>,
    /// Where the last good console policy and the audit spool are kept [default:
    /// /var/lib/defender if writable, else $TMPDIR/defender-CONTAINER]. When no directory is
    /// writable (a read-only root file system), audits wait in memory (8 MiB, the oldest dropped
    /// past it) and no console policy is kept for the next start.
    #[arg(long, env = "DEFENDER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// With --console: start COMMAND only once the console answered; exit 125 if it has not
    /// after SECONDS.
    #[arg(long, env = "DEFENDER_WAIT_FOR_CONSOLE", value_name = "SECONDS")]
    pub wait_for_console: Option<f64>,
    /// Container name [default: ECS task metadata, else the hostname].
    #[arg(long, env = "DEFENDER_CONTAINER", value_name = "NAME")]
    pub container: Option<String>,
    /// Image [default: ECS task metadata, else `unknown`].
    #[arg(long, env = "DEFENDER_IMAGE", value_name = "NAME")]
    pub image: Option<String>,
    /// ECS cluster name, for rules' `collections.clusters` and audits [default: ECS task metadata,
    /// else unknown].
    #[arg(long, env = "DEFENDER_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
    /// ECS task-definition family, for `collections.families` [default: ECS task metadata, else
    /// unknown].
    #[arg(long, env = "DEFENDER_FAMILY", value_name = "NAME")]
    pub family: Option<String>,
    /// ECS service, for `collections.services` [default: ECS task metadata where the agent gives
    /// it (not on Fargate), else unknown].
    #[arg(long, env = "DEFENDER_SERVICE", value_name = "NAME")]
    pub service: Option<String>,
    /// Append audit events here instead of stderr (`-` = stdout).
    #[arg(long, env = "DEFENDER_AUDIT_FILE", value_name = "PATH")]
    pub audit_file: Option<PathBuf>,
    /// The defender's own diagnostics, on stderr.
    #[arg(
        long,
        env = "DEFENDER_LOG",
        value_name = "LEVEL",
        default_value = "warn"
    )]
    pub log_level: LogLevel,
    /// Seconds the processes left when COMMAND exits get between TERM and KILL.
    #[arg(
        long,
        env = "DEFENDER_GRACE_PERIOD",
        value_name = "SECONDS",
        default_value_t = 5.0
    )]
    pub grace_period: f64,
    /// Keep this capability in the command although the defender removes it by default (it would
    /// let the command subvert its supervisor): SYS_PTRACE, SYS_ADMIN, NET_ADMIN, BPF, PERFMON,
    /// SYS_MODULE, SYS_RAWIO, DAC_READ_SEARCH, SYS_BOOT, MAC_ADMIN, MAC_OVERRIDE, SETPCAP.
    /// Repeatable; the variable takes a comma-separated list. `CAP_` and case are optional.
    // Names are parsed by `defender run` (an unknown one is exit status 125), after empty ones
    // are dropped: an empty variable counts as not set.
    #[arg(
        long = "keep-capability",
        env = "DEFENDER_KEEP_CAPABILITIES",
        value_name = "CAP",
        value_delimiter = ','
    )]
    pub keep_capabilities: Vec<String>,
    /// The command to protect, and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: a summary line per rule, or every error (exit 2).
    Check { file: PathBuf },
    /// Print the default policy compiled into the binary.
    Default,
    /// Convert a Prisma Cloud Compute App-Embedded runtime policy into a policy of ours (stdout);
    /// every setting that has no equivalent is reported on stderr (docs/migration.md).
    ImportPrisma {
        /// The policy as GET /api/v1/policies/runtime/app-embedded returns it (`-`: standard
        /// input).
        file: PathBuf,
        /// The custom rules the policy references, as GET /api/v1/custom-rules returns them.
        #[arg(long, value_name = "FILE")]
        custom_rules: Option<PathBuf>,
    },
}

// The embedding commands run on build machines, not in protected containers: their flags have no
// environment variables, so that no DEFENDER_TOKEN set there ends up in a task definition unasked.

#[derive(Debug, Subcommand)]
pub enum FargateCommand {
    /// Print the task definition with every container started under the defender.
    Embed(FargateEmbedArgs),
}

#[derive(Debug, Args)]
pub struct FargateEmbedArgs {
    /// The task definition, as registered or as `aws ecs describe-task-definition` prints it
    /// (`-`: standard input).
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub task_definition: PathBuf,
    /// Console URL, set as DEFENDER_CONSOLE.
    #[arg(long, value_name = "URL")]
    pub console: Option<String>,
    /// Defender token, set in clear as DEFENDER_TOKEN; prefer --token-secret.
    #[arg(long, value_name = "T", conflicts_with = "token_secret")]
    pub token: Option<String>,
    /// ARN of the Secrets Manager secret or SSM parameter that holds the token (an ECS `secrets`
    /// entry named DEFENDER_TOKEN).
    #[arg(long, value_name = "ARN")]
    pub token_secret: Option<String>,
    /// Image of the carrier container, holding the binary at /defender [default: an existing
    /// carrier's image, else defender:VERSION].
    #[arg(long, value_name = "IMAGE")]
    pub defender_image: Option<String>,
    /// ENTRYPOINT and CMD of IMAGE, from `docker image inspect IMAGE > FILE` or an OCI image
    /// config: needed for containers whose definition does not say what they run. One that
    /// matches no protected container is an error.
    #[arg(long, value_name = "IMAGE=FILE")]
    pub image_config: Vec<String>,
    /// Leave the container NAME as it is (a FireLens log router, an X-Ray daemon, Envoy).
    /// Repeatable; a NAME that is no container is an error.
    #[arg(long, value_name = "NAME", conflicts_with = "only")]
    pub exclude: Vec<String>,
    /// Protect only the container NAME, leaving the others as they are. Repeatable; a NAME that
    /// is no container is an error.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// PEM file of the CA certificates the defender trusts for the console, carried in the
    /// definition as the text of DEFENDER_CONSOLE_CA.
    #[arg(
        long,
        value_name = "FILE",
        requires = "console",
        conflicts_with = "console_ca_secret"
    )]
    pub console_ca: Option<PathBuf>,
    /// ARN of the Secrets Manager secret or SSM parameter that holds that PEM text (an ECS
    /// `secrets` entry named DEFENDER_CONSOLE_CA).
    #[arg(long, value_name = "ARN", requires = "console")]
    pub console_ca_secret: Option<String>,
    /// Set as DEFENDER_WAIT_FOR_CONSOLE: each command starts only once the console answered, and
    /// its container exits 125 if it has not after SECONDS.
    #[arg(long, value_name = "SECONDS", requires = "console")]
    pub wait_for_console: Option<f64>,
    /// Read the ENTRYPOINT and CMD of the images of containers that set no entryPoint (and that
    /// no --image-config describes) from their registries, linux/amd64 variant; credentials
    /// from the Docker config file or --registry-token.
    #[arg(long)]
    pub from_registry: bool,
    /// Registry password for --from-registry, sent as --registry-user to every registry that refuses anonymous reading
    /// (e.g. the output of `aws ecr get-login-password`) [default: the Docker config file's].
    #[arg(long, value_name = "T", requires = "from_registry")]
    pub registry_token: Option<String>,
    /// The user --registry-token is the password of.
    #[arg(long, value_name = "USER", default_value = crate::embed::registry::DEFAULT_USER, requires = "registry_token")]
    pub registry_user: String,
}

#[derive(Debug, Subcommand)]
pub enum DockerfileCommand {
    /// Print the Dockerfile with its final stage started under the defender.
    Embed(DockerfileEmbedArgs),
}

#[derive(Debug, Args)]
pub struct DockerfileEmbedArgs {
    /// The Dockerfile (`-`: standard input).
    #[arg(value_name = "FILE", default_value = "-")]
    pub file: PathBuf,
    /// Copy the binary from this carrier image (from /defender) instead of from the file
    /// `defender` in the build context (`defender install CONTEXT` puts it there).
    #[arg(long, value_name = "IMAGE")]
    pub defender_image: Option<String>,
    /// ENTRYPOINT and CMD of the base image IMAGE, from `docker image inspect IMAGE > FILE` or
    /// an OCI image config: needed when the final stage sets no ENTRYPOINT of its own.
    #[arg(long, value_name = "IMAGE=FILE")]
    pub image_config: Vec<String>,
}
