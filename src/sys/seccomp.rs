//! seccomp(2) and the user-notification ioctls of seccomp_unotify(2): installing the filter with a
//! listener, receiving trapped calls and answering them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use libc::{c_ulong, sock_filter, sock_fprog};

use super::cvt;

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (linux/seccomp.h, 6.6): wake the supervisor on the
/// caller's CPU, which takes a trapped call from ~40 µs to ~6 µs on a 2-vCPU VM.
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// A trapped system call, copied out of the kernel's `struct seccomp_notif`.
#[derive(Clone, Copy, Debug)]
pub struct Notification {
    pub id: u64,
    /// Thread id of the caller, in the supervisor's PID namespace.
    pub pid: u32,
    pub arch: u32,
    pub nr: i32,
    pub args: [u64; 6],
}

/// The sizes the running kernel uses for the notification structures (SECCOMP_GET_NOTIF_SIZES).
/// Asking also proves that user notification exists (Linux 5.0).
pub fn notif_sizes() -> io::Result<libc::seccomp_notif_sizes> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: SECCOMP_GET_NOTIF_SIZES writes exactly one `struct seccomp_notif_sizes` to the
    // pointer, which points at a live, properly aligned value of that type.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut _,
        )
    })?;
    Ok(sizes)
}

/// Whether the kernel knows a filter return action (SECCOMP_GET_ACTION_AVAIL, Linux 4.14).
pub fn action_available(action: u32) -> bool {
    // SAFETY: the kernel only reads one u32 from the pointer, which points at a live u32.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        ) == 0
    }
}

/// Sets no_new_privs: required to install a filter without CAP_SYS_ADMIN (seccomp(2)).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only and touches no memory of ours.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    Ok(())
}

/// Installs `prog` for the calling thread with `SECCOMP_FILTER_FLAG_NEW_LISTENER` plus `extra_flags`
/// and returns the listener. The kernel creates the listener with O_CLOEXEC.
pub fn install_filter(prog: &[sock_filter], extra_flags: c_ulong) -> io::Result<OwnedFd> {
    let fprog = sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: prog.as_ptr() as *mut sock_filter,
    };
    let flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | extra_flags;
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program
    // before returning and never writes through the pointer.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const sock_fprog,
        )
    })?;
    // SAFETY: on success seccomp(2) returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The answering half of the listener, for threads that finish a call the supervisor handed them
/// (a blocking connect performed for the caller). `SECCOMP_IOCTL_NOTIF_SEND` may come from any
/// thread; the kernel matches the answer to the call by its id.
#[derive(Clone)]
pub struct Responder {
    fd: Arc<OwnedFd>,
}

impl Responder {
    /// Whether the trapped call still waits (see [`Listener::id_valid`]).
    pub fn id_valid(&self, id: u64) -> bool {
        id_valid(&self.fd, id)
    }

    /// Completes the trapped call with `result`: its return value, or the errno to fail it with.
    pub fn complete(&self, id: u64, result: Result<i64, i32>) -> io::Result<()> {
        complete(&self.fd, id, result)
    }
}

/// The supervisor's end of the filter: `SECCOMP_IOCTL_NOTIF_*` on the listener fd.
pub struct Listener {
    fd: Arc<OwnedFd>,
    /// The receive buffer: `sizeof(struct seccomp_notif)` as the running kernel has it, in u64s
    /// for alignment. Zeroed before each receive (the kernel rejects a dirty buffer with EINVAL
    /// since 5.5); kept, so the trapped-call path allocates nothing here.
    buf: Vec<u64>,
}

impl Listener {
    pub fn new(fd: OwnedFd, sizes: &libc::seccomp_notif_sizes) -> Self {
        let notif_size =
            usize::from(sizes.seccomp_notif).max(std::mem::size_of::<libc::seccomp_notif>());
        Listener {
            fd: Arc::new(fd),
            buf: vec![0; notif_size.div_ceil(8)],
        }
    }

    /// Sets the sync wake-up flag (Linux 6.6). Returns the kernel's error where it lacks it.
    pub fn set_sync_wakeup(&self) -> io::Result<()> {
        // SAFETY: NOTIF_SET_FLAGS takes the flags by value, not by pointer; no memory is shared.
        cvt(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
            )
        })?;
        Ok(())
    }

    /// Receives one trapped call. ENOENT (the caller died before we got it) and EINTR are for the
    /// caller to retry.
    pub fn recv(&mut self) -> io::Result<Notification> {
        self.buf.fill(0);
        let buf = &mut self.buf;
        // SAFETY: `buf` is zeroed, 8-byte aligned and at least as large as the kernel's
        // `struct seccomp_notif` (its size comes from SECCOMP_GET_NOTIF_SIZES), so the kernel's
        // write stays inside it.
        cvt(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                buf.as_mut_ptr(),
            )
        })?;
        // SAFETY: the buffer holds an initialized `struct seccomp_notif` at offset 0 (the kernel
        // filled it), it is suitably aligned, and the struct is plain old data.
        let n: libc::seccomp_notif =
            unsafe { std::ptr::read(buf.as_ptr() as *const libc::seccomp_notif) };
        Ok(Notification {
            id: n.id,
            pid: n.pid,
            arch: n.data.arch,
            nr: n.data.nr,
            args: n.data.args,
        })
    }

    /// True while the trapped call is still waiting for our answer. Checking this after reading the
    /// caller's memory proves the memory belonged to that caller and not to a process that reused
    /// its PID (seccomp_unotify(2), "NOTES").
    pub fn id_valid(&self, id: u64) -> bool {
        id_valid(&self.fd, id)
    }

    /// Fails the trapped call with `errno`.
    pub fn deny(&self, id: u64, errno: i32) -> io::Result<()> {
        complete(&self.fd, id, Err(errno))
    }

    /// Completes the trapped call with the result of the call the supervisor performed for it.
    pub fn complete(&self, id: u64, result: Result<i64, i32>) -> io::Result<()> {
        complete(&self.fd, id, result)
    }

    /// A handle that answers trapped calls from another thread.
    pub fn responder(&self) -> Responder {
        Responder {
            fd: self.fd.clone(),
        }
    }

    /// Lets the kernel run the trapped call as the caller asked.
    ///
    /// # Safety
    /// Not a memory-safety matter but a security one: the kernel re-reads the caller's memory after
    /// this answer, so anything decided from that memory can have changed in between
    /// (seccomp_unotify(2), "Design goals; use of SECCOMP_USER_NOTIF_FLAG_CONTINUE"). Each call site
    /// must say why its decision does not depend on memory the caller can still change, or what
    /// checks the result afterwards.
    pub unsafe fn continue_call(&self, id: u64) -> io::Result<()> {
        send(
            &self.fd,
            id,
            0,
            0,
            libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        )
    }
}

fn complete(fd: &OwnedFd, id: u64, result: Result<i64, i32>) -> io::Result<()> {
    match result {
        Ok(val) => send(fd, id, val, 0, 0),
        Err(errno) => send(fd, id, 0, -errno, 0),
    }
}

fn id_valid(fd: &OwnedFd, id: u64) -> bool {
    // SAFETY: the kernel reads one u64 from the pointer, which points at a live u64.
    unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        ) == 0
    }
}

fn send(fd: &OwnedFd, id: u64, val: i64, error: i32, flags: u32) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: `resp` is a live, initialized `struct seccomp_notif_resp`; the kernel reads it
    // (and on old kernels may write it back), both within its bounds.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp as *mut _,
        )
    })?;
    Ok(())
}
