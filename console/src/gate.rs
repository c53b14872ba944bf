//! Admission: the listening socket (its queue sized for a fleet reconnecting at once), the
//! open-file limit raised to what the system allows, the connections counted, and the room kept
//! for people when descriptors run short.
//!
//! Every connection holds a descriptor. When the open connections reach the limit less what the
//! process holds besides them and a reserve, the console is crowded: what defenders send (policy
//! polls, audit batches, heartbeats) is answered 503 with `Retry-After` and the connection
//! closed at once, which gives its descriptor back; everything else (the pages, the API for
//! people and automation, `/metrics`) is still served from the reserve. Should accepting fail
//! anyway (the reserve spent, or the system's own table full), the failure is counted and logged
//! (one line a second at most) and accepting pauses briefly instead of spinning; the connections
//! waiting meanwhile stay in the listen queue.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use prometheus_client::encoding::EncodeLabelSet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::app::{ApiError, AppState};
use crate::documents::Doc;
use crate::metrics::Metrics;

/// The listen queue asked for: a fleet's defenders reconnecting together after a restart wait in
/// it instead of being refused by the kernel (Linux's default is 1,024 since 5.4, 128 before).
/// The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;
/// After a failed accept, the pause before the next (the failure repeats until a descriptor is
/// given back, and `accept` would return at once).
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// At most one log line this often about refused connections (each one is counted).
const LOG_EVERY: Duration = Duration::from_secs(1);
/// What a defender refused for want of descriptors is told to wait before trying again.
const RETRY_AFTER_SECONDS: &str = "5";

/// Why a connection was refused: `reserve` (defender traffic while crowded, answered 503) or
/// `descriptors` (accept failed: out of descriptors, or another resource).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: &'static str,
}

/// The open connections and the number from which defender traffic is refused.
pub struct Gate {
    open: AtomicUsize,
    crowded_at: usize,
    metrics: Arc<Metrics>,
    /// When refusals were last logged, and how many since.
    logged: Mutex<(Option<Instant>, u64)>,
}

/// The descriptors kept for people out of `limit`: a twentieth, at least 32 (a few browsers'
/// connections and the console's own files), at most 1,024.
fn reserve(limit: usize) -> usize {
    (limit / 20).clamp(32, 1024)
}

/// The open connections from which defender traffic is refused, with `limit` descriptors in all
/// and `in_use` held by the process besides connections.
fn crowded_at(limit: usize, in_use: usize) -> usize {
    limit.saturating_sub(in_use + reserve(limit))
}

/// Raises the soft open-file limit to the hard one and returns it (the soft limit as it is if
/// it cannot be raised, which is said).
pub fn raise_open_files() -> usize {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            log::warn!("open files: cannot read the limit ({e}); assuming 1024");
            return 1024;
        }
    };
    let limit = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                log::info!("open files: limit raised from {soft} to {hard}");
                hard
            }
            Err(e) => {
                log::warn!("open files: cannot raise the limit from {soft} to {hard} ({e})");
                soft
            }
        }
    } else {
        soft
    };
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// The descriptors the process holds now (`/proc/self/fd`, less the one reading it).
fn descriptors_in_use() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

/// The listen queue to ask for: [`BACKLOG`], or `net.core.somaxconn` when smaller.
fn backlog() -> (u32, Option<u32>) {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    (somaxconn.map_or(BACKLOG, |m| BACKLOG.min(m)), somaxconn)
}

/// Listens on `addr` (the first of its addresses that binds) with the queue of [`backlog`].
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let (queue, somaxconn) = backlog();
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
    for a in tokio::net::lookup_host(addr).await? {
        match bind_one(a, queue) {
            Ok(l) => {
                let cap = somaxconn.map_or("unknown".to_owned(), |m| m.to_string());
                log::info!("listen queue {queue} (net.core.somaxconn {cap})");
                return Ok(l);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted console binds again while the last one's connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

impl Gate {
    /// A gate for a process that may hold `limit` descriptors, counting from those it holds now.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Gate {
        let in_use = descriptors_in_use();
        let crowded_at = crowded_at(limit, in_use);
        log::info!(
            "open files: limit {limit}, {in_use} in use, {} kept for people; defender traffic \
             refused from {crowded_at} open connections",
            reserve(limit)
        );
        Gate {
            open: AtomicUsize::new(0),
            crowded_at,
            metrics,
            logged: Mutex::new((None, 0)),
        }
    }

    /// The connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether defender traffic is refused now.
    pub fn crowded(&self) -> bool {
        self.open.load(Ordering::Relaxed) >= self.crowded_at
    }

    /// Counts a refusal for `reason` and logs it, at most once per [`LOG_EVERY`] with the count
    /// since the last line.
    fn refused(&self, reason: &'static str, why: &dyn std::fmt::Display) {
        self.metrics
            .connections_refused
            .get_or_create(&RefusedLabels { reason })
            .inc();
        let mut logged = self
            .logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        logged.1 += 1;
        if logged.0.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            log::warn!(
                "connections refused: {} since the last line; the last: {reason} ({why}); {} open",
                logged.1,
                self.open.load(Ordering::Relaxed)
            );
            *logged = (Some(Instant::now()), 0);
        }
    }

    /// The next connection, counted while it is open. A failure is counted, logged and followed
    /// by a pause; never returned.
    pub async fn accept(self: &Arc<Self>, tcp: &TcpListener) -> (Counted<TcpStream>, SocketAddr) {
        loop {
            match tcp.accept().await {
                Ok((stream, peer)) => return (self.count(stream), peer),
                // The peer gave up while queued: nothing was refused.
                Err(e) if is_peer_gone(&e) => {}
                Err(e) => {
                    self.refused("descriptors", &e);
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            }
        }
    }

    fn count<S>(self: &Arc<Self>, stream: S) -> Counted<S> {
        self.open.fetch_add(1, Ordering::Relaxed);
        Counted {
            stream,
            gate: self.clone(),
        }
    }
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Whether a request is one defenders send: a policy read (a poll), an audit batch, a heartbeat.
fn from_defenders(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET => Doc::ALL.iter().any(|d| d.path() == path),
        Method::POST => matches!(
            path,
            "/api/v1/audits/runtime/app-embedded" | "/api/v1/defenders/heartbeat"
        ),
        _ => false,
    }
}

/// The layer that refuses defender traffic while the console is crowded: 503, `Retry-After`,
/// and the connection closed after the answer.
///
/// It also says `Connection: close` on every refused request (4xx): one may leave its body
/// unread, and then the server closes the connection after the answer (hyper does); saying so
/// keeps the client from sending its next request on a connection about to close, which a POST
/// cannot safely retry ("peer disconnected"). Here rather than in a layer of its own: every
/// layer is a boxed future more in every request, a held poll's among them.
pub async fn shed(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let gate = &state.operations.gate;
    if gate.crowded() && from_defenders(request.method(), request.uri().path()) {
        gate.refused("reserve", &"defender traffic while crowded");
        return unavailable("the console is at its connection limit; try again later");
    }
    let mut response = next.run(request).await;
    if response.status().is_client_error() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// 503 with `Retry-After` (longer than for a full ingestion queue: descriptors come back as
/// connections end), closing the connection after it.
fn unavailable(message: &str) -> Response {
    let mut response = ApiError {
        retry_after: Some(RETRY_AFTER_SECONDS),
        ..ApiError::busy(message)
    }
    .into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A connection counted among the open ones until dropped.
pub struct Counted<S> {
    stream: S,
    gate: Arc<Gate>,
}

impl<S> Counted<S> {
    /// The connection itself (a plain one's socket is peeked: `native`).
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The plain HTTP listener: connections accepted through the gate.
pub struct Admitted {
    pub tcp: TcpListener,
    pub gate: Arc<Gate>,
}

impl axum::serve::Listener for Admitted {
    type Io = Counted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.gate.accept(&self.tcp).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_grows_with_the_limit_within_bounds() {
        // (limit, in use) -> crowded from
        for (limit, in_use, want) in [
            (256, 20, 204),
            (1024, 20, 953),
            (20_000, 30, 18_970),
            (1 << 20, 30, (1 << 20) - 30 - 1024),
            // Too few descriptors for a reserve: every defender request is refused.
            (40, 20, 0),
        ] {
            assert_eq!(crowded_at(limit, in_use), want, "{limit} {in_use}");
        }
    }

    #[test]
    fn defender_traffic_is_told_from_the_rest() {
        for (method, path, want) in [
            (Method::GET, "/api/v1/policies/runtime/app-embedded", true),
            (Method::GET, Doc::Waas.path(), true),
            (Method::PUT, "/api/v1/policies/runtime/app-embedded", false),
            (Method::POST, "/api/v1/audits/runtime/app-embedded", true),
            (Method::GET, "/api/v1/audits/runtime/app-embedded", false),
            (Method::POST, "/api/v1/defenders/heartbeat", true),
            (Method::GET, "/api/v1/defenders", false),
            (Method::GET, "/", false),
            (Method::GET, "/metrics", false),
        ] {
            assert_eq!(from_defenders(&method, path), want, "{method} {path}");
        }
    }
}
