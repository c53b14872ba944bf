//! DNS around the forwarder: which sockets are a resolver's and are connected to the forwarder
//! (dns/forwarder.rs) instead of their name server, and what becomes of a DNS question sent
//! without connecting (musl's resolver sends with `sendto` from an unconnected socket), which the
//! forwarder never sees. Whether a question is allowed is `dns::decide`, shared with the forwarder.

use std::net::SocketAddr;

use crate::dns::forwarder::Proto;
use crate::dns::{self, Decision, PORT};
use crate::policy::{Consequence, Effect, Rule};
use crate::sys::socket::SocketKind;

/// Whether a connect of a socket of `kind` to `dest` is a resolver's, and then the protocol of the
/// forwarder to connect it to: a TCP or UDP socket connecting to port 53. (An IPv6 TCP socket
/// refuses an IPv4 address, tcp_v6_connect: that connect is left for the kernel to refuse.)
pub fn steer(kind: SocketKind, dest: SocketAddr) -> Option<Proto> {
    let v4_on_tcp6 =
        kind.ty == libc::SOCK_STREAM && kind.domain == libc::AF_INET6 && dest.is_ipv4();
    if dest.port() != PORT || v4_on_tcp6 {
        return None;
    }
    match kind.ty {
        libc::SOCK_STREAM => Some(Proto::Tcp),
        libc::SOCK_DGRAM => Some(Proto::Udp),
        _ => None,
    }
}

/// What a send to `dest` is to the DNS checks (custom rules on DNS and the `dns` section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    /// Not a DNS question, or DNS questions are not judged.
    Plain,
    /// A DNS query sent with TCP Fast Open would carry its question in the SYN, past the
    /// forwarder: not supported (EOPNOTSUPP), so the resolver connects first (the usual fallback
    /// from an unavailable Fast Open).
    FastOpen,
    /// A datagram to port 53: its question is checked here ([`question`]).
    Question,
}

/// Decides what a send on a socket (`stream` or not) to `dest` is under `rule`.
pub fn on_send(rule: &Rule, stream: bool, dest: SocketAddr) -> Send {
    if dest.port() != PORT || !dns::judged(rule) {
        return Send::Plain;
    }
    match stream {
        true => Send::FastOpen,
        false => Send::Question,
    }
}

/// What becomes of a question sent to a name server directly, once `dns::decide` decided on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Question {
    /// Sent as it is.
    Send,
    /// Replaced by a query for `invalid.` with the same id, sent to the same server
    /// (`dns::substitute`): musl takes only answers that come from the server's own address, which
    /// the defender cannot send from, and the server's NXDOMAIN for `invalid.` ends the lookup at
    /// once as "not found", without the refused name leaving.
    Substitute,
    /// Refused (EPERM): the container is being stopped, nothing is sent.
    Refuse,
}

/// The fate of a question refused or passed, `effect` the effect it was judged with (a custom
/// rule's or the `dns` section's).
pub fn question(decision: Decision, effect: Effect) -> Question {
    match (decision, effect.consequence()) {
        (Decision::Pass, _) => Question::Send,
        (Decision::Refuse, Consequence::Stop) => Question::Refuse,
        (Decision::Refuse, _) => Question::Substitute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::testing::{kind, rule};

    #[test]
    fn decisions() {
        let (inet, inet6) = (libc::AF_INET, libc::AF_INET6);
        let (stream, dgram, raw) = (libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW);
        let to = |s: &str| s.parse::<SocketAddr>().unwrap();
        for (what, kind, dest, want) in [
            ("tcp", kind(inet, stream), "192.0.2.53:53", Some(Proto::Tcp)),
            ("udp", kind(inet, dgram), "192.0.2.53:53", Some(Proto::Udp)),
            (
                "udp6",
                kind(inet6, dgram),
                "[2001:db8::1]:53",
                Some(Proto::Udp),
            ),
            (
                "v4 on udp6",
                kind(inet6, dgram),
                "192.0.2.53:53",
                Some(Proto::Udp),
            ),
            ("v4 on tcp6", kind(inet6, stream), "192.0.2.53:53", None),
            ("another port", kind(inet, dgram), "192.0.2.53:5353", None),
            (
                "neither stream nor datagram",
                kind(inet, raw),
                "192.0.2.53:53",
                None,
            ),
        ] {
            assert_eq!(steer(kind, to(dest)), want, "{what}");
        }

        let on = rule(r#""dns": {"effect": "prevent", "deny": ["denied.test"]}"#);
        let off = rule(r#""network": {"effect": "prevent"}"#);
        let custom = crate::sensors::testing::custom_rule(
            r#"[{"name": "n", "type": "dns", "script": "dns.name = \"x.test\""}]"#,
            r#""customRules": [{"name": "n", "effect": "alert"}]"#,
        );
        for (what, rule, stream, dest, want) in [
            (
                "a custom rule on DNS, the section off",
                &custom,
                false,
                "192.0.2.53:53",
                Send::Question,
            ),
            (
                "a datagram question",
                &on,
                false,
                "192.0.2.53:53",
                Send::Question,
            ),
            (
                "Fast Open to port 53",
                &on,
                true,
                "192.0.2.53:53",
                Send::FastOpen,
            ),
            ("another port", &on, false, "192.0.2.53:123", Send::Plain),
            ("dns disabled", &off, false, "192.0.2.53:53", Send::Plain),
            (
                "dns disabled, Fast Open",
                &off,
                true,
                "192.0.2.53:53",
                Send::Plain,
            ),
        ] {
            assert_eq!(on_send(rule, stream, to(dest)), want, "{what}");
        }

        use Effect::*;
        for (decision, effect, want) in [
            (Decision::Pass, Prevent, Question::Send),
            (Decision::Pass, Alert, Question::Send),
            (Decision::Refuse, Prevent, Question::Substitute),
            (Decision::Refuse, Block, Question::Refuse),
        ] {
            assert_eq!(question(decision, effect), want, "{decision:?} {effect:?}");
        }
    }
}
