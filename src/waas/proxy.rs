//! The firewall's proxy: the listeners on the ports taken over (supervisor/waas.rs), each
//! connection read as HTTP/1.1, each request inspected ([`inspect`](super::inspect())) and judged
//! ([`guard`](super::guard)) against the WAAS rule in force at that moment, then refused (403 with
//! a request id) or forwarded to the application's socket on its loopback address, with
//! `X-Forwarded-For` appended. Everything runs in worker threads, one per CPU the defender may use
//! (at most [`MAX_WORKERS`]), each with a tokio current-thread runtime of its own, started by the
//! first takeover: a defender with no port taken over has none. Each worker accepts on every
//! front listener and serves the connections it accepted from start to end, so that a request
//! never crosses threads (a wake-up of another thread is a futex and an inter-processor
//! interrupt, dearer on a VM than the request's own work). Each client connection has its own connection
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

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

/// How long a connection may take to send a request's head (slow clients hold memory).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the first connect to the application may be refused before the client gets a 502:
/// the application listens on its socket a moment after the bind the defender answered.
const BACKEND_GRACE: Duration = Duration::from_secs(2);

/// `ban.minutes` when the app bans without saying for how long.
pub const DEFAULT_BAN_MINUTES: u32 = 10;

/// The header (and the body's last line) giving a refused client its request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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

/// The proxy: its workers' runtimes and what every connection shares.
pub struct Proxy {
    /// Never empty.
    runtimes: Vec<tokio::runtime::Handle>,
    shared: Arc<Shared>,
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
        let mut runtimes = Vec::with_capacity(count);
        for _ in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            runtimes.push(runtime.handle().clone());
            std::thread::Builder::new()
                .name("waas-proxy".into())
                .spawn(move || {
                    // The signatures compiled before the first request rather than during it.
                    super::warm_up();
                    runtime.block_on(std::future::pending::<()>())
                })?;
        }
        Ok(Proxy {
            runtimes,
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
    /// (a copy of the descriptor each), and serves what it accepted itself. `listener` must be
    /// non-blocking.
    pub fn serve(&self, listener: std::net::TcpListener, port: u16, backend: SocketAddr) {
        lock(&PROTECTED).insert(port);
        let front = Front { port, backend };
        let Some((last, others)) = self.runtimes.split_last() else {
            return;
        };
        let mut listeners = Vec::with_capacity(self.runtimes.len());
        for runtime in others {
            match listener.try_clone() {
                Ok(copy) => listeners.push((runtime, copy)),
                // Fewer workers accept on this port; the last one always does.
                Err(e) => log::warn!("waas: port {port}: a worker's copy of the listener: {e}"),
            }
        }
        listeners.push((last, listener));
        for (runtime, listener) in listeners {
            let shared = self.shared.clone();
            runtime.spawn(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        log::error!("waas: port {port}: {e}");
                        return;
                    }
                };
                accept_loop(listener, front, shared).await;
            });
        }
    }
}

/// How many worker threads: one per CPU the defender may run on (its affinity and cgroup quota,
/// as the standard library reads them), at least one, at most [`MAX_WORKERS`].
fn workers(cpus: Option<std::num::NonZeroUsize>) -> usize {
    cpus.map_or(1, usize::from).clamp(1, MAX_WORKERS)
}

async fn accept_loop(listener: TcpListener, front: Front, shared: Arc<Shared>) {
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
        let (shared, state) = (shared.clone(), state.clone());
        tokio::spawn(async move {
            connection(stream, peer, front, shared, state).await;
            drop(permit);
        });
    }
}

/// What one connection's requests share.
struct Conn {
    front: Front,
    source: IpAddr,
    shared: Arc<Shared>,
    state: Arc<PortState>,
    /// The connection to the application for this client connection (one for one, so that
    /// keep-alive on one side is keep-alive on the other), opened at the first request passed.
    backend: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<AppBody>>>,
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
    match stream.peek(&mut first).await {
        Ok(1) => {}
        _ => return,
    }
    if first[0] == TLS_HANDSHAKE {
        return tls(stream, source, front, &shared, &state).await;
    }
    let conn = Arc::new(Conn {
        front,
        source,
        shared,
        state,
        backend: tokio::sync::Mutex::new(None),
    });
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.request(req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
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
/// listen yet).
async fn connect_backend(backend: SocketAddr) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + BACKEND_GRACE;
    let mut pause = Duration::from_millis(1);
    loop {
        match TcpStream::connect(backend).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => {
                if let Ok(s) = &other {
                    let _ = s.set_nodelay(true);
                }
                return other;
            }
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
    let body =
        format!("Request refused by the web application firewall.\nRequest id: {request_id}\n");
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *r.status_mut() = StatusCode::FORBIDDEN;
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
    name.split('-')
        .map(|word| {
            let mut c = word.chars();
            match c.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
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
            .get_all("x-forwarded-for")
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let xff = forwarded_for(&prior, self.source);
        if let Ok(v) = HeaderValue::from_bytes(&xff) {
            parts.headers.insert("x-forwarded-for", v);
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
            tokio::spawn(async move {
                if let (Ok(c), Ok(a)) = (client_side.await, app_side.await) {
                    let (mut c, mut a) = (TokioIo::new(c), TokioIo::new(a));
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut a).await;
                }
            });
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
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
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
