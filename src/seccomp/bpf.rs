//! The seccomp BPF program: which system calls reach the supervisor, built as plain data and tested
//! without a kernel.
//!
//! The program is a short decision list. It first checks `seccomp_data.arch` (a process can enter
//! the kernel through another ABI, e.g. i386 `int 0x80`, where the numbers differ), refuses the x32
//! ABI outright, sends the trapped calls to the listener and allows everything else. Untrapped calls
//! pay only for these few BPF instructions; nothing else is on their path. See seccomp(2) and the
//! kernel's Documentation/userspace-api/seccomp_filter.rst.

use libc::sock_filter;

/// `AUDIT_ARCH_X86_64` from <linux/audit.h> (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_I386` (EM_386 | __AUDIT_ARCH_LE): what `seccomp_data.arch` says for `int 0x80`.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// Syscall numbers of the x32 ABI carry this bit under `AUDIT_ARCH_X86_64` (asm/unistd.h).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets into `struct seccomp_data` { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

// Classic BPF opcodes (linux/bpf_common.h), spelled out so the program reads as the kernel sees it.
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;

/// `SOCK_TYPE_MASK` (linux/net.h): the socket type; the bits above are flags (SOCK_NONBLOCK,
/// SOCK_CLOEXEC) that __sys_socket takes off before the type is looked at.
pub const SOCK_TYPE_MASK: u32 = 0xf;

/// The kernel refuses programs longer than BPF_MAXINSNS (4096); ours stay far below.
const MAX_INSNS: usize = 4096;

/// What the filter answers for a system call, before any supervisor is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Hand the call to the supervisor through the listener (`SECCOMP_RET_USER_NOTIF`).
    Notify,
    /// Fail the call with this errno without asking anyone.
    Errno(u16),
    /// Kill the whole process: for an architecture the defender does not know.
    KillProcess,
}

impl Action {
    fn ret(self) -> u32 {
        match self {
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Notify => libc::SECCOMP_RET_USER_NOTIF,
            Action::Errno(e) => libc::SECCOMP_RET_ERRNO | u32::from(e),
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
}

/// One trapped system call of one ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trap {
    pub nr: u32,
    pub when: When,
}

/// Which calls of a number are trapped, judged on registers alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// When this argument (0..6) is non-zero, e.g. a `sendto` destination address: a NULL address
    /// is a plain `send()` and must not pay a round trip to the supervisor.
    NonZero(u8),
    /// When the low words of arguments `a` and `b` equal one of the pairs, e.g. `setsockopt`'s
    /// (level, optname). Only the low word counts, as for the kernel, which takes these as `int`.
    Pair {
        a: u8,
        b: u8,
        pairs: &'static [(u32, u32)],
    },
    /// When the low word of this argument (0..6) has any bit of `mask` set, e.g. CLONE_NEWUSER in
    /// the flags of `unshare` or `clone`.
    AnyBit {
        arg: u8,
        mask: u32,
    },
    /// For `socket(domain, type, protocol)`: when the low word of the domain (argument 0) is one of
    /// `any_type`, or when (domain, type & SOCK_TYPE_MASK) (argument 1) is one of `typed`. Only the
    /// low words count: the kernel takes both as `int`.
    Socket {
        any_type: &'static [u32],
        typed: &'static [(u32, u32)],
    },
    /// When the low word of this argument is one of [`FilterSpec::guarded`]: a pid (or process
    /// group, as a negative pid) that reaches the defender's own processes. The kernel takes
    /// these arguments as `pid_t`, a 32-bit int, so only the low word counts.
    Guarded(u8),
}

impl Trap {
    pub const fn always(nr: u32) -> Self {
        Trap {
            nr,
            when: When::Always,
        }
    }
}

/// The system calls to trap, per ABI. Everything not listed is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterSpec {
    pub x86_64: Vec<Trap>,
    pub i386: Vec<Trap>,
    /// The values [`When::Guarded`] traps, known only once the defender's processes exist.
    pub guarded: Vec<u32>,
}

/// Builds the program. Layout:
/// ```text
///   A = arch
///   if A == X86_64 goto x86_64
///   if A == I386 goto i386
///   return KILL_PROCESS
/// x86_64: A = nr; if A >= X32_BIT return ERRNO(ENOSYS); <traps>; return ALLOW
/// i386:   A = nr; <traps>; return ALLOW
/// ```
/// x32 is refused with ENOSYS, which is what a kernel built without x32 support (most are) answers:
/// no x32 program can reach `execve` behind the supervisor's back.
pub fn build(spec: &FilterSpec) -> Vec<sock_filter> {
    let mut x86_64 = vec![
        stmt(LD_W_ABS, OFFSET_NR),
        jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, Action::Errno(libc::ENOSYS as u16).ret()),
    ];
    x86_64.extend(trap_block(&spec.x86_64, &spec.guarded));
    let mut i386 = vec![stmt(LD_W_ABS, OFFSET_NR)];
    i386.extend(trap_block(&spec.i386, &spec.guarded));

    let mut prog = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 2, 0),
        jump(JEQ_K, AUDIT_ARCH_I386, offset(x86_64.len() + 1), 0),
        stmt(RET_K, Action::KillProcess.ret()),
    ];
    prog.extend(x86_64);
    prog.extend(i386);
    assert!(prog.len() <= MAX_INSNS, "seccomp program too long");
    prog
}

/// The trap list of one ABI, with `A` holding the syscall number on entry; ends in ALLOW.
fn trap_block(traps: &[Trap], guarded: &[u32]) -> Vec<sock_filter> {
    let mut block = Vec::new();
    for trap in traps {
        match trap.when {
            When::Always => {
                block.push(jump(JEQ_K, trap.nr, 0, 1));
                block.push(stmt(RET_K, Action::Notify.ret()));
            }
            When::NonZero(arg) => {
                // A 64-bit argument is two words (little endian: low word first). Notify when
                // either is non-zero. Both paths return, so `A` still holds the number for the
                // next comparison whenever the number did not match.
                let low = OFFSET_ARGS + 8 * u32::from(arg);
                block.extend([
                    jump(JEQ_K, trap.nr, 0, 6),
                    stmt(LD_W_ABS, low),
                    jump(JEQ_K, 0, 0, 2),
                    stmt(LD_W_ABS, low + 4),
                    jump(JEQ_K, 0, 1, 0),
                    stmt(RET_K, Action::Notify.ret()),
                    stmt(RET_K, Action::Allow.ret()),
                ]);
            }
            When::Pair { a, b, pairs } => {
                // Five instructions per pair, then ALLOW: once the number matched, every path
                // returns, as above.
                let (a, b) = (
                    OFFSET_ARGS + 8 * u32::from(a),
                    OFFSET_ARGS + 8 * u32::from(b),
                );
                block.push(jump(JEQ_K, trap.nr, 0, offset(5 * pairs.len() + 1)));
                for (va, vb) in pairs {
                    block.extend([
                        stmt(LD_W_ABS, a),
                        jump(JEQ_K, *va, 0, 3),
                        stmt(LD_W_ABS, b),
                        jump(JEQ_K, *vb, 0, 1),
                        stmt(RET_K, Action::Notify.ret()),
                    ]);
                }
                block.push(stmt(RET_K, Action::Allow.ret()));
            }
            When::AnyBit { arg, mask } => {
                // Once the number matched, every path returns, as above.
                block.extend([
                    jump(JEQ_K, trap.nr, 0, 5),
                    stmt(LD_W_ABS, OFFSET_ARGS + 8 * u32::from(arg)),
                    stmt(AND_K, mask),
                    jump(JEQ_K, 0, 1, 0),
                    stmt(RET_K, Action::Notify.ret()),
                    stmt(RET_K, Action::Allow.ret()),
                ]);
            }
            When::Socket { any_type, typed } => {
                // The body ends in ALLOW then NOTIFY; every match jumps forward to the NOTIFY.
                // Once the number matched, every path returns, as above.
                let (domain, ty) = (OFFSET_ARGS, OFFSET_ARGS + 8);
                let mut body = vec![stmt(LD_W_ABS, domain)];
                let mut to_notify = Vec::new();
                for d in any_type {
                    to_notify.push(body.len());
                    body.push(jump(JEQ_K, *d, 0, 0));
                }
                for (d, t) in typed {
                    body.extend([
                        stmt(LD_W_ABS, domain),
                        jump(JEQ_K, *d, 0, 3),
                        stmt(LD_W_ABS, ty),
                        stmt(AND_K, SOCK_TYPE_MASK),
                    ]);
                    to_notify.push(body.len());
                    body.push(jump(JEQ_K, *t, 0, 0));
                }
                body.push(stmt(RET_K, Action::Allow.ret()));
                let notify = body.len();
                body.push(stmt(RET_K, Action::Notify.ret()));
                for at in to_notify {
                    body[at].jt = offset(notify - at - 1);
                }
                block.push(jump(JEQ_K, trap.nr, 0, offset(body.len())));
                block.extend(body);
            }
            When::Guarded(arg) => {
                // Once the number matched: load the low word, one comparison per value jumping
                // to NOTIFY, else ALLOW. Every path returns, as above.
                let n = guarded.len();
                block.push(jump(JEQ_K, trap.nr, 0, offset(n + 3)));
                block.push(stmt(LD_W_ABS, OFFSET_ARGS + 8 * u32::from(arg)));
                for (i, v) in guarded.iter().enumerate() {
                    block.push(jump(JEQ_K, *v, offset(n - i), 0));
                }
                block.push(stmt(RET_K, Action::Allow.ret()));
                block.push(stmt(RET_K, Action::Notify.ret()));
            }
        }
    }
    block.push(stmt(RET_K, Action::Allow.ret()));
    block
}

fn offset(n: usize) -> u8 {
    u8::try_from(n).expect("seccomp jump beyond 255 instructions")
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// A classic-BPF interpreter for the subset [`build`] emits, so the program's decisions are tested
/// as data: the same instructions the kernel runs, without installing anything.
#[cfg(test)]
pub fn evaluate(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> Action {
    let word = |off: u32| -> u32 {
        match off {
            OFFSET_NR => nr,
            OFFSET_ARCH => arch,
            o if o >= OFFSET_ARGS => {
                let i = ((o - OFFSET_ARGS) / 8) as usize;
                let v = args[i];
                if (o - OFFSET_ARGS).is_multiple_of(8) {
                    v as u32
                } else {
                    (v >> 32) as u32
                }
            }
            _ => panic!("load at unexpected offset {off}"),
        }
    };
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let insn = prog[pc];
        pc += 1;
        match insn.code {
            LD_W_ABS => a = word(insn.k),
            JEQ_K => pc += usize::from(if a == insn.k { insn.jt } else { insn.jf }),
            JGE_K => pc += usize::from(if a >= insn.k { insn.jt } else { insn.jf }),
            AND_K => a &= insn.k,
            RET_K => {
                return match insn.k {
                    libc::SECCOMP_RET_ALLOW => Action::Allow,
                    libc::SECCOMP_RET_USER_NOTIF => Action::Notify,
                    libc::SECCOMP_RET_KILL_PROCESS => Action::KillProcess,
                    k if k & 0xffff_0000 == libc::SECCOMP_RET_ERRNO => Action::Errno(k as u16),
                    k => panic!("unexpected return {k:#x}"),
                };
            }
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDTO: u32 = 44;
    const SETSOCKOPT: u32 = 54;
    const SOCKET: u32 = 41;
    const UNSHARE: u32 = 272;
    const KILL: u32 = 62;
    const KILL_I386: u32 = 37;

    fn spec() -> FilterSpec {
        FilterSpec {
            x86_64: vec![
                Trap::always(59),
                Trap::always(322),
                Trap {
                    nr: SENDTO,
                    when: When::NonZero(4),
                },
                Trap {
                    nr: SETSOCKOPT,
                    when: When::Pair {
                        a: 1,
                        b: 2,
                        pairs: &[(0, 4), (41, 57)],
                    },
                },
                Trap {
                    nr: SOCKET,
                    when: When::Socket {
                        any_type: &[17, 44],
                        typed: &[(2, 3), (10, 3), (2, 10)],
                    },
                },
                Trap {
                    nr: KILL,
                    when: When::Guarded(0),
                },
            ],
            i386: vec![
                Trap::always(11),
                Trap::always(358),
                Trap {
                    nr: KILL_I386,
                    when: When::Guarded(0),
                },
            ],
            guarded: vec![4242, 4241, (-4241i32) as u32, u32::MAX],
        }
    }

    #[test]
    fn decisions() {
        let prog = build(&spec());
        let no_args = [0u64; 6];
        let with_addr = [3, 0x1000, 10, 0, 0x7fff_0000_1000, 16];
        let high_only = [3, 0x1000, 10, 0, 0x7fff_0000_0000, 16];
        let cases: &[(&str, u32, u32, [u64; 6], Action)] = &[
            ("execve", AUDIT_ARCH_X86_64, 59, no_args, Action::Notify),
            ("execveat", AUDIT_ARCH_X86_64, 322, no_args, Action::Notify),
            ("getpid", AUDIT_ARCH_X86_64, 39, no_args, Action::Allow),
            ("write", AUDIT_ARCH_X86_64, 1, no_args, Action::Allow),
            (
                "send (sendto, NULL addr)",
                AUDIT_ARCH_X86_64,
                SENDTO,
                no_args,
                Action::Allow,
            ),
            (
                "sendto with addr",
                AUDIT_ARCH_X86_64,
                SENDTO,
                with_addr,
                Action::Notify,
            ),
            (
                "sendto, addr above 4 GiB",
                AUDIT_ARCH_X86_64,
                SENDTO,
                high_only,
                Action::Notify,
            ),
            (
                "x32 execve",
                AUDIT_ARCH_X86_64,
                X32_SYSCALL_BIT | 520,
                no_args,
                Action::Errno(38),
            ),
            (
                "x32 getpid",
                AUDIT_ARCH_X86_64,
                X32_SYSCALL_BIT | 39,
                no_args,
                Action::Errno(38),
            ),
            (
                "setsockopt IP_OPTIONS",
                AUDIT_ARCH_X86_64,
                SETSOCKOPT,
                [3, 0, 4, 0, 0, 0],
                Action::Notify,
            ),
            (
                "setsockopt IPV6_RTHDR, high words ignored",
                AUDIT_ARCH_X86_64,
                SETSOCKOPT,
                [3, 0xffff_0000_0000_0029, 0x1_0000_0039, 0, 0, 0],
                Action::Notify,
            ),
            (
                "setsockopt SO_REUSEADDR",
                AUDIT_ARCH_X86_64,
                SETSOCKOPT,
                [3, 1, 2, 0, 0, 0],
                Action::Allow,
            ),
            (
                "setsockopt level 0 other option",
                AUDIT_ARCH_X86_64,
                SETSOCKOPT,
                [3, 0, 57, 0, 0, 0],
                Action::Allow,
            ),
            (
                "socket AF_PACKET",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [17, 3, 0x300, 0, 0, 0],
                Action::Notify,
            ),
            (
                "socket AF_PACKET SOCK_DGRAM|SOCK_CLOEXEC",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [17, 2 | 0o2000000, 0, 0, 0, 0],
                Action::Notify,
            ),
            (
                "socket AF_XDP",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [44, 3, 0, 0, 0, 0],
                Action::Notify,
            ),
            (
                "socket AF_INET SOCK_RAW",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [2, 3, 17, 0, 0, 0],
                Action::Notify,
            ),
            (
                "socket AF_INET SOCK_RAW|SOCK_NONBLOCK, high words set",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [0xdead_0000_0000_0002, 0xbeef_0000_0000_0803, 255, 0, 0, 0],
                Action::Notify,
            ),
            (
                "socket AF_INET6 SOCK_RAW",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [10, 3, 58, 0, 0, 0],
                Action::Notify,
            ),
            (
                "socket AF_INET SOCK_PACKET",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [2, 10, 0x300, 0, 0, 0],
                Action::Notify,
            ),
            (
                "socket AF_INET SOCK_STREAM",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [2, 1, 0, 0, 0, 0],
                Action::Allow,
            ),
            (
                "socket AF_INET SOCK_DGRAM|SOCK_CLOEXEC (ping too)",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [2, 2 | 0o2000000, 1, 0, 0, 0],
                Action::Allow,
            ),
            (
                "socket AF_INET6 SOCK_DGRAM ICMPv6",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [10, 2, 58, 0, 0, 0],
                Action::Allow,
            ),
            (
                "socket AF_INET6 SOCK_PACKET (no such kind)",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [10, 10, 0, 0, 0, 0],
                Action::Allow,
            ),
            (
                "socket AF_UNIX SOCK_RAW",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [1, 3, 0, 0, 0, 0],
                Action::Allow,
            ),
            (
                "socket AF_NETLINK SOCK_RAW",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [16, 3, 0, 0, 0, 0],
                Action::Allow,
            ),
            (
                "socket, domain in the high word only",
                AUDIT_ARCH_X86_64,
                SOCKET,
                [17 << 32, 3, 0, 0, 0, 0],
                Action::Allow,
            ),
            ("i386 execve", AUDIT_ARCH_I386, 11, no_args, Action::Notify),
            (
                "i386 execveat",
                AUDIT_ARCH_I386,
                358,
                no_args,
                Action::Notify,
            ),
            ("i386 getpid", AUDIT_ARCH_I386, 20, no_args, Action::Allow),
            (
                "i386 number of x86_64 execve",
                AUDIT_ARCH_I386,
                59,
                no_args,
                Action::Allow,
            ),
            ("aarch64", 0xC000_00B7, 221, no_args, Action::KillProcess),
            (
                "kill of a guarded pid",
                AUDIT_ARCH_X86_64,
                KILL,
                [4242, 9, 0, 0, 0, 0],
                Action::Notify,
            ),
            (
                "kill of the other guarded pid, high word ignored",
                AUDIT_ARCH_X86_64,
                KILL,
                [0xdead_0000_0000_0000 | 4241, 19, 0, 0, 0, 0],
                Action::Notify,
            ),
            (
                "kill of the guarded group",
                AUDIT_ARCH_X86_64,
                KILL,
                [(-4241i64) as u64, 9, 0, 0, 0, 0],
                Action::Notify,
            ),
            (
                "kill(-1)",
                AUDIT_ARCH_X86_64,
                KILL,
                [u64::MAX, 9, 0, 0, 0, 0],
                Action::Notify,
            ),
            (
                "kill of another pid",
                AUDIT_ARCH_X86_64,
                KILL,
                [4243, 9, 0, 0, 0, 0],
                Action::Allow,
            ),
            (
                "kill(0): the caller's own group",
                AUDIT_ARCH_X86_64,
                KILL,
                [0, 9, 0, 0, 0, 0],
                Action::Allow,
            ),
            (
                "i386 kill of a guarded pid",
                AUDIT_ARCH_I386,
                KILL_I386,
                [4242, 9, 0, 0, 0, 0],
                Action::Notify,
            ),
            (
                "i386 kill of another pid",
                AUDIT_ARCH_I386,
                KILL_I386,
                [17, 9, 0, 0, 0, 0],
                Action::Allow,
            ),
        ];
        for (name, arch, nr, args, want) in cases {
            assert_eq!(evaluate(&prog, *arch, *nr, *args), *want, "{name}");
        }
    }

    #[test]
    fn any_bit() {
        let prog = build(&FilterSpec {
            x86_64: vec![Trap {
                nr: UNSHARE,
                when: When::AnyBit {
                    arg: 0,
                    mask: 0x1000_0000,
                },
            }],
            i386: vec![],
            guarded: vec![],
        });
        let cases: &[(&str, u32, u32, [u64; 6], Action)] = &[
            (
                "unshare CLONE_NEWUSER|CLONE_NEWNS",
                AUDIT_ARCH_X86_64,
                UNSHARE,
                [0x1002_0000, 0, 0, 0, 0, 0],
                Action::Notify,
            ),
            (
                "unshare CLONE_NEWNS",
                AUDIT_ARCH_X86_64,
                UNSHARE,
                [0x2_0000, 0, 0, 0, 0, 0],
                Action::Allow,
            ),
            (
                "unshare, the bit in the high word only",
                AUDIT_ARCH_X86_64,
                UNSHARE,
                [0x1000_0000 << 32, 0, 0, 0, 0, 0],
                Action::Allow,
            ),
            ("getpid", AUDIT_ARCH_X86_64, 39, [0; 6], Action::Allow),
        ];
        for (name, arch, nr, args, want) in cases {
            assert_eq!(evaluate(&prog, *arch, *nr, *args), *want, "{name}");
        }
    }

    #[test]
    fn empty_spec_allows_everything_known() {
        let prog = build(&FilterSpec::default());
        assert_eq!(
            evaluate(&prog, AUDIT_ARCH_X86_64, 59, [0; 6]),
            Action::Allow
        );
        assert_eq!(evaluate(&prog, AUDIT_ARCH_I386, 11, [0; 6]), Action::Allow);
    }

    #[test]
    fn untrapped_calls_run_few_instructions() {
        // The cost every untrapped call pays: count instructions on the longest allow path.
        let prog = build(&spec());
        let mut steps = 0;
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let insn = prog[pc];
            pc += 1;
            steps += 1;
            match insn.code {
                LD_W_ABS => {
                    a = if insn.k == OFFSET_ARCH {
                        AUDIT_ARCH_X86_64
                    } else {
                        1
                    }
                }
                JEQ_K => pc += usize::from(if a == insn.k { insn.jt } else { insn.jf }),
                JGE_K => pc += usize::from(if a >= insn.k { insn.jt } else { insn.jf }),
                _ => break,
            }
        }
        // The arch check (4), the x32 check (2), one comparison per trapped number, the ALLOW.
        let most = 6 + spec().x86_64.len() + 1;
        assert!(
            steps <= most,
            "{steps} instructions for write(2), more than {most}"
        );
    }
}
