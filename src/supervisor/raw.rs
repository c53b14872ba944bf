//! Raw and packet sockets under network or DNS enforcement (why they are refused:
//! sensors/family.rs): the trapped `socket()` of a raw kind, and applying the rule to one.

use super::Supervisor;
use super::answer::Answer;
use super::caller_exe;
use crate::audit::{self, Event};
use crate::policy::{Effect, Rule};
use crate::seccomp;
use crate::sensors::{exec, family};
use crate::sys::seccomp::Notification;

impl Supervisor {
    /// A trapped `socket()` of a raw or packet kind (the filter traps no other).
    pub(super) fn on_raw_socket(&mut self, n: &Notification) -> Answer {
        let (domain, ty) = (n.args[0] as i32, n.args[1] as i32);
        let Some(rule) = self.enforcing_network() else {
            return Answer::Unchecked;
        };
        if self.life.is_blocked() {
            return Answer::Deny(libc::EPERM);
        }
        // The filter decided on the same registers; a mismatch would be a filter bug: fail closed.
        if !seccomp::is_raw_socket(domain, ty) {
            return Answer::Deny(libc::EPERM);
        }
        let what = format!("{} opened", family::describe(domain, ty));
        self.raw_socket(n, &rule, &what)
    }

    /// Applies the rule to a raw socket (`Rule::socket_effect`): reports, and refuses or lets
    /// through. `what` names the activity up to its process (`AF_PACKET SOCK_RAW socket opened`).
    pub(super) fn raw_socket(&mut self, n: &Notification, rule: &Rule, what: &str) -> Answer {
        let effect = rule.socket_effect();
        let process = caller_exe(n.pid);
        // Under `block` the block event says it all.
        let event = (effect != Effect::Block).then(|| {
            let pid = exec::process_of(n.pid);
            let message = family::raw_message(what, &process, pid, rule.name(), effect);
            log::warn!("{message}");
            Event::defender(
                &self.scope,
                audit::Effect::of(effect),
                Some(rule.name()),
                message,
            )
        });
        match self.enforce(rule.name(), effect, event, &format!("{what} by {process}")) {
            // Decided on the call's registers alone (see the CONTINUE in answer.rs).
            Ok(()) => Answer::Unchecked,
            Err(answer) => answer,
        }
    }
}
