//! The command never outlives the defender. As PID 1 the kernel sees to it: when a PID namespace's
//! init dies, the kernel kills every other process of the namespace (zap_pid_ns_processes). When
//! the defender is not PID 1 (run locally, or under ECS `initProcessEnabled`, where Docker's init
//! is PID 1), nothing would: so `defender run` first forks a *keeper*. The parent, whose pid the
//! caller knows, becomes the keeper: a child subreaper that forwards every signal to the
//! defender, waits for it, and exits with its status. The child carries on as the defender
//! (supervisor, subreaper, parent of the command). If the defender dies abnormally (killed, or a
//! fault), the processes of the workload are orphaned up to the nearest subreaper, the keeper,
//! which SIGKILLs every descendant it has until none is left, and exits with 128 + the signal
//! that killed the defender.
//!
//! The workload cannot signal the keeper or the defender (the seccomp filter refuses it; see
//! `guard.rs`); if the keeper is killed from outside, the defender carries on without its safety
//! net and says so.

use std::io;
use std::os::fd::AsFd;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::init;
use crate::exit::ExitStatus;
use crate::sys::process::Waited;
use crate::sys::{process, signals};

/// The keeper's pid, as the defender (its child) sees it; unset when there is no keeper (PID 1).
static KEEPER: OnceLock<Pid> = OnceLock::new();

/// The keeper of this defender, if it has one.
pub fn keeper() -> Option<Pid> {
    KEEPER.get().copied()
}

/// Forks the keeper when the defender is not PID 1; returns in the defender only. In the keeper
/// it never returns: it exits with the defender's status. Must be called before any thread exists
/// (the fork fails otherwise).
pub fn start() -> io::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    // Orphans of the workload come back to the keeper once the defender (the nearer subreaper)
    // is gone.
    nix::sys::prctl::set_child_subreaper(true)?;
    let signals = init::signals()?;
    // No logger, console or sensor thread exists before `run` reaches the supervisor: the fork
    // checks that there is a single thread.
    match process::fork()? {
        ForkResult::Child => {
            let _ = KEEPER.set(nix::unistd::getppid());
            Ok(())
        }
        ForkResult::Parent { child } => {
            // As for the defender: a workload of the same uid must not trace the keeper (and
            // make it kill the defender, or exit) or read its memory.
            if let Err(e) = nix::sys::prctl::set_dumpable(false) {
                log::warn!("keeper: PR_SET_DUMPABLE: {e}");
            }
            keep(child, &signals)
        }
    }
}

/// The keeper's loop: forward, wait, and once the defender is gone, kill what is left.
fn keep(defender: Pid, signals: &SignalFd) -> ! {
    // How the defender ended: exited with the command's status (or its own error status), or
    // killed by a signal, when the workload is killed and the keeper reports the signal.
    let mut ended: Option<ExitStatus> = None;
    loop {
        // Killing: scan again shortly for processes forked in between or reparented to us late.
        let timeout = match ended {
            Some(_) => PollTimeout::from(20u8),
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let Err(e) = poll(&mut fds, timeout)
            && e != Errno::EINTR
        {
            log::error!("keeper: poll: {e}");
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig != Signal::SIGCHLD && ended.is_none() {
                let _ = kill(defender, sig);
            }
        }
        loop {
            match process::wait_any(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED) {
                Ok(Waited::KilledBy(pid, sig)) if pid == defender => {
                    log::error!(
                        "the supervisor (pid {defender}) was killed by signal {sig}: killing the command and everything it started"
                    );
                    ended = Some(ExitStatus::Signaled(sig));
                }
                Ok(Waited::KilledBy(..) | Waited::StoppedBy(..)) => {}
                Ok(Waited::Status(WaitStatus::Exited(pid, code))) if pid == defender => {
                    ended = Some(ExitStatus::Exited(code));
                }
                Ok(Waited::Status(WaitStatus::Signaled(pid, sig, _))) if pid == defender => {
                    log::error!(
                        "the supervisor (pid {defender}) was killed by {sig}: killing the command and everything it started"
                    );
                    ended = Some(ExitStatus::Signaled(sig as i32));
                }
                // Job control: the defender stopped because its command did (Ctrl-Z); stop too,
                // so that the shell that started us sees its job stop. SIGCONT from the shell
                // continues us both.
                Ok(Waited::Status(WaitStatus::Stopped(pid, _))) if pid == defender => {
                    let _ = signals::stop_self();
                }
                Ok(Waited::Status(WaitStatus::StillAlive)) => break,
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => {
                    if let Some(status) = ended {
                        status.exit();
                    }
                    break;
                }
                Err(e) => {
                    log::error!("keeper: waitpid: {e}");
                    break;
                }
            }
        }
        if ended.is_some() {
            // Whatever is left was the defender's: the command and every descendant, setsid or
            // double-forked ones included (they were orphaned up to us, the nearest subreaper).
            process::signal_descendants(std::process::id() as i32, Signal::SIGKILL);
        }
    }
}

/// On the defender's own fatal paths (a panic), kill the whole workload first, so that nothing
/// runs on unsupervised even without a keeper, then abort. The release build unwinds only so that
/// the firewall's proxy can contain a panic in one request ([`crate::waas::contain`]): a panic in
/// such a scope is logged and unwinds to it; any other (the seccomp supervisor's, a sensor's, the
/// proxy's own outside a request) ends the defender from here, before any unwinding, as
/// `panic = "abort"` would.
pub fn kill_workload_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if crate::waas::contain::active() {
            log::error!(
                "web application firewall: {info} (contained: that request or connection fails closed)"
            );
            return;
        }
        previous(info);
        process::signal_descendants(std::process::id() as i32, Signal::SIGKILL);
        std::process::abort();
    }));
}
