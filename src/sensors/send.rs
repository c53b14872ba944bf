//! Sends that name an address (`sendto`, `sendmsg`, `sendmmsg`): how much of each message is
//! copied, which destination the kernel would send to (a stream socket only with TCP Fast Open),
//! the ancillary data a send performed for its caller may carry, and, for unix sockets, the
//! credentials it may claim (SCM_CREDENTIALS).

use std::net::SocketAddr;

use super::{Objection, dns, facts, outbound};
use crate::policy::Rule;
use crate::policy::custom::Process;
use crate::sys::creds::{Creds, Ids};
use crate::sys::sockaddr::{self, Errno, MAX_IOV, Use, cmsgs};
use crate::sys::socket::{OwnedMsg, SocketKind};

/// The most a datagram can carry (udp_sendmsg: a longer one is EMSGSIZE).
const MAX_DATAGRAM: usize = 0xFFFF;
/// The most one `sendmmsg` has copied before the supervisor stops reading more of its messages.
const MAX_CALL_BYTES: usize = 4 << 20;
/// The most of one stream send the supervisor copies; a longer send is performed in part and its
/// caller, as for any short write, sends the rest.
const MAX_STREAM_CHUNK: usize = 1 << 20;

/// How much of one message is copied: at most so many bytes, and whether a longer message is cut
/// (`true`: a stream socket may send part of it) or refused with EMSGSIZE (a datagram must go
/// whole). A datagram of a family that is not IP may be longer than an IP one (a unix datagram
/// is bounded by the send buffer only): copied up to MAX_CALL_BYTES.
pub fn copy_limits(inet: bool, stream: bool) -> (usize, bool) {
    match (stream, inet) {
        (true, _) => (MAX_STREAM_CHUNK, true),
        (false, true) => (MAX_DATAGRAM, false),
        (false, false) => (MAX_CALL_BYTES, false),
    }
}

/// How many messages of a `sendmmsg` of `vlen` to consider: sendmmsg(2) sends at most UIO_MAXIOV
/// messages and takes vlen as an unsigned int.
pub fn mmsg_count(vlen: u64) -> usize {
    (vlen as u32 as usize).min(MAX_IOV)
}

/// Whether message `i` of a `sendmmsg` is copied after `copied` bytes: up to MAX_CALL_BYTES, and
/// one message on a stream socket (whose copy may be cut). The call then sends fewer messages than
/// asked, which sendmmsg's caller is told by its result and must handle anyway.
pub fn copies_more(i: usize, stream: bool, copied: usize) -> bool {
    i == 0 || !(stream || copied >= MAX_CALL_BYTES)
}

/// The destination of one message: a stream socket uses the address only to open a connection
/// with its data (TCP Fast Open, `MSG_FASTOPEN`: judged as a connect); otherwise the kernel
/// ignores it (tcp_sendmsg).
pub fn destination(kind: SocketKind, flags: i32, name: Option<&[u8]>) -> Option<SocketAddr> {
    let stream = kind.ty == libc::SOCK_STREAM;
    match (stream, name) {
        (_, None) => None,
        (true, Some(a)) if flags & libc::MSG_FASTOPEN != 0 => {
            sockaddr::target(Use::Connect, kind.domain, a)
        }
        (true, Some(_)) => None,
        (false, Some(a)) => sockaddr::target(Use::Send, kind.domain, a),
    }
}

/// The decision on one message of a send on an IPv4 or IPv6 socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What a custom rule or the `network` section objects to, applied first.
    pub objection: Option<Objection>,
    /// What the message is to the DNS checks.
    pub dns: dns::Send,
}

/// Why a message is refused before its destination is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The ancillary data is malformed: the kernel's own answer (EINVAL).
    Malformed(Errno),
    /// A kind of ancillary data a send performed for the caller may not carry (its cmsg level and
    /// type): refused with EPERM, and reported, as an attempt to get past the checks.
    Control { level: i32, kind: i32 },
}

impl Refusal {
    /// The errno the caller gets.
    pub fn errno(self) -> Errno {
        match self {
            Refusal::Malformed(errno) => errno,
            Refusal::Control { .. } => libc::EPERM,
        }
    }
}

/// Decides one copied message of a send on a socket of `kind` with `flags`: its ancillary data
/// must be of the kinds a performed send may carry, and its destination, if any, is judged
/// (`process`: the caller's facts for custom rules, when read).
pub fn decide(
    rule: &Rule,
    kind: SocketKind,
    flags: i32,
    msg: &OwnedMsg,
    process: Option<&Process>,
) -> Result<Verdict, Refusal> {
    check_control(&msg.control)?;
    let name = msg.name.as_ref().map(|a| a.bytes());
    let Some(dest) = destination(kind, flags, name) else {
        return Ok(Verdict {
            objection: None,
            dns: dns::Send::Plain,
        });
    };
    Ok(Verdict {
        objection: outbound(rule, dest, facts::protocol(kind), process),
        dns: dns::on_send(rule, kind.ty == libc::SOCK_STREAM, dest),
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

/// Checks ancillary data: `Ok` when every message in it is one of [`SAFE_CONTROL`]; the kernel's
/// errno for a malformed list; the first refused kind otherwise.
fn check_control(control: &[u8]) -> Result<(), Refusal> {
    for c in cmsgs(control).map_err(Refusal::Malformed)? {
        if !SAFE_CONTROL.contains(&(c.level, c.kind)) {
            return Err(Refusal::Control {
                level: c.level,
                kind: c.kind,
            });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::testing::{addr, kind, rule};
    use crate::sys::sockaddr::append_credentials;
    use crate::sys::socket::RawAddr;

    #[test]
    fn decisions() {
        let on = rule(
            r#""network": {"effect": "prevent", "outbound": {"deny": ["203.0.113.0/24"]}}, "dns": {"effect": "alert", "deny": ["x.test"]}"#,
        );
        let to = |s: &str| Some(RawAddr::new(&addr(s)));
        let msg = |name, control: Vec<u8>| OwnedMsg {
            name,
            data: b"q".to_vec(),
            control,
        };
        let udp = kind(libc::AF_INET, libc::SOCK_DGRAM);
        let tcp = kind(libc::AF_INET, libc::SOCK_STREAM);
        let mark = {
            let mut b = vec![0u8; 24];
            b[..8].copy_from_slice(&20u64.to_ne_bytes());
            b[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
            b[12..16].copy_from_slice(&libc::SO_MARK.to_ne_bytes());
            b
        };
        let so_mark = Refusal::Control {
            level: libc::SOL_SOCKET,
            kind: libc::SO_MARK,
        };
        let fastopen = libc::MSG_FASTOPEN;
        type Case<'a> = (
            &'a str,
            SocketKind,
            i32,
            OwnedMsg,
            Result<(bool, dns::Send), Refusal>,
        );
        let cases: &[Case] = &[
            (
                "no address",
                udp,
                0,
                msg(None, vec![]),
                Ok((false, dns::Send::Plain)),
            ),
            (
                "allowed datagram",
                udp,
                0,
                msg(to("198.51.100.1:9"), vec![]),
                Ok((false, dns::Send::Plain)),
            ),
            (
                "denied datagram",
                udp,
                0,
                msg(to("203.0.113.9:9"), vec![]),
                Ok((true, dns::Send::Plain)),
            ),
            (
                "a DNS question",
                udp,
                0,
                msg(to("198.51.100.1:53"), vec![]),
                Ok((false, dns::Send::Question)),
            ),
            (
                "denied, to port 53",
                udp,
                0,
                msg(to("203.0.113.9:53"), vec![]),
                Ok((true, dns::Send::Question)),
            ),
            (
                "a stream ignores the address",
                tcp,
                0,
                msg(to("203.0.113.9:53"), vec![]),
                Ok((false, dns::Send::Plain)),
            ),
            (
                "Fast Open is a connect",
                tcp,
                fastopen,
                msg(to("203.0.113.9:80"), vec![]),
                Ok((true, dns::Send::Plain)),
            ),
            (
                "Fast Open to port 53",
                tcp,
                fastopen,
                msg(to("198.51.100.1:53"), vec![]),
                Ok((false, dns::Send::FastOpen)),
            ),
            (
                "a privileged control message",
                udp,
                0,
                msg(to("198.51.100.1:9"), mark.clone()),
                Err(so_mark),
            ),
            (
                "even without an address",
                tcp,
                0,
                msg(None, mark),
                Err(so_mark),
            ),
        ];
        for (what, kind, flags, m, want) in cases {
            let got = decide(&on, *kind, *flags, m, None).map(|v| (v.objection.is_some(), v.dns));
            assert_eq!(got, *want, "{what}");
        }

        for (inet, stream, want) in [
            (true, true, (MAX_STREAM_CHUNK, true)),
            (true, false, (MAX_DATAGRAM, false)),
            (false, true, (MAX_STREAM_CHUNK, true)),
            (false, false, (MAX_CALL_BYTES, false)),
        ] {
            assert_eq!(copy_limits(inet, stream), want, "{inet} {stream}");
        }
        for (i, stream, copied, want) in [
            (0, true, MAX_CALL_BYTES, true),
            (1, true, 0, false),
            (1, false, 100, true),
            (3, false, MAX_CALL_BYTES, false),
        ] {
            assert_eq!(
                copies_more(i, stream, copied),
                want,
                "{i} {stream} {copied}"
            );
        }
        assert_eq!(mmsg_count(5), 5);
        assert_eq!(mmsg_count(1 << 32 | 3), 3, "an unsigned int");
        assert_eq!(mmsg_count(u32::MAX.into()), MAX_IOV);
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
        let refused = |level, kind| Err(Refusal::Control { level, kind });
        let cases: &[(&str, Vec<u8>, Result<(), Refusal>)] = &[
            ("none", vec![], Ok(())),
            ("pktinfo", pktinfo.clone(), Ok(())),
            (
                "pktinfo and ttl",
                [pktinfo.clone(), ttl.clone()].concat(),
                Ok(()),
            ),
            (
                "SO_MARK needs a privilege",
                mark.clone(),
                refused(libc::SOL_SOCKET, libc::SO_MARK),
            ),
            (
                "a source route",
                [ttl.clone(), srr].concat(),
                refused(libc::SOL_IP, libc::IP_RETOPTS),
            ),
            (
                "length below the header",
                bad_len,
                Err(Refusal::Malformed(libc::EINVAL)),
            ),
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
}
