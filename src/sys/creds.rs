//! Acting as another task: its credentials (uids, gids, groups, capabilities) read from
//! /proc/TID/status, and its file-system context (root, working directory, umask), taken on by
//! the CALLING THREAD only. Linux credentials and fs_structs are per task; the raw system calls
//! used here act on the thread that makes them, whereas the libc wrappers of setuid(2) and
//! friends broadcast the change to every thread of the process (nptl's setxid signal), which
//! would change the whole supervisor.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::cvt;
use super::paths::open_dir_path;
use super::procfs::{self, Status};

/// Real, effective and saved ids (the first three fields of `Uid:`/`Gid:` in /proc/TID/status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
}

/// Capability sets as 64-bit masks (`CapInh`, `CapPrm`, `CapEff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
}

/// A task's credentials, as far as they decide what a system call it makes may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uids: Ids,
    pub gids: Ids,
    pub groups: Vec<u32>,
    pub caps: Caps,
}

/// Which real uid the thread keeps in [`assume`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealUid {
    /// Keep the thread's own real uid. Signal permission (kill_ok_by_cred) compares the SENDER's
    /// real and effective uid with the TARGET's real and saved uid: with the supervisor's real
    /// and saved uid kept, the other task cannot signal the thread while it acts for it. Use it
    /// when the call performed does not look at the real uid (socket calls: SO_PEERCRED and
    /// file creation take the effective and fs ids; the SCM_CREDENTIALS the kernel attaches by
    /// itself carry the real uid, so the caller's are sent explicitly instead).
    Keep,
    /// Take the other task's real uid too: needed when the call performed checks it (sending a
    /// signal). The thread can then be signalled by that task's uid while it acts.
    Task,
}

impl Creds {
    /// Parses the credentials out of the text of /proc/TID/status.
    pub fn parse_status(status: &str) -> Option<Creds> {
        let field = |name: &str| procfs::field(status, name);
        let ids = |name: &str| -> Option<Ids> {
            let v: Vec<u32> = field(name)?
                .split_whitespace()
                .map(|s| s.parse().ok())
                .collect::<Option<_>>()?;
            Some(Ids {
                real: *v.first()?,
                effective: *v.get(1)?,
                saved: *v.get(2)?,
            })
        };
        let cap = |name: &str| u64::from_str_radix(field(name)?, 16).ok();
        Some(Creds {
            uids: ids("Uid")?,
            gids: ids("Gid")?,
            groups: field("Groups")?
                .split_whitespace()
                .map(|s| s.parse().ok())
                .collect::<Option<_>>()?,
            caps: Caps {
                inheritable: cap("CapInh")?,
                permitted: cap("CapPrm")?,
                effective: cap("CapEff")?,
            },
        })
    }

    /// Whether the effective capability set holds `cap` (linux/capability.h numbering).
    pub fn has_capability(&self, cap: u32) -> bool {
        cap < 64 && self.caps.effective & (1 << cap) != 0
    }
}

/// The credentials of thread `tid`, as they count in the caller's user namespace (no capability
/// when `tid` is in another one). They are the thread's own only while it cannot change them:
/// read them while it waits in a trapped call, and check afterwards that the call still waits
/// (the thread id was not reused meanwhile).
pub fn of_task(tid: u32) -> io::Result<Creds> {
    creds_in(tid, &Status::of(tid)?)
}

/// [`of_task`] and [`fs_of_task`] with one read of /proc/TID/status.
pub fn of_task_with_fs(tid: u32) -> io::Result<(Creds, Fs)> {
    let status = Status::of(tid)?;
    Ok((creds_in(tid, &status)?, fs_in(tid, &status)?))
}

fn creds_in(tid: u32, status: &Status) -> io::Result<Creds> {
    let mut creds = Creds::parse_status(status.text()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable credentials in /proc/{tid}/status"),
        )
    })?;
    if !procfs::same_user_namespace(tid)? {
        // /proc/TID/status shows the capabilities a task holds in ITS user namespace: all of
        // them for the root of a namespace it made itself (unshare(CLONE_NEWUSER)). Assumed in
        // ours they would be real privileges over everything ours owns. They count here as
        // none (the task loses, through a performed call, what they give it over its own
        // namespace's resources).
        creds.caps = Caps {
            inheritable: 0,
            permitted: 0,
            effective: 0,
        };
    }
    Ok(creds)
}

/// Makes the CALLING THREAD act with `c`: its supplementary groups, real, effective and saved
/// gids, effective uid (and so fs uid), real uid per `real`, and effective and inheritable
/// capabilities. The thread's saved uid and permitted capability set stay its own: a thread of a
/// root supervisor keeps saved uid 0, and so its permitted set (capabilities(7): the permitted
/// set is cleared only when all of real, effective and saved uid become nonzero), which lets it
/// assume other credentials later; its effective set is `c`'s, so every permission check of what
/// it does in between is `c`'s. Fails (and may leave the thread half changed: use it on a thread
/// that does nothing else until it succeeds) when the thread may not take these credentials.
pub fn assume(c: &Creds, real: RealUid) -> io::Result<()> {
    if current_groups()? != c.groups {
        // SAFETY: the pointer and length describe `c.groups`, alive for the call; the kernel
        // only reads it. Raw syscall: acts on this thread only.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_setgroups,
                c.groups.len() as libc::size_t,
                c.groups.as_ptr(),
            )
        })?;
    }
    // SAFETY: integers only; raw syscall, this thread only.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_setresgid,
            c.gids.real,
            c.gids.effective,
            c.gids.saved,
        )
    })?;
    let ruid = match real {
        RealUid::Keep => u32::MAX, // -1: unchanged
        RealUid::Task => c.uids.real,
    };
    // SAFETY: integers only; raw syscall, this thread only. Saved uid (-1) unchanged.
    cvt(unsafe { libc::syscall(libc::SYS_setresuid, ruid, c.uids.effective, u32::MAX) })?;
    let mut sets = capget()?;
    sets.effective = c.caps.effective;
    sets.inheritable = c.caps.inheritable;
    capset(&sets)
}

/// Takes the calling thread back to `own`, its credentials before [`assume`] with
/// [`RealUid::Keep`]: the effective uid first (a thread that kept saved uid 0 kept its
/// permitted set, which becomes its effective set again when its effective uid returns to 0,
/// capabilities(7); capset sets it exactly, also when the effective uid was 0 throughout), then
/// gids and groups, which need CAP_SETGID back.
pub fn restore(own: &Creds) -> io::Result<()> {
    // SAFETY: integers only; raw syscall, this thread only.
    cvt(unsafe { libc::syscall(libc::SYS_setresuid, u32::MAX, own.uids.effective, u32::MAX) })?;
    let mut sets = capget()?;
    sets.effective = own.caps.effective;
    sets.inheritable = own.caps.inheritable;
    capset(&sets)?;
    // SAFETY: integers only; raw syscall, this thread only.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_setresgid,
            own.gids.real,
            own.gids.effective,
            own.gids.saved,
        )
    })?;
    if current_groups()? != own.groups {
        // SAFETY: as in `assume`.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_setgroups,
                own.groups.len() as libc::size_t,
                own.groups.as_ptr(),
            )
        })?;
    }
    Ok(())
}

/// The calling thread's own credentials, from the kernel directly (getresuid, getresgid,
/// getgroups, capget: this thread's, whatever other threads hold): what to [`restore`] after
/// acting as another task.
pub fn current() -> io::Result<Creds> {
    let ids = |nr: libc::c_long| -> io::Result<Ids> {
        let (mut r, mut e, mut s) = (0u32, 0u32, 0u32);
        // SAFETY: three live u32 locals the kernel writes; raw syscall, this thread's ids.
        cvt(unsafe { libc::syscall(nr, &mut r, &mut e, &mut s) })?;
        Ok(Ids {
            real: r,
            effective: e,
            saved: s,
        })
    };
    Ok(Creds {
        uids: ids(libc::SYS_getresuid)?,
        gids: ids(libc::SYS_getresgid)?,
        groups: current_groups()?,
        caps: capget()?,
    })
}

/// The calling thread's supplementary groups.
fn current_groups() -> io::Result<Vec<u32>> {
    // SAFETY: size 0 asks for the count only; no memory is written.
    let n = cvt(unsafe { libc::syscall(libc::SYS_getgroups, 0, std::ptr::null_mut::<u32>()) })?;
    let mut groups = vec![0u32; n as usize];
    // SAFETY: `groups` has room for `n` gids; the kernel writes at most that many.
    let n = cvt(unsafe { libc::syscall(libc::SYS_getgroups, n, groups.as_mut_ptr()) })?;
    groups.truncate(n as usize);
    Ok(groups)
}

fn capget() -> io::Result<Caps> {
    let (effective, permitted, inheritable) = super::caps::thread_sets()?;
    Ok(Caps {
        inheritable,
        permitted,
        effective,
    })
}

fn capset(c: &Caps) -> io::Result<()> {
    super::caps::set(c.effective, c.permitted, c.inheritable)
}

/// A task's file-system context, held open: its root and working directory, and its umask.
pub struct Fs {
    root: OwnedFd,
    cwd: OwnedFd,
    umask: u32,
}

impl Fs {
    /// Whether the task's root is the calling thread's (the same mount and directory): then
    /// absolute paths resolve alike for both.
    pub fn root_is_ours(&self) -> io::Result<bool> {
        let own_root = open_dir_path(Path::new("/"))?;
        Ok(identity(own_root.as_raw_fd())? == identity(self.root.as_raw_fd())?)
    }
}

/// The file-system context of thread `tid` (/proc/TID/root, /proc/TID/cwd, `Umask:`). Like
/// [`of_task`]: the thread's own only if it still waits in its trapped call after this.
pub fn fs_of_task(tid: u32) -> io::Result<Fs> {
    fs_in(tid, &Status::of(tid)?)
}

fn fs_in(tid: u32, status: &Status) -> io::Result<Fs> {
    let open = |what: &str| open_dir_path(&procfs::task_entry(tid, what));
    let umask = status.umask().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no umask in /proc/{tid}/status"),
        )
    })?;
    Ok(Fs {
        root: open("root")?,
        cwd: open("cwd")?,
        umask,
    })
}

/// What makes a directory the same place for path lookups: its mount and inode (statx(2)).
fn identity(fd: i32) -> io::Result<(u64, u32, u32, u64)> {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the call; the empty path with AT_EMPTY_PATH names it; the
    // kernel writes only `stx`.
    cvt(unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_INO | libc::STATX_MNT_ID,
            &mut stx,
        )
    })?;
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok((
        stx.stx_mnt_id,
        stx.stx_dev_major,
        stx.stx_dev_minor,
        stx.stx_ino,
    ))
}

/// Gives the CALLING THREAD a file-system context of its own (`unshare(CLONE_FS)`: root, cwd and
/// umask are per fs_struct, shared by the threads of a process until unshared) set to `fs`, so
/// that paths it uses resolve, and files it creates are masked, as the other task's would.
/// Call it before [`assume`]: chroot(2) needs CAP_SYS_CHROOT, which is used only when the other
/// task's root is not the thread's own (a chrooted task), so that a supervisor without
/// privileges serves tasks that share its root. Never call it on a thread that returns to other
/// work: the thread's root and cwd stay changed until it ends.
pub fn enter_fs(fs: &Fs) -> io::Result<()> {
    // SAFETY: integer flag only; unshare(CLONE_FS) acts on the calling thread.
    cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
    if !fs.root_is_ours()? {
        // SAFETY: a descriptor we own; fchdir accepts an O_PATH directory (open(2)).
        cvt(unsafe { libc::fchdir(fs.root.as_raw_fd()) })?;
        // SAFETY: a static NUL-terminated string; chroot to the working directory just set,
        // which is the other task's root (a mount and dentry, whatever path names it).
        cvt(unsafe { libc::chroot(c".".as_ptr()) })?;
    }
    // SAFETY: as above.
    cvt(unsafe { libc::fchdir(fs.cwd.as_raw_fd()) })?;
    // SAFETY: integer only; umask acts on this thread's (now own) fs_struct.
    unsafe { libc::umask(fs.umask as libc::mode_t) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcat\nUmask:\t0027\nState:\tR (running)\nTgid:\t7\n\
        Uid:\t1000\t1001\t1002\t1001\nGid:\t2000\t2001\t2002\t2001\nFDSize:\t64\n\
        Groups:\t4 24 27 \nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\n\
        CapEff:\t0000000000000400\nCapBnd:\t000001ffffffffff\n";

    #[test]
    fn parses_status() {
        let c = Creds::parse_status(STATUS).unwrap();
        assert_eq!(
            c.uids,
            Ids {
                real: 1000,
                effective: 1001,
                saved: 1002
            }
        );
        assert_eq!(c.gids.effective, 2001);
        assert_eq!(c.groups, vec![4, 24, 27]);
        assert_eq!(c.caps.permitted, 0xa80425fb);
        assert!(c.has_capability(10));
        assert!(!c.has_capability(12));
        assert_eq!(Status::from_text(STATUS.into()).umask(), Some(0o027));
        let no_groups = STATUS.replace("Groups:\t4 24 27 ", "Groups:\t");
        assert_eq!(
            Creds::parse_status(&no_groups).unwrap().groups,
            Vec::<u32>::new()
        );
        assert_eq!(Creds::parse_status("Name:\tx\n"), None);
        let bad = STATUS.replace("CapEff:\t0000000000000400", "CapEff:\tzz");
        assert_eq!(Creds::parse_status(&bad), None);
    }

    /// A thread of this test chroots (its own fs_struct) and sets a cwd and umask; another takes
    /// them on and resolves relative and absolute paths as the first would. Needs root (chroot).
    #[test]
    fn takes_on_a_chrooted_tasks_root_cwd_and_umask() {
        use nix::sys::stat::{Mode, umask};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        std::fs::write(dir.path().join("inner/marker"), "").unwrap();
        let root = dir.path().to_owned();
        let (ready, tid) = std::sync::mpsc::channel();
        let (finish, done) = std::sync::mpsc::channel::<()>();
        let chrooted = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
            nix::unistd::chroot(&root).unwrap();
            nix::unistd::chdir("/inner").unwrap();
            umask(Mode::from_bits_truncate(0o077));
            ready.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = done.recv();
        });
        let tid = tid.recv().unwrap();
        let seen = std::thread::spawn(move || {
            let fs = fs_of_task(tid).unwrap();
            enter_fs(&fs).unwrap();
            let mask = umask(Mode::from_bits_truncate(0o022));
            (
                std::path::Path::new("marker").exists(),
                std::path::Path::new("/inner/marker").exists(),
                mask.bits(),
            )
        })
        .join()
        .unwrap();
        finish.send(()).unwrap();
        chrooted.join().unwrap();
        assert_eq!(seen, (true, true, 0o077));
    }

    /// Acting as nobody and coming back, on one thread. Needs root.
    #[test]
    fn assumes_and_restores_on_one_thread() {
        let done = std::thread::spawn(|| {
            let tid = || nix::unistd::gettid().as_raw() as u32;
            let own = of_task(tid()).unwrap();
            assert_eq!(current().unwrap(), own);
            let nobody = Creds {
                uids: Ids {
                    real: 65534,
                    effective: 65534,
                    saved: 65534,
                },
                gids: Ids {
                    real: 65534,
                    effective: 65534,
                    saved: 65534,
                },
                groups: vec![],
                caps: Caps {
                    inheritable: 0,
                    permitted: 0,
                    effective: 0,
                },
            };
            assume(&nobody, RealUid::Keep).unwrap();
            let acting = of_task(tid()).unwrap();
            restore(&own).unwrap();
            (acting, of_task(tid()).unwrap() == own)
        })
        .join()
        .unwrap();
        let (acting, back) = done;
        assert_eq!(acting.uids.effective, 65534);
        assert_eq!(acting.uids.real, 0, "the real uid is kept");
        assert_eq!(acting.gids.effective, 65534);
        assert_eq!(acting.caps.effective, 0);
        assert!(back, "the thread's own credentials are back");
    }

    #[test]
    fn own_credentials_round_trip() {
        // Assuming one's own credentials changes nothing and needs no privilege.
        let tid = std::thread::spawn(|| {
            let me = of_task(nix::unistd::gettid().as_raw() as u32).unwrap();
            assume(&me, RealUid::Keep).unwrap();
            of_task(nix::unistd::gettid().as_raw() as u32).unwrap() == me
        });
        assert!(tid.join().unwrap());
    }
}
