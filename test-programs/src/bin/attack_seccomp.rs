//! Attack program for `tests/attack_seccomp.rs`: the workload installs seccomp filters of its own
//! to get between its calls and the defender's listener.
//!
//! Usage: `attack_seccomp listener|allow-all PROGRAM [ARG]...`
//!
//! - `listener`: installs a filter that sends `execve` to a listener of its own
//!   (`SECCOMP_FILTER_FLAG_NEW_LISTENER`), which a workload would answer with CONTINUE behind the
//!   defender's back. Prints `listener=ok` or `listener=ERRNO`; on success it exits at once (nothing
//!   here answers that listener, so an exec would wait forever).
//! - `allow-all`: installs a filter that answers ALLOW for every call. Prints `allow-all=ok` or
//!   `allow-all=ERRNO`.
//!
//! Then, either way, execs PROGRAM with its arguments (and prints `exec=ERRNO` if that fails).

use std::ffi::CString;

use nix::errno::Errno;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const EXECVE: u32 = 59;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn install(prog: &mut [libc::sock_filter], flags: libc::c_ulong) -> Result<i64, Errno> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, program) = match args.split_first() {
        Some((m, rest)) if !rest.is_empty() => (m.as_str(), rest),
        _ => {
            eprintln!("usage: attack_seccomp listener|allow-all PROGRAM [ARG]...");
            std::process::exit(2)
        }
    };
    let ld_nr = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let result = match mode {
        "listener" => {
            // if nr == execve: USER_NOTIF, else ALLOW (the architecture check does not matter to
            // whether the kernel accepts a second listener).
            let mut prog = [
                stmt(ld_nr, 0),
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: EXECVE,
                },
                stmt(ret, SECCOMP_RET_USER_NOTIF),
                stmt(ret, SECCOMP_RET_ALLOW),
            ];
            install(&mut prog, SECCOMP_FILTER_FLAG_NEW_LISTENER)
        }
        "allow-all" => install(&mut [stmt(ret, SECCOMP_RET_ALLOW)], 0),
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2)
        }
    };
    match result {
        Ok(_) if mode == "listener" => {
            println!("{mode}=ok");
            std::process::exit(0)
        }
        Ok(_) => println!("{mode}=ok"),
        Err(e) => println!("{mode}={e:?}"),
    }
    let argv: Vec<CString> = program
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap())
        .collect();
    let env: Vec<CString> = std::env::vars()
        .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap())
        .collect();
    let e = nix::unistd::execve(&argv[0], &argv, &env).unwrap_err();
    println!("exec={e:?}");
    std::process::exit(1)
}
