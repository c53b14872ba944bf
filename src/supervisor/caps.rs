//! Which capabilities the command gives up before it starts, as plain data: the capabilities that
//! would let it subvert its supervisor, the names `--keep-capability` accepts, and the plan the
//! child carries out (and the supervisor reports) from the sets the defender holds.
//!
//! Why these: `CAP_SYS_PTRACE` passes the ptrace access check of pidfd_getfd(2) whatever the
//! supervisor's dumpable flag says, so the workload could take the seccomp listener and answer its
//! own calls; `CAP_SYS_ADMIN` mounts a denied program over an allowed path; `CAP_NET_ADMIN`
//! rewrites a checked destination with a NAT rule; `CAP_BPF`, `CAP_PERFMON`, `CAP_SYS_MODULE`,
//! `CAP_SYS_RAWIO` and `CAP_SYS_BOOT` reach into the kernel or the machine; `CAP_DAC_READ_SEARCH`
//! opens any file by handle (open_by_handle_at(2)); `CAP_MAC_ADMIN` and `CAP_MAC_OVERRIDE` change
//! or pass the LSM; `CAP_SETPCAP` would let it raise what it lost back into its inheritable set.

use std::fmt;

use crate::sys::caps::CapSets;

/// A capability, by its number (linux/capability.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capability(u32);

/// Every capability name, at its number (linux/capability.h, up to CAP_CHECKPOINT_RESTORE).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities the command never holds unless kept on purpose (see the module comment).
pub const REMOVED: [Capability; 12] = [
    Capability(19), // SYS_PTRACE
    Capability(21), // SYS_ADMIN
    Capability(12), // NET_ADMIN
    Capability(39), // BPF
    Capability(38), // PERFMON
    Capability(16), // SYS_MODULE
    Capability(17), // SYS_RAWIO
    Capability(2),  // DAC_READ_SEARCH
    Capability(22), // SYS_BOOT
    Capability(33), // MAC_ADMIN
    Capability(32), // MAC_OVERRIDE
    Capability(8),  // SETPCAP
];

/// CAP_SYS_ADMIN: kept, it lets the command make user namespaces too.
pub const SYS_ADMIN: Capability = Capability(21);

/// CAP_SETPCAP: what shrinking the bounding set takes.
const SETPCAP: Capability = Capability(8);

impl Capability {
    /// Parses `SYS_PTRACE` or `CAP_SYS_PTRACE`, in any case, surrounding blanks ignored.
    pub fn parse(name: &str) -> Result<Capability, String> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .map(|i| Capability(i as u32))
            .ok_or_else(|| {
                format!(
                    "{:?} is not a capability name (e.g. SYS_PTRACE)",
                    name.trim()
                )
            })
    }

    pub fn number(self) -> u32 {
        self.0
    }

    fn bit(self) -> u64 {
        1 << self.0
    }

    /// Whether the defender removes it from the command unless kept.
    pub fn is_removed_by_default(self) -> bool {
        REMOVED.contains(&self)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match NAMES.get(self.0 as usize) {
            Some(name) => write!(f, "CAP_{name}"),
            None => write!(f, "capability {}", self.0),
        }
    }
}

/// What the child takes out of its sets before it execs the command, computed by the supervisor
/// from its own sets, which the child inherits unchanged through fork.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Taken out of the effective, permitted, inheritable and ambient sets.
    pub remove: u64,
    /// Taken out of the bounding set: `remove`'s members that are in it, when CAP_SETPCAP is
    /// effective (PR_CAPBSET_DROP needs it); none otherwise.
    pub bounding: u64,
    /// Of `remove`, those left in the bounding set for lack of CAP_SETPCAP. No program the command
    /// runs can gain them back: with no_new_privs (set to install the filter) an execve never
    /// ends with a permitted set larger than before it (cap_bprm_creds_from_file), so neither
    /// root's full set on exec nor file capabilities return them.
    pub left_in_bounding: u64,
    /// Removable capabilities held in some set that `--keep-capability` keeps.
    pub kept: u64,
    /// What the command will no longer hold in any set but the bounding set, or there too when it
    /// shrinks: what the start-up event names as removed.
    pub removed: u64,
}

/// The plan for a process holding `held`, keeping `keep`.
pub fn plan(held: &CapSets, keep: &[Capability]) -> Plan {
    let any = held.effective | held.permitted | held.inheritable | held.ambient | held.bounding;
    let (listed, keep) = (mask(&REMOVED), mask(keep));
    let remove = listed & !keep & any;
    let bounding = match held.effective & SETPCAP.bit() != 0 {
        true => remove & held.bounding,
        false => 0,
    };
    let held_but_bounding = held.effective | held.permitted | held.inheritable | held.ambient;
    Plan {
        remove,
        bounding,
        left_in_bounding: remove & held.bounding & !bounding,
        kept: listed & keep & any,
        removed: remove & held_but_bounding | bounding,
    }
}

impl Plan {
    /// The sets the child must hold once the plan is carried out.
    pub fn outcome(&self, held: &CapSets) -> CapSets {
        CapSets {
            effective: held.effective & !self.remove,
            permitted: held.permitted & !self.remove,
            inheritable: held.inheritable & !self.remove,
            ambient: held.ambient & !self.remove,
            bounding: held.bounding & !self.bounding,
        }
    }

    /// The capabilities to drop from the bounding set, CAP_SETPCAP last: dropping needs it, and it
    /// must still be effective for each drop. (A bounding-set drop leaves the effective set as
    /// it is; the order only matters if that ever changes.)
    pub fn bounding_order(&self) -> Vec<Capability> {
        let mut caps = caps_of(self.bounding);
        caps.sort_by_key(|c| *c == SETPCAP);
        caps
    }

    /// The capabilities to take out of the ambient set.
    pub fn ambient(&self) -> Vec<Capability> {
        caps_of(self.remove)
    }

    /// The `defender` event's message: `None` when nothing was removed or kept (a process that
    /// holds none of them but in a bounding set it cannot shrink, such as a non-root user without
    /// ambient capabilities).
    pub fn message(&self) -> Option<String> {
        if self.removed == 0 && self.kept == 0 {
            return None;
        }
        let mut m = match self.removed {
            0 => "No capability was removed from the command".to_string(),
            r => format!(
                "Capabilities removed from the command, which would let it subvert its supervisor: {}",
                names(r)
            ),
        };
        if self.kept != 0 {
            m += &format!(
                "; kept on purpose (--keep-capability): {}",
                names(self.kept)
            );
        }
        if self.left_in_bounding != 0 {
            m += &format!(
                "; left in its bounding set, which cannot be shrunk without CAP_SETPCAP: {} (no_new_privs keeps every program it runs from gaining them back)",
                names(self.left_in_bounding)
            );
        }
        Some(m)
    }
}

fn mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bit())
}

fn caps_of(mask: u64) -> Vec<Capability> {
    (0..64)
        .filter(|i| mask & (1 << i) != 0)
        .map(Capability)
        .collect()
}

fn names(mask: u64) -> String {
    caps_of(mask)
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root on the host: all 41 capabilities effective, permitted and bounding.
    const ALL: u64 = (1 << 41) - 1;

    fn cap(name: &str) -> Capability {
        Capability::parse(name).unwrap()
    }

    fn bits(names: &[&str]) -> u64 {
        names.iter().fold(0, |m, n| m | cap(n).bit())
    }

    /// Docker's default set plus SYS_PTRACE, as a Fargate task that added it has.
    fn fargate() -> u64 {
        bits(&[
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "NET_BIND_SERVICE",
            "NET_RAW",
            "SYS_CHROOT",
            "MKNOD",
            "AUDIT_WRITE",
            "SETFCAP",
            "SYS_PTRACE",
        ])
    }

    fn root(set: u64) -> CapSets {
        CapSets {
            effective: set,
            permitted: set,
            inheritable: 0,
            ambient: 0,
            bounding: set,
        }
    }

    #[test]
    fn names_parse_either_way_in_any_case() {
        for (name, want) in [
            ("SYS_PTRACE", Some(19)),
            ("CAP_SYS_PTRACE", Some(19)),
            ("cap_sys_ptrace", Some(19)),
            (" net_admin ", Some(12)),
            ("Checkpoint_Restore", Some(40)),
            ("CHOWN", Some(0)),
            ("PTRACE", None),
            ("CAP_", None),
            ("", None),
            ("19", None),
        ] {
            assert_eq!(
                Capability::parse(name).ok().map(Capability::number),
                want,
                "{name:?}"
            );
        }
        assert_eq!(cap("sys_admin").to_string(), "CAP_SYS_ADMIN");
        let e = Capability::parse("SYS_PTRAC").unwrap_err();
        assert!(e.contains("\"SYS_PTRAC\""), "{e}");
        assert_eq!(NAMES[38], "PERFMON");
        assert_eq!(NAMES[39], "BPF");
    }

    /// (case, held, keep, remove, bounding, left in bounding, kept, removed)
    type Case<'a> = (&'a str, CapSets, &'a [&'a str], u64, u64, u64, u64, u64);

    #[test]
    fn plans() {
        let listed = mask(&REMOVED);
        let ptrace_setpcap = bits(&["SYS_PTRACE", "SETPCAP"]);
        let mut ambient_user = CapSets::default();
        ambient_user.effective = bits(&["NET_ADMIN", "NET_BIND_SERVICE"]);
        ambient_user.permitted = ambient_user.effective;
        ambient_user.inheritable = ambient_user.effective;
        ambient_user.ambient = ambient_user.effective;
        ambient_user.bounding = ALL;
        let no_setpcap = root(bits(&["SYS_PTRACE", "CHOWN"]));
        let cases: &[Case] = &[
            (
                "root on a host",
                root(ALL),
                &[],
                listed,
                listed,
                0,
                0,
                listed,
            ),
            (
                "root on a host, NET_ADMIN kept",
                root(ALL),
                &["NET_ADMIN"],
                listed & !bits(&["NET_ADMIN"]),
                listed & !bits(&["NET_ADMIN"]),
                0,
                bits(&["NET_ADMIN"]),
                listed & !bits(&["NET_ADMIN"]),
            ),
            (
                "root in Fargate",
                root(fargate()),
                &[],
                ptrace_setpcap,
                ptrace_setpcap,
                0,
                0,
                ptrace_setpcap,
            ),
            (
                "root in Fargate, SETPCAP kept",
                root(fargate()),
                &["CAP_SETPCAP"],
                bits(&["SYS_PTRACE"]),
                bits(&["SYS_PTRACE"]),
                0,
                bits(&["SETPCAP"]),
                bits(&["SYS_PTRACE"]),
            ),
            (
                // --cap-drop ALL --cap-add SYS_PTRACE: the bounding set cannot shrink.
                "root without SETPCAP",
                no_setpcap,
                &[],
                bits(&["SYS_PTRACE"]),
                0,
                bits(&["SYS_PTRACE"]),
                0,
                bits(&["SYS_PTRACE"]),
            ),
            (
                // Only the bounding set holds them, and it cannot shrink: nothing to do but
                // report, and the message says nothing.
                "non-root in Fargate",
                CapSets {
                    bounding: fargate(),
                    ..CapSets::default()
                },
                &[],
                ptrace_setpcap,
                0,
                ptrace_setpcap,
                0,
                0,
            ),
            (
                "non-root with ambient capabilities",
                ambient_user,
                &[],
                listed,
                0,
                listed,
                0,
                bits(&["NET_ADMIN"]),
            ),
            (
                "keeping what is not held",
                root(bits(&["CHOWN", "SETPCAP"])),
                &["SYS_PTRACE", "NET_RAW"],
                bits(&["SETPCAP"]),
                bits(&["SETPCAP"]),
                0,
                0,
                bits(&["SETPCAP"]),
            ),
            (
                "no capabilities at all",
                CapSets::default(),
                &[],
                0,
                0,
                0,
                0,
                0,
            ),
        ];
        for (name, held, keep, remove, bounding, left, kept, removed) in cases {
            let keep: Vec<Capability> = keep.iter().map(|k| cap(k)).collect();
            let p = plan(held, &keep);
            assert_eq!(
                p,
                Plan {
                    remove: *remove,
                    bounding: *bounding,
                    left_in_bounding: *left,
                    kept: *kept,
                    removed: *removed,
                },
                "{name}"
            );
            let after = p.outcome(held);
            let every = after.effective | after.permitted | after.inheritable | after.ambient;
            assert_eq!(every & p.remove, 0, "{name}");
            assert_eq!(after.bounding & p.remove, *left, "{name}");
        }
    }

    #[test]
    fn setpcap_is_dropped_from_the_bounding_set_last() {
        let order = plan(&root(ALL), &[]).bounding_order();
        assert_eq!(order.len(), 12);
        assert_eq!(order.last(), Some(&SETPCAP));
    }

    #[test]
    fn messages() {
        let cases: &[(CapSets, &[&str], Option<&str>)] = &[
            (
                root(fargate()),
                &[],
                Some(
                    "Capabilities removed from the command, which would let it subvert its supervisor: CAP_SETPCAP, CAP_SYS_PTRACE",
                ),
            ),
            (
                root(fargate()),
                &["SYS_PTRACE"],
                Some(
                    "Capabilities removed from the command, which would let it subvert its supervisor: CAP_SETPCAP; kept on purpose (--keep-capability): CAP_SYS_PTRACE",
                ),
            ),
            (
                root(bits(&["SYS_PTRACE", "CHOWN"])),
                &[],
                Some(
                    "Capabilities removed from the command, which would let it subvert its supervisor: CAP_SYS_PTRACE; left in its bounding set, which cannot be shrunk without CAP_SETPCAP: CAP_SYS_PTRACE (no_new_privs keeps every program it runs from gaining them back)",
                ),
            ),
            (
                root(bits(&["NET_ADMIN"])),
                &["NET_ADMIN"],
                Some(
                    "No capability was removed from the command; kept on purpose (--keep-capability): CAP_NET_ADMIN",
                ),
            ),
            (root(bits(&["CHOWN", "NET_RAW"])), &[], None),
            (
                CapSets {
                    bounding: fargate(),
                    ..CapSets::default()
                },
                &[],
                None,
            ),
            (CapSets::default(), &["SYS_PTRACE"], None),
        ];
        for (held, keep, want) in cases {
            let keep: Vec<Capability> = keep.iter().map(|k| cap(k)).collect();
            assert_eq!(
                plan(held, &keep).message().as_deref(),
                *want,
                "{held:?} {keep:?}"
            );
        }
    }
}
