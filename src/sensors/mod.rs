//! Sensors: one file per trapped family. Each turns a trapped call into plain data about the
//! activity (what is launched, where it connects) and decides on it with a pure function from the
//! copied arguments and the rule in force to a verdict, table-tested in the same file. The
//! supervisor performs what they decide (supervisor/answer.rs turns a verdict into the kernel's
//! answer and its audit).
//!
//! `exec`: launches. `family`: which sockets are judged by address, performed as their caller, or
//! refused (raw and packet sockets, families the policy cannot judge). `connect`, `bind`, `send`:
//! the three socket calls that name an address. `dns`: steering resolvers to the forwarder and the
//! questions sent around it.

pub mod bind;
pub mod connect;
pub mod dns;
pub mod exec;
pub mod family;
pub mod send;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;

use crate::audit::{Activity, Cause};
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

/// Checks an outbound destination (of a connect, or of a send that names one) against the
/// `network` section; a `disable`d section objects to nothing.
pub fn outbound(rule: &Rule, dest: SocketAddr) -> Option<Objection> {
    let effect = rule.network().effect();
    if effect == Effect::Disable {
        return None;
    }
    let attack = rule.network().check_outbound(dest.ip(), dest.port())?;
    Some(Objection {
        effect,
        cause: attack.into(),
        activity: Activity::Outbound {
            ip: dest.ip().to_canonical(),
            port: dest.port(),
        },
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Rules, socket kinds and addresses for the sensors' decision tables.

    pub use crate::policy::testing::rule;
    use crate::sys::sockaddr;
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
        let dest = |s: &str| s.parse::<SocketAddr>().unwrap();
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
            assert_eq!(outbound(rule, dest(to)), *want, "{what}");
        }
        let o = outbound(&prevent, dest("203.0.113.5:80")).unwrap();
        assert_eq!(o.what("/bin/nc"), "/bin/nc connecting to 203.0.113.5:80");
    }
}
