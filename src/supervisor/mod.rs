//! The supervisor: the startup recipe (probe, block signals, fork, receive the listener), then one
//! loop that answers trapped calls, forwards signals and reaps, until the container is done.
//!
//! Data flows one way: a trapped call becomes a launch (sensors), the rule in force decides
//! (policy), the answer goes back to the kernel, the audit goes out.

mod answer;
pub mod caps;
mod child;
mod exec_watch;
mod guard;
mod init;
pub mod keeper;
mod net;
mod perform;
mod raw;
pub mod startup;
mod waas;

use std::ffi::OsString;
use std::io;
use std::io::IsTerminal;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::audit::{self, Event, ProcessViolation, Scope, Sink};
use crate::exit::ExitStatus;
use crate::policy::custom::{Facts, Field, Kind, Process, Subject};
use crate::policy::{Attack, Consequence, Effect, Live, Rule};
use crate::seccomp::{self, Trapped};
use crate::seccomp::{Abi, ExecCall};
use crate::sensors::exec::{self, Expected, Launch, Resolver};
use crate::sensors::facts::{self, Users};
use crate::sensors::{Said, custom_rules};
use crate::sys::process::Waited;
use crate::sys::remote::RemoteMemory;
use crate::sys::seccomp::{Listener, Notification};
use crate::sys::{fdpass, process, procfs, signals};
use answer::{Answer, Attempts};
use child::Program;
use exec_watch::{ExecWatch, Mismatch, OnMismatch, Watch};
use init::{Lifecycle, Step};

/// Everything `defender run` needs, resolved from flags, environment and policy.
pub struct RunConfig {
    /// The policy in force; with a console it changes while the command runs, so every decision
    /// reads it afresh.
    pub policy: Live,
    /// The WAAS policy in force (docs/waas.md); with a console it too changes while the command
    /// runs, so the bind of a protected port reads it afresh.
    pub waas: crate::waas::live::Live,
    /// Trap socket calls: the rule in force enforces network or DNS, or a console may send one
    /// that does (the filter cannot change once installed, so it traps what a future policy
    /// might need; a call the rule in force does not care about is let through).
    pub network: bool,
    pub scope: Scope,
    pub sink: Sink,
    pub grace: Duration,
    /// `--keep-capability`: capabilities the command keeps although they are removed by default.
    pub keep_capabilities: Vec<caps::Capability>,
    pub command: Vec<OsString>,
    /// Runs in the parent once the child exists and has handed over the listener, before any
    /// trapped call (the command's own launch first) is answered. Threads may start here and
    /// nowhere earlier (see the fork). An error stops the child before COMMAND runs and becomes
    /// [`ExitStatus::CannotStart`].
    pub after_fork: Option<AfterFork>,
}

/// See [`RunConfig::after_fork`].
pub type AfterFork = Box<dyn FnOnce() -> Result<(), StartupHookError>>;

/// What an [`AfterFork`] may fail with: its own error, kept as the source.
pub type StartupHookError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Unavailable(#[from] seccomp::SeccompError),
    #[error("{command}: command not found")]
    NotFound { command: String },
    #[error("{command}: {source}")]
    NotExecutable { command: String, source: io::Error },
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: io::Error,
    },
    #[error("the seccomp filter could not be installed (see the message above)")]
    NoListener,
    #[error(transparent)]
    Startup(StartupHookError),
}

impl SupervisorError {
    /// The defender could not start, unless COMMAND itself is the problem (docs/cli.md).
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            SupervisorError::NotFound { .. } => ExitStatus::NotFound,
            SupervisorError::NotExecutable { .. } => ExitStatus::CannotExecute,
            _ => ExitStatus::CannotStart,
        }
    }
}

fn io_err<E: Into<io::Error>>(context: &'static str) -> impl FnOnce(E) -> SupervisorError {
    move |e| SupervisorError::Io {
        context,
        source: e.into(),
    }
}

/// Starts the command under the filter and supervises it; returns the status to exit with.
pub fn run(cfg: RunConfig) -> Result<ExitStatus, SupervisorError> {
    let features = seccomp::probe()?;
    let program = Program::find(&cfg.command)?;

    // When not PID 1 (run locally, or under ECS's initProcessEnabled), orphans of the workload
    // would go to the real init; as a subreaper we keep reaping and supervising them.
    if std::process::id() != 1 {
        nix::sys::prctl::set_child_subreaper(true).map_err(io_err("PR_SET_CHILD_SUBREAPER"))?;
    }
    // Every signal is blocked since the first instruction; the child restores the mask the
    // defender was started with.
    let signals = init::signals().map_err(io_err("blocking signals"))?;
    let (ours, theirs) = fdpass::pair().map_err(io_err("socketpair"))?;
    // The child inherits our capability sets through fork; what it gives up is decided here, so
    // that the event below says what the command holds.
    let held = crate::sys::caps::read().map_err(io_err("reading the capability sets"))?;
    let capabilities = caps::plan(&held, &cfg.keep_capabilities);
    // Before the command exists: what it makes after this lends no name to an allow list.
    let started = exec::StartMark::take().map_err(io_err("marking the start"))?;
    // Before the command runs, which may rewrite /etc/passwd: `proc.user` names users as the
    // image does (read even when no custom rule is in force: a console may send one later).
    let users = Users::load();

    let network = cfg.network;
    // Not PID 1: the filter also guards the defender's processes from the workload's signals.
    let guarded = guard::Guarded::here();
    let guarded_values = guarded.map(|g| g.values());
    // The defender has started no thread (no logger, console, timer or DNS forwarder thread
    // exists before this point: the console uplink starts its threads in `after_fork`, and the
    // network sensor its own, below), so the child may run ordinary code until it execs; the
    // fork checks it.
    let fork = process::fork().map_err(io_err("fork"))?;
    let main = match fork {
        ForkResult::Child => {
            drop(ours);
            child::exec(
                theirs,
                &program,
                network,
                guarded_values.as_deref(),
                &capabilities,
            )
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    // The workload runs as our uid: without this it could ptrace us or read our memory. After
    // fork, so that the child (dumpable) can be traced at its own exec.
    nix::sys::prctl::set_dumpable(false).map_err(io_err("PR_SET_DUMPABLE"))?;

    let received = match network {
        true => fdpass::take_announced_fd(&ours, main.as_raw() as u32)
            .map_err(io_err("taking the listener from the child (pidfd_getfd: network enforcement needs CAP_SYS_PTRACE in a container)"))?,
        false => fdpass::recv_fd(&ours).map_err(io_err("receiving the listener"))?,
    };
    let Some((fd, tag)) = received else {
        let _ = waitpid(main, None);
        return Err(SupervisorError::NoListener);
    };
    drop(ours);
    let listener = Listener::new(fd, &features.sizes);
    // The child now waits in its trapped exec of COMMAND, which nothing answers before this ends.
    if let Some(start) = cfg.after_fork
        && let Err(e) = start()
    {
        let _ = kill(main, Signal::SIGKILL);
        let _ = waitpid(main, None);
        return Err(SupervisorError::Startup(e));
    }
    // Threads may start now that the child is forked (the forwarder's among them).
    let net = match network {
        true => Some(
            net::NetSensor::start(&cfg.policy, listener.responder())
                .map_err(io_err("starting the network sensor"))?,
        ),
        false => None,
    };
    // The keeper's end is news: from then on a death of ours would leave the command running.
    let keeper = keeper::keeper()
        .and_then(|k| crate::sys::pidfd::open_process(k.as_raw() as u32).ok())
        .filter(|_| Some(nix::unistd::getppid()) == keeper::keeper());
    let mut sup = Supervisor {
        guarded,
        keeper,
        job_control: keeper::keeper().is_some() && std::io::stdin().is_terminal(),
        job_stopped: false,
        listener,
        listener_open: true,
        killable: tag == b'K',
        resolver: Resolver::new(started),
        policy: cfg.policy,
        waas: cfg.waas,
        net,
        scope: cfg.scope,
        sink: cfg.sink,
        watch: ExecWatch::new(),
        life: Lifecycle::new(cfg.grace),
        main,
        user_namespaces: cfg.keep_capabilities.contains(&caps::SYS_ADMIN),
        denials: Attempts::new(),
        tried: Vec::new(),
        users,
    };
    sup.report_features();
    sup.report_capabilities(&capabilities, &cfg.keep_capabilities);
    sup.report_network();
    Ok(sup.serve(&signals))
}

struct Supervisor {
    /// The defender's processes, guarded from the workload's signals (not PID 1).
    guarded: Option<guard::Guarded>,
    /// A pidfd of the keeper (when not PID 1), readable once it is gone.
    keeper: Option<OwnedFd>,
    /// Not PID 1 and on a terminal: when the command stops on Ctrl-Z (or a background read or
    /// write of the terminal), the defender stops too, so that the shell sees its job stop.
    job_control: bool,
    /// The defender stopped itself for the command's stop and has not been continued yet.
    job_stopped: bool,
    listener: Listener,
    /// False once every filtered process is gone (the listener reports POLLHUP).
    listener_open: bool,
    /// The filter was installed with WAIT_KILLABLE_RECV (5.19): an exec can be waited for
    /// synchronously (exec_watch.rs).
    killable: bool,
    resolver: Resolver,
    policy: Live,
    /// The WAAS policy in force, for the takeover of a protected port's `bind` (net.rs).
    waas: crate::waas::live::Live,
    /// The network and DNS sensor, when socket calls are trapped.
    net: Option<net::NetSensor>,
    scope: Scope,
    sink: Sink,
    watch: ExecWatch,
    life: Lifecycle,
    main: Pid,
    /// `--keep-capability SYS_ADMIN`: the command may make user namespaces.
    user_namespaces: bool,
    /// The last denied launch (caller, file, command line): a shell searching PATH retries one
    /// command once per directory (dash tries /usr/bin/mkdir, /sbin/mkdir, /bin/mkdir on a
    /// merged-/usr system), and one attempt should be one audit. A path tried again is a new
    /// attempt, so a loop of denied launches is audited (and folded) one event per launch.
    denials: Attempts<(u32, PathBuf, String)>,
    /// The paths the last denied launch was tried under so far.
    tried: Vec<PathBuf>,
    /// The users of the container's /etc/passwd at start, for `proc.user`.
    users: Users,
}

/// The new program's argv, as custom rules on launches need it.
enum Argv {
    /// No custom rule on launches reads `proc.cmdline` (or none is in force): not read.
    Unneeded,
    Read(Vec<Vec<u8>>),
    /// Unreadable, and the custom rules cannot refuse the launch: they do not judge it.
    Unread,
}

/// The facts of a launch that custom rules read, besides the launch itself.
struct LaunchFacts {
    /// The new program's whole argv, when a script reads `proc.cmdline`.
    argv: Option<Vec<Vec<u8>>>,
    /// What every view of the launch shares: the launching program, the uid, the terminal; read
    /// only as the decision needs them (`Process::unread`).
    launcher: Process,
    /// Whether a script reads `proc.interactive`: if it was read for the decision, the exec stop
    /// checks it.
    interactive: bool,
}

impl LaunchFacts {
    /// The terminal the decision rested on, when it read it.
    fn interactive(&self) -> Option<bool> {
        (self.interactive && !self.launcher.unread.contains(Field::ProcInteractive))
            .then_some(self.launcher.interactive)
    }
}

/// The facts of a launch the custom rules of `rule` judge it on, when there are such rules and the
/// launch's `argv` could be read if they need it: the launcher's facts are left unread, to be read
/// as the decision needs them (`facts::read_launcher`).
fn launch_facts(rule: &Rule, argv: Argv) -> Option<LaunchFacts> {
    let custom = rule.custom(Kind::Processes);
    let argv = match argv {
        _ if custom.is_empty() => return None,
        Argv::Unread => return None,
        Argv::Unneeded => None,
        Argv::Read(argv) => Some(argv),
    };
    let fields = custom.fields();
    Some(LaunchFacts {
        argv,
        launcher: facts::unread_launcher(fields),
        interactive: fields.contains(Field::ProcInteractive),
    })
}

/// How an exec that may run proceeds: verified at its exec stop when the rule asks for it
/// (`Rule::launch_verification`: an allow list, custom rules that prevent or block), the stop then
/// applying that effect, in that rule's name, to a mismatch; unchecked otherwise (why: at the CONTINUE in
/// `Supervisor::answer`).
fn proceed(rule: &Rule, launch: &Launch, facts: Option<&LaunchFacts>) -> Answer {
    let verification = rule.launch_verification();
    if verification == Effect::Disable {
        return Answer::Unchecked;
    }
    let argv = facts.and_then(|f| f.argv.as_deref());
    let interactive = facts.and_then(LaunchFacts::interactive);
    let on_mismatch = OnMismatch {
        effect: verification,
        rule: rule.name().to_owned(),
    };
    Answer::Allow {
        expected: Box::new((launch.expected(argv, interactive), on_mismatch)),
    }
}

/// The environment variable that keeps the supervisor from asking for the synchronous wake-up,
/// so that `bench/run` can measure a trapped call without it.
const NO_SYNC_WAKEUP: &str = "DEFENDER_BENCH_NO_SYNC_WAKEUP";

/// The executable of a thread, as audits name processes.
fn caller_exe(tid: u32) -> String {
    procfs::exe(tid)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Supervisor {
    fn report_features(&mut self) {
        log::info!(
            "listener received; killable wait (5.19): {}",
            if self.killable { "on" } else { "off" }
        );
        // For benchmarks only (docs/cli.md): measuring what the synchronous wake-up saves needs
        // a run without it. It changes the cost of a trapped call, never its decision.
        if std::env::var_os(NO_SYNC_WAKEUP).is_some_and(|v| !v.is_empty()) {
            log::warn!("{NO_SYNC_WAKEUP} is set: the synchronous wake-up is off (benchmarks only)");
            return;
        }
        match self.listener.set_sync_wakeup() {
            Ok(()) => log::info!("sync wake-up (6.6): on"),
            Err(e) => self.degraded(&format!(
                "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP is unavailable ({e}): each trapped call costs a cross-CPU wake-up"
            )),
        }
    }

    /// The start-up audit of the capabilities the command gave up (the child handed the listener
    /// over only once it had: child.rs) and of those it kept on purpose; with no rule in force,
    /// which audits nothing, only logged.
    fn report_capabilities(&mut self, plan: &caps::Plan, keep: &[caps::Capability]) {
        for c in keep.iter().filter(|c| !c.is_removed_by_default()) {
            log::warn!("--keep-capability {c}: the defender does not remove {c}; nothing to keep");
        }
        let Some(message) = plan.message() else {
            if plan.left_in_bounding != 0 {
                log::debug!(
                    "the command holds no capability that would let it subvert its supervisor, but in its bounding set, which cannot shrink without CAP_SETPCAP; no_new_privs keeps any program it runs from gaining them"
                );
            }
            return;
        };
        log::info!("{message}");
        let in_force = self.policy.current();
        if in_force.rule.is_none() {
            // No rule matches the container, and then nothing is audited; the log says it.
            return;
        }
        self.report(in_force.rule_name(), message);
    }

    /// `unshare` or `clone` of a new user namespace: refused (EPERM, and reported) unless the
    /// command keeps CAP_SYS_ADMIN on purpose, since in it the command would hold every capability
    /// again over namespaces of its own (a mount namespace where a denied program is bind-mounted
    /// over an allowed path).
    fn on_user_namespace(&mut self, n: &Notification) -> Answer {
        if self.user_namespaces {
            return Answer::Unchecked;
        }
        let message = format!(
            "A new user namespace asked for by {} (pid {}) was refused: in it the command would hold the capabilities it gave up (keep CAP_SYS_ADMIN to allow it)",
            caller_exe(n.pid),
            exec::process_of(n.pid)
        );
        log::warn!("{message}");
        let in_force = self.policy.current();
        if let Some(rule) = in_force.rule_name() {
            self.report(Some(rule), message);
        }
        Answer::Deny(libc::EPERM)
    }

    /// The start-up audit of network enforcement: io_uring is refused from now on.
    fn report_network(&mut self) {
        let in_force = self.policy.current();
        if let (Some(rule), Some(_)) = (self.enforcing_network(), &self.net) {
            let message = format!(
                "Network and DNS enforcement is on (rule {}): io_uring_setup is refused, since io_uring's network operations would bypass every check",
                rule.name()
            );
            self.report(in_force.rule_name(), message);
        }
    }

    fn degraded(&mut self, what: &str) {
        log::warn!("enforcement degraded: {what}");
        let in_force = self.policy.current();
        self.report(
            in_force.rule_name(),
            format!("Enforcement degraded: {what}"),
        );
    }

    /// A `defender` event an operator must see (effect `alert`: the defender reports, it does not
    /// act), naming the rule in force when there is one.
    fn report(&mut self, rule: Option<&str>, message: String) {
        self.sink.emit(Event::defender(
            &self.scope,
            audit::Effect::Alert,
            rule,
            message,
        ));
    }

    /// The loop. Returns the status to exit with.
    fn serve(&mut self, signals: &SignalFd) -> ExitStatus {
        loop {
            let now = Instant::now();
            match self.life.step(now) {
                Step::Wait => {}
                Step::TermAll => self.signal_all(Signal::SIGTERM),
                Step::KillAll => self.signal_all(Signal::SIGKILL),
                Step::Exit(status) => {
                    self.sink.flush_all();
                    return status;
                }
            }
            let timeout = [
                self.life.timeout(now),
                self.sink
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(now)),
            ]
            .into_iter()
            .flatten()
            .min();
            let (sig_ready, notif_ready, hup, findings, keeper_gone) = self.wait(signals, timeout);
            if keeper_gone {
                self.keeper = None;
                self.degraded("the keeper process is gone (killed from outside): if the defender dies now, the command outlives it");
            }
            // SIGCHLD is the only news of a child's change; without it there is nothing to reap.
            let child_news = sig_ready && self.forward_signals(signals);
            if notif_ready {
                self.on_notification();
            } else if hup {
                self.listener_open = false;
            }
            if findings {
                self.drain_findings();
            }
            if child_news {
                self.reap();
            }
            self.sink.flush_due(Instant::now());
        }
    }

    /// Polls the signalfd, the listener, the network sensor's wake-up pipe and the keeper's pidfd:
    /// (signals ready, notification ready, listener hung up, findings waiting, keeper gone).
    fn wait(
        &self,
        signals: &SignalFd,
        timeout: Option<Duration>,
    ) -> (bool, bool, bool, bool, bool) {
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let listener_at = self.listener_open.then(|| {
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let wake_at = self.net.as_ref().map(|n| {
            fds.push(PollFd::new(n.wake.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let keeper_at = self.keeper.as_ref().map(|k| {
            fds.push(PollFd::new(k.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let timeout = timeout.map_or(PollTimeout::NONE, |d| {
            PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return (false, false, false, false, false),
            Err(e) => {
                log::error!("poll: {e}");
                return (false, false, false, false, false);
            }
        }
        let ready = |at: Option<usize>, flags| {
            at.and_then(|i| fds[i].revents())
                .is_some_and(|r| r.intersects(flags))
        };
        (
            ready(Some(0), PollFlags::POLLIN),
            ready(listener_at, PollFlags::POLLIN),
            ready(listener_at, PollFlags::POLLHUP | PollFlags::POLLERR),
            ready(wake_at, PollFlags::POLLIN),
            ready(keeper_at, PollFlags::POLLIN | PollFlags::POLLHUP),
        )
    }

    /// Forwards every pending signal but SIGCHLD to the command (docs/cli.md).
    /// Returns whether SIGCHLD was among them.
    fn forward_signals(&mut self, signals: &SignalFd) -> bool {
        let mut child_news = false;
        while let Ok(Some(info)) = signals.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                child_news = true;
                continue;
            }
            if sig == Signal::SIGCONT && self.job_stopped {
                self.job_stopped = false;
                self.resume_job();
            } else if self.life.main_running() {
                log::debug!("forwarding {sig} to {}", self.main);
                let _ = kill(self.main, sig);
            }
        }
        child_news
    }

    /// Reaps every child that changed state and hands ptrace stops to the exec watch.
    fn reap(&mut self) {
        loop {
            let flags = WaitPidFlag::WNOHANG | WaitPidFlag::__WALL | WaitPidFlag::WUNTRACED;
            let status = match process::wait_any(flags) {
                Ok(Waited::Status(WaitStatus::StillAlive)) => return,
                Ok(Waited::Status(s)) => s,
                Ok(numbered) => {
                    self.on_numbered(numbered);
                    continue;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    self.life.no_children_left();
                    return;
                }
                Err(e) => {
                    log::error!("waitpid: {e}");
                    return;
                }
            };
            self.on_status(&status);
        }
    }

    /// A child killed or stopped by a signal known only by its number (a real-time one): the
    /// exec watch lets a tracee go or forgets it, and the command's end goes to the lifecycle.
    fn on_numbered(&mut self, waited: Waited) {
        let (pid, stopped_by, killed_by) = match waited {
            Waited::KilledBy(pid, sig) => (pid, None, Some(sig)),
            Waited::StoppedBy(pid, sig) => (pid, Some(sig), None),
            Waited::Status(status) => return self.on_status(&status),
        };
        self.watch.on_numbered(pid, stopped_by);
        if pid == self.main
            && let Some(sig) = killed_by
        {
            let status = ExitStatus::Signaled(sig);
            log::info!("command exited: status {status}");
            self.life.main_exited(status);
        }
    }

    /// One `waitpid` result: ptrace stops go to the exec watch, the command's end to the lifecycle.
    fn on_status(&mut self, status: &WaitStatus) {
        // A stop of a traced task is a ptrace stop for the exec watch, not job control.
        let traced = status.pid().is_some_and(|p| self.watch.is_pending(p));
        if let WaitStatus::Stopped(pid, sig) = *status
            && pid == self.main
            && !traced
            && self.job_control
            && matches!(sig, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU)
        {
            self.stop_with_job();
            return;
        }
        if let Some(m) = self.watch.on_status(status) {
            self.on_mismatch(m);
        }
        if status.pid() == Some(self.main)
            && let Some(ended) = ExitStatus::of_wait(status)
        {
            log::info!("command exited: status {ended}");
            self.life.main_exited(ended);
        }
    }

    /// Job control: the command's process group stopped on the terminal (Ctrl-Z). The defender
    /// stops itself (and the keeper, its parent, stops when it sees that), so that the shell sees
    /// its job stop and takes the terminal back. Trapped calls of processes outside the command's
    /// group wait while we are stopped. Returns once a SIGCONT continued us; the SIGCONT is then
    /// read from the signalfd and resumes the command (`resume_job`).
    fn stop_with_job(&mut self) {
        log::debug!("the command stopped on the terminal: stopping with it");
        self.job_stopped = true;
        if let Err(e) = crate::sys::signals::stop_self() {
            log::warn!("cannot stop with the command: {e}");
        }
    }

    /// Continued after a job stop (`fg`): the terminal goes back to the command's process group,
    /// then the group is continued.
    fn resume_job(&mut self) {
        let group = self.main;
        if std::io::stdin().is_terminal()
            && let Err(e) = nix::unistd::tcsetpgrp(std::io::stdin(), group)
        {
            log::warn!("cannot give the terminal back to the command: {e}");
        }
        let _ = nix::sys::signal::killpg(group, Signal::SIGCONT);
    }

    /// Waits for an attached exec to end in its stop (or the caller's death) and handles it. The
    /// kernel guarantees the stop (exec_watch.rs) once the exec is over; waiting here rather than
    /// in `poll` lets it wake us on the caller's CPU. An exec the kernel holds up (a file on a
    /// stalled FUSE mount, a userfaultfd-backed argv) holds the supervisor up as long
    /// (docs/limits.md, "One supervisor loop"). Other children's news met on the way is handled as usual.
    fn await_exec(&mut self, tid: Pid) {
        while self.watch.is_pending(tid) {
            match process::wait_any(WaitPidFlag::__WALL) {
                Ok(Waited::Status(status)) => self.on_status(&status),
                Ok(numbered) => self.on_numbered(numbered),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    log::error!("waiting for the exec of {tid}: {e}");
                    return;
                }
            }
        }
        // The stop was also sent as a SIGCHLD (to the tracer: do_notify_parent_cldstop,
        // kernel/signal.c), which the loop would read in another turn (a poll, two reads of the
        // signalfd, a waitpid) to learn what it has just handled. Taken here, then every child
        // that changed meanwhile is reaped: a change before the take raised the SIGCHLD taken,
        // and its status waits; one after it raises a new SIGCHLD, for the loop.
        match signals::take_pending_sigchld() {
            Ok(true) => self.reap(),
            Ok(false) => {}
            Err(e) => log::error!("taking the SIGCHLD of an exec stop: {e}"),
        }
    }

    fn signal_all(&mut self, sig: Signal) {
        process::signal_descendants(std::process::id() as i32, sig);
    }

    fn on_notification(&mut self) {
        let n = match self.listener.recv() {
            Ok(n) => n,
            // ENOENT: the caller died (or was interrupted) before we received it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR)) => return,
            Err(e) => {
                log::error!("receiving a notification: {e}");
                return;
            }
        };
        let answer = match seccomp::classify(n.arch, n.nr) {
            Some(Trapped::Exec(abi, call)) => self.on_exec(&n, abi, call),
            Some(Trapped::Chroot) => {
                self.resolver.note_chroot();
                Answer::Unchecked
            }
            Some(Trapped::SetUid) => {
                self.users.note_setuid();
                Answer::Unchecked
            }
            Some(Trapped::Net(call)) => self.on_net(&n, call),
            Some(Trapped::IoUringSetup) => self.refuse(&n, "io_uring_setup"),
            Some(Trapped::SourceRoute) => self.refuse(&n, "A source route (setsockopt)"),
            Some(Trapped::Compat32Net) => self.refuse(&n, "A 32-bit socket call"),
            Some(Trapped::RawSocket) => self.on_raw_socket(&n),
            Some(Trapped::UserNamespace) => self.on_user_namespace(&n),
            Some(Trapped::Clone3) => Answer::Deny(libc::ENOSYS),
            Some(Trapped::Socketcall) if seccomp::socketcall_reaches_network(n.args[0]) => {
                self.refuse(&n, "A 32-bit socket call")
            }
            Some(Trapped::Socketcall) => Answer::Unchecked,
            Some(Trapped::Signal(call)) => self.on_signal(&n, call),
            // The filter traps nothing else; an unknown call is failed, never let through.
            None => Answer::Deny(libc::ENOSYS),
        };
        self.answer(&n, answer);
    }

    /// Decides one exec: the custom rules on launches first, then the `processes` section. Every
    /// failure on the way denies it (fail closed).
    fn on_exec(&mut self, n: &Notification, abi: Abi, call: ExecCall) -> Answer {
        let in_force = self.policy.current();
        let Some(rule) = in_force.rule.as_ref().filter(|r| r.judges_launches()) else {
            return Answer::Unchecked;
        };
        if self.life.is_blocked() {
            return Answer::Deny(libc::EPERM);
        }
        let section = rule.processes().effect();
        let mut mem = RemoteMemory::new(n.pid as i32);
        exec::read_ahead(n, abi, call, &mut mem);
        // The whole argv first, when custom rules read it: the launch takes its argv[0] from the
        // same read.
        let argv = match self.launch_argv(n, abi, call, &mut mem, rule) {
            Ok(argv) => argv,
            Err(answer) => return answer,
        };
        let read_argv = match &argv {
            Argv::Read(argv) => Some(argv.as_slice()),
            Argv::Unneeded | Argv::Unread => None,
        };
        let launch = match self.resolver.read_launch(n, abi, call, &mut mem, read_argv) {
            Ok(l) => l,
            Err(e) => {
                log::debug!("exec by {}: cannot read the launch: {e}", n.pid);
                let errno = e.raw_os_error().unwrap_or(libc::EPERM);
                // Not allowed to look (another uid's process without CAP_SYS_PTRACE): fail
                // closed, except under `alert`, which must never break a workload (docs/policy.md).
                let effect = section.stricter(rule.custom(Kind::Processes).strictest());
                if matches!(errno, libc::EPERM | libc::EACCES) && effect == Effect::Alert {
                    let rule_name = rule.name().to_string();
                    let message = format!(
                        "Could not inspect a launch ({e}); it was let through because rule {rule_name} only alerts"
                    );
                    self.report(Some(&rule_name), message);
                    return Answer::Unchecked;
                }
                return Answer::Deny(errno);
            }
        };
        // Whatever the decision, for the console's activity report (no system call).
        crate::activity::note(crate::activity::Kind::Process, || {
            launch.image.path.to_str().map(str::to_owned)
        });
        // The custom rules' facts, read here as the decision needs them, before the id_valid
        // checks below.
        let mut facts = launch_facts(rule, argv);
        let said = match facts.as_mut() {
            Some(f) => loop {
                let needed = {
                    let views = facts::launch_views(&launch, f.argv.as_deref(), &f.launcher);
                    let views: Vec<Facts> = views
                        .iter()
                        .map(|process| Facts {
                            process,
                            subject: Subject::Launch,
                        })
                        .collect();
                    let needed = rule.custom(Kind::Processes).needs(&views);
                    if needed.is_empty() {
                        break custom_rules(rule, &views);
                    }
                    needed
                };
                // Each round reads at least one unread field, so this ends.
                if let Err(e) = facts::read_launcher(n.pid, needed, &self.users, &mut f.launcher) {
                    match self.unread_launch(n, rule, &e) {
                        Ok(_) => break Said::Sections,
                        Err(answer) => return answer,
                    }
                }
            },
            None => Said::Sections,
        };
        let (effect, cause, process) = match said {
            Said::Allow => return self.allowed(n, rule, &launch, facts.as_ref()),
            Said::Violation(effect, cause) => (effect, cause, launch.image.path.clone()),
            // A disabled section judges nothing (the custom rules put launches under judgment).
            Said::Sections => match (section != Effect::Disable)
                .then(|| exec::judge(&launch, rule))
                .flatten()
            {
                None => return self.allowed(n, rule, &launch, facts.as_ref()),
                Some(v) => (section, v.attack.into(), v.process),
            },
        };
        let rule_name = rule.name().to_string();
        let cmdline = match facts.as_ref().and_then(|f| f.argv.as_deref()) {
            Some(argv) => exec::shown_cmdline(argv),
            None => exec::read_cmdline(n, abi, call, &mut mem)
                .unwrap_or_else(|e| format!("(unreadable: {e})")),
        };
        let parent = match facts.as_ref().map(|f| &f.launcher.ppath) {
            Some(ppath) if !ppath.is_empty() => ppath.clone(),
            _ => caller_exe(n.pid),
        };
        // Everything above was read from a PID; it is the caller's only if the call still waits.
        if !self.listener.id_valid(n.id) {
            return Answer::Deny(libc::EPERM);
        }
        let process = process.display().to_string();
        let repeated = effect == Effect::Prevent && self.repeated_denial(n.pid, &launch, &cmdline);
        let event = (!repeated).then(|| {
            Event::process(
                &self.scope,
                &ProcessViolation {
                    rule: &rule_name,
                    effect,
                    cause,
                    pid: exec::process_of(n.pid),
                    process: &process,
                    parent: &parent,
                    cmdline: &cmdline,
                },
            )
        });
        let what = format!("{process} launched from {parent}");
        match self.enforce(&rule_name, effect, event, &what) {
            Ok(()) => proceed(rule, &launch, facts.as_ref()),
            Err(answer) => answer,
        }
    }

    /// A launch nothing objects to. Unchecked, the reads decided nothing but the answer, and a
    /// CONTINUE for a caller that is gone fails by itself; a verified exec attaches to the PID,
    /// which must still be the caller's.
    fn allowed(
        &mut self,
        n: &Notification,
        rule: &Rule,
        launch: &Launch,
        facts: Option<&LaunchFacts>,
    ) -> Answer {
        let verified = rule.launch_verification() != Effect::Disable;
        match verified && !self.listener.id_valid(n.id) {
            true => Answer::Deny(libc::EPERM),
            false => proceed(rule, launch, facts),
        }
    }

    /// The new program's whole argv from the caller's memory, when the custom rules on launches
    /// of `rule` read `proc.cmdline`.
    fn launch_argv(
        &mut self,
        n: &Notification,
        abi: Abi,
        call: ExecCall,
        mem: &mut RemoteMemory,
        rule: &Rule,
    ) -> Result<Argv, Answer> {
        let custom = rule.custom(Kind::Processes);
        if custom.is_empty() || !custom.fields().contains(Field::ProcCmdline) {
            return Ok(Argv::Unneeded);
        }
        match exec::read_argv(n, abi, call, mem) {
            Ok(argv) => Ok(Argv::Read(argv)),
            // The kernel's own answer to this exec (an argv too large, or not readable): nothing
            // would run.
            Err(e) if matches!(e.raw_os_error(), Some(libc::E2BIG | libc::EFAULT)) => {
                Err(Answer::Deny(e.raw_os_error().unwrap_or(libc::EPERM)))
            }
            Err(e) => self.unread_launch(n, rule, &e).map(|_| Argv::Unread),
        }
    }

    /// The facts custom rules judge a launch on could not be read (a caller of another uid
    /// without CAP_SYS_PTRACE): denied where a custom rule could prevent or block it (fail
    /// closed); under rules that only alert, reported, and the sections judge it alone; rules
    /// that only allow grant no exception without their facts.
    fn unread_launch(
        &mut self,
        n: &Notification,
        rule: &Rule,
        e: &io::Error,
    ) -> Result<Option<LaunchFacts>, Answer> {
        if !self.listener.id_valid(n.id) {
            // The caller is gone: nothing to report.
            return Err(Answer::Deny(libc::EPERM));
        }
        match rule.custom(Kind::Processes).strictest() {
            Effect::Disable => Ok(None),
            Effect::Alert => {
                let message = format!(
                    "Could not inspect a launch for custom rules ({e}); it was let through to the processes section because the custom rules of rule {} only alert",
                    rule.name()
                );
                log::warn!("{message}");
                self.report(Some(rule.name()), message);
                Ok(None)
            }
            Effect::Prevent | Effect::Block => {
                log::warn!("exec by {} denied: it cannot be inspected ({e})", n.pid);
                Err(Answer::Deny(libc::EPERM))
            }
        }
    }

    /// Whether this denial repeats the previous one as part of the same attempt (the same file
    /// under a path not tried yet, moments later); remembers it.
    fn repeated_denial(&mut self, pid: u32, launch: &Launch, cmdline: &str) -> bool {
        let file = launch
            .image
            .real
            .clone()
            .unwrap_or_else(|| launch.image.path.clone());
        let path = &launch.image.path;
        let same = self
            .denials
            .repeats((pid, file, cmdline.to_string()), Instant::now());
        if same && !self.tried.contains(path) {
            self.tried.push(path.clone());
            return true;
        }
        self.tried = vec![path.clone()];
        false
    }

    /// Lets an allowed exec run, checked at its exec stop where tracing is possible; a mismatch
    /// there comes to `on_mismatch`.
    fn allow_exec(
        &mut self,
        n: &Notification,
        expected: Expected,
        on_mismatch: OnMismatch,
    ) -> io::Result<()> {
        let tid = Pid::from_raw(n.pid as i32);
        match self.watch.watch(tid, expected, on_mismatch, self.killable) {
            Watch::Armed => {}
            Watch::Unchecked => {}
            Watch::Degraded(e) => self.degraded(&format!(
                "exec verification is unavailable (ptrace: {e}); exec decisions rest on the path read before the call"
            )),
            Watch::Refused(e) => {
                log::warn!("exec by {} denied: it cannot be traced for verification ({e})", n.pid);
                return self.listener.deny(n.id, libc::EPERM);
            }
        }
        // The seize happened after the reads; the caller is the same task only if the call waits.
        if !self.listener.id_valid(n.id) {
            return self.listener.deny(n.id, libc::EPERM);
        }
        // SAFETY: TOCTOU, not memory: the kernel re-reads the path and argv after this answer.
        // The caller is attached with PTRACE_O_TRACEEXEC, so what actually gets executed is
        // compared with what was decided on before it runs (exec_watch.rs): the file (and a
        // script's), argv[0], and, when custom rules judged them, the whole argv and the
        // terminal. The custom rules' other facts cannot change while the call waits: the
        // launched file's names and paths are the file's, checked; the uid is the waiting
        // thread's own (credentials are per thread and no_new_privs keeps the exec from changing
        // them); the launching program's image changes only by an exec of another thread, which
        // kills the waiting one (or by PR_SET_MM_EXE_FILE, which needs CAP_SYS_RESOURCE and
        // replaces nothing the caller could not have run under that name anyway). Facts a
        // decision did not read could not have changed it (`Custom::needs`). Where tracing is
        // unavailable this was reported as a degradation above.
        #[allow(unsafe_code)]
        let sent = unsafe { self.listener.continue_call(n.id) };
        if self.killable && self.watch.is_pending(tid) {
            self.await_exec(tid);
        }
        sent
    }

    /// An allowed exec turned out to run something else than what was decided on (its path or
    /// arguments were swapped in between, or it lost or gained a terminal): that was never
    /// allowed. Killed before its first instruction under `prevent` and `block`, reported under
    /// `alert`: the effect stored when the watch was armed (the allow list's or the custom
    /// rules' that asked for the verification).
    fn on_mismatch(&mut self, m: Mismatch) {
        let OnMismatch { effect, mut rule } = m.on_mismatch;
        if rule.is_empty() {
            // A stop no decision armed (exec_watch.rs): named after the rule in force now.
            rule = self
                .policy
                .current()
                .rule_name()
                .unwrap_or("unknown")
                .to_owned();
        }
        let rule_name = rule;
        let process = m.exe.display().to_string();
        log::warn!(
            "pid {} executed {process} ({}), not the launch its exec was decided on",
            m.pid,
            m.cmdline
        );
        self.sink.emit(Event::process(
            &self.scope,
            &ProcessViolation {
                rule: &rule_name,
                effect,
                cause: Attack::NotAllowed.into(),
                pid: m.pid.as_raw() as u32,
                process: &process,
                parent: "unknown",
                cmdline: &m.cmdline,
            },
        ));
        match effect.consequence() {
            Consequence::Proceed => self.watch.release(m.pid, None),
            Consequence::Refuse => {
                let _ = kill(m.pid, Signal::SIGKILL);
            }
            Consequence::Stop => {
                let _ = kill(m.pid, Signal::SIGKILL);
                self.block(&rule_name, &process);
            }
        }
    }
}
