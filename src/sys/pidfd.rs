//! Process file descriptors (pidfd_open(2)): a handle that keeps naming one process (or, from
//! Linux 6.9, one thread) after its id is reused, through which the supervisor takes a caller's
//! descriptors (pidfd_getfd(2)) and sends signals (pidfd_send_signal(2)).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, procfs};

/// `PIDFD_THREAD` (linux/pidfd.h, 6.9): a pidfd for one thread rather than a thread-group leader.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// The size of `siginfo_t` on every Linux ABI (`SI_MAX_SIZE`, asm-generic/siginfo.h).
pub const SIGINFO_SIZE: usize = 128;

fn open(pid: u32, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes integers only; on success it returns a new fd that nothing owns.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, flags) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens a pidfd for process `pid`.
pub fn open_process(pid: u32) -> io::Result<OwnedFd> {
    open(pid, 0)
}

/// Opens a pidfd for thread `tid` itself (`PIDFD_THREAD`, Linux 6.9; EINVAL before).
pub fn open_thread(tid: u32) -> io::Result<OwnedFd> {
    open(tid, PIDFD_THREAD)
}

/// What `PIDFD_GET_INFO` tells of a task (linux/pidfd.h, Linux 6.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// The parent process, in our PID namespace (0 when outside it).
    pub ppid: u32,
    pub euid: u32,
}

/// `struct pidfd_info` as of its first version (`PIDFD_INFO_SIZE_VER0`, 64 bytes).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

/// `PIDFD_INFO_PID | PIDFD_INFO_CREDS`: the ids (pid, tgid, ppid) and the credentials.
const PIDFD_INFO_PID_CREDS: u64 = 1 | 2;
/// `PIDFD_GET_INFO`: `_IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, struct pidfd_info)`, in the request
/// type of the libc at hand (an int for musl, an unsigned long for glibc).
const PIDFD_GET_INFO: libc::Ioctl =
    ((3u32 << 30) | ((std::mem::size_of::<PidfdInfo>() as u32) << 16) | (0xFF << 8) | 11)
        as libc::Ioctl;

/// The parent and effective uid of thread `tid`, from a pidfd of the thread itself (its own
/// credentials: they are per thread), without /proc: a first look at a new process's /proc
/// directory costs tens of microseconds, which every launch would pay. ENOTTY or EINVAL before
/// Linux 6.13 (or 6.9 for thread pidfds): the caller then reads /proc.
pub fn info(tid: u32) -> io::Result<Info> {
    let pidfd = open_thread(tid)?;
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_PID_CREDS,
        ..PidfdInfo::default()
    };
    // SAFETY: the ioctl reads and writes at most `size_of::<PidfdInfo>()` bytes (the size is in
    // the request number) of `info`, which lives until the call returns.
    cvt(unsafe {
        libc::ioctl(
            pidfd.as_raw_fd(),
            PIDFD_GET_INFO,
            &mut info as *mut PidfdInfo,
        )
    })?;
    if info.mask & PIDFD_INFO_PID_CREDS != PIDFD_INFO_PID_CREDS {
        return Err(io::Error::from_raw_os_error(libc::ENOTTY));
    }
    Ok(Info {
        ppid: info.ppid,
        euid: info.euid,
    })
}

/// Duplicates file descriptor `fd` of the process behind `pidfd` into ours (Linux 5.6). The
/// duplicate shares the open file description: acting on it acts on the caller's file.
pub fn getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: integers only; on success the kernel returns a new fd (O_CLOEXEC) that nothing owns.
    let dup = cvt(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
    // SAFETY: `dup` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup as RawFd) })
}

/// A pidfd through which descriptors of thread `tid` are taken: the thread's own where the kernel
/// has them (6.9), else its process's, when both share one file table. Before 6.9 only the
/// process's pidfd exists, which reaches the leader's file table: a thread that unshared its own
/// (unshare(CLONE_FILES)) would have its descriptor taken from the leader's, so that is refused
/// (EPERM) unless kcmp(2) says both tables are one. `Ok((pidfd, true))` for the thread's own.
pub fn of_files(tid: u32) -> io::Result<(OwnedFd, bool)> {
    match open_thread(tid) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // A thread that is gone has no file table to take from.
            let tgid = procfs::tgid(tid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
            if tgid != tid && !same_files(tgid, tid)? {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok((open_process(tgid)?, false))
        }
        other => other.map(|fd| (fd, true)),
    }
}

/// A duplicate of descriptor `fd` of thread `tid` (see [`of_files`]).
pub fn caller_fd(tid: u32, fd: i32) -> io::Result<OwnedFd> {
    getfd(of_files(tid)?.0.as_fd(), fd)
}

/// Whether tasks `a` and `b` share one file table (kcmp(2) with KCMP_FILES).
pub fn same_files(a: u32, b: u32) -> io::Result<bool> {
    const KCMP_FILES: libc::c_int = 2;
    // SAFETY: integers only; KCMP_FILES takes no pointer arguments.
    let order = cvt(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a as libc::pid_t,
            b as libc::pid_t,
            KCMP_FILES,
            0,
            0,
        )
    })?;
    Ok(order == 0)
}

/// `pidfd_send_signal(2)` on a descriptor of ours (a pidfd, or a /proc/PID directory), with an
/// optional siginfo (copied beforehand); without one the kernel fills one in as kill(2) would.
pub fn send_signal(
    pidfd: BorrowedFd<'_>,
    sig: i32,
    info: Option<&[u8; SIGINFO_SIZE]>,
    flags: u32,
) -> io::Result<i64> {
    let info = info.map_or(std::ptr::null(), |i| i.as_ptr());
    // SAFETY: `info` is NULL or points at SIGINFO_SIZE live bytes, which is all the kernel reads
    // (copy_siginfo_from_user); the other arguments are integers.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            info,
            flags,
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn info_of_this_thread() {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        match super::info(tid) {
            Ok(info) => {
                // SAFETY: no arguments, cannot fail.
                assert_eq!(info.euid, unsafe { libc::geteuid() });
                assert_eq!(info.ppid, std::os::unix::process::parent_id());
            }
            // Kernels before 6.13 have no PIDFD_GET_INFO; from it on, it must work.
            Err(e) => {
                let release = nix::sys::utsname::uname().unwrap();
                let release = release.release().to_string_lossy().into_owned();
                let mut v = release
                    .split(['.', '-'])
                    .map(|n| n.parse::<u32>().unwrap_or(0));
                let version = (v.next().unwrap_or(0), v.next().unwrap_or(0));
                assert!(version < (6, 13), "PIDFD_GET_INFO failed on {release}: {e}");
                assert!(
                    matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)),
                    "{e}"
                );
            }
        }
    }

    use super::*;

    #[test]
    fn takes_own_descriptors() {
        let me = std::process::id();
        let file = std::fs::File::open("/dev/null").unwrap();
        let dup = caller_fd(me, file.as_raw_fd()).unwrap();
        assert_eq!(
            procfs::fd_path(&dup).unwrap(),
            procfs::fd_path(&file).unwrap()
        );
        assert!(same_files(me, me).unwrap());
        let pidfd = open_process(me).unwrap();
        assert_eq!(send_signal(pidfd.as_fd(), 0, None, 0).unwrap(), 0);
    }
}
