//! The command never holds a capability that would let it subvert its supervisor (issue 9,
//! attacks 1 and 6): run as root under the real defender, the command's five capability sets
//! (`/proc/self/status`) hold none of them, the start-up `defender` event names what was removed,
//! and `--keep-capability` / `DEFENDER_KEEP_CAPABILITIES` keep exactly what they name. The attacks
//! themselves run as real programs: listener theft with pidfd_getfd(2)
//! (`test-programs/src/bin/attack_listener.rs`), an address change with `ip` in a network namespace of the
//! test's own, a mount with `mount` in a mount namespace of the test's own; each fails under the
//! defender and succeeds with the capability kept, which shows the capability is what stops it.
//!
//! Needs root (the tests check what a root workload loses). Debian packages: iproute2,
//! util-linux (unshare, mount, setpriv).

mod common;

use std::process::{Command, Output};

use common::networld::only;
use common::*;
use serde_json::Value;

/// The capabilities removed by default, by number.
const REMOVED: [(&str, u32); 12] = [
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_ADMIN", 12),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];
const SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

/// The five sets of a `/proc/PID/status` text, by key.
fn sets(status: &str) -> Vec<(&'static str, u64)> {
    SETS.iter()
        .map(|key| {
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .unwrap_or_else(|| panic!("no {key} in {status}"));
            (*key, u64::from_str_radix(hex.trim(), 16).unwrap())
        })
        .collect()
}

/// The removable capabilities this test process holds in some set (the defender inherits them).
fn held_here() -> Vec<&'static str> {
    let mine = std::fs::read_to_string("/proc/self/status").unwrap();
    let any = sets(&mine).iter().fold(0, |m, (_, s)| m | s);
    assert!(
        any & (1 << 19) != 0,
        "these tests must run as root (with CAP_SYS_PTRACE): they check what a root workload loses"
    );
    REMOVED
        .iter()
        .filter(|(_, n)| any & (1 << n) != 0)
        .map(|(name, _)| *name)
        .collect()
}

/// The one `defender` event about capabilities; its message.
fn capability_event(w: &World) -> String {
    let events: Vec<Value> = w
        .audits_of("defender")
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.to_lowercase().contains("capabilit"))
        })
        .collect();
    let e = only(events);
    assert_eq!(e["effect"], "alert", "{e}");
    assert_eq!(e["container"], "test-container", "{e}");
    e["message"].as_str().unwrap().to_owned()
}

/// The capability names listed in `message` after `label` (up to the next `;`).
fn listed_after<'a>(message: &'a str, label: &str) -> Vec<&'a str> {
    let Some(at) = message.find(label) else {
        return Vec::new();
    };
    let rest = &message[at + label.len()..];
    let list = rest.split(';').next().unwrap();
    list.split(", ").map(str::trim).collect()
}

/// `cat /proc/self/status` as a grandchild of the command (`sh -c`), under the defender with the
/// default policy; the status text, checked to be a success.
fn command_status(w: &World, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = w.command(None, extra, &["sh", "-c", "cat /proc/self/status"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = output_within(&mut c);
    assert!(out.status.success(), "{out:?}");
    stdout(&out)
}

/// Asserts that the command's sets hold none of the removed capabilities but `kept`, and hold
/// `kept` wherever this process holds it.
fn assert_sets(status: &str, kept: &[&str]) {
    let mine = std::fs::read_to_string("/proc/self/status").unwrap();
    let here = sets(&mine);
    for ((key, theirs), (_, ours)) in sets(status).into_iter().zip(here) {
        for (name, n) in REMOVED {
            let bit = 1u64 << n;
            match kept.contains(&name) {
                true => assert_eq!(theirs & bit, ours & bit, "{key} {name} kept\n{status}"),
                false => assert_eq!(theirs & bit, 0, "{key} holds {name}\n{status}"),
            }
        }
    }
}

#[test]
fn the_command_holds_none_of_the_removed_capabilities() {
    let held = held_here();
    let w = World::new();
    let status = command_status(&w, &[], &[]);
    assert_sets(&status, &[]);
    // What the rest of a root workload needs stays: CAP_CHOWN (0), CAP_KILL (5), CAP_NET_RAW (13).
    let eff = sets(&status)[2].1;
    assert_eq!(
        eff & (1 << 0 | 1 << 5 | 1 << 13),
        1 << 0 | 1 << 5 | 1 << 13,
        "{status}"
    );
    let message = capability_event(&w);
    assert!(
        message.starts_with("Capabilities removed from the command"),
        "{message}"
    );
    let mut named = listed_after(&message, ": ");
    named.sort();
    let mut want = held.clone();
    want.sort();
    assert_eq!(named, want, "{message}");
    assert!(!message.contains("kept on purpose"), "{message}");
}

#[test]
fn keep_capability_keeps_exactly_that_one() {
    held_here();
    for (extra, env) in [
        (&["--keep-capability", "NET_ADMIN"][..], &[][..]),
        (&["--keep-capability", "cap_net_admin"][..], &[][..]),
        (&[][..], &[("DEFENDER_KEEP_CAPABILITIES", "NET_ADMIN")][..]),
    ] {
        let w = World::new();
        let status = command_status(&w, extra, env);
        assert_sets(&status, &["CAP_NET_ADMIN"]);
        assert_ne!(
            sets(&status)[2].1 & 1 << 12,
            0,
            "NET_ADMIN effective\n{status}"
        );
        let message = capability_event(&w);
        assert_eq!(
            listed_after(&message, "kept on purpose (--keep-capability): "),
            ["CAP_NET_ADMIN"],
            "{message}"
        );
        assert!(
            !listed_after(&message, "subvert its supervisor: ").contains(&"CAP_NET_ADMIN"),
            "{message}"
        );
    }
    // Several, comma-separated in the variable; the flag repeated.
    for (extra, env) in [
        (
            &[][..],
            &[("DEFENDER_KEEP_CAPABILITIES", "SYS_ADMIN,CAP_NET_ADMIN")][..],
        ),
        (
            &[
                "--keep-capability",
                "SYS_ADMIN",
                "--keep-capability",
                "NET_ADMIN",
            ][..],
            &[][..],
        ),
    ] {
        let w = World::new();
        let status = command_status(&w, extra, env);
        assert_sets(&status, &["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
        let message = capability_event(&w);
        assert_eq!(
            listed_after(&message, "kept on purpose (--keep-capability): "),
            ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
            "{message}"
        );
    }
}

#[test]
fn keep_capability_names_are_checked() {
    let w = World::new();
    let out = output_within(&mut w.command(None, &["--keep-capability", "SYS_PTRAC"], &["true"]));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(stderr(&out).contains("SYS_PTRAC"), "{}", stderr(&out));
    let mut c = w.command(None, &[], &["true"]);
    c.env("DEFENDER_KEEP_CAPABILITIES", "NET_ADMIN,bogus");
    let out = output_within(&mut c);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(stderr(&out).contains("bogus"), "{}", stderr(&out));
    // A capability the defender does not remove: accepted, with a warning, and nothing changes.
    let status = {
        let mut c = w.command(
            None,
            &["--keep-capability", "NET_RAW"],
            &["cat", "/proc/self/status"],
        );
        let out = output_within(&mut c);
        assert!(out.status.success(), "{out:?}");
        assert!(
            stderr(&out).contains("CAP_NET_RAW") && stderr(&out).contains("nothing to keep"),
            "{}",
            stderr(&out)
        );
        stdout(&out)
    };
    assert_sets(&status, &[]);
    // Set to the empty string, the variable counts as not set.
    let w = World::new();
    let status = command_status(&w, &[], &[("DEFENDER_KEEP_CAPABILITIES", "")]);
    assert_sets(&status, &[]);
}

/// `attack_listener DIR` under the defender, with a policy denying `mkdir`; its output. With
/// `as_pid_1`, the defender runs as PID 1 of a PID namespace of the test's own, where the filter
/// has no signal-guard rows (the kernel protects a namespace's init), so that only the capability
/// stands between the command and the supervisor's descriptors.
fn listener_attack(w: &World, extra: &[&str], as_pid_1: bool) -> Output {
    let policy = w.policy(&process_policy(
        "no-mkdir",
        r#"{"effect": "prevent", "deny": ["mkdir"]}"#,
    ));
    let attack = test_program("attack_listener");
    let inner = w.command(
        Some(&policy),
        extra,
        &[attack.to_str().unwrap(), "stolen-dir"],
    );
    match as_pid_1 {
        true => wrapped(w, &["--pid", "--fork", "--mount-proc"], inner),
        false => output_within(&mut { inner }),
    }
}

fn assert_mkdir_prevented(w: &World, out: &Output) {
    let lines = stdout(out);
    assert!(
        lines.contains("mkdir=126") || lines.contains("mkdir=ERROR"),
        "{out:?}"
    );
    assert!(!w.path("stolen-dir").exists());
    let denied = only(w.audits_of("process"));
    assert_eq!(denied["effect"], "prevent", "{denied}");
    assert!(
        denied["process"].as_str().unwrap().ends_with("mkdir"),
        "{denied}"
    );
}

#[test]
fn the_command_cannot_take_the_seccomp_listener() {
    held_here();
    // Not PID 1: the signal guard already refuses a pidfd of the supervisor.
    let w = World::new();
    let out = listener_attack(&w, &[], false);
    assert!(stdout(&out).contains("pidfd=EPERM"), "{out:?}");
    assert_mkdir_prevented(&w, &out);
    // PID 1: the pidfd is had, and the kernel's ptrace access check refuses the descriptors.
    let w = World::new();
    let out = listener_attack(&w, &[], true);
    let lines = stdout(&out);
    assert!(lines.contains("pidfd=ok"), "{out:?}");
    assert!(lines.contains("getfd=EPERM"), "{out:?}");
    assert_mkdir_prevented(&w, &out);
    // The mechanism: the same program holding CAP_SYS_PTRACE takes the listener (and stops
    // there; it never answers a call, so the launch after it is still prevented).
    let w = World::new();
    let out = listener_attack(&w, &["--keep-capability", "SYS_PTRACE"], true);
    assert!(stdout(&out).contains("getfd=listener"), "{out:?}");
    assert!(!w.path("stolen-dir").exists());
}

/// `unshare ARGS -- defender run ... -- sh -c SCRIPT`: the defender in namespaces of the test's
/// own, with the default policy.
fn in_namespaces(w: &World, unshare: &[&str], extra: &[&str], script: &str) -> Output {
    wrapped(w, unshare, w.command(None, extra, &["sh", "-c", script]))
}

/// `unshare ARGS -- INNER`: INNER (a `defender run` command) in namespaces of the test's own.
fn wrapped(w: &World, unshare: &[&str], inner: Command) -> Output {
    let mut c = Command::new(require("unshare"));
    c.args(unshare)
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(w.dir.path());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    output_within(&mut c)
}

#[test]
fn net_admin_is_removed_unless_kept() {
    held_here();
    require("ip");
    // A change of the network configuration, in a network namespace of the test's own: what a
    // NAT rule rewriting a checked destination would need too.
    let script = "ip link set lo up && ip addr add 10.9.9.9/32 dev lo && ip -o addr show dev lo";
    let w = World::new();
    let out = in_namespaces(&w, &["--net"], &[], script);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("10.9.9.9"), "{out:?}");
    let w = World::new();
    let out = in_namespaces(&w, &["--net"], &["--keep-capability", "NET_ADMIN"], script);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("10.9.9.9"), "{out:?}");
}

#[test]
fn sys_admin_is_removed_unless_kept() {
    held_here();
    require("mount");
    let ns = ["--mount", "--propagation", "private"];
    // The attack: `mkdir`, denied, bind-mounted over `true`'s path would run under its name.
    let mkdir = std::fs::canonicalize(require("mkdir")).unwrap();
    let truth = std::fs::canonicalize(require("true")).unwrap();
    let attack = format!(
        "mount --bind {} {} || echo mount failed; {} made-by-true",
        mkdir.display(),
        truth.display(),
        truth.display()
    );
    let w = World::new();
    let policy = w.policy(&process_policy(
        "no-mkdir",
        r#"{"effect": "prevent", "deny": ["mkdir"]}"#,
    ));
    let policy = ["--policy", policy.to_str().unwrap()];
    let out = in_namespaces(&w, &ns, &policy, &attack);
    assert!(stdout(&out).contains("mount failed"), "{out:?}");
    assert!(!w.path("made-by-true").exists(), "{out:?}");
    // A plain mount fails with EPERM, and works with the capability kept.
    let script = "mount -t tmpfs none mnt && touch mnt/file && echo mounted";
    let w = World::new();
    std::fs::create_dir(w.path("mnt")).unwrap();
    let out = in_namespaces(&w, &ns, &[], script);
    assert!(!stdout(&out).contains("mounted"), "{out:?}");
    assert!(
        stderr(&out).contains("ermission denied") || stderr(&out).contains("not permitted"),
        "{}",
        stderr(&out)
    );
    let out = in_namespaces(&w, &ns, &["--keep-capability", "SYS_ADMIN"], script);
    assert!(stdout(&out).contains("mounted"), "{out:?}");
    // In the test's own mount namespace, the directory was never mounted over.
    assert!(!w.path("mnt/file").exists());
}

#[test]
fn without_setpcap_the_bounding_set_stays_but_no_program_regains_them() {
    held_here();
    // `setpriv` takes CAP_SETPCAP out of the bounding set, so the defender (root) starts without
    // it, as under `--cap-drop ALL --cap-add SYS_PTRACE`: its bounding set cannot shrink.
    let w = World::new();
    let inner = w.command(None, &[], &["sh", "-c", "cat /proc/self/status"]);
    let mut c = Command::new(require("setpriv"));
    c.args(["--bounding-set", "-setpcap", "--"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(w.dir.path());
    let out = output_within(&mut c);
    assert!(out.status.success(), "{out:?}");
    let status = stdout(&out);
    let sets = sets(&status);
    for (key, set) in &sets {
        for (name, n) in REMOVED {
            if *key != "CapBnd" {
                assert_eq!(set & 1 << n, 0, "{key} holds {name}\n{status}");
            }
        }
    }
    // Still in the bounding set, yet root's exec of `sh` and `cat` gained none of it back.
    assert_ne!(sets[3].1 & 1 << 19, 0, "{status}");
    let message = capability_event(&w);
    let left = listed_after(
        &message,
        "left in its bounding set, which cannot be shrunk without CAP_SETPCAP: ",
    );
    assert!(
        left.iter().any(|c| c.starts_with("CAP_SYS_PTRACE")),
        "{message}"
    );
    assert!(message.contains("no_new_privs"), "{message}");
}

#[test]
fn a_user_namespace_does_not_bring_them_back() {
    held_here();
    require("unshare");
    // In a user namespace of its own the command would hold every capability again, over
    // namespaces of its own: the bind-mount attack in a mount namespace it made.
    let mkdir = std::fs::canonicalize(require("mkdir")).unwrap();
    let truth = std::fs::canonicalize(require("true")).unwrap();
    let attack = format!(
        "unshare --user --map-root-user --mount sh -c 'mount --bind {} {} && {} made-in-userns' || echo refused",
        mkdir.display(),
        truth.display(),
        truth.display()
    );
    let w = World::new();
    let policy = w.policy(&process_policy(
        "no-mkdir",
        r#"{"effect": "prevent", "deny": ["mkdir"]}"#,
    ));
    let out = output_within(&mut w.command(Some(&policy), &[], &["sh", "-c", &attack]));
    assert!(stdout(&out).contains("refused"), "{out:?}");
    assert!(!w.path("made-in-userns").exists(), "{out:?}");
    let refused = w
        .audits_of("defender")
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("A new user namespace asked for by ")
        })
        .count();
    assert_eq!(refused, 1, "{:#?}", w.audits());
    // Threads still start: clone3, whose flags the filter cannot see, is answered ENOSYS and
    // glibc falls back to clone.
    let threads = "python3 -c 'import threading; t = threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()'";
    let out = output_within(&mut w.command(None, &[], &["sh", "-c", threads]));
    assert_eq!(stdout(&out).trim(), "thread", "{out:?}");
    // Kept on purpose, CAP_SYS_ADMIN allows user namespaces too.
    let out = output_within(&mut w.command(
        None,
        &["--keep-capability", "SYS_ADMIN"],
        &["unshare", "--user", "--map-root-user", "id", "-u"],
    ));
    assert_eq!(stdout(&out).trim(), "0", "{out:?}");
}
