//! The defender's signal mask from its first instruction of user code: every signal blocked by a
//! constructor that the `defender` binary registers in `.init_array`, and the mask it was started
//! with kept for the command and for the subcommands that are not `run`; SIGPIPE's default action
//! given back to the command; job-control stops of the defender itself.
//!
//! Why so early: between execve(2) and `main` the process runs the C library's start-up and the
//! Rust runtime's; a signal with a default action of "terminate" that arrives there (a TERM sent
//! as soon as the process exists) kills the defender, and one that arrives before the mask is set
//! later would be lost or fatal. Blocked, it stays pending until the supervisor's signalfd reads it.
//! The synchronous fault signals (SEGV, BUS, ILL, FPE, TRAP, SYS, ABRT) are blocked too: sent with
//! kill(2) they are messages like any other, and a real hardware fault still kills the defender,
//! because the kernel unblocks and resets a fault signal it must deliver (force_sig_fault ->
//! force_sig_info_to_task, kernel/signal.c).

use std::io;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::cvt;

/// The kernel's signal set on x86_64: one bit per signal 1..=64 (`_NSIG / 8` bytes), which is what
/// rt_sigprocmask(2) takes as `sigsetsize`.
type KernelSigset = u64;
const SIGSET_SIZE: usize = std::mem::size_of::<KernelSigset>();

/// The mask the process was started with, set by [`block_all_at_start`].
static ORIGINAL: AtomicU64 = AtomicU64::new(0);

/// The C libraries' internal signals (glibc: 32 SIGCANCEL, 33 SIGSETXID; musl: 32-34). A thread
/// the C library starts unblocks them whatever the main thread blocked, and their default action
/// ends the process, so anyone who could send one (a descriptor's owner signal, `F_SETSIG`) could
/// end the defender: they are ignored instead. The defender uses neither thread cancellation nor
/// the C library's set*id broadcasts (its credential changes are raw per-thread system calls).
const INTERNAL: std::ops::RangeInclusive<usize> = 32..=34;
/// Which of [`INTERNAL`] the process was started with ignored (bit `sig - 32`): the command gets
/// the same dispositions back.
static INTERNAL_IGNORED: AtomicU8 = AtomicU8::new(0);

/// struct sigaction as the x86_64 kernel reads it (arch/x86/include/uapi/asm/signal.h, with the
/// C library's fields in the kernel's order): only SIG_DFL and SIG_IGN are set here, so no
/// restorer is needed.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: KernelSigset,
}

/// Sets signal `sig` to SIG_DFL or SIG_IGN with the raw system call (the C libraries refuse to
/// touch their internal signals); returns whether it was ignored before.
fn set_disposition(sig: usize, ignore: bool) -> io::Result<bool> {
    let new = KernelSigaction {
        handler: if ignore { libc::SIG_IGN } else { libc::SIG_DFL },
        ..KernelSigaction::default()
    };
    let mut old = KernelSigaction::default();
    // SAFETY: rt_sigaction reads one KernelSigaction from `new` and writes one to `old`, both live
    // locals laid out as the kernel's struct sigaction; SIGSET_SIZE is the kernel's sigset size.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig as libc::c_long,
            &new as *const KernelSigaction,
            &mut old as *mut KernelSigaction,
            SIGSET_SIZE,
        )
    })?;
    Ok(old.handler == libc::SIG_IGN)
}

/// Blocks every signal and remembers the mask the process was started with. Registered by the
/// `defender` binary in `.init_array`, so the C library runs it before `main` and before the Rust
/// runtime starts (glibc passes argc/argv/envp, musl nothing: it reads no argument). SIGKILL and
/// SIGSTOP cannot be blocked; the kernel drops them from the mask silently.
pub extern "C" fn block_all_at_start() {
    let all: KernelSigset = !0;
    let mut old: KernelSigset = 0;
    // SAFETY: rt_sigprocmask reads SIGSET_SIZE bytes from `all` and writes as many to `old`, both
    // live u64s on this stack frame; it touches no other memory. At this point the process has a
    // single thread, so the mask is the whole process's.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &all as *const KernelSigset,
            &mut old as *mut KernelSigset,
            SIGSET_SIZE,
        )
    };
    if ret == 0 {
        ORIGINAL.store(old, Ordering::Relaxed);
    }
    let mut ignored = 0u8;
    for sig in INTERNAL {
        if set_disposition(sig, true).unwrap_or(false) {
            ignored |= 1 << (sig - 32);
        }
    }
    INTERNAL_IGNORED.store(ignored, Ordering::Relaxed);
}

/// Sets the calling thread's mask to the one the process was started with: in the command's child
/// before exec, and at once in `main` for every subcommand but `run` (Ctrl-C must stop them).
pub fn restore_original() -> io::Result<()> {
    let ignored = INTERNAL_IGNORED.load(Ordering::Relaxed);
    for sig in INTERNAL {
        set_disposition(sig, ignored & (1 << (sig - 32)) != 0)?;
    }
    set_mask(ORIGINAL.load(Ordering::Relaxed))
}

/// Blocks every signal on the calling thread (what the constructor did; for a process started
/// without it, such as a test of the library).
pub fn block_all() -> io::Result<()> {
    let all: KernelSigset = !0;
    // SAFETY: reads one live u64 (SIGSET_SIZE bytes); the old mask is not asked for (NULL).
    cvt(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &all as *const KernelSigset,
            std::ptr::null_mut::<KernelSigset>(),
            SIGSET_SIZE,
        )
    })?;
    Ok(())
}

fn set_mask(mask: KernelSigset) -> io::Result<()> {
    // SAFETY: reads one live u64 (SIGSET_SIZE bytes); the old mask is not asked for (NULL).
    cvt(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const KernelSigset,
            std::ptr::null_mut::<KernelSigset>(),
            SIGSET_SIZE,
        )
    })?;
    Ok(())
}

/// Takes a pending SIGCHLD off the calling thread without waiting (it is blocked: the supervisor
/// reads signals through a signalfd); whether one was pending. For news the supervisor already
/// knows of, so that it does not take another turn of its loop to read it again.
pub fn take_pending_sigchld() -> io::Result<bool> {
    let set: KernelSigset = 1 << (libc::SIGCHLD - 1);
    let now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: reads one live u64 (SIGSET_SIZE bytes) and one live timespec; no siginfo is asked
    // for (NULL).
    let taken = cvt(unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &set as *const KernelSigset,
            std::ptr::null_mut::<libc::siginfo_t>(),
            &now as *const libc::timespec,
            SIGSET_SIZE,
        )
    });
    match taken {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Stops the calling process (SIGSTOP to itself): job control, when the command stopped on a
/// terminal and the shell must see its job stop.
pub fn stop_self() -> io::Result<()> {
    nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGSTOP)?;
    Ok(())
}

/// Gives SIGPIPE back its default action. The Rust runtime ignores SIGPIPE at start-up, and an
/// ignored signal stays ignored across execve(2): without this the command would inherit it.
pub fn restore_sigpipe() -> io::Result<()> {
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal context.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    }?;
    Ok(())
}
