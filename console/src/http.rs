//! Serving connections: each accepted connection its own task, every request answered by the
//! router with the client's address (`ConnectInfo`). On plain HTTP the policy reads at the start
//! of a connection (a defender's long polls) are served outside hyper (`native`), so that a held
//! poll keeps no HTTP buffers; the first request of another kind hands the connection to hyper's
//! HTTP/1 connection for good, as every HTTPS connection is from the start.
//!
//! Why: hyper keeps an 8 KiB read buffer (reserved again while it watches for the client
//! closing) and an 8 KiB write buffer for every connection, however idle, with no setting to
//! lower them; a defender's poll connection is held for as long as the defender runs. A poll held
//! by hyper cost 17.4 KiB of the console's memory; served natively, 7.4 KiB: its task, its
//! socket's registration and the router's futures (docs/benchmarks.md, "Held polls at 8 KiB:
//! served outside hyper"). Under TLS, rustls' own buffers and state stand between the socket and
//! the request: those connections stay hyper's.
//!
//! Not `axum::serve`: it serves through hyper-util's `auto` connection, which first reads up to
//! 24 bytes to tell HTTP/2 from HTTP/1 and hands them back as a read of their own; hyper's read
//! buffer then grows to 16 KiB. The console speaks HTTP/1.1 only (no HTTP/2, no upgrades).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use crate::gate::Counted;
use crate::native;
use crate::tls::Client;

/// A connection as accepted: what is served of it before hyper takes it.
pub trait Accepted: Sized + Send + 'static {
    /// Serves what is served outside hyper; the connection back when hyper is to serve the rest,
    /// `None` when it is done. Every request served here is counted in `native`.
    fn before_hyper(
        self,
        peer: SocketAddr,
        app: &Router,
        native: &Counter,
    ) -> impl Future<Output = Option<Self>> + Send;
}

/// Plain HTTP: the policy reads at its start are served natively.
impl Accepted for Counted<TcpStream> {
    fn before_hyper(
        self,
        peer: SocketAddr,
        app: &Router,
        native: &Counter,
    ) -> impl Future<Output = Option<Self>> + Send {
        native::serve(self, peer, app, native)
    }
}

/// HTTPS: hyper's from the start.
impl Accepted for TlsStream<Counted<TcpStream>> {
    async fn before_hyper(self, _: SocketAddr, _: &Router, _: &Counter) -> Option<Self> {
        Some(self)
    }
}

/// Serves `app` on every connection `listener` accepts, until dropped; `native` counts the
/// requests served outside hyper.
pub async fn serve<L>(mut listener: L, app: Router, native: Counter)
where
    L: Listener<Addr = SocketAddr>,
    L::Io: Accepted,
{
    let http = Arc::new(http1::Builder::new());
    loop {
        let (io, peer) = listener.accept().await;
        let (app, http, native) = (app.clone(), http.clone(), native.clone());
        tokio::spawn(async move {
            let Some(io) = io.before_hyper(peer, &app, &native).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(Client(peer)));
                    app.clone().oneshot(request.map(Body::new))
                });
            // Boxed: a connection served natively to its end never pays for hyper's state in its
            // task. A connection that fails (the client went away, a malformed request) only ends.
            let _ = Box::pin(http.serve_connection(TokioIo::new(io), service)).await;
        });
    }
}
