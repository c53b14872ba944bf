//! `connect` on an IPv4 or IPv6 socket: the destination the kernel would connect to, whether the
//! custom rules on outgoing connections or the `network` section object to it, and whether the socket is a resolver's, to be connected to the
//! DNS forwarder instead (dns.rs).

use std::net::SocketAddr;

use super::{Objection, dns, facts, outbound};
use crate::dns::forwarder::Proto;
use crate::policy::Rule;
use crate::policy::custom::Process;
use crate::sys::sockaddr::{self, Use};
use crate::sys::socket::SocketKind;

/// The decision on one connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The destination, when the kernel would connect to one (not for AF_UNSPEC, which
    /// disconnects, nor for an address the kernel refuses by itself).
    pub dest: Option<SocketAddr>,
    /// What a custom rule or the `network` section objects to, applied before anything is
    /// performed.
    pub objection: Option<Objection>,
    /// Connect to the forwarder for this protocol instead of `dest`.
    pub steer: Option<Proto>,
}

/// Decides a connect of a socket of `kind` to the address bytes `addr`, as copied from the caller.
/// `rule`: the rule in force when it enforces network or DNS; without one, a resolver's socket
/// is steered all the same, so that a DNS rule the console puts in force later applies to every
/// query it sends (the forwarder checks each against the rule in force). `process`: the caller's
/// facts for custom rules, when read (`sensors::outbound`).
pub fn decide(
    rule: Option<&Rule>,
    kind: SocketKind,
    addr: &[u8],
    process: Option<&Process>,
) -> Verdict {
    let dest = sockaddr::target(Use::Connect, kind.domain, addr);
    let protocol = facts::protocol(kind);
    Verdict {
        dest,
        objection: dest
            .zip(rule)
            .and_then(|(d, r)| outbound(r, d, protocol, process)),
        steer: dest.and_then(|d| dns::steer(kind, d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Activity;
    use crate::policy::{Attack, Effect};
    use crate::sensors::testing::{addr, kind, rule};

    #[test]
    fn decisions() {
        let prevent =
            rule(r#""network": {"effect": "prevent", "outbound": {"deny": ["203.0.113.0/24"]}}"#);
        let dns_only = rule(r#""dns": {"effect": "prevent", "deny": ["denied.test"]}"#);
        let tcp = kind(libc::AF_INET, libc::SOCK_STREAM);
        let udp6 = kind(libc::AF_INET6, libc::SOCK_DGRAM);
        let tcp6 = kind(libc::AF_INET6, libc::SOCK_STREAM);
        let unspec = {
            let mut b = addr("203.0.113.5:80");
            b[..2].copy_from_slice(&(libc::AF_UNSPEC as u16).to_ne_bytes());
            b
        };
        let denied = Some(Objection {
            effect: Effect::Prevent,
            cause: Attack::ExplicitlyDenied.into(),
            activity: Activity::Outbound {
                ip: "203.0.113.5".parse().unwrap(),
                port: 53,
            },
        });
        type Case<'a> = (
            &'a str,
            Option<&'a Rule>,
            SocketKind,
            Vec<u8>,
            bool,
            Option<Proto>,
        );
        let cases: &[Case] = &[
            (
                "allowed",
                Some(&prevent),
                tcp,
                addr("198.51.100.7:443"),
                false,
                None,
            ),
            (
                "denied",
                Some(&prevent),
                tcp,
                addr("203.0.113.5:80"),
                true,
                None,
            ),
            (
                "AF_UNSPEC disconnects",
                Some(&prevent),
                tcp,
                unspec,
                false,
                None,
            ),
            (
                "DNS over TCP is steered",
                Some(&dns_only),
                tcp,
                addr("198.51.100.7:53"),
                false,
                Some(Proto::Tcp),
            ),
            (
                "DNS over UDP6 is steered",
                Some(&dns_only),
                udp6,
                addr("[2001:db8::53]:53"),
                false,
                Some(Proto::Udp),
            ),
            (
                "steered with nothing enforced",
                None,
                tcp,
                addr("198.51.100.7:53"),
                false,
                Some(Proto::Tcp),
            ),
            (
                "an IPv4 address on a TCP6 socket is the kernel's to refuse",
                None,
                tcp6,
                addr("198.51.100.7:53"),
                false,
                None,
            ),
            (
                "another port is not steered",
                None,
                udp6,
                addr("[2001:db8::53]:5353"),
                false,
                None,
            ),
        ];
        for (what, rule, kind, bytes, objects, steer) in cases {
            let v = decide(*rule, *kind, bytes, None);
            assert_eq!(v.objection.is_some(), *objects, "{what}");
            assert_eq!(v.steer, *steer, "{what}");
        }
        let v = decide(Some(&prevent), tcp, &addr("203.0.113.5:53"), None);
        assert_eq!(v.objection, denied);
        assert_eq!(v.steer, Some(Proto::Tcp), "judged, then steered");
        assert_eq!(v.dest, Some("203.0.113.5:53".parse().unwrap()));
    }
}
