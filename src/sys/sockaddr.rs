//! Kernel layouts of socket call arguments, as pure functions on bytes: `struct sockaddr_in` and
//! `sockaddr_in6` (which address the kernel acts on, [`target`]), `struct msghdr`/`mmsghdr`, and
//! the walk of ancillary data (`struct cmsghdr`, CMSG_NXTHDR). No system call here: what is read
//! from a caller ([`super::copyin`]) and what is performed ([`super::socket`]) both use them.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Why a message could not be read or is refused: the errno the kernel would have given.
pub type Errno = i32;

/// How the kernel reads an address: each call family has its own rules for `AF_UNSPEC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Connect,
    Bind,
    Send,
}

const SIN_LEN: usize = 16; // sizeof(struct sockaddr_in)
const SIN6_LEN: usize = 24; // SIN6_LEN_RFC2133: the kernel accepts a sockaddr_in6 without scope id

fn family(bytes: &[u8]) -> Option<i32> {
    Some(i32::from(u16::from_ne_bytes(
        bytes.get(..2)?.try_into().ok()?,
    )))
}

fn v4(bytes: &[u8]) -> Option<SocketAddr> {
    if bytes.len() < SIN_LEN {
        return None;
    }
    let port = u16::from_be_bytes([bytes[2], bytes[3]]);
    let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
    Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}

fn v6(bytes: &[u8]) -> Option<SocketAddr> {
    if bytes.len() < SIN6_LEN {
        return None;
    }
    let port = u16::from_be_bytes([bytes[2], bytes[3]]);
    let ip: [u8; 16] = bytes[8..24].try_into().ok()?;
    Some(SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(ip),
        port,
        0,
        0,
    )))
}

/// An IPv4 or IPv6 socket address by its own family (what getsockname(2) returns).
pub fn inet_address(bytes: &[u8]) -> Option<SocketAddr> {
    match family(bytes)? {
        libc::AF_INET => v4(bytes),
        libc::AF_INET6 => v6(bytes),
        _ => None,
    }
}

/// A socket address as the kernel takes it: `struct sockaddr_in` or `struct sockaddr_in6`.
pub fn encode(addr: SocketAddr) -> Vec<u8> {
    match addr {
        SocketAddr::V4(a) => {
            let mut b = vec![0u8; SIN_LEN];
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            b
        }
        SocketAddr::V6(a) => {
            let mut b = vec![0u8; 28]; // sizeof(struct sockaddr_in6)
            b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&a.ip().octets());
            b[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            b
        }
    }
}

/// The destination (or, for `bind`, the local address) the kernel will use when an IPv4 or IPv6
/// socket of family `domain` gets `bytes` in call `use_`; `None` when it uses none (AF_UNSPEC
/// "disconnect", a send without address) or will refuse the address anyway (wrong family, too
/// short: the call is performed with these very bytes, so the kernel's own error comes back).
///
/// The kernel's readings mirrored here: `connect` treats AF_UNSPEC as disconnect
/// (inet_dgram_connect, inet_stream_connect); an IPv6 UDP socket takes an AF_INET address
/// (ip6_datagram_connect, udpv6_sendmsg); an IPv4 UDP send takes AF_UNSPEC as AF_INET
/// (udp_sendmsg); an IPv4 bind takes AF_UNSPEC with INADDR_ANY as AF_INET (inet_bind_sk).
pub fn target(use_: Use, domain: i32, bytes: &[u8]) -> Option<SocketAddr> {
    let fam = family(bytes)?;
    match (domain, fam, use_) {
        (_, libc::AF_UNSPEC, Use::Connect) => None,
        (libc::AF_INET, libc::AF_INET, _) => v4(bytes),
        (libc::AF_INET, libc::AF_UNSPEC, Use::Send) => v4(bytes),
        (libc::AF_INET, libc::AF_UNSPEC, Use::Bind) => {
            v4(bytes).filter(|a| a.ip() == Ipv4Addr::UNSPECIFIED)
        }
        (libc::AF_INET6, libc::AF_INET6, _) => v6(bytes),
        (libc::AF_INET6, libc::AF_INET, Use::Connect | Use::Send) => v4(bytes),
        _ => None,
    }
}

/// `struct msghdr` as x86_64 lays it out (56 bytes).
pub const MSGHDR_SIZE: usize = 56;
/// `struct mmsghdr`: a msghdr and the `msg_len` the kernel fills in, padded to 64 bytes.
pub const MMSGHDR_SIZE: usize = 64;
/// Offset of `msg_len` in `struct mmsghdr`.
pub const MMSG_LEN_OFFSET: u64 = 56;
/// UIO_MAXIOV: more iovecs is EMSGSIZE; sendmmsg(2) also sends at most this many messages.
pub const MAX_IOV: usize = 1024;

/// The pointers and lengths of one `struct msghdr`, as read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgHdr {
    pub name: u64,
    pub namelen: u32,
    pub iov: u64,
    pub iovlen: u64,
    pub control: u64,
    pub controllen: u64,
}

impl MsgHdr {
    pub fn parse(b: &[u8; MSGHDR_SIZE]) -> MsgHdr {
        MsgHdr {
            name: u64_at(b, 0),
            namelen: u32::from_ne_bytes(b[8..12].try_into().expect("4 bytes")),
            iov: u64_at(b, 16),
            iovlen: u64_at(b, 24),
            control: u64_at(b, 32),
            controllen: u64_at(b, 40),
        }
    }
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One control message of ancillary data: its level, type, and where its data is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmsg {
    pub level: i32,
    pub kind: i32,
    pub data: std::ops::Range<usize>,
}

/// The control messages of ancillary data, as the kernel walks them (CMSG_NXTHDR: each aligned
/// to 8 bytes; bytes too few for another header end the list); EINVAL for a malformed one.
pub fn cmsgs(control: &[u8]) -> Result<Vec<Cmsg>, Errno> {
    const HDR: usize = 16; // struct cmsghdr { size_t len; int level; int type; }
    let mut out = Vec::new();
    let mut at = 0;
    while control.len() - at >= HDR {
        let len = u64_at(control, at) as usize;
        let level = i32::from_ne_bytes(control[at + 8..at + 12].try_into().expect("4 bytes"));
        let kind = i32::from_ne_bytes(control[at + 12..at + 16].try_into().expect("4 bytes"));
        if len < HDR || len > control.len() - at {
            return Err(libc::EINVAL);
        }
        out.push(Cmsg {
            level,
            kind,
            data: at + HDR..at + len,
        });
        at += len.next_multiple_of(8);
        if at >= control.len() {
            break;
        }
    }
    Ok(out)
}

/// Appends an SCM_CREDENTIALS message carrying `ucred` to ancillary data whose messages are
/// `list`, after the last of them (bytes after it, which the kernel ignores, are dropped).
pub fn append_credentials(control: &mut Vec<u8>, list: &[Cmsg], ucred: [u8; 12]) {
    let end = list.last().map_or(0, |c| c.data.end.next_multiple_of(8));
    control.truncate(end);
    control.resize(end, 0);
    let len: u64 = 16 + 12;
    control.extend_from_slice(&len.to_ne_bytes());
    control.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
    control.extend_from_slice(&libc::SCM_CREDENTIALS.to_ne_bytes());
    control.extend_from_slice(&ucred);
    control.resize(control.len().next_multiple_of(8), 0);
}

/// Whether a unix socket address is a pathname relative to the working directory (not an
/// absolute path, not an abstract name, not the unnamed address), which resolves from the cwd.
pub fn unix_path_is_relative(addr: &[u8]) -> bool {
    family(addr) == Some(libc::AF_UNIX) && addr.get(2).is_some_and(|&b| b != 0 && b != b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sin(family: i32, port: u16, ip: [u8; 4]) -> Vec<u8> {
        let mut b = vec![0u8; SIN_LEN];
        b[..2].copy_from_slice(&(family as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip);
        b
    }

    fn sin6(port: u16, ip: &str) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[8..24].copy_from_slice(&ip.parse::<Ipv6Addr>().unwrap().octets());
        b
    }

    #[test]
    fn encodes_what_it_parses() {
        for a in [
            "10.53.0.1:53",
            "[fd00::53]:5353",
            "[::ffff:127.0.0.1]:40000",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(inet_address(&encode(addr)), Some(addr), "{a}");
        }
        assert_eq!(
            encode("1.2.3.4:80".parse().unwrap()),
            sin(libc::AF_INET, 80, [1, 2, 3, 4])
        );
    }

    #[test]
    fn targets_as_the_kernel_reads_them() {
        let a4 = sin(libc::AF_INET, 80, [203, 0, 113, 5]);
        let unspec = sin(libc::AF_UNSPEC, 80, [203, 0, 113, 5]);
        let unspec_any = sin(libc::AF_UNSPEC, 8080, [0, 0, 0, 0]);
        let a6 = sin6(443, "2001:db8::1");
        let mapped = sin6(53, "::ffff:203.0.113.5");
        let short4 = a4[..8].to_vec();
        let unix = {
            let mut b = vec![0u8; 20];
            b[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
            b
        };
        let (v4s, v6s) = (libc::AF_INET, libc::AF_INET6);
        let some = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        type Case<'a> = (&'a str, Use, i32, &'a [u8], Option<SocketAddr>);
        let cases: &[Case] = &[
            ("v4 connect", Use::Connect, v4s, &a4, some("203.0.113.5:80")),
            ("v4 send", Use::Send, v4s, &a4, some("203.0.113.5:80")),
            (
                "AF_UNSPEC connect disconnects",
                Use::Connect,
                v4s,
                &unspec,
                None,
            ),
            (
                "AF_UNSPEC send on v4 is AF_INET",
                Use::Send,
                v4s,
                &unspec,
                some("203.0.113.5:80"),
            ),
            (
                "AF_UNSPEC send on v6 has no address",
                Use::Send,
                v6s,
                &unspec,
                None,
            ),
            (
                "AF_UNSPEC bind on v4 with any",
                Use::Bind,
                v4s,
                &unspec_any,
                some("0.0.0.0:8080"),
            ),
            (
                "AF_UNSPEC bind on v4 with an address is refused",
                Use::Bind,
                v4s,
                &unspec,
                None,
            ),
            (
                "v6 connect",
                Use::Connect,
                v6s,
                &a6,
                some("[2001:db8::1]:443"),
            ),
            (
                "mapped stays v6 here; the policy canonicalizes",
                Use::Send,
                v6s,
                &mapped,
                some("[::ffff:203.0.113.5]:53"),
            ),
            (
                "v4 address on a v6 socket",
                Use::Connect,
                v6s,
                &a4,
                some("203.0.113.5:80"),
            ),
            ("v4 address on a v6 socket, bind", Use::Bind, v6s, &a4, None),
            ("v6 address on a v4 socket", Use::Connect, v4s, &a6, None),
            ("too short", Use::Connect, v4s, &short4, None),
            ("v6 too short", Use::Connect, v6s, &a6[..20], None),
            ("unix", Use::Connect, v4s, &unix, None),
            ("empty", Use::Send, v4s, &[], None),
        ];
        for (what, use_, domain, bytes, want) in cases {
            assert_eq!(target(*use_, *domain, bytes), *want, "{what}");
        }
    }

    #[test]
    fn unix_paths() {
        let sun = |path: &[u8]| [&(libc::AF_UNIX as u16).to_ne_bytes()[..], path].concat();
        let cases: &[(&str, Vec<u8>, bool)] = &[
            ("relative", sun(b"srv.sock\0"), true),
            ("absolute", sun(b"/run/srv.sock\0"), false),
            ("abstract", sun(b"\0name"), false),
            ("unnamed", sun(b""), false),
            ("not unix", sin(libc::AF_INET, 53, [1, 2, 3, 4]), false),
        ];
        for (what, addr, want) in cases {
            assert_eq!(unix_path_is_relative(addr), *want, "{what}");
        }
    }

    #[test]
    fn walks_control_messages() {
        let rights = |n: usize| {
            let len = 16 + 4 * n;
            let mut b = vec![0u8; len.next_multiple_of(8)];
            b[..8].copy_from_slice(&(len as u64).to_ne_bytes());
            b[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
            b[12..16].copy_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
            b
        };
        let two = [rights(1), rights(3)].concat();
        let got = cmsgs(&two).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].data, 16..20);
        assert_eq!(got[1].data, 24 + 16..24 + 28);
        assert_eq!(
            cmsgs(&two[..30]).unwrap().len(),
            1,
            "a partial header ends the list"
        );
        assert_eq!(
            cmsgs(&two[..40]),
            Err(libc::EINVAL),
            "a message past the end"
        );
        assert_eq!(cmsgs(&[0u8; 8]), Ok(vec![]));
    }
}
