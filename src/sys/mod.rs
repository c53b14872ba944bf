//! The only home of libc and `unsafe` (the crate denies `unsafe_code` everywhere else): thin
//! wrappers that turn system calls into `io::Result`s, each `unsafe` block naming the invariant it
//! relies on, one file per kind of kernel object. It sits at the bottom: nothing here imports
//! from the rest of the crate.

pub mod caps;
pub mod copyin;
pub mod creds;
pub mod fdpass;
pub mod paths;
pub mod pidfd;
pub mod process;
pub mod procfs;
pub mod remote;
pub mod seccomp;
pub mod signals;
pub mod sockaddr;
pub mod socket;

use std::io;

/// Turns a libc-style return value (-1 and `errno` on failure) into an `io::Result`.
pub(crate) fn cvt<T: Default + PartialOrd + Copy>(ret: T) -> io::Result<T> {
    if ret < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
