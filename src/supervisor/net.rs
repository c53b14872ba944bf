//! Trapped socket calls, from the notification to the call to perform: the caller's socket taken
//! (a duplicate, `pidfd_getfd`) and its arguments copied once, the sensors' decisions applied
//! (sensors/family.rs, connect.rs, bind.rs, send.rs, dns.rs; violations through answer.rs), and
//! the call performed on the duplicate with that copy (perform.rs): the kernel executes exactly
//! what was decided on, whatever the caller's other threads do to its memory meanwhile. DNS
//! sockets are connected to the forwarder (dns/forwarder.rs), whose findings are audited here.
//!
//! Custom rules on outgoing connections, listening ports and DNS questions judge with the
//! caller's facts (sensors/facts.rs), read here, once per call and only the fields the rules in
//! force read, before the check that the call still waits (which proves they are the caller's).

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use super::Supervisor;
use super::answer::{Answer, Attempts, Checked};
use super::perform::{AsCaller, Caller, Perform};
use crate::activity;
use crate::audit::{ActivityViolation, Event};
use crate::dns::forwarder::{Client, Forwarder};
use crate::dns::{self, Finding};
use crate::policy::custom::{FieldSet, Kind, Process};
use crate::policy::{Consequence, Effect, Live, Rule};
use crate::seccomp::NetCall;
use crate::sensors::dns as sensors_dns;
use crate::sensors::family::{self, Family};
use crate::sensors::{Objection, bind, connect, exec, facts, send};
use crate::sys::copyin;
use crate::sys::remote::RemoteMemory;
use crate::sys::seccomp::{Notification, Responder};
use crate::sys::sockaddr::{self, MMSGHDR_SIZE, MSGHDR_SIZE, MsgHdr};
use crate::sys::socket::{self, OwnedMsg, RawAddr, SocketKind};
use crate::sys::{creds, pidfd, procfs, remote};

/// SCM_MAX_FD (include/net/scm.h): the most descriptors one message may pass.
const SCM_MAX_FD: usize = 253;

/// The network sensor's state for one run: the forwarder and the channel on
/// which its threads report findings to the supervisor's loop.
pub(super) struct NetSensor {
    forwarder: Forwarder,
    findings: mpsc::Receiver<Finding>,
    /// Readable when findings wait; polled by the loop.
    pub(super) wake: std::io::PipeReader,
    /// The last DNS finding audited, by process and name: one lookup asks for A and AAAA, and one
    /// lookup should be one audit.
    dns_findings: Attempts<(u32, String)>,
    /// pidfds of the threads that made socket calls, kept between calls.
    pidfds: Pidfds,
    /// Below this port, binding needs CAP_NET_BIND_SERVICE (net.ipv4.ip_unprivileged_port_start).
    unprivileged_port_start: u16,
    pub(super) responder: Responder,
    /// The web application firewall's takeovers and proxy (supervisor/waas.rs).
    pub(super) firewall: super::waas::Firewall,
}

impl NetSensor {
    /// Starts the forwarder, which checks questions against the rule in force at each query.
    /// Runs after fork: it starts threads.
    pub(super) fn start(policy: &Live, responder: Responder) -> std::io::Result<NetSensor> {
        let (tx, findings) = mpsc::channel();
        let (wake, waker) = std::io::pipe()?;
        for end in [wake.as_fd(), waker.as_fd()] {
            let flags = nix::fcntl::fcntl(end, nix::fcntl::FcntlArg::F_GETFL)?;
            let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
            nix::fcntl::fcntl(end, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        }
        // A full pipe already wakes the loop; the byte only has to be there.
        let wake_loop: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = std::io::Write::write(&mut &waker, &[1]);
        });
        let woken = wake_loop.clone();
        let report: Arc<dyn Fn(Finding) + Send + Sync> = Arc::new(move |f| {
            let _ = tx.send(f);
            woken();
        });
        let forwarder = Forwarder::start(policy.clone(), report)?;
        // Unreadable: the kernel's default.
        let unprivileged_port_start = procfs::unprivileged_port_start().unwrap_or(1024);
        Ok(NetSensor {
            forwarder,
            findings,
            wake,
            pidfds: Pidfds::default(),
            dns_findings: Attempts::new(),
            unprivileged_port_start,
            responder,
            firewall: super::waas::Firewall::new(wake_loop),
        })
    }
}

/// pidfds of calling threads, kept from one call to the next: a thread making socket calls makes
/// many, and opening and closing a pidfd is a third of the system calls of a trapped connect. A
/// pidfd never names another process: once its thread is gone, `pidfd_getfd` fails with ESRCH and
/// the pidfd is opened afresh for whoever has the thread id now.
///
/// With each kept pidfd, the thread's process (its thread group id), once read: a resolver's
/// socket registered at the forwarder names the process that asked, and reading it from
/// /proc/TID/status is most of the cost of that registration. Safe to keep: a thread's thread
/// group does not change while it lives, and an entry is used only in a call whose descriptor was
/// just taken through the entry's pidfd, which proves that thread alive and the caller (its call
/// waits, so the id is not reused meanwhile). The one case where the thread behind an id changes
/// group, a thread other than the leader calling execve (de_thread takes over the leader's id and
/// gives up its own), leaves the pidfd naming the old thread: gone, so `pidfd_getfd` through it
/// fails with ESRCH and the entry is dropped, tgid and all.
#[derive(Default)]
struct Pidfds {
    by_tid: HashMap<u32, Kept>,
}

/// A kept pidfd of a thread, and its thread group id once read.
struct Kept {
    pidfd: OwnedFd,
    tgid: Option<u32>,
}

/// How many pidfds are kept at most (a container with more threads making socket calls just opens
/// some again).
const MAX_PIDFDS: usize = 256;

impl Pidfds {
    /// Duplicates descriptor `fd` of thread `tid`.
    fn getfd(&mut self, tid: u32, fd: i32) -> std::io::Result<OwnedFd> {
        if let Some(kept) = self.by_tid.get(&tid) {
            match pidfd::getfd(kept.pidfd.as_fd(), fd) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    self.by_tid.remove(&tid);
                }
                other => return other,
            }
        }
        // Only a pidfd of the thread itself is kept: a kept pidfd of its process (kernels before
        // 6.9) could be used for another process's thread that got the same id later.
        let (pidfd, own) = pidfd::of_files(tid)?;
        let dup = pidfd::getfd(pidfd.as_fd(), fd);
        if own {
            if self.by_tid.len() >= MAX_PIDFDS {
                self.by_tid.clear();
            }
            self.by_tid.insert(tid, Kept { pidfd, tgid: None });
        }
        dup
    }

    /// The process of `caller`, whose socket was just taken with `getfd` (see [`Pidfds`] for why
    /// only then): kept with its pidfd once read.
    fn tgid(&mut self, caller: Caller) -> u32 {
        let Some(kept) = self.by_tid.get_mut(&caller.tid) else {
            return caller.tgid();
        };
        if let Some(tgid) = kept.tgid {
            return tgid;
        }
        match procfs::tgid(caller.tid) {
            Ok(tgid) => *kept.tgid.insert(tgid),
            Err(_) => caller.tgid(),
        }
    }
}

impl Supervisor {
    /// Decides one trapped socket call and performs it. Every failure on the way denies it.
    pub(super) fn on_net(&mut self, n: &Notification, call: NetCall) -> Answer {
        let rule = self.enforcing_network();
        // With no rule enforcing network or DNS, only connects are looked at: a resolver's socket
        // goes to the forwarder all the same, so that a DNS rule the console puts in force later
        // applies to every query it sends (the forwarder checks each against the rule in force);
        // and binds while a WAAS rule protects a port, which the firewall may take over.
        let waas = self.waas.current();
        let firewall =
            call == NetCall::Bind && waas.rule.as_ref().is_some_and(|r| !r.apps.is_empty());
        if rule.is_none() && call != NetCall::Connect && !firewall {
            return Answer::Unchecked;
        }
        if self.life.is_blocked() {
            return Answer::Deny(libc::EPERM);
        }
        let (sock, kind) = match self.caller_socket(n) {
            Ok(s) => s,
            Err(Failure::Kernel(errno)) => return Answer::Deny(errno),
            Err(Failure::Inspection(e)) => return self.uninspectable(rule.as_deref(), n, &e),
        };
        let caller = Caller {
            id: n.id,
            tid: n.pid,
        };
        match (family::decide(rule.as_deref(), kind), rule.as_deref()) {
            (Family::Inet, _) => {}
            // Looked at only for the firewall, which takes over IP sockets alone.
            (_, None) if call == NetCall::Bind => return Answer::Unchecked,
            (Family::Raw, Some(rule)) => {
                return self.raw_socket(n, rule, &family::call_on(call, kind));
            }
            // `decide` finds no raw socket refused without a rule: fail closed all the same.
            (Family::Raw, None) => return Answer::Deny(libc::EPERM),
            (Family::Unjudgeable, _) => {
                return self.refuse(n, &family::unjudgeable_message(kind.domain));
            }
            (Family::AsCaller, _) => {
                return match self.as_caller(n, call, kind, caller) {
                    Ok((job, with)) => self.perform_as_caller(job, sock, caller, with),
                    Err(answer) => answer,
                };
            }
        }
        let result = match (call, rule.as_deref()) {
            (NetCall::Connect, rule) => self.connect(n, rule, &sock, kind, caller),
            (NetCall::Bind, rule) => match self.bind(n, rule, kind, caller) {
                Ok(Bound::Perform(job)) => Ok(job),
                Ok(Bound::TakeOver(front)) => return self.take_over(&sock, kind, front),
                Err(answer) => Err(answer),
            },
            (NetCall::Sendto | NetCall::Sendmsg | NetCall::Sendmmsg, Some(rule)) => {
                self.send(n, call, rule, &sock, kind, caller)
            }
            // Returned above.
            (_, None) => return Answer::Unchecked,
        };
        match result {
            Ok(job) => self.perform(job, sock, kind, caller),
            Err(answer) => answer,
        }
    }

    /// The rule in force when it enforces network or DNS.
    pub(super) fn enforcing_network(&self) -> Option<Arc<Rule>> {
        self.policy
            .current()
            .rule
            .clone()
            .filter(|r| r.enforces_network())
    }

    /// A duplicate of the socket the call is about, and what kind of socket it is.
    fn caller_socket(&mut self, n: &Notification) -> Result<(OwnedFd, SocketKind), Failure> {
        // The pidfd, and the duplicate taken through it, are the caller's only if the call still
        // waits when they are used: checked once, after the arguments are read too
        // (`still_waiting`), since a notification still pending proves that the thread id was not
        // reused in between. (A socket that is not IP is let through unused.)
        let fd = n.args[0] as i32;
        let Some(net) = self.net.as_mut() else {
            // Socket calls are trapped only while the sensor runs.
            return Err(Failure::Kernel(libc::ENOSYS));
        };
        let sock = net
            .pidfds
            .getfd(n.pid, fd)
            .map_err(|e| match e.raw_os_error() {
                // What the kernel itself answers for a bad descriptor.
                Some(libc::EBADF) => Failure::Kernel(libc::EBADF),
                _ => Failure::Inspection(e),
            })?;
        let kind = socket::socket_kind(sock.as_fd())
            .map_err(|e| Failure::Kernel(e.raw_os_error().unwrap_or(libc::ENOTSOCK)))?;
        Ok((sock, kind))
    }

    /// A socket call the supervisor may not look into (another uid's process without
    /// CAP_SYS_PTRACE): refused under `prevent` and `block`; let through and reported under
    /// `alert`, which never breaks a workload (docs/policy.md).
    fn uninspectable(
        &mut self,
        rule: Option<&Rule>,
        n: &Notification,
        e: &std::io::Error,
    ) -> Answer {
        let Some(rule) = rule else {
            // Nothing is enforced: the connect was only to be steered to the forwarder.
            return Answer::Unchecked;
        };
        if rule.socket_effect().consequence() != Consequence::Proceed {
            log::warn!(
                "socket call by {} refused: it cannot be inspected ({e})",
                n.pid
            );
            return Answer::Deny(libc::EPERM);
        }
        let message = family::uninspectable_message(n.pid, &e.to_string(), rule.name());
        self.report(Some(rule.name()), message);
        Answer::Unchecked
    }

    /// `rule`: the rule in force, when it enforces network or DNS.
    fn connect(
        &mut self,
        n: &Notification,
        rule: Option<&Rule>,
        sock: &OwnedFd,
        kind: SocketKind,
        caller: Caller,
    ) -> Result<Perform, Answer> {
        let addr = read_address(n)?;
        // The custom rules' facts: on outgoing connections, and on DNS for a resolver's socket
        // (kept at the forwarder's registration), read before the call is checked to still wait.
        let facts = match rule {
            Some(rule) => {
                let dest = || sockaddr::target(sockaddr::Use::Connect, kind.domain, addr.bytes());
                let kinds = event_kinds(rule, || dest().into_iter());
                self.caller_facts(n, rule, &kinds)?
            }
            None => None,
        };
        self.still_waiting(n)?;
        let verdict = connect::decide(rule, kind, addr.bytes(), facts.as_ref().map(|f| &f.1));
        if rule.is_some() {
            activity::reached(kind.ty == libc::SOCK_STREAM, || verdict.dest);
        }
        if let (Some(objection), Some(rule)) = (verdict.objection, rule) {
            self.object(rule, objection, caller)?;
        }
        if let (Some(proto), Some(dest)) = (verdict.steer, verdict.dest)
            && let Some(net) = self.net.as_mut()
        {
            let fwd = &net.forwarder;
            // A resolver's socket: connected to the forwarder instead, which checks each question
            // and relays the rest to `dest` (dns/forwarder.rs). Done here, not on a thread: a
            // connect to loopback does not wait.
            let to = RawAddr::from_socket_addr(fwd.address(proto, kind.domain));
            let out = socket::connect(sock.as_fd(), &to);
            if matches!(out, Ok(_) | Err(libc::EINPROGRESS))
                && let Ok(local) = socket::local_addr(sock.as_fd())
            {
                let client = Client {
                    upstream: dest,
                    pid: net.pidfds.tgid(caller),
                    process: super::caller_exe(caller.tid),
                    // Nothing to read (no custom rule on DNS, or no rule): an empty set of
                    // facts, which covers what such a rule reads; unreadable: none.
                    facts: match (rule, facts) {
                        (_, Some(facts)) => Some(facts),
                        (Some(r), None) if !r.custom(Kind::Dns).is_empty() => None,
                        _ => Some((FieldSet::default(), Process::default())),
                    },
                };
                fwd.register(proto, local, client);
            }
            return Err(Answer::Performed(out));
        }
        Ok(Perform::Connect(addr))
    }

    /// `rule`: the rule in force, when it enforces network or DNS. A bind to a port the WAAS
    /// rule in force protects is taken over by the firewall (supervisor/waas.rs), once the
    /// runtime rule and the privilege allowed it.
    fn bind(
        &mut self,
        n: &Notification,
        rule: Option<&Rule>,
        kind: SocketKind,
        caller: Caller,
    ) -> Result<Bound, Answer> {
        let addr = read_address(n)?;
        let facts = match rule {
            Some(rule) => self.caller_facts(n, rule, &[Kind::Listening])?,
            None => None,
        };
        self.still_waiting(n)?;
        let start = self
            .net
            .as_ref()
            .map_or(1024, |s| s.unprivileged_port_start);
        let verdict = bind::decide(
            rule,
            kind,
            addr.bytes(),
            start,
            facts.as_ref().map(|f| &f.1),
        );
        activity::bound(kind.ty == libc::SOCK_STREAM, || {
            sockaddr::target(sockaddr::Use::Bind, kind.domain, addr.bytes())
        });
        if let (Some(objection), Some(rule)) = (verdict.objection, rule) {
            self.object(rule, objection, caller)?;
        }
        if verdict.needs_capability
            && !creds::of_task(caller.tid)
                .is_ok_and(|c| c.has_capability(bind::CAP_NET_BIND_SERVICE))
        {
            return Err(Answer::Deny(libc::EACCES));
        }
        // The WAAS rule in force at this bind decides; one that arrives later finds the port
        // bound as it was, until the next bind (docs/waas.md).
        match bind::protected(kind, addr.bytes(), &self.waas.current()) {
            Some(front) => Ok(Bound::TakeOver(front)),
            None => Ok(Bound::Perform(Perform::Bind(addr))),
        }
    }

    fn send(
        &mut self,
        n: &Notification,
        call: NetCall,
        rule: &Rule,
        sock: &OwnedFd,
        kind: SocketKind,
        caller: Caller,
    ) -> Result<Perform, Answer> {
        let stream = kind.ty == libc::SOCK_STREAM;
        let (max_data, truncate) = send::copy_limits(true, stream);
        let (mut msgs, flags, mmsg_at) = read_send(n, call, stream, max_data, truncate)?;
        // The custom rules' facts, for the kinds of events the messages are.
        let kinds = event_kinds(rule, || {
            msgs.iter()
                .filter_map(|m| send::destination(kind, flags, m.name.as_ref().map(|a| a.bytes())))
        });
        let facts = self.caller_facts(n, rule, &kinds)?;
        let facts = facts.as_ref().map(|f| &f.1);
        self.still_waiting(n)?;
        for msg in &mut msgs {
            activity::reached(stream, || {
                send::destination(kind, flags, msg.name.as_ref().map(|a| a.bytes()))
            });
            let verdict = match send::decide(rule, kind, flags, msg, facts) {
                Ok(verdict) => verdict,
                Err(send::Refusal::Control { level, kind }) => {
                    let what = format!("Ancillary data of level {level} and type {kind} on a send");
                    return Err(self.refuse(n, &what));
                }
                Err(refusal) => return Err(Answer::Deny(refusal.errno())),
            };
            if let Some(objection) = verdict.objection {
                self.object(rule, objection, caller)?;
            }
            match verdict.dns {
                sensors_dns::Send::Plain => {}
                sensors_dns::Send::FastOpen => return Err(Answer::Deny(libc::EOPNOTSUPP)),
                sensors_dns::Send::Question => {
                    self.dns_datagram(rule, sock, caller, msg, facts)?;
                }
            }
        }
        Ok(Perform::Send {
            msgs,
            flags,
            mmsg_at,
            stream,
        })
    }

    /// A datagram sent with an address to port 53: a DNS query from a resolver that does not
    /// connect (musl), checked here (`sensors::dns::question` says what becomes of it).
    fn dns_datagram(
        &mut self,
        rule: &Rule,
        sock: &OwnedFd,
        caller: Caller,
        msg: &mut OwnedMsg,
        facts: Option<&Process>,
    ) -> Checked {
        if let Some(fwd) = self.net_forwarder()
            && socket::peer_addr(sock.as_fd()).is_ok_and(|p| fwd.is_forwarder(p))
        {
            // Connected to the forwarder already (a resolver that connects, then sends with the
            // address anyway): the forwarder checks it; send it there.
            msg.name = None;
            return Ok(());
        }
        // Who asked is read only for a finding, still while the call waits (checked by `send`):
        // the thread id names the caller until the call is answered.
        let asker = || (caller.tgid(), super::caller_exe(caller.tid));
        let (decision, finding) = dns::decide(rule, &msg.data, asker, facts);
        let effect = finding.as_ref().map_or(Effect::Disable, |f| f.effect);
        if let Some(f) = finding {
            self.on_dns_finding(f);
        }
        match sensors_dns::question(decision, effect) {
            sensors_dns::Question::Send => {}
            sensors_dns::Question::Refuse => return Err(Answer::Deny(libc::EPERM)),
            sensors_dns::Question::Substitute => {
                msg.data = dns::substitute(&msg.data).ok_or(Answer::Deny(libc::EPERM))?;
            }
        }
        Ok(())
    }

    fn net_forwarder(&self) -> Option<&Forwarder> {
        self.net.as_ref().map(|s| &s.forwarder)
    }

    /// The caller's facts for the custom rules on `kinds` of `rule` (what the events of this call
    /// may be), with the fields read: only those the rules read; `None` when no such rule is in
    /// force (nothing is read), or when they could not be read and the rules cannot refuse: then
    /// reported under `alert`, and the sections judge alone. Unreadable where a rule could
    /// prevent or block: the call is refused (fail closed), as a call that cannot be inspected.
    /// Read before the call is checked to still wait, which proves they are the caller's.
    fn caller_facts(
        &mut self,
        n: &Notification,
        rule: &Rule,
        kinds: &[Kind],
    ) -> Result<Option<(FieldSet, Process)>, Answer> {
        let in_force = kinds.iter().map(|k| rule.custom(*k));
        if in_force.clone().all(|c| c.is_empty()) {
            return Ok(None);
        }
        let fields = in_force
            .clone()
            .fold(FieldSet::default(), |f, c| f.union(c.fields()));
        let e = match facts::of_caller(n.pid, fields, &self.users) {
            Ok(p) => return Ok(Some((fields, p))),
            Err(e) => e,
        };
        self.still_waiting(n)?;
        match in_force.fold(Effect::Disable, |e, c| e.stricter(c.strictest())) {
            Effect::Disable => Ok(None),
            Effect::Alert => {
                let message = family::uninspectable_message(n.pid, &e.to_string(), rule.name());
                self.report(Some(rule.name()), message);
                Ok(None)
            }
            Effect::Prevent | Effect::Block => {
                log::warn!(
                    "socket call by {} refused: it cannot be inspected ({e})",
                    n.pid
                );
                Err(Answer::Deny(libc::EPERM))
            }
        }
    }

    /// Copies the arguments of a call on a socket that is not IP, and what performing it as the
    /// caller takes: its credentials, for a unix socket its file-system context, the descriptors
    /// it passes. All of it is the caller's because the call still waits after it was read.
    fn as_caller(
        &mut self,
        n: &Notification,
        call: NetCall,
        kind: SocketKind,
        caller: Caller,
    ) -> Result<(Perform, AsCaller), Answer> {
        let unix = kind.domain == libc::AF_UNIX;
        let stream = kind.ty == libc::SOCK_STREAM;
        let mut job = match call {
            NetCall::Connect => Perform::Connect(read_address(n)?),
            NetCall::Bind => Perform::Bind(read_address(n)?),
            NetCall::Sendto | NetCall::Sendmsg | NetCall::Sendmmsg => {
                let (max_data, truncate) = send::copy_limits(false, stream);
                let (msgs, flags, mmsg_at) = read_send(n, call, stream, max_data, truncate)?;
                Perform::Send {
                    msgs,
                    flags,
                    mmsg_at,
                    stream,
                }
            }
        };
        let refused = |what: &str, e: std::io::Error| {
            log::warn!("socket call by {} refused: {what}: {e}", caller.tid);
            Answer::Deny(libc::EPERM)
        };
        let (creds, fs) = match unix {
            true => creds::of_task_with_fs(caller.tid).map(|(c, fs)| (c, Some(fs))),
            false => creds::of_task(caller.tid).map(|c| (c, None)),
        }
        .map_err(|e| refused("its credentials, root or cwd", e))?;
        let mut with = AsCaller {
            creds,
            fs,
            mem: None,
            passed: Vec::new(),
        };
        if let Perform::Send { msgs, mmsg_at, .. } = &mut job {
            if mmsg_at.is_some() {
                let mem = remote::open_for_writing(caller.tid as i32)
                    .map_err(|e| refused("its memory", e))?;
                with.mem = Some(mem);
            }
            if unix {
                self.unix_control(caller, &with.creds, msgs, &mut with.passed)?;
            }
        }
        self.still_waiting(n)?;
        Ok((job, with))
    }

    /// Makes the ancillary data of a unix-socket send fit to be sent by the performer:
    /// descriptors passed with SCM_RIGHTS are taken from the caller's table (`pidfd_getfd`) and
    /// ours sent in their place; SCM_CREDENTIALS must be the caller's own
    /// (`send::scm_credentials`); without them, the credentials the kernel would attach for the
    /// caller are sent explicitly (`send::sender_credentials`: the performer's own real uid is
    /// the supervisor's). Other messages are sent as they are: the kernel checks them
    /// against the performer's effective capabilities, which are the caller's. A `sendmmsg`
    /// that would pass more than SCM_MAX_FD descriptors in all sends the messages before the
    /// one that would (fewer messages than asked, which its caller must handle anyway).
    fn unix_control(
        &mut self,
        caller: Caller,
        creds: &creds::Creds,
        msgs: &mut Vec<OwnedMsg>,
        passed: &mut Vec<OwnedFd>,
    ) -> Checked {
        let Some(net) = self.net.as_mut() else {
            return Err(Answer::Deny(libc::ENOSYS));
        };
        let own_pid = std::process::id();
        for i in 0..msgs.len() {
            let before = passed.len();
            let msg = &mut msgs[i];
            let list = sockaddr::cmsgs(&msg.control).map_err(Answer::Deny)?;
            let mut explicit = false;
            for c in list.iter().cloned() {
                let data = &mut msg.control[c.data];
                match (c.level, c.kind) {
                    (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                        for slot in data.chunks_exact_mut(4) {
                            let fd = i32::from_ne_bytes(slot.try_into().expect("4 bytes"));
                            let dup = net.pidfds.getfd(caller.tid, fd).map_err(|e| {
                                Answer::Deny(match e.raw_os_error() {
                                    Some(libc::EBADF) => libc::EBADF,
                                    _ => libc::EPERM,
                                })
                            })?;
                            slot.copy_from_slice(&dup.as_raw_fd().to_ne_bytes());
                            passed.push(dup);
                        }
                    }
                    (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                        let ucred = send::scm_credentials(data, caller.tgid(), creds, own_pid)
                            .map_err(Answer::Deny)?;
                        data.copy_from_slice(&ucred);
                        explicit = true;
                    }
                    _ => {}
                }
            }
            if !explicit {
                let ucred = send::sender_credentials(creds, own_pid);
                sockaddr::append_credentials(&mut msg.control, &list, ucred);
            }
            if passed.len() - before > SCM_MAX_FD {
                // What the kernel answers (scm_fp_copy).
                return Err(Answer::Deny(libc::EINVAL));
            }
            if passed.len() > SCM_MAX_FD {
                msgs.truncate(i);
                passed.truncate(before);
                break;
            }
        }
        Ok(())
    }

    /// Everything read from the caller's memory is the caller's only if the call still waits.
    fn still_waiting(&self, n: &Notification) -> Checked {
        match self.listener.id_valid(n.id) {
            true => Ok(()),
            false => Err(Answer::Deny(libc::EPERM)),
        }
    }

    /// Audits what the rule objects to and applies its effect (supervisor/answer.rs).
    fn object(&mut self, rule: &Rule, objection: Objection, caller: Caller) -> Checked {
        let process = super::caller_exe(caller.tid);
        let what = objection.what(&process);
        let event = Event::activity(
            &self.scope,
            &ActivityViolation {
                rule: rule.name(),
                effect: objection.effect,
                cause: objection.cause,
                pid: caller.tgid(),
                process: &process,
                activity: objection.activity,
            },
        );
        self.enforce(rule.name(), objection.effect, Some(event), &what)
    }

    /// Audits a DNS finding (from the forwarder's threads or from a musl send) and applies `block`.
    pub(super) fn on_dns_finding(&mut self, f: Finding) {
        let Some(rule) = self.policy.current().rule.clone() else {
            return;
        };
        if f.unread {
            // A question let through under `alert` without the facts: reported, nothing to apply.
            self.sink.emit(f.event(&self.scope, rule.name()));
            return;
        }
        let repeated = self.net.as_mut().is_some_and(|s| {
            s.dns_findings
                .repeats((f.pid, f.domain.clone()), Instant::now())
        });
        // Each malformed message is its own attempt: no resolver library sends one.
        if repeated && f.effect != Effect::Block && f.malformed.is_none() {
            return;
        }
        let what = f.what();
        let event = f.event(&self.scope, rule.name());
        // The call was answered already (the forwarder, `dns_datagram`): only the audit and a
        // `block` remain.
        let _ = self.enforce(rule.name(), f.effect, Some(event), &what);
    }

    /// Drains the findings the forwarder's threads reported.
    pub(super) fn drain_findings(&mut self) {
        let Some(s) = self.net.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        while matches!((&s.wake).read(&mut buf), Ok(n) if n > 0) {}
        let findings: Vec<Finding> = s.findings.try_iter().collect();
        for f in findings {
            self.on_dns_finding(f);
        }
        self.drain_waas();
    }

    /// Refuses a call that would get past the network checks (io_uring, a source route, ancillary
    /// data a performed send may not carry, a 32-bit socket call) while they are on, and reports
    /// it.
    pub(super) fn refuse(&mut self, n: &Notification, what: &str) -> Answer {
        // Refused whatever the rule in force says: these are trapped only while socket calls are,
        // and with a console a network rule can arrive after an io_uring was set up or a source
        // route set, which would then keep working around it.
        let in_force = self.policy.current();
        let process = super::caller_exe(n.pid);
        let message = family::bypass_message(what, &process, exec::process_of(n.pid));
        log::warn!("{message}");
        self.report(in_force.rule_name(), message);
        Answer::Deny(libc::EPERM)
    }
}

/// The kinds of custom rules of `rule` a call to the destinations `dests` makes events of: an
/// outgoing connection for any destination, a DNS question for one at port 53 (a question sent,
/// or a resolver's socket registered at the forwarder). Without custom rules of either kind, the
/// destinations are not even looked at: nothing is read.
fn event_kinds<I: Iterator<Item = std::net::SocketAddr>>(
    rule: &Rule,
    dests: impl FnOnce() -> I,
) -> Vec<Kind> {
    let (outgoing, question_kind) = (Kind::NetworkOutgoing, Kind::Dns);
    if rule.custom(outgoing).is_empty() && rule.custom(question_kind).is_empty() {
        return Vec::new();
    }
    let (mut any, mut question) = (false, false);
    for d in dests() {
        any = true;
        question |= d.port() == dns::PORT;
    }
    match (any, question) {
        (false, _) => Vec::new(),
        (true, false) => vec![outgoing],
        (true, true) => vec![outgoing, question_kind],
    }
}

/// What becomes of an allowed bind.
enum Bound {
    Perform(Perform),
    /// The firewall takes it over, listening on this address (supervisor/waas.rs).
    TakeOver(std::net::SocketAddr),
}

/// Why a socket could not be taken.
enum Failure {
    /// The kernel's own answer to the call (EBADF, ENOTSOCK): given to the caller as is.
    Kernel(i32),
    /// The supervisor was not allowed to look.
    Inspection(std::io::Error),
}

/// A copy of the messages of a `sendto`, `sendmsg` or `sendmmsg`, its flags, and for `sendmmsg`
/// where its headers are: at most `max_data` bytes a message, cut (`truncate`) or refused.
fn read_send(
    n: &Notification,
    call: NetCall,
    stream: bool,
    max_data: usize,
    truncate: bool,
) -> Result<(Vec<OwnedMsg>, i32, Option<u64>), Answer> {
    let mut mem = RemoteMemory::new(n.pid as i32);
    let sent = match call {
        NetCall::Sendto => {
            let len = n.args[2] as usize;
            if len > max_data && !truncate {
                return Err(Answer::Deny(libc::EMSGSIZE));
            }
            let data =
                copyin::read_exact(&mut mem, n.args[1], len.min(max_data)).map_err(Answer::Deny)?;
            let name =
                copyin::read_sockaddr(&mut mem, n.args[4], n.args[5]).map_err(Answer::Deny)?;
            let msg = OwnedMsg {
                name,
                data,
                control: Vec::new(),
            };
            (vec![msg], n.args[3] as i32, None)
        }
        NetCall::Sendmsg => {
            let hdr = read_hdr(&mut mem, n.args[1])?;
            let msg = copyin::read_msg(&mut mem, &hdr, max_data, truncate).map_err(Answer::Deny)?;
            (vec![msg], n.args[2] as i32, None)
        }
        _ => {
            // How many messages are copied: `send::mmsg_count`, `send::copies_more`. A message
            // that cannot be read after the first ends the call there, as in the kernel
            // (__sys_sendmmsg).
            let vlen = send::mmsg_count(n.args[2]);
            // Every header in one copy (a stream socket's call copies one message at most); where
            // that faults, one header at a time, to stop where the kernel would.
            let wanted = if stream { vlen.min(1) } else { vlen };
            let headers = copyin::read_exact(&mut mem, n.args[1], wanted * MMSGHDR_SIZE).ok();
            let mut msgs: Vec<OwnedMsg> = Vec::new();
            let mut copied = 0;
            for i in 0..vlen {
                if !send::copies_more(i, stream, copied) {
                    break;
                }
                let at = i * MMSGHDR_SIZE;
                let hdr = match headers.as_deref().and_then(|h| h.get(at..at + MSGHDR_SIZE)) {
                    Some(h) => Ok(parse_hdr(h)),
                    None => read_hdr(&mut mem, n.args[1] + (i * MMSGHDR_SIZE) as u64),
                };
                let msg = hdr.and_then(|hdr| {
                    copyin::read_msg(&mut mem, &hdr, max_data, truncate).map_err(Answer::Deny)
                });
                match msg {
                    Ok(m) => {
                        copied += m.data.len();
                        msgs.push(m);
                    }
                    Err(answer) if i == 0 => return Err(answer),
                    Err(_) => break,
                }
            }
            (msgs, n.args[3] as i32, Some(n.args[1]))
        }
    };
    Ok(sent)
}

/// The address argument of a `connect` or `bind` (arguments 1 and 2), copied; empty for a NULL
/// one, which the kernel refuses by itself when the call is performed.
fn read_address(n: &Notification) -> Result<RawAddr, Answer> {
    let mut mem = RemoteMemory::new(n.pid as i32);
    let addr = copyin::read_sockaddr(&mut mem, n.args[1], n.args[2]).map_err(Answer::Deny)?;
    Ok(addr.unwrap_or_else(|| RawAddr::new(&[])))
}

fn read_hdr(mem: &mut RemoteMemory, at: u64) -> Result<MsgHdr, Answer> {
    let bytes = copyin::read_exact(mem, at, MSGHDR_SIZE).map_err(Answer::Deny)?;
    Ok(parse_hdr(&bytes))
}

/// `bytes`: MSGHDR_SIZE bytes of a `struct msghdr`.
fn parse_hdr(bytes: &[u8]) -> MsgHdr {
    MsgHdr::parse(bytes.try_into().expect("MSGHDR_SIZE bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::testing::{custom_rule, rule};

    /// A `sendmmsg`'s messages copied out of a caller (this process): every header in one copy,
    /// and the kernel's stops: one message on a stream socket, and the first message that cannot
    /// be read after the first ends the call there.
    #[test]
    fn sendmmsg_messages_copied_as_the_kernel_takes_them() {
        let datas: [&[u8]; 3] = [b"one", b"two!", b"three"];
        let iovs: Vec<[u64; 2]> = datas
            .iter()
            .map(|d| [d.as_ptr() as u64, d.len() as u64])
            .collect();
        // struct mmsghdr: msg_iov at 16, msg_iovlen at 24, 64 bytes each.
        let headers = |bad: Option<usize>| -> Vec<u8> {
            let mut h = vec![0u8; 3 * MMSGHDR_SIZE];
            for (i, iov) in iovs.iter().enumerate() {
                let at = if bad == Some(i) {
                    8
                } else {
                    iov.as_ptr() as u64
                };
                h[i * MMSGHDR_SIZE + 16..][..8].copy_from_slice(&at.to_ne_bytes());
                h[i * MMSGHDR_SIZE + 24..][..8].copy_from_slice(&1u64.to_ne_bytes());
            }
            h
        };
        let call = |h: &[u8], stream: bool| {
            let n = Notification {
                id: 0,
                pid: std::process::id(),
                arch: 0,
                nr: 0,
                args: [3, h.as_ptr() as u64, 3, 0, 0, 0],
            };
            read_send(&n, NetCall::Sendmmsg, stream, 1 << 16, stream)
                .map(|(msgs, _, _)| msgs.into_iter().map(|m| m.data).collect::<Vec<_>>())
        };
        let all: Vec<Vec<u8>> = datas.iter().map(|d| d.to_vec()).collect();
        assert_eq!(call(&headers(None), false).ok(), Some(all.clone()));
        assert_eq!(call(&headers(None), true).ok(), Some(all[..1].to_vec()));
        assert_eq!(call(&headers(Some(1)), false).ok(), Some(all[..1].to_vec()));
        assert!(matches!(
            call(&headers(Some(0)), false),
            Err(Answer::Deny(libc::EFAULT))
        ));
    }

    #[test]
    fn kinds_of_events_facts_are_read_for() {
        let library = r#"[{"name": "o", "type": "network-outgoing", "script": "net.outgoing_port = 22"},
                          {"name": "d", "type": "dns", "script": "dns.name = \"x.test\""}]"#;
        let outgoing = custom_rule(
            library,
            r#""customRules": [{"name": "o", "effect": "alert"}]"#,
        );
        let dns_only = custom_rule(
            library,
            r#""customRules": [{"name": "d", "effect": "alert"}]"#,
        );
        let none = rule(r#""network": {"effect": "prevent"}"#);
        let to = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        use Kind::*;
        type Case<'a> = (&'a str, &'a Rule, Vec<&'a str>, Vec<Kind>);
        let cases: Vec<Case> = vec![
            ("no custom rule", &none, vec!["192.0.2.1:53"], vec![]),
            (
                "a connect",
                &outgoing,
                vec!["192.0.2.1:22"],
                vec![NetworkOutgoing],
            ),
            (
                "to a name server",
                &dns_only,
                vec!["192.0.2.1:53"],
                vec![NetworkOutgoing, Dns],
            ),
            ("no destination", &outgoing, vec![], vec![]),
            (
                "a sendmmsg, one of them DNS",
                &outgoing,
                vec!["192.0.2.1:443", "192.0.2.1:53"],
                vec![NetworkOutgoing, Dns],
            ),
        ];
        for (what, rule, dests, want) in cases {
            let got = event_kinds(rule, || dests.iter().map(|d| to(d)));
            assert_eq!(got, want, "{what}");
        }
        // Without custom rules the destinations are not looked at.
        let _ = event_kinds(&none, || -> std::iter::Empty<_> { panic!("looked at") });
    }
}
