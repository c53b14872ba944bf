//! The child's side, between fork and exec: become the command's own process group (and the
//! terminal's foreground), restore the signal mask the defender blocked, install the filter, give
//! up the capabilities that would let the command subvert its supervisor, hand the listener to the
//! supervisor and exec COMMAND (with SIGPIPE back to default), whose own launch is the first
//! trapped call.

use std::ffi::CString;
use std::io::IsTerminal;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::unistd::{Pid, getpid, setpgid, tcsetpgrp};

use super::caps::Plan;
use crate::exit::ExitStatus;
use crate::sys::{caps, fdpass, process, signals};

/// The command, prepared before fork.
pub struct Program {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// As the user wrote it, for messages.
    pub shown: String,
}

/// Never returns: execs COMMAND or exits with [`ExitStatus::CannotStart`] (filter not installed),
/// [`ExitStatus::CannotExecute`] or [`ExitStatus::NotFound`].
/// `network`: whether the filter traps socket calls too; `guarded`: the values that reach the
/// defender's processes, when the filter guards them from signals (not PID 1); `capabilities`:
/// what to give up.
pub fn exec(
    sock: OwnedFd,
    program: &Program,
    network: bool,
    guarded: Option<&[u32]>,
    capabilities: &Plan,
) -> ! {
    // A process group of its own, like tini: job-control signals from a terminal go to the
    // command, and the defender can tell the command's group from its own. SIGTTOU is still
    // blocked here, so taking the foreground from the background does not stop us.
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    if std::io::stdin().is_terminal() {
        let _ = tcsetpgrp(std::io::stdin(), getpid());
    }
    if let Err(e) = signals::restore_sigpipe() {
        fail(
            ExitStatus::CannotStart,
            &format!("cannot restore SIGPIPE: {e}"),
        );
    }
    if let Err(e) = signals::restore_original() {
        fail(
            ExitStatus::CannotStart,
            &format!("cannot restore the signal mask: {e}"),
        );
    }
    let (listener, killable) = match crate::seccomp::install(network, guarded) {
        Ok(l) => l,
        Err(e) => fail(
            ExitStatus::CannotStart,
            &format!("cannot install the seccomp filter: {e}"),
        ),
    };
    // Before the listener goes to the supervisor, which reports what was removed once it has it:
    // a child that could not give everything up never hands it over, and COMMAND never runs.
    if let Err(e) = give_up(capabilities) {
        fail(
            ExitStatus::CannotStart,
            &format!("cannot remove the command's capabilities: {e}"),
        );
    }
    let tag = if killable { b'K' } else { b'L' };
    let handed = match network {
        true => fdpass::announce_fd(&sock, listener.as_raw_fd(), tag),
        false => fdpass::send_fd(&sock, listener.as_raw_fd(), tag),
    };
    if let Err(e) = handed {
        fail(
            ExitStatus::CannotStart,
            &format!("cannot hand the seccomp listener to the supervisor: {e}"),
        );
    }
    drop(listener);
    drop(sock);
    let err = process::execve(&program.path, &program.argv, &program.envp);
    // docs/cli.md: COMMAND does not exist, or it exists but cannot be executed, including when
    // its launch was prevented by the policy (EPERM from the supervisor).
    let status = if err.raw_os_error() == Some(libc::ENOENT) {
        ExitStatus::NotFound
    } else {
        ExitStatus::CannotExecute
    };
    fail(status, &format!("cannot execute {}: {err}", program.shown))
}

/// Takes the plan's capabilities out of every set: the bounding set first (it needs CAP_SETPCAP,
/// which is given up last), the ambient set, then the effective, permitted and inheritable sets,
/// which any process may shrink (capset(2)). Checks the outcome: an error, or any set not as
/// planned, and the command must not run.
fn give_up(plan: &Plan) -> Result<(), String> {
    if plan.remove == 0 {
        return Ok(());
    }
    let held = caps::read().map_err(|e| format!("capget: {e}"))?;
    for cap in plan.bounding_order() {
        caps::drop_bounding(cap.number()).map_err(|e| format!("PR_CAPBSET_DROP {cap}: {e}"))?;
    }
    for cap in plan.ambient() {
        caps::lower_ambient(cap.number())
            .map_err(|e| format!("PR_CAP_AMBIENT_LOWER {cap}: {e}"))?;
    }
    let want = plan.outcome(&held);
    caps::set(want.effective, want.permitted, want.inheritable)
        .map_err(|e| format!("capset: {e}"))?;
    match caps::read().map_err(|e| format!("capget: {e}"))? {
        now if now == want => Ok(()),
        now => Err(format!("the sets are {now:x?}, not {want:x?}")),
    }
}

fn fail(status: ExitStatus, message: &str) -> ! {
    log::error!("{message}");
    status.exit()
}
