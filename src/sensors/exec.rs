//! The exec sensor: what a trapped `execve`/`execveat` launches, read from the caller, and the
//! policy's verdict on it.
//!
//! A launch is judged on every name it has: the path as executed (absolute, against the caller's
//! cwd or dirfd), the real path with symlinks resolved inside the caller's root (so `mkdir`
//! matches `/bin/mkdir` where that is a symlink to busybox), and for a `#!` script, its interpreter
//! as well: running a script runs the interpreter, so a denied interpreter is denied behind any
//! script.
//!
//! A deny entry matches any of those names (and the name of every symlink on the way that names
//! the file). An allow entry only matches names the workload could not choose itself (see
//! [`lent_names`]): a symlink made after the command started does not lend its name to its
//! target, and a file created, linked, renamed or changed after the start, or seen through a mount
//! made after it, lends no name at all. And a name that is not the file's own (a link's, or any
//! name of a hard-linked file) counts only for a program started under it (argv[0]): a multi-call
//! program like busybox runs what argv[0] names.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::policy::{Attack, Rule};
use crate::seccomp::{Abi, ExecCall};
use crate::sys::paths::{open_dir_path, open_in_root, open_path};
use crate::sys::procfs::{self, fd_path};
use crate::sys::remote::RemoteMemory;
use crate::sys::seccomp::Notification;

use super::FileId;

/// PATH_MAX (limits.h): the kernel refuses longer exec paths with ENAMETOOLONG.
const PATH_MAX: usize = 4096;
/// How much of a command line an audit carries.
const MAX_ARGS: usize = 256;
const MAX_ARG_LEN: usize = 4096;
/// MAX_ARG_STRLEN (linux/binfmts.h): the longest argument an exec takes, its NUL included;
/// a longer one fails the exec with E2BIG.
const MAX_ARG_STRLEN: usize = 32 * 4096;
/// The most the strings and pointers of argv and envp together may take: 3/4 of _STK_LIM (8 MiB),
/// less when the stack limit is lower (fs/exec.c, bprm_stack_limits), so an argv alone above it
/// fails the exec with E2BIG whatever the limits.
const MAX_ARGV_TOTAL: usize = 8 * 1024 * 1024 / 4 * 3;
/// The kernel reads at most this many bytes of a `#!` line (BINPRM_BUF_SIZE, linux/binfmts.h).
const BINPRM_BUF_SIZE: usize = 256;
/// execveat(2) flag: an empty path means the file `dirfd` refers to (fexecve).
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;

/// One name of a launched program, and the file it named when looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Absolute path as executed (in the caller's view of the file system).
    pub path: PathBuf,
    /// The same, symlinks resolved; `None` if it could not be resolved (the exec will fail, or
    /// a later check catches a file that appears in between).
    pub real: Option<PathBuf>,
    /// The symlinks that name the file itself (met as the last component of what was being
    /// resolved, so the file is what each leads to), in the order met: `/usr/bin/python3` when
    /// `/venv/bin/python` leads to `/usr/bin/python3.11` through it.
    pub links: Vec<PathBuf>,
    /// The file and its ctime, as looked at.
    pub stamp: Option<Stamp>,
    /// The names an allow entry may match, among the above (see [`lent_names`]).
    pub lent: Vec<PathBuf>,
    /// The argv[0] the program starts with: the caller's for a binary, the `#!` line's name for
    /// an interpreter (binfmt_script.c); `None` for the script file itself.
    pub started_as: Option<Vec<u8>>,
    /// The file's own name, if it has only one: the last component of its real path when it has
    /// a single link. A hard-linked file has several names, none its own (busybox installed as
    /// hard links, git's `git-*`).
    pub own_name: Option<std::ffi::OsString>,
}

impl Image {
    /// Every name of the launch: what deny entries are matched against, so that a denied
    /// program stays denied behind any link. That includes the name it is started as: busybox
    /// started through `/bin/true` as `nc` is nc.
    fn names(&self) -> Vec<&str> {
        let mut c = vec![path_str(&self.path)];
        let started_as = self
            .started_as
            .as_deref()
            .and_then(|argv0| std::str::from_utf8(program_name(argv0)).ok())
            .filter(|name| !name.is_empty());
        let names = self.links.iter().chain(&self.real).map(|p| path_str(p));
        for name in names.chain(started_as) {
            if !c.contains(&name) {
                c.push(name);
            }
        }
        c
    }

    /// The names allow entries are matched against: the lent names, except a name that is not
    /// the program's own (`true` for busybox, through a symlink or a hard link) when the program
    /// is started under another name. A multi-call program (busybox, toybox, git) runs what
    /// argv[0] names: started through `/bin/true` as `nc`, busybox is nc, and `true` is not its
    /// name.
    fn lent(&self) -> Vec<&str> {
        self.lent
            .iter()
            .filter(|name| {
                let base = name.file_name();
                (base.is_some() && base == self.own_name.as_deref())
                    || self.started_as.as_ref().is_none_or(|argv0| {
                        base.is_some_and(|b| b.as_bytes() == program_name(argv0))
                    })
            })
            .map(|p| path_str(p))
            .collect()
    }
}

/// What a trapped exec launches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub image: Image,
    /// The `#!` interpreter, when the file is a script.
    pub interpreter: Option<Image>,
    /// For a script: where the kernel puts the script's name in the interpreter's argv (1, or 2
    /// after a `#!` line argument; fs/binfmt_script.c).
    pub script_argv: Option<usize>,
    /// For a script: the `#!` line's argument, if it has one (the kernel passes it as one
    /// argument, whatever blanks it holds).
    pub shebang_arg: Option<Vec<u8>>,
    /// The name the kernel gives the file (`bprm->filename`): the path as passed, or
    /// `/dev/fd/N[/path]` for a path relative to a directory fd (fs/exec.c, alloc_bprm).
    pub filename: Vec<u8>,
}

/// What the exec stop must find for the exec to be the launch decided on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// The file that runs (the interpreter of a script, else the file itself), with the ctime it
    /// had when decided on. The ctime is part of it because the decision rests on it (a file
    /// changed after the start lends no name), and because an inode number alone can be reused:
    /// an allowed file unlinked after the check frees its inode for a new file (ext4 hands it out
    /// again), which has a new ctime.
    pub exe: Option<Stamp>,
    /// For a script: the argv slot and the name the kernel must have put there. The interpreter's
    /// identity alone cannot tell an allowed script from a denied one with the same `#!` line.
    pub script: Option<(usize, Vec<u8>)>,
    /// The argv[0] the program was decided with (see [`program_name`]): the kernel re-reads the
    /// caller's argv after the check, and a multi-call program runs what it names.
    pub started_as: Option<Vec<u8>>,
    /// When custom rules judged the command line: the new program's argv from this index on must
    /// be these arguments, the ones decided on (the kernel re-reads every argument after the
    /// check). A binary's whole argv from 0; for a script, what follows the script's name in its
    /// interpreter's argv, which is the caller's argv[1..] (fs/binfmt_script.c).
    pub args: Option<(usize, Vec<Vec<u8>>)>,
    /// When custom rules judged `proc.interactive`: whether the new program has a controlling
    /// terminal (another thread of the caller may call setsid(2) while the exec waits).
    pub interactive: Option<bool>,
}

impl Launch {
    /// What the exec stop must find; `argv` and `interactive` are the facts custom rules decided
    /// on, when they read them.
    pub fn expected(&self, argv: Option<&[Vec<u8>]>, interactive: Option<bool>) -> Expected {
        let runs = self.interpreter.as_ref().unwrap_or(&self.image);
        let script = self.script_argv.map(|slot| (slot, self.filename.clone()));
        Expected {
            exe: runs.stamp,
            script,
            started_as: runs.started_as.clone(),
            args: argv.map(|argv| new_args(self.script_argv, argv)),
            interactive,
        }
    }
}

/// The arguments of the new program that must be the caller's `argv`, from which index: the
/// whole argv for a binary (an empty one becomes `[""]`: the kernel gives a program started with
/// no arguments an empty argv[0], fs/exec.c), and for a script whose name the kernel puts at
/// `slot`, the arguments after it: argv[1..]. Pure.
fn new_args(script_slot: Option<usize>, argv: &[Vec<u8>]) -> (usize, Vec<Vec<u8>>) {
    match script_slot {
        None if argv.is_empty() => (0, vec![Vec::new()]),
        None => (0, argv.to_vec()),
        Some(slot) => (slot + 1, argv.get(1..).unwrap_or_default().to_vec()),
    }
}

impl Expected {
    /// Whether an exec that runs `exe`, with the new `argv` and terminal (each read only when
    /// needed), is this one.
    pub fn holds(
        &self,
        exe: Option<Stamp>,
        argv: impl FnOnce() -> Option<Vec<Vec<u8>>>,
        interactive: impl FnOnce() -> Option<bool>,
    ) -> bool {
        if exe.is_none() || exe != self.exe {
            return false;
        }
        if self
            .interactive
            .is_some_and(|want| interactive() != Some(want))
        {
            return false;
        }
        if self.script.is_none() && self.started_as.is_none() && self.args.is_none() {
            return true;
        }
        argv().is_some_and(|argv| {
            self.script
                .as_ref()
                .is_none_or(|(slot, name)| argv.get(*slot) == Some(name))
                && self.started_as.as_ref().is_none_or(|want| {
                    argv.first()
                        .is_some_and(|a| program_name(a) == program_name(want))
                })
                && self
                    .args
                    .as_ref()
                    .is_none_or(|(from, args)| argv.get(*from..) == Some(args.as_slice()))
        })
    }
}

/// The name a program is started as: argv[0]'s last component, without the `-` a login shell is
/// started with (login(1); busybox and shells read it that way). Pure.
fn program_name(argv0: &[u8]) -> &[u8] {
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    base.strip_prefix(b"-").unwrap_or(base)
}

/// The verdict on a launch: which name violated, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub attack: Attack,
    /// The path reported as `process`: the launched file, or its interpreter if that violated.
    pub process: PathBuf,
}

/// Judges a launch against the rule's process lists: the script (or binary) first, then its
/// interpreter. Every name is matched against the deny list, and only the names the file lends
/// against the allow list: the names lent are a subset of all names, so a launch that passes the
/// first check violates the second only by not being allowed (no entry matches an empty list of
/// names). Pure.
pub fn judge(launch: &Launch, rule: &Rule) -> Option<Violation> {
    let lists = rule.processes();
    [Some(&launch.image), launch.interpreter.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|image| {
            let named = |attack| Violation {
                attack,
                process: image.path.clone(),
            };
            // Allowed only under a name it does not lend: the audit names the file that would
            // have run, not the link that offered an allowed name.
            let unlent = |attack| Violation {
                attack,
                process: image.real.clone().unwrap_or_else(|| image.path.clone()),
            };
            // The lent names are some of the names, which the deny list has seen already: the
            // second look matters only to an allow list.
            lists.check(&image.names()).map(named).or_else(|| {
                lists
                    .has_allow_list()
                    .then(|| lists.check(&image.lent()).map(unlent))
                    .flatten()
            })
        })
}

/// The moment the command started, on the clock the kernel stamps inodes with, and the mounts
/// that existed then: what tells a name the image gave from one the workload made (see
/// [`lent_names`]).
pub struct StartMark {
    ctime: (i64, i64),
    mounts: Mounts,
}

impl StartMark {
    /// Takes the mark. The supervisor takes it before it forks the command, so everything the
    /// command does comes after it.
    ///
    /// The time is the ctime of a file changed here and now (a memfd), not a clock reading:
    /// inode timestamps come from the kernel's coarse clock (current_time(), fs/inode.c), which
    /// lags a clock_gettime(CLOCK_REALTIME) reading by up to a tick, so a link made in the first
    /// milliseconds could look older than such a mark. Any inode stamped later gets a time at
    /// least this one (the coarse clock, and the multigrain floor it is raised to, never go back
    /// unless the clock is set back).
    ///
    /// The memfd is looked at (fstat) before it is changed (fchmod): on a file system with
    /// multigrain timestamps (tmpfs, since 6.13), a change after a look gets a fine-grained ctime
    /// and raises the floor of every later coarse one to it (inode_set_ctime_current()), so files
    /// made before the start, even in the same tick, stay older than the mark. Elsewhere the mark
    /// is the tick's, and what was made in the tick before the start counts as new.
    pub fn take() -> io::Result<StartMark> {
        let fd = nix::sys::memfd::memfd_create(
            c"defender-start",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )?;
        nix::sys::stat::fstat(&fd)?;
        nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::S_IRUSR)?;
        let st = nix::sys::stat::fstat(&fd)?;
        Ok(StartMark {
            ctime: (st.st_ctime, st.st_ctime_nsec),
            mounts: Mounts::take()?,
        })
    }

    /// Whether an inode whose ctime is `ctime` was made or changed at or after the mark. A ctime
    /// with no fraction of a second comes from a file system that keeps whole seconds (its
    /// timestamps are truncated, timestamp_truncate()); it is compared by the second, so that a
    /// link made in the same second as the start still counts as new. Pure.
    fn is_new(&self, ctime: (i64, i64)) -> bool {
        match ctime.1 {
            0 => ctime.0 >= self.ctime.0,
            _ => ctime >= self.ctime,
        }
    }
}

/// The mounts of the supervisor's mount namespace at the start (by mount id, with what each
/// mounts where), and a watch on the mount table. Mount ids are reused once freed (an IDA), so
/// after any change to the table an id is trusted only if it still mounts the same thing at the
/// same place.
struct Mounts {
    at_start: HashMap<u64, String>,
    /// /proc/self/mountinfo, open since the start: poll(2) reports POLLPRI once the mount table
    /// of the namespace changed (proc_mounts(5), mounts_poll()).
    table: std::fs::File,
    changed: bool,
}

impl Mounts {
    fn take() -> io::Result<Mounts> {
        let mut table = procfs::open_mountinfo()?;
        let mut text = String::new();
        table.read_to_string(&mut text)?;
        Ok(Mounts {
            at_start: parse_mountinfo(&text),
            table,
            changed: false,
        })
    }

    /// Whether the file `fd` refers to is seen through a mount that did not exist at the start.
    /// Fails closed: anything unreadable counts as a new mount.
    fn is_new(&mut self, fd: &impl AsRawFd) -> bool {
        let id = procfs::fdinfo(fd).ok().and_then(|info| parse_mnt_id(&info));
        let Some((id, then)) = id.and_then(|id| self.at_start.get(&id).map(|m| (id, m))) else {
            return true;
        };
        if !self.changed {
            let mut fds = [nix::poll::PollFd::new(
                self.table.as_fd(),
                nix::poll::PollFlags::POLLPRI,
            )];
            // The event is reported once per change, so it is remembered for good.
            self.changed = !matches!(
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
                Ok(0)
            );
        }
        self.changed
            && procfs::mountinfo()
                .map(|now| parse_mountinfo(&now).get(&id) != Some(then))
                .unwrap_or(true)
    }
}

/// Mount id -> "major:minor root mount-point" of each line of /proc/PID/mountinfo
/// (proc_pid_mountinfo(5)). Pure.
fn parse_mountinfo(text: &str) -> HashMap<u64, String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let id = fields.next()?.parse().ok()?;
            let _parent = fields.next()?;
            let what = [fields.next()?, fields.next()?, fields.next()?].join(" ");
            Some((id, what))
        })
        .collect()
}

/// The `mnt_id` of /proc/PID/fdinfo/N. Pure.
fn parse_mnt_id(fdinfo: &str) -> Option<u64> {
    procfs::parsed(fdinfo, "mnt_id")
}

/// Resolves launches, remembering each resolved path while the file it names is unchanged: most
/// containers launch the same few programs over and over, and a hit costs one stat(2) instead of
/// opening, resolving and reading the file.
///
/// A hit requires the same device, inode and ctime (any write, chmod, link or rename of the file
/// changes its ctime; a retargeted symlink names another inode). What a stale entry could still get
/// wrong (a symlink chain changed to reach the same inode under another name) is caught where it
/// matters: the exec stop compares the running file with the one decided on (exec_watch.rs).
/// The names an entry lends were decided for that path and that very inode (same ctime, so
/// still as old or new as it was): a chain remade since, or a mount made since, that leads the
/// same path to the same file gains nothing the image's own chain did not give.
pub struct Resolver {
    mark: StartMark,
    cache: HashMap<PathBuf, Cached>,
    /// Set once any process of the container has called chroot(2). Until then every caller shares
    /// our root (it inherited it from us), and looking it up in /proc, the costliest step of a
    /// resolution (~12 µs for a fresh PID), is skipped.
    roots_may_differ: bool,
}

struct Cached {
    stamp: Stamp,
    links: Vec<PathBuf>,
    real: Option<PathBuf>,
    lent: Vec<PathBuf>,
    own_name: Option<std::ffi::OsString>,
}

/// A file as it was looked at: which file, and its ctime (any write, chmod, link or rename of the
/// file changes it). What must be unchanged for a cached resolution, or an exec, to be the one
/// decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub id: FileId,
    pub ctime: (i64, i64),
}

impl Stamp {
    fn of(st: &nix::sys::stat::FileStat) -> Stamp {
        Stamp {
            id: FileId::from(st),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// The file `path` names now, symlinks followed (for `/proc/PID/exe`, the running image).
    pub fn at(path: &Path) -> io::Result<Stamp> {
        Ok(Stamp::from(&std::fs::metadata(path)?))
    }
}

impl From<&std::fs::Metadata> for Stamp {
    fn from(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            id: FileId::from(m),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Bound on remembered paths; the cache starts over when it is full.
const CACHE_MAX: usize = 4096;

impl Resolver {
    pub fn new(mark: StartMark) -> Resolver {
        Resolver {
            mark,
            cache: HashMap::new(),
            roots_may_differ: false,
        }
    }

    /// Some process is about to change its root: look each caller's root up from now on (the
    /// cache keeps serving callers that still share ours; chrooted ones bypass it).
    pub fn note_chroot(&mut self) {
        self.roots_may_differ = true;
    }

    /// Reads the launch from the caller: its path argument, resolved against its cwd (or dirfd)
    /// and root. Errors are the errno the exec is failed with: the kernel would have failed it the
    /// same way (EFAULT for an unreadable path, ENAMETOOLONG, ENOENT), and anything unreadable is
    /// denied, never waved through. `argv`: the whole argv when it was read already (custom
    /// rules read it), whose argv[0] is then the launch's: one read, so that the name a program
    /// is started as and the command line decided on cannot come from two different moments.
    pub fn read_launch(
        &mut self,
        n: &Notification,
        abi: Abi,
        call: ExecCall,
        mem: &mut RemoteMemory,
        argv: Option<&[Vec<u8>]>,
    ) -> io::Result<Launch> {
        let (dirfd, path_ptr, flags) = match call {
            ExecCall::Execve => (libc::AT_FDCWD, n.args[0], 0),
            ExecCall::Execveat => (n.args[0] as i32, n.args[1], n.args[4]),
        };
        let raw = mem.read_cstr(path_ptr, PATH_MAX)?;
        let argv0 = match argv {
            Some(argv) => argv.first().cloned().unwrap_or_default(),
            None => read_argv0(n, abi, call, mem)?,
        };
        // Built only for a path relative to a directory fd (or the fd itself): a format is an
        // allocation, and most launches name an absolute path or one relative to the cwd.
        let caller_fd = || procfs::task_entry(n.pid, &format!("fd/{dirfd}"));
        let root = if self.roots_may_differ {
            procfs::root(n.pid)?
        } else {
            PathBuf::from("/")
        };
        let path = Path::new(OsStr::from_bytes(&raw));
        let filename = kernel_filename(dirfd, &raw);
        if raw.is_empty() {
            if flags & AT_EMPTY_PATH == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            // fexecve(3) / execveat(fd, "", AT_EMPTY_PATH): the file is the fd itself, which may
            // have no name at all (a memfd); open it through the caller's fd table.
            // Its name is the file's own (as the real path), whatever link the fd was opened by.
            let caller_fd = caller_fd();
            let name = strip_root(&root, &std::fs::read_link(&caller_fd)?);
            let fd = open_path(&caller_fd)?;
            return Ok(launch_of(
                &root,
                n.pid,
                (name, fd, None),
                (filename, argv0),
                &mut self.mark,
            ));
        }
        let base = if path.is_absolute() {
            PathBuf::from("/")
        } else if dirfd == libc::AT_FDCWD {
            strip_root(&root, &procfs::cwd(n.pid)?)
        } else {
            strip_root(&root, &std::fs::read_link(caller_fd())?)
        };
        // Resolution follows the kernel (`..` after a symlink climbs from its target); only the
        // name offered to the policy is cleaned up lexically, and a path with `..` gets none:
        // `/app/bin/link/../nmap` must not pass for `/app/bin/nmap`.
        let joined = base.join(path);
        let name = lexical_name(&joined);
        let named = |mut launch: Launch| {
            if name.is_none() {
                let image = &mut launch.image;
                // Nor does it lend itself to an allow list.
                image.lent.retain(|p| p != &image.path);
                image.path = image.real.clone().unwrap_or_else(|| joined.clone());
            }
            launch
        };
        let shown = name.clone().unwrap_or_else(|| joined.clone());
        if root != Path::new("/") {
            // A chrooted caller: resolve inside its root every time (no cache: paths are its own).
            let (fd, walk) = open_as(n.pid, &root, &joined, &self.mark).map_err(exec_errno)?;
            return Ok(named(launch_of(
                &root,
                n.pid,
                (shown, fd, Some(walk)),
                (filename, argv0),
                &mut self.mark,
            )));
        }
        if let Some(c) = self.cache.get(&joined) {
            // The stamp is taken in our own view; cached paths lead through no /proc link, so
            // our view is the caller's.
            let stamp =
                Stamp::of(&nix::sys::stat::stat(&joined).map_err(|e| exec_errno(e.into()))?);
            if c.stamp == stamp {
                // The same path to the same file: the same names, lent or not.
                let image = Image {
                    path: shown,
                    links: c.links.clone(),
                    real: c.real.clone(),
                    stamp: Some(stamp),
                    lent: c.lent.clone(),
                    started_as: Some(argv0),
                    own_name: c.own_name.clone(),
                };
                return Ok(named(Launch {
                    image,
                    interpreter: None,
                    script_argv: None,
                    shebang_arg: None,
                    filename,
                }));
            }
        }
        let (fd, walk) = open_as(n.pid, &root, &joined, &self.mark).map_err(exec_errno)?;
        let via_proc = walk.via_proc;
        let stamp = Stamp::of(&nix::sys::stat::fstat(&fd).map_err(io::Error::from)?);
        let launch = named(launch_of(
            &root,
            n.pid,
            (shown, fd, Some(walk)),
            (filename, argv0),
            &mut self.mark,
        ));
        // Not remembered: a path through /proc (or /dev/fd) names another file for every caller,
        // and a script's interpreter can change while the script does not.
        if via_proc || launch.interpreter.is_some() {
            return Ok(launch);
        }
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(
            joined,
            Cached {
                stamp,
                links: launch.image.links.clone(),
                real: launch.image.real.clone(),
                lent: launch.image.lent.clone(),
                own_name: launch.image.own_name.clone(),
            },
        );
        Ok(launch)
    }
}

/// A path that names nothing fails the exec with the kernel's own error: nothing runs, nothing is
/// audited, and no CONTINUE is needed (a file created just after is a new exec). Other errors
/// (say EACCES on a directory only the caller may search) deny with EPERM.
fn exec_errno(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code @ (libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG)) => {
            io::Error::from_raw_os_error(code)
        }
        _ => io::Error::from_raw_os_error(libc::EPERM),
    }
}

/// The file a path names for the caller, opened as the kernel resolves it (inside the caller's
/// root), and the walk over its symlinks that says whether the path may lend its name.
fn open_as(pid: u32, root: &Path, path: &Path, mark: &StartMark) -> io::Result<(OwnedFd, Walk)> {
    if root == Path::new("/") {
        let walk = resolve_as(pid, root, path, mark)?;
        return Ok((open_path(&walk.path)?, walk));
    }
    // The kernel resolves inside the root (RESOLVE_IN_ROOT); the walk only looks at the links on
    // the way, and if it fails the path lends nothing.
    let fd = open_in_root(&open_dir_path(root)?, path)?;
    let walk = resolve_as(pid, root, path, mark).unwrap_or(Walk {
        path: PathBuf::new(),
        via_proc: true,
        new_link: true,
        links: Vec::new(),
        lent_from: 0,
    });
    Ok((fd, walk))
}

/// The launch of the file `fd` refers to, named `path` (reached by `walk`, if it was walked), with
/// its `#!` interpreter if any; `filename` is the kernel's name for it, `argv0` the caller's.
fn launch_of(
    root: &Path,
    pid: u32,
    (path, fd, walk): (PathBuf, OwnedFd, Option<Walk>),
    (filename, argv0): (Vec<u8>, Vec<u8>),
    mark: &mut StartMark,
) -> Launch {
    let (mut image, shebang) = inspect(root, path, Some(fd), walk.as_ref(), mark);
    let script_argv = shebang
        .as_ref()
        .map(|s| if s.arg.is_some() { 2 } else { 1 });
    let shebang_arg = shebang.as_ref().and_then(|s| s.arg.clone());
    if shebang.is_none() {
        image.started_as = Some(argv0);
    }
    let interpreter = shebang.map(|mut s| {
        // The kernel starts the interpreter as the `#!` line names it (binfmt_script.c).
        let started_as = s.interpreter.as_os_str().as_bytes().to_vec();
        if s.interpreter.is_relative() {
            // The kernel opens a relative interpreter from the caller's cwd (binfmt_script.c).
            let cwd = procfs::cwd(pid).map(|c| strip_root(root, &c));
            s.interpreter = cwd.unwrap_or_default().join(&s.interpreter);
        }
        let (file, walk) = match open_as(pid, root, &s.interpreter, mark) {
            Ok((fd, walk)) => (Some(fd), Some(walk)),
            Err(_) => (None, None),
        };
        let mut interpreter = inspect(root, s.interpreter, file, walk.as_ref(), mark).0;
        interpreter.started_as = Some(started_as);
        interpreter
    });
    Launch {
        image,
        interpreter,
        script_argv,
        shebang_arg,
        filename,
    }
}

/// The name the kernel gives an exec'd file (fs/exec.c, alloc_bprm), which a script's interpreter
/// receives in its argv.
fn kernel_filename(dirfd: i32, raw: &[u8]) -> Vec<u8> {
    if dirfd == libc::AT_FDCWD || raw.first() == Some(&b'/') {
        raw.to_vec()
    } else if raw.is_empty() {
        format!("/dev/fd/{dirfd}").into_bytes()
    } else {
        [format!("/dev/fd/{dirfd}/").as_bytes(), raw].concat()
    }
}

/// The process a thread belongs to (`Tgid` in /proc/TID/status): notifications name the calling
/// thread, audits the process. Falls back to the thread id if the thread is gone.
pub fn process_of(tid: u32) -> u32 {
    procfs::tgid(tid).unwrap_or(tid)
}

/// Where the caller's argv is (a pointer into its memory).
fn argv_at(n: &Notification, call: ExecCall) -> u64 {
    match call {
        ExecCall::Execve => n.args[1],
        ExecCall::Execveat => n.args[2],
    }
}

/// Reads the exec's path and the start of its argv from the caller in one call, for the reads of
/// the launch that follow ([`RemoteMemory::read_ahead`]): where argv[0] lies next to the path (a
/// shell passes the same string for both), the launch costs one read of the caller's memory
/// instead of three.
pub fn read_ahead(n: &Notification, abi: Abi, call: ExecCall, mem: &mut RemoteMemory) {
    let path = match call {
        ExecCall::Execve => n.args[0],
        ExecCall::Execveat => n.args[1],
    };
    mem.read_ahead((path, PATH_MAX), (argv_at(n, call), abi.ptr_width()));
}

/// The caller's argv[0]. An empty (or NULL) argv gives an empty name, as the kernel then starts the
/// program with an empty argv[0] (fs/exec.c, do_execveat_common); so does one too long to read
/// (it matches no name).
fn read_argv0(
    n: &Notification,
    abi: Abi,
    call: ExecCall,
    mem: &mut RemoteMemory,
) -> io::Result<Vec<u8>> {
    let argv_ptr = argv_at(n, call);
    let (ptrs, _) = mem.read_ptr_array(argv_ptr, abi.ptr_width(), 1)?;
    match ptrs.first() {
        None => Ok(Vec::new()),
        Some(&p) => match mem.read_cstr(p, MAX_ARG_LEN) {
            Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => Ok(Vec::new()),
            read => read,
        },
    }
}

/// Reads the caller's whole argv, for custom rules on the command line: never cut short, since a
/// rule on " -l" must not be bypassed with many arguments. Up to the kernel's own limits: an
/// argument longer than MAX_ARG_STRLEN, or an argv larger than MAX_ARGV_TOTAL, would fail the
/// exec with E2BIG, and that is the error; an unreadable pointer or string is EFAULT, the kernel's.
pub fn read_argv(
    n: &Notification,
    abi: Abi,
    call: ExecCall,
    mem: &mut RemoteMemory,
) -> io::Result<Vec<Vec<u8>>> {
    let argv_ptr = argv_at(n, call);
    let width = abi.ptr_width();
    let (ptrs, truncated) = mem.read_ptr_array(argv_ptr, width, MAX_ARGV_TOTAL / width)?;
    let e2big = || io::Error::from_raw_os_error(libc::E2BIG);
    if truncated {
        return Err(e2big());
    }
    let mut total = ptrs.len() * width;
    let mut argv = Vec::with_capacity(ptrs.len());
    for p in ptrs {
        let arg = mem
            .read_cstr(p, MAX_ARG_STRLEN)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENAMETOOLONG) => e2big(),
                _ => e,
            })?;
        total += arg.len() + 1;
        if total > MAX_ARGV_TOTAL {
            return Err(e2big());
        }
        argv.push(arg);
    }
    Ok(argv)
}

/// The command line an audit shows, from the whole argv: as [`read_cmdline`] caps it. Pure.
pub fn shown_cmdline(argv: &[Vec<u8>]) -> String {
    let mut args: Vec<String> = argv
        .iter()
        .take(MAX_ARGS)
        .map(|a| match a.len() < MAX_ARG_LEN {
            true => String::from_utf8_lossy(a).into_owned(),
            false => "…".to_string(),
        })
        .collect();
    if argv.len() > MAX_ARGS {
        args.push("…".to_string());
    }
    args.join(" ")
}

/// Reads argv for the audit's command line, capped, arguments joined by spaces.
pub fn read_cmdline(
    n: &Notification,
    abi: Abi,
    call: ExecCall,
    mem: &mut RemoteMemory,
) -> io::Result<String> {
    let argv_ptr = argv_at(n, call);
    let (ptrs, truncated) = mem.read_ptr_array(argv_ptr, abi.ptr_width(), MAX_ARGS)?;
    let mut args = Vec::with_capacity(ptrs.len());
    for p in ptrs {
        let arg = match mem.read_cstr(p, MAX_ARG_LEN) {
            Ok(a) => String::from_utf8_lossy(&a).into_owned(),
            Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => "…".to_string(),
            Err(e) => return Err(e),
        };
        args.push(arg);
    }
    if truncated {
        args.push("…".to_string());
    }
    Ok(args.join(" "))
}

/// Resolves the symlinks of `path` (absolute, normalized) the way the kernel would for the caller
/// `pid`, which our own resolution gets wrong in one place: `/proc/self` and `/proc/thread-self`
/// (and `/dev/fd`, a symlink to `/proc/self/fd`) name the process that resolves them. So the walk
/// follows symlinks itself and maps those to `/proc/PID`; from a `/proc/PID` directory on, the
/// kernel's own resolution is right for anyone (its magic links, like `fd/N`, name the caller's
/// files). Walking the links itself, it also sees each one's ctime.
///
/// `root` is the caller's root in our view: the walk stays inside it (`..` stops at it, an
/// absolute target starts from it) and its result reads as the caller sees it.
fn resolve_as(pid: u32, root: &Path, path: &Path, mark: &StartMark) -> io::Result<Walk> {
    /// MAXSYMLINKS (namei.c): the kernel gives up with ELOOP after 40 links.
    const MAX_HOPS: usize = 40;
    let ours = |p: &Path| match p.strip_prefix("/") {
        Ok(rest) if root != Path::new("/") => root.join(rest),
        _ => p.to_path_buf(),
    };
    let mut out = PathBuf::from("/");
    let mut rest = components(path);
    let (mut hops, mut via_proc, mut new_link) = (0, false, false);
    let (mut links, mut lent_from) = (Vec::new(), 0);
    while let Some(name) = rest.pop() {
        if name == ".." {
            out.pop();
            continue;
        }
        if out == Path::new("/proc") && (name == "self" || name == "thread-self") {
            out = match name.to_str() {
                Some("self") => PathBuf::from(format!("/proc/{pid}")),
                _ => PathBuf::from(format!("/proc/{pid}/task/{pid}")),
            };
            via_proc = true;
            continue;
        }
        out.push(&name);
        via_proc |= out.starts_with("/proc");
        let meta = std::fs::symlink_metadata(ours(&out))?;
        if !meta.file_type().is_symlink() {
            continue;
        }
        if rest.is_empty() {
            links.push(out.clone());
        }
        if mark.is_new((meta.ctime(), meta.ctime_nsec())) {
            // Names met up to here lead to the file through a new link.
            new_link = true;
            lent_from = links.len();
        }
        if out.starts_with("/proc")
            && out.components().nth(2).is_some_and(|c| {
                c.as_os_str()
                    .to_str()
                    .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
            })
        {
            // A magic link of /proc/PID (fd/N, exe, cwd, root): the kernel resolves it for the
            // process it belongs to, as it would for the caller.
            out.extend(rest.into_iter().rev());
            return Ok(Walk {
                path: out,
                via_proc: true,
                new_link,
                links,
                lent_from,
            });
        }
        hops += 1;
        if hops > MAX_HOPS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = std::fs::read_link(ours(&out))?;
        out.pop();
        if target.is_absolute() {
            out = PathBuf::from("/");
        }
        rest.extend(components(&target));
    }
    Ok(Walk {
        path: out,
        via_proc,
        new_link,
        links,
        lent_from,
    })
}

/// Where [`resolve_as`] led.
#[derive(Debug, PartialEq, Eq)]
struct Walk {
    /// The path with its symlinks resolved, in the caller's view (up to a magic link of
    /// `/proc/PID`, which the kernel resolves).
    path: PathBuf,
    /// Whether it leads into `/proc`.
    via_proc: bool,
    /// Whether a symlink on the way was made, moved or relinked at or after the start mark.
    new_link: bool,
    /// The symlinks met as the last component (each names the file the walk ends at), in order.
    links: Vec<PathBuf>,
    /// `links[lent_from..]` lead to the file through old links only.
    lent_from: usize,
}

/// The names of `path`, last first (a stack to pop), `..` kept as a name.
fn components(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Looks at the file a launch names through an fd opened on it (so path tricks cannot swap it
/// between the looks): its real path, identity, the names it lends, and `#!` interpreter if it
/// is a script. `walk` is how the path led to it; none means the path is the file's own name (an
/// fd's).
fn inspect(
    root: &Path,
    path: PathBuf,
    file: Option<OwnedFd>,
    walk: Option<&Walk>,
    mark: &mut StartMark,
) -> (Image, Option<Shebang>) {
    let Some(fd) = file else {
        return (
            Image {
                path,
                links: Vec::new(),
                real: None,
                stamp: None,
                lent: Vec::new(),
                started_as: None,
                own_name: None,
            },
            None,
        );
    };
    let via = procfs::fd_link(&fd);
    let new_mount = mark.mounts.is_new(&fd);
    let file = std::fs::File::from(fd);
    let meta = file.metadata().ok();
    let stamp = meta.as_ref().map(Stamp::from);
    let real = fd_path(&file).ok().map(|p| strip_root(root, &p));
    let old_file = stamp.is_some_and(|s| !new_mount && !mark.is_new(s.ctime));
    let lent = lent_names(old_file, &path, walk, real.as_ref());
    let own_name = real
        .as_ref()
        .filter(|_| meta.as_ref().is_some_and(|m| m.nlink() == 1))
        .and_then(|r| r.file_name())
        .map(OsStr::to_os_string);
    // Reopening an O_PATH fd through /proc gives a readable fd on the very same file. Only a
    // regular file is read, and without blocking: opening a FIFO would hang the supervisor.
    let mut head = [0u8; BINPRM_BUF_SIZE];
    let interpreter = meta
        .filter(|m| m.is_file())
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&via)
                .ok()
        })
        .and_then(|mut f| f.read(&mut head).ok())
        .and_then(|n| parse_shebang(&head[..n]));
    (
        Image {
            path,
            links: walk.map(|w| w.links.clone()).unwrap_or_default(),
            real,
            stamp,
            lent,
            started_as: None,
            own_name,
        },
        interpreter,
    )
}

/// The names of a launch that lend themselves to an allow list: those the image (or whoever
/// prepared the container before the command started) gave this file. Deny entries see every name
/// whatever this says. Pure.
///
/// The workload can make new names but not old ones: every way of giving a file a name
/// (symlink(2), link(2), rename(2)) and every change to it (chmod, chown, a write) sets the
/// inode's ctime to the current time, and no call sets it back (utimensat(2) sets atime and mtime
/// only; setting the clock needs CAP_SYS_TIME). So, against the start mark:
/// - a file (`old_file` false) created, hard-linked, renamed or changed after the start, or seen
///   through a mount made after it, lends no name at all: a new name for an old program, a copy
///   (a list of names cannot tell a renamed copy from a genuine program), or a bind mount over an
///   allowed path (whose real path is the allowed one);
/// - otherwise the real path lends, and so does each symlink naming the file that leads to it
///   through old links only; the path as executed lends if no link on the way is new. A symlink
///   made after the start does not lend its name to its target, whether it is the last component
///   or a directory on the way.
///
/// The walk's links count only if it reached the very path the file was opened at: a chain
/// swapped between the walk and the open lends the real path only.
fn lent_names(
    old_file: bool,
    path: &Path,
    walk: Option<&Walk>,
    real: Option<&PathBuf>,
) -> Vec<PathBuf> {
    let Some(real) = real.filter(|_| old_file) else {
        return Vec::new();
    };
    let mut lent = vec![real.clone()];
    let mut lend = |name: &Path| {
        if !lent.iter().any(|l| l == name) {
            lent.push(name.to_path_buf());
        }
    };
    match walk {
        None => lend(path),
        Some(w) if &w.path == real => {
            w.links[w.lent_from..].iter().for_each(|l| lend(l));
            if !w.new_link {
                lend(path);
            }
        }
        Some(_) => {}
    }
    lent
}

/// A `#!` line: the interpreter, and the argument that follows it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shebang {
    interpreter: PathBuf,
    arg: Option<Vec<u8>>,
}

/// The `#!` line of a script, or `None` for anything else. Follows the kernel's reading
/// (fs/binfmt_script.c): leading blanks skipped, the name ends at a blank or newline, and the rest
/// of the line, trimmed of blanks on both ends, is one optional argument.
fn parse_shebang(head: &[u8]) -> Option<Shebang> {
    let rest = head.strip_prefix(b"#!")?;
    let line = &rest[..rest
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .unwrap_or(rest.len())];
    let line = &line[line.iter().position(|&b| b != b' ' && b != b'\t')?..];
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let rest = &line[end..];
    let arg = rest.iter().position(|b| !blank(b)).map(|from| {
        let to = rest.iter().rposition(|b| !blank(b)).map_or(from, |i| i + 1);
        rest[from..to].to_vec()
    });
    Some(Shebang {
        interpreter: PathBuf::from(OsStr::from_bytes(&line[..end])),
        arg,
    })
}

/// `/proc/PID/cwd` and friends name paths in the supervisor's view; strip the caller's root so
/// the path reads as the caller sees it (identity when both share `/`).
fn strip_root(root: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix(root) {
        Ok(rest) if root != Path::new("/") => Path::new("/").join(rest),
        _ => p.to_path_buf(),
    }
}

/// The name an absolute path offers to the policy: `.` and empty components dropped; `None` when it
/// has a `..`, whose meaning depends on symlinks (the real path is judged then).
fn lexical_name(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => return None,
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

fn path_str(p: &Path) -> &str {
    // Non-UTF-8 names cannot match a (UTF-8) policy glob by text; `to_str` failing gives "",
    // which matches no name entry but still counts as "not allowed" under an allow list.
    p.to_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines() {
        // (head of the file, interpreter and the `#!` argument)
        type Case<'a> = (&'a [u8], Option<(&'a str, Option<&'a str>)>);
        let cases: &[Case] = &[
            (b"#!/bin/sh\necho hi\n", Some(("/bin/sh", None))),
            (
                b"#! /usr/bin/env python3\n",
                Some(("/usr/bin/env", Some("python3"))),
            ),
            (b"#!\t/bin/bash -e \n", Some(("/bin/bash", Some("-e")))),
            (
                b"#!/usr/bin/env -S a  b\t\n",
                Some(("/usr/bin/env", Some("-S a  b"))),
            ),
            (b"#!/bin/sh  \t\n", Some(("/bin/sh", None))),
            (b"#!/bin/sh", Some(("/bin/sh", None))),
            (b"#!\n", None),
            (b"\x7fELF\x02\x01", None),
            (b"", None),
        ];
        for (head, want) in cases {
            let got = parse_shebang(head).map(|s| (s.interpreter, s.arg));
            assert_eq!(
                got,
                want.map(|(p, a)| (PathBuf::from(p), a.map(|a| a.as_bytes().to_vec()))),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn threads_belong_to_their_process() {
        let me = std::process::id();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            done_rx.recv().unwrap();
        });
        let live = rx.recv().unwrap();
        assert_ne!(live, me);
        assert_eq!(process_of(live), me);
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn kernel_filenames() {
        assert_eq!(kernel_filename(libc::AT_FDCWD, b"./x.sh"), b"./x.sh");
        assert_eq!(kernel_filename(5, b"/abs/x.sh"), b"/abs/x.sh");
        assert_eq!(kernel_filename(5, b""), b"/dev/fd/5");
        assert_eq!(kernel_filename(5, b"x.sh"), b"/dev/fd/5/x.sh");
    }

    #[test]
    fn expected_exec() {
        let stamped = |ino, ctime| {
            Some(Stamp {
                id: FileId { dev: 1, ino },
                ctime: (ctime, 0),
            })
        };
        let id = |ino| stamped(ino, 100);
        let image = |ino, started_as: Option<&str>| Image {
            path: "/x".into(),
            links: Vec::new(),
            real: None,
            stamp: id(ino),
            lent: Vec::new(),
            started_as: started_as.map(|a| a.as_bytes().to_vec()),
            own_name: None,
        };
        let binary = Launch {
            image: image(10, Some("./true")),
            interpreter: None,
            script_argv: None,
            shebang_arg: None,
            filename: b"/x".to_vec(),
        };
        let script = Launch {
            image: image(10, None),
            interpreter: Some(image(20, Some("/bin/sh"))),
            script_argv: Some(1),
            shebang_arg: None,
            filename: b"./s".to_vec(),
        };
        let argv = |v: &[&str]| Some(v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>());
        let cases = [
            (
                "the binary decided on",
                &binary,
                id(10),
                argv(&["./true"]),
                true,
            ),
            (
                "the same name, another way",
                &binary,
                id(10),
                argv(&["/bin/true", "x"]),
                true,
            ),
            (
                "started under another name (a multi-call binary runs that)",
                &binary,
                id(10),
                argv(&["nc"]),
                false,
            ),
            ("no argv[0]", &binary, id(10), argv(&[]), false),
            ("another binary", &binary, id(11), argv(&["./true"]), false),
            (
                "a new file with a reused inode number",
                &binary,
                stamped(10, 200),
                argv(&["./true"]),
                false,
            ),
            (
                "a script instead of a binary (runs its interpreter)",
                &binary,
                id(20),
                argv(&["/bin/sh", "/x"]),
                false,
            ),
            ("unknown exe", &binary, None, argv(&[]), false),
            (
                "the script decided on",
                &script,
                id(20),
                argv(&["/bin/sh", "./s", "a"]),
                true,
            ),
            (
                "another script, same interpreter",
                &script,
                id(20),
                argv(&["/bin/sh", "./evil"]),
                false,
            ),
            (
                "another script, the same interpreter file under another name",
                &script,
                id(20),
                argv(&["/bin/nc", "./s"]),
                false,
            ),
            (
                "the script's file run directly",
                &script,
                id(10),
                argv(&["/bin/sh", "./s"]),
                false,
            ),
            ("argv unreadable", &script, id(20), None, false),
        ];
        for (what, launch, exe, argv, want) in cases {
            assert_eq!(
                launch
                    .expected(None, None)
                    .holds(exe, || argv.clone(), || None),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn expected_exec_with_custom_facts() {
        let image = |ino, started_as: Option<&str>| Image {
            path: "/x".into(),
            links: Vec::new(),
            real: None,
            stamp: Some(Stamp {
                id: FileId { dev: 1, ino },
                ctime: (100, 0),
            }),
            lent: Vec::new(),
            started_as: started_as.map(|a| a.as_bytes().to_vec()),
            own_name: None,
        };
        let binary = Launch {
            image: image(10, Some("nc")),
            interpreter: None,
            script_argv: None,
            shebang_arg: None,
            filename: b"/x".to_vec(),
        };
        let script = Launch {
            image: image(10, None),
            interpreter: Some(image(20, Some("/usr/bin/env"))),
            script_argv: Some(2),
            shebang_arg: Some(b"sh".to_vec()),
            filename: b"./s".to_vec(),
        };
        let v = |v: &[&str]| v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        let exe = |launch: &Launch| launch.interpreter.as_ref().unwrap_or(&launch.image).stamp;
        // (what, launch, argv decided on, interactive decided on, argv found, terminal found, holds)
        type Case<'a> = (
            &'a str,
            &'a Launch,
            &'a [&'a str],
            Option<bool>,
            &'a [&'a str],
            Option<bool>,
            bool,
        );
        let cases: &[Case] = &[
            (
                "the same argv",
                &binary,
                &["nc", "-z", "h"],
                None,
                &["nc", "-z", "h"],
                None,
                true,
            ),
            (
                "an argument swapped",
                &binary,
                &["nc", "-z", "h"],
                None,
                &["nc", "-l", "h"],
                None,
                false,
            ),
            (
                "an argument added",
                &binary,
                &["nc", "-z"],
                None,
                &["nc", "-z", "-l"],
                None,
                false,
            ),
            (
                "an argument dropped",
                &binary,
                &["nc", "-z", "-l"],
                None,
                &["nc", "-z"],
                None,
                false,
            ),
            (
                "no arguments, started as nc",
                &binary,
                &[],
                None,
                &[""],
                None,
                false,
            ),
            (
                "the script's arguments",
                &script,
                &["s", "a"],
                None,
                &["/usr/bin/env", "sh", "./s", "a"],
                None,
                true,
            ),
            (
                "the script's arguments swapped",
                &script,
                &["s", "a"],
                None,
                &["/usr/bin/env", "sh", "./s", "b"],
                None,
                false,
            ),
            (
                "the script with none",
                &script,
                &[],
                None,
                &["/usr/bin/env", "sh", "./s"],
                None,
                true,
            ),
            (
                "no terminal, as decided",
                &binary,
                &["nc"],
                Some(false),
                &["nc"],
                Some(false),
                true,
            ),
            (
                "a terminal gained",
                &binary,
                &["nc"],
                Some(false),
                &["nc"],
                Some(true),
                false,
            ),
            (
                "a terminal lost (setsid)",
                &binary,
                &["nc"],
                Some(true),
                &["nc"],
                Some(false),
                false,
            ),
            (
                "the terminal unreadable",
                &binary,
                &["nc"],
                Some(true),
                &["nc"],
                None,
                false,
            ),
        ];
        for (what, launch, decided, tty, found, tty_found, want) in cases {
            let expected = launch.expected(Some(&v(decided)), *tty);
            let holds = expected.holds(exe(launch), || Some(v(found)), || *tty_found);
            assert_eq!(holds, *want, "{what}");
        }
        // An empty argv at the check (argv[0] read as ""): the kernel starts the binary with [""].
        let no_args = Launch {
            image: image(10, Some("")),
            ..binary.clone()
        };
        let empty = no_args.expected(Some(&[]), None);
        assert!(empty.holds(exe(&no_args), || Some(v(&[""])), || None));
        assert!(!empty.holds(exe(&no_args), || Some(v(&["", "-l"])), || None));
    }

    #[test]
    fn whole_argv_for_custom_rules_and_the_audit() {
        assert_eq!(new_args(None, &[]), (0, vec![Vec::new()]));
        let argv = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(new_args(None, &argv), (0, argv.clone()));
        assert_eq!(new_args(Some(1), &argv), (2, vec![b"b".to_vec()]));
        assert_eq!(new_args(Some(2), &[]), (3, Vec::new()));
        let long = vec![b'x'; MAX_ARG_LEN];
        let many: Vec<Vec<u8>> = (0..MAX_ARGS + 1).map(|_| b"y".to_vec()).collect();
        for (argv, want) in [
            (vec![b"ls".to_vec(), b"-l".to_vec()], "ls -l".to_string()),
            (vec![b"a".to_vec(), long], "a …".to_string()),
            (vec![b"\xff".to_vec()], "\u{fffd}".to_string()),
            (many, format!("{} …", vec!["y"; MAX_ARGS].join(" "))),
        ] {
            assert_eq!(shown_cmdline(&argv), want);
        }
    }

    #[test]
    fn reads_the_whole_argv_up_to_the_kernels_limits() {
        use crate::sys::seccomp::Notification;
        let me = std::process::id();
        let mem = || RemoteMemory::new(me as i32);
        let strings = |args: &[Vec<u8>]| {
            args.iter()
                .map(|a| std::ffi::CString::new(a.clone()).unwrap())
                .collect::<Vec<_>>()
        };
        let call = |ptrs: &[u64]| Notification {
            id: 0,
            pid: me,
            nr: 0,
            arch: 0,
            args: [0, ptrs.as_ptr() as u64, 0, 0, 0, 0],
        };
        let ptrs = |c: &[std::ffi::CString]| {
            c.iter()
                .map(|s| s.as_ptr() as u64)
                .chain([0])
                .collect::<Vec<_>>()
        };
        // 300 arguments: all of them, where the audit's copy stops at 256.
        let many: Vec<Vec<u8>> = (0..300).map(|i| format!("a{i}").into_bytes()).collect();
        let c = strings(&many);
        let p = ptrs(&c);
        let got = read_argv(&call(&p), Abi::X86_64, ExecCall::Execve, &mut mem()).unwrap();
        assert_eq!(got, many);
        // The longest argument the kernel takes, and one byte more.
        for (len, ok) in [(MAX_ARG_STRLEN - 1, true), (MAX_ARG_STRLEN, false)] {
            let c = strings(&[vec![b'x'; len]]);
            let p = ptrs(&c);
            let got = read_argv(&call(&p), Abi::X86_64, ExecCall::Execve, &mut mem());
            match ok {
                true => assert_eq!(got.unwrap()[0].len(), len),
                false => assert_eq!(got.unwrap_err().raw_os_error(), Some(libc::E2BIG)),
            }
        }
        // More than the kernel takes in all.
        let c = strings(&vec![
            vec![b'x'; MAX_ARG_STRLEN - 1];
            MAX_ARGV_TOTAL / MAX_ARG_STRLEN + 1
        ]);
        let p = ptrs(&c);
        let got = read_argv(&call(&p), Abi::X86_64, ExecCall::Execve, &mut mem());
        assert_eq!(got.unwrap_err().raw_os_error(), Some(libc::E2BIG));
    }

    #[test]
    fn proc_self_means_the_caller() {
        // The walk looks at every component, so the "caller" here is this test process itself,
        // with its standard descriptors.
        let me = std::process::id();
        let dir = std::env::temp_dir().join(format!("defender-resolve-{me}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::fs::write(dir.join("real/tool"), "").unwrap();
        std::os::unix::fs::symlink("real/tool", dir.join("rel")).unwrap();
        std::os::unix::fs::symlink("/proc/self/fd/2", dir.join("to-fd")).unwrap();
        std::os::unix::fs::symlink("/proc/1/../self/fd/2", dir.join("dotdot")).unwrap();
        std::os::unix::fs::symlink(dir.join("loop"), dir.join("loop")).unwrap();
        let p = |s: String| PathBuf::from(s);
        let cases: &[(PathBuf, (PathBuf, bool))] = &[
            (
                p("/proc/self/fd/1".into()),
                (p(format!("/proc/{me}/fd/1")), true),
            ),
            (
                p("/proc/thread-self/fd/1".into()),
                (p(format!("/proc/{me}/task/{me}/fd/1")), true),
            ),
            (p("/proc/1/exe".into()), (p("/proc/1/exe".into()), true)),
            (dir.join("rel"), (dir.join("real/tool"), false)),
            (dir.join("to-fd"), (p(format!("/proc/{me}/fd/2")), true)),
            (dir.join("dotdot"), (p(format!("/proc/{me}/fd/2")), true)),
            (dir.join("real/../rel"), (dir.join("real/tool"), false)),
        ];
        let mark = StartMark::take().unwrap();
        let resolve =
            |path: &Path| resolve_as(me, Path::new("/"), path, &mark).map(|w| (w.path, w.via_proc));
        for (path, want) in cases {
            assert_eq!(resolve(path).unwrap(), *want, "{}", path.display());
        }
        if Path::new("/dev/fd").exists() {
            assert_eq!(
                resolve(Path::new("/dev/fd/0")).unwrap(),
                (p(format!("/proc/{me}/fd/0")), true)
            );
        }
        assert_eq!(
            resolve(&dir.join("loop")).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            resolve(&dir.join("none/x")).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths() {
        assert_eq!(
            lexical_name(Path::new("/work/./bin//x")),
            Some(PathBuf::from("/work/bin/x"))
        );
        assert_eq!(lexical_name(Path::new("/work/bin/../x")), None);
        assert_eq!(
            strip_root(Path::new("/"), Path::new("/usr/bin")),
            PathBuf::from("/usr/bin")
        );
        assert_eq!(
            strip_root(Path::new("/jail"), Path::new("/jail/usr/bin")),
            PathBuf::from("/usr/bin")
        );
    }

    /// A mark taken once the coarse clock has moved past the ctime of `made` (inode times of one
    /// tick are equal, and the same tick counts as new).
    fn mark_after(made: &Path) -> StartMark {
        let m = std::fs::symlink_metadata(made).unwrap();
        loop {
            let mark = StartMark::take().unwrap();
            if !mark.is_new((m.ctime(), m.ctime_nsec())) {
                return mark;
            }
        }
    }

    #[test]
    fn new_links_lend_only_the_real_path() {
        // Links made before the mark lend their names; one made after it (anywhere on the way)
        // does not, and neither does a link made before but moved after.
        let me = std::process::id();
        let dir = std::env::temp_dir().join(format!("defender-links-{me}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::fs::write(dir.join("real/tool"), "").unwrap();
        std::os::unix::fs::symlink("real/tool", dir.join("old")).unwrap();
        std::os::unix::fs::symlink("real", dir.join("olddir")).unwrap();
        std::os::unix::fs::symlink("real/tool", dir.join("moved")).unwrap();
        let mark = mark_after(&dir.join("moved"));
        std::os::unix::fs::symlink("real/tool", dir.join("new")).unwrap();
        std::os::unix::fs::symlink("real", dir.join("newdir")).unwrap();
        std::os::unix::fs::symlink("old", dir.join("new-to-old")).unwrap();
        std::fs::rename(dir.join("moved"), dir.join("moved2")).unwrap();
        // (path, a new link on the way, the links naming the file that lend)
        let cases: &[(&str, bool, &[&str])] = &[
            ("old", false, &["old"]),
            ("olddir/tool", false, &[]),
            ("real/tool", false, &[]),
            ("new", true, &[]),
            ("newdir/tool", true, &[]),
            ("new-to-old", true, &["old"]),
            ("moved2", true, &[]),
        ];
        for (name, new, lent) in cases {
            let walk = resolve_as(me, Path::new("/"), &dir.join(name), &mark).unwrap();
            assert_eq!(walk.path, dir.join("real/tool"), "{name}");
            assert_eq!(walk.new_link, *new, "{name}");
            let lent: Vec<_> = lent.iter().map(|l| dir.join(l)).collect();
            assert_eq!(walk.links[walk.lent_from..], lent, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inode_times_against_the_mark() {
        let mark = StartMark {
            ctime: (1000, 500),
            mounts: Mounts::take().unwrap(),
        };
        let cases = [
            ((999, 999_999_999), false),
            ((1000, 499), false),
            ((1000, 500), true),
            ((1000, 501), true),
            ((1001, 1), true),
            // Whole-second file systems truncate: the same second counts as new.
            ((1000, 0), true),
            ((999, 0), false),
        ];
        for (ctime, new) in cases {
            assert_eq!(mark.is_new(ctime), new, "{ctime:?}");
        }
        // The mark orders like inode times: a file made now is new, this process's own
        // executable (made before) is not.
        let mark = StartMark::take().unwrap();
        let old = std::fs::metadata("/proc/self/exe").unwrap();
        assert!(!mark.is_new((old.ctime(), old.ctime_nsec())));
        let fd =
            nix::sys::memfd::memfd_create(c"later", nix::sys::memfd::MFdFlags::empty()).unwrap();
        let st = nix::sys::stat::fstat(&fd).unwrap();
        assert!(mark.is_new((st.st_ctime, st.st_ctime_nsec)));
        // A link made right after the mark, on a disk file system, is new; one made right before
        // is not (multigrain timestamps; the kernel under test has them).
        let dir = std::env::temp_dir().join(format!("defender-mark-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let ctime = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.ctime(), m.ctime_nsec())
        };
        for i in 0..200 {
            let (before, after) = (dir.join(format!("b{i}")), dir.join(format!("a{i}")));
            std::os::unix::fs::symlink("x", &before).unwrap();
            let mark = StartMark::take().unwrap();
            std::os::unix::fs::symlink("x", &after).unwrap();
            assert!(!mark.is_new(ctime(&before)), "{i}: made before");
            assert!(mark.is_new(ctime(&after)), "{i}: made after");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mount_tables() {
        let text = "22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n\
                    95 29 8:1 /srv/bin/nc /usr/bin/true rw - ext4 /dev/sda1 rw\n\
                    garbage\n";
        let table = parse_mountinfo(text);
        assert_eq!(table.len(), 2);
        assert_eq!(table[&22], "0:21 / /proc");
        assert_eq!(table[&95], "8:1 /srv/bin/nc /usr/bin/true");
        assert_eq!(
            parse_mnt_id("pos:\t0\nflags:\t02100000\nmnt_id:\t95\nino:\t7\n"),
            Some(95)
        );
        assert_eq!(parse_mnt_id("pos:\t0\n"), None);
        // An fd on a mount of ours is on an old mount.
        let mut mounts = Mounts::take().unwrap();
        let root = std::fs::File::open("/").unwrap();
        assert!(!mounts.is_new(&root));
    }

    #[test]
    fn allow_entries_see_only_lent_names() {
        let rule =
            |processes: &str| crate::policy::testing::rule(&format!(r#""processes": {processes}"#));
        let allow = rule(r#"{"effect": "prevent", "allow": ["true", "sh", "python3"]}"#);
        let deny = rule(r#"{"effect": "prevent", "deny": ["true", "nc", "python3"]}"#);
        // (what, rule, links, real, lent, verdict); the path as executed is /tmp/true, and the
        // program is started as that.
        type Case<'a> = (
            &'a str,
            &'a Rule,
            &'a [&'a str],
            &'a str,
            &'a [&'a str],
            Option<(Attack, &'a str)>,
        );
        let cases: &[Case] = &[
            (
                "an image link to busybox",
                &allow,
                &["/tmp/true"],
                "/bin/busybox",
                &["/bin/busybox", "/tmp/true"],
                None,
            ),
            (
                "a new link to nc",
                &allow,
                &["/tmp/true"],
                "/usr/bin/nc",
                &["/usr/bin/nc"],
                Some((Attack::NotAllowed, "/usr/bin/nc")),
            ),
            (
                "a new link to sh",
                &allow,
                &["/tmp/true"],
                "/bin/sh",
                &["/bin/sh"],
                None,
            ),
            (
                "a new link to an image link to python3.11, started as the new link",
                &allow,
                &["/tmp/true", "/usr/bin/python3"],
                "/usr/bin/python3.11",
                &["/usr/bin/python3.11", "/usr/bin/python3"],
                Some((Attack::NotAllowed, "/usr/bin/python3.11")),
            ),
            (
                "a new copy named true",
                &allow,
                &[],
                "/tmp/true",
                &[],
                Some((Attack::NotAllowed, "/tmp/true")),
            ),
            (
                "deny sees a new link's name",
                &deny,
                &["/tmp/true"],
                "/bin/busybox",
                &["/bin/busybox"],
                Some((Attack::ExplicitlyDenied, "/tmp/true")),
            ),
            (
                "deny sees a new copy's name",
                &deny,
                &[],
                "/tmp/true",
                &[],
                Some((Attack::ExplicitlyDenied, "/tmp/true")),
            ),
            (
                "deny sees the target",
                &deny,
                &[],
                "/usr/bin/nc",
                &[],
                Some((Attack::ExplicitlyDenied, "/tmp/true")),
            ),
            (
                "deny sees a link on the way",
                &deny,
                &["/usr/bin/python3"],
                "/usr/bin/python3.11",
                &[],
                Some((Attack::ExplicitlyDenied, "/tmp/true")),
            ),
        ];
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        for (what, rule, links, real, lent, want) in cases {
            let launch = Launch {
                image: Image {
                    path: "/tmp/true".into(),
                    links: paths(links),
                    real: Some(real.into()),
                    stamp: None,
                    lent: paths(lent),
                    started_as: Some(b"/tmp/true".to_vec()),
                    own_name: Path::new(real).file_name().map(OsStr::to_os_string),
                },
                interpreter: None,
                script_argv: None,
                shebang_arg: None,
                filename: Vec::new(),
            };
            let got = judge(&launch, rule).map(|v| (v.attack, v.process));
            assert_eq!(
                got,
                want.map(|(attack, p)| (attack, PathBuf::from(p))),
                "{what}"
            );
        }
    }

    #[test]
    fn names_a_program_is_started_as() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"true", b"true"),
            (b"/bin/true", b"true"),
            (b"./bin/true", b"true"),
            (b"-sh", b"sh"),
            (b"/bin/-sh", b"sh"),
            (b"--sh", b"-sh"),
            (b"", b""),
            (b"dir/", b""),
        ];
        for (argv0, want) in cases {
            assert_eq!(
                program_name(argv0),
                *want,
                "{:?}",
                String::from_utf8_lossy(argv0)
            );
        }
    }

    #[test]
    fn a_link_name_needs_the_program_started_under_it() {
        // /bin/true -> busybox, an image link: its name lends only when busybox is started as
        // `true`; the file's own name always lends. Installed as hard links, busybox has no name
        // of its own: each lends only when started under it.
        let symlinked = |started_as: Option<&str>| Image {
            path: "/bin/true".into(),
            links: vec!["/bin/true".into()],
            real: Some("/bin/busybox".into()),
            stamp: None,
            lent: vec!["/bin/busybox".into(), "/bin/true".into()],
            started_as: started_as.map(|a| a.as_bytes().to_vec()),
            own_name: Some("busybox".into()),
        };
        let hard_linked = |started_as: Option<&str>| Image {
            path: "/bin/true".into(),
            links: Vec::new(),
            real: Some("/bin/true".into()),
            stamp: None,
            lent: vec!["/bin/true".into()],
            started_as: started_as.map(|a| a.as_bytes().to_vec()),
            own_name: None,
        };
        type Case<'a> = (
            &'a dyn Fn(Option<&str>) -> Image,
            Option<&'a str>,
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            (&symlinked, Some("true"), &["/bin/busybox", "/bin/true"]),
            (
                &symlinked,
                Some("/bin/true"),
                &["/bin/busybox", "/bin/true"],
            ),
            (&symlinked, Some("-true"), &["/bin/busybox", "/bin/true"]),
            (&symlinked, Some("nc"), &["/bin/busybox"]),
            (&symlinked, Some("busybox"), &["/bin/busybox"]),
            (&symlinked, Some(""), &["/bin/busybox"]),
            // A script file itself is not started with an argv[0] of its own.
            (&symlinked, None, &["/bin/busybox", "/bin/true"]),
            (&hard_linked, Some("true"), &["/bin/true"]),
            (&hard_linked, Some("nc"), &[]),
        ];
        for (image, started_as, want) in cases {
            assert_eq!(image(*started_as).lent(), *want, "{started_as:?}");
        }
    }

    #[test]
    fn deny_entries_see_the_name_a_program_is_started_as() {
        let image = |started_as: Option<&str>| Image {
            path: "/bin/true".into(),
            links: vec!["/bin/true".into()],
            real: Some("/bin/busybox".into()),
            stamp: None,
            lent: Vec::new(),
            started_as: started_as.map(|a| a.as_bytes().to_vec()),
            own_name: Some("busybox".into()),
        };
        let cases: &[(Option<&str>, &[&str])] = &[
            (Some("nc"), &["/bin/true", "/bin/busybox", "nc"]),
            (Some("/usr/bin/-nc"), &["/bin/true", "/bin/busybox", "nc"]),
            (Some("true"), &["/bin/true", "/bin/busybox", "true"]),
            (Some(""), &["/bin/true", "/bin/busybox"]),
            (None, &["/bin/true", "/bin/busybox"]),
        ];
        for (started_as, want) in cases {
            assert_eq!(image(*started_as).names(), *want, "{started_as:?}");
        }
    }

    #[test]
    fn lent_names_of_a_launch() {
        let walk = |path: &str, new_link, links: &[&str], lent_from| Walk {
            path: path.into(),
            via_proc: false,
            new_link,
            links: links.iter().map(PathBuf::from).collect(),
            lent_from,
        };
        let real = PathBuf::from("/usr/bin/python3.11");
        let plain = walk("/usr/bin/python3.11", false, &[], 0);
        let old_chain = walk(
            "/usr/bin/python3.11",
            false,
            &["/venv/bin/python", "/usr/bin/python3"],
            0,
        );
        let new_then_old = walk(
            "/usr/bin/python3.11",
            true,
            &["/venv/bin/python", "/usr/bin/python3"],
            1,
        );
        let old_then_new = walk(
            "/usr/bin/python3.11",
            true,
            &["/venv/bin/python", "/usr/bin/python3"],
            2,
        );
        let swapped = walk("/usr/bin/python3.12", false, &["/usr/bin/python3"], 0);
        // (what, old file, walk, lent names; the path as executed is /venv/bin/python)
        let cases: &[(&str, bool, Option<&Walk>, &[&str])] = &[
            (
                "no link",
                true,
                Some(&plain),
                &["/usr/bin/python3.11", "/venv/bin/python"],
            ),
            (
                "image links",
                true,
                Some(&old_chain),
                &[
                    "/usr/bin/python3.11",
                    "/venv/bin/python",
                    "/usr/bin/python3",
                ],
            ),
            (
                "a new link to an image link",
                true,
                Some(&new_then_old),
                &["/usr/bin/python3.11", "/usr/bin/python3"],
            ),
            (
                "an image link to a new link",
                true,
                Some(&old_then_new),
                &["/usr/bin/python3.11"],
            ),
            (
                "a chain swapped before the open",
                true,
                Some(&swapped),
                &["/usr/bin/python3.11"],
            ),
            (
                "an fd's own name",
                true,
                None,
                &["/usr/bin/python3.11", "/venv/bin/python"],
            ),
            ("a new file", false, Some(&plain), &[]),
            ("a new file by fd", false, None, &[]),
        ];
        for (what, old_file, walk, want) in cases {
            let got = lent_names(*old_file, Path::new("/venv/bin/python"), *walk, Some(&real));
            assert_eq!(
                got,
                want.iter().map(PathBuf::from).collect::<Vec<_>>(),
                "{what}"
            );
        }
        assert!(lent_names(true, Path::new("/x"), None, None).is_empty());
    }
}
