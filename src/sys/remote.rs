//! A trapped caller's memory: read with `process_vm_readv(2)` and written with
//! `process_vm_writev(2)`, falling back to `/proc/PID/mem` where those are filtered (Docker's
//! default profile allows them only with CAP_SYS_PTRACE) or absent.
//!
//! Every read here is a snapshot of memory the caller may still change; callers confirm the
//! notification is still valid before acting on what they read, and say at each CONTINUE why the
//! kernel's own re-read cannot undo their decision (supervisor/mod.rs).

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;

const PAGE: u64 = 4096;

/// Memory of one process, read-only.
pub struct RemoteMemory {
    pid: i32,
    /// Opened on first need, only if process_vm_readv is refused.
    mem: Option<File>,
}

impl RemoteMemory {
    pub fn new(pid: i32) -> Self {
        RemoteMemory { pid, mem: None }
    }

    /// Reads up to `buf.len()` bytes at `addr`; a short count means the next byte is unmapped.
    pub fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
        if self.mem.is_none() {
            let len = buf.len();
            let remote = [RemoteIoVec {
                base: addr as usize,
                len,
            }];
            match process_vm_readv(
                Pid::from_raw(self.pid),
                &mut [IoSliceMut::new(buf)],
                &remote,
            ) {
                Ok(n) => return Ok(n),
                Err(e) if use_mem_file(e) => self.mem = Some(open_mem(self.pid, false)?),
                Err(e) => return Err(e.into()),
            }
        }
        let mem = self.mem.as_ref().expect("opened above");
        mem.read_at(buf, addr)
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL). Reads page by page
    /// so that a string ending just before an unmapped page is still read whole.
    pub fn read_cstr(&mut self, addr: u64, max: usize) -> io::Result<Vec<u8>> {
        if addr == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < max {
            let chunk = ((PAGE - at % PAGE) as usize).min(max - out.len());
            let mut buf = vec![0u8; chunk];
            let n = self.read(at, &mut buf)?;
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::EFAULT));
            }
            if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..end]);
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            at += n as u64;
        }
        Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
    }

    /// Reads a NULL-terminated array of pointers `width` bytes wide (8, or 4 for i386 callers),
    /// at most `max` entries; `Ok((entries, truncated))`.
    pub fn read_ptr_array(
        &mut self,
        addr: u64,
        width: usize,
        max: usize,
    ) -> io::Result<(Vec<u64>, bool)> {
        let mut out = Vec::new();
        if addr == 0 {
            // execve(2): a NULL argv is taken as an empty list on Linux.
            return Ok((out, false));
        }
        let mut buf = vec![0u8; width * 64];
        let mut at = addr;
        while out.len() < max {
            let n = self.read(at, &mut buf)?;
            if n < width {
                return Err(io::Error::from_raw_os_error(libc::EFAULT));
            }
            for word in buf[..n - n % width].chunks_exact(width) {
                let value = match width {
                    4 => u64::from(u32::from_le_bytes(word.try_into().expect("4 bytes"))),
                    _ => u64::from_le_bytes(word.try_into().expect("8 bytes")),
                };
                if value == 0 {
                    return Ok((out, false));
                }
                out.push(value);
                if out.len() == max {
                    return Ok((out, true));
                }
            }
            at += (n - n % width) as u64;
        }
        Ok((out, true))
    }
}

/// Whether a process_vm_* error means that /proc/PID/mem must be used instead: the call is
/// filtered (EPERM) or not there (ENOSYS).
fn use_mem_file(e: Errno) -> bool {
    matches!(e, Errno::EPERM | Errno::ENOSYS)
}

fn open_mem(pid: i32, write: bool) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open(format!("/proc/{pid}/mem"))
}

/// /proc/PID/mem opened for writing, for a caller that must hold it before it changes
/// credentials (the open is checked against the opener's, ptrace access mode).
pub fn open_for_writing(pid: i32) -> io::Result<File> {
    open_mem(pid, true)
}

/// Writes `bytes` into the memory of process `pid` at `addr`: the `msg_len` fields a real
/// sendmmsg(2) would have filled in.
pub fn write(pid: i32, addr: u64, bytes: &[u8]) -> io::Result<()> {
    let local = [io::IoSlice::new(bytes)];
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: bytes.len(),
    }];
    match process_vm_writev(Pid::from_raw(pid), &local, &remote) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EFAULT)),
        Err(e) if use_mem_file(e) => open_mem(pid, true)?.write_all_at(bytes, addr),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_strings_and_arrays() {
        // Reading our own process exercises the same calls as reading a trapped caller.
        let s = std::ffi::CString::new("hello world").unwrap();
        let args = [s.as_ptr() as u64, s.as_ptr() as u64, 0u64];
        let mut mem = RemoteMemory::new(std::process::id() as i32);
        assert_eq!(
            mem.read_cstr(s.as_ptr() as u64, 4096).unwrap(),
            b"hello world"
        );
        assert_eq!(
            mem.read_cstr(s.as_ptr() as u64, 5)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENAMETOOLONG)
        );
        let (ptrs, truncated) = mem.read_ptr_array(args.as_ptr() as u64, 8, 16).unwrap();
        assert_eq!((ptrs.len(), truncated), (2, false));
        let (ptrs, truncated) = mem.read_ptr_array(args.as_ptr() as u64, 8, 1).unwrap();
        assert_eq!((ptrs.len(), truncated), (1, true));
        assert!(mem.read_cstr(0, 10).is_err());
    }

    #[test]
    fn writes_own_memory() {
        let mut target = [0u8; 4];
        let at = target.as_mut_ptr() as u64;
        write(std::process::id() as i32, at, &7u32.to_ne_bytes()).unwrap();
        let mut back = [0u8; 4];
        let n = RemoteMemory::new(std::process::id() as i32)
            .read(at, &mut back)
            .unwrap();
        assert_eq!((n, u32::from_ne_bytes(back)), (4, 7));
    }
}
