//! `bind` of an IPv4 or IPv6 socket: whether the custom rules on listening ports or the `network`
//! section's `listeningPorts` object to the port, whether the port is privileged (the caller
//! needs CAP_NET_BIND_SERVICE), and whether the web application firewall takes the bind over
//! (docs/waas.md, How it sits).

use super::{Objection, Said, custom_rules, facts};
use crate::audit::Activity;
use crate::policy::custom::{Facts, Process, Subject};
use crate::policy::{Effect, Rule};
use crate::sys::sockaddr::{self, Use};
use crate::sys::socket::SocketKind;
use crate::waas::live::InForce;

/// CAP_NET_BIND_SERVICE (linux/capability.h).
pub const CAP_NET_BIND_SERVICE: u32 = 10;

/// The decision on one bind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// What a custom rule or the `network` section objects to, applied first.
    pub objection: Option<Objection>,
    /// The port is below `net.ipv4.ip_unprivileged_port_start`: the caller must hold
    /// CAP_NET_BIND_SERVICE, or gets EACCES. Performed by the supervisor, the bind would be
    /// checked against the supervisor's capabilities (inet_bind_sk): the caller's are checked,
    /// as the kernel would have.
    pub needs_capability: bool,
}

/// Decides a bind of a socket of `kind` to the address bytes `addr`, as copied from the caller,
/// under `rule` (none: no runtime rule enforces network, only the privilege is checked).
/// `process`: the caller's facts for the custom rules on listening ports, when read. Port 0 asks
/// the kernel for any free port: neither the custom rules nor the section judge it.
pub fn decide(
    rule: Option<&Rule>,
    kind: SocketKind,
    addr: &[u8],
    unprivileged_port_start: u16,
    process: Option<&Process>,
) -> Verdict {
    let Some(local) = sockaddr::target(Use::Bind, kind.domain, addr) else {
        return Verdict::default();
    };
    let port = local.port();
    let needs_capability = port != 0 && port < unprivileged_port_start;
    let Some(rule) = rule else {
        return Verdict {
            objection: None,
            needs_capability,
        };
    };
    let activity = Activity::Listen { port };
    let said = match process.filter(|_| port != 0) {
        Some(process) => {
            let subject = Subject::Listening {
                port,
                protocol: facts::protocol(kind),
            };
            custom_rules(rule, &[Facts { process, subject }])
        }
        None => Said::Sections,
    };
    let effect = rule.network().effect();
    let objection = match (said, effect) {
        (Said::Allow, _) => None,
        (Said::Violation(effect, cause), _) => Some(Objection {
            effect,
            cause,
            activity,
        }),
        (Said::Sections, Effect::Disable) => None,
        (Said::Sections, _) => rule.network().check_listen(port).map(|attack| Objection {
            effect,
            cause: attack.into(),
            activity,
        }),
    };
    Verdict {
        objection,
        needs_capability,
    }
}

/// The address a bind asks for, when the WAAS rule `in_force` protects its port: a TCP socket
/// (IPv4 or IPv6) bound to a port one of the rule's apps names. Then the firewall takes the bind
/// over: it listens there itself and binds the socket to a loopback address instead.
pub fn protected(
    kind: SocketKind,
    addr: &[u8],
    in_force: &InForce,
) -> Option<std::net::SocketAddr> {
    if kind.ty != libc::SOCK_STREAM {
        return None;
    }
    let local = sockaddr::target(Use::Bind, kind.domain, addr)?;
    (local.port() != 0 && in_force.app(local.port()).is_some()).then_some(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Attack;
    use crate::sensors::testing::{addr, kind, rule};

    #[test]
    fn decisions() {
        let prevent = rule(
            r#""network": {"effect": "prevent", "listeningPorts": {"allow": ["8080", "80"]}}"#,
        );
        let off =
            rule(r#""network": {"effect": "disable", "listeningPorts": {"deny": ["1-65535"]}}"#);
        let tcp = kind(libc::AF_INET, libc::SOCK_STREAM);
        let tcp6 = kind(libc::AF_INET6, libc::SOCK_STREAM);
        let listen = |port| {
            Some(Objection {
                effect: Effect::Prevent,
                cause: Attack::NotAllowed.into(),
                activity: Activity::Listen { port },
            })
        };
        type Case<'a> = (&'a str, &'a Rule, SocketKind, Vec<u8>, Verdict);
        let verdict = |objection, needs_capability| Verdict {
            objection,
            needs_capability,
        };
        let cases: &[Case] = &[
            (
                "allowed",
                &prevent,
                tcp,
                addr("0.0.0.0:8080"),
                verdict(None, false),
            ),
            (
                "allowed, privileged",
                &prevent,
                tcp,
                addr("0.0.0.0:80"),
                verdict(None, true),
            ),
            (
                "not allowed",
                &prevent,
                tcp6,
                addr("[::]:9000"),
                verdict(listen(9000), false),
            ),
            (
                "not allowed, privileged",
                &prevent,
                tcp,
                addr("127.0.0.1:22"),
                verdict(listen(22), true),
            ),
            (
                "port 0: any free port",
                &prevent,
                tcp,
                addr("0.0.0.0:0"),
                verdict(None, false),
            ),
            (
                "disable",
                &off,
                tcp,
                addr("0.0.0.0:9000"),
                verdict(None, false),
            ),
            (
                "disable still checks the privilege",
                &off,
                tcp,
                addr("0.0.0.0:443"),
                verdict(None, true),
            ),
            (
                "an IPv4 address on an IPv6 socket is the kernel's to refuse",
                &prevent,
                tcp6,
                addr("0.0.0.0:22"),
                verdict(None, false),
            ),
            ("no address", &prevent, tcp, vec![], verdict(None, false)),
        ];
        for (what, rule, kind, bytes, want) in cases {
            assert_eq!(
                decide(Some(rule), *kind, bytes, 1024, None),
                *want,
                "{what}"
            );
            let privilege = decide(None, *kind, bytes, 1024, None);
            assert_eq!(privilege.objection, None, "{what}");
            assert_eq!(privilege.needs_capability, want.needs_capability, "{what}");
        }
    }

    #[test]
    fn custom_rules_on_listening_ports() {
        use crate::sensors::testing::custom_rule;
        let rule = custom_rule(
            r#"[{"name": "high udp", "type": "listening",
                 "script": "net.listening_port > 1024 and net.protocol = \"udp\""},
                {"name": "dev server", "type": "listening",
                 "script": "proc.name = \"node\" and net.listening_port = 3000"}]"#,
            r#""customRules": [{"name": "dev server", "effect": "allow"},
                                {"name": "high udp", "effect": "prevent"}],
               "network": {"effect": "alert", "listeningPorts": {"allow": ["8080"]}}"#,
        );
        let node = Process {
            name: "node".into(),
            ..Process::default()
        };
        let udp = kind(libc::AF_INET, libc::SOCK_DGRAM);
        let tcp = kind(libc::AF_INET, libc::SOCK_STREAM);
        let custom = Some(Objection {
            effect: Effect::Prevent,
            cause: crate::audit::Cause::Custom {
                name: "high udp".into(),
                message: None,
            },
            activity: Activity::Listen { port: 5000 },
        });
        let section = |port| {
            Some(Objection {
                effect: Effect::Alert,
                cause: Attack::NotAllowed.into(),
                activity: Activity::Listen { port },
            })
        };
        type Case<'a> = (
            &'a str,
            SocketKind,
            &'a str,
            Option<&'a Process>,
            Option<Objection>,
        );
        let cases: &[Case] = &[
            (
                "allowed by a custom rule",
                tcp,
                "0.0.0.0:3000",
                Some(&node),
                None,
            ),
            (
                "prevented by a custom rule",
                udp,
                "0.0.0.0:5000",
                Some(&node),
                custom,
            ),
            (
                "no custom rule true",
                tcp,
                "0.0.0.0:5000",
                Some(&node),
                section(5000),
            ),
            ("facts not read", tcp, "0.0.0.0:3000", None, section(3000)),
            ("port 0 is not judged", udp, "0.0.0.0:0", Some(&node), None),
        ];
        for (what, kind, to, process, want) in cases {
            let got = decide(Some(&rule), *kind, &addr(to), 1024, *process);
            assert_eq!(got.objection, *want, "{what}");
        }
    }

    #[test]
    fn binds_the_firewall_takes_over() {
        let document = crate::waas::compile(
            r#"{"rules": [{"name": "front", "apps": [{"port": 8080}, {"port": 443}]}]}"#,
        )
        .unwrap();
        let identity = crate::policy::Identity::default();
        let live = crate::waas::live::Live::new(
            Some(&document),
            crate::policy::live::Source::Default,
            identity.clone(),
        );
        let none =
            crate::waas::live::Live::new(None, crate::policy::live::Source::Default, identity);
        let (on, off) = (live.current(), none.current());
        let tcp = kind(libc::AF_INET, libc::SOCK_STREAM);
        let tcp6 = kind(libc::AF_INET6, libc::SOCK_STREAM);
        let udp = kind(libc::AF_INET, libc::SOCK_DGRAM);
        let at = |s: &str| Some(s.parse::<std::net::SocketAddr>().unwrap());
        type Case<'a> = (
            &'a str,
            SocketKind,
            &'a str,
            &'a InForce,
            Option<std::net::SocketAddr>,
        );
        let cases: &[Case] = &[
            (
                "a protected port",
                tcp,
                "0.0.0.0:8080",
                &on,
                at("0.0.0.0:8080"),
            ),
            ("one address", tcp, "10.0.0.5:443", &on, at("10.0.0.5:443")),
            ("IPv6, dual stack", tcp6, "[::]:8080", &on, at("[::]:8080")),
            ("another port", tcp, "0.0.0.0:8081", &on, None),
            ("port 0", tcp, "0.0.0.0:0", &on, None),
            ("UDP", udp, "0.0.0.0:8080", &on, None),
            ("no WAAS rule", tcp, "0.0.0.0:8080", &off, None),
        ];
        for (what, kind, to, in_force, want) in cases {
            assert_eq!(protected(*kind, &addr(to), in_force), *want, "{what}");
        }
        assert_eq!(protected(tcp, &[], &on), None, "no address");
    }
}
