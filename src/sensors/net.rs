//! Network calls of a trapped caller as plain data: which address the kernel would act on, and the
//! copied messages of `sendto`/`sendmsg`/`sendmmsg`, read from the caller's memory with the same
//! limits and errors as the kernel (net/socket.c), so that the supervisor can decide on the copy
//! and perform the call with it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::sys::creds::{self, Creds, Ids};
use crate::sys::remote::RemoteMemory;
use crate::sys::socket::{MAX_SOCKADDR, OwnedMsg, RawAddr};

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

/// Why a message could not be copied: the errno the kernel would have given.
pub type Errno = i32;

/// `struct msghdr` as x86_64 lays it out (56 bytes).
pub const MSGHDR_SIZE: usize = 56;
/// `struct mmsghdr`: a msghdr and the `msg_len` the kernel fills in, padded to 64 bytes.
pub const MMSGHDR_SIZE: usize = 64;
/// Offset of `msg_len` in `struct mmsghdr`.
pub const MMSG_LEN_OFFSET: u64 = 56;
/// UIO_MAXIOV: more iovecs is EMSGSIZE; sendmmsg(2) also sends at most this many messages.
pub const MAX_IOV: usize = 1024;
/// Ancillary data we copy at most (the kernel's limit is net.core.optmem_max); more is ENOBUFS.
const MAX_CONTROL: usize = 64 * 1024;

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

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
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

/// Copies `len` bytes at `addr` out of the caller; EFAULT if any of them is unmapped.
pub fn read_exact(mem: &mut RemoteMemory, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match mem.read(addr + done as u64, &mut buf[done..]) {
            Ok(0) => return Err(libc::EFAULT),
            Ok(n) => done += n,
            Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EFAULT)),
        }
    }
    Ok(buf)
}

/// Copies a socket address argument (`addr`, `addrlen`); `None` for a NULL address or length 0.
pub fn read_sockaddr(
    mem: &mut RemoteMemory,
    addr: u64,
    len: u64,
) -> Result<Option<RawAddr>, Errno> {
    // The kernel reads addrlen as an int: a negative or oversized one is EINVAL.
    let len = len as u32 as i32;
    if len < 0 || len as usize > MAX_SOCKADDR {
        return Err(libc::EINVAL);
    }
    if addr == 0 || len == 0 {
        return Ok(None);
    }
    Ok(Some(RawAddr::new(&read_exact(mem, addr, len as usize)?)))
}

/// Copies one message: address, the data of every iovec (at most `max_data` bytes: `truncate`
/// says whether a longer message is cut, as a stream socket may send part of it, or refused with
/// EMSGSIZE, as a datagram must go whole), and its ancillary data.
pub fn read_msg(
    mem: &mut RemoteMemory,
    hdr: &MsgHdr,
    max_data: usize,
    truncate: bool,
) -> Result<OwnedMsg, Errno> {
    let name = read_sockaddr(mem, hdr.name, u64::from(hdr.namelen))?;
    if hdr.iovlen as usize > MAX_IOV {
        return Err(libc::EMSGSIZE);
    }
    let iovs = if hdr.iovlen == 0 {
        Vec::new()
    } else {
        read_exact(mem, hdr.iov, hdr.iovlen as usize * 16)?
    };
    let mut data = Vec::new();
    for iov in iovs.chunks_exact(16) {
        let (base, len) = (u64_at(iov, 0), u64_at(iov, 8));
        if len > isize::MAX as u64 {
            return Err(libc::EINVAL);
        }
        let room = max_data - data.len();
        if len as usize > room && !truncate {
            return Err(libc::EMSGSIZE);
        }
        data.extend(read_exact(mem, base, (len as usize).min(room))?);
        if data.len() == max_data {
            break;
        }
    }
    if hdr.controllen as usize > MAX_CONTROL {
        return Err(libc::ENOBUFS);
    }
    let control = if hdr.controllen == 0 {
        Vec::new()
    } else {
        read_exact(mem, hdr.control, hdr.controllen as usize)?
    };
    Ok(OwnedMsg {
        name,
        data,
        control,
    })
}

/// Ancillary data that only shapes how a datagram leaves (source address, TTL, traffic class,
/// segmentation, timestamps) and needs no privilege. Anything else is refused when the send is
/// performed for the caller: it would be checked against the supervisor's privileges instead of
/// the caller's (SO_MARK, SO_PRIORITY), or could send the packet elsewhere (IP_RETOPTS with a
/// source route, IPV6_RTHDR).
const SAFE_CONTROL: &[(i32, i32)] = &[
    (libc::SOL_IP, libc::IP_PKTINFO),
    (libc::SOL_IP, libc::IP_TTL),
    (libc::SOL_IP, libc::IP_TOS),
    (libc::SOL_IPV6, libc::IPV6_PKTINFO),
    (libc::SOL_IPV6, libc::IPV6_HOPLIMIT),
    (libc::SOL_IPV6, libc::IPV6_TCLASS),
    (libc::SOL_IPV6, libc::IPV6_DONTFRAG),
    (libc::SOL_UDP, libc::UDP_SEGMENT),
    (libc::SOL_SOCKET, libc::SO_TIMESTAMPING),
    (libc::SOL_SOCKET, libc::SCM_TXTIME),
];

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

/// Checks ancillary data: `Ok` when every message in it is one of [`SAFE_CONTROL`]; EINVAL for a
/// malformed list (as the kernel answers), EPERM for a refused kind.
pub fn check_control(control: &[u8]) -> Result<(), Errno> {
    for c in cmsgs(control)? {
        if !SAFE_CONTROL.contains(&(c.level, c.kind)) {
            return Err(libc::EPERM);
        }
    }
    Ok(())
}

/// CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN (linux/capability.h).
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SYS_ADMIN: u32 = 21;

/// The `struct ucred` of an explicit SCM_CREDENTIALS message that a unix-socket send performed
/// for a caller may carry. The kernel checks the claim against the sender's credentials
/// (scm_check_creds): pid its own or CAP_SYS_ADMIN, uid one of its real, effective and saved uids
/// or CAP_SETUID, gid likewise or CAP_SETGID. The performer acts with the caller's effective uid,
/// gids and effective capabilities but keeps the supervisor's real and saved uid, so the uid is
/// checked here against the caller's own; the caller's own pid, which the kernel would refuse
/// from the supervisor, is replaced by the supervisor's (`own_pid`), the pid that SO_PEERCRED and
/// the kernel's own SCM_CREDENTIALS show for every call performed for the caller. EINVAL for a
/// message of the wrong size, EPERM for a claim the caller could not make.
pub fn scm_credentials(
    data: &[u8],
    caller_pid: u32,
    caller: &Creds,
    own_pid: u32,
) -> Result<[u8; 12], Errno> {
    let data: &[u8; 12] = data.try_into().map_err(|_| libc::EINVAL)?;
    let word = |i: usize| u32::from_ne_bytes(data[i..i + 4].try_into().expect("4 bytes"));
    let (pid, uid, gid) = (word(0), word(4), word(8));
    let ids = |i: &Ids| [i.real, i.effective, i.saved];
    let uid_ok = ids(&caller.uids).contains(&uid) || caller.has_capability(CAP_SETUID);
    let gid_ok = ids(&caller.gids).contains(&gid) || caller.has_capability(CAP_SETGID);
    let pid_ok = pid == caller_pid || caller.has_capability(CAP_SYS_ADMIN);
    if !(uid_ok && gid_ok && pid_ok) {
        return Err(libc::EPERM);
    }
    let pid = if pid == caller_pid { own_pid } else { pid };
    let mut out = *data;
    out[..4].copy_from_slice(&pid.to_ne_bytes());
    Ok(out)
}

/// The `struct ucred` the kernel would attach for the caller itself when the receiver asks for
/// credentials (SO_PASSCRED; maybe_add_creds: the sender's pid and REAL uid and gid), as the
/// performer sends it explicitly: the performer keeps the supervisor's real uid (so that the
/// caller's uid cannot signal it), which the kernel would attach instead. The pid is the
/// supervisor's (`own_pid`), the only one the kernel lets it claim. The uid is the caller's real
/// uid when the kernel lets the performer claim it (it equals the caller's effective uid, or is
/// 0, the performer's real uid); otherwise (a set-user-ID program run by another user) its
/// effective uid.
pub fn sender_credentials(caller: &Creds, own_pid: u32) -> [u8; 12] {
    let uid = match caller.uids.real {
        r if r == caller.uids.effective || r == 0 => r,
        _ => caller.uids.effective,
    };
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&own_pid.to_ne_bytes());
    out[4..8].copy_from_slice(&uid.to_ne_bytes());
    out[8..].copy_from_slice(&caller.gids.real.to_ne_bytes());
    out
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

/// Whether thread `tid` has capability `cap` in its effective set (`CapEff` in /proc/TID/status).
pub fn has_capability(tid: u32, cap: u32) -> bool {
    creds::of_task(tid).is_ok_and(|c| c.has_capability(cap))
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
    fn control_messages() {
        let cmsg = |level: i32, kind: i32, data: usize| {
            let len = 16 + data;
            let mut b = vec![0u8; len.next_multiple_of(8)];
            b[..8].copy_from_slice(&(len as u64).to_ne_bytes());
            b[8..12].copy_from_slice(&level.to_ne_bytes());
            b[12..16].copy_from_slice(&kind.to_ne_bytes());
            b
        };
        let pktinfo = cmsg(libc::SOL_IP, libc::IP_PKTINFO, 12);
        let ttl = cmsg(libc::SOL_IP, libc::IP_TTL, 4);
        let mark = cmsg(libc::SOL_SOCKET, libc::SO_MARK, 4);
        let srr = cmsg(libc::SOL_IP, libc::IP_RETOPTS, 8);
        let mut bad_len = ttl.clone();
        bad_len[..8].copy_from_slice(&8u64.to_ne_bytes());
        let cases: &[(&str, Vec<u8>, Result<(), Errno>)] = &[
            ("none", vec![], Ok(())),
            ("pktinfo", pktinfo.clone(), Ok(())),
            (
                "pktinfo and ttl",
                [pktinfo.clone(), ttl.clone()].concat(),
                Ok(()),
            ),
            ("SO_MARK needs a privilege", mark.clone(), Err(libc::EPERM)),
            (
                "a source route",
                [ttl.clone(), srr].concat(),
                Err(libc::EPERM),
            ),
            ("length below the header", bad_len, Err(libc::EINVAL)),
        ];
        for (what, control, want) in cases {
            assert_eq!(check_control(control), *want, "{what}");
        }
    }

    #[test]
    fn explicit_credentials_are_the_callers_own() {
        let status = "Uid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t\n\
            CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\n";
        let user = Creds::parse_status(status).unwrap();
        let setuid = Creds {
            caps: crate::sys::creds::Caps {
                effective: 1 << CAP_SETUID,
                ..user.caps
            },
            ..user.clone()
        };
        let admin = Creds {
            caps: crate::sys::creds::Caps {
                effective: 1 << CAP_SYS_ADMIN,
                ..user.caps
            },
            ..user.clone()
        };
        let ucred = |pid: u32, uid: u32, gid: u32| {
            [pid.to_ne_bytes(), uid.to_ne_bytes(), gid.to_ne_bytes()].concat()
        };
        let (caller, own) = (40, 1);
        type Case<'a> = (&'a str, Vec<u8>, &'a Creds, Result<Vec<u8>, Errno>);
        let cases: &[Case] = &[
            (
                "its own",
                ucred(40, 1000, 100),
                &user,
                Ok(ucred(1, 1000, 100)),
            ),
            ("root's uid", ucred(40, 0, 100), &user, Err(libc::EPERM)),
            ("root's gid", ucred(40, 1000, 0), &user, Err(libc::EPERM)),
            ("another pid", ucred(41, 1000, 100), &user, Err(libc::EPERM)),
            (
                "uid with CAP_SETUID",
                ucred(40, 0, 100),
                &setuid,
                Ok(ucred(1, 0, 100)),
            ),
            (
                "pid with CAP_SYS_ADMIN",
                ucred(41, 1000, 100),
                &admin,
                Ok(ucred(41, 1000, 100)),
            ),
            (
                "too short",
                ucred(40, 1000, 100)[..8].to_vec(),
                &user,
                Err(libc::EINVAL),
            ),
        ];
        for (what, data, creds, want) in cases {
            let got = scm_credentials(data, caller, creds, own).map(|b| b.to_vec());
            assert_eq!(got, *want, "{what}");
        }
    }

    #[test]
    fn credentials_sent_for_the_caller() {
        let creds = |r: u32, e: u32| {
            let status = format!(
                "Uid:\t{r}\t{e}\t{e}\t{e}\nGid:\t100\t101\t101\t101\nGroups:\t\nCapInh:\t0\nCapPrm:\t0\nCapEff:\t0\n"
            );
            Creds::parse_status(&status).unwrap()
        };
        let ucred = |pid: u32, uid: u32, gid: u32| -> Vec<u8> {
            [pid.to_ne_bytes(), uid.to_ne_bytes(), gid.to_ne_bytes()].concat()
        };
        let cases: &[(&str, Creds, Vec<u8>)] = &[
            ("plain user", creds(1000, 1000), ucred(1, 1000, 100)),
            ("root", creds(0, 0), ucred(1, 0, 100)),
            ("root running set-user-ID", creds(0, 1000), ucred(1, 0, 100)),
            (
                "set-user-ID by another user",
                creds(1000, 2000),
                ucred(1, 2000, 100),
            ),
        ];
        for (what, c, want) in cases {
            assert_eq!(sender_credentials(c, 1).to_vec(), *want, "{what}");
        }
        // Appended after the last message, trailing bytes dropped; then walks as two messages.
        let mut control = vec![0u8; 24 + 5];
        control[..8].copy_from_slice(&20u64.to_ne_bytes());
        control[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        control[12..16].copy_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
        let list = cmsgs(&control).unwrap();
        append_credentials(&mut control, &list, sender_credentials(&creds(7, 7), 1));
        let walked = cmsgs(&control).unwrap();
        assert_eq!(walked.len(), 2);
        assert_eq!(walked[1].kind, libc::SCM_CREDENTIALS);
        assert_eq!(control[walked[1].data.clone()], ucred(1, 7, 100)[..]);
        assert_eq!(control.len(), 24 + 32);
        let mut empty = Vec::new();
        append_credentials(&mut empty, &[], sender_credentials(&creds(7, 7), 1));
        assert_eq!(cmsgs(&empty).unwrap().len(), 1);
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

    #[test]
    fn reads_messages_with_kernel_limits() {
        let mut mem = RemoteMemory::new(std::process::id() as i32);
        let (a, b) = (b"hello ".to_vec(), b"world".to_vec());
        let iov: Vec<u64> = vec![a.as_ptr() as u64, 6, b.as_ptr() as u64, 5];
        let addr = sin(libc::AF_INET, 53, [10, 53, 0, 1]);
        let hdr = MsgHdr {
            name: addr.as_ptr() as u64,
            namelen: addr.len() as u32,
            iov: iov.as_ptr() as u64,
            iovlen: 2,
            control: 0,
            controllen: 0,
        };
        let msg = read_msg(&mut mem, &hdr, 1 << 16, false).unwrap();
        assert_eq!(msg.data, b"hello world");
        assert_eq!(msg.name.unwrap().bytes(), &addr[..]);
        assert_eq!(read_msg(&mut mem, &hdr, 8, false), Err(libc::EMSGSIZE));
        assert_eq!(read_msg(&mut mem, &hdr, 8, true).unwrap().data, b"hello wo");
        let too_many = MsgHdr {
            iovlen: MAX_IOV as u64 + 1,
            ..hdr
        };
        assert_eq!(
            read_msg(&mut mem, &too_many, 1 << 16, false),
            Err(libc::EMSGSIZE)
        );
        let long_name = MsgHdr {
            namelen: 129,
            ..hdr
        };
        assert_eq!(
            read_msg(&mut mem, &long_name, 1 << 16, false),
            Err(libc::EINVAL)
        );
        let unmapped = MsgHdr { iov: 8, ..hdr };
        assert_eq!(
            read_msg(&mut mem, &unmapped, 1 << 16, false),
            Err(libc::EFAULT)
        );
    }
}
