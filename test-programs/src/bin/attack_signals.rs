//! Attack program for `tests/attack_signals.rs`: races `pidfd_send_signal` against a descriptor
//! swap, the way a workload would try to slip a signal to its supervisor past a check made on the
//! descriptor number.
//!
//! Usage: `attack_signals pidfd-swap DEFENDER_PID N`
//!
//! Starts `sleep 1000` as a harmless target and keeps one descriptor number N' that a second
//! thread flips, as fast as it can with dup2(2), between a pidfd of that child and an open
//! `/proc/DEFENDER_PID` directory (which `pidfd_send_signal` accepts as well). The main thread
//! calls `pidfd_send_signal(N', SIGSTOP)` N times. A stop that reached the defender would hang the
//! whole test (every trapped call waits for it). Prints `pidfd-swap: sent=S refused=R other=O`
//! (0, EPERM, anything else) and exits 0; the child's stops are undone with SIGCONT as they come.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("pidfd-swap") if args.len() == 4 => {
            let defender: i32 = args[2].parse().expect("DEFENDER_PID");
            let rounds: u32 = args[3].parse().expect("N");
            pidfd_swap(defender, rounds);
        }
        _ => {
            eprintln!("usage: attack_signals pidfd-swap DEFENDER_PID N");
            std::process::exit(2);
        }
    }
}

fn pidfd_swap(defender: i32, rounds: u32) {
    let mut child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("sleep starts");
    // SAFETY: test program; integers only; the result is a new descriptor or -1.
    let good = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) } as i32;
    assert!(good >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    let bad = std::fs::File::open(format!("/proc/{defender}")).expect("/proc/DEFENDER_PID");
    // SAFETY: test program; duplicates a descriptor we own.
    let n = unsafe { libc::dup(good) };
    assert!(n >= 0);

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let bad = bad.as_raw_fd();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: test program; both descriptors stay open until this thread is joined.
                unsafe {
                    libc::dup2(bad, n);
                    libc::dup2(good, n);
                }
            }
        })
    };
    let (mut sent, mut refused, mut other) = (0u32, 0u32, 0u32);
    for _ in 0..rounds {
        // SAFETY: test program; a NULL siginfo is allowed; the rest are integers.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                n,
                libc::SIGSTOP,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        match (r, std::io::Error::last_os_error().raw_os_error()) {
            (0, _) => {
                sent += 1;
                // SAFETY: test program; integers only.
                unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            }
            (_, Some(libc::EPERM)) => refused += 1,
            _ => other += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    println!("pidfd-swap: sent={sent} refused={refused} other={other}");
}
