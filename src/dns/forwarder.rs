//! The DNS forwarder: where the container's DNS sockets end up. When a process connects a socket to
//! a name server (port 53, UDP or TCP), the supervisor connects it here instead and registers which
//! server it asked for (supervisor/net.rs), with the facts about the asking process that the
//! custom rules on DNS in force then read. Every message is then checked: a prevented name is
//! answered NXDOMAIN at once and never leaves the container, a message that is not exactly one
//! well-formed query is answered FORMERR; the rest is sent on, unchanged, to the server the
//! process asked for, and the server's answer comes back unchanged (same records, same TTLs; only
//! the socket's peer, as getpeername(2) shows it, is the forwarder). Over TCP each length-prefixed
//! message is judged on its own, wherever the stream's segments cut it.
//!
//! glibc (connect, then send/sendmmsg), Go (connect, then write) and every TCP resolver (dig +tcp,
//! glibc after a truncated answer) go through here. musl, which sends with `sendto` on an
//! unconnected socket, is handled where the send is trapped.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{Decision, Finding, decide, refusal};
use crate::policy::custom::{FieldSet, Kind, Process};
use crate::policy::{Consequence, Effect, Live, Rule};

/// How long the forwarder waits for a name server before giving up on a query (the resolver
/// library has its own, usually shorter, timeout and retries).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an accepted connection may wait for the supervisor to register it: the supervisor
/// registers right after its connect returns, which can be just after the forwarder accepts.
const REGISTRATION_WAIT: Duration = Duration::from_secs(1);
/// For how long after a query was sent upstream the client's next queries to the same server go
/// out on the same socket (a lookup sends its A and AAAA questions together), so that each of
/// them still has most of UPSTREAM_TIMEOUT to be answered in.
const SHARE_WINDOW: Duration = Duration::from_secs(1);
/// How many queries the UDP side takes before it looks at the answers again.
const TAKE_AT_ONCE: usize = 64;
/// A registration unused for this long is forgotten (resolver sockets live for one lookup).
const IDLE: Duration = Duration::from_secs(600);
/// How long a TCP DNS client may stay silent.
const TCP_IDLE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

/// A client socket the supervisor connected here: who asked, and which server it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub upstream: SocketAddr,
    pub pid: u32,
    pub process: String,
    /// The asking process's facts for custom rules on DNS, read at the connect (the forwarder's
    /// threads cannot read them from a caller that no longer waits), and which fields were read:
    /// those the rule in force then needed. `None`: they could not be read.
    pub facts: Option<(FieldSet, Process)>,
}

/// What the forwarder does with one query.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Forward,
    Answer(Vec<u8>),
    Drop,
}

fn verdict(decision: Decision, effect: Effect, query: &[u8]) -> Verdict {
    match (decision, effect) {
        (Decision::Pass, _) => Verdict::Forward,
        // The container is being stopped: no answer, so that the asking process cannot act on one
        // before the supervisor's kill reaches it.
        (Decision::Refuse, Effect::Block) => Verdict::Drop,
        (Decision::Refuse, _) => refusal(query).map_or(Verdict::Drop, Verdict::Answer),
    }
}

/// A registered client and when it was last used.
type Registered = (Arc<Client>, Instant);

#[derive(Default)]
struct Registry {
    /// Shared with the threads that look a client up: a lookup per query costs no copy (and no
    /// allocation, whose lock the supervisor's loop would wait on).
    clients: Mutex<HashMap<(Proto, SocketAddr), Registered>>,
    registered: Condvar,
}

fn key(proto: Proto, addr: SocketAddr) -> (Proto, SocketAddr) {
    (
        proto,
        SocketAddr::new(addr.ip().to_canonical(), addr.port()),
    )
}

impl Registry {
    fn insert(&self, proto: Proto, addr: SocketAddr, client: Client) {
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() > 1024 {
            map.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
        }
        map.insert(key(proto, addr), (Arc::new(client), now));
        // Only a TCP connection's thread waits for its registration (a datagram comes after the
        // connect that registered its socket returned): no wake-up, a system call, for UDP.
        if proto == Proto::Tcp {
            self.registered.notify_all();
        }
    }

    fn lookup(&self, proto: Proto, addr: SocketAddr, wait: Duration) -> Option<Arc<Client>> {
        let deadline = Instant::now() + wait;
        let k = key(proto, addr);
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((client, used)) = map.get_mut(&k) {
                *used = Instant::now();
                return Some(client.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            map = self
                .registered
                .wait_timeout(map, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

type Report = Arc<dyn Fn(Finding) + Send + Sync>;

/// The running forwarder: a UDP socket and a TCP listener on loopback, each served by a thread.
pub struct Forwarder {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    registry: Arc<Registry>,
}

impl Forwarder {
    /// Binds the sockets and starts the threads. Each query is checked against the rule in force
    /// when it arrives; `report` receives every finding.
    pub fn start(policy: Live, report: Report) -> io::Result<Forwarder> {
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let udp = UdpSocket::bind(loopback)?;
        // Drained until empty each time poll(2) says it is readable (`take_queries`).
        udp.set_nonblocking(true)?;
        let tcp = TcpListener::bind(loopback)?;
        let registry = Arc::new(Registry::default());
        let fwd = Forwarder {
            udp_addr: udp.local_addr()?,
            tcp_addr: tcp.local_addr()?,
            registry: registry.clone(),
        };
        {
            let (policy, report, registry) = (policy.clone(), report.clone(), registry.clone());
            std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || serve_udp(&udp, &policy, &report, &registry))?;
        }
        std::thread::Builder::new()
            .name("dns-tcp".into())
            .spawn(move || serve_tcp(&tcp, &policy, &report, &registry))?;
        Ok(fwd)
    }

    /// Where a client socket of `domain` (AF_INET or AF_INET6) is connected instead of its name
    /// server. An IPv6 socket reaches the IPv4 loopback through a v4-mapped address (unless it is
    /// IPV6_V6ONLY, in which case the connect fails and so does the lookup: closed, not open).
    pub fn address(&self, proto: Proto, domain: i32) -> SocketAddr {
        let addr = match proto {
            Proto::Udp => self.udp_addr,
            Proto::Tcp => self.tcp_addr,
        };
        match (domain, addr.ip()) {
            (libc::AF_INET6, IpAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port())
            }
            _ => addr,
        }
    }

    /// Whether `peer` is one of the forwarder's own sockets.
    pub fn is_forwarder(&self, peer: SocketAddr) -> bool {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        peer == self.udp_addr || peer == self.tcp_addr
    }

    /// Records that the client socket bound at `local` (as its getsockname shows) asked for `client`.
    pub fn register(&self, proto: Proto, local: SocketAddr, client: Client) {
        self.registry.insert(proto, local, client);
    }
}

/// Checks one query against the rule in force now, reports what it objects to, says what to do.
fn judge(policy: &Live, query: &[u8], client: &Client, report: &Report) -> Verdict {
    let in_force = policy.current();
    let Some(rule) = in_force.rule.as_deref() else {
        return Verdict::Forward;
    };
    let facts = match asker(rule, client) {
        Asker::Known(facts) => facts,
        Asker::Refused => {
            log::warn!(
                "DNS question of pid {} ({}) refused: the facts the custom rules of rule {} read were not read when its socket was connected",
                client.pid,
                client.process,
                rule.name()
            );
            return verdict(Decision::Refuse, Effect::Prevent, query);
        }
        Asker::Unread(finding) => {
            report(finding);
            None
        }
    };
    let (decision, finding) = decide(rule, query, || (client.pid, client.process.clone()), facts);
    let effect = finding.as_ref().map_or(Effect::Disable, |f| f.effect);
    if let Some(f) = finding {
        report(f);
    }
    verdict(decision, effect, query)
}

/// What the custom rules on DNS may know of the asking process.
#[derive(Debug, PartialEq, Eq)]
enum Asker<'a> {
    /// Its facts, with every field the rules read; `None`: no rule needs any (or the rules only
    /// allow, and without the facts grant no exception: the section judges).
    Known(Option<&'a Process>),
    /// The facts the rules need were not read, and a rule could prevent or block the question:
    /// it is refused (fail closed, as a call that could not be inspected; never a `block`).
    Refused,
    /// Not read, and the rules only alert: the question goes on to the section, reported.
    Unread(Finding),
}

/// Whether the facts read when `client` registered cover what the custom rules on DNS of `rule`
/// read now (the rule may have changed since), and if not, what that comes to. Pure.
fn asker<'a>(rule: &Rule, client: &'a Client) -> Asker<'a> {
    let custom = rule.custom(Kind::Dns);
    if custom.is_empty() {
        return Asker::Known(None);
    }
    match &client.facts {
        Some((read, facts)) if read.covers(custom.fields().process()) => Asker::Known(Some(facts)),
        _ => match custom.strictest().consequence() {
            Consequence::Refuse | Consequence::Stop => Asker::Refused,
            Consequence::Proceed if custom.strictest() == Effect::Disable => Asker::Known(None),
            Consequence::Proceed => Asker::Unread(Finding {
                pid: client.pid,
                process: client.process.clone(),
                domain: String::new(),
                cause: crate::policy::Attack::NotAllowed.into(),
                effect: Effect::Alert,
                malformed: None,
                unread: true,
            }),
        },
    }
}

/// The queries of one client socket sent on to its server, waiting for their answers.
struct Pending {
    /// A fresh socket connected to the server (a fresh random port, as the resolver library would
    /// have used): only the server's answers reach it. Shared by the queries of one client socket
    /// in flight together (a lookup's A and AAAA questions), as the client's own socket would
    /// have been: one socket, not one per question, and never another client's.
    upstream: UdpSocket,
    server: SocketAddr,
    /// The IDs of the queries still unanswered.
    ids: Vec<Option<u16>>,
    client: SocketAddr,
    deadline: Instant,
}

impl Pending {
    /// Relays to the client every answer waiting on the socket that answers one of its queries;
    /// false once none is left unanswered, or on an error.
    fn relay(&mut self, sock: &UdpSocket, buf: &mut [u8]) -> bool {
        loop {
            match self.upstream.recv(buf) {
                Ok(n) => {
                    let id = super::id(&buf[..n]);
                    // Not the answer to one of its queries: keep waiting for those.
                    if let Some(at) = self.ids.iter().position(|i| *i == id) {
                        self.ids.swap_remove(at);
                        let _ = sock.send_to(&buf[..n], self.client);
                        if self.ids.is_empty() {
                            return false;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    log::debug!("dns answer for {}: {e}", self.client);
                    return false;
                }
            }
        }
    }
}

/// The UDP side: one thread that takes queries from the clients and answers from the servers
/// (poll(2) over the forwarder's socket and one socket per client socket with queries in flight),
/// so that relaying a query costs no thread of its own.
fn serve_udp(sock: &UdpSocket, policy: &Live, report: &Report, registry: &Registry) {
    let mut buf = vec![0u8; 65536];
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        let now = Instant::now();
        pending.retain(|p| p.deadline > now);
        let timeout = pending
            .iter()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
            .map_or(PollTimeout::NONE, |d| {
                PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            });
        let mut fds: Vec<PollFd<'_>> = std::iter::once(sock.as_fd())
            .chain(pending.iter().map(|p| p.upstream.as_fd()))
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        if let Err(e) = poll(&mut fds, timeout) {
            if e != nix::errno::Errno::EINTR {
                log::error!("dns forwarder (udp): poll: {e}");
            }
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        // Answers first (highest index first, so removing one keeps the others' indices).
        for i in (1..ready.len()).rev().filter(|i| ready[*i]) {
            if !pending[i - 1].relay(sock, &mut buf) {
                pending.swap_remove(i - 1);
            }
        }
        if ready[0] {
            take_queries(sock, &mut buf, policy, report, registry, &mut pending);
        }
    }
}

/// Takes the queries waiting on the forwarder's socket (non-blocking), up to TAKE_AT_ONCE, so that
/// a flood of them never starves the answers: a lookup's questions, sent together, are read
/// together, and go upstream together on one socket.
fn take_queries(
    sock: &UdpSocket,
    buf: &mut [u8],
    policy: &Live,
    report: &Report,
    registry: &Registry,
    pending: &mut Vec<Pending>,
) {
    for _ in 0..TAKE_AT_ONCE {
        let (n, from) = match sock.recv_from(buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                log::error!("dns forwarder (udp): {e}");
                return;
            }
        };
        let query = &buf[..n];
        let Some(client) = registry.lookup(Proto::Udp, from, Duration::ZERO) else {
            log::debug!("dns forwarder: datagram from unregistered {from} dropped");
            continue;
        };
        match judge(policy, query, &client, report) {
            Verdict::Answer(a) => {
                let _ = sock.send_to(&a, from);
            }
            Verdict::Drop => {}
            Verdict::Forward => {
                let id = super::id(query);
                let (server, deadline) = (client.upstream, Instant::now() + UPSTREAM_TIMEOUT);
                // A socket made for this client's queries less than SHARE_WINDOW ago.
                let young = deadline - SHARE_WINDOW;
                let sent = match pending
                    .iter_mut()
                    .find(|p| p.client == from && p.server == server && p.deadline > young)
                {
                    Some(p) => p.upstream.send(query).map(|_| p.ids.push(id)),
                    None => send_upstream(query, server).map(|upstream| {
                        pending.push(Pending {
                            upstream,
                            server,
                            ids: vec![id],
                            client: from,
                            deadline,
                        })
                    }),
                };
                if let Err(e) = sent {
                    log::debug!("dns query to {server}: {e}");
                }
            }
        }
    }
}

/// Sends `query` to `server` from a fresh, non-blocking socket connected to it. Three system
/// calls: the socket is made non-blocking when created, and the connect binds it to a random
/// ephemeral port by itself (udp_lib_get_port, as a bind to port 0 would).
fn send_upstream(query: &[u8], server: SocketAddr) -> io::Result<UdpSocket> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};
    let family = match server {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let sock = UdpSocket::from(socket::socket(family, SockType::Datagram, flags, None)?);
    sock.connect(server)?;
    sock.send(query)?;
    Ok(sock)
}

fn serve_tcp(listener: &TcpListener, policy: &Live, report: &Report, registry: &Arc<Registry>) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::error!("dns forwarder (tcp): {e}");
                continue;
            }
        };
        let (policy, report, registry) = (policy.clone(), report.clone(), registry.clone());
        let spawned = std::thread::Builder::new()
            .name("dns-tcp-conn".into())
            .spawn(move || {
                if let Err(e) = relay_tcp(stream, &policy, &report, &registry) {
                    log::debug!("dns forwarder (tcp connection): {e}");
                }
            });
        if let Err(e) = spawned {
            log::error!("dns forwarder: cannot start a connection thread: {e}");
        }
    }
}

/// One TCP DNS connection: length-prefixed messages (RFC 1035 4.2.2, RFC 7766), each checked;
/// the server connection is opened on the first query that may pass.
fn relay_tcp(
    mut client: TcpStream,
    policy: &Live,
    report: &Report,
    registry: &Registry,
) -> io::Result<()> {
    let peer = client.peer_addr()?;
    let Some(who) = registry.lookup(Proto::Tcp, peer, REGISTRATION_WAIT) else {
        return Err(io::Error::other(format!(
            "unregistered connection from {peer}"
        )));
    };
    client.set_read_timeout(Some(TCP_IDLE))?;
    let mut upstream: Option<TcpStream> = None;
    while let Some(query) = read_framed(&mut client)? {
        match judge(policy, &query, &who, report) {
            Verdict::Answer(a) => write_framed(&mut client, &a)?,
            Verdict::Drop => return Ok(()),
            Verdict::Forward => {
                let server = match upstream.as_mut() {
                    Some(s) => s,
                    None => {
                        let s = TcpStream::connect_timeout(&who.upstream, UPSTREAM_TIMEOUT)?;
                        s.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
                        upstream.insert(s)
                    }
                };
                write_framed(server, &query)?;
                match read_framed(server)? {
                    Some(answer) => write_framed(&mut client, &answer)?,
                    None => return Ok(()),
                }
            }
        }
    }
    Ok(())
}

fn read_framed(s: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg)?;
    Ok(Some(msg))
}

fn write_framed(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::Error::other("DNS message over 64 KiB"))?;
    s.write_all(&[&len.to_be_bytes()[..], msg].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_read_at_registration() {
        let rule = |effect: &str| {
            let json = format!(
                r#"{{"customRules": [{{"name": "d", "type": "dns",
                      "script": "dns.name = \"x.test\" and proc.uid = 0"}}],
                    "rules": [{{"name": "r", "customRules": [{{"name": "d", "effect": "{effect}"}}]}}]}}"#
            );
            crate::policy::parse(&json)
                .unwrap()
                .rule_for("c", "i")
                .unwrap()
                .clone()
        };
        let (prevent, alert, allow) = (rule("prevent"), rule("alert"), rule("allow"));
        let none = crate::policy::testing::rule("");
        let uid = FieldSet::of(&[crate::policy::custom::Field::ProcUid]);
        let process = Process::default();
        let client = |facts: Option<(FieldSet, Process)>| Client {
            upstream: "10.53.0.1:53".parse().unwrap(),
            pid: 9,
            process: "/bin/x".into(),
            facts,
        };
        let read = client(Some((uid, process.clone())));
        let other = client(Some((FieldSet::default(), process.clone())));
        let unreadable = client(None);
        assert_eq!(asker(&none, &unreadable), Asker::Known(None));
        assert_eq!(asker(&prevent, &read), Asker::Known(Some(&process)));
        // The rule now reads what was not read then: could not inspect, by effect.
        assert_eq!(asker(&prevent, &other), Asker::Refused);
        assert_eq!(asker(&prevent, &unreadable), Asker::Refused);
        assert_eq!(asker(&allow, &other), Asker::Known(None));
        match asker(&alert, &unreadable) {
            Asker::Unread(f) => assert!(f.unread && f.effect == Effect::Alert && f.pid == 9),
            other => panic!("{other:?}"),
        }
    }

    /// One upstream socket for two queries of a client: each answer relayed once, to that
    /// client; an answer to no query of it dropped; done once both are answered.
    #[test]
    fn shared_upstream_socket_relays_each_answer_once() {
        let any = |s: &str| UdpSocket::bind(s).unwrap();
        let (server, forwarder, client) =
            (any("127.0.0.1:0"), any("127.0.0.1:0"), any("127.0.0.1:0"));
        let upstream = any("127.0.0.1:0");
        upstream.connect(server.local_addr().unwrap()).unwrap();
        upstream.set_nonblocking(true).unwrap();
        let mut p = Pending {
            server: server.local_addr().unwrap(),
            ids: vec![Some(1), Some(2)],
            client: client.local_addr().unwrap(),
            deadline: Instant::now() + UPSTREAM_TIMEOUT,
            upstream,
        };
        let back = p.upstream.local_addr().unwrap();
        let mut buf = [0u8; 512];
        // Sent on loopback, each datagram is queued before send_to returns.
        for answer in [[0u8, 3, 0xaa], [0, 2, 0xbb]] {
            server.send_to(&answer, back).unwrap();
        }
        assert!(p.relay(&forwarder, &mut buf), "query 1 still waits");
        assert_eq!(p.ids, vec![Some(1)]);
        server.send_to(&[0, 1, 0xcc], back).unwrap();
        server.send_to(&[0, 1, 0xdd], back).unwrap();
        assert!(!p.relay(&forwarder, &mut buf), "both answered");
        client.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        while let Ok((n, from)) = client.recv_from(&mut buf) {
            assert_eq!(from, forwarder.local_addr().unwrap());
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, vec![vec![0, 2, 0xbb], vec![0, 1, 0xcc]]);
    }

    #[test]
    fn registrations_match_mapped_and_plain_addresses() {
        let r = Registry::default();
        let client = Client {
            upstream: "10.53.0.1:53".parse().unwrap(),
            pid: 1,
            process: "/bin/x".into(),
            facts: None,
        };
        r.insert(
            Proto::Udp,
            "[::ffff:127.0.0.1]:4000".parse().unwrap(),
            client.clone(),
        );
        assert_eq!(
            r.lookup(
                Proto::Udp,
                "127.0.0.1:4000".parse().unwrap(),
                Duration::ZERO
            ),
            Some(Arc::new(client))
        );
        assert_eq!(
            r.lookup(
                Proto::Tcp,
                "127.0.0.1:4000".parse().unwrap(),
                Duration::ZERO
            ),
            None
        );
        assert_eq!(
            r.lookup(
                Proto::Udp,
                "127.0.0.1:4001".parse().unwrap(),
                Duration::from_millis(20)
            ),
            None
        );
    }
}
