//! Attack program for `tests/attack_capabilities.rs`: listener theft. Run as the defender's
//! command, it opens a pidfd on its parent (the supervisor) and tries to take each of the parent's
//! descriptors 0..=MAX_FD with pidfd_getfd(2), looking for the seccomp notify descriptor, which
//! would let it answer its own trapped calls. It stops there: it never answers a call.
//!
//! Then it runs `mkdir DIR` (a launch the test's policy denies), to show enforcement still holds.
//!
//! Usage: `attack_listener DIR`. Prints one line per step:
//! - `pidfd=ok` or `pidfd=ERRNO`;
//! - `getfd=listener` (the notify descriptor was taken), `getfd=other` (only other descriptors
//!   were), or `getfd=ERRNO` (the errno of the first descriptor that exists, EBADF skipped);
//! - `mkdir=STATUS` (the exit status of `mkdir DIR`, or `mkdir=ERROR` if it could not start).

use std::io::Error;
use std::os::fd::{FromRawFd, OwnedFd};

const MAX_FD: i32 = 64;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: attack_listener DIR");
    let parent = std::os::unix::process::parent_id();
    // SAFETY: pidfd_open(2) takes integers only.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent as libc::c_int, 0) };
    if pidfd < 0 {
        println!("pidfd={}", name(&Error::last_os_error()));
    } else {
        println!("pidfd=ok");
        // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
        println!("getfd={}", steal(&pidfd));
    }
    match std::process::Command::new("mkdir").arg(&dir).status() {
        Ok(s) => println!(
            "mkdir={}",
            s.code().map_or("signal".into(), |c| c.to_string())
        ),
        Err(e) => println!("mkdir=ERROR {e}"),
    }
}

/// Takes every descriptor of the process behind `pidfd` that it can; says what it got.
fn steal(pidfd: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    let mut first_error = None;
    let mut took_any = false;
    for fd in 0..=MAX_FD {
        // SAFETY: pidfd_getfd(2) takes integers only; a descriptor it returns is ours.
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if got < 0 {
            let e = Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBADF) && first_error.is_none() {
                first_error = Some(e);
            }
            continue;
        }
        // SAFETY: as above: a new descriptor of ours.
        let stolen = unsafe { OwnedFd::from_raw_fd(got as i32) };
        took_any = true;
        let what = std::fs::read_link(format!("/proc/self/fd/{}", stolen.as_raw_fd()))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if what.contains("seccomp") {
            return "listener".into();
        }
    }
    match (took_any, first_error) {
        (true, _) => "other".into(),
        (false, Some(e)) => name(&e),
        (false, None) => "nothing".into(),
    }
}

fn name(e: &Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ESRCH) => "ESRCH".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        _ => e.to_string(),
    }
}
