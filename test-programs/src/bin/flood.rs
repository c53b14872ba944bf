//! Benchmark helper for `bench/flood.py`: floods the defender with denied calls from one process
//! and reports how fast they were answered and how much memory the defender (its parent) peaked at.
//!
//! Usage: `flood SUBCOMMAND N ARG`
//!
//! | subcommand | what it does N times |
//! |---|---|
//! | `exec N PATH` | `execve(PATH)` (denied by the policy, so the call returns and the loop goes on) |
//! | `connect N IP:PORT` | `connect` of one UDP socket to IP:PORT |
//! | `connect-distinct N IP` | `connect` of one UDP socket to IP's /24, a new (address, port) each time |
//!
//! Prints `ok=O errno=E elapsed_s=S parent_vmhwm_kb=K parent_vmrss_kb=R`: calls that succeeded,
//! calls that failed (denied), the wall time, and the parent's peak and current resident memory
//! (VmHWM, VmRSS of /proc/PPID/status) read after the last call.

use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, n, arg) = match args.as_slice() {
        [w, n, a] => (w.as_str(), n.parse::<u64>().expect("N"), a.as_str()),
        _ => usage(),
    };
    let start = Instant::now();
    let (ok, failed) = match what {
        "exec" => exec(n, arg),
        "connect" => {
            let addr: SocketAddrV4 = arg.parse().expect("IP:PORT");
            connect(n, |_| addr)
        }
        "connect-distinct" => {
            let base: Ipv4Addr = arg.parse().expect("IP");
            let net = u32::from(base) & 0xFFFF_FF00;
            // 256 addresses times 60,000 ports: 15 million distinct destinations.
            connect(n, |i| {
                SocketAddrV4::new(
                    Ipv4Addr::from(net | (i % 256) as u32),
                    1024 + (i / 256 % 60_000) as u16,
                )
            })
        }
        _ => usage(),
    };
    let elapsed = start.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{}/status", nix::unistd::getppid()))
        .unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("0")
            .to_string()
    };
    println!(
        "ok={ok} errno={failed} elapsed_s={elapsed:.3} parent_vmhwm_kb={} parent_vmrss_kb={}",
        field("VmHWM:"),
        field("VmRSS:")
    );
}

fn usage() -> ! {
    eprintln!("usage: flood exec|connect|connect-distinct N ARG");
    std::process::exit(2)
}

fn exec(n: u64, path: &str) -> (u64, u64) {
    let path = CString::new(path).expect("path");
    let argv = [path.clone()];
    let envp: [CString; 0] = [];
    for _ in 0..n {
        // Only returns when the launch failed; a launch that went through ends the loop, and the
        // benchmark sees the missing report.
        let _ = nix::unistd::execve(&path, &argv, &envp);
    }
    (0, n)
}

fn connect(n: u64, addr: impl Fn(u64) -> SocketAddrV4) -> (u64, u64) {
    let sock = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let (mut ok, mut failed) = (0, 0);
    for i in 0..n {
        match socket::connect(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            &SockaddrIn::from(addr(i)),
        ) {
            Ok(()) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}
