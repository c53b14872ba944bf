//! `defender`: the entry point. Parses the command line, loads the policy and the container's
//! identity, and hands over to the supervisor; the only place errors become messages and exit codes.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use defender::audit::{self, Event, Sink};
use defender::cli::{Cli, Command, DockerfileCommand, FargateCommand, PolicyCommand, RunArgs};
use defender::policy::{self, Effect, Live, Policy, live::Source};
use defender::supervisor::caps::Capability;
use defender::uplink::{self, Uplink};
use defender::{ecs, embed, logger, supervisor, sys};

/// `policy check` exit status for an invalid policy (cli.md).
const POLICY_INVALID: u8 = 2;
/// `run` exit status when the defender itself cannot start (cli.md).
const CANNOT_START: u8 = 125;
/// `fargate embed` / `dockerfile embed`: the input cannot be embedded (the message says why).
const EMBED_FAILED: u8 = 2;
/// How long, once the command is done, the audits not yet at the console may take to get there.
const DELIVER_AT_EXIT: Duration = Duration::from_secs(5);

/// Blocks every signal before `main` (and before the Rust runtime starts): see
/// `defender::sys::signals`. Only this binary registers it, so the library's users are untouched.
#[used]
#[unsafe(link_section = ".init_array")]
static BLOCK_SIGNALS_AT_START: extern "C" fn() = sys::signals::block_all_at_start;

fn main() -> ExitCode {
    let is_run = std::env::args_os().nth(1).is_some_and(|a| a == "run");
    // Only `run` supervises; every other subcommand gets the mask it was started with back at once.
    if !is_run && let Err(e) = sys::signals::restore_original() {
        eprintln!("defender: error: restoring the signal mask: {e}");
        return ExitCode::FAILURE;
    }
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
    // First, while no thread exists: when not PID 1, the keeper (the process our caller started)
    // forks the defender, which carries on here.
    if let Err(e) = supervisor::keeper::start() {
        log::error!("starting the keeper: {e}");
        return i32::from(CANNOT_START);
    }
    let fail = |message: String| {
        log::error!("{message}");
        i32::from(CANNOT_START)
    };
    if !(args.grace_period.is_finite() && args.grace_period >= 0.0) {
        return fail(format!(
            "--grace-period: {} is not a number of seconds",
            args.grace_period
        ));
    }
    let keep_capabilities = match args
        .keep_capabilities
        .iter()
        .filter(|name| !name.trim().is_empty())
        .map(|name| Capability::parse(name))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(caps) => caps,
        Err(e) => return fail(format!("--keep-capability: {e}")),
    };
    let local = match &args.policy {
        Some(file) => match load_policy(file) {
            Ok(p) => Some((file.clone(), p)),
            Err(message) => return fail(message),
        },
        None => None,
    };
    let mut sink = match Sink::open(args.audit_file.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    // An empty name (`DEFENDER_CONTAINER=` in a task definition) counts as none given: the next
    // source (metadata, hostname) names the container rather than "" in every event.
    let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let (scope, metadata_failure) =
        ecs::identify(given(args.container), given(args.image), hostname);
    let (policy, uplink) = match (args.console, args.token) {
        (None, None) => {
            let (p, source) = match local {
                Some((file, p)) => (p, Source::File(file)),
                None => (policy::default_policy(), Source::Default),
            };
            (Live::new(p, source, &scope.container, &scope.image), None)
        }
        (Some(console), Some(token)) => {
            let wait = match args.wait_for_console.map(Duration::try_from_secs_f64) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(_)) => return fail("--wait-for-console: not a number of seconds".into()),
            };
            let cfg = uplink::Config {
                console,
                token,
                ca: args.console_ca,
                state_dir: args.state_dir,
                wait,
                local,
                audit_file: args.audit_file,
            };
            match Uplink::prepare(cfg, &scope) {
                Ok((uplink, starter)) => {
                    sink.tee(uplink.tee());
                    (uplink.live(), Some((uplink, starter)))
                }
                Err(e) => return fail(e.to_string()),
            }
        }
        (Some(_), None) => return fail("--console needs --token (DEFENDER_TOKEN)".into()),
        (None, Some(_)) => return fail("--token needs --console (DEFENDER_CONSOLE)".into()),
    };
    let in_force = policy.current();
    if let Some(message) = metadata_failure {
        log::warn!("{message}");
        sink.emit(Event::defender(
            &scope,
            audit::Effect::Alert,
            in_force.rule_name(),
            message,
        ));
    }
    match in_force.rule_name() {
        Some(name) => log::info!(
            "rule in force for container {:?} image {:?}: {name:?} ({})",
            scope.container,
            scope.image,
            in_force.source
        ),
        None => log::info!(
            "no rule matches container {:?} image {:?}: nothing is enforced",
            scope.container,
            scope.image
        ),
    }
    let (uplink, after_fork) = match uplink {
        Some((uplink, starter)) => (
            Some(uplink),
            Some(Box::new(move || starter.run()) as supervisor::AfterFork),
        ),
        None => (None, None),
    };
    // With a console the rule can change while the command runs, and the filter cannot: socket
    // calls are trapped from the start then, whatever the first rule says.
    let network = uplink.is_some()
        || in_force.rule.as_ref().is_some_and(|r| {
            r.network().effect() != Effect::Disable || r.dns().effect() != Effect::Disable
        });
    let cfg = supervisor::RunConfig {
        policy,
        network,
        scope,
        sink,
        grace: Duration::from_secs_f64(args.grace_period),
        keep_capabilities,
        command: args.command,
        after_fork,
    };
    let code = match supervisor::run(cfg) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            e.exit_code()
        }
    };
    if let Some(uplink) = uplink {
        uplink.finish(DELIVER_AT_EXIT);
    }
    code
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
