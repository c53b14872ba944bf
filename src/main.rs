//! `defender`: the entry point. Parses the command line, loads the policy and the container's
//! identity, and hands over to the supervisor; the only place errors become messages and exit codes.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use defender::audit::{Event, Sink};
use defender::cli::{Cli, Command, DockerfileCommand, FargateCommand, PolicyCommand, RunArgs};
use defender::policy::{self, Policy};
use defender::{ecs, embed, logger, supervisor};

/// `policy check` exit status for an invalid policy (cli.md).
const POLICY_INVALID: u8 = 2;
/// `run` exit status when the defender itself cannot start (cli.md).
const CANNOT_START: u8 = 125;
/// `fargate embed` / `dockerfile embed`: the input cannot be embedded (the message says why).
const EMBED_FAILED: u8 = 2;

fn main() -> ExitCode {
    let is_run = std::env::args_os().nth(1).is_some_and(|a| a == "run");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ if is_run => CANNOT_START,
                _ => POLICY_INVALID,
            });
        }
    };
    match cli.command {
        Command::Run(args) => ExitCode::from(run(args) as u8),
        Command::Policy(PolicyCommand::Check { file }) => check(&file),
        Command::Policy(PolicyCommand::Default) => {
            print!("{}", policy::default_policy().to_json_pretty());
            ExitCode::SUCCESS
        }
        Command::Fargate(FargateCommand::Embed(args)) => embedded(embed::fargate_embed(&args)),
        Command::Dockerfile(DockerfileCommand::Embed(args)) => {
            embedded(embed::dockerfile_embed(&args))
        }
        Command::Install { dir } => match embed::install::install(&dir) {
            Ok(path) => {
                eprintln!("defender: installed {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("defender: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints what an embedding command made (stdout) and its warnings (stderr).
fn embedded(result: Result<embed::Output, embed::EmbedError>) -> ExitCode {
    use std::io::Write;
    match result {
        Ok(out) => {
            for w in &out.warnings {
                eprintln!("defender: warn: {w}");
            }
            match std::io::stdout().write_all(out.text.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("defender: error: writing the output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("defender: error: {e}");
            ExitCode::from(EMBED_FAILED)
        }
    }
}

fn check(file: &Path) -> ExitCode {
    match load_policy(file) {
        Ok(p) => {
            for line in p.summary_lines() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(POLICY_INVALID)
        }
    }
}

fn load_policy(file: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    policy::parse(&text).map_err(|e| format!("{}: invalid policy:\n{e}", file.display()))
}

/// `defender run`: returns the exit status.
fn run(args: RunArgs) -> i32 {
    logger::init(args.log_level.filter());
    let fail = |message: String| {
        log::error!("{message}");
        i32::from(CANNOT_START)
    };
    if args.console.is_some() || args.token.is_some() {
        return fail(
            "--console/--token: the console client is not part of this build yet; use --policy"
                .into(),
        );
    }
    if !(args.grace_period.is_finite() && args.grace_period >= 0.0) {
        return fail(format!(
            "--grace-period: {} is not a number of seconds",
            args.grace_period
        ));
    }
    let policy = match &args.policy {
        Some(file) => match load_policy(file) {
            Ok(p) => p,
            Err(message) => return fail(message),
        },
        None => policy::default_policy(),
    };
    let mut sink = match Sink::open(args.audit_file.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let (scope, metadata_failure) = ecs::identify(args.container, args.image, hostname);
    let rule = policy.rule_for(&scope.container, &scope.image).cloned();
    if let Some(message) = metadata_failure {
        log::warn!("{message}");
        let rule = rule.as_ref().map(|r| r.name());
        sink.emit(Event::defender(&scope, "alert", rule, message));
    }
    match &rule {
        Some(r) => log::info!(
            "rule in force for container {:?} image {:?}: {:?}",
            scope.container,
            scope.image,
            r.name()
        ),
        None => log::info!(
            "no rule matches container {:?} image {:?}: nothing is enforced",
            scope.container,
            scope.image
        ),
    }
    let cfg = supervisor::RunConfig {
        rule,
        scope,
        sink,
        grace: Duration::from_secs_f64(args.grace_period),
        command: args.command,
    };
    match supervisor::run(cfg) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            e.exit_code()
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
