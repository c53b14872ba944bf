//! The workload cannot signal its supervisor. As PID 1 the kernel already sees to it: signals
//! from inside a PID namespace to its init are dropped unless init handles them, SIGKILL and
//! SIGSTOP included (sig_task_ignored, SIGNAL_UNKILLABLE, kernel/signal.c), and every other signal
//! is blocked and forwarded. When the defender is not PID 1, the workload (root, holding CAP_KILL)
//! could kill or stop it, or the keeper: so the filter then traps the calls that send a signal,
//! name a pid for one, or limit a process, and this module refuses (EPERM, audited) those aimed at
//! the defender's processes:
//! - `kill`, `tgkill`, `rt_sigqueueinfo`, `rt_tgsigqueueinfo`, `pidfd_open`, `prlimit64`: trapped in
//!   BPF only when the target register is a guarded value (a defender pid, the defender's process
//!   group as a negative pid, -1). `kill(-1, …)` is refused outright: outside PID 1 it reaches
//!   the defender (and, run locally, every process the caller may signal on the host).
//!   `kill(0, …)` (the caller's own group) is not trapped: the workload can never be in the
//!   defender's group, since `setpgid` into it is refused and the command starts in its own.
//! - `tkill`: any thread id, trapped always; refused when the thread belongs to the defender,
//!   answered ESRCH when no such thread exists (so that a thread the defender creates later cannot
//!   take that id while the call is let through).
//! - `pidfd_send_signal`: the descriptor may be a pidfd or a /proc/PID directory, and the caller
//!   may swap it after any check; so the supervisor takes its own duplicate (pidfd_getfd),
//!   identifies the target from that, and performs the call on that duplicate from a thread that
//!   has taken on the caller's credentials, so that the kernel's permission check is the caller's.
//! - `ptrace`, `process_vm_readv`, `process_vm_writev` of a defender process (registers), for a
//!   workload that kept CAP_SYS_PTRACE on purpose (without it, the defender's and the keeper's
//!   being non-dumpable already refuse it).
//! - `fcntl(F_SETSIG)` of SIGKILL or SIGSTOP: a descriptor's owner (F_SETOWN: any pid) gets that
//!   signal from the kernel on the next I/O event; every other signal it could get is blocked
//!   and forwarded by the defender.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::Signal;

use super::{Answer, Supervisor, keeper};
use crate::audit::{self, Event};
use crate::seccomp::Abi;
use crate::seccomp::SignalCall;
use crate::sensors::exec;
use crate::sys::creds::{self, RealUid};
use crate::sys::pidfd::{self, SIGINFO_SIZE};
use crate::sys::procfs::{self, Status};
use crate::sys::remote::RemoteMemory;
use crate::sys::seccomp::Notification;

/// The defender's processes, as the filter and the judge know them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guarded {
    pub defender: u32,
    pub keeper: Option<u32>,
    /// The process group of the defender (and of the keeper: a fork keeps it).
    pub group: u32,
}

impl Guarded {
    /// The defender's processes when it is not PID 1 (none to guard otherwise: the kernel does).
    pub fn here() -> Option<Guarded> {
        let me = std::process::id();
        (me != 1).then(|| Guarded {
            defender: me,
            keeper: keeper::keeper().map(|k| k.as_raw() as u32),
            group: nix::unistd::getpgrp().as_raw() as u32,
        })
    }

    /// The register values the filter traps (`When::Guarded`): the pids, the group as a pid and
    /// as a negative pid (a process group), and -1.
    pub fn values(&self) -> Vec<u32> {
        let mut v = vec![self.defender];
        v.extend(self.keeper);
        v.extend([
            self.group,
            (self.group as i32).wrapping_neg() as u32,
            u32::MAX,
        ]);
        v.dedup();
        v
    }

    fn is_ours(&self, pid: u32) -> bool {
        pid == self.defender || Some(pid) == self.keeper
    }
}

/// What to do with a trapped signal call.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Refused with EPERM and audited: it aims at the defender. The text says how.
    Refuse(String),
    /// Answered without running it.
    Answer(Result<i64, i32>),
    /// Let it run: its target, a register, is none of the defender's processes.
    Continue,
    /// `pidfd_send_signal`: the target is a descriptor, judged on a duplicate of it.
    ByDescriptor,
}

/// Judges a trapped signal call on its registers. `tgid_of` says which process a thread id
/// belongs to (`None`: no such thread).
pub fn judge(
    call: SignalCall,
    args: [u64; 6],
    g: &Guarded,
    tgid_of: impl Fn(u32) -> Option<u32>,
) -> Verdict {
    // pid_t and int arguments: the kernel reads the low word only.
    let int = |i: usize| args[i] as u32 as i32;
    let target = int(0);
    // A thread id names the thread's whole process to kill, rt_sigqueueinfo, prlimit64, ptrace
    // and process_vm_* (the kernel looks the task up and acts on its thread group): a positive
    // target is the defender's if its process is. tgkill, rt_tgsigqueueinfo and pidfd_open name
    // the process by its pid (a thread id of another process is refused by the kernel).
    let process_of = |pid: i32| match pid > 0 {
        true => tgid_of(pid as u32).or(Some(pid as u32)),
        false => None,
    };
    let by_pid = matches!(
        call,
        SignalCall::Tgkill | SignalCall::RtTgsigqueueinfo | SignalCall::PidfdOpen
    );
    let ours = match by_pid {
        true => target > 0 && g.is_ours(target as u32),
        false => process_of(target).is_some_and(|p| g.is_ours(p)),
    };
    match call {
        SignalCall::Kill if target == -1 => Verdict::Refuse(format!(
            "kill(-1, {}) would reach the defender",
            signal_name(int(1))
        )),
        // Signal 0 only asks whether the process exists: it does.
        SignalCall::Kill if ours && int(1) == 0 => Verdict::Answer(Ok(0)),
        SignalCall::Kill if ours => {
            Verdict::Refuse(format!("kill of pid {target} with {}", signal_name(int(1))))
        }
        SignalCall::Kill if target < 0 && target.unsigned_abs() == g.group => {
            Verdict::Refuse(format!(
                "kill of the defender's process group {} with {}",
                g.group,
                signal_name(int(1))
            ))
        }
        SignalCall::Kill => Verdict::Continue,
        SignalCall::Tgkill | SignalCall::RtTgsigqueueinfo if ours => Verdict::Refuse(format!(
            "a signal ({}) to thread {} of pid {target}",
            signal_name(int(2)),
            int(1)
        )),
        SignalCall::RtSigqueueinfo if ours => Verdict::Refuse(format!(
            "rt_sigqueueinfo to pid {target} with {}",
            signal_name(int(1))
        )),
        SignalCall::PidfdOpen if ours => Verdict::Refuse(format!("pidfd_open of pid {target}")),
        SignalCall::Prlimit if ours => Verdict::Refuse(format!("prlimit64 on pid {target}")),
        SignalCall::Tgkill
        | SignalCall::RtTgsigqueueinfo
        | SignalCall::RtSigqueueinfo
        | SignalCall::PidfdOpen
        | SignalCall::Prlimit => Verdict::Continue,
        SignalCall::Ptrace if process_of(int(1)).is_some_and(|p| g.is_ours(p)) => Verdict::Refuse(
            format!("ptrace (request {}) of pid {}", args[0] as u32, int(1)),
        ),
        SignalCall::ProcessVm if ours => {
            Verdict::Refuse(format!("process_vm_readv/writev of pid {target}"))
        }
        SignalCall::Ptrace | SignalCall::ProcessVm => Verdict::Continue,
        SignalCall::Setpgid => {
            let group = int(1);
            if group > 0 && (group as u32 == g.group || g.is_ours(group as u32)) {
                Verdict::Refuse(format!("setpgid into the defender's process group {group}"))
            } else {
                Verdict::Continue
            }
        }
        SignalCall::SetSig => Verdict::Refuse(format!(
            "fcntl(F_SETSIG, {}): a descriptor's owner could be any process, the defender's included",
            signal_name(int(2))
        )),
        // tkill(tid <= 0) fails with EINVAL in the kernel, reaching no one.
        SignalCall::Tkill if target <= 0 => Verdict::Continue,
        SignalCall::Tkill => match tgid_of(target as u32) {
            None => Verdict::Answer(Err(libc::ESRCH)),
            Some(tgid) if g.is_ours(tgid) => Verdict::Refuse(format!(
                "tkill of thread {target} of pid {tgid} with {}",
                signal_name(int(1))
            )),
            Some(_) => Verdict::Continue,
        },
        SignalCall::PidfdSendSignal(_) => Verdict::ByDescriptor,
    }
}

fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

/// The process a thread id belongs to, `None` if there is no such thread.
fn tgid_of(tid: u32) -> Option<u32> {
    procfs::tgid(tid).ok()
}

/// Whether thread `tid` lives in a PID namespace below ours: its `NSpid:` then lists more
/// numbers than ours does (the count is the depth below the namespace of the /proc mount read,
/// which need not be ours: compare, do not count). A task's PID namespace never changes.
fn in_nested_pid_ns(tid: u32) -> bool {
    let depth = |status: std::io::Result<Status>| status.ok().and_then(|s| s.pid_ns_depth());
    match (depth(Status::of(tid)), depth(Status::of_self())) {
        (Some(theirs), Some(ours)) => theirs > ours,
        // Unreadable: not nested, so the call is judged (the closed side).
        _ => false,
    }
}

/// Whose signal a descriptor of ours would carry, as `pidfd_send_signal` reads it.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A live task, by its process id (thread ids resolved to their process).
    Process(u32),
    /// Nobody: the process exited (the kernel would answer ESRCH).
    Gone,
    /// A /proc directory of another proc mount than ours, where pids may mean something else.
    ForeignProc,
    /// Not a pidfd nor a /proc directory: the kernel refuses it (EBADF).
    Other,
}

fn signal_target(fd: &OwnedFd) -> Target {
    // The pid a pidfd names, from its fdinfo (`Pid:`, in our namespace; -1 once it has exited,
    // 0 when it is outside our namespace); none when the descriptor is not a pidfd.
    let fdinfo = procfs::fdinfo(fd).unwrap_or_default();
    if let Some(pid) = procfs::parsed::<i64>(&fdinfo, "Pid") {
        return match u32::try_from(pid) {
            Ok(0) => Target::Other,
            Ok(p) => tgid_of(p).map_or(Target::Gone, Target::Process),
            Err(_) => Target::Gone,
        };
    }
    // A /proc/PID directory names its task itself (proc_pid of the inode); its `status`, read
    // through the directory, is that task's, numbered in the proc mount's namespace: ours only if
    // it is our /proc. Unreadable counts as another mount (refused).
    match procfs::mount_of(fd.as_fd()) {
        procfs::Mount::NotProc => return Target::Other,
        procfs::Mount::OtherProc => return Target::ForeignProc,
        procfs::Mount::OurProc => {}
    }
    let status = Status::of_dir(fd.as_fd()).ok().and_then(|s| s.tgid());
    status.map_or(Target::Gone, Target::Process)
}

impl Supervisor {
    /// A trapped call that sends a signal or names a pid (only trapped when not PID 1).
    pub(super) fn on_signal(&mut self, n: &Notification, call: SignalCall) -> Answer {
        let Some(g) = self.guarded else {
            return Answer::Deny(libc::ENOSYS);
        };
        // A pid (or thread id) in a register names a process of the caller's PID namespace. One
        // below ours sees only itself and those below it, never a defender process: its calls
        // are its own business (a sandbox's `init` may well have the defender's number there).
        let by_register = !matches!(call, SignalCall::PidfdSendSignal(_) | SignalCall::SetSig);
        if by_register && in_nested_pid_ns(n.pid) {
            return Answer::Unchecked;
        }
        match judge(call, n.args, &g, tgid_of) {
            Verdict::Refuse(what) => self.refuse_signal(n, &what),
            Verdict::Answer(result) => Answer::Performed(result),
            Verdict::Continue => Answer::Unchecked,
            Verdict::ByDescriptor => {
                let abi = match call {
                    SignalCall::PidfdSendSignal(abi) => abi,
                    _ => Abi::X86_64,
                };
                self.pidfd_send_signal(n, &g, abi)
            }
        }
    }

    /// `pidfd_send_signal(fd, sig, info, flags)`, judged and performed on our own duplicate of the
    /// caller's descriptor. Every failure to look fails the call.
    fn pidfd_send_signal(&mut self, n: &Notification, g: &Guarded, abi: Abi) -> Answer {
        let (fd, sig, info_at, flags) = (
            n.args[0] as u32 as i32,
            n.args[1] as u32 as i32,
            n.args[2],
            n.args[3] as u32,
        );
        let dup = match pidfd::caller_fd(n.pid, fd) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
                return Answer::Performed(Err(libc::EBADF));
            }
            Err(e) => {
                log::warn!(
                    "pidfd_send_signal by {}: cannot take its descriptor: {e}",
                    n.pid
                );
                return Answer::Deny(libc::EPERM);
            }
        };
        match signal_target(&dup) {
            Target::Process(pid) if g.is_ours(pid) => {
                return self.refuse_signal(
                    n,
                    &format!("pidfd_send_signal to pid {pid} with {}", signal_name(sig)),
                );
            }
            Target::ForeignProc => {
                return self.refuse_signal(
                    n,
                    &format!(
                        "pidfd_send_signal ({}) through a directory of another proc mount, whose pids the defender cannot check",
                        signal_name(sig)
                    ),
                );
            }
            Target::Gone => return Answer::Performed(Err(libc::ESRCH)),
            Target::Other => return Answer::Performed(Err(libc::EBADF)),
            Target::Process(_) => {}
        }
        let info = match info_at {
            0 => None,
            // An i386 siginfo has another layout than ours; not converted.
            _ if abi == Abi::I386 => return Answer::Performed(Err(libc::EINVAL)),
            at => {
                let mut buf = [0u8; SIGINFO_SIZE];
                match RemoteMemory::new(n.pid as i32).read(at, &mut buf) {
                    Ok(SIGINFO_SIZE) => Some(buf),
                    _ => return Answer::Performed(Err(libc::EFAULT)),
                }
            }
        };
        let Ok(caller) = creds::of_task(n.pid) else {
            return Answer::Deny(libc::EPERM);
        };
        // The descriptor, the siginfo and the credentials were the caller's only if its call
        // still waits (its thread id was not reused in between).
        if !self.listener.id_valid(n.id) {
            return Answer::Deny(libc::EPERM);
        }
        let sent = std::thread::scope(|s| {
            s.spawn(|| {
                // The real uid too: kill permission (kill_ok_by_cred) compares it.
                creds::assume(&caller, RealUid::Task)?;
                pidfd::send_signal(dup.as_fd(), sig, info.as_ref(), flags)
            })
            .join()
        });
        match sent {
            Ok(Ok(v)) => Answer::Performed(Ok(v)),
            Ok(Err(e)) => Answer::Performed(Err(e.raw_os_error().unwrap_or(libc::EPERM))),
            Err(_) => Answer::Deny(libc::EPERM),
        }
    }

    /// Refuses a call aimed at the defender and reports it, naming the caller.
    fn refuse_signal(&mut self, n: &Notification, what: &str) -> Answer {
        let pid = exec::process_of(n.pid);
        let process = procfs::exe(n.pid)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let message = format!(
            "{process} (pid {pid}) tried to reach the defender's own processes ({what}): refused"
        );
        log::warn!("{message}");
        let in_force = self.policy.current();
        let mut e = Event::defender(
            &self.scope,
            audit::Effect::Prevent,
            in_force.rule_name(),
            message,
        );
        e.pid = pid;
        e.process = process;
        e.cmdline = procfs::cmdline(pid).ok().map(|c| {
            String::from_utf8_lossy(&c)
                .trim_end_matches('\0')
                .replace('\0', " ")
        });
        self.sink.emit(e);
        Answer::Deny(libc::EPERM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Guarded = Guarded {
        defender: 100,
        keeper: Some(99),
        group: 99,
    };

    fn args(a: &[i64]) -> [u64; 6] {
        let mut out = [0u64; 6];
        for (o, v) in out.iter_mut().zip(a) {
            *o = *v as u64;
        }
        out
    }

    /// Threads 100, 101 (the defender's), 99 (the keeper), 200, 201 (the workload's).
    fn tgid(tid: u32) -> Option<u32> {
        match tid {
            100 | 101 => Some(100),
            99 => Some(99),
            200 | 201 => Some(200),
            _ => None,
        }
    }

    #[test]
    fn values_cover_pids_group_and_all() {
        assert_eq!(G.values(), vec![100, 99, (-99i32) as u32, u32::MAX]);
    }

    #[test]
    fn verdicts() {
        use SignalCall::*;
        use Verdict::*;
        let refused = |v: &Verdict| matches!(v, Refuse(_));
        type Case<'a> = (&'a str, SignalCall, &'a [i64], fn(&Verdict) -> bool);
        let cases: &[Case] = &[
            ("kill defender KILL", Kill, &[100, 9], refused),
            ("kill keeper STOP", Kill, &[99, 19], refused),
            (
                "kill defender SEGV, high word set",
                Kill,
                &[0x7_0000_0064, 11],
                refused,
            ),
            ("kill -1", Kill, &[-1, 9], refused),
            ("kill the defender's group", Kill, &[-99, 15], refused),
            ("kill defender 0: alive", Kill, &[100, 0], |v| {
                *v == Answer(Ok(0))
            }),
            ("kill another pid", Kill, &[200, 9], |v| *v == Continue),
            ("kill another group", Kill, &[-200, 9], |v| *v == Continue),
            ("tgkill defender thread", Tgkill, &[100, 101, 9], refused),
            ("tgkill workload", Tgkill, &[200, 201, 9], |v| {
                *v == Continue
            }),
            (
                "rt_tgsigqueueinfo keeper",
                RtTgsigqueueinfo,
                &[99, 99, 9],
                refused,
            ),
            (
                "rt_sigqueueinfo defender",
                RtSigqueueinfo,
                &[100, 9],
                refused,
            ),
            ("pidfd_open defender", PidfdOpen, &[100, 0], refused),
            (
                "pidfd_open -1 (EINVAL in the kernel)",
                PidfdOpen,
                &[-1, 0],
                |v| *v == Continue,
            ),
            ("prlimit64 keeper", Prlimit, &[99, 7], refused),
            (
                "setpgid into the defender's group",
                Setpgid,
                &[0, 99],
                refused,
            ),
            (
                "setpgid, -1 (EINVAL in the kernel)",
                Setpgid,
                &[0, -1],
                |v| *v == Continue,
            ),
            ("F_SETSIG KILL", SetSig, &[3, 10, 9], refused),
            ("ptrace seize defender", Ptrace, &[0x4206, 100], refused),
            ("ptrace attach keeper", Ptrace, &[16, 99], refused),
            ("ptrace of the group as a pid", Ptrace, &[16, -99], |v| {
                *v == Continue
            }),
            (
                "process_vm_writev defender",
                ProcessVm,
                &[100, 0, 1, 0, 1, 0],
                refused,
            ),
            // A thread id of the defender names its whole process to these calls.
            ("kill of a defender thread", Kill, &[101, 19], refused),
            (
                "rt_sigqueueinfo of a defender thread",
                RtSigqueueinfo,
                &[101, 9],
                refused,
            ),
            (
                "prlimit64 of a defender thread",
                Prlimit,
                &[101, 1],
                refused,
            ),
            ("ptrace of a defender thread", Ptrace, &[16, 101], refused),
            (
                "process_vm_readv of a defender thread",
                ProcessVm,
                &[101, 0, 1, 0, 1, 0],
                refused,
            ),
            ("kill of a workload thread", Kill, &[201, 9], |v| {
                *v == Continue
            }),
            (
                "tgkill naming a defender thread as the process",
                Tgkill,
                &[101, 101, 9],
                |v| *v == Continue,
            ),
            ("tkill defender thread", Tkill, &[101, 9], refused),
            ("tkill keeper", Tkill, &[99, 9], refused),
            ("tkill workload thread", Tkill, &[201, 6], |v| {
                *v == Continue
            }),
            ("tkill of no thread", Tkill, &[555, 9], |v| {
                *v == Answer(Err(libc::ESRCH))
            }),
            ("tkill 0", Tkill, &[0, 9], |v| *v == Continue),
            (
                "pidfd_send_signal",
                PidfdSendSignal(Abi::X86_64),
                &[3, 9],
                |v| *v == ByDescriptor,
            ),
        ];
        for (name, call, a, want) in cases {
            let v = judge(*call, args(a), &G, tgid);
            assert!(want(&v), "{name}: {v:?}");
        }
    }

    #[test]
    fn a_foreign_descriptor_is_not_a_target() {
        let f: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        assert_eq!(signal_target(&f), Target::Other);
        let me: OwnedFd = std::fs::File::open("/proc/self").unwrap().into();
        assert_eq!(signal_target(&me), Target::Process(std::process::id()));
        let pidfd = pidfd::open_process(std::process::id()).unwrap();
        assert_eq!(signal_target(&pidfd), Target::Process(std::process::id()));
    }
}
