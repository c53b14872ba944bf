//! The one place where a decision becomes the kernel's answer to a trapped call (deny with an
//! errno, the result of a call the supervisor performed, or CONTINUE), and where a violation's
//! effect is applied: its audit event emitted, the call refused, the container stopped for `block`
//! (`Effect::consequence` is the mapping, policy/matching.rs).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Supervisor;
use super::exec_watch::OnMismatch;
use crate::audit::{self, Event};
use crate::policy::{Consequence, Effect};
use crate::sensors::exec::Expected;
use crate::sys::seccomp::Notification;

/// The answer to one trapped call.
pub(super) enum Answer {
    /// Let the exec run, checked at its exec stop against what was decided on; a mismatch comes
    /// to `on_mismatch`. Boxed: every other answer is a few bytes.
    Allow {
        expected: Box<(Expected, OnMismatch)>,
    },
    /// Fail it with this errno.
    Deny(i32),
    /// Let it run unchecked: nothing decided depends on the caller's memory (why: at the
    /// CONTINUE in [`Supervisor::answer`]).
    Unchecked,
    /// The supervisor performed the call itself: its result, or the errno to fail it with.
    Performed(Result<i64, i32>),
    /// A thread performs the call and answers when it is done.
    Deferred,
}

/// A step of a decision: `Ok` to go on, `Err(answer)` to stop with that answer.
pub(super) type Checked = Result<(), Answer>;

impl Supervisor {
    /// Sends the answer to notification `n`.
    pub(super) fn answer(&mut self, n: &Notification, answer: Answer) {
        let sent = match answer {
            Answer::Deny(errno) => self.listener.deny(n.id, errno),
            // SAFETY: TOCTOU, not memory: no decision here rests on the caller's memory. Either
            // nothing is enforced for processes (no rule, or neither a `processes` section nor a
            // custom rule on launches that can object), or a launch that could not be inspected
            // under `alert`, which must never break a workload; or the call is a chroot or a
            // setuid-family call, which is only noted (before it happens) and allowed whatever its
            // arguments; or the exec was
            // decided under a deny list and custom rules that only allow or alert
            // (`Rule::launch_verification` is `disable`). A deny list names files; a caller able
            // to swap the path after the check could as well copy, link or memfd-load the denied
            // program under another name, which the list cannot stop either (docs/limits.md),
            // so racing the check gains it nothing. The same holds of a custom rule's `allow`,
            // an exception over such a list: what a race could swap in after an allowed check,
            // the caller could launch under the allowed name and arguments itself. A custom rule
            // that only alerts never refuses: a race can at most spare the caller an alert, the
            // price of not tracing every launch (docs/exec.md). Launches under an allow list or
            // custom rules that prevent or block are verified at their exec stop (`Allow`).
            // Socket calls: let through unchecked only when the rule enforces neither network
            // nor DNS (a bind or send: nothing is decided at all; a connect too when the
            // supervisor may not take the caller's socket to steer it to the DNS forwarder, or
            // when it may not look into the caller under `alert`); or for an i386 socketcall
            // whose call number, a register the workload cannot change while the call waits (no
            // ptrace stop happens inside it), is not one that reaches the network: the kernel
            // dispatches on that same number. Every other socket call, whatever its socket's
            // family, is performed by the supervisor on a duplicate of the caller's socket with
            // the arguments it copied once (unix, netlink, AF_ALG: with the caller's credentials,
            // supervisor/perform.rs). The creation of a raw or packet socket under a rule that does
            // not enforce network or DNS, or only alerts, is decided on the registers of
            // socket(2) alone; a new user namespace asked for by a command that keeps
            // CAP_SYS_ADMIN on purpose, on the flags of unshare(2) or clone(2), a register.
            // Signal calls (guard.rs): the target of a kill, tgkill, rt_(tg)sigqueueinfo,
            // pidfd_open, prlimit64 or setpgid is a register, which cannot change after the
            // check, and the defender never changes its pids or its process group; a tkill's
            // target thread was found alive outside the defender, and its id could name a
            // defender thread only if that thread died and the kernel came round to the same id
            // (pid_max of them) while the call waits. A caller in a PID namespace below ours
            // names processes of that namespace, where no defender process is, and a task's PID
            // namespace never changes.
            // The one `unsafe` outside sys: a TOCTOU contract, not memory safety.
            #[allow(unsafe_code)]
            Answer::Unchecked => unsafe { self.listener.continue_call(n.id) },
            Answer::Allow { expected } => {
                let (expected, on_mismatch) = *expected;
                self.allow_exec(n, expected, on_mismatch)
            }
            Answer::Performed(result) => self.listener.complete(n.id, result),
            Answer::Deferred => Ok(()),
        };
        if let Err(e) = sent {
            // ENOENT: the caller is gone (killed while waiting); nothing ran.
            if e.raw_os_error() != Some(libc::ENOENT) {
                log::error!("answering notification {}: {e}", n.id);
            }
        }
    }

    /// Applies the effect of a violation of rule `rule`: emits its audit `event` (none when it
    /// repeats one already emitted), then by `Effect::consequence`: `Ok` for the call to go on;
    /// EPERM to refuse it; for `block`, EPERM and the container stopped (`what` names what was
    /// done, for the block event). Every sensor's violation goes through here.
    pub(super) fn enforce(
        &mut self,
        rule: &str,
        effect: Effect,
        event: Option<Event>,
        what: &str,
    ) -> Checked {
        if let Some(event) = event {
            self.sink.emit(event);
        }
        match effect.consequence() {
            Consequence::Proceed => Ok(()),
            Consequence::Refuse => Err(Answer::Deny(libc::EPERM)),
            Consequence::Stop => {
                if !self.life.is_blocked() {
                    self.block(rule, what);
                }
                Err(Answer::Deny(libc::EPERM))
            }
        }
    }

    /// The `block` effect: report, then kill every process of the container; the loop exits
    /// with [`ExitStatus::Blocked`](crate::exit::ExitStatus::Blocked) once all are gone.
    pub(super) fn block(&mut self, rule: &str, what: &str) {
        let message = format!(
            "Container {} blocked by rule {rule}: {what}",
            self.scope.container
        );
        log::warn!("{message}");
        self.sink.emit(Event::defender(
            &self.scope,
            audit::Effect::Block,
            Some(rule),
            message,
        ));
        self.life.block();
        self.signal_all(Signal::SIGKILL);
    }
}

/// How close in time two violations of the same kind by the same caller must be to count as one
/// attempt, and be audited once (a PATH search takes microseconds; one lookup asks for A and AAAA).
const SAME_ATTEMPT: Duration = Duration::from_millis(500);

/// The last attempt audited, by a key that says what makes two attempts the same.
pub(super) struct Attempts<K> {
    last: Option<(K, Instant)>,
}

impl<K: PartialEq> Attempts<K> {
    pub(super) fn new() -> Attempts<K> {
        Attempts { last: None }
    }

    /// Whether `key`, seen at `now`, continues the last attempt (the same key, less than
    /// SAME_ATTEMPT after it was last seen); remembers it as the last either way.
    pub(super) fn repeats(&mut self, key: K, now: Instant) -> bool {
        let same = self
            .last
            .as_ref()
            .is_some_and(|(k, at)| *k == key && now.duration_since(*at) < SAME_ATTEMPT);
        self.last = Some((key, now));
        same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut a = Attempts::new();
        for (key, at, want) in [
            ((7, "a"), 0, false),
            ((7, "a"), 100, true),
            ((7, "a"), 550, true),
            ((7, "a"), 1100, false),
            ((8, "a"), 1150, false),
            ((7, "a"), 1200, false),
            ((7, "b"), 1250, false),
        ] {
            assert_eq!(a.repeats(key, ms(at)), want, "{key:?} at {at}");
        }
    }
}
