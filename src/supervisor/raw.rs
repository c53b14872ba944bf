//! Raw and packet sockets under network or DNS enforcement. Their packets carry headers the
//! workload writes itself: a raw UDP socket puts any destination port in its own UDP header
//! (port 53 for a DNS question the forwarder never sees), IP_HDRINCL any destination address in
//! its own IP header, a packet socket whole frames. The addresses a connect or send names say
//! nothing of that, and judging the headers of every packet would mean parsing IP, IPv6 extension
//! headers, fragments and link layers in the supervisor. So they are refused: their creation
//! (`socket()`, trapped only for raw kinds, decided on its registers) and every trapped call on
//! one made earlier (while the rule in force did not enforce network or DNS).
//!
//! The effect is the strictest of the rule's `network` and `dns` sections: `prevent` refuses with
//! EPERM and a `defender` event; `block` stops the container; `alert` lets the socket be made and
//! reports that its traffic is not checked (alert never breaks a workload).

use super::net::caller_exe;
use super::{Answer, Supervisor};
use crate::audit::Event;
use crate::policy::{Effect, Rule};
use crate::seccomp;
use crate::seccomp::NetCall;
use crate::sensors::exec;
use crate::sys::seccomp::Notification;
use crate::sys::socket::SocketKind;

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
        self.raw_socket(n, &rule, &format!("{} opened", describe(domain, ty)))
    }

    /// A trapped call on a socket of kind `kind`: `Some(answer)` when it is a raw or packet socket
    /// that the rule in force refuses; `None` to judge the call as usual.
    pub(super) fn raw_socket_call(
        &mut self,
        n: &Notification,
        rule: Option<&Rule>,
        call: NetCall,
        kind: SocketKind,
    ) -> Option<Answer> {
        let rule = rule?;
        if !seccomp::is_raw_socket(kind.domain, kind.ty) {
            return None;
        }
        // Under `alert`, the socket's creation was reported (when it was made under this rule);
        // its calls go on to the usual checks of the addresses they name.
        if strictest(rule) == Effect::Alert {
            return None;
        }
        let call = format!("{call:?}").to_lowercase();
        let what = format!("{call} on an {}", describe(kind.domain, kind.ty));
        Some(self.raw_socket(n, rule, &what))
    }

    /// Applies the rule to a raw socket: reports, and refuses or lets through. `what` names the
    /// activity up to its process (`AF_PACKET SOCK_RAW socket opened`).
    fn raw_socket(&mut self, n: &Notification, rule: &Rule, what: &str) -> Answer {
        let effect = strictest(rule);
        let process = caller_exe(n.pid);
        let pid = exec::process_of(n.pid);
        if effect == Effect::Block {
            self.block(rule.name(), &format!("{what} by {process}"));
            return Answer::Deny(libc::EPERM);
        }
        let message = message(what, &process, pid, rule.name(), effect);
        log::warn!("{message}");
        self.sink.emit(Event::defender(
            &self.scope,
            effect.as_str(),
            Some(rule.name()),
            message,
        ));
        match effect {
            // Decided on the call's registers alone (see the CONTINUE in on_notification).
            Effect::Alert | Effect::Disable => Answer::Unchecked,
            Effect::Prevent | Effect::Block => Answer::Deny(libc::EPERM),
        }
    }
}

/// The effect for raw sockets: the strictest of the rule's `network` and `dns` sections, since a
/// raw socket gets past both.
fn strictest(rule: &Rule) -> Effect {
    strictest_of(rule.network().effect(), rule.dns().effect())
}

fn strictest_of(a: Effect, b: Effect) -> Effect {
    let rank = |e: Effect| match e {
        Effect::Disable => 0,
        Effect::Alert => 1,
        Effect::Prevent => 2,
        Effect::Block => 3,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// AF_INET's obsolete link-layer socket type (linux/net.h), which libc deprecates.
const SOCK_PACKET: i32 = 10;

/// `AF_INET SOCK_RAW socket`, from the numbers of socket(2).
fn describe(domain: i32, ty: i32) -> String {
    let family = match domain {
        libc::AF_INET => "AF_INET".to_string(),
        libc::AF_INET6 => "AF_INET6".to_string(),
        libc::AF_PACKET => "AF_PACKET".to_string(),
        libc::AF_XDP => "AF_XDP".to_string(),
        d => format!("family {d}"),
    };
    let kind = match ty & seccomp::bpf::SOCK_TYPE_MASK as i32 {
        libc::SOCK_STREAM => "SOCK_STREAM".to_string(),
        libc::SOCK_DGRAM => "SOCK_DGRAM".to_string(),
        libc::SOCK_RAW => "SOCK_RAW".to_string(),
        SOCK_PACKET => "SOCK_PACKET".to_string(),
        t => format!("type {t}"),
    };
    format!("{family} {kind} socket")
}

/// The `defender` event's message for a raw socket under `alert` or `prevent`.
fn message(what: &str, process: &str, pid: u32, rule: &str, effect: Effect) -> String {
    let why = "its packets carry headers the process writes itself, which the network and DNS checks do not see";
    match effect {
        Effect::Alert => format!(
            "{what} by {process} (pid {pid}) was let through because rule {rule} only alerts: {why}, so its traffic is not checked"
        ),
        _ => format!("{what} by {process} (pid {pid}) was refused under rule {rule}: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;

    #[test]
    fn the_strictest_section_decides() {
        for (network, dns, want) in [
            (Disable, Disable, Disable),
            (Alert, Disable, Alert),
            (Disable, Alert, Alert),
            (Disable, Prevent, Prevent),
            (Prevent, Alert, Prevent),
            (Alert, Block, Block),
            (Block, Prevent, Block),
        ] {
            assert_eq!(strictest_of(network, dns), want, "{network:?} {dns:?}");
        }
    }

    #[test]
    fn descriptions_and_messages() {
        for (domain, ty, want) in [
            (libc::AF_INET, libc::SOCK_RAW, "AF_INET SOCK_RAW socket"),
            (
                libc::AF_INET6,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                "AF_INET6 SOCK_RAW socket",
            ),
            (
                libc::AF_PACKET,
                libc::SOCK_DGRAM,
                "AF_PACKET SOCK_DGRAM socket",
            ),
            (libc::AF_INET, SOCK_PACKET, "AF_INET SOCK_PACKET socket"),
            (libc::AF_XDP, libc::SOCK_RAW, "AF_XDP SOCK_RAW socket"),
            (99, 7, "family 99 type 7 socket"),
        ] {
            assert_eq!(describe(domain, ty), want);
        }
        assert_eq!(
            message(
                "AF_PACKET SOCK_RAW socket opened",
                "/usr/bin/python3",
                7,
                "r",
                Prevent
            ),
            "AF_PACKET SOCK_RAW socket opened by /usr/bin/python3 (pid 7) was refused under rule r: its packets carry headers the process writes itself, which the network and DNS checks do not see"
        );
        assert_eq!(
            message("AF_INET SOCK_RAW socket opened", "/x", 7, "r", Alert),
            "AF_INET SOCK_RAW socket opened by /x (pid 7) was let through because rule r only alerts: its packets carry headers the process writes itself, which the network and DNS checks do not see, so its traffic is not checked"
        );
    }
}
