//! Test helper for `tests/exec_policy.rs`: launches a program through the exec paths a shell never
//! uses (execveat on an fd or a directory fd, fexecve of a memfd copy, `/proc/self/fd/N`, the i386
//! `int 0x80` ABI, the x32 ABI), so the tests can check that each is trapped and judged.
//!
//! Usage: `exec_helper SUBCOMMAND ARGS...`
//!
//! | subcommand | what it does |
//! |---|---|
//! | `execveat-fd PATH ARGV...` | `open(PATH, O_RDONLY)`, then `execveat(fd, "", ARGV, environ, AT_EMPTY_PATH)` |
//! | `execveat-opath PATH ARGV...` | the same with an `O_PATH` fd |
//! | `fexecve PATH ARGV...` | `open(PATH, O_RDONLY)`, then glibc's `fexecve(3)` |
//! | `execveat-dirfd DIR NAME ARGV...` | `open(DIR, O_DIRECTORY)`, then `execveat(dirfd, NAME, ARGV, environ, 0)` |
//! | `memfd PATH ARGV...` | copies PATH into a `memfd_create("exec_helper_copy")` fd and fexecve's it |
//! | `proc-fd PATH ARGV...` | `open(PATH, O_RDONLY)`, then `execve("/proc/self/fd/N", ARGV, environ)` |
//! | `int80-getpid` | prints what i386 `getpid` (`int 0x80`, eax = 20) returns: `int80-getpid=N` |
//! | `int80-execve PATH ARGV...` | i386 `execve` (`int 0x80`, eax = 11); strings and argv below 4 GiB |
//! | `x32-execve PATH ARGV...` | x32 `execve` (`syscall(0x40000000 \| 520)`); strings and argv below 4 GiB |
//! | `race-exec ALLOWED DENIED N [ARGV...]` | N times: fork; the child execve's a path that a thread flips between ALLOWED and DENIED; prints a tally |
//! | `race-argv0 PATH ALLOWED DENIED N [ARGS...]` | N times: fork; the child execve's PATH with an argv[0] that a thread flips between the names ALLOWED and DENIED (at most 7 bytes each), then ARGS; the path and argv[0] lie in one page, as a shell's do; prints a tally |
//! | `race-setsid PATH N ARGV...` | N times: fork; the child execve's PATH with ARGV while a thread calls setsid(2), giving up the controlling terminal, after a wait that varies with the round; prints a tally |
//! | `race-argv PATH INNOCENT FORBIDDEN N ARGV...` | N times: fork; the child execve's PATH with ARGV, in which every argument equal to INNOCENT is one that a thread flips between INNOCENT and FORBIDDEN (at most 7 bytes each); prints a tally |
//!
//! ARGV is the new program's whole argv, `argv[0]` included; when empty, it is `[PATH]` (for
//! `race-exec`, `[race]`).
//! Every exec that returns prints `SUBCOMMAND: errno=N (description)` on stderr and exits 111, so
//! a test can tell the helper's failure from the launched program's own exit status.
//!
//! `race-argv` attacks the same time for the arguments, which custom rules read
//! (`proc.cmdline`): the supervisor may decide on the innocent command line and the kernel copy the
//! forbidden one into the new program. `race-setsid` attacks it for the terminal
//! (`proc.interactive`): decided with one, the program may start without.
//!
//! `race-exec` attacks the time between the supervisor's read of the exec path and the kernel's
//! own: ALLOWED and DENIED must be paths of equal length that differ within 8 bytes, so that one
//! aligned 8-byte store flips the whole difference (no reader ever sees half of each). Each child
//! exits 100 + errno when its execve returns. The parent waits for every child and prints
//! `race: ran_allowed=A killed=K eperm=E other=O` on stdout (exit 0, SIGKILL, EPERM, anything
//! else), then `race: other: ...` listing the other outcomes, if any.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use defender_test_programs::int80::{int80, low_memory};

/// Exit status when the exec call returned (it failed).
const EXEC_FAILED: i32 = 111;

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

fn main() {
    let args: Vec<CString> = std::env::args_os()
        .skip(1)
        .map(|a| CString::new(a.as_bytes()).expect("no NUL in arguments"))
        .collect();
    let Some((sub, rest)) = args.split_first() else {
        usage();
    };
    let sub = sub.to_str().unwrap_or("").to_string();
    let errno = match sub.as_str() {
        "execveat-fd" => {
            let (path, argv) = path_and_argv(rest);
            let fd = open(&path, libc::O_RDONLY);
            execveat(fd, c"", &argv, libc::AT_EMPTY_PATH)
        }
        "execveat-opath" => {
            let (path, argv) = path_and_argv(rest);
            let fd = open(&path, libc::O_PATH);
            execveat(fd, c"", &argv, libc::AT_EMPTY_PATH)
        }
        "fexecve" => {
            let (path, argv) = path_and_argv(rest);
            let fd = open(&path, libc::O_RDONLY);
            let argv_ptrs = null_terminated(&argv);
            // SAFETY: `argv_ptrs` is a NULL-terminated array of pointers into `argv`, which lives
            // across the call; `environ` is the process's own NULL-terminated environment.
            unsafe { libc::fexecve(fd, argv_ptrs.as_ptr(), environ) };
            last_errno()
        }
        "execveat-dirfd" => {
            let Some((dir, rest)) = rest.split_first() else {
                usage();
            };
            let (name, argv) = path_and_argv(rest);
            let dirfd = open(dir, libc::O_RDONLY | libc::O_DIRECTORY);
            execveat(dirfd, &name, &argv, 0)
        }
        "memfd" => {
            let (path, argv) = path_and_argv(rest);
            let fd = memfd_copy(&path);
            execveat(fd, c"", &argv, libc::AT_EMPTY_PATH)
        }
        "proc-fd" => {
            let (path, argv) = path_and_argv(rest);
            let fd = open(&path, libc::O_RDONLY);
            let via = CString::new(format!("/proc/self/fd/{fd}")).unwrap();
            let argv_ptrs = null_terminated(&argv);
            // SAFETY: `via` is NUL-terminated; `argv_ptrs` is a NULL-terminated array of pointers
            // into `argv`, which lives across the call; `environ` is the process's environment.
            unsafe { libc::execve(via.as_ptr(), argv_ptrs.as_ptr(), environ) };
            last_errno()
        }
        "int80-getpid" => {
            let ret = int80(20, 0, 0, 0);
            println!("int80-getpid={ret}");
            std::process::exit(0);
        }
        "int80-execve" => {
            let (path, argv) = path_and_argv(rest);
            let low = LowMemory::new(&path, &argv);
            let ret = int80(11, low.path, low.argv, 0);
            // execve only returns on failure, as -errno in eax.
            -ret
        }
        "x32-execve" => {
            let (path, argv) = path_and_argv(rest);
            let low = LowMemory::new(&path, &argv);
            const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
            const X32_EXECVE: libc::c_long = 520;
            // SAFETY: x32 execve takes 32-bit pointers to NUL-terminated strings and to a
            // NULL-terminated array of 32-bit pointers, all of which `low` holds below 4 GiB.
            unsafe {
                libc::syscall(
                    X32_SYSCALL_BIT | X32_EXECVE,
                    low.path as libc::c_long,
                    low.argv as libc::c_long,
                    0 as libc::c_long,
                )
            };
            last_errno()
        }
        "race-exec" => race_exec(rest),
        "race-argv0" => race_argv0(rest),
        "race-argv" => race_argv(rest),
        "race-setsid" => race_setsid(rest),
        _ => usage(),
    };
    // SAFETY: strerror returns a pointer to a NUL-terminated static (or thread-local) string.
    let text = unsafe { CStr::from_ptr(libc::strerror(errno)) };
    eprintln!("{sub}: errno={errno} ({})", text.to_string_lossy());
    std::process::exit(EXEC_FAILED);
}

fn usage() -> ! {
    eprintln!("usage: exec_helper SUBCOMMAND ARGS... (see the table at the top of exec_helper.rs)");
    std::process::exit(2);
}

/// The first argument and the argv that follows it (the path alone when none follows).
fn path_and_argv(rest: &[CString]) -> (CString, Vec<CString>) {
    let Some((path, argv)) = rest.split_first() else {
        usage();
    };
    let argv = if argv.is_empty() {
        vec![path.clone()]
    } else {
        argv.to_vec()
    };
    (path.clone(), argv)
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn die(what: &str) -> ! {
    eprintln!("exec_helper: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(2);
}

/// open(2), without O_CLOEXEC: the fd must survive into the exec (a script run through an fd is
/// read by its interpreter from /dev/fd/N).
fn open(path: &CStr, flags: libc::c_int) -> libc::c_int {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        die(&format!("open {}", path.to_string_lossy()));
    }
    fd
}

fn null_terminated(args: &[CString]) -> Vec<*const libc::c_char> {
    args.iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// execveat(2) through the raw system call (the x86_64 one); returns the errno.
fn execveat(dirfd: libc::c_int, path: &CStr, argv: &[CString], flags: libc::c_int) -> i32 {
    let argv_ptrs = null_terminated(argv);
    // SAFETY: `path` is NUL-terminated; `argv_ptrs` is a NULL-terminated array of pointers into
    // `argv`, which lives across the call; `environ` is the process's own environment.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            dirfd,
            path.as_ptr(),
            argv_ptrs.as_ptr(),
            environ,
            flags,
        )
    };
    last_errno()
}

/// Copies the file at `path` into a new memfd and returns it.
fn memfd_copy(path: &CStr) -> libc::c_int {
    let bytes = std::fs::read(std::ffi::OsStr::from_bytes(path.to_bytes())).unwrap_or_else(|e| {
        eprintln!("exec_helper: reading {}: {e}", path.to_string_lossy());
        std::process::exit(2)
    });
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"exec_helper_copy".as_ptr(), 0) };
    if fd < 0 {
        die("memfd_create");
    }
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: the pointer and length describe the unwritten tail of `bytes`.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n <= 0 {
            die("writing the memfd");
        }
        done += n as usize;
    }
    fd
}

/// A path and an argv laid out below 4 GiB (MAP_32BIT), with 32-bit pointers, as the i386 and x32
/// ABIs read them. The mapping is never unmapped: it must outlive the exec attempt.
struct LowMemory {
    path: u32,
    argv: u32,
}

impl LowMemory {
    fn new(path: &CString, argv: &[CString]) -> LowMemory {
        let strings: usize = path.as_bytes_with_nul().len()
            + argv
                .iter()
                .map(|a| a.as_bytes_with_nul().len())
                .sum::<usize>();
        let len = strings + 4 * (argv.len() + 1) + 16;
        let base = low_memory(len);
        let mut at = 0usize;
        let mut put = |s: &CString| -> u32 {
            let b = s.as_bytes_with_nul();
            // SAFETY: `at + b.len() <= strings <= len`: the copy stays inside the mapping.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), base.add(at), b.len()) };
            let addr = base as usize + at;
            at += b.len();
            addr as u32
        };
        let path32 = put(path);
        let ptrs: Vec<u32> = argv
            .iter()
            .map(&mut put)
            .chain(std::iter::once(0))
            .collect();
        // Align the pointer array to 4 bytes.
        let array_at = (strings + 3) & !3;
        for (i, p) in ptrs.iter().enumerate() {
            // SAFETY: `array_at + 4 * (argv.len() + 1) <= len`; unaligned writes are fine anyway.
            unsafe { base.add(array_at + 4 * i).cast::<u32>().write_unaligned(*p) };
        }
        LowMemory {
            path: path32,
            argv: (base as usize + array_at) as u32,
        }
    }
}

/// The size of `race-exec`'s path buffer.
const RACE_BUF: usize = 4096;

/// `race-exec ALLOWED DENIED N [ARGV...]` (see the top of the file). Never returns.
fn race_exec(rest: &[CString]) -> ! {
    let [allowed, denied, n, argv @ ..] = rest else {
        usage();
    };
    let (allowed, denied) = (allowed.as_bytes(), denied.as_bytes());
    let Some(n) = n.to_str().ok().and_then(|n| n.parse::<u32>().ok()) else {
        usage();
    };
    let argv = if argv.is_empty() {
        vec![c"race".to_owned()]
    } else {
        argv.to_vec()
    };
    let differ: Vec<usize> = (0..allowed.len().min(denied.len()))
        .filter(|&i| allowed[i] != denied[i])
        .collect();
    let (Some(&lo), Some(&hi)) = (differ.first(), differ.last()) else {
        eprintln!("race-exec: the two paths must differ");
        std::process::exit(2);
    };
    if allowed.len() != denied.len() || hi - lo >= 8 || allowed.len() + 8 >= RACE_BUF {
        eprintln!("race-exec: the paths must have the same length and differ within 8 bytes");
        std::process::exit(2);
    }
    // Start the path so that its first differing byte begins an aligned word: the whole
    // difference then lies in that one word.
    let start = (8 - lo % 8) % 8;
    let image = |path: &[u8]| {
        let mut bytes = [0u8; RACE_BUF];
        bytes[start..start + path.len()].copy_from_slice(path);
        bytes
    };
    let (a, d) = (image(allowed), image(denied));
    let word_at = |bytes: &[u8; RACE_BUF], w: usize| {
        u64::from_ne_bytes(bytes[8 * w..8 * w + 8].try_into().unwrap())
    };
    let w = (start + lo) / 8;
    let (word_a, word_d) = (word_at(&a, w), word_at(&d, w));
    // Aligned for AtomicU64, and never freed: the children's execve reads it.
    let buf: &'static [AtomicU64] =
        Vec::from_iter((0..RACE_BUF / 8).map(|i| AtomicU64::new(word_at(&a, i)))).leak();
    let path = buf
        .as_ptr()
        .cast::<u8>()
        .wrapping_add(start)
        .cast::<libc::c_char>();
    let argv_ptrs = null_terminated(&argv);
    race(n, &buf[w], (word_a, word_d), || {
        // SAFETY: `path` points into `buf` (NUL-terminated: the rest of the buffer is zero);
        // `argv_ptrs` is a NULL-terminated array of pointers into `argv`; `environ` is the
        // process's environment. All outlive the call.
        unsafe { libc::execve(path, argv_ptrs.as_ptr(), environ) };
    })
}

/// `race-argv0 PATH ALLOWED DENIED N [ARGS...]` (see the top of the file). Never returns.
fn race_argv0(rest: &[CString]) -> ! {
    let [path, allowed, denied, n, args @ ..] = rest else {
        usage();
    };
    let Some(n) = n.to_str().ok().and_then(|n| n.parse::<u32>().ok()) else {
        usage();
    };
    let (word_a, word_d) = (
        name_word("race-argv0", allowed),
        name_word("race-argv0", denied),
    );
    // The path and the flipping argv[0] in one page, as a shell passes them (its argv[0] is the
    // path's own string): the supervisor reads both in one read of the caller's memory, and the
    // flip after that read must be caught all the same. Never freed: the children's execve
    // reads it.
    let bytes = path.as_bytes_with_nul();
    if bytes.len() > PAGE_PATH {
        eprintln!("race-argv0: PATH must be shorter than {PAGE_PATH} bytes");
        std::process::exit(2);
    }
    let mut in_page = [0u8; PAGE_PATH];
    in_page[..bytes.len()].copy_from_slice(bytes);
    let shared: &'static PathAndName = Box::leak(Box::new(PathAndName {
        path: in_page,
        name: AtomicU64::new(word_a),
    }));
    let name = &shared.name;
    let mut argv_ptrs = null_terminated(args);
    argv_ptrs.insert(0, (name as *const AtomicU64).cast::<libc::c_char>());
    race(n, name, (word_a, word_d), || {
        // SAFETY: `shared.path` is NUL-terminated (checked above); `argv_ptrs` is a
        // NULL-terminated array of pointers to `name` (NUL-terminated: a name is at most 7 bytes
        // of the word) and into `args`; `environ` is the process's environment. All outlive the
        // call.
        unsafe { libc::execve(shared.path.as_ptr().cast(), argv_ptrs.as_ptr(), environ) };
    })
}

/// Room for `race-argv0`'s path before its argv[0], in one page.
const PAGE_PATH: usize = 4096 - 8;

/// `race-argv0`'s path and flipping argv[0], in one page (aligned to it).
#[repr(C, align(4096))]
struct PathAndName {
    path: [u8; PAGE_PATH],
    name: AtomicU64,
}

/// `race-argv PATH INNOCENT FORBIDDEN N ARGV...` (see the top of the file). Never returns.
fn race_argv(rest: &[CString]) -> ! {
    let [path, innocent, forbidden, n, argv @ ..] = rest else {
        usage();
    };
    let Some(n) = n.to_str().ok().and_then(|n| n.parse::<u32>().ok()) else {
        usage();
    };
    if !argv.contains(innocent) {
        eprintln!("race-argv: ARGV must contain INNOCENT, the argument that flips");
        std::process::exit(2);
    }
    let (word_a, word_d) = (
        name_word("race-argv", innocent),
        name_word("race-argv", forbidden),
    );
    // Never freed: the children's execve reads it.
    let flipping: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(word_a)));
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| match a == innocent {
            true => (flipping as *const AtomicU64).cast::<libc::c_char>(),
            false => a.as_ptr(),
        })
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    race(n, flipping, (word_a, word_d), || {
        // SAFETY: `path` is NUL-terminated; `argv_ptrs` is a NULL-terminated array of pointers to
        // `flipping` (NUL-terminated: each value is at most 7 bytes of the word) and into `argv`;
        // `environ` is the process's environment. All outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), environ) };
    })
}

/// A name of at most 7 bytes, NUL-padded into one word, so that one aligned store flips it whole
/// (no reader ever sees half of each); `sub` names the subcommand in the refusal.
fn name_word(sub: &str, name: &CString) -> u64 {
    let bytes = name.as_bytes();
    if bytes.len() > 7 {
        eprintln!("{sub}: the names must be at most 7 bytes");
        std::process::exit(2);
    }
    let mut w = [0u8; 8];
    w[..bytes.len()].copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

/// The race of `race-exec`, `race-argv0` and `race-argv`: N times, forks a child in which a thread flips
/// `word` between the two values while the child calls `exec`; tallies the children's ends.
fn race(n: u32, word: &'static AtomicU64, (a, d): (u64, u64), exec: impl Fn()) -> ! {
    tally_children(n, |_| {
        static FLIPPING: AtomicBool = AtomicBool::new(false);
        std::thread::spawn(move || {
            FLIPPING.store(true, Ordering::Release);
            loop {
                word.store(d, Ordering::Relaxed);
                word.store(a, Ordering::Relaxed);
            }
        });
        while !FLIPPING.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        exec();
    })
}

/// `race-setsid PATH N ARGV...` (see the top of the file). Never returns.
fn race_setsid(rest: &[CString]) -> ! {
    let [path, n, argv @ ..] = rest else {
        usage();
    };
    let Some(n) = n.to_str().ok().and_then(|n| n.parse::<u32>().ok()) else {
        usage();
    };
    let argv_ptrs = null_terminated(argv);
    tally_children(n, |round| {
        static RUNNING: AtomicBool = AtomicBool::new(false);
        // Spread over the rounds (a multiplicative hash), so that some land between the
        // supervisor's look at the terminal and the kernel's exec.
        let delay = round.wrapping_mul(2_654_435_761) % SETSID_SPREAD;
        std::thread::spawn(move || {
            RUNNING.store(true, Ordering::Release);
            for _ in 0..delay {
                std::hint::spin_loop();
            }
            // SAFETY: setsid(2) takes no pointer; it fails harmlessly for a group leader.
            unsafe { libc::setsid() };
        });
        while !RUNNING.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: `path` is NUL-terminated; `argv_ptrs` is a NULL-terminated array of pointers
        // into `argv`; `environ` is the process's environment. All outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), environ) };
    })
}

/// The most spin-loop turns `race-setsid`'s thread waits before it calls setsid(2).
const SETSID_SPREAD: u32 = 400_000;

/// N times: forks a child that runs `child` (given the round's number) and, if that returns,
/// exits 100 + errno; waits for it. Prints the tally of the children's ends (see the top of the
/// file) and exits.
fn tally_children(n: u32, child: impl Fn(u32)) -> ! {
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    for round in 0..n {
        // SAFETY: this process has a single thread; the child only starts a thread and execs.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            die("fork");
        }
        if pid == 0 {
            child(round);
            // SAFETY: ends the child at once, without running the parent's exit handlers.
            unsafe { libc::_exit(100 + last_errno()) };
        }
        let mut status = 0;
        // SAFETY: `status` is a valid place for the child's status.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            if last_errno() != libc::EINTR {
                die("waitpid");
            }
        }
        let outcome = if libc::WIFEXITED(status) {
            match libc::WEXITSTATUS(status) {
                0 => "ran_allowed".to_string(),
                c if c == 100 + libc::EPERM => "eperm".to_string(),
                c => format!("exit {c}"),
            }
        } else if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
            "killed".to_string()
        } else if libc::WIFSIGNALED(status) {
            format!("signal {}", libc::WTERMSIG(status))
        } else {
            format!("status {status:#x}")
        };
        *tally.entry(outcome).or_default() += 1;
    }
    let mut take = |k: &str| tally.remove(k).unwrap_or(0);
    let (ran, killed, eperm) = (take("ran_allowed"), take("killed"), take("eperm"));
    let other: u32 = tally.values().sum();
    println!("race: ran_allowed={ran} killed={killed} eperm={eperm} other={other}");
    if other > 0 {
        let list: Vec<String> = tally.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        println!("race: other: {}", list.join(", "));
    }
    std::process::exit(0);
}
