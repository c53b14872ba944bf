//! The exit statuses of `defender`, part of its interface (docs/cli.md, "exit status"): every
//! status the binary, the keeper, the supervisor and the forked child exit with is named here.

use nix::sys::wait::WaitStatus;

/// How `defender` ends, as its caller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done (a subcommand succeeded, or `--help`).
    Success,
    /// 1: a subcommand other than `run` failed for a reason that is not its input (writing the
    /// output, installing the binary).
    Failure,
    /// 2: the input is invalid (`policy check` of an invalid policy, an input `fargate embed` or
    /// `dockerfile embed` cannot embed, bad flags of a subcommand other than `run`).
    Invalid,
    /// The command exited with this status; an init reports it unchanged.
    Exited(i32),
    /// The command (or the defender, as the keeper saw it) was killed by signal N: 128 + N.
    Signaled(i32),
    /// 99: a `block` effect stopped the container.
    Blocked,
    /// 125: the defender itself could not start (bad flags, invalid policy, enforcement
    /// unavailable, the filter or the capabilities could not be set up).
    CannotStart,
    /// 126: COMMAND exists but cannot be executed, or its own launch was prevented by the policy.
    CannotExecute,
    /// 127: COMMAND does not exist.
    NotFound,
}

impl ExitStatus {
    /// The number the process exits with.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Invalid => 2,
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => 128 + sig,
            ExitStatus::Blocked => 99,
            ExitStatus::CannotStart => 125,
            ExitStatus::CannotExecute => 126,
            ExitStatus::NotFound => 127,
        }
    }

    /// The status an init reports for a child that ended: its exit code, or 128 + the signal
    /// that killed it; `None` for a status that is not an end (a stop, a ptrace event).
    pub fn of_wait(status: &WaitStatus) -> Option<ExitStatus> {
        match *status {
            WaitStatus::Exited(_, code) => Some(ExitStatus::Exited(code)),
            WaitStatus::Signaled(_, sig, _) => Some(ExitStatus::Signaled(sig as i32)),
            _ => None,
        }
    }

    /// Ends this process with the status at once (no destructor runs): the forked child's and
    /// the keeper's way out.
    pub fn exit(self) -> ! {
        std::process::exit(self.code())
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    /// The low 8 bits, as exit(2) keeps them.
    fn from(status: ExitStatus) -> std::process::ExitCode {
        std::process::ExitCode::from(status.code() as u8)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn codes_of_the_contract() {
        let cases = [
            (ExitStatus::Success, 0),
            (ExitStatus::Failure, 1),
            (ExitStatus::Invalid, 2),
            (ExitStatus::Exited(3), 3),
            (ExitStatus::Signaled(9), 137),
            (ExitStatus::Blocked, 99),
            (ExitStatus::CannotStart, 125),
            (ExitStatus::CannotExecute, 126),
            (ExitStatus::NotFound, 127),
        ];
        for (status, code) in cases {
            assert_eq!(status.code(), code, "{status:?}");
        }
    }

    #[test]
    fn statuses() {
        let p = nix::unistd::Pid::from_raw(5);
        let code = |s: &WaitStatus| ExitStatus::of_wait(s).map(ExitStatus::code);
        assert_eq!(code(&WaitStatus::Exited(p, 255)), Some(255));
        assert_eq!(
            code(&WaitStatus::Signaled(p, Signal::SIGTERM, false)),
            Some(143)
        );
        assert_eq!(
            code(&WaitStatus::Signaled(p, Signal::SIGUSR1, true)),
            Some(138)
        );
        assert_eq!(code(&WaitStatus::StillAlive), None);
    }
}
