//! Processes: fork (single-threaded only), exec, waiting for children, letting a tracee go, and
//! signalling a thread or every descendant.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::{cvt, pidfd, procfs};

/// Forks, when the process has a single thread; fails otherwise, without forking.
///
/// The child of a multi-threaded process may only call async-signal-safe functions until it
/// execs (fork(2): another thread may have held a lock, of the allocator say, which stays held in
/// the child), and the children of the defender allocate and run ordinary Rust. With one thread
/// counted there can be no other by the time of the fork: only the calling thread could start
/// one, and it is here. Threads are started after the forks (the console uplink's in the
/// supervisor's `after_fork`, the network sensor's after it).
pub fn fork() -> io::Result<ForkResult> {
    match procfs::thread_count()? {
        1 => {}
        n => {
            return Err(io::Error::other(format!(
                "fork with {n} threads: only a single-threaded process may fork and run on"
            )));
        }
    }
    // SAFETY: the process has one thread (counted just above, and only this thread could start
    // another), so the child inherits no lock held by another thread.
    Ok(unsafe { nix::unistd::fork() }?)
}

/// What `waitpid(-1, …)` reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// A status nix can name.
    Status(WaitStatus),
    /// A child killed by a signal nix has no name for (a real-time one), with its number.
    KilledBy(Pid, i32),
    /// A traced child stopped by such a signal (signal-delivery-stop), with its number.
    StoppedBy(Pid, i32),
}

/// `waitpid(-1, &status, flags)`. nix's own waitpid reaps the child and then fails with EINVAL
/// when the signal that killed or stopped it is a real-time one it cannot name: the status would
/// be lost (a command killed by `kill -s 34` would never be seen to end). Here the number is kept.
pub fn wait_any(flags: WaitPidFlag) -> nix::Result<Waited> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes one int to `status`, a live local.
    let pid = Errno::result(unsafe { libc::waitpid(-1, &mut status, flags.bits()) })?;
    if pid == 0 {
        return Ok(Waited::Status(WaitStatus::StillAlive));
    }
    let pid = Pid::from_raw(pid);
    match WaitStatus::from_raw(pid, status) {
        Ok(s) => Ok(Waited::Status(s)),
        Err(_) if libc::WIFSIGNALED(status) => Ok(Waited::KilledBy(pid, libc::WTERMSIG(status))),
        Err(_) if libc::WIFSTOPPED(status) => Ok(Waited::StoppedBy(pid, libc::WSTOPSIG(status))),
        Err(e) => Err(e),
    }
}

/// Detaches from tracee `pid` delivering signal number `sig`, which nix's detach cannot name
/// when it is a real-time one.
pub fn ptrace_detach_with(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: PTRACE_DETACH takes no pointer: addr is ignored, data is the signal number.
    cvt(unsafe {
        libc::ptrace(
            libc::PTRACE_DETACH,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            sig as libc::c_long as *mut libc::c_void,
        )
    })?;
    Ok(())
}

/// Sends `sig` to thread `tid` of process `tgid` (tgkill(2)): a signal the kernel would have sent
/// that thread itself, like the SIGPIPE of a send to a closed connection.
pub fn signal_thread(tgid: u32, tid: u32, sig: Signal) -> io::Result<()> {
    // SAFETY: integers only; no memory is shared with the kernel.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            tgid as libc::pid_t,
            tid as libc::pid_t,
            sig as i32,
        )
    })?;
    Ok(())
}

/// Replaces this process with `path`; returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    match nix::unistd::execve(path, argv, envp) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}

/// Sends `sig` to every live descendant of `ancestor`: what is left of the container, including
/// processes that called setsid(2) or were reparented to us (we are PID 1 or a child subreaper, so
/// orphans stay our descendants).
///
/// A PID found in /proc can be reused before the signal goes out, and when we are not PID 1 the
/// new owner may be outside the container. So each one is pinned with a pidfd first (which keeps
/// naming that very process), the descendants are found again, and only pinned processes still
/// among them are signalled, through their pidfd (pidfd_open(2), pidfd_send_signal(2)).
pub fn signal_descendants(ancestor: i32, sig: Signal) {
    let pinned: Vec<(i32, OwnedFd)> = descendants(ancestor)
        .into_iter()
        .filter_map(|pid| pidfd::open_process(pid as u32).ok().map(|fd| (pid, fd)))
        .collect();
    let still: HashSet<i32> = descendants(ancestor).into_iter().collect();
    let targets: Vec<&OwnedFd> = pinned
        .iter()
        .filter(|(pid, _)| still.contains(pid))
        .map(|(_, fd)| fd)
        .collect();
    // Signals arrive one process at a time. For a kill, stop them all first: a process that sees
    // another die (a shell whose child was just killed) must not run on before its own kill lands.
    // A stopped process runs no more user code; SIGKILL ends it stopped or not.
    if sig == Signal::SIGKILL {
        for fd in &targets {
            let _ = pidfd::send_signal(fd.as_fd(), Signal::SIGSTOP as i32, None, 0);
        }
    }
    for fd in targets {
        let _ = pidfd::send_signal(fd.as_fd(), sig as i32, None, 0);
    }
}

/// Every live descendant of `ancestor`, found by walking the parent links of all of /proc.
fn descendants(ancestor: i32) -> Vec<i32> {
    let parent_of = procfs::parents();
    let mut found: HashSet<i32> = HashSet::new();
    for &pid in parent_of.keys() {
        let mut at = pid;
        let mut hops = 0;
        while let Some(&ppid) = parent_of.get(&at) {
            if ppid == ancestor {
                found.insert(pid);
                break;
            }
            at = ppid;
            hops += 1;
            if ppid <= 1 || hops > 4096 {
                break;
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_refuses_a_process_with_threads() {
        // A thread of our own, alive until the fork was tried: whatever the test harness runs
        // on, there are two.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        match fork() {
            Err(e) => assert!(e.to_string().contains("threads"), "{e}"),
            // Never reached when the check holds; the child must not run on.
            Ok(ForkResult::Child) => std::process::abort(),
            Ok(ForkResult::Parent { child }) => {
                let _ = nix::sys::wait::waitpid(child, None);
                panic!("forked with two threads");
            }
        }
        drop(tx);
        let _ = other.join();
    }
}
