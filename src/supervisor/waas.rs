//! The takeover of a protected port's `bind` by the web application firewall (docs/waas.md, How
//! it sits): the defender listens on the address the application asked for, binds the
//! application's socket to a loopback address and a port the kernel picks, and starts the proxy
//! (waas/proxy.rs) between the two, its thread and runtime only at the first takeover. Every
//! failure fails the application's bind, with a `defender` audit: a protected port is never left
//! unprotected silently.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use socket2::{Domain, SockRef, Socket, Type};

use super::Supervisor;
use super::answer::Answer;
use crate::audit::Event;
use crate::sys::socket::{self, RawAddr, SocketKind};
use crate::waas::proxy::{Proxy, Report};

/// How many audits the proxy may have waiting for the supervisor's loop; past it they are counted
/// and dropped (the count is reported), so that a flood of requests cannot grow the defender.
const MAX_WAITING_AUDITS: usize = 4096;

/// The backlog of a front listener (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// The firewall's side of the network sensor: the proxy once started, the ports taken over, and
/// the audits its thread hands to the loop.
pub(super) struct Firewall {
    proxy: Option<Proxy>,
    /// The application's socket address for each front address taken over: later binds of the
    /// same address join it (SO_REUSEPORT) or get what the kernel says of it.
    fronts: HashMap<SocketAddr, SocketAddr>,
    audits: mpsc::Receiver<Event>,
    report: Report,
    dropped: Arc<AtomicU64>,
}

impl Firewall {
    /// `wake`: wakes the supervisor's loop (it then calls [`Supervisor::drain_waas`]).
    pub(super) fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Firewall {
        let (tx, audits) = mpsc::sync_channel(MAX_WAITING_AUDITS);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        let report: Report = Arc::new(move |event| {
            if tx.try_send(event).is_err() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            wake();
        });
        Firewall {
            proxy: None,
            fronts: HashMap::new(),
            audits,
            report,
            dropped,
        }
    }
}

/// The loopback address the application's socket of `kind` is bound to instead; for an IPv6
/// socket that accepts IPv4 too, the IPv4 loopback when the container has no IPv6 loopback.
fn loopback(kind: SocketKind, v4_fallback: bool) -> SocketAddr {
    let ip = match (kind.domain == libc::AF_INET6, v4_fallback) {
        (false, _) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (true, false) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (true, true) => IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
    };
    SocketAddr::new(ip, 0)
}

/// Where the proxy connects to reach a socket bound at `bound`.
fn reach(bound: SocketAddr) -> SocketAddr {
    SocketAddr::new(bound.ip().to_canonical(), bound.port())
}

/// Opens the front listener on `front`, as the application's socket `app` would have listened
/// there: an IPv6 listener accepts IPv4 exactly when the application's socket would have
/// (`IPV6_V6ONLY`). Non-blocking, for the proxy's runtime.
fn front_listener(front: SocketAddr, app: &OwnedFd) -> std::io::Result<std::net::TcpListener> {
    let listener = Socket::new(Domain::for_address(front), Type::STREAM, None)?;
    // A front left in TIME_WAIT by a restart must not keep the port.
    listener.set_reuse_address(true)?;
    if front.is_ipv6() {
        listener.set_only_v6(SockRef::from(app).only_v6()?)?;
    }
    listener.bind(&front.into())?;
    listener.listen(BACKLOG)?;
    listener.set_nonblocking(true)?;
    Ok(listener.into())
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EPERM)
}

impl Supervisor {
    /// Takes over the bind of the application's socket `sock` (our duplicate: the same open file
    /// description as the caller's) to `front`, a port the WAAS rule in force protects.
    ///
    /// Answered with success without a CONTINUE, because the defender performed the bind: the
    /// address decided on is the supervisor's own copy (read once, the call still waiting), the
    /// socket bound is the caller's through the duplicate, and the kernel never reads the
    /// caller's memory again. Whatever the caller does meanwhile (rewrites the address, closes or
    /// replaces its descriptor) changes nothing of what is bound: the port itself is held by the
    /// defender's own listener, so no request reaches the application around the firewall.
    pub(super) fn take_over(
        &mut self,
        sock: &OwnedFd,
        kind: SocketKind,
        front: SocketAddr,
    ) -> Answer {
        let in_force = self.waas.current();
        let rule = in_force.rule.as_ref().map(|r| r.name.clone());
        match self.try_take_over(sock, kind, front) {
            Ok(answer) => answer,
            Err((what, e)) => {
                let message = format!(
                    "The bind of port {} by the application was refused: the web application firewall could not take it over ({what}: {e})",
                    front.port()
                );
                log::warn!("{message}");
                self.report(rule.as_deref(), message);
                Answer::Deny(errno(&e))
            }
        }
    }

    fn try_take_over(
        &mut self,
        sock: &OwnedFd,
        kind: SocketKind,
        front: SocketAddr,
    ) -> Result<Answer, (&'static str, std::io::Error)> {
        let Some(firewall) = self.net.as_mut().map(|n| &mut n.firewall) else {
            return Err((
                "no network sensor",
                std::io::Error::from_raw_os_error(libc::ENOSYS),
            ));
        };
        if let Some(backend) = firewall.fronts.get(&front) {
            // The address is behind the firewall already: this socket is bound where the first
            // one is. With SO_REUSEPORT on both, it joins the first one's group (the kernel
            // spreads connections over them) and the one front listener stays; without, the
            // kernel answers as it would have for the port itself (EADDRINUSE while the first
            // socket is there; success once it is closed, the application listening again).
            let to = RawAddr::from_socket_addr(*backend);
            return Ok(Answer::Performed(socket::bind(sock.as_fd(), &to)));
        }
        if firewall.proxy.is_none() {
            let proxy = Proxy::start(
                self.waas.clone(),
                self.scope.clone(),
                firewall.report.clone(),
            )
            .map_err(|e| ("starting the proxy", e))?;
            firewall.proxy = Some(proxy);
        }
        // The front first: if the address cannot be had, the application's socket stays unbound
        // and may try again, as after a failed bind of its own.
        let listener = front_listener(front, sock).map_err(|e| ("listening on the port", e))?;
        let v6only = kind.domain == libc::AF_INET6
            && SockRef::from(sock)
                .only_v6()
                .map_err(|e| ("reading IPV6_V6ONLY", e))?;
        let mut bound = socket::bind(
            sock.as_fd(),
            &RawAddr::from_socket_addr(loopback(kind, false)),
        );
        if bound == Err(libc::EADDRNOTAVAIL) && kind.domain == libc::AF_INET6 && !v6only {
            bound = socket::bind(
                sock.as_fd(),
                &RawAddr::from_socket_addr(loopback(kind, true)),
            );
        }
        if let Err(e) = bound {
            return Err((
                "binding the application's socket to loopback",
                std::io::Error::from_raw_os_error(e),
            ));
        }
        let backend = socket::local_addr(sock.as_fd())
            .map_err(|e| ("reading the application's loopback address", e))?;
        log::info!(
            "waas: port {} taken over: the firewall listens on {front}, the application on {backend}",
            front.port()
        );
        let proxy = firewall.proxy.as_ref().expect("started above");
        proxy.serve(listener, front.port(), reach(backend));
        firewall.fronts.insert(front, backend);
        Ok(Answer::Performed(Ok(0)))
    }

    /// Emits the audits the proxy handed over, and how many were dropped for want of room.
    pub(super) fn drain_waas(&mut self) {
        let Some(firewall) = self.net.as_mut().map(|n| &mut n.firewall) else {
            return;
        };
        let events: Vec<Event> = firewall.audits.try_iter().collect();
        let dropped = firewall.dropped.swap(0, Ordering::Relaxed);
        for e in events {
            self.sink.emit(e);
        }
        if dropped > 0 {
            let in_force = self.waas.current();
            let rule = in_force.rule.as_ref().map(|r| r.name.clone());
            self.report(
                rule.as_deref(),
                format!("{dropped} web application firewall audits were dropped: more came than could be written"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        let v4 = SocketKind {
            domain: libc::AF_INET,
            ty: libc::SOCK_STREAM,
        };
        let v6 = SocketKind {
            domain: libc::AF_INET6,
            ty: libc::SOCK_STREAM,
        };
        assert_eq!(loopback(v4, false), "127.0.0.1:0".parse().unwrap());
        assert_eq!(loopback(v6, false), "[::1]:0".parse().unwrap());
        assert_eq!(loopback(v6, true), "[::ffff:127.0.0.1]:0".parse().unwrap());
        assert_eq!(
            reach("[::ffff:127.0.0.1]:4000".parse().unwrap()),
            "127.0.0.1:4000".parse().unwrap()
        );
        assert_eq!(
            reach("[::1]:4000".parse().unwrap()),
            "[::1]:4000".parse().unwrap()
        );
    }
}
