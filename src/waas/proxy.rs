//! The firewall's proxy: the listeners on the ports taken over (supervisor/waas.rs), each
//! connection read as HTTP/1.1, each request inspected ([`inspect`](super::inspect())) and judged
//! ([`guard`](super::guard)) against the WAAS rule in force at that moment, then refused (403 with
//! a request id) or forwarded to the application's socket on its loopback address, with
//! `X-Forwarded-For` appended. Everything runs in worker threads, one per CPU the defender may use
//! (at most [`MAX_WORKERS`]), each with a tokio current-thread runtime of its own, started by the
//! first takeover: a defender with no port taken over has none. Each worker accepts on every
//! front listener and hands each connection it accepts to the worker serving the fewest (itself
//! on a tie), which serves it from start to end, so that a request never crosses threads (a
//! wake-up of another thread is a futex and an inter-processor interrupt, dearer on a VM than the
//! request's own work): without the hand-over, the worker woken first by a burst of connections
//! accepted them all and served them alone. Each client connection has its own connection
//! to the application, opened at its first request passed and kept alive as long as both are:
//! never one shared between clients, so that a request the two HTTP parsers read differently
//! cannot make the application answer another client's request with it.
//!
//! Bodies are buffered (at most the app's `maxBodyBytes`) so that the whole request is judged
//! before the application sees a byte of it; responses are streamed back unchanged. A connection
//! whose first byte is a TLS handshake cannot be inspected and is passed through raw. Audits go to
//! the supervisor's sink through `report` (the supervisor folds floods there).

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::contain::{Contained, Panicked};
use super::guard::{self, Bans, Buckets, Verdict};
use super::inspect::{self, Finding};
use super::live::{InForce, Live};
use super::openapi::Api;
use super::policy::{App, Attack, Effect};
use crate::audit::{self, Event, Scope, WaasFinding};

/// Where audits go: the supervisor's sink (it must not block).
pub type Report = Arc<dyn Fn(Event) + Send + Sync>;

/// The most connections served at once, all ports together: each may hold a body of up to
/// `maxBodyBytes`. Past it, new connections wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long a connection may wait for a request's head (slow clients hold memory), at least: a
/// head, or the first byte, not read in two of these is the end of the connection (see
/// [`connection`]; a request in progress is not timed).
const HEAD_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the first connect to the application may be refused before the client gets a 502:
/// the application listens on its socket a moment after the bind the defender answered.
const BACKEND_GRACE: Duration = Duration::from_secs(2);

/// How long a connect to the application may go unanswered before a fresh one replaces it (the
/// wait doubles each time, to at most a second, for up to [`CONNECT_GIVE_UP`] in all). The application listens on loopback,
/// where an answer takes microseconds: a connect still unanswered had its SYN dropped because the
/// application's accept queue was full (Python's `http.server` listens with a backlog of 5), and the
/// kernel would send that SYN again only after a second, inside the client's request
/// (docs/waas.md, "The application's accept queue").
const CONNECT_ATTEMPT: Duration = Duration::from_millis(50);

/// How long connects to the application may go unanswered in all before the client gets a 502.
const CONNECT_GIVE_UP: Duration = Duration::from_secs(30);

/// The longest response body (of declared length) read whole before its head is sent on.
const COALESCED_BODY: u64 = 16 * 1024;

/// `ban.minutes` when the app bans without saying for how long.
pub const DEFAULT_BAN_MINUTES: u32 = 10;

/// The header (and the body's last line) giving a refused client its request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The header the application finds the client's address in.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The TLS record type of a handshake, the first byte a TLS client sends.
const TLS_HANDSHAKE: u8 = 0x16;

/// The ports behind the firewall now (for the heartbeat's `protects`).
static PROTECTED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// The application ports requests are inspected for now.
pub fn protected_ports() -> Vec<u16> {
    lock(&PROTECTED).iter().copied().collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock still holds whole values: every update is one statement.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The most worker threads the proxy runs: one per CPU up to this (each is a thread of the
/// supervisor, and a larger machine's containers rarely give one application more CPUs).
pub const MAX_WORKERS: usize = 8;

/// The proxy: its workers and what every connection shares.
pub struct Proxy {
    /// Never empty.
    workers: Arc<[Worker]>,
    shared: Arc<Shared>,
}

/// One worker thread: its runtime and how many connections it serves now.
struct Worker {
    runtime: tokio::runtime::Handle,
    serving: AtomicUsize,
}

/// One connection counted in its worker's [`Worker::serving`], from the moment it is handed to
/// that worker (so that a burst of them is spread at once) until it ends.
struct Serving {
    workers: Arc<[Worker]>,
    index: usize,
}

impl Serving {
    fn new(workers: Arc<[Worker]>, index: usize) -> Serving {
        workers[index].serving.fetch_add(1, Ordering::Relaxed);
        Serving { workers, index }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.workers[self.index]
            .serving
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted connection: registered with the accepting worker's reactor, or out of it to be
/// registered with another's.
enum Accepted {
    Here(TcpStream),
    Moved(std::net::TcpStream),
}

struct Shared {
    live: Live,
    scope: Scope,
    report: Report,
    /// Per protected port: rate limits, bans, whether TLS was reported.
    ports: Mutex<HashMap<u16, Arc<PortState>>>,
    connections: Arc<Semaphore>,
    /// The apps' OpenAPI documents compiled, for the document in force they were compiled from.
    apis: Mutex<Apis>,
}

/// Compiled once per document in force and app port (`Err`: the document cannot be read).
#[derive(Default)]
struct Apis {
    of: Option<Arc<InForce>>,
    by_port: HashMap<u16, Result<Arc<Api>, String>>,
}

impl Shared {
    /// The app's OpenAPI document compiled, when it has one.
    fn api(&self, in_force: &Arc<InForce>, app: &App) -> Option<Result<Arc<Api>, String>> {
        let document = app.openapi.as_ref()?;
        let mut apis = lock(&self.apis);
        if !apis.of.as_ref().is_some_and(|of| Arc::ptr_eq(of, in_force)) {
            *apis = Apis {
                of: Some(in_force.clone()),
                by_port: HashMap::new(),
            };
        }
        let compiled = apis
            .by_port
            .entry(app.port)
            .or_insert_with(|| Api::compile(document).map(Arc::new));
        Some(compiled.clone())
    }
}

#[derive(Default)]
struct PortState {
    buckets: Mutex<Buckets>,
    bans: Mutex<Bans>,
    tls_reported: AtomicBool,
}

/// Where one front listener sends what passes.
#[derive(Clone, Copy, Debug)]
struct Front {
    port: u16,
    backend: SocketAddr,
}

impl Proxy {
    /// Starts [`workers`] threads named `waas-proxy`, each running a current-thread runtime of
    /// its own.
    pub fn start(live: Live, scope: Scope, report: Report) -> std::io::Result<Proxy> {
        let count = workers(std::thread::available_parallelism().ok());
        let mut started = Vec::with_capacity(count);
        for _ in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            started.push(Worker {
                runtime: runtime.handle().clone(),
                serving: AtomicUsize::new(0),
            });
            std::thread::Builder::new()
                .name("waas-proxy".into())
                .spawn(move || {
                    // The signatures compiled before the first request rather than during it.
                    super::warm_up();
                    runtime.block_on(std::future::pending::<()>())
                })?;
        }
        Ok(Proxy {
            workers: started.into(),
            shared: Arc::new(Shared {
                live,
                scope,
                report,
                ports: Mutex::new(HashMap::new()),
                connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                apis: Mutex::new(Apis::default()),
            }),
        })
    }

    /// Serves `listener` (bound and listening on the address the application asked for) for the
    /// application port `port`, whose socket listens at `backend`: every worker accepts on it
    /// (a copy of the descriptor each), and hands what it accepted to the worker serving the
    /// fewest connections. `listener` must be non-blocking.
    pub fn serve(&self, listener: std::net::TcpListener, port: u16, backend: SocketAddr) {
        lock(&PROTECTED).insert(port);
        let front = Front { port, backend };
        let Some(last) = self.workers.len().checked_sub(1) else {
            return;
        };
        let mut listeners = Vec::with_capacity(self.workers.len());
        for index in 0..last {
            match listener.try_clone() {
                Ok(copy) => listeners.push((index, copy)),
                // Fewer workers accept on this port; the last one always does.
                Err(e) => log::warn!("waas: port {port}: a worker's copy of the listener: {e}"),
            }
        }
        listeners.push((last, listener));
        for (index, listener) in listeners {
            let (shared, workers) = (self.shared.clone(), self.workers.clone());
            self.workers[index].runtime.spawn(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        log::error!("waas: port {port}: {e}");
                        return;
                    }
                };
                accept_loop(listener, front, shared, workers, index).await;
            });
        }
    }
}

/// How many worker threads: one per CPU the defender may run on (its affinity and cgroup quota,
/// as the standard library reads them), at least one, at most [`MAX_WORKERS`].
fn workers(cpus: Option<std::num::NonZeroUsize>) -> usize {
    cpus.map_or(1, usize::from).clamp(1, MAX_WORKERS)
}

/// Accepts on `listener` in worker `own` and hands each connection to [`least_busy`] worker.
async fn accept_loop(
    listener: TcpListener,
    front: Front,
    shared: Arc<Shared>,
    workers: Arc<[Worker]>,
    own: usize,
) {
    let state = lock(&shared.ports).entry(front.port).or_default().clone();
    loop {
        let Ok(permit) = shared.connections.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: wait rather than spin.
                log::warn!("waas: accepting on port {}: {e}", front.port);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let target = least_busy(&workers, own);
        // Another worker's reactor takes the socket over: it leaves this one's first.
        let accepted = match target == own {
            true => Accepted::Here(stream),
            false => match stream.into_std() {
                Ok(s) => Accepted::Moved(s),
                Err(e) => {
                    log::warn!("waas: a connection from {peer}: {e}");
                    continue;
                }
            },
        };
        let serving = Serving::new(workers.clone(), target);
        let (shared, state) = (shared.clone(), state.clone());
        workers[target].runtime.spawn(async move {
            let stream = match accepted {
                Accepted::Here(s) => s,
                Accepted::Moved(s) => match TcpStream::from_std(s) {
                    Ok(s) => s,
                    Err(e) => return log::warn!("waas: a connection from {peer}: {e}"),
                },
            };
            // A panic in serving the connection (hyper's parser, a response streamed) ends this
            // connection only: closed, as after any error; the panic hook logged it.
            if let Err(e) = Contained::new(connection(stream, peer, front, shared, state)).await {
                log::warn!(
                    "waas: port {}: the connection from {peer} ended: {e}",
                    front.port
                );
            }
            drop((serving, permit));
        });
    }
}

/// The worker serving the fewest connections; `own` when it is among them (no hand-over).
fn least_busy(workers: &[Worker], own: usize) -> usize {
    let load = |i: usize| workers[i].serving.load(Ordering::Relaxed);
    (0..workers.len()).fold(own, |best, i| if load(i) < load(best) { i } else { best })
}

/// What one connection's requests share.
struct Conn {
    front: Front,
    source: IpAddr,
    /// `X-Forwarded-For` when the client sent none: its address, written once per connection.
    source_header: HeaderValue,
    shared: Arc<Shared>,
    state: Arc<PortState>,
    /// The connection to the application for this client connection (one for one, so that
    /// keep-alive on one side is keep-alive on the other), opened at the first request passed.
    backend: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<AppBody>>>,
    /// Request heads read on this connection, for its head timeout.
    heads: AtomicU64,
    /// Requests read and not yet answered in full (their response's body still going out).
    answering: AtomicUsize,
}

/// A request counted in [`Conn::answering`] until its response is sent in full.
struct Answering(Arc<Conn>);

impl Answering {
    fn new(conn: Arc<Conn>) -> Answering {
        conn.heads.fetch_add(1, Ordering::Relaxed);
        conn.answering.fetch_add(1, Ordering::Relaxed);
        Answering(conn)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response's body, with its request counted as answering until hyper has sent it all and
/// drops it.
struct Answer {
    body: Body,
    _answering: Answering,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    front: Front,
    shared: Arc<Shared>,
    state: Arc<PortState>,
) {
    let source = guard::source(peer.ip());
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    match tokio::time::timeout(HEAD_TIMEOUT * 2, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] == TLS_HANDSHAKE {
        return tls(stream, source, front, &shared, &state).await;
    }
    let conn = Arc::new(Conn {
        front,
        source,
        source_header: HeaderValue::from_str(&source.to_string())
            .unwrap_or(HeaderValue::from_static("")),
        shared,
        state,
        backend: tokio::sync::Mutex::new(None),
        heads: AtomicU64::new(0),
        answering: AtomicUsize::new(0),
    });
    let served_by = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let conn = served_by.clone();
        async move {
            let answering = Answering::new(conn.clone());
            let (method, uri) = (req.method().clone(), req.uri().clone());
            // A panic while this request is inspected or forwarded fails it closed: refused and
            // audited, never passed on (docs/waas.md, "Panics").
            let response = match Contained::new(conn.request(req)).await {
                Ok(response) => response,
                Err(panicked) => conn.failed(&method, &uri, &panicked),
            };
            Ok::<_, Infallible>(response.map(|body| Answer {
                body,
                _answering: answering,
            }))
        }
    });
    // The head timeout is this connection's own timer, one for its whole life, rather than
    // hyper's `header_read_timeout`: that one arms a new timer for each request, and arming a
    // timer wakes the worker's event loop (a write to its eventfd and one more epoll_wait a request).
    let served = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut served = std::pin::pin!(served);
    let mut heads = 0;
    let served = loop {
        match tokio::time::timeout(HEAD_TIMEOUT, served.as_mut()).await {
            Ok(served) => break served,
            Err(_) => {
                // No head read for a whole period, and no request in progress: closed (dropping
                // the connection closes its socket).
                let now = conn.heads.load(Ordering::Relaxed);
                if now == heads && conn.answering.load(Ordering::Relaxed) == 0 {
                    return log::debug!("waas: connection from {peer}: no request head in time");
                }
                heads = now;
            }
        }
    };
    if let Err(e) = served {
        log::debug!("waas: connection from {peer}: {e}");
    }
}

/// A TLS connection: the firewall cannot read it. Refused when its source is denied or banned,
/// else passed through raw; reported once per port.
async fn tls(stream: TcpStream, source: IpAddr, front: Front, shared: &Shared, state: &PortState) {
    let in_force = shared.live.current();
    if let (Some(rule), Some(app)) = (in_force.rule.as_deref(), in_force.app(front.port)) {
        let refused = if guard::denied(app, source) {
            Some(Attack::DeniedSource)
        } else if lock(&state.bans).banned(source, Instant::now()) {
            Some(Attack::Banned)
        } else {
            None
        };
        if let Some(attack) = refused {
            let id = uuid::Uuid::new_v4().to_string();
            audit_finding(
                shared,
                &rule.name,
                front.port,
                attack,
                Effect::Prevent,
                &Seen {
                    method: "TLS",
                    url: "-",
                    source,
                    field: "connection",
                    request_id: &id,
                },
            );
            return;
        }
        if !state.tls_reported.swap(true, Ordering::Relaxed) {
            let message = format!(
                "TLS connections to port {} cannot be inspected by the web application firewall (the application terminates TLS itself): they are passed through uninspected",
                front.port
            );
            log::warn!("{message}");
            (shared.report)(Event::defender(
                &shared.scope,
                audit::Effect::Alert,
                Some(&rule.name),
                message,
            ));
        }
    }
    raw(stream, front.backend).await;
}

/// Passes a connection through to the application unchanged.
async fn raw(mut stream: TcpStream, backend: SocketAddr) {
    if let Ok(mut app) = connect_backend(backend).await {
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut app).await;
    }
}

/// Connects to the application's socket, waiting out a refusal for [`BACKEND_GRACE`] (it may not
/// listen yet), and replacing a connect left unanswered after [`CONNECT_ATTEMPT`] (its SYN was
/// dropped) by a fresh one.
async fn connect_backend(backend: SocketAddr) -> std::io::Result<TcpStream> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut attempt = CONNECT_ATTEMPT;
    loop {
        match tokio::time::timeout(attempt, TcpStream::connect(backend)).await {
            Ok(Err(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && start.elapsed() < BACKEND_GRACE =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Ok(other) => {
                if let Ok(s) = &other {
                    let _ = s.set_nodelay(true);
                }
                return other;
            }
            // Dropping the pending connect closes its socket; the next SYN comes from a new one.
            Err(_) if start.elapsed() < CONNECT_GIVE_UP => {
                attempt = (attempt * 2).min(Duration::from_secs(1));
            }
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

/// What the client gets: the application's response, or the firewall's own.
type Body = Either<Incoming, Full<Bytes>>;
/// What the application gets: the body read and inspected, or (uninspected) the client's stream.
type AppBody = Either<Full<Bytes>, Incoming>;

/// What audits say of a request.
struct Seen<'a> {
    method: &'a str,
    url: &'a str,
    source: IpAddr,
    field: &'a str,
    request_id: &'a str,
}

fn audit_finding(shared: &Shared, rule: &str, port: u16, attack: Attack, effect: Effect, s: &Seen) {
    let effect = match effect {
        Effect::Disable | Effect::Alert => audit::Effect::Alert,
        Effect::Prevent | Effect::Ban => audit::Effect::Prevent,
    };
    (shared.report)(Event::waas(
        &shared.scope,
        &WaasFinding {
            rule,
            effect,
            attack: attack.as_str(),
            method: s.method,
            url: s.url,
            source_ip: s.source,
            field: s.field,
            request_id: s.request_id,
            port,
        },
    ));
}

/// The firewall's refusal: 403, the request id in a header and in the body. `close`: the
/// connection ends after it (a body left unread, a denied source).
fn refusal(request_id: &str, close: bool) -> Response<Body> {
    answer(
        StatusCode::FORBIDDEN,
        "Request refused by the web application firewall.",
        request_id,
        close,
    )
}

/// The answer to a request the firewall failed on (a contained panic): 500, the request id in a
/// header and in the body, and the connection closed (what the panic left of its state, the
/// client's body half read or the application's connection half used, is not reused).
fn internal_error(request_id: &str) -> Response<Body> {
    answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The web application firewall failed on this request; it was not passed on.",
        request_id,
        true,
    )
}

/// An answer of the firewall's own: `status`, `text` and the request id as plain text, the id in
/// a header too, and `Connection: close` when `close`.
fn answer(status: StatusCode, text: &str, request_id: &str, close: bool) -> Response<Body> {
    let body = format!("{text}\nRequest id: {request_id}\n");
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    if close {
        headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

fn bad_gateway() -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        b"The application behind the web application firewall cannot be reached.\n",
    ))));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

/// A header name as audits name fields (`header:User-Agent`): hyper hands names over
/// lower-cased, so each word is capitalised again.
pub fn display_name(name: &str) -> String {
    // One allocation a header of every request: no string per word.
    let mut out = String::with_capacity(name.len());
    let mut word_starts = true;
    for c in name.chars() {
        out.push(if word_starts {
            c.to_ascii_uppercase()
        } else {
            c
        });
        word_starts = c == '-';
    }
    out
}

/// The `X-Forwarded-For` value the application gets: the client's own values, then the real
/// peer. (Never read for a decision: the client writes it.)
pub fn forwarded_for(prior: &[&[u8]], peer: IpAddr) -> Vec<u8> {
    let mut out = Vec::new();
    for v in prior {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer.to_string().as_bytes());
    out
}

impl Conn {
    async fn request(&self, mut req: Request<Incoming>) -> Response<Body> {
        let shared = &self.shared;
        let in_force = shared.live.current();
        let (Some(rule), Some(app)) = (in_force.rule.as_deref(), in_force.app(self.front.port))
        else {
            // The rule in force no longer protects this port (a console changed it): passed on
            // uninspected until the application binds it again.
            return self.forward(req, None).await;
        };
        // Drawn only for a request that is audited or refused: a random id per request passed
        // would cost a getrandom system call each.
        let id = std::sync::OnceLock::new();
        let request_id = || -> &str { id.get_or_init(|| uuid::Uuid::new_v4().to_string()) };
        let method = req.method().as_str().to_owned();
        let url = req.uri().to_string();
        let seen = |field: &'static str| Seen {
            method: &method,
            url: &url,
            source: self.source,
            field,
            request_id: request_id(),
        };
        let now = Instant::now();
        let audit = |attack, effect, seen: &Seen| {
            audit_finding(shared, &rule.name, self.front.port, attack, effect, seen);
        };
        if lock(&self.state.bans).banned(self.source, now) {
            audit(Attack::Banned, Effect::Prevent, &seen("source"));
            return refusal(request_id(), true);
        }
        if guard::denied(app, self.source) {
            audit(Attack::DeniedSource, Effect::Prevent, &seen("source"));
            return refusal(request_id(), true);
        }
        if let Some(limit) = &app.rate_limit
            && limit.effect != Effect::Disable
            && !lock(&self.state.buckets).take(limit, self.source, now)
        {
            audit(Attack::RateLimit, limit.effect, &seen("source"));
            if self.refuses(app, limit.effect, now) {
                return refusal(request_id(), false);
            }
        }
        // The body, whole, at most `maxBodyBytes`: larger is a malformed request, refused
        // whatever the protection's effect (it cannot be inspected, and is not passed unread).
        let max = guard::max_body(app);
        let declared_over = req.body().size_hint().lower() > max;
        let body = match declared_over {
            true => None,
            false => match Limited::new(req.body_mut(), max as usize).collect().await {
                Ok(collected) => Some(collected.to_bytes()),
                Err(e)
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    None
                }
                // The client went away or sent a broken body: nothing to answer.
                Err(_) => return refusal(request_id(), true),
            },
        };
        let Some(body) = body else {
            let effect = match guard::effect_of(app, Attack::MalformedRequest) {
                Effect::Ban => Effect::Ban,
                _ => Effect::Prevent,
            };
            audit(Attack::MalformedRequest, effect, &seen("body"));
            self.refuses(app, effect, now);
            return refusal(request_id(), true);
        };
        let names: Vec<String> = req
            .headers()
            .keys()
            .map(|n| display_name(n.as_str()))
            .collect();
        let findings: Vec<Finding> = {
            let mut headers = Vec::new();
            let mut named = names.iter();
            let mut last: Option<&HeaderName> = None;
            let mut current = "";
            for (name, value) in req.headers() {
                if last != Some(name) {
                    current = named.next().map_or("", String::as_str);
                    last = Some(name);
                }
                headers.push((current, value.as_bytes()));
            }
            let request = inspect::Request {
                method: &method,
                target: &url,
                headers,
                body: &body,
            };
            let mut findings = inspect::inspect(&request, &app.protections);
            match shared.api(&in_force, app) {
                None => {}
                Some(Ok(api)) => findings.extend(api.check(&request)),
                // A document that cannot be read is enforced as one that declares nothing.
                Some(Err(e)) => {
                    log::warn!("waas: port {}: the OpenAPI document: {e}", self.front.port);
                    findings.push(Finding {
                        attack: Attack::ApiViolation,
                        field: "path".into(),
                    });
                }
            }
            findings
        };
        let verdict: Verdict = guard::judge(&findings, |a| guard::effect_of(app, a));
        for (finding, effect) in &verdict.audits {
            let s = Seen {
                field: &finding.field,
                ..seen("")
            };
            audit(finding.attack, *effect, &s);
        }
        if verdict.refuse {
            let effect = if verdict.ban {
                Effect::Ban
            } else {
                Effect::Prevent
            };
            self.refuses(app, effect, now);
            return refusal(request_id(), false);
        }
        self.forward(req, Some(body)).await
    }

    /// The answer to a request whose inspection or forwarding panicked: audited as an
    /// `internalError` refused, under the rule in force now (none: no rule name).
    fn failed(
        &self,
        method: &hyper::Method,
        uri: &hyper::Uri,
        panicked: &Panicked,
    ) -> Response<Body> {
        log::error!(
            "waas: port {}: {method} {uri} from {}: refused, the firewall {panicked}",
            self.front.port,
            self.source
        );
        let request_id = uuid::Uuid::new_v4().to_string();
        let in_force = self.shared.live.current();
        let rule = in_force.rule.as_deref().map_or("", |r| r.name.as_str());
        let url = uri.to_string();
        let seen = Seen {
            method: method.as_str(),
            url: &url,
            source: self.source,
            field: "request",
            request_id: &request_id,
        };
        audit_finding(
            &self.shared,
            rule,
            self.front.port,
            Attack::InternalError,
            Effect::Prevent,
            &seen,
        );
        internal_error(&request_id)
    }

    /// Whether `effect` refuses the request; a `ban` also bans its source.
    fn refuses(&self, app: &App, effect: Effect, now: Instant) -> bool {
        if effect == Effect::Ban {
            let minutes = app.ban.as_ref().map_or(DEFAULT_BAN_MINUTES, |b| b.minutes);
            lock(&self.state.bans).ban(self.source, minutes, now);
        }
        matches!(effect, Effect::Prevent | Effect::Ban)
    }

    /// Sends the request to the application, with `body` as read for the inspection (`None`: a
    /// request passed uninspected, its body streamed as it comes), and its response back
    /// unchanged; an upgrade (WebSocket) then joins both connections.
    async fn forward(&self, mut req: Request<Incoming>, body: Option<Bytes>) -> Response<Body> {
        // Only a WebSocket upgrade is passed: after any other (h2c, say) the requests would go on
        // uninspected in a protocol the firewall does not read, so its header is dropped and the
        // application answers the request as plain HTTP/1.1.
        let upgrade = match req.headers().get(hyper::header::UPGRADE) {
            None => None,
            Some(to) if to.as_bytes().eq_ignore_ascii_case(b"websocket") => {
                Some(hyper::upgrade::on(&mut req))
            }
            Some(_) => {
                req.headers_mut().remove(hyper::header::UPGRADE);
                None
            }
        };
        let (mut parts, incoming) = req.into_parts();
        let body = match body {
            Some(read) => Either::Left(Full::new(read)),
            None => Either::Right(incoming),
        };
        let prior: Vec<&[u8]> = parts
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let xff = match prior.is_empty() {
            true => Ok(self.source_header.clone()),
            false => HeaderValue::from_bytes(&forwarded_for(&prior, self.source)),
        };
        if let Ok(v) = xff {
            parts.headers.insert(X_FORWARDED_FOR, v);
        }
        let out = Request::from_parts(parts, body);
        let mut slot = self.backend.lock().await;
        let usable = match slot.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            *slot = match self.connect().await {
                Ok(s) => Some(s),
                Err(e) => {
                    log::warn!(
                        "waas: port {}: the application at {} cannot be reached: {e}",
                        self.front.port,
                        self.front.backend
                    );
                    return bad_gateway();
                }
            };
        }
        let Some(sender) = slot.as_mut() else {
            return bad_gateway();
        };
        let mut resp = match sender.send_request(out).await {
            Ok(r) => r,
            Err(e) => {
                log::warn!("waas: port {}: forwarding: {e}", self.front.port);
                *slot = None;
                return bad_gateway();
            }
        };
        if let Some(client_side) = upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let app_side = hyper::upgrade::on(&mut resp);
            *slot = None;
            // Contained: a panic ends this tunnel only.
            tokio::spawn(Contained::new(async move {
                if let (Ok(c), Ok(a)) = (client_side.await, app_side.await) {
                    let (mut c, mut a) = (TokioIo::new(c), TokioIo::new(a));
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut a).await;
                }
            }));
            return resp.map(Either::Left);
        }
        // A short body of declared length is read whole before the head goes out, so that the
        // client gets both in one write when the application wrote them in two (Python's
        // http.server does): each write costs a system call and a wake-up of the client.
        if resp
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n <= COALESCED_BODY)
        {
            let (parts, body) = resp.into_parts();
            return match body.collect().await {
                Ok(read) => Response::from_parts(parts, Either::Right(Full::new(read.to_bytes()))),
                Err(e) => {
                    log::warn!("waas: port {}: the response: {e}", self.front.port);
                    *slot = None;
                    bad_gateway()
                }
            };
        }
        resp.map(Either::Left)
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<AppBody>, Box<dyn std::error::Error>> {
        let stream = connect_backend(self.front.backend).await?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake(TokioIo::new(stream))
            .await?;
        // Contained: a panic ends this connection to the application only (its client's next
        // request gets a 502).
        tokio::spawn(Contained::new(async move {
            let _ = connection.with_upgrades().await;
        }));
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_per_cpu_within_bounds() {
        for (cpus, want) in [
            (None, 1),
            (Some(1), 1),
            (Some(2), 2),
            (Some(64), MAX_WORKERS),
        ] {
            let cpus = cpus.and_then(std::num::NonZeroUsize::new);
            assert_eq!(workers(cpus), want, "{cpus:?}");
        }
    }

    #[test]
    fn header_names_as_audits_show_them() {
        for (name, want) in [
            ("user-agent", "User-Agent"),
            ("cookie", "Cookie"),
            ("x-forwarded-for", "X-Forwarded-For"),
            ("a--b", "A--B"),
        ] {
            assert_eq!(display_name(name), want);
        }
    }

    #[test]
    fn forwarded_for_appends_the_real_peer() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        type Case<'a> = (&'a [&'a [u8]], &'a str);
        let cases: &[Case] = &[
            (&[], "192.0.2.7"),
            (&[b"203.0.113.1"], "203.0.113.1, 192.0.2.7"),
            (
                &[b"10.0.0.1, 10.0.0.2", b"10.0.0.3"],
                "10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7",
            ),
        ];
        for (prior, want) in cases {
            assert_eq!(forwarded_for(prior, peer), want.as_bytes());
        }
    }
}
