//! Closing the exec TOCTOU window: an allowed exec is answered with CONTINUE, after which the
//! kernel re-reads the path from the caller's memory, where another thread (or a process sharing
//! the memory) may have swapped it. So before CONTINUE the caller is attached with `PTRACE_SEIZE`
//! and `PTRACE_O_TRACEEXEC`; a successful exec then stops it at `PTRACE_EVENT_EXEC`, before the
//! new image runs a single instruction, and the supervisor compares `/proc/PID/exe` with the
//! file it decided on (device, inode and ctime), its argv[0] with the name it was decided with
//! and, for a script, the script name the kernel put in the interpreter's argv (ptrace(2),
//! "execve(2) under ptrace"); when custom rules judged them, also the whole argv and whether the
//! process has a terminal. Anything else ran: the supervisor treats it as not allowed (it was
//! never decided on), with the effect stored when the watch was armed.
//!
//! A tracee is released at its first stop of any kind (exec, signal, group-stop), so workloads are
//! traced only across their exec. Where the kernel has the killable notification wait (5.19), the
//! tracee is also sent `PTRACE_INTERRUPT` at attach: its wait for our answer is then killable only,
//! so the interrupt does not break it, and it guarantees a stop on the way back to user space if
//! the exec fails. Every attached exec thus ends in a stop, and the supervisor can wait for it
//! synchronously (a wake-up on the same CPU, instead of a SIGCHLD through the signalfd to an idle
//! CPU). Without it, a thread whose exec failed stays attached, invisibly, until its next signal,
//! exec or exit.

use std::collections::HashMap;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::policy::Effect;
use crate::sensors::exec::{Expected, Stamp, shown_cmdline};
use crate::sensors::facts::split_cmdline;
use crate::sys::process;
use crate::sys::procfs::{self, Status};

/// Whether the kernel lets us trace the workload, learned at the first verified exec (normally
/// the command's own, a child of ours: if that cannot be traced, nothing can).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Availability {
    Unknown,
    Available,
    Unavailable,
}

/// What [`ExecWatch::watch`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Watch {
    /// The exec will be checked at its PTRACE_EVENT_EXEC stop.
    Armed,
    /// Tracing is unavailable in this environment, found just now at the first exec: the exec
    /// proceeds unchecked, and the caller reports the degradation.
    Degraded(Errno),
    /// Tracing was found unavailable before: the exec proceeds unchecked.
    Unchecked,
    /// Tracing works here but this caller cannot be traced (already traced by someone else):
    /// the exec must be denied.
    Refused(Errno),
}

/// A finished exec that is not the launch the supervisor decided on.
#[derive(Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub pid: Pid,
    /// What runs (`/proc/PID/exe`), and its command line.
    pub exe: PathBuf,
    pub cmdline: String,
    pub on_mismatch: OnMismatch,
}

/// What a mismatch at the exec stop comes to, fixed when the exec was decided on: the effect the
/// rule asked the verification with (`Rule::launch_verification`) and that rule's name. A policy
/// change between the decision and the stop changes neither: the launch was never allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnMismatch {
    pub effect: Effect,
    pub rule: String,
}

pub struct ExecWatch {
    availability: Availability,
    /// Threads attached and waiting for their exec, with what that exec must turn out to be and
    /// the effect a mismatch comes to.
    pending: HashMap<Pid, (Expected, OnMismatch)>,
}

impl ExecWatch {
    pub fn new() -> Self {
        ExecWatch {
            availability: Availability::Unknown,
            pending: HashMap::new(),
        }
    }

    /// Attaches to `tid` (unless attached already) so that its exec is checked against `expected`,
    /// a mismatch coming to `effect`; with `interrupt`, also makes sure the exec ends in a stop
    /// even when it fails (see above).
    pub fn watch(
        &mut self,
        tid: Pid,
        expected: Expected,
        on_mismatch: OnMismatch,
        interrupt: bool,
    ) -> Watch {
        if self.availability == Availability::Unavailable {
            return Watch::Unchecked;
        }
        if !self.pending.contains_key(&tid) {
            // EXITKILL: if the supervisor dies, its tracees die with it instead of running on
            // unchecked (the filter already fails their trapped calls with ENOSYS then).
            let options = ptrace::Options::PTRACE_O_TRACEEXEC | ptrace::Options::PTRACE_O_EXITKILL;
            if let Err(e) = ptrace::seize(tid, options) {
                // Only a refusal says tracing is unavailable here; ESRCH and the like are about
                // this caller, and so is EPERM for a caller that already has a tracer (a
                // PTRACE_TRACEME the workload set up so that the first verified exec would turn
                // verification off for every later one): that exec alone is refused.
                if self.availability == Availability::Unknown
                    && matches!(e, Errno::EPERM | Errno::ENOSYS)
                    && !has_tracer(tid)
                {
                    self.availability = Availability::Unavailable;
                    return Watch::Degraded(e);
                }
                return Watch::Refused(e);
            }
            if interrupt && let Err(e) = ptrace::interrupt(tid) {
                let _ = ptrace::detach(tid, None);
                return Watch::Refused(e);
            }
        }
        self.availability = Availability::Available;
        self.pending.insert(tid, (expected, on_mismatch));
        Watch::Armed
    }

    /// Handles a `waitpid(-1, __WALL)` result if it is about a tracee, and returns a mismatch for
    /// the caller to judge. Statuses of plain children pass through untouched.
    pub fn on_status(&mut self, status: &WaitStatus) -> Option<Mismatch> {
        match *status {
            WaitStatus::PtraceEvent(pid, _, event) if event == libc::PTRACE_EVENT_EXEC => {
                // The thread that called exec may have been a non-leader; it now has the leader's
                // pid, and the event message holds its former thread id.
                // Both entries go: the former thread's (the exec it was attached for) and, if the
                // leader was attached too, the leader's, whose wait de_thread ended.
                let former = ptrace::getevent(pid)
                    .map(|t| Pid::from_raw(t as i32))
                    .unwrap_or(pid);
                // Not attached for this exec (never expected): nothing holds, and the process is
                // killed (`prevent`: its container is not stopped for what may be our mistake).
                let (expected, on_mismatch) = self.pending.remove(&former).unwrap_or((
                    Expected::default(),
                    OnMismatch {
                        effect: Effect::Prevent,
                        rule: String::new(),
                    },
                ));
                self.pending.remove(&pid);
                let tid = pid.as_raw() as u32;
                let exe = procfs::exe_link(tid);
                // Each argument ends with a NUL; empty ones are arguments too (an empty argv[0]
                // is the kernel's for an empty argv). Nothing of the new image has run yet, so
                // the arguments are the kernel's copy.
                let argv = || procfs::cmdline(tid).ok().map(|raw| split_cmdline(&raw));
                let interactive = || procfs::tty_nr(tid).ok().map(|tty| tty != 0);
                if expected.holds(Stamp::at(&exe).ok(), argv, interactive) {
                    let _ = ptrace::detach(pid, None);
                    return None;
                }
                let exe = std::fs::read_link(&exe).unwrap_or(exe);
                let cmdline = shown_cmdline(&argv().unwrap_or_default());
                Some(Mismatch {
                    pid,
                    exe,
                    cmdline,
                    on_mismatch,
                })
            }
            WaitStatus::PtraceEvent(pid, _, _) => {
                // A group-stop (PTRACE_EVENT_STOP under SEIZE): let go; the task stays stopped
                // as the stop signal wanted.
                self.release(pid, None);
                None
            }
            WaitStatus::Stopped(pid, sig) => {
                // Signal-delivery-stop: give the signal back on the way out.
                self.release(pid, Some(sig));
                None
            }
            WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                self.pending.remove(&pid);
                None
            }
            _ => None,
        }
    }

    /// Whether `tid` is attached and its exec not yet seen.
    pub fn is_pending(&self, tid: Pid) -> bool {
        self.pending.contains_key(&tid)
    }

    /// Detaches from a tracee stopped at an event, optionally delivering `sig`.
    pub fn release(&mut self, pid: Pid, sig: Option<Signal>) {
        self.pending.remove(&pid);
        let _ = ptrace::detach(pid, sig);
    }

    /// A tracee stopped by, or killed by, a signal only known by its number (a real-time one):
    /// stopped, it is let go with its signal; killed, it is forgotten. Statuses of plain children
    /// are not the watch's.
    pub fn on_numbered(&mut self, pid: Pid, stopped_by: Option<i32>) {
        if self.pending.remove(&pid).is_some()
            && let Some(sig) = stopped_by
        {
            let _ = process::ptrace_detach_with(pid, sig);
        }
    }
}

/// Whether `tid` is being traced already (`TracerPid:` of /proc/TID/status not 0). Unreadable
/// counts as traced: the answer only decides whether one exec is refused or tracing is declared
/// unavailable for good, and the first is the closed side.
fn has_tracer(tid: Pid) -> bool {
    Status::of(tid.as_raw() as u32)
        .ok()
        .and_then(|s| s.tracer())
        .is_none_or(|tracer| tracer != 0)
}
