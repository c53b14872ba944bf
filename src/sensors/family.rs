//! Which sockets the network sensor judges, and how: IPv4 and IPv6 sockets by the addresses their
//! calls name (connect.rs, bind.rs, send.rs); sockets that stay on this host (unix, netlink,
//! AF_ALG) not judged but performed as their caller; other families, which reach other hosts by
//! other means than the addresses the policy judges, refused under `prevent` and `block`.
//!
//! Raw and packet sockets carry headers the workload writes itself: a raw UDP socket puts any
//! destination port in its own UDP header (port 53 for a DNS question the forwarder never sees),
//! IP_HDRINCL any destination address in its own IP header, a packet socket whole frames. The
//! addresses a connect or send names say nothing of that, and judging the headers of every packet
//! would mean parsing IP, IPv6 extension headers, fragments and link layers in the supervisor. So
//! they are refused: their creation (`socket()`, trapped only for raw kinds, decided on its
//! registers) and every trapped call on one made earlier (while the rule in force did not enforce
//! network or DNS). The effect is the strictest of the rule's `network` and `dns` sections
//! (`Rule::socket_effect`): `prevent` refuses with EPERM and a `defender` event; `block` stops the
//! container; `alert` lets the socket be made and reports that its traffic is not checked (alert
//! never breaks a workload).

use crate::policy::{Consequence, Effect, Rule};
use crate::seccomp::{self, NetCall};
use crate::sys::socket::SocketKind;

/// Socket families that stay on this host: unix sockets, netlink (the kernel), AF_ALG (the
/// kernel's crypto). Calls on them are not network connections: not judged, but performed for
/// the caller like every other trapped socket call, with its credentials (supervisor/perform.rs,
/// `perform_as_caller`). The credentials matter for netlink too: the kernel checks a privileged
/// netlink request against the capabilities of the socket's opener AND of the sender
/// (__netlink_ns_capable: file_ns_capable and ns_capable), but a multicast group in
/// bind/connect/sendto only against the sender's (netlink_allowed): performed with the
/// supervisor's, that would subscribe an unprivileged caller to groups only CAP_NET_ADMIN may hear.
const LOCAL_FAMILIES: &[i32] = &[libc::AF_UNIX, libc::AF_NETLINK, libc::AF_ALG];

/// How a trapped call on a socket of some kind is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 or IPv6: judged by the address the call names.
    Inet,
    /// A raw or packet socket that the rule refuses (`Rule::socket_effect`: `prevent`, `block`).
    Raw,
    /// Not judged (unix, netlink, AF_ALG, and under `alert` the other families), but performed as
    /// the caller, never answered CONTINUE: the kernel would then read the descriptor and the
    /// arguments again, and another thread of the caller may have put a UDP socket under that
    /// number and an IP address in that memory since the supervisor looked.
    AsCaller,
    /// A family that reaches other hosts by other means than the IP addresses the policy judges
    /// (AF_PACKET frames, SMC, RDS, RxRPC and TIPC over IP, ...): refused where network
    /// enforcement refuses, since it cannot be checked (fail closed).
    Unjudgeable,
}

/// Decides how a call on a socket of `kind` is handled under `rule` (the rule in force when it
/// enforces network or DNS; `None` when only connects are looked at, to steer DNS).
pub fn decide(rule: Option<&Rule>, kind: SocketKind) -> Family {
    let refuses = |e: Effect| e.consequence() != Consequence::Proceed;
    if rule.is_some_and(|r| refuses(r.socket_effect()))
        && seccomp::is_raw_socket(kind.domain, kind.ty)
    {
        return Family::Raw;
    }
    if kind.domain == libc::AF_INET || kind.domain == libc::AF_INET6 {
        return Family::Inet;
    }
    if !LOCAL_FAMILIES.contains(&kind.domain) && rule.is_some_and(|r| refuses(r.network().effect()))
    {
        return Family::Unjudgeable;
    }
    Family::AsCaller
}

/// AF_INET's obsolete link-layer socket type (linux/net.h), which libc deprecates.
const SOCK_PACKET: i32 = 10;

/// `AF_INET SOCK_RAW socket`, from the numbers of socket(2).
pub fn describe(domain: i32, ty: i32) -> String {
    let family = match domain {
        libc::AF_INET => "AF_INET".to_string(),
        libc::AF_INET6 => "AF_INET6".to_string(),
        libc::AF_PACKET => "AF_PACKET".to_string(),
        libc::AF_XDP => "AF_XDP".to_string(),
        d => format!("family {d}"),
    };
    let kind = match ty & seccomp::bpf::SOCK_TYPE_MASK as i32 {
        libc::SOCK_STREAM => "SOCK_STREAM".to_string(),
        libc::SOCK_DGRAM => "SOCK_DGRAM".to_string(),
        libc::SOCK_RAW => "SOCK_RAW".to_string(),
        SOCK_PACKET => "SOCK_PACKET".to_string(),
        t => format!("type {t}"),
    };
    format!("{family} {kind} socket")
}

/// `connect on an AF_PACKET SOCK_RAW socket`: a trapped call on a raw socket made earlier.
pub fn call_on(call: NetCall, kind: SocketKind) -> String {
    let call = format!("{call:?}").to_lowercase();
    format!("{call} on an {}", describe(kind.domain, kind.ty))
}

/// The `defender` event's message for a raw socket under `alert` or `prevent`. `what` names the
/// activity up to its process (`AF_PACKET SOCK_RAW socket opened`).
pub fn raw_message(what: &str, process: &str, pid: u32, rule: &str, effect: Effect) -> String {
    let why = "its packets carry headers the process writes itself, which the network and DNS checks do not see";
    match effect {
        Effect::Alert => format!(
            "{what} by {process} (pid {pid}) was let through because rule {rule} only alerts: {why}, so its traffic is not checked"
        ),
        _ => format!("{what} by {process} (pid {pid}) was refused under rule {rule}: {why}"),
    }
}

/// What a call on a socket of a family that is refused is, for [`bypass_message`].
pub fn unjudgeable_message(domain: i32) -> String {
    format!("A socket call of address family {domain}")
}

/// The `defender` event's message for a call refused while socket calls are checked because it
/// would get past the checks (io_uring, a source route, a 32-bit socket call, a family that
/// cannot be judged). `what` names the call.
pub fn bypass_message(what: &str, process: &str, pid: u32) -> String {
    format!(
        "{what} by {process} (pid {pid}) refused while network and DNS calls are checked: it would bypass the checks"
    )
}

/// The `defender` event's message for a socket call the supervisor could not look into (`error`),
/// let through under a rule that only alerts.
pub fn uninspectable_message(tid: u32, error: &str, rule: &str) -> String {
    format!(
        "Could not inspect a socket call of pid {tid} ({error}); it was let through because rule {rule} only alerts"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::testing::{kind, rule};
    use Effect::*;

    #[test]
    fn decisions() {
        let prevent = rule(r#""network": {"effect": "prevent"}"#);
        let dns_block = rule(r#""dns": {"effect": "block"}"#);
        let alert = rule(r#""network": {"effect": "alert"}, "dns": {"effect": "alert"}"#);
        let (inet, inet6, unix, netlink, packet) = (
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_UNIX,
            libc::AF_NETLINK,
            libc::AF_PACKET,
        );
        let (stream, dgram, raw) = (libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW);
        type Case<'a> = (&'a str, Option<&'a Rule>, SocketKind, Family);
        let cases: &[Case] = &[
            ("tcp", Some(&prevent), kind(inet, stream), Family::Inet),
            ("udp6", Some(&prevent), kind(inet6, dgram), Family::Inet),
            (
                "raw under prevent",
                Some(&prevent),
                kind(inet, raw),
                Family::Raw,
            ),
            (
                "raw under a dns block",
                Some(&dns_block),
                kind(inet6, raw),
                Family::Raw,
            ),
            (
                "packet under prevent",
                Some(&prevent),
                kind(packet, dgram),
                Family::Raw,
            ),
            (
                "raw under alert is judged by address",
                Some(&alert),
                kind(inet, raw),
                Family::Inet,
            ),
            (
                "packet under alert",
                Some(&alert),
                kind(packet, raw),
                Family::AsCaller,
            ),
            (
                "raw with nothing enforced",
                None,
                kind(inet, raw),
                Family::Inet,
            ),
            ("unix", Some(&prevent), kind(unix, stream), Family::AsCaller),
            (
                "netlink",
                Some(&prevent),
                kind(netlink, raw),
                Family::AsCaller,
            ),
            (
                "SMC under prevent",
                Some(&prevent),
                kind(43, stream),
                Family::Unjudgeable,
            ),
            (
                "SMC under a dns rule only",
                Some(&dns_block),
                kind(43, stream),
                Family::AsCaller,
            ),
            (
                "SMC under alert",
                Some(&alert),
                kind(43, stream),
                Family::AsCaller,
            ),
            (
                "SMC with nothing enforced",
                None,
                kind(43, stream),
                Family::AsCaller,
            ),
        ];
        for (what, rule, kind, want) in cases {
            assert_eq!(decide(*rule, *kind), *want, "{what}");
        }
    }

    #[test]
    fn descriptions_and_messages() {
        for (domain, ty, want) in [
            (libc::AF_INET, libc::SOCK_RAW, "AF_INET SOCK_RAW socket"),
            (
                libc::AF_INET6,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                "AF_INET6 SOCK_RAW socket",
            ),
            (
                libc::AF_PACKET,
                libc::SOCK_DGRAM,
                "AF_PACKET SOCK_DGRAM socket",
            ),
            (libc::AF_INET, SOCK_PACKET, "AF_INET SOCK_PACKET socket"),
            (libc::AF_XDP, libc::SOCK_RAW, "AF_XDP SOCK_RAW socket"),
            (99, 7, "family 99 type 7 socket"),
        ] {
            assert_eq!(describe(domain, ty), want);
        }
        let packet = kind(libc::AF_PACKET, libc::SOCK_RAW);
        assert_eq!(
            call_on(NetCall::Sendto, packet),
            "sendto on an AF_PACKET SOCK_RAW socket"
        );
        assert_eq!(
            raw_message(
                "AF_PACKET SOCK_RAW socket opened",
                "/usr/bin/python3",
                7,
                "r",
                Prevent
            ),
            "AF_PACKET SOCK_RAW socket opened by /usr/bin/python3 (pid 7) was refused under rule r: its packets carry headers the process writes itself, which the network and DNS checks do not see"
        );
        assert_eq!(
            raw_message("AF_INET SOCK_RAW socket opened", "/x", 7, "r", Alert),
            "AF_INET SOCK_RAW socket opened by /x (pid 7) was let through because rule r only alerts: its packets carry headers the process writes itself, which the network and DNS checks do not see, so its traffic is not checked"
        );
        assert_eq!(
            bypass_message(&unjudgeable_message(43), "/bin/x", 9),
            "A socket call of address family 43 by /bin/x (pid 9) refused while network and DNS calls are checked: it would bypass the checks"
        );
        assert_eq!(
            uninspectable_message(9, "Operation not permitted (os error 1)", "r"),
            "Could not inspect a socket call of pid 9 (Operation not permitted (os error 1)); it was let through because rule r only alerts"
        );
    }
}
