//! The exec sensor: what a trapped `execve`/`execveat` launches, read from the caller, and the
//! policy's verdict on it.
//!
//! A launch is judged on every name it has: the path as executed (absolute, against the caller's
//! cwd or dirfd), the real path with symlinks resolved inside the caller's root (so `mkdir`
//! matches `/bin/mkdir` where that is a symlink to busybox), and for a `#!` script, its interpreter
//! as well: running a script runs the interpreter, so a denied interpreter is denied behind any
//! script.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::policy::{Attack, Rule};
use crate::sys::process::{fd_path, open_dir_path, open_in_root, open_path};
use crate::sys::remote::RemoteMemory;
use crate::sys::seccomp::Notification;

use super::FileId;

/// PATH_MAX (limits.h): the kernel refuses longer exec paths with ENAMETOOLONG.
const PATH_MAX: usize = 4096;
/// How much of a command line an audit carries.
const MAX_ARGS: usize = 256;
const MAX_ARG_LEN: usize = 4096;
/// The kernel reads at most this many bytes of a `#!` line (BINPRM_BUF_SIZE, linux/binfmts.h).
const BINPRM_BUF_SIZE: usize = 256;
/// execveat(2) flag: an empty path means the file `dirfd` refers to (fexecve).
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;

/// The ABI a trapped call came through, which fixes its syscall numbers and pointer width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    X86_64,
    I386,
}

impl Abi {
    fn ptr_width(self) -> usize {
        match self {
            Abi::X86_64 => 8,
            Abi::I386 => 4,
        }
    }
}

/// Which exec call was trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecCall {
    Execve,
    Execveat,
}

/// One name of a launched program, and the file it named when looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Absolute path as executed (in the caller's view of the file system).
    pub path: PathBuf,
    /// The same, symlinks resolved; `None` if it could not be resolved (the exec will fail, or
    /// a later check catches a file that appears in between).
    pub real: Option<PathBuf>,
    pub id: Option<FileId>,
}

impl Image {
    fn candidates(&self) -> Vec<&str> {
        let mut c = vec![path_str(&self.path)];
        if let Some(real) = &self.real
            && real != &self.path
        {
            c.push(path_str(real));
        }
        c
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
    /// The name the kernel gives the file (`bprm->filename`): the path as passed, or
    /// `/dev/fd/N[/path]` for a path relative to a directory fd (fs/exec.c, alloc_bprm).
    pub filename: Vec<u8>,
}

/// What the exec stop must find for the exec to be the launch decided on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// The file that runs: the interpreter of a script, else the file itself.
    pub exe: Option<FileId>,
    /// For a script: the argv slot and the name the kernel must have put there. The interpreter's
    /// identity alone cannot tell an allowed script from a denied one with the same `#!` line.
    pub script: Option<(usize, Vec<u8>)>,
}

impl Launch {
    pub fn expected(&self) -> Expected {
        let exe = self.interpreter.as_ref().unwrap_or(&self.image).id;
        let script = self.script_argv.map(|slot| (slot, self.filename.clone()));
        Expected { exe, script }
    }
}

impl Expected {
    /// Whether an exec that runs `exe`, with the new `argv` (read only for scripts), is this one.
    pub fn holds(&self, exe: Option<FileId>, argv: impl FnOnce() -> Option<Vec<Vec<u8>>>) -> bool {
        exe.is_some()
            && exe == self.exe
            && match &self.script {
                None => true,
                Some((slot, name)) => argv().is_some_and(|argv| argv.get(*slot) == Some(name)),
            }
    }
}

/// The verdict on a launch: which name violated, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub attack: Attack,
    /// The path reported as `process`: the launched file, or its interpreter if that violated.
    pub process: PathBuf,
}

/// Judges a launch against the rule's process lists: the script (or binary) first, then its
/// interpreter. Pure.
pub fn judge(launch: &Launch, rule: &Rule) -> Option<Violation> {
    [Some(&launch.image), launch.interpreter.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|image| {
            rule.processes()
                .check(&image.candidates())
                .map(|attack| Violation {
                    attack,
                    process: image.path.clone(),
                })
        })
}

/// Resolves launches, remembering each resolved path while the file it names is unchanged: most
/// containers launch the same few programs over and over, and a hit costs one stat(2) instead of
/// opening, resolving and reading the file.
///
/// A hit requires the same device, inode and ctime (any write, chmod, link or rename of the file
/// changes its ctime; a retargeted symlink names another inode). What a stale entry could still get
/// wrong (a symlink chain changed to reach the same inode under another name) is caught where it
/// matters: the exec stop compares the running file with the one decided on (exec_watch.rs).
#[derive(Default)]
pub struct Resolver {
    cache: HashMap<PathBuf, Cached>,
    /// Set once any process of the container has called chroot(2). Until then every caller shares
    /// our root (it inherited it from us), and looking it up in /proc, the costliest step of a
    /// resolution (~12 µs for a fresh PID), is skipped.
    roots_may_differ: bool,
}

struct Cached {
    stamp: Stamp,
    real: Option<PathBuf>,
}

/// What must be unchanged for a cached resolution to hold.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    id: FileId,
    ctime: (i64, i64),
}

impl Stamp {
    fn of(st: &nix::sys::stat::FileStat) -> Stamp {
        Stamp {
            id: FileId::from(st),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// Bound on remembered paths; the cache starts over when it is full.
const CACHE_MAX: usize = 4096;

impl Resolver {
    /// Some process is about to change its root: look each caller's root up from now on (the
    /// cache keeps serving callers that still share ours; chrooted ones bypass it).
    pub fn note_chroot(&mut self) {
        self.roots_may_differ = true;
    }

    /// Reads the launch from the caller: its path argument, resolved against its cwd (or dirfd)
    /// and root. Errors are the errno the exec is failed with: the kernel would have failed it the
    /// same way (EFAULT for an unreadable path, ENAMETOOLONG, ENOENT), and anything unreadable is
    /// denied, never waved through.
    pub fn read_launch(
        &mut self,
        n: &Notification,
        call: ExecCall,
        mem: &mut RemoteMemory,
    ) -> io::Result<Launch> {
        let (dirfd, path_ptr, flags) = match call {
            ExecCall::Execve => (libc::AT_FDCWD, n.args[0], 0),
            ExecCall::Execveat => (n.args[0] as i32, n.args[1], n.args[4]),
        };
        let raw = mem.read_cstr(path_ptr, PATH_MAX)?;
        let proc_dir = PathBuf::from(format!("/proc/{}", n.pid));
        let root = if self.roots_may_differ {
            std::fs::read_link(proc_dir.join("root"))?
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
            let fd_link = proc_dir.join("fd").join(dirfd.to_string());
            let name = strip_root(&root, &std::fs::read_link(&fd_link)?);
            return Ok(launch_of(
                &root,
                n.pid,
                name,
                open_path(&fd_link)?,
                filename,
            ));
        }
        let base = if path.is_absolute() {
            PathBuf::from("/")
        } else if dirfd == libc::AT_FDCWD {
            strip_root(&root, &std::fs::read_link(proc_dir.join("cwd"))?)
        } else {
            strip_root(
                &root,
                &std::fs::read_link(proc_dir.join("fd").join(dirfd.to_string()))?,
            )
        };
        // Resolution follows the kernel (`..` after a symlink climbs from its target); only the
        // name offered to the policy is cleaned up lexically, and a path with `..` gets none:
        // `/app/bin/link/../nmap` must not pass for `/app/bin/nmap`.
        let joined = base.join(path);
        let name = lexical_name(&joined);
        let named = |mut launch: Launch| {
            if name.is_none() {
                launch.image.path = launch.image.real.clone().unwrap_or_else(|| joined.clone());
            }
            launch
        };
        let shown = name.clone().unwrap_or_else(|| joined.clone());
        if root != Path::new("/") {
            // A chrooted caller: resolve inside its root every time (no cache: paths are its own).
            let fd = open_in_root(&open_dir_path(&root)?, &joined).map_err(exec_errno)?;
            return Ok(named(launch_of(&root, n.pid, shown, fd, filename)));
        }
        if let Some(c) = self.cache.get(&joined) {
            // The stamp is taken in our own view; cached paths lead through no /proc link, so
            // our view is the caller's.
            let stamp =
                Stamp::of(&nix::sys::stat::stat(&joined).map_err(|e| exec_errno(e.into()))?);
            if c.stamp == stamp {
                let image = Image {
                    path: shown,
                    real: c.real.clone(),
                    id: Some(stamp.id),
                };
                return Ok(named(Launch {
                    image,
                    interpreter: None,
                    script_argv: None,
                    filename,
                }));
            }
        }
        let (resolved, via_proc) = resolve_as(n.pid, &joined).map_err(exec_errno)?;
        let fd = open_path(&resolved).map_err(exec_errno)?;
        let stamp = Stamp::of(&nix::sys::stat::fstat(&fd).map_err(io::Error::from)?);
        let launch = named(launch_of(&root, n.pid, shown, fd, filename));
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
                real: launch.image.real.clone(),
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

/// The launch of the file `fd` refers to, named `path`, with its `#!` interpreter if any.
fn launch_of(root: &Path, pid: u32, path: PathBuf, fd: OwnedFd, filename: Vec<u8>) -> Launch {
    let (image, shebang) = inspect(root, path, Some(fd));
    let script_argv = shebang.as_ref().map(|s| if s.has_arg { 2 } else { 1 });
    let interpreter = shebang.map(|mut s| {
        if s.interpreter.is_relative() {
            // The kernel opens a relative interpreter from the caller's cwd (binfmt_script.c).
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map(|c| strip_root(root, &c));
            s.interpreter = cwd.unwrap_or_default().join(&s.interpreter);
        }
        let file = if root == Path::new("/") {
            resolve_as(pid, &s.interpreter).and_then(|(p, _)| open_path(&p))
        } else {
            open_dir_path(root).and_then(|r| open_in_root(&r, &s.interpreter))
        };
        inspect(root, s.interpreter, file.ok()).0
    });
    Launch {
        image,
        interpreter,
        script_argv,
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
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(tid)
}

/// Reads argv for the audit's command line, capped, arguments joined by spaces.
pub fn read_cmdline(
    n: &Notification,
    abi: Abi,
    call: ExecCall,
    mem: &mut RemoteMemory,
) -> io::Result<String> {
    let argv_ptr = match call {
        ExecCall::Execve => n.args[1],
        ExecCall::Execveat => n.args[2],
    };
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
/// files). Returns the path to open and whether it leads into `/proc`.
fn resolve_as(pid: u32, path: &Path) -> io::Result<(PathBuf, bool)> {
    /// MAXSYMLINKS (namei.c): the kernel gives up with ELOOP after 40 links.
    const MAX_HOPS: usize = 40;
    let mut out = PathBuf::from("/");
    let mut rest = components(path);
    let (mut hops, mut via_proc) = (0, false);
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
        if !std::fs::symlink_metadata(&out)?.file_type().is_symlink() {
            continue;
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
            return Ok((out, true));
        }
        hops += 1;
        if hops > MAX_HOPS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = std::fs::read_link(&out)?;
        out.pop();
        if target.is_absolute() {
            out = PathBuf::from("/");
        }
        rest.extend(components(&target));
    }
    Ok((out, via_proc))
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
/// between the looks): its real path, identity, and `#!` interpreter if it is a script.
fn inspect(root: &Path, path: PathBuf, file: Option<OwnedFd>) -> (Image, Option<Shebang>) {
    let Some(fd) = file else {
        return (
            Image {
                path,
                real: None,
                id: None,
            },
            None,
        );
    };
    let via = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let file = std::fs::File::from(fd);
    let meta = file.metadata().ok();
    let id = meta.as_ref().map(FileId::from);
    let real = fd_path(&file).ok().map(|p| strip_root(root, &p));
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
    (Image { path, real, id }, interpreter)
}

/// A `#!` line: the interpreter, and whether an argument follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shebang {
    interpreter: PathBuf,
    has_arg: bool,
}

/// The `#!` line of a script, or `None` for anything else. Follows the kernel's reading
/// (fs/binfmt_script.c): leading blanks skipped, the name ends at a blank or newline, and the rest
/// of the line, trimmed, is one optional argument.
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
    let has_arg = line[end..].iter().any(|&b| b != b' ' && b != b'\t');
    Some(Shebang {
        interpreter: PathBuf::from(OsStr::from_bytes(&line[..end])),
        has_arg,
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
        // (head of the file, interpreter and whether a `#!` argument follows)
        type Case<'a> = (&'a [u8], Option<(&'a str, bool)>);
        let cases: &[Case] = &[
            (b"#!/bin/sh\necho hi\n", Some(("/bin/sh", false))),
            (b"#! /usr/bin/env python3\n", Some(("/usr/bin/env", true))),
            (b"#!\t/bin/bash -e \n", Some(("/bin/bash", true))),
            (b"#!/bin/sh  \t\n", Some(("/bin/sh", false))),
            (b"#!/bin/sh", Some(("/bin/sh", false))),
            (b"#!\n", None),
            (b"\x7fELF\x02\x01", None),
            (b"", None),
        ];
        for (head, want) in cases {
            let got = parse_shebang(head).map(|s| (s.interpreter, s.has_arg));
            assert_eq!(
                got,
                want.map(|(p, a)| (PathBuf::from(p), a)),
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
        let id = |ino| Some(FileId { dev: 1, ino });
        let image = |ino| Image {
            path: "/x".into(),
            real: None,
            id: id(ino),
        };
        let binary = Launch {
            image: image(10),
            interpreter: None,
            script_argv: None,
            filename: b"/x".to_vec(),
        };
        let script = Launch {
            image: image(10),
            interpreter: Some(image(20)),
            script_argv: Some(1),
            filename: b"./s".to_vec(),
        };
        let argv = |v: &[&str]| Some(v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>());
        let cases = [
            ("the binary decided on", &binary, id(10), argv(&[]), true),
            ("another binary", &binary, id(11), argv(&[]), false),
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
                launch.expected().holds(exe, || argv.clone()),
                want,
                "{what}"
            );
        }
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
        for (path, want) in cases {
            assert_eq!(resolve_as(me, path).unwrap(), *want, "{}", path.display());
        }
        if Path::new("/dev/fd").exists() {
            assert_eq!(
                resolve_as(me, Path::new("/dev/fd/0")).unwrap(),
                (p(format!("/proc/{me}/fd/0")), true)
            );
        }
        assert_eq!(
            resolve_as(me, &dir.join("loop"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            resolve_as(me, &dir.join("none/x"))
                .unwrap_err()
                .raw_os_error(),
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
}
