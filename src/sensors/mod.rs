//! Sensors: one file per trapped family. Each turns a trapped call into plain data about the
//! activity (what is launched, where it connects) and decides on it with a pure function from the
//! copied arguments and the rule in force to a verdict, table-tested in the same file. The
//! supervisor performs what they decide (supervisor/answer.rs turns a verdict into the kernel's
//! answer and its audit).
//!
//! `exec`: launches. `family`: which sockets are judged by address, performed as their caller, or
//! refused (raw and packet sockets, families the policy cannot judge). `connect`, `bind`, `send`:
//! the three socket calls that name an address. `dns`: steering resolvers to the forwarder and the
//! questions sent around it. `facts`: what custom rules read about a process.
//!
//! Custom rules (policy/custom) judge an event before the sections do ([`custom_rules`]): the
//! first true reference decides, `allow` as an exception the sections do not judge, the other
//! effects as a violation; with none true, the sections judge as without them.

pub mod bind;
pub mod connect;
pub mod dns;
pub mod exec;
pub mod facts;
pub mod family;
pub mod send;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;

use crate::audit::{Activity, Cause};
use crate::policy::custom::{Facts, Process, Protocol, Subject};
use crate::policy::{Effect, Rule};

/// Which file a path named when it was looked at: device and inode, as stat(2) reports them.
/// Comparing identities (not paths) is what proves that the file that runs is the one decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl From<&nix::sys::stat::FileStat> for FileId {
    fn from(st: &nix::sys::stat::FileStat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

impl From<&std::fs::Metadata> for FileId {
    fn from(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// A network activity the rule objects to: what the supervisor audits, then applies the effect of
/// (`Effect::consequence`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Objection {
    pub effect: Effect,
    pub cause: Cause,
    pub activity: Activity,
}

impl Objection {
    /// What was done, for the event of a container stopped by `block`.
    pub fn what(&self, process: &str) -> String {
        match &self.activity {
            Activity::Outbound { ip, port } => format!("{process} connecting to {ip}:{port}"),
            Activity::Listen { port } => format!("{process} listening on port {port}"),
            Activity::Dns { domain } => format!("{process} resolving {domain}"),
        }
    }
}

/// What the custom rules of the rule in force say about an event, before the sections judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Said {
    /// No custom rule decides (none is true, or none of the event's type is in force): the
    /// sections judge.
    Sections,
    /// An `allow` reference is true: the event proceeds, and the sections do not judge it.
    Allow,
    /// An `alert`, `prevent` or `block` reference is true: a violation with this effect.
    Violation(Effect, Cause),
}

/// Judges an event, seen as any of `views` (all of one type), by the custom rules of its type:
/// the first reference true for any view decides (`Custom::decide`). Pure.
pub fn custom_rules(rule: &Rule, views: &[Facts<'_>]) -> Said {
    let Some(kind) = views.first().map(|f| f.subject.kind()) else {
        return Said::Sections;
    };
    match rule.custom(kind).decide(views) {
        None => Said::Sections,
        Some(m) => match m.violation() {
            None => Said::Allow,
            Some(effect) => Said::Violation(effect, m.into()),
        },
    }
}

/// Checks an outbound destination (of a connect, or of a send that names one) on a socket of
/// `protocol`: first against the custom rules on outgoing connections, with the caller's facts
/// when they were read (`process`: `None` when no such rule is in force or they could not be
/// read, and the supervisor reported that), then against the `network` section; a `disable`d
/// section objects to nothing.
pub fn outbound(
    rule: &Rule,
    dest: SocketAddr,
    protocol: Protocol,
    process: Option<&Process>,
) -> Option<Objection> {
    let activity = Activity::Outbound {
        ip: dest.ip().to_canonical(),
        port: dest.port(),
    };
    if let Some(process) = process {
        let subject = Subject::Outgoing {
            ip: dest.ip(),
            port: dest.port(),
            protocol,
        };
        match custom_rules(rule, &[Facts { process, subject }]) {
            Said::Sections => {}
            Said::Allow => return None,
            Said::Violation(effect, cause) => {
                return Some(Objection {
                    effect,
                    cause,
                    activity,
                });
            }
        }
    }
    let effect = rule.network().effect();
    if effect == Effect::Disable {
        return None;
    }
    let attack = rule.network().check_outbound(dest.ip(), dest.port())?;
    Some(Objection {
        effect,
        cause: attack.into(),
        activity,
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Rules, socket kinds and addresses for the sensors' decision tables.

    use crate::policy::Rule;
    pub use crate::policy::testing::rule;
    use crate::sys::sockaddr;

    /// The rule of a one-rule policy whose custom rule library is `library` (a JSON array) and
    /// whose members are `members` (`"customRules": [...]` and sections).
    pub fn custom_rule(library: &str, members: &str) -> Rule {
        let json =
            format!(r#"{{"customRules": {library}, "rules": [{{"name": "r", {members}}}]}}"#);
        crate::policy::parse(&json)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
            .rule_for("c", "i")
            .unwrap()
            .clone()
    }
    use crate::sys::socket::SocketKind;

    /// A socket of this domain and type, as SO_DOMAIN and SO_TYPE report them.
    pub fn kind(domain: i32, ty: i32) -> SocketKind {
        SocketKind { domain, ty }
    }

    /// `1.2.3.4:80` or `[::1]:53` as a caller passes it (`struct sockaddr_in`, `sockaddr_in6`).
    pub fn addr(s: &str) -> Vec<u8> {
        sockaddr::encode(s.parse().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Attack;
    use crate::policy::Effect::*;

    fn dest(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn outbound_objections() {
        let prevent = testing::rule(
            r#""network": {"effect": "prevent", "outbound": {"deny": ["203.0.113.0/24"]}}"#,
        );
        let off = testing::rule(
            r#""network": {"effect": "disable", "outbound": {"deny": ["0.0.0.0/0"]}}"#,
        );
        let alert = testing::rule(
            r#""network": {"effect": "alert", "outbound": {"allow": ["10.0.0.0/8"]}}"#,
        );
        let objection = |effect, attack, ip: &str, port| {
            Some(Objection {
                effect,
                cause: Cause::Section(attack),
                activity: Activity::Outbound {
                    ip: ip.parse().unwrap(),
                    port,
                },
            })
        };
        let cases: &[(&str, &Rule, &str, Option<Objection>)] = &[
            (
                "denied",
                &prevent,
                "203.0.113.5:80",
                objection(Prevent, Attack::ExplicitlyDenied, "203.0.113.5", 80),
            ),
            ("not denied", &prevent, "198.51.100.1:80", None),
            (
                "a mapped address is judged and reported as IPv4",
                &prevent,
                "[::ffff:203.0.113.5]:80",
                objection(Prevent, Attack::ExplicitlyDenied, "203.0.113.5", 80),
            ),
            ("disable objects to nothing", &off, "203.0.113.5:80", None),
            (
                "not allowed, alert",
                &alert,
                "192.0.2.1:443",
                objection(Alert, Attack::NotAllowed, "192.0.2.1", 443),
            ),
            (
                "loopback is exempt from allow lists",
                &alert,
                "127.0.0.1:5432",
                None,
            ),
        ];
        for (what, rule, to, want) in cases {
            assert_eq!(
                outbound(rule, dest(to), Protocol::Tcp, None),
                *want,
                "{what}"
            );
        }
        let o = outbound(&prevent, dest("203.0.113.5:80"), Protocol::Tcp, None).unwrap();
        assert_eq!(o.what("/bin/nc"), "/bin/nc connecting to 203.0.113.5:80");
    }

    #[test]
    fn custom_rules_judge_before_the_section() {
        let library = r#"[
            {"name": "ssh", "type": "network-outgoing", "script": "net.outgoing_port = 22"},
            {"name": "jake out", "type": "network-outgoing",
             "script": "proc.user = \"jake\" and net.protocol = \"udp\"", "message": "jake"},
            {"name": "backups", "type": "network-outgoing",
             "script": "proc.name = \"backup\" and net.outgoing_ip = \"203.0.113.0/24\""}
        ]"#;
        let rule = testing::custom_rule(
            library,
            r#""customRules": [{"name": "backups", "effect": "allow"},
                                {"name": "ssh", "effect": "block"},
                                {"name": "jake out", "effect": "alert"}],
               "network": {"effect": "prevent", "outbound": {"deny": ["203.0.113.0/24"]}}"#,
        );
        let process = |name: &str, user: &str| Process {
            name: name.into(),
            user: user.into(),
            ..Process::default()
        };
        let custom = |effect, name: &str, message: Option<&str>, ip: &str, port| {
            Some(Objection {
                effect,
                cause: Cause::Custom {
                    name: name.into(),
                    message: message.map(str::to_owned),
                },
                activity: Activity::Outbound {
                    ip: ip.parse().unwrap(),
                    port,
                },
            })
        };
        let section = Some(Objection {
            effect: Prevent,
            cause: Cause::Section(Attack::ExplicitlyDenied),
            activity: Activity::Outbound {
                ip: "203.0.113.5".parse().unwrap(),
                port: 443,
            },
        });
        let (backup, curl, jake) = (
            process("backup", "root"),
            process("curl", "root"),
            process("curl", "jake"),
        );
        type Case<'a> = (
            &'a str,
            &'a str,
            Protocol,
            Option<&'a Process>,
            Option<Objection>,
        );
        let cases: &[Case] = &[
            (
                "allow: an exception the section does not judge",
                "203.0.113.5:443",
                Protocol::Tcp,
                Some(&backup),
                None,
            ),
            (
                "no custom rule true: the section judges",
                "203.0.113.5:443",
                Protocol::Tcp,
                Some(&curl),
                section.clone(),
            ),
            (
                "facts not read: the section judges",
                "203.0.113.5:443",
                Protocol::Tcp,
                None,
                section.clone(),
            ),
            (
                "the first true reference decides",
                "198.51.100.1:22",
                Protocol::Udp,
                Some(&jake),
                custom(Block, "ssh", None, "198.51.100.1", 22),
            ),
            (
                "alert, with the rule's message",
                "[::ffff:198.51.100.1]:53",
                Protocol::Udp,
                Some(&jake),
                custom(Alert, "jake out", Some("jake"), "198.51.100.1", 53),
            ),
            (
                "the protocol is a fact",
                "198.51.100.1:53",
                Protocol::Tcp,
                Some(&jake),
                None,
            ),
        ];
        for (what, to, protocol, process, want) in cases {
            let got = outbound(&rule, dest(to), *protocol, *process);
            assert_eq!(got, *want, "{what}");
        }
        assert_eq!(custom_rules(&rule, &[]), Said::Sections);
    }
}
