//! `defender run` from its flags to the supervisor: the keeper first (while no thread exists),
//! then the flags checked, the local policy, the audit sink, the container's identity, the
//! console uplink, and the rule in force reported; once the supervisor has run the command, the
//! audits still on their way are delivered. Every failure before the command runs is a
//! [`StartupError`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::{self, Event, Sink, SinkError};
use crate::cli::RunArgs;
use crate::ecs;
use crate::exit::ExitStatus;
use crate::policy::{self, Live, Policy, PolicyError, live::Source};
use crate::uplink::{self, Uplink, UplinkError};
use crate::waas::{self, WaasError};

use super::caps::Capability;
use super::{AfterFork, RunConfig, SupervisorError, keeper};

/// How long, once the command is done, the audits not yet at the console may take to get there.
const DELIVER_AT_EXIT: Duration = Duration::from_secs(5);

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid policy:\n{source}", path.display())]
    Invalid { path: PathBuf, source: PolicyError },
    #[error("{}: invalid WAAS policy: {source}", path.display())]
    InvalidWaas { path: PathBuf, source: WaasError },
}

/// Why `defender run` could not get the command started.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("starting the keeper: {0}")]
    Keeper(#[source] std::io::Error),
    #[error("--grace-period: {0} is not a number of seconds")]
    GracePeriod(f64),
    #[error("--keep-capability: {0}")]
    KeepCapability(String),
    #[error(transparent)]
    Policy(#[from] PolicyFileError),
    #[error(transparent)]
    AuditFile(#[from] SinkError),
    #[error("--wait-for-console: not a number of seconds")]
    WaitForConsole,
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    #[error("--console needs --token (DEFENDER_TOKEN)")]
    ConsoleWithoutToken,
    #[error("--token needs --console (DEFENDER_CONSOLE)")]
    TokenWithoutConsole,
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

impl StartupError {
    /// The defender could not start, unless COMMAND itself is the problem.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            StartupError::Supervisor(e) => e.exit_status(),
            _ => ExitStatus::CannotStart,
        }
    }
}

/// Reads and validates a policy file.
pub fn load_policy(file: &Path) -> Result<Policy, PolicyFileError> {
    let text = std::fs::read_to_string(file).map_err(|source| PolicyFileError::Read {
        path: file.into(),
        source,
    })?;
    policy::parse(&text).map_err(|source| PolicyFileError::Invalid {
        path: file.into(),
        source,
    })
}

/// Reads and validates a WAAS policy file (`--waas-policy`).
pub fn load_waas_policy(file: &Path) -> Result<waas::Compiled, PolicyFileError> {
    let text = std::fs::read_to_string(file).map_err(|source| PolicyFileError::Read {
        path: file.into(),
        source,
    })?;
    waas::compile(&text).map_err(|source| PolicyFileError::InvalidWaas {
        path: file.into(),
        source,
    })
}

/// `defender run` up to the supervisor: the keeper, then everything the supervisor needs (to
/// give to [`super::run`]), from the flags, the environment and the policy, and the uplink to
/// [`finish`] once the command is done.
pub fn prepare(args: RunArgs) -> Result<(RunConfig, Option<Uplink>), StartupError> {
    // First, while no thread exists: when not PID 1, the keeper (the process our caller started)
    // forks the defender, which carries on here.
    keeper::start().map_err(StartupError::Keeper)?;
    if !(args.grace_period.is_finite() && args.grace_period >= 0.0) {
        return Err(StartupError::GracePeriod(args.grace_period));
    }
    let keep_capabilities = args
        .keep_capabilities
        .iter()
        .filter(|name| !name.trim().is_empty())
        .map(|name| Capability::parse(name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StartupError::KeepCapability)?;
    let local = match &args.policy {
        Some(file) => Some((file.clone(), load_policy(file)?)),
        None => None,
    };
    let local_waas = match &args.waas_policy {
        Some(file) => Some(load_waas_policy(file)?),
        None => None,
    };
    let mut sink = Sink::open(args.audit_file.as_deref())?;
    // An empty name (`DEFENDER_CONTAINER=` in a task definition) counts as none given: the next
    // source (metadata, hostname) names the container rather than "" in every event.
    let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let flags = ecs::Given {
        container: given(args.container),
        image: given(args.image),
        cluster: given(args.cluster),
        family: given(args.family),
        service: given(args.service),
    };
    let (scope, metadata_failure) = ecs::identify(flags, hostname);
    // The WAAS rule is chosen for the same identity as the runtime rule. With a console, the
    // uplink may replace this start (its cached document) and puts each revision in force here.
    // (`Source::Default` for the WAAS policy: no document at all.)
    let waas_source = args
        .waas_policy
        .clone()
        .map_or(Source::Default, Source::File);
    let waas = waas::live::Live::new(local_waas.as_ref(), waas_source, scope.identity());
    let (policy, uplink) = match (args.console, args.token) {
        (None, None) => {
            let (p, source) = match local {
                Some((file, p)) => (p, Source::File(file)),
                None => (policy::default_policy(), Source::Default),
            };
            (Live::new(p, source, scope.identity()), None)
        }
        (Some(console), Some(token)) => {
            let wait = args
                .wait_for_console
                .map(Duration::try_from_secs_f64)
                .transpose()
                .map_err(|_| StartupError::WaitForConsole)?;
            let cfg = uplink::Config {
                console,
                token,
                ca: args.console_ca,
                state_dir: args.state_dir,
                wait,
                local,
                waas: waas.clone(),
                audit_file: args.audit_file,
            };
            let (uplink, starter) = Uplink::prepare(cfg, &scope)?;
            sink.tee(uplink.tee());
            (uplink.live(), Some((uplink, starter)))
        }
        (Some(_), None) => return Err(StartupError::ConsoleWithoutToken),
        (None, Some(_)) => return Err(StartupError::TokenWithoutConsole),
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
    let waas_in_force = waas.current();
    match waas_in_force.rule.as_deref() {
        Some(rule) => log::info!(
            "WAAS rule in force: {:?} ({}), protecting ports {:?}",
            rule.name,
            waas_in_force.describe(),
            waas_in_force.ports()
        ),
        None => log::info!("no WAAS rule in force ({})", waas_in_force.describe()),
    }
    let (uplink, after_fork) = match uplink {
        Some((uplink, starter)) => (
            Some(uplink),
            Some(Box::new(move || starter.run().map_err(Into::into)) as AfterFork),
        ),
        None => (None, None),
    };
    // With a console the rule can change while the command runs, and the filter cannot: socket
    // calls are trapped from the start then, whatever the first rule says. Without one, they
    // are trapped when the rule enforces network or DNS, by a section or by custom rules on
    // outgoing connections, DNS questions or listening ports (`Rule::enforces_network`).
    // A WAAS rule that protects a port needs the application's `bind` trapped too.
    let network = uplink.is_some()
        || in_force.rule.as_ref().is_some_and(|r| r.enforces_network())
        || waas_in_force
            .rule
            .as_ref()
            .is_some_and(|r| !r.apps.is_empty());
    let cfg = RunConfig {
        policy,
        waas,
        network,
        scope,
        sink,
        grace: Duration::from_secs_f64(args.grace_period),
        keep_capabilities,
        command: args.command,
        after_fork,
    };
    Ok((cfg, uplink))
}

/// Once the command is done: the audits not yet at the console get a bounded time to get there.
pub fn finish(uplink: Option<Uplink>) {
    if let Some(uplink) = uplink {
        uplink.finish(DELIVER_AT_EXIT);
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
