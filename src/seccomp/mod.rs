//! The filter: which system calls are trapped and for which ABI, what the kernel offers
//! (feature probing), and turning a trapped call's number back into what it is: the vocabulary of
//! trapped calls ([`Trapped`], [`ExecCall`], [`NetCall`], [`Abi`]) that the sensors decide on.

pub mod bpf;

use std::io;

use bpf::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, FilterSpec, Trap, When};

use crate::sys::seccomp as sys;

/// The ABI a trapped call came through, which fixes its syscall numbers and pointer width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    X86_64,
    I386,
}

impl Abi {
    /// The size of a pointer in the caller's memory (argv and envp are arrays of them).
    pub fn ptr_width(self) -> usize {
        match self {
            Abi::X86_64 => 8,
            Abi::I386 => 4,
        }
    }
}

/// Which exec call was trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecCall {
    Execve,
    Execveat,
}

/// A trapped socket call (x86_64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetCall {
    Connect,
    Bind,
    Sendto,
    Sendmsg,
    Sendmmsg,
}

/// A trapped call, known by what it does rather than by its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trapped {
    Exec(Abi, ExecCall),
    /// Noted, not judged: after a chroot(2) paths mean something else for the caller, so the exec
    /// sensor looks up each caller's root from then on (and can skip it until then).
    Chroot,
    /// Noted, not judged: `setuid`, `setreuid`, `setresuid` or `setfsuid`, the only ways a
    /// process of the workload changes its uid (no_new_privs keeps set-user-ID programs from
    /// doing it at exec). Until the first, every process has the command's uid, and custom rules
    /// on `proc.uid` and `proc.user` need not look it up.
    SetUid,
    /// A socket call that can reach the network (x86_64).
    Net(NetCall),
    /// `io_uring_setup`: io_uring's network operations never pass through seccomp.
    IoUringSetup,
    /// `setsockopt` of a source route (IP_OPTIONS, IPV6_RTHDR): it sends packets to another
    /// address than the one connected or sent to.
    SourceRoute,
    /// A 32-bit (i386) socket call that can reach the network: refused, not emulated.
    Compat32Net,
    /// `socket()` of a raw or packet kind (RAW_SOCKET below), known from its registers alone.
    RawSocket,
    /// `unshare` or `clone` of a new user namespace, in which the caller would hold every
    /// capability again (CAP_SYS_ADMIN to bind-mount a denied program over an allowed path in a
    /// mount namespace of its own, among them).
    UserNamespace,
    /// `clone3`: its flags are in memory, where CLONE_NEWUSER cannot be told from the registers.
    /// Answered ENOSYS, as Docker's default seccomp profile does: glibc then falls back to `clone`.
    Clone3,
    /// i386 `socketcall(2)`: one number for every socket call; the call is in a register.
    Socketcall,
    /// A call that signals (or limits) a process and may reach the defender's own (`guard.rs`),
    /// trapped only when the defender is not PID 1.
    Signal(SignalCall),
}

/// The calls through which one process signals another, names its pid, limits or traces it
/// (`Trapped::Signal`). Their target is a register; the filter traps those aimed at a guarded value
/// (the defender's processes, their group, -1), `tkill` and `pidfd_send_signal` always (their
/// target is a thread id, or a descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalCall {
    Kill,
    Tkill,
    Tgkill,
    RtSigqueueinfo,
    RtTgsigqueueinfo,
    PidfdOpen,
    /// `pidfd_send_signal`, of this ABI: the siginfo it may carry is laid out per ABI.
    PidfdSendSignal(Abi),
    Prlimit,
    /// `setpgid` into the defender's process group, from where `kill(0, …)` would reach it.
    Setpgid,
    /// `ptrace` of a defender process (its pid is the second argument): a workload that kept
    /// CAP_SYS_PTRACE on purpose still never attaches to its supervisor.
    Ptrace,
    /// `process_vm_readv` / `process_vm_writev` of a defender process.
    ProcessVm,
    /// `fcntl(F_SETSIG)` of SIGKILL or SIGSTOP: the owner set with F_SETOWN (any pid, a register
    /// or memory) would get it from the kernel on the descriptor's next I/O event.
    SetSig,
}

/// Which sensor a trapped call belongs to: the network rows are in the filter only when network or
/// DNS enforcement can be on, so that without them no socket call pays a round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sensor {
    Exec,
    Network,
    /// The defender guards its own processes from the workload's signals: when not PID 1.
    Guard,
}

/// One row of the table: a call of one ABI, which of its invocations are trapped, what it is.
struct Row {
    arch: u32,
    nr: u32,
    when: When,
    trapped: Trapped,
    sensor: Sensor,
}

const fn row(arch: u32, nr: u32, when: When, trapped: Trapped, sensor: Sensor) -> Row {
    Row {
        arch,
        nr,
        when,
        trapped,
        sensor,
    }
}

use Sensor::{Exec, Guard, Network};
use When::Always;

/// (level, optname) pairs of `setsockopt` that set a source route (linux/in.h, linux/in6.h):
/// IP_OPTIONS, IPV6_RTHDR, IPV6_2292RTHDR, and IPV6_2292PKTOPTIONS, which takes ancillary data
/// that may hold a routing header (ip6_datagram_send_ctl).
const SOURCE_ROUTES: &[(u32, u32)] = &[(0, 4), (41, 57), (41, 5), (41, 6)];
const SOURCE_ROUTE: When = When::Pair {
    a: 1,
    b: 2,
    pairs: SOURCE_ROUTES,
};

/// Sockets whose packets carry headers the workload writes itself, so that what they send is not
/// what the address of a connect or send says (a raw UDP socket puts any port in its own header,
/// IP_HDRINCL any destination): AF_PACKET (17) and AF_XDP (44) sockets of any type, SOCK_RAW (3)
/// sockets of AF_INET (2) and AF_INET6 (10), and AF_INET's obsolete SOCK_PACKET (10), which the
/// kernel turns into a packet socket (__sock_create). ICMP datagram sockets (ping) are not raw:
/// the kernel writes their headers, and their sends are judged by address like UDP.
const RAW_SOCKET: When = When::Socket {
    any_type: RAW_DOMAINS,
    typed: RAW_TYPES,
};
const RAW_DOMAINS: &[u32] = &[17, 44];
const RAW_TYPES: &[(u32, u32)] = &[(2, 3), (10, 3), (2, 10)];

/// Whether a socket of this domain and type (as socket(2) takes them, or as SO_DOMAIN and SO_TYPE
/// report them) is one of the raw or packet kinds above.
pub fn is_raw_socket(domain: i32, ty: i32) -> bool {
    let (domain, ty) = (domain as u32, ty as u32 & bpf::SOCK_TYPE_MASK);
    RAW_DOMAINS.contains(&domain) || RAW_TYPES.contains(&(domain, ty))
}

/// CLONE_NEWUSER (linux/sched.h), in the flags of `unshare` and `clone`.
const NEW_USER: When = When::AnyBit {
    arg: 0,
    mask: 0x1000_0000,
};

/// Every trapped call, with its number per ABI (asm/unistd_64.h, asm/unistd_32.h): the single
/// table both the BPF program and the dispatcher are built from, so they cannot disagree.
const TABLE: &[Row] = &[
    row(
        AUDIT_ARCH_X86_64,
        59,
        Always,
        Trapped::Exec(Abi::X86_64, ExecCall::Execve),
        Exec,
    ),
    row(
        AUDIT_ARCH_X86_64,
        322,
        Always,
        Trapped::Exec(Abi::X86_64, ExecCall::Execveat),
        Exec,
    ),
    // i386 programs (and `int 0x80` from 64-bit ones) must not reach exec untrapped.
    row(
        AUDIT_ARCH_I386,
        11,
        Always,
        Trapped::Exec(Abi::I386, ExecCall::Execve),
        Exec,
    ),
    row(
        AUDIT_ARCH_I386,
        358,
        Always,
        Trapped::Exec(Abi::I386, ExecCall::Execveat),
        Exec,
    ),
    row(AUDIT_ARCH_X86_64, 161, Always, Trapped::Chroot, Exec),
    row(
        AUDIT_ARCH_X86_64,
        272,
        NEW_USER,
        Trapped::UserNamespace,
        Exec,
    ), // unshare
    row(
        AUDIT_ARCH_X86_64,
        56,
        NEW_USER,
        Trapped::UserNamespace,
        Exec,
    ), // clone
    row(AUDIT_ARCH_X86_64, 435, Always, Trapped::Clone3, Exec),
    row(AUDIT_ARCH_I386, 310, NEW_USER, Trapped::UserNamespace, Exec), // unshare
    row(AUDIT_ARCH_I386, 120, NEW_USER, Trapped::UserNamespace, Exec), // clone
    row(AUDIT_ARCH_I386, 435, Always, Trapped::Clone3, Exec),
    row(AUDIT_ARCH_I386, 61, Always, Trapped::Chroot, Exec),
    // setuid, setreuid, setresuid, setfsuid; and for i386 their 16-bit and 32-bit forms.
    row(AUDIT_ARCH_X86_64, 105, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_X86_64, 113, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_X86_64, 117, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_X86_64, 122, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_I386, 23, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_I386, 70, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_I386, 164, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_I386, 138, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_I386, 213, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_I386, 203, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_I386, 208, Always, Trapped::SetUid, Exec),
    row(AUDIT_ARCH_I386, 215, Always, Trapped::SetUid, Exec),
    row(
        AUDIT_ARCH_X86_64,
        42,
        Always,
        Trapped::Net(NetCall::Connect),
        Network,
    ),
    row(
        AUDIT_ARCH_X86_64,
        49,
        Always,
        Trapped::Net(NetCall::Bind),
        Network,
    ),
    // sendto with a NULL address (send(2), every TCP write through it) is not trapped.
    row(
        AUDIT_ARCH_X86_64,
        44,
        When::NonZero(4),
        Trapped::Net(NetCall::Sendto),
        Network,
    ),
    row(
        AUDIT_ARCH_X86_64,
        46,
        Always,
        Trapped::Net(NetCall::Sendmsg),
        Network,
    ),
    row(
        AUDIT_ARCH_X86_64,
        307,
        Always,
        Trapped::Net(NetCall::Sendmmsg),
        Network,
    ),
    row(
        AUDIT_ARCH_X86_64,
        425,
        Always,
        Trapped::IoUringSetup,
        Network,
    ),
    row(
        AUDIT_ARCH_X86_64,
        54,
        SOURCE_ROUTE,
        Trapped::SourceRoute,
        Network,
    ),
    row(
        AUDIT_ARCH_X86_64,
        41,
        RAW_SOCKET,
        Trapped::RawSocket,
        Network,
    ),
    row(
        AUDIT_ARCH_I386,
        359,
        RAW_SOCKET,
        Trapped::RawSocket,
        Network,
    ), // socket
    row(AUDIT_ARCH_I386, 102, Always, Trapped::Socketcall, Network),
    row(AUDIT_ARCH_I386, 361, Always, Trapped::Compat32Net, Network), // bind
    row(AUDIT_ARCH_I386, 362, Always, Trapped::Compat32Net, Network), // connect
    row(
        AUDIT_ARCH_I386,
        369,
        When::NonZero(4),
        Trapped::Compat32Net,
        Network,
    ), // sendto
    row(AUDIT_ARCH_I386, 370, Always, Trapped::Compat32Net, Network), // sendmsg
    row(AUDIT_ARCH_I386, 345, Always, Trapped::Compat32Net, Network), // sendmmsg
    row(
        AUDIT_ARCH_I386,
        366,
        SOURCE_ROUTE,
        Trapped::SourceRoute,
        Network,
    ), // setsockopt
    row(AUDIT_ARCH_I386, 425, Always, Trapped::IoUringSetup, Network),
    // The defender's own processes, guarded from the workload's signals (when not PID 1). Calls
    // that name a process by any of its thread ids (kill, rt_sigqueueinfo, prlimit64 with a pid,
    // ptrace, process_vm_*: the kernel acts on the thread's whole process) are trapped whatever
    // the id, since the defender's thread ids are not known when the filter is built; those that
    // name the process by its pid first (tgkill, rt_tgsigqueueinfo, pidfd_open: a thread id alone
    // is refused or must belong to that pid) only when it is one of the defender's.
    guard(AUDIT_ARCH_X86_64, 62, Always, SignalCall::Kill),
    guard(AUDIT_ARCH_X86_64, 200, Always, SignalCall::Tkill),
    guard(AUDIT_ARCH_X86_64, 234, When::Guarded(0), SignalCall::Tgkill),
    guard(AUDIT_ARCH_X86_64, 129, Always, SignalCall::RtSigqueueinfo),
    guard(
        AUDIT_ARCH_X86_64,
        297,
        When::Guarded(0),
        SignalCall::RtTgsigqueueinfo,
    ),
    guard(
        AUDIT_ARCH_X86_64,
        434,
        When::Guarded(0),
        SignalCall::PidfdOpen,
    ),
    guard(
        AUDIT_ARCH_X86_64,
        424,
        Always,
        SignalCall::PidfdSendSignal(Abi::X86_64),
    ),
    guard(
        AUDIT_ARCH_X86_64,
        302,
        When::NonZero(0),
        SignalCall::Prlimit,
    ),
    guard(
        AUDIT_ARCH_X86_64,
        109,
        When::Guarded(1),
        SignalCall::Setpgid,
    ),
    guard(AUDIT_ARCH_X86_64, 72, SET_SIG_FATAL, SignalCall::SetSig),
    guard(AUDIT_ARCH_X86_64, 101, Always, SignalCall::Ptrace),
    guard(AUDIT_ARCH_X86_64, 310, Always, SignalCall::ProcessVm),
    guard(AUDIT_ARCH_X86_64, 311, Always, SignalCall::ProcessVm),
    guard(AUDIT_ARCH_I386, 37, Always, SignalCall::Kill),
    guard(AUDIT_ARCH_I386, 238, Always, SignalCall::Tkill),
    guard(AUDIT_ARCH_I386, 270, When::Guarded(0), SignalCall::Tgkill),
    guard(AUDIT_ARCH_I386, 178, Always, SignalCall::RtSigqueueinfo),
    guard(
        AUDIT_ARCH_I386,
        335,
        When::Guarded(0),
        SignalCall::RtTgsigqueueinfo,
    ),
    guard(
        AUDIT_ARCH_I386,
        434,
        When::Guarded(0),
        SignalCall::PidfdOpen,
    ),
    guard(
        AUDIT_ARCH_I386,
        424,
        Always,
        SignalCall::PidfdSendSignal(Abi::I386),
    ),
    guard(AUDIT_ARCH_I386, 340, When::NonZero(0), SignalCall::Prlimit),
    guard(AUDIT_ARCH_I386, 57, When::Guarded(1), SignalCall::Setpgid),
    guard(AUDIT_ARCH_I386, 55, SET_SIG_FATAL, SignalCall::SetSig), // fcntl
    guard(AUDIT_ARCH_I386, 221, SET_SIG_FATAL, SignalCall::SetSig), // fcntl64
    guard(AUDIT_ARCH_I386, 26, Always, SignalCall::Ptrace),
    guard(AUDIT_ARCH_I386, 347, Always, SignalCall::ProcessVm),
    guard(AUDIT_ARCH_I386, 348, Always, SignalCall::ProcessVm),
];

const fn guard(arch: u32, nr: u32, when: When, call: SignalCall) -> Row {
    row(arch, nr, when, Trapped::Signal(call), Guard)
}

/// `fcntl(fd, F_SETSIG, SIG)` (F_SETSIG = 10, asm-generic/fcntl.h) of the signals a descriptor's
/// owner could be sent that the defender cannot block and forward: SIGKILL, SIGSTOP, and the C
/// libraries' internal signals 32-34 (threads a C library starts unblock them; the defender sets
/// them to be ignored, so this is a second line).
const SET_SIG_FATAL: When = When::Pair {
    a: 1,
    b: 2,
    pairs: &[(10, 9), (10, 19), (10, 32), (10, 33), (10, 34)],
};

/// `socketcall(2)` call numbers (linux/net.h) that reach the network or set a source route, and
/// SYS_SOCKET: its arguments are in memory, so whether it makes a raw socket cannot be told from
/// the registers, and a decision on memory the caller can change after the check is none.
const SOCKETCALL_NETWORK: &[u64] = &[
    1,  // SYS_SOCKET
    2,  // SYS_BIND
    3,  // SYS_CONNECT
    11, // SYS_SENDTO
    14, // SYS_SETSOCKOPT
    16, // SYS_SENDMSG
    20, // SYS_SENDMMSG
];

/// Whether an i386 `socketcall` with this call number (its first argument, a register) is one
/// that reaches the network.
pub fn socketcall_reaches_network(call: u64) -> bool {
    SOCKETCALL_NETWORK.contains(&(call as u32 as u64))
}

/// The filter the child installs: the exec rows always, the network rows when `network`, the guard
/// rows when `guarded` names the values that reach the defender's processes (not PID 1).
pub fn filter_spec(network: bool, guarded: Option<&[u32]>) -> FilterSpec {
    let per_arch = |arch| {
        TABLE
            .iter()
            .filter(|r| {
                r.arch == arch
                    && match r.sensor {
                        Exec => true,
                        Network => network,
                        Guard => guarded.is_some(),
                    }
            })
            .map(|r| Trap {
                nr: r.nr,
                when: r.when,
            })
            .collect()
    };
    FilterSpec {
        x86_64: per_arch(AUDIT_ARCH_X86_64),
        i386: per_arch(AUDIT_ARCH_I386),
        guarded: guarded.map(<[u32]>::to_vec).unwrap_or_default(),
    }
}

/// What a notification is about; `None` for a number the filter does not trap (never expected:
/// the supervisor fails it closed).
pub fn classify(arch: u32, nr: i32) -> Option<Trapped> {
    TABLE
        .iter()
        .find(|r| r.arch == arch && i64::from(r.nr) == i64::from(nr))
        .map(|r| r.trapped)
}

/// Kernel features the supervisor relies on or benefits from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features {
    /// `struct seccomp_notif_sizes`, needed to receive notifications.
    pub sizes: libc::seccomp_notif_sizes,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "seccomp user notification is not available (needs Linux 5.6 or later and seccomp(2) allowed): {0}"
    )]
    Unavailable(String),
}

/// Probes what the defender cannot work without: user notification with CONTINUE (5.5) and
/// openat2 (5.6). The optional features (sync wake-up, killable wait) are probed where they are
/// used, on the listener and at install.
pub fn probe() -> Result<Features, SeccompError> {
    let sizes = sys::notif_sizes()
        .map_err(|e| SeccompError::Unavailable(format!("SECCOMP_GET_NOTIF_SIZES: {e}")))?;
    if !sys::action_available(libc::SECCOMP_RET_USER_NOTIF) {
        return Err(SeccompError::Unavailable(
            "SECCOMP_RET_USER_NOTIF is not offered by this kernel".into(),
        ));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    if !kernel_at_least(&release, (5, 6)) {
        return Err(SeccompError::Unavailable(format!(
            "kernel {release} is older than 5.6"
        )));
    }
    Ok(Features { sizes })
}

fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// Installs the filter on the calling thread and returns the listener and whether the killable
/// wait (5.19) is on: with it, a trapped caller that gets a non-fatal signal keeps waiting for our
/// answer instead of restarting the call over and over.
pub fn install(network: bool, guarded: Option<&[u32]>) -> io::Result<(std::os::fd::OwnedFd, bool)> {
    let prog = bpf::build(&filter_spec(network, guarded));
    sys::set_no_new_privs()?;
    match sys::install_filter(&prog, libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV) {
        Ok(fd) => Ok((fd, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Ok((sys::install_filter(&prog, 0)?, false))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_filter_and_classify_agree() {
        let guarded: &[u32] = &[1];
        let (with, without) = (
            bpf::build(&filter_spec(true, Some(guarded))),
            bpf::build(&filter_spec(false, None)),
        );
        for r in TABLE {
            // Arguments that satisfy every condition: all words set to the row's first pair.
            let args = match r.when {
                When::Pair { pairs, .. } => [0, pairs[0].0.into(), pairs[0].1.into(), 0, 0, 0],
                When::Socket { typed, .. } => [typed[0].0.into(), typed[0].1.into(), 0, 0, 0, 0],
                When::AnyBit { mask, .. } => [mask.into(); 6],
                _ => [1; 6],
            };
            let notify = bpf::Action::Notify;
            assert_eq!(
                bpf::evaluate(&with, r.arch, r.nr, args),
                notify,
                "{:?}",
                r.trapped
            );
            let off = if r.sensor == Exec {
                notify
            } else {
                bpf::Action::Allow
            };
            assert_eq!(
                bpf::evaluate(&without, r.arch, r.nr, args),
                off,
                "{:?}",
                r.trapped
            );
            assert_eq!(classify(r.arch, r.nr as i32), Some(r.trapped));
        }
        assert_eq!(classify(AUDIT_ARCH_X86_64, 11), None);
        assert_eq!(classify(AUDIT_ARCH_I386, 59), None);
        // A tgkill of a process that is not guarded, prlimit64 of the caller itself, and F_SETSIG
        // of another signal pass; every kill is judged (a thread id of the defender reaches it).
        for (nr, args, want) in [
            (234, [2, 3, 9, 0, 0, 0], bpf::Action::Allow),
            (302, [0, 7, 0, 0, 0, 0], bpf::Action::Allow),
            (72, [3, 10, 12, 0, 0, 0], bpf::Action::Allow),
            (72, [3, 10, 32, 0, 0, 0], bpf::Action::Notify),
            (62, [2, 9, 0, 0, 0, 0], bpf::Action::Notify),
        ] {
            assert_eq!(
                bpf::evaluate(&with, AUDIT_ARCH_X86_64, nr, args),
                want,
                "{nr} {args:?}"
            );
        }
        // A TCP send (sendto without an address) never reaches the supervisor.
        let send = [3, 0x1000, 100, 0, 0, 0];
        assert_eq!(
            bpf::evaluate(&with, AUDIT_ARCH_X86_64, 44, send),
            bpf::Action::Allow
        );
        // Nor does the creation of a socket that is not raw, in either ABI; every raw kind does.
        for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
            let nr = if arch == AUDIT_ARCH_I386 { 359 } else { 41 };
            for (domain, ty, want) in [
                (2, 1, bpf::Action::Allow),
                (10, 2, bpf::Action::Allow),
                (1, 3, bpf::Action::Allow),
                (16, 3, bpf::Action::Allow),
                (2, 3, bpf::Action::Notify),
                (10, 3 | 0o4000, bpf::Action::Notify),
                (2, 10, bpf::Action::Notify),
                (17, 2, bpf::Action::Notify),
                (44, 3, bpf::Action::Notify),
            ] {
                let args = [domain, ty, 0, 0, 0, 0];
                assert_eq!(bpf::evaluate(&with, arch, nr, args), want, "{domain} {ty}");
                let off = bpf::evaluate(&without, arch, nr, args);
                assert_eq!(off, bpf::Action::Allow, "{domain} {ty}");
            }
        }
        assert!(socketcall_reaches_network(1), "socketcall SYS_SOCKET");
        // The supervisor's own test agrees with the filter's, for a socket made (the registers of
        // socket(2)) and for one that exists (SO_DOMAIN, SO_TYPE: AF_INET's SOCK_PACKET reports
        // AF_PACKET).
        for (domain, ty, raw) in [
            (2, 3, true),
            (2, 3 | 0o2000000, true),
            (10, 3, true),
            (2, 10, true),
            (17, 10, true),
            (17, 2, true),
            (44, 3, true),
            (2, 1, false),
            (2, 2, false),
            (10, 10, false),
            (1, 3, false),
            (16, 3, false),
        ] {
            assert_eq!(is_raw_socket(domain, ty), raw, "{domain} {ty}");
            let want = if raw {
                bpf::Action::Notify
            } else {
                bpf::Action::Allow
            };
            let args = [domain as u64, ty as u64, 0, 0, 0, 0];
            assert_eq!(bpf::evaluate(&with, AUDIT_ARCH_X86_64, 41, args), want);
        }
    }

    #[test]
    fn kernel_versions() {
        for (release, want) in [
            ("6.18.44-fc-v669", true),
            ("5.6.0", true),
            ("5.5.19", false),
            ("4.19.0-aws", false),
            ("", false),
        ] {
            assert_eq!(kernel_at_least(release, (5, 6)), want, "{release}");
        }
    }
}
