//! A trapped caller's memory: read with `process_vm_readv(2)` and written with
//! `process_vm_writev(2)`, falling back to `/proc/PID/mem` where those are filtered (Docker's
//! default profile allows them only with CAP_SYS_PTRACE) or absent.
//!
//! Every read here is a snapshot of memory the caller may still change; callers confirm the
//! notification is still valid before acting on what they read, and say at each CONTINUE why the
//! kernel's own re-read cannot undo their decision (supervisor/mod.rs).

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;

const PAGE: u64 = 4096;
/// How many pointers [`RemoteMemory::read_ptr_array`] reads per call.
const ARRAY_CHUNK: usize = 64;

/// How much of a string of at most `max` bytes at `addr` one read takes: up to the end of its
/// page, so that a string ending just before an unmapped page is still read whole.
fn cstr_chunk(addr: u64, max: usize) -> usize {
    ((PAGE - addr % PAGE) as usize).min(max)
}

/// Memory of one process, read-only.
pub struct RemoteMemory {
    pid: i32,
    /// Opened on first need, only if process_vm_readv is refused.
    mem: Option<File>,
    /// What [`RemoteMemory::read_ahead`] read, served to the reads that fall wholly inside it.
    ahead: Ahead,
}

/// Ranges of the caller's memory read ahead, in one buffer on the stack (this is on the path of
/// every trapped exec, and musl's allocator maps and unmaps a page for buffers of this size).
/// Left uninitialized: every [`RemoteMemory`] has one, the network sensor's too, which never
/// reads ahead, and zeroing it would cost them all; only bytes the kernel wrote are ever read.
struct Ahead {
    bytes: [MaybeUninit<u8>; AHEAD],
    /// Each range kept: its address, and where its bytes are in `bytes`, all written by the
    /// kernel.
    ranges: [(u64, std::ops::Range<usize>); 2],
    kept: usize,
}

/// Room for a string's first chunk (at most a page) and an array's.
const AHEAD: usize = PAGE as usize + 8 * ARRAY_CHUNK;

impl RemoteMemory {
    pub fn new(pid: i32) -> Self {
        RemoteMemory {
            pid,
            mem: None,
            ahead: Ahead {
                bytes: [MaybeUninit::uninit(); AHEAD],
                ranges: [(0, 0..0), (0, 0..0)],
                kept: 0,
            },
        }
    }

    /// Reads, in one `process_vm_readv(2)`, the first chunk that [`RemoteMemory::read_cstr`] will
    /// ask for at `string` (`(address, max)`) and [`RemoteMemory::read_ptr_array`] at `array`
    /// (`(address, pointer width)`), and keeps them for those reads: an exec's path and argv in
    /// one call instead of one per string and array. A hint only: a range that was not read
    /// whole (unmapped, or the call refused) is read again when asked for, as without it.
    ///
    /// What a later read gets from here is the caller's memory as it was at this call, not at
    /// that read: every read is such a snapshot anyway (see the module's note), and the reads of
    /// one notification now come from one moment instead of several.
    pub fn read_ahead(&mut self, string: (u64, usize), array: (u64, usize)) {
        let (at, max) = string;
        let (array_at, width) = array;
        let first = cstr_chunk(at, max);
        let second = (width * ARRAY_CHUNK).min(AHEAD - first);
        let ranges = [(at, 0..first), (array_at, first..first + second)];
        if self.mem.is_some() || at == 0 || array_at == 0 {
            return;
        }
        let bytes = self.ahead.bytes.as_mut_ptr();
        let local = ranges.clone().map(|(_, within)| libc::iovec {
            // `within` lies inside `bytes` (`first + second <= AHEAD`).
            iov_base: bytes.wrapping_add(within.start).cast(),
            iov_len: within.len(),
        });
        let remote = ranges.clone().map(|(base, within)| libc::iovec {
            iov_base: base as *mut libc::c_void,
            iov_len: within.len(),
        });
        // SAFETY: the local iovecs are two disjoint ranges of `self.ahead.bytes`, which is
        // borrowed mutably for the call; the kernel writes at most their lengths there and only
        // reads the remote ones' addresses, in the caller's process.
        let n =
            unsafe { libc::process_vm_readv(self.pid, local.as_ptr(), 2, remote.as_ptr(), 2, 0) };
        let Ok(n) = usize::try_from(n) else {
            return;
        };
        // The call copies the ranges in order and stops at the first byte it cannot read: the
        // ranges covered by the count are whole, and written.
        self.ahead.kept = ranges.iter().filter(|(_, within)| within.end <= n).count();
        self.ahead.ranges = ranges;
    }

    /// Reads up to `buf.len()` bytes at `addr`; a short count means the next byte is unmapped.
    pub fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
        let ahead = &self.ahead;
        let kept = ahead.ranges[..ahead.kept].iter().find_map(|(at, within)| {
            let from = usize::try_from(addr.checked_sub(*at)?).ok()?;
            let end = from.checked_add(buf.len())?;
            (end <= within.len()).then(|| &ahead.bytes[within.start + from..within.start + end])
        });
        if let Some(bytes) = kept {
            // SAFETY: `bytes` lies inside a kept range, every byte of which the kernel wrote
            // (`read_ahead`), and has `buf`'s length; the two do not overlap (`buf` is borrowed
            // apart from `self`).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr().cast::<u8>(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            return Ok(buf.len());
        }
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
        // On the stack: a chunk is at most a page, and a heap buffer of that size is one more
        // allocation per string (which musl's allocator may map and unmap each time).
        let mut page = [0u8; PAGE as usize];
        while out.len() < max {
            let chunk = cstr_chunk(at, max - out.len());
            let buf = &mut page[..chunk];
            let n = self.read(at, buf)?;
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
        let mut words = [0u8; 8 * ARRAY_CHUNK];
        let buf = &mut words[..width * ARRAY_CHUNK];
        let mut at = addr;
        while out.len() < max {
            let n = self.read(at, buf)?;
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
    fn reads_ahead_in_one_call() {
        // Our own memory again: after the read ahead the bytes change, and the reads that fall
        // inside the ranges read ahead still see them as they were, which proves they were
        // served from the one call.
        let mut path = *b"/bin/true\0and more";
        let mut argv = [path.as_ptr() as u64, 0u64];
        let mut mem = RemoteMemory::new(std::process::id() as i32);
        mem.read_ahead((path.as_ptr() as u64, 4096), (argv.as_ptr() as u64, 8));
        path[1] = b'X';
        argv[1] = 1;
        // Keep the writes: the reads below go through a pointer the compiler cannot see through.
        std::hint::black_box((&path, &argv));
        assert_eq!(
            mem.read_cstr(path.as_ptr() as u64, 4096).unwrap(),
            b"/bin/true"
        );
        let (ptrs, truncated) = mem.read_ptr_array(argv.as_ptr() as u64, 8, 16).unwrap();
        assert_eq!((ptrs, truncated), (vec![path.as_ptr() as u64], false));
    }

    #[test]
    fn reads_ahead_only_whole_ranges() {
        // A range reaching into a page that cannot be read is not kept: reads past its end see
        // the fault as without the read ahead. (The second page is made inaccessible rather than
        // unmapped, where another test's thread could map something.)
        let len = PAGE as usize * 2;
        // SAFETY: an anonymous private mapping of two pages, not aliased; the second is made
        // inaccessible at once and the first is written only through `first`.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // SAFETY: the second page of the mapping made above, which nothing references.
        let second = unsafe { base.add(PAGE as usize) };
        // SAFETY: changes the protection of that page only.
        let protected = unsafe { libc::mprotect(second, PAGE as usize, libc::PROT_NONE) };
        assert_eq!(protected, 0);
        // SAFETY: the first page is mapped, writable and ours alone.
        let first = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, PAGE as usize) };
        first.fill(0xff);
        let tail = base as u64 + PAGE - 8;
        let mut mem = RemoteMemory::new(std::process::id() as i32);
        let s = b"s\0";
        mem.read_ahead((s.as_ptr() as u64, 4096), (tail, 8));
        assert_eq!(mem.ahead.kept, 1);
        let err = mem.read_ptr_array(tail, 8, 64).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT));
        // SAFETY: unmapping the pages mapped above, no longer used.
        unsafe { libc::munmap(base, len) };
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
