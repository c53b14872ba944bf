//! The child's side: COMMAND found before fork (as execvp(3) would), then between fork and exec:
//! become the command's own process group (and the terminal's foreground), restore the signal
//! mask the defender blocked, install the filter, give up the capabilities that would let the
//! command subvert its supervisor, hand the listener to the supervisor and exec COMMAND (with
//! SIGPIPE back to default), whose own launch is the first trapped call.

use std::ffi::{CString, OsString};
use std::io::{self, IsTerminal};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Pid, getpid, setpgid, tcsetpgrp};

use super::SupervisorError;
use super::caps::{Capability, Plan};
use crate::exit::ExitStatus;
use crate::sys::caps::CapSets;
use crate::sys::{caps, fdpass, process, signals};

/// The command, prepared before fork.
pub struct Program {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// As the user wrote it, for messages.
    pub shown: String,
}

impl Program {
    /// Finds COMMAND like execvp(3) would, before fork, so the child only has to exec.
    pub fn find(command: &[OsString]) -> Result<Program, SupervisorError> {
        let first = &command[0];
        let shown = first.to_string_lossy().into_owned();
        let path = if first.as_bytes().contains(&b'/') {
            PathBuf::from(first)
        } else {
            let search = std::env::var_os("PATH").unwrap_or_else(|| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            });
            let mut not_executable = None;
            let found = std::env::split_paths(&search)
                .map(|dir| dir.join(first))
                .find(|candidate| match std::fs::metadata(candidate) {
                    Ok(m) if m.is_file() && is_executable(candidate) => true,
                    Ok(_) => {
                        not_executable.get_or_insert_with(|| candidate.clone());
                        false
                    }
                    Err(_) => false,
                });
            match (found, not_executable) {
                (Some(p), _) => p,
                (None, Some(p)) => p,
                (None, None) => return Err(SupervisorError::NotFound { command: shown }),
            }
        };
        let cstr = |s: &[u8]| {
            CString::new(s).map_err(|_| SupervisorError::NotExecutable {
                command: shown.clone(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            })
        };
        Ok(Program {
            path: cstr(path.as_os_str().as_bytes())?,
            argv: command
                .iter()
                .map(|a| cstr(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            // The console token is the defender's secret: a compromised command must not find it
            // in its environment (it could post forged audits or read the policy with it).
            envp: std::env::vars_os()
                .filter(|(k, _)| k != CONSOLE_TOKEN_ENV)
                .map(|(k, v)| cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
                .collect::<Result<_, _>>()?,
            shown: shown.clone(),
        })
    }
}

/// The environment variable of `--token` (docs/cli.md), withheld from the command.
const CONSOLE_TOKEN_ENV: &str = "DEFENDER_TOKEN";

fn is_executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
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
fn give_up(plan: &Plan) -> Result<(), GiveUpError> {
    if plan.remove == 0 {
        return Ok(());
    }
    let held = caps::read().map_err(GiveUpError::Capget)?;
    for cap in plan.bounding_order() {
        caps::drop_bounding(cap.number())
            .map_err(|source| GiveUpError::DropBounding { cap, source })?;
    }
    for cap in plan.ambient() {
        caps::lower_ambient(cap.number())
            .map_err(|source| GiveUpError::LowerAmbient { cap, source })?;
    }
    let want = plan.outcome(&held);
    caps::set(want.effective, want.permitted, want.inheritable).map_err(GiveUpError::Capset)?;
    match caps::read().map_err(GiveUpError::Capget)? {
        now if now == want => Ok(()),
        now => Err(GiveUpError::NotAsPlanned { now, want }),
    }
}

/// Why the command's capabilities could not be given up as planned.
#[derive(Debug, thiserror::Error)]
enum GiveUpError {
    #[error("capget: {0}")]
    Capget(#[source] io::Error),
    #[error("PR_CAPBSET_DROP {cap}: {source}")]
    DropBounding { cap: Capability, source: io::Error },
    #[error("PR_CAP_AMBIENT_LOWER {cap}: {source}")]
    LowerAmbient { cap: Capability, source: io::Error },
    #[error("capset: {0}")]
    Capset(#[source] io::Error),
    #[error("the sets are {now:x?}, not {want:x?}")]
    NotAsPlanned { now: CapSets, want: CapSets },
}

fn fail(status: ExitStatus, message: &str) -> ! {
    log::error!("{message}");
    status.exit()
}
