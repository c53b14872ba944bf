//! Serving connections: HTTP/1.1 by hyper's own connection, each accepted connection its own
//! task, every request answered by the router with the client's address (`ConnectInfo`).
//!
//! Not `axum::serve`: it serves through hyper-util's `auto` connection, which first reads up to
//! 24 bytes to tell HTTP/2 from HTTP/1 and hands them back as a read of their own. hyper's read
//! buffer then holds part of the request when it asks for more, and grows from 8 KiB to 16 KiB
//! (copying, so the pages are touched): 16 KiB of every connection, held as long as the
//! connection, which for a defender's policy poll is always. With hyper's HTTP/1 connection read
//! directly, the first read takes the whole request head into the first 8 KiB. The console
//! speaks HTTP/1.1 only (no HTTP/2, no upgrades), so nothing else changes.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

use crate::tls::Client;

/// Serves `app` on every connection `listener` accepts, until dropped.
pub async fn serve<L>(mut listener: L, app: Router)
where
    L: Listener<Addr = SocketAddr>,
{
    let http = hyper::server::conn::http1::Builder::new();
    loop {
        let (io, peer) = listener.accept().await;
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(Client(peer)));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = http.serve_connection(TokioIo::new(io), service);
        // A connection that fails (the client went away, a malformed request) only ends.
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
