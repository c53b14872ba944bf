//! The filter: which system calls are trapped and for which ABI, what the kernel offers
//! (feature probing), and turning a trapped call's number back into what it is.

pub mod bpf;

use std::io;

use bpf::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, FilterSpec, Trap};

use crate::sensors::exec::{Abi, ExecCall};
use crate::sys::seccomp as sys;

// x86_64 numbers (asm/unistd_64.h) and i386 numbers (asm/unistd_32.h).
const X86_64_EXECVE: u32 = 59;
const X86_64_EXECVEAT: u32 = 322;
const I386_EXECVE: u32 = 11;
const I386_EXECVEAT: u32 = 358;
const X86_64_CHROOT: u32 = 161;
const I386_CHROOT: u32 = 61;

/// A trapped call, known by what it does rather than by its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trapped {
    Exec(Abi, ExecCall),
    /// Noted, not judged: after a chroot(2) paths mean something else for the caller, so the exec
    /// sensor looks up each caller's root from then on (and can skip it until then).
    Chroot,
}

/// Every trapped call, with its number per ABI: the single table both the BPF program and the
/// dispatcher are built from, so they cannot disagree.
const TABLE: &[(u32, u32, Trapped)] = &[
    (
        AUDIT_ARCH_X86_64,
        X86_64_EXECVE,
        Trapped::Exec(Abi::X86_64, ExecCall::Execve),
    ),
    (
        AUDIT_ARCH_X86_64,
        X86_64_EXECVEAT,
        Trapped::Exec(Abi::X86_64, ExecCall::Execveat),
    ),
    // i386 programs (and `int 0x80` from 64-bit ones) must not reach exec untrapped.
    (
        AUDIT_ARCH_I386,
        I386_EXECVE,
        Trapped::Exec(Abi::I386, ExecCall::Execve),
    ),
    (
        AUDIT_ARCH_I386,
        I386_EXECVEAT,
        Trapped::Exec(Abi::I386, ExecCall::Execveat),
    ),
    (AUDIT_ARCH_X86_64, X86_64_CHROOT, Trapped::Chroot),
    (AUDIT_ARCH_I386, I386_CHROOT, Trapped::Chroot),
];

/// The filter the child installs.
pub fn filter_spec() -> FilterSpec {
    let per_arch = |arch| {
        TABLE
            .iter()
            .filter(|(a, _, _)| *a == arch)
            .map(|(_, nr, _)| Trap::always(*nr))
            .collect()
    };
    FilterSpec {
        x86_64: per_arch(AUDIT_ARCH_X86_64),
        i386: per_arch(AUDIT_ARCH_I386),
    }
}

/// What a notification is about; `None` for a number the filter does not trap (never expected:
/// the supervisor fails it closed).
pub fn classify(arch: u32, nr: i32) -> Option<Trapped> {
    TABLE
        .iter()
        .find(|(a, n, _)| *a == arch && i64::from(*n) == i64::from(nr))
        .map(|(_, _, t)| *t)
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
pub fn install() -> io::Result<(std::os::fd::OwnedFd, bool)> {
    let prog = bpf::build(&filter_spec());
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
        let prog = bpf::build(&filter_spec());
        for (arch, nr, trapped) in TABLE {
            assert_eq!(
                bpf::evaluate(&prog, *arch, *nr, [0; 6]),
                bpf::Action::Notify
            );
            assert_eq!(classify(*arch, *nr as i32), Some(*trapped));
        }
        assert_eq!(classify(AUDIT_ARCH_X86_64, 11), None);
        assert_eq!(classify(AUDIT_ARCH_I386, 59), None);
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
