//! Test helper for `tests/network.rs`, `tests/dns.rs` and `bench/run`: makes the network
//! calls the defender judges (connect, the sends that carry a destination, bind, io_uring_setup),
//! one per subcommand, and prints what the kernel answered, so a test can tell EPERM (denied) from
//! the call's native outcome.
//!
//! Usage: `net_helper SUBCOMMAND ARGS...`; ADDR is `IP:PORT` or `[IPV6]:PORT` (an IPv4-mapped
//! `[::ffff:a.b.c.d]:PORT` stays an AF_INET6 address).
//!
//! | subcommand | what it does | prints |
//! |---|---|---|
//! | `connect tcp\|udp ADDR` | a socket of ADDR's family, `connect(ADDR)` | `connect=ok` or `connect=ERRNO` |
//! | `sendto ADDR` | unconnected UDP socket, `sendto(ADDR)` | `sendto=ok` / `sendto=ERRNO` |
//! | `sendmsg ADDR` | unconnected UDP socket, `sendmsg` with `msg_name` = ADDR | `sendmsg=ok` / ... |
//! | `sendmmsg ADDR` | unconnected UDP socket, one `sendmmsg` of two datagrams (10 and 12 bytes) to ADDR | `sendmmsg=2 lens=10,12` (messages sent, the `msg_len` the call wrote in each header) / `sendmmsg=ERRNO` |
//! | `bind tcp\|udp ADDR` | `bind(ADDR)`, then `listen` for tcp | `bind=ok` / `bind=ERRNO` |
//! | `io-uring` | raw `io_uring_setup(1, &params)` (syscall 425) | `io_uring_setup=ok` / `io_uring_setup=ERRNO` |
//! | `unix DIR` | a unix stream listener and client, and a unix datagram `sendto`, in DIR | `unix=ok` / `unix: STEP=ERRNO` |
//! | `dns-connect-write SERVER NAME` | Go's resolver pattern: UDP socket, `connect(SERVER:53)`, `write` an A query for NAME, `read` the answer (5 s timeout) | `rcode=N answers=IP,IP` / `dns=ERRNO` |
//! | `race-connect ALLOWED DENIED PORT N` | N times: a new UDP socket, `connect` to a sockaddr_in whose address a thread flips between the IPv4 addresses ALLOWED and DENIED; `getpeername` tells where it went | `race: allowed=A denied=D eperm=E other=O` |
//! | `race-dns SERVER ALLOWED DENIED N` | N times: `sendto(SERVER:53)` an A query whose name a thread flips between ALLOWED and DENIED (same length, differing within 8 bytes), then waits up to 0.5 s for an answer | `race: sent=S eperm=E other=O answered=A` |
//! | `connect-loop N ADDR` | one UDP socket, `connect(ADDR)` N times | `elapsed_s=SECONDS ns_per_call=NS` |
//! | `sendto-loop N ADDR` | one unconnected UDP socket, `sendto(ADDR)` of 8 bytes N times | `elapsed_s=SECONDS ns_per_call=NS` |
//! | `bind-loop N IP` | N times: a new UDP socket, `bind(IP:0)`, close (the socket and close are in the figure, natively too) | `elapsed_s=SECONDS ns_per_call=NS` |
//! | `tcp-bulk BYTES` | a loopback TCP connection inside this process: `send()` BYTES, a thread receives them | `elapsed_s=SECONDS received=BYTES` |
//! | `resolve-loop N NAME` | N `getaddrinfo(NAME)` lookups (std's `ToSocketAddrs`): glibc's, or musl's when built for the musl target | `elapsed_s=SECONDS ns_per_call=NS` |
//! | `http-serve ADDR` | an HTTP/1.1 server on ADDR, a thread per connection, keep-alive, the same 13-byte answer to every request; runs until killed | `listening=ADDR` once it accepts |
//! | `http-get-loop N ADDR` | N times: a new TCP connection to ADDR, one `GET`, the whole answer read, close | `elapsed_s=SECONDS ns_per_call=NS` |
//! | `thread-resolve NAME...` | a thread that is not the process's first looks up each NAME in turn (glibc) | `pid=P tid=T` then `NAME=ok` or `NAME=failed` each |
//!
//! The `race-` subcommands attack the time between the supervisor's read of the caller's memory
//! and the kernel's own: a defender that decided on one read and let the kernel read again
//! (`CONTINUE`) would let the denied value through now and then.
//!
//! ERRNO is the symbolic name (`EPERM`, `ECONNREFUSED`, ...). The exit status is 0 when every call
//! succeeded, 1 when one failed, 2 on bad usage.

use std::io::IoSlice;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, Backlog, MsgFlags, MultiHeaders, SockFlag, SockType, SockaddrStorage,
    sockopt,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ok = match args.as_slice() {
        ["connect", kind, addr] => report("connect", connect(kind_of(kind), parse(addr))),
        ["sendto", addr] => report("sendto", send_to(parse(addr))),
        ["sendmsg", addr] => report("sendmsg", send_msg(parse(addr))),
        ["sendmmsg", addr] => match send_mmsg(parse(addr)) {
            Ok(lens) => {
                let list: Vec<String> = lens.iter().map(usize::to_string).collect();
                println!("sendmmsg={} lens={}", lens.len(), list.join(","));
                true
            }
            Err(e) => report("sendmmsg", Err(e)),
        },
        ["bind", kind, addr] => report("bind", bind(kind_of(kind), parse(addr))),
        ["io-uring"] => report("io_uring_setup", io_uring_setup()),
        ["unix", dir] => match unix(dir) {
            Ok(()) => {
                println!("unix=ok");
                true
            }
            Err((step, e)) => {
                println!("unix: {step}={e:?}");
                false
            }
        },
        ["dns-connect-write", server, name] => match dns_connect_write(server, name) {
            Ok((rcode, answers)) => {
                println!("rcode={rcode} answers={}", answers.join(","));
                true
            }
            Err(e) => report("dns", Err(e)),
        },
        ["race-connect", allowed, denied, port, n] => {
            race_connect(allowed, denied, port, count(n));
            true
        }
        ["race-dns", server, allowed, denied, n] => {
            race_dns(server, allowed, denied, count(n));
            true
        }
        ["connect-loop", n, addr] => {
            let addr = parse(addr);
            let fd = new_socket(addr, SockType::Datagram);
            let target = SockaddrStorage::from(addr);
            timed_loop(count(n), || {
                socket::connect(fd.as_raw_fd(), &target).expect("connect");
            })
        }
        ["sendto-loop", n, addr] => {
            let addr = parse(addr);
            let fd = new_socket(addr, SockType::Datagram);
            let target = SockaddrStorage::from(addr);
            timed_loop(count(n), || {
                socket::sendto(fd.as_raw_fd(), b"sendto\r\n", &target, MsgFlags::empty())
                    .expect("sendto");
            })
        }
        ["bind-loop", n, ip] => {
            let addr = SocketAddr::new(ip.parse().unwrap_or_else(|_| usage()), 0);
            timed_loop(count(n), || {
                let fd = new_socket(addr, SockType::Datagram);
                socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).expect("bind");
            })
        }
        ["tcp-bulk", bytes] => {
            let (elapsed, received) = tcp_bulk(count(bytes));
            println!("elapsed_s={elapsed:.6} received={received}");
            true
        }
        ["resolve-loop", n, name] => timed_loop(count(n), || {
            (*name, 0).to_socket_addrs().expect("getaddrinfo");
        }),
        ["http-serve", addr] => http_serve(parse(addr)),
        ["http-get-loop", n, addr] => {
            let addr = parse(addr);
            timed_loop(count(n), || http_get(addr))
        }
        ["thread-resolve", names @ ..] if !names.is_empty() => {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            std::thread::spawn(move || {
                println!("pid={} tid={}", std::process::id(), nix::unistd::gettid());
                for name in names {
                    let found = (name.as_str(), 0).to_socket_addrs().is_ok();
                    println!("{name}={}", if found { "ok" } else { "failed" });
                }
            })
            .join()
            .is_ok()
        }
        _ => usage(),
    };
    std::process::exit(if ok { 0 } else { 1 });
}

/// Runs `call` n times; prints the time it took in all and per call (process start-up excluded).
fn timed_loop(n: u64, mut call: impl FnMut()) -> bool {
    let t0 = Instant::now();
    for _ in 0..n {
        call();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let per_call = elapsed * 1e9 / n.max(1) as f64;
    println!("elapsed_s={elapsed:.6} ns_per_call={per_call:.0}");
    true
}

/// The one answer of `http-serve`: small, so that the figure is the cost of connections and
/// requests, not of bytes.
const HTTP_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, bench\n";

/// Serves HTTP_ANSWER to every request (a request ends at its blank line; `GET` has no body)
/// until killed; a connection lasts as long as its client keeps it.
fn http_serve(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let listener = TcpListener::bind(addr).expect("bind");
    println!("listening={}", listener.local_addr().expect("local_addr"));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            let mut pending = Vec::new();
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    pending.drain(..end + 4);
                    if conn.write_all(HTTP_ANSWER).is_err() {
                        return;
                    }
                }
            }
        });
    }
    true
}

/// One `GET` on a new connection; panics unless the answer is `http-serve`'s.
fn http_get(addr: SocketAddr) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        .expect("write");
    let mut answer = [0u8; HTTP_ANSWER.len()];
    conn.read_exact(&mut answer).expect("read");
    assert_eq!(&answer[..], HTTP_ANSWER, "not http-serve's answer");
}

fn usage() -> ! {
    eprintln!("usage: net_helper SUBCOMMAND ARGS... (see the table at the top of net_helper.rs)");
    std::process::exit(2);
}

fn parse(addr: &str) -> SocketAddr {
    addr.parse().unwrap_or_else(|_| usage())
}

fn count(n: &str) -> u64 {
    n.parse().unwrap_or_else(|_| usage())
}

fn kind_of(kind: &str) -> SockType {
    match kind {
        "tcp" => SockType::Stream,
        "udp" => SockType::Datagram,
        _ => usage(),
    }
}

/// `NAME=ok` or `NAME=ERRNO`; whether it succeeded.
fn report(name: &str, r: Result<(), Errno>) -> bool {
    match r {
        Ok(()) => println!("{name}=ok"),
        Err(e) => println!("{name}={e:?}"),
    }
    r.is_ok()
}

fn new_socket(addr: SocketAddr, kind: SockType) -> OwnedFd {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    socket::socket(family, kind, SockFlag::SOCK_CLOEXEC, None).expect("socket")
}

fn connect(kind: SockType, addr: SocketAddr) -> Result<(), Errno> {
    let fd = new_socket(addr, kind);
    socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr))
}

fn send_to(addr: SocketAddr) -> Result<(), Errno> {
    let fd = new_socket(addr, SockType::Datagram);
    let target = SockaddrStorage::from(addr);
    socket::sendto(fd.as_raw_fd(), b"sendto", &target, MsgFlags::empty()).map(drop)
}

fn send_msg(addr: SocketAddr) -> Result<(), Errno> {
    let fd = new_socket(addr, SockType::Datagram);
    let target = SockaddrStorage::from(addr);
    let iov = [IoSlice::new(b"sendmsg")];
    socket::sendmsg(fd.as_raw_fd(), &iov, &[], MsgFlags::empty(), Some(&target)).map(drop)
}

/// The `msg_len` of each datagram one `sendmmsg` sent, of two: the kernel (or whoever performs
/// the call) writes it into the caller's header; it starts at 0.
fn send_mmsg(addr: SocketAddr) -> Result<Vec<usize>, Errno> {
    let fd = new_socket(addr, SockType::Datagram);
    let target = SockaddrStorage::from(addr);
    let first = [IoSlice::new(b"sendmmsg 1")];
    let second = [IoSlice::new(b"sendmmsg two")];
    let slices = [&first[..], &second[..]];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
    let sent = socket::sendmmsg(
        fd.as_raw_fd(),
        &mut headers,
        slices.iter(),
        [Some(target), Some(target)],
        [],
        MsgFlags::empty(),
    )?;
    Ok(sent.map(|m| m.bytes).collect())
}

fn bind(kind: SockType, addr: SocketAddr) -> Result<(), Errno> {
    let fd = new_socket(addr, kind);
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    if kind == SockType::Stream {
        socket::listen(&fd, Backlog::new(16).expect("backlog"))?;
    }
    Ok(())
}

fn io_uring_setup() -> Result<(), Errno> {
    // struct io_uring_params is 120 bytes; all zero asks for the defaults.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup reads and writes `params` (120 bytes, owned and live across the
    // call); it takes no other pointer.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    let fd = Errno::result(fd)?;
    // SAFETY: `fd` is the ring the call above just returned, owned by nothing else.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// A unix stream connection and a unix datagram `sendto`/`sendmsg`: none of them is a network
/// connection, so no rule may stop them. Fails with the step that failed.
fn unix(dir: &str) -> Result<(), (&'static str, Errno)> {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(0));
    let stream_path = format!("{dir}/stream.sock");
    let dgram_path = format!("{dir}/dgram.sock");
    let _ = std::fs::remove_file(&stream_path);
    let _ = std::fs::remove_file(&dgram_path);

    let listener = UnixListener::bind(&stream_path).map_err(|e| ("bind", errno(e)))?;
    let mut client = UnixStream::connect(&stream_path).map_err(|e| ("connect", errno(e)))?;
    let (mut server, _) = listener.accept().map_err(|e| ("accept", errno(e)))?;
    client.write_all(b"ping").map_err(|e| ("write", errno(e)))?;
    let mut buf = [0u8; 4];
    server
        .read_exact(&mut buf)
        .map_err(|e| ("read", errno(e)))?;

    let receiver = UnixDatagram::bind(&dgram_path).map_err(|e| ("bind-dgram", errno(e)))?;
    let sender = UnixDatagram::unbound().map_err(|e| ("socket-dgram", errno(e)))?;
    sender
        .send_to(b"sendto", &dgram_path)
        .map_err(|e| ("sendto", errno(e)))?;
    let target = socket::UnixAddr::new(dgram_path.as_str()).map_err(|e| ("unix-addr", e))?;
    socket::sendmsg(
        sender.as_raw_fd(),
        &[IoSlice::new(b"sendmsg")],
        &[],
        MsgFlags::empty(),
        Some(&target),
    )
    .map_err(|e| ("sendmsg", e))?;
    let mut buf = [0u8; 16];
    for _ in 0..2 {
        receiver
            .recv(&mut buf)
            .map_err(|e| ("recv-dgram", errno(e)))?;
    }
    Ok(())
}

/// Go's resolver pattern: a connected UDP socket, `write`, `read`. Returns the answer's RCODE and
/// the IPv4 addresses in its answer section.
fn dns_connect_write(server: &str, name: &str) -> Result<(u8, Vec<String>), Errno> {
    let addr = SocketAddr::new(server.parse().unwrap_or_else(|_| usage()), 53);
    let fd = new_socket(addr, SockType::Datagram);
    socket::setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(5, 0),
    )?;
    socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    let id = (std::process::id() & 0xffff) as u16;
    nix::unistd::write(&fd, &dns_query(id, name))?;
    let mut buf = [0u8; 1500];
    let n = nix::unistd::read(&fd, &mut buf)?;
    Ok(dns_answer(id, &buf[..n]))
}

/// A DNS query (RFC 1035 §4.1) for the A records of `name`, recursion desired.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The RCODE and the A records of an answer to [`dns_query`]; panics on an answer that is not one.
fn dns_answer(id: u16, msg: &[u8]) -> (u8, Vec<String>) {
    assert!(msg.len() >= 12, "short DNS answer: {msg:?}");
    assert_eq!(
        u16::from_be_bytes([msg[0], msg[1]]),
        id,
        "answer to another query"
    );
    let rcode = msg[3] & 0x0f;
    let questions = u16::from_be_bytes([msg[4], msg[5]]);
    let answers = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at) + 4;
    }
    let mut found = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at);
        let kind = u16::from_be_bytes([msg[at], msg[at + 1]]);
        let len = u16::from_be_bytes([msg[at + 8], msg[at + 9]]) as usize;
        let data = &msg[at + 10..at + 10 + len];
        if kind == 1 && len == 4 {
            found.push(format!("{}.{}.{}.{}", data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    (rcode, found)
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> usize {
    loop {
        match msg[at] {
            0 => return at + 1,
            len if len & 0xc0 == 0xc0 => return at + 2,
            len => at += 1 + len as usize,
        }
    }
}

/// Sends `bytes` with `send()` (a `sendto` with no address) over a loopback TCP connection to a
/// receiving thread; the wall time of the whole transfer and how many bytes arrived.
fn tcp_bulk(bytes: u64) -> (f64, u64) {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match conn.read(&mut buf).expect("read") {
                0 => return total,
                n => total += n as u64,
            }
        }
    });
    let fd = new_socket(addr, SockType::Stream);
    let chunk = vec![0x5au8; 1 << 16];
    let t0 = Instant::now();
    socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)).expect("connect");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        left -= socket::send(fd.as_raw_fd(), &chunk[..n], MsgFlags::empty()).expect("send") as u64;
    }
    drop(fd);
    let received = receiver.join().expect("receiver");
    (t0.elapsed().as_secs_f64(), received)
}

/// Starts a thread that stores `a` and `b` into `word` in turn, forever, and returns once it runs.
fn flip_forever(word: &'static AtomicU64, a: u64, b: u64) {
    static FLIPPING: AtomicBool = AtomicBool::new(false);
    std::thread::spawn(move || {
        FLIPPING.store(true, Ordering::Release);
        loop {
            word.store(b, Ordering::Relaxed);
            word.store(a, Ordering::Relaxed);
        }
    });
    while !FLIPPING.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
}

/// `race-connect ALLOWED DENIED PORT N` (see the table at the top).
fn race_connect(allowed: &str, denied: &str, port: &str, n: u64) {
    let ip = |s: &str| -> std::net::Ipv4Addr { s.parse().unwrap_or_else(|_| usage()) };
    let (allowed, denied) = (ip(allowed), ip(denied));
    let port: u16 = port.parse().unwrap_or_else(|_| usage());
    // struct sockaddr_in: family (2 bytes), port (2, big-endian), address (4), zero (8). The
    // first 8 bytes, family to address, are one aligned word: a store flips it whole.
    let word = |addr: std::net::Ipv4Addr| {
        let mut b = [0u8; 8];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..].copy_from_slice(&addr.octets());
        u64::from_ne_bytes(b)
    };
    let (word_a, word_d) = (word(allowed), word(denied));
    // Never freed: the flipping thread stores into it until the process exits.
    let sockaddr: &'static [AtomicU64; 2] =
        Box::leak(Box::new([AtomicU64::new(word_a), AtomicU64::new(0)]));
    flip_forever(&sockaddr[0], word_a, word_d);
    let (mut to_allowed, mut to_denied, mut eperm, mut other) = (0, 0, 0, 0);
    for _ in 0..n {
        let fd = new_socket(SocketAddr::from((allowed, port)), SockType::Datagram);
        // SAFETY: `sockaddr` is 16 live bytes laid out as a sockaddr_in (another thread changes
        // the address within them: that is the point); the kernel only reads them.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                sockaddr.as_ptr().cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r != 0 {
            match Errno::last() {
                Errno::EPERM => eperm += 1,
                _ => other += 1,
            }
            continue;
        }
        match socket::getpeername::<SockaddrStorage>(fd.as_raw_fd())
            .ok()
            .and_then(|p| p.as_sockaddr_in().map(|s| s.ip()))
        {
            Some(peer) if peer == allowed => to_allowed += 1,
            Some(peer) if peer == denied => to_denied += 1,
            _ => other += 1,
        }
    }
    println!("race: allowed={to_allowed} denied={to_denied} eperm={eperm} other={other}");
}

/// `race-dns SERVER ALLOWED DENIED N` (see the table at the top).
fn race_dns(server: &str, allowed: &str, denied: &str, n: u64) {
    let id = (std::process::id() & 0xffff) as u16;
    let (qa, qd) = (dns_query(id, allowed), dns_query(id, denied));
    let differ: Vec<usize> = (0..qa.len().min(qd.len()))
        .filter(|&i| qa[i] != qd[i])
        .collect();
    let (Some(&lo), Some(&hi)) = (differ.first(), differ.last()) else {
        usage();
    };
    if qa.len() != qd.len() || hi - lo >= 8 {
        eprintln!("race-dns: the names must have the same length and differ within 8 bytes");
        std::process::exit(2);
    }
    // Start the message so that its first differing byte begins an aligned word.
    let start = (8 - lo % 8) % 8;
    let words = (start + qa.len()).div_ceil(8);
    let image = |q: &[u8]| {
        let mut bytes = vec![0u8; words * 8];
        bytes[start..start + q.len()].copy_from_slice(q);
        bytes
    };
    let (a, d) = (image(&qa), image(&qd));
    let word_at =
        |bytes: &[u8], w: usize| u64::from_ne_bytes(bytes[8 * w..8 * w + 8].try_into().unwrap());
    let w = (start + lo) / 8;
    let buf: &'static [AtomicU64] =
        Vec::from_iter((0..words).map(|i| AtomicU64::new(word_at(&a, i)))).leak();
    flip_forever(&buf[w], word_at(&a, w), word_at(&d, w));
    let msg = buf.as_ptr().cast::<u8>().wrapping_add(start);

    let target = SocketAddr::new(server.parse().unwrap_or_else(|_| usage()), 53);
    let fd = new_socket(target, SockType::Datagram);
    socket::setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 500_000),
    )
    .expect("SO_RCVTIMEO");
    let to = SockaddrStorage::from(target);
    let (mut sent, mut eperm, mut other, mut answered) = (0, 0, 0, 0);
    let mut answer = [0u8; 1500];
    for _ in 0..n {
        // SAFETY: `msg` points to `qa.len()` live bytes inside `buf` (another thread changes the
        // name within them: that is the point); `to` is a valid address. The kernel only reads.
        let r = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                msg.cast::<libc::c_void>(),
                qa.len(),
                0,
                socket::SockaddrLike::as_ptr(&to),
                socket::SockaddrLike::len(&to),
            )
        };
        if r < 0 {
            match Errno::last() {
                Errno::EPERM => eperm += 1,
                _ => other += 1,
            }
            continue;
        }
        sent += 1;
        if socket::recv(fd.as_raw_fd(), &mut answer, MsgFlags::empty()).is_ok() {
            answered += 1;
        }
    }
    println!("race: sent={sent} eperm={eperm} other={other} answered={answered}");
}
