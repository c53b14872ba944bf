//! Attack program for `tests/attack_raw_socket.rs`: sockets that write their own headers, so that
//! what goes out is not what the address of the send says. Also the plain helpers the test needs
//! around them (a UDP listener that counts datagrams, a plain UDP send, a ping).
//!
//! Usage: `attack_raw SUBCOMMAND ARGS...`; every IP is IPv4.
//!
//! | subcommand | what it does |
//! |---|---|
//! | `udp-dns SERVER NAME` | raw UDP socket (AF_INET, SOCK_RAW, IPPROTO_UDP): a UDP header to port 53 and an A question for NAME, `sendto(SERVER, port 0)` |
//! | `udp-port IP SOCKADDR_PORT HEADER_PORT` | raw UDP socket: a UDP header to HEADER_PORT, `sendto(IP:SOCKADDR_PORT)` |
//! | `hdrincl SOCKADDR_IP HEADER_IP PORT` | IPPROTO_RAW socket (IP_HDRINCL): its own IP header to HEADER_IP, UDP to PORT, `sendto(SOCKADDR_IP)` |
//! | `packet SRC DST NAME` | AF_PACKET SOCK_DGRAM socket: an IPv4 packet SRC → DST:53 with an A question for NAME, sent on `lo` |
//! | `udp-port-fd FD IP SOCKADDR_PORT HEADER_PORT` | `udp-port` on the raw socket FD it inherited, made before the filter |
//! | `ping IP` | ICMP datagram socket (SOCK_DGRAM, IPPROTO_ICMP): `sendto(IP)` an echo request, wait 5 s for the reply |
//! | `int80-socket` | i386 `socket(AF_INET, SOCK_RAW, IPPROTO_UDP)` (`int 0x80`, eax = 359) |
//! | `int80-socketcall` | i386 `socketcall(SYS_SOCKET, [AF_INET, SOCK_RAW, IPPROTO_UDP])` (eax = 102), its arguments below 4 GiB |
//! | `int80-connect IP PORT` | a UDP socket (x86_64 `socket`), then i386 `connect` (eax = 362) to IP:PORT, the sockaddr below 4 GiB; prints `connect=ok` / `connect=ERRNO` |
//! | `udp-listen IP:PORT` | binds a UDP socket, prints `listening`, then counts datagrams until one reads `sentinel`; prints `count=N` (N without the sentinel) |
//! | `udp-send IP:PORT TEXT` | one plain UDP datagram |
//!
//! Prints `socket=ok` or `socket=ERRNO`, then `sendto=ok` / `sendto=ERRNO` (or `ping=ok`); the
//! exit status is 0 when every call succeeded, 1 otherwise.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use defender_test_programs::int80::{int80, low_memory};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ok = match args.as_slice() {
        ["udp-dns", server, name] => {
            let udp = udp_header(40053, 53, &dns_query(name));
            raw_send(libc::IPPROTO_UDP, &udp, ip(server), 0)
        }
        ["udp-port", addr, sockaddr_port, header_port] => {
            let udp = udp_header(40000, port(header_port), b"raw");
            raw_send(libc::IPPROTO_UDP, &udp, ip(addr), port(sockaddr_port))
        }
        ["udp-port-fd", fd, addr, sockaddr_port, header_port] => {
            let fd: i32 = fd.parse().expect("a descriptor");
            // SAFETY: the test hands this descriptor down for this program alone.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let udp = udp_header(40000, port(header_port), b"raw");
            send_to(&fd, &udp, &sockaddr_in(ip(addr), port(sockaddr_port)))
        }
        ["hdrincl", sockaddr_ip, header_ip, header_port] => {
            let udp = udp_header(40000, port(header_port), b"hdrincl");
            let packet = ipv4_packet(Ipv4Addr::UNSPECIFIED, ip(header_ip), &udp);
            raw_send(libc::IPPROTO_RAW, &packet, ip(sockaddr_ip), 0)
        }
        ["packet", src, dst, name] => {
            let udp = udp_header(40053, 53, &dns_query(name));
            packet_send(&ipv4_packet(ip(src), ip(dst), &udp))
        }
        ["ping", addr] => ping(ip(addr)),
        ["int80-socket"] => {
            let raw = [libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP].map(|v| v as u32);
            int80_report("socket", int80(359, raw[0], raw[1], raw[2]))
        }
        ["int80-socketcall"] => int80_report("socket", socketcall_raw()),
        ["int80-connect", addr, p] => {
            let Some(fd) = socket(libc::AF_INET, libc::SOCK_DGRAM, 0) else {
                std::process::exit(1);
            };
            let sa = sockaddr_in(ip(addr), port(p));
            // SAFETY: a sockaddr_in is plain bytes; the slice covers it exactly.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&sa as *const libc::sockaddr_in).cast::<u8>(),
                    size_of::<libc::sockaddr_in>(),
                )
            };
            let len = bytes.len() as u32;
            int80_report(
                "connect",
                int80(362, fd.as_raw_fd() as u32, low_copy(bytes), len),
            )
        }
        ["udp-listen", addr] => {
            udp_listen(addr);
            true
        }
        ["udp-send", addr, text] => {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.send_to(text.as_bytes(), addr).expect("send_to");
            true
        }
        _ => {
            eprintln!("usage: attack_raw SUBCOMMAND ARGS... (see the source)");
            std::process::exit(2);
        }
    };
    std::process::exit(if ok { 0 } else { 1 });
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("an IPv4 address")
}

fn port(s: &str) -> u16 {
    s.parse().expect("a port")
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        _ => e.to_string(),
    }
}

/// `socket(domain, ty, protocol)`, printed as `socket=...`.
fn socket(domain: i32, ty: i32, protocol: i32) -> Option<OwnedFd> {
    // SAFETY: socket(2) takes integers only; a descriptor it returns is new and ours.
    let fd = unsafe { libc::socket(domain, ty, protocol) };
    if fd < 0 {
        println!("socket={}", errno_name(&std::io::Error::last_os_error()));
        return None;
    }
    println!("socket=ok");
    // SAFETY: as above.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `sendto(fd, data, addr)`, printed as `sendto=...`.
fn send_to<T>(fd: &OwnedFd, data: &[u8], addr: &T) -> bool {
    // SAFETY: `data` and `addr` are live for the call, with their true lengths.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            0,
            (addr as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if n < 0 {
        println!("sendto={}", errno_name(&std::io::Error::last_os_error()));
        return false;
    }
    println!("sendto=ok");
    true
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A raw IPv4 socket of `protocol` sending `payload` (what follows the IP header, or with
/// IPPROTO_RAW the whole packet) to `ip:port`.
fn raw_send(protocol: i32, payload: &[u8], ip: Ipv4Addr, port: u16) -> bool {
    let Some(fd) = socket(libc::AF_INET, libc::SOCK_RAW, protocol) else {
        return false;
    };
    send_to(&fd, payload, &sockaddr_in(ip, port))
}

/// An IPv4 packet sent as is on `lo` through a packet socket (the kernel adds the link header).
fn packet_send(packet: &[u8]) -> bool {
    let eth_p_ip = (libc::ETH_P_IP as u16).to_be();
    let Some(fd) = socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(eth_p_ip)) else {
        return false;
    };
    // SAFETY: the name is a NUL-terminated literal.
    let ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: eth_p_ip,
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    send_to(&fd, packet, &addr)
}

/// An ICMP echo request on a datagram socket (the kernel writes the ICMP header's id and
/// checksum), and its reply.
fn ping(ip: Ipv4Addr) -> bool {
    let Some(fd) = socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP) else {
        return false;
    };
    let echo = [8u8, 0, 0, 0, 0, 0, 0, 1, b'p', b'i', b'n', b'g'];
    if !send_to(&fd, &echo, &sockaddr_in(ip, 0)) {
        return false;
    }
    let sock = UdpSocket::from(fd);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    match sock.recv(&mut buf) {
        Ok(n) if n >= 8 && buf[0] == 0 => {
            println!("ping=ok");
            true
        }
        Ok(_) => {
            println!("ping=unexpected reply");
            false
        }
        Err(e) => {
            println!("ping={}", errno_name(&e));
            false
        }
    }
}

/// What the i386 `call` returned (a descriptor, 0 or -errno), printed as `CALL=...`.
fn int80_report(call: &str, ret: i32) -> bool {
    match ret {
        r if r >= 0 => {
            println!("{call}=ok");
            true
        }
        r if r == -libc::EPERM => {
            println!("{call}=EPERM");
            false
        }
        r => {
            println!("{call}=errno {}", -r);
            false
        }
    }
}

/// i386 `socketcall(SYS_SOCKET, args)` for a raw UDP socket: the arguments are in memory, which
/// an i386 call can only point at below 4 GiB.
fn socketcall_raw() -> i32 {
    let args = [libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP].map(|v| v as u32);
    let bytes: Vec<u8> = args.iter().flat_map(|a| a.to_ne_bytes()).collect();
    int80(102, 1, low_copy(&bytes), 0)
}

/// A copy of `bytes` below 4 GiB, where an i386 call can point; its address.
fn low_copy(bytes: &[u8]) -> u32 {
    let base = low_memory(bytes.len());
    // SAFETY: the fresh, writable mapping holds `bytes.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base, bytes.len()) };
    base as usize as u32
}

fn udp_listen(addr: &str) {
    let s = UdpSocket::bind(addr.parse::<SocketAddrV4>().expect("IP:PORT")).expect("bind");
    println!("listening");
    let mut count = 0;
    let mut buf = [0u8; 2048];
    loop {
        let n = s.recv(&mut buf).expect("recv");
        if &buf[..n] == b"sentinel" {
            break;
        }
        count += 1;
    }
    println!("count={count}");
}

/// A UDP header and `payload`; checksum 0, which IPv4 takes as none (RFC 768).
fn udp_header(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(src.to_be_bytes());
    v.extend(dst.to_be_bytes());
    v.extend((8 + payload.len() as u16).to_be_bytes());
    v.extend([0, 0]);
    v.extend(payload);
    v
}

/// An IPv4 header carrying `udp` (protocol 17), with its checksum.
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend((20 + udp.len() as u16).to_be_bytes());
    h.extend([0, 1, 0x40, 0, 64, 17, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    let sum = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let check = !((folded & 0xffff) + (folded >> 16)) as u16;
    h[10..12].copy_from_slice(&check.to_be_bytes());
    h.extend(udp);
    h
}

/// A DNS query (recursion desired) for the A records of `name`.
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}
