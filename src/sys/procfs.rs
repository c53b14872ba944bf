//! Every reader of /proc (proc(5)) in one place, with one fallback policy: a reader returns what
//! the kernel said or the error it gave (a task that is gone: ENOENT or ESRCH), never a guess.
//! What an unreadable answer means is decided by the caller, which knows which side is the closed
//! one, and says so where it decides. The parsers of the text are pure and tested here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::str::FromStr;

/// The value of `Key:` in a `Key:\tvalue` file (/proc/PID/status, /proc/PID/fdinfo/N), trimmed.
/// Pure.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// [`field`], parsed. Pure.
pub fn parsed<T: FromStr>(text: &str, key: &str) -> Option<T> {
    field(text, key)?.parse().ok()
}

/// The text of /proc/TID/status (proc_pid_status(5)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status(String);

impl Status {
    /// /proc/TID/status, read with a buffer it fits in (about 1.5 KiB): a few reads, where
    /// reading it to a string in growing steps takes a dozen; this is read on every unix-socket
    /// call.
    pub fn of(tid: u32) -> io::Result<Status> {
        Status::read(File::open(format!("/proc/{tid}/status"))?)
    }

    /// The calling thread's own (/proc/thread-self/status).
    pub fn of_self() -> io::Result<Status> {
        Status::read(File::open("/proc/thread-self/status")?)
    }

    /// The status of the task a /proc/PID directory names, read through the directory (which
    /// keeps naming that task, numbered in its proc mount's PID namespace).
    pub fn of_dir(dir: BorrowedFd<'_>) -> io::Result<Status> {
        use nix::fcntl::{OFlag, openat};
        let fd = openat(
            dir,
            "status",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        Status::read(File::from(fd))
    }

    fn read(mut file: File) -> io::Result<Status> {
        let mut buf = vec![0u8; 4096];
        let mut len = 0;
        loop {
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            match file.read(&mut buf[len..])? {
                0 => break,
                n => len += n,
            }
        }
        buf.truncate(len);
        // `Name:` is the task's comm, which the task sets itself (PR_SET_NAME) to any bytes:
        // read lossily, so that a task cannot make its numeric fields unreadable.
        Ok(Status(String::from_utf8_lossy(&buf).into_owned()))
    }

    /// A status from its text.
    #[cfg(test)]
    pub fn from_text(text: String) -> Status {
        Status(text)
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// The process the thread belongs to (`Tgid:`).
    pub fn tgid(&self) -> Option<u32> {
        parsed(&self.0, "Tgid")
    }

    /// The task tracing it, 0 for none (`TracerPid:`).
    pub fn tracer(&self) -> Option<u32> {
        parsed(&self.0, "TracerPid")
    }

    /// How many PID namespaces the task is seen in from the /proc mount's (`NSpid:` entries):
    /// the depth below the namespace of the mount read, which need not be ours.
    pub fn pid_ns_depth(&self) -> Option<usize> {
        field(&self.0, "NSpid").map(|v| v.split_whitespace().count())
    }

    /// The effective uid (`Uid:`: real, effective, saved, file system).
    pub fn euid(&self) -> Option<u32> {
        field(&self.0, "Uid")?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// The parent process (`PPid:`), 0 when it is outside the /proc mount's PID namespace.
    pub fn ppid(&self) -> Option<u32> {
        parsed(&self.0, "PPid")
    }

    /// The file mode creation mask (`Umask:`, octal).
    pub fn umask(&self) -> Option<u32> {
        u32::from_str_radix(field(&self.0, "Umask")?, 8).ok()
    }
}

/// The process thread `tid` belongs to (`Tgid:` of its status).
pub fn tgid(tid: u32) -> io::Result<u32> {
    Status::of(tid)?
        .tgid()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Tgid in the status"))
}

/// The controlling terminal of task `tid` (`tty_nr` of /proc/TID/stat, proc_pid_stat(5)): its
/// device number, 0 for none.
pub fn tty_nr(tid: u32) -> io::Result<u64> {
    // Lossily: the comm field holds whatever bytes the task named itself with.
    let stat = std::fs::read(format!("/proc/{tid}/stat"))?;
    tty_in_stat(&String::from_utf8_lossy(&stat))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no tty_nr"))
}

/// Which /proc a descriptor is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mount {
    /// Not a proc file system.
    NotProc,
    /// Another proc mount than our /proc (its pids may be of another PID namespace), or one
    /// whose device could not be compared.
    OtherProc,
    /// Our /proc.
    OurProc,
}

/// Whether `fd` is on a proc file system, and ours.
pub fn mount_of(fd: BorrowedFd<'_>) -> Mount {
    use nix::sys::{stat, statfs};
    let is_proc =
        statfs::fstatfs(fd).is_ok_and(|s| s.filesystem_type() == statfs::PROC_SUPER_MAGIC);
    if !is_proc {
        return Mount::NotProc;
    }
    match (stat::fstat(fd), stat::stat("/proc/self")) {
        (Ok(a), Ok(b)) if a.st_dev == b.st_dev => Mount::OurProc,
        _ => Mount::OtherProc,
    }
}

/// The link to the image task `pid` runs (/proc/PID/exe): stat(2) through it reaches the very
/// file, even when its path no longer names it.
pub fn exe_link(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/exe"))
}

/// The path of the image task `pid` runs, in the supervisor's view.
pub fn exe(pid: u32) -> io::Result<PathBuf> {
    std::fs::read_link(exe_link(pid))
}

/// The running executable of this process, opened (/proc/self/exe: the very file, whatever path,
/// or none, it was started by).
pub fn own_image() -> io::Result<File> {
    File::open("/proc/self/exe")
}

/// The command line of process `pid`: each argument ends with a NUL.
///
/// Read at every verified exec stop, so in three calls (open, read, and the read that finds the
/// end; then close): `std::fs::read` also asks fstat(2) for a size (0 on /proc), and musl's
/// `open` adds an fcntl(2) to every O_CLOEXEC open (its `openat` does not).
pub fn cmdline(pid: u32) -> io::Result<Vec<u8>> {
    let path = std::ffi::CString::new(format!("/proc/{pid}/cmdline"))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call; openat only reads it.
    let fd = super::cvt(unsafe {
        libc::openat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just opened here and nothing else owns it.
    let mut file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // Through a buffer on the stack: a heap one of a page is mapped and unmapped by musl's
    // allocator at each call.
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The working directory of task `pid`, in the supervisor's view.
pub fn cwd(pid: u32) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd"))
}

/// The root directory of task `pid`, in the supervisor's view.
pub fn root(pid: u32) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/root"))
}

/// /proc/TID/ENTRY as a path (`root`, `cwd`, `ns/user`), for what opens or stats it itself.
pub fn task_entry(tid: u32, entry: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{tid}/{entry}"))
}

/// Whether thread `tid` is in the calling thread's user namespace (the same ns/user inode).
pub fn same_user_namespace(tid: u32) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let theirs = std::fs::metadata(task_entry(tid, "ns/user"))?;
    let ours = std::fs::metadata("/proc/thread-self/ns/user")?;
    Ok((theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()))
}

/// The path a descriptor of ours refers to, as /proc/self/fd/N names it.
pub fn fd_path(fd: &impl AsRawFd) -> io::Result<PathBuf> {
    std::fs::read_link(fd_link(fd))
}

/// /proc/self/fd/N: opening it reopens the file a descriptor of ours refers to.
pub fn fd_link(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The text of /proc/self/fdinfo/N for a descriptor of ours (`mnt_id:`, and `Pid:` for a pidfd).
pub fn fdinfo(fd: &impl AsRawFd) -> io::Result<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
}

/// /proc/self/mountinfo, opened: poll(2) on it reports POLLPRI once the mount table of the
/// namespace changed (proc_mounts(5)).
pub fn open_mountinfo() -> io::Result<File> {
    File::open("/proc/self/mountinfo")
}

/// The text of /proc/self/mountinfo.
pub fn mountinfo() -> io::Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
}

/// `net.ipv4.ip_unprivileged_port_start` of our network namespace (ip-sysctl): the lowest port a
/// bind needs no CAP_NET_BIND_SERVICE for.
pub fn unprivileged_port_start() -> io::Result<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// How many threads the calling process has (the entries of /proc/self/task).
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Pid -> parent pid of every process in /proc. A process that ends while it is read is left
/// out; /proc unreadable gives none.
pub fn parents() -> HashMap<i32, i32> {
    let mut parent_of = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return parent_of;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parent_in_stat(&stat))
        {
            parent_of.insert(pid, ppid);
        }
    }
    parent_of
}

/// The parent pid in the text of /proc/PID/stat (the 4th field). The comm field (2nd) may
/// contain spaces and parentheses: split after the last ')'. Pure.
fn parent_in_stat(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
}

/// `tty_nr` in the text of /proc/PID/stat (the 7th field), split after the comm field's last ')'
/// as [`parent_in_stat`] does. Pure.
fn tty_in_stat(stat: &str) -> Option<u64> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(4))
        .and_then(|t| t.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        // A command line longer than the first read, as the kernel has it: the process's own,
        // read the ordinary way.
        let long = "x".repeat(10_000);
        // sh waits for a line that never comes, until killed.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x", "sh", &long])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the child's exec is done, its command line is ours, then empty (spawn returns
        // once the exec closed the child's descriptors, before the new stack is set up); wait
        // for the shell's own.
        let want = [b"sh\0-c\0read x\0sh\0".as_slice(), long.as_bytes(), b"\0"].concat();
        let ours = cmdline(std::process::id()).unwrap();
        let mut got = cmdline(pid).unwrap();
        while got != want && (got.is_empty() || got == ours) {
            std::thread::yield_now();
            got = cmdline(pid).unwrap();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(got, want);
        assert_eq!(
            cmdline(std::process::id()).unwrap(),
            std::fs::read("/proc/self/cmdline").unwrap()
        );
    }

    #[test]
    fn fields() {
        let pidfd =
            "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nPid:\t4242\nNSpid:\t4242\n";
        assert_eq!(parsed::<i64>(pidfd, "Pid"), Some(4242));
        assert_eq!(parsed::<u64>(pidfd, "mnt_id"), Some(15));
        assert_eq!(
            parsed::<i64>("pos:\t0\nflags:\t02\nPid:\t-1\n", "Pid"),
            Some(-1)
        );
        assert_eq!(
            parsed::<i64>("pos:\t0\nflags:\t0100000\nmnt_id:\t25\nino:\t7\n", "Pid"),
            None
        );
        let status = Status::from_text(
            "Name:\tx\nUmask:\t0027\nTgid:\t77\nPid:\t78\nPPid:\t1\nTracerPid:\t0\nNSpid:\t78\t3\n"
                .into(),
        );
        assert_eq!(status.tgid(), Some(77));
        assert_eq!(status.tracer(), Some(0));
        assert_eq!(status.pid_ns_depth(), Some(2));
        assert_eq!(status.umask(), Some(0o027));
        assert_eq!(parent_in_stat("12 (a) b) c) S 34 12 12"), Some(34));
        let status = Status::from_text("Uid:\t1000\t33\t33\t33\nPPid:\t0\n".into());
        assert_eq!((status.euid(), status.ppid()), (Some(33), Some(0)));
        for (stat, want) in [
            ("12 (sh) S 1 12 12 34816 12 4194560", Some(34816)),
            ("12 (a) ) S) R 1 12 12 0 -1 4194560", Some(0)),
            ("12 (sh) S 1 12", None),
        ] {
            assert_eq!(tty_in_stat(stat), want, "{stat}");
        }
    }

    #[test]
    fn reads_own_entries() {
        let me = std::process::id();
        assert_eq!(tgid(me).unwrap(), me);
        assert_eq!(Status::of_self().unwrap().tgid(), Some(me));
        let dir = File::open(format!("/proc/{me}")).unwrap();
        use std::os::fd::AsFd;
        assert_eq!(Status::of_dir(dir.as_fd()).unwrap().tgid(), Some(me));
        assert_eq!(mount_of(dir.as_fd()), Mount::OurProc);
        let null = File::open("/dev/null").unwrap();
        assert_eq!(mount_of(null.as_fd()), Mount::NotProc);
        assert!(same_user_namespace(me).unwrap());
        assert!(thread_count().unwrap() >= 1);
        assert_eq!(exe(me).unwrap(), std::env::current_exe().unwrap());
        assert!(parents().contains_key(&(me as i32)));
        assert!(tty_nr(me).is_ok());
    }
}
