//! PID-1 duties: the signal mask and signalfd, forwarding, and the lifecycle that
//! decides when to signal the leftovers and with which status to exit. The lifecycle is a pure
//! state machine; the loop in `mod.rs` feeds it facts and carries out its actions.

use std::time::{Duration, Instant};

use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::exit::ExitStatus;

/// A signalfd for every signal: all are blocked since the first instruction (`sys::signals`), and
/// every one sent to the defender is read here and forwarded, the fault signals (SEGV, BUS, FPE,
/// ILL, TRAP, SYS, ABRT) included: sent with kill(2) they are messages like any other. A real
/// fault of the defender's own still kills it (the kernel forces it through the block).
pub fn signals() -> nix::Result<SignalFd> {
    let mask = SigSet::all();
    // Already blocked by the constructor; blocking again costs nothing and holds where it did
    // not run.
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// What the loop must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Wait,
    /// The command is gone but other processes remain: TERM them all, once.
    TermAll,
    /// The grace period is over (or the container is blocked): KILL all that is left.
    KillAll,
    Exit(ExitStatus),
}

#[derive(Debug)]
pub struct Lifecycle {
    grace: Duration,
    /// The command's status as an init reports it (code, or 128+signal).
    main_status: Option<ExitStatus>,
    /// True until `waitpid` says ECHILD: nothing of the container is left.
    children_left: bool,
    blocked: bool,
    term_sent: Option<Instant>,
}

impl Lifecycle {
    pub fn new(grace: Duration) -> Self {
        Lifecycle {
            grace,
            main_status: None,
            children_left: true,
            blocked: false,
            term_sent: None,
        }
    }

    pub fn main_exited(&mut self, status: ExitStatus) {
        self.main_status.get_or_insert(status);
    }

    pub fn no_children_left(&mut self) {
        self.children_left = false;
    }

    pub fn block(&mut self) {
        self.blocked = true;
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    pub fn main_running(&self) -> bool {
        self.main_status.is_none()
    }

    /// The next step at `now`.
    pub fn step(&mut self, now: Instant) -> Step {
        match (self.main_status, self.children_left) {
            (_, false) if self.blocked => Step::Exit(ExitStatus::Blocked),
            (Some(status), false) => Step::Exit(status),
            _ if self.blocked => Step::KillAll,
            (None, true) => Step::Wait,
            (Some(_), true) => match self.term_sent {
                None => {
                    self.term_sent = Some(now);
                    Step::TermAll
                }
                Some(at) if now >= at + self.grace => Step::KillAll,
                Some(_) => Step::Wait,
            },
            // ECHILD before the command's status was seen cannot happen (it is our child).
            (None, false) => Step::Exit(ExitStatus::Blocked),
        }
    }

    /// How long the loop may sleep before `step` has something new to say without any event.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.blocked || self.term_sent.is_some_and(|at| now >= at + self.grace) {
            // Killing: keep scanning for processes forked in between.
            return Some(Duration::from_millis(20));
        }
        self.term_sent
            .map(|at| (at + self.grace).saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(5);
        let later = |s| t0 + Duration::from_secs(s);

        // (events, time, expected step)
        let mut l = Lifecycle::new(grace);
        assert_eq!(l.step(t0), Step::Wait, "command running");

        l.main_exited(ExitStatus::Exited(3));
        assert_eq!(l.step(t0), Step::TermAll, "leftovers get TERM once");
        assert_eq!(l.step(later(1)), Step::Wait, "then the grace period");
        assert_eq!(l.timeout(later(1)), Some(Duration::from_secs(4)));
        assert_eq!(l.step(later(5)), Step::KillAll, "then KILL");
        l.no_children_left();
        assert_eq!(
            l.step(later(6)),
            Step::Exit(ExitStatus::Exited(3)),
            "the command's status"
        );

        let mut l = Lifecycle::new(grace);
        l.main_exited(ExitStatus::Signaled(15));
        l.no_children_left();
        assert_eq!(
            l.step(t0),
            Step::Exit(ExitStatus::Signaled(15)),
            "nothing left: exit at once"
        );

        let mut l = Lifecycle::new(grace);
        l.block();
        assert_eq!(l.step(t0), Step::KillAll, "block kills everything");
        l.main_exited(ExitStatus::Signaled(9));
        assert_eq!(l.step(t0), Step::KillAll);
        l.no_children_left();
        assert_eq!(
            l.step(t0),
            Step::Exit(ExitStatus::Blocked),
            "block has its own status"
        );
    }
}
