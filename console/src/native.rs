//! Policy reads served outside hyper on plain-HTTP connections, so that a held long poll keeps no
//! HTTP buffers: the decision of which requests qualify (`next`, pure), and the connection's loop
//! that serves them through the same router and writes their answers.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for every connection it serves,
//! for as long as the connection lives, and a defender's poll connection lives for ever. Here the
//! next request is peeked (`MSG_PEEK`: nothing consumed) and parsed with `httparse`, hyper's own
//! parser with hyper's settings. Only a complete, unremarkable `GET` of a policy document is
//! served here: its head is consumed, the request (an empty body, the client's address) goes
//! through the console's `Router` like any other (authentication, the crowded gate, metrics, the
//! request log and the poll's wait are all the router's), and the answer is written whole, its
//! body collected (a policy document, an error). Anything else (any other request, a head not
//! complete in the peek, a body announced, an upgrade, a header given twice, a syntax httparse
//! refuses) goes to hyper with nothing consumed, and hyper keeps that connection for good: any
//! doubt about where a request ends is hyper's to settle, so no request can be smuggled between
//! the two readers. While a request waits, a 0-byte peek (the client closed) drops it, as hyper
//! does; bytes of a pipelined next request stop the watch (it is read after the answer).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{
    CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HeaderName, HeaderValue, TE, TRANSFER_ENCODING,
    UPGRADE,
};
use axum::http::{HeaderMap, Method, Request, StatusCode, Version};
use nix::sys::socket::{MsgFlags, recv};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::documents::Doc;
use crate::gate::Counted;
use crate::tls::Client;

/// The most of a request head peeked: a defender's poll is about 300 bytes (its token is most of
/// it). A longer head is not complete in the peek and goes to hyper.
const HEAD_MAX: usize = 4096;
/// The most header lines a request served here may have (hyper's own default is 100).
const HEADERS_MAX: usize = 32;

/// A policy read served here: the request (its body empty), the length of its head (what to
/// consume), and whether the connection closes after the answer.
#[derive(Debug)]
pub struct Native {
    request: Request<()>,
    head: usize,
    close: bool,
}

impl Native {
    /// The request as the router takes it: an empty body, the client's address.
    fn into_request(self, peer: SocketAddr) -> Request<Body> {
        let mut request = self.request.map(|()| Body::empty());
        request.extensions_mut().insert(ConnectInfo(Client(peer)));
        request
    }
}

/// Decides what `bytes` (the start of the next request, as peeked) are: a request served here,
/// or `None`: hyper's (it reads the request from the socket and keeps the connection).
pub fn next(bytes: &[u8]) -> Option<Native> {
    let mut lines = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut parsed = httparse::Request::new(&mut lines);
    // hyper's own parser with its defaults: what it would read as this request, or a refusal
    // (too many headers included) that hyper will give.
    let httparse::Status::Complete(head) = parsed.parse(bytes).ok()? else {
        return None;
    };
    if parsed.method? != Method::GET.as_str() {
        return None;
    }
    let target = parsed.path?;
    // Origin form only, the path exactly a document's: anything written otherwise is hyper's.
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if !Doc::ALL.iter().any(|d| d.path() == path) {
        return None;
    }
    let version = match parsed.version? {
        1 => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // HTTP/1.0 closes after the answer unless it asks otherwise (then hyper serves it).
    let mut close = version == Version::HTTP_10;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).ok()?;
        // A name given twice may be read two ways (which Host, which length): not here.
        if headers.contains_key(&name) {
            return None;
        }
        let value = HeaderValue::from_bytes(line.value).ok()?;
        if [CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE, EXPECT, TE].contains(&name) {
            // A body, another protocol, an interim answer: where this request ends is hyper's
            // to decide.
            return None;
        }
        if name == CONNECTION {
            let token = value.to_str().ok()?.trim();
            if token.eq_ignore_ascii_case("close") {
                close = true;
            } else if !(token.eq_ignore_ascii_case("keep-alive") && version == Version::HTTP_11) {
                return None;
            }
        }
        headers.insert(name, value);
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(version)
        .body(())
        .ok()?;
    *request.headers_mut() = headers;
    Some(Native {
        request,
        head,
        close,
    })
}

/// Serves the policy reads at the start of `io`'s connection, one after the other, each counted
/// in `served`. Returns `Some(io)` when the next request is hyper's (nothing of it consumed),
/// `None` when the connection is done (closed by either side, or failed).
pub async fn serve(
    mut io: Counted<TcpStream>,
    peer: SocketAddr,
    app: &Router,
    served: &Counter,
) -> Option<Counted<TcpStream>> {
    loop {
        let native = match take_next(io.get_ref()).await {
            Ok(Some(native)) => native,
            Ok(None) => return Some(io),
            Err(_) => return None,
        };
        served.inc();
        let (version, close) = (native.request.version(), native.close);
        // The request is made in a plain function, and moved at once into the router's future:
        // the future of this loop keeps no copy of it while a poll waits.
        let response = answer(app.clone().oneshot(native.into_request(peer)), io.get_ref()).await?;
        let (parts, body) = response.into_parts();
        // The router's answers here are a document or an error, whole in memory already.
        let body = axum::body::to_bytes(body, usize::MAX).await.ok()?;
        let close = close || parts.headers.get_all(CONNECTION).iter().any(is_close);
        let bytes = encode(parts.status, &parts.headers, &body, version, close);
        io.write_all(&bytes).await.ok()?;
        io.flush().await.ok()?;
        if close {
            let _ = io.shutdown().await;
            return None;
        }
    }
}

/// Waits for the next request and decides what it is (`None`: hyper's); when served here,
/// consumes its head. An error when the client closed the connection.
async fn take_next(tcp: &TcpStream) -> io::Result<Option<Native>> {
    loop {
        tcp.readable().await?;
        // The buffer lives only in this synchronous step: a connection waiting for its next
        // request holds none.
        let taken = tcp.try_io(Interest::READABLE, || {
            let mut buf = [0u8; HEAD_MAX];
            let peeked = recv(tcp.as_raw_fd(), &mut buf, MsgFlags::MSG_PEEK)?;
            if peeked == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let next = next(&buf[..peeked]);
            if let Some(Native { head, .. }) = next {
                // The head is in the socket (just peeked): one read takes exactly it. Anything
                // else is a socket not behaving as one, and the connection ends.
                let read = recv(tcp.as_raw_fd(), &mut buf[..head], MsgFlags::empty())?;
                if read != head {
                    return Err(io::Error::other("a peeked request head could not be read"));
                }
            }
            Ok(next)
        });
        match taken {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            taken => return taken,
        }
    }
}

/// The router's answer, or `None` when the client closes the connection first (the request is
/// dropped, as hyper drops it). Bytes of a next request end the watch: they are read after the
/// answer, and a socket with bytes waiting would be readable at once, again and again.
async fn answer<R>(
    answer: impl Future<Output = Result<R, Infallible>>,
    tcp: &TcpStream,
) -> Option<R> {
    tokio::pin!(answer);
    let mut watching = true;
    loop {
        tokio::select! {
            answered = &mut answer => return answered.ok(),
            ready = tcp.readable(), if watching => {
                ready.ok()?;
                let peeked = tcp.try_io(Interest::READABLE, || {
                    Ok(recv(tcp.as_raw_fd(), &mut [0u8; 1], MsgFlags::MSG_PEEK)?)
                });
                match peeked {
                    Ok(0) => return None,
                    Ok(_) => watching = false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return None,
                }
            }
        }
    }
}

fn is_close(value: &HeaderValue) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

/// An answer as hyper writes it: the status line in the request's version, the headers (names
/// in lower case), the body's length, `connection: close` when an HTTP/1.1 connection ends after
/// it, the date.
fn encode(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    version: Version,
    close: bool,
) -> Vec<u8> {
    // 304 and 204 have neither a body nor a length.
    let bodiless = matches!(status, StatusCode::NOT_MODIFIED | StatusCode::NO_CONTENT);
    let mut out = Vec::with_capacity(256 + body.len());
    let line = if version == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let reason = status.canonical_reason().unwrap_or("<none>");
    out.extend_from_slice(format!("{line} {} {reason}\r\n", status.as_u16()).as_bytes());
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        header(&mut out, name.as_str(), value.as_bytes());
    }
    if !bodiless {
        header(
            &mut out,
            "content-length",
            body.len().to_string().as_bytes(),
        );
    }
    if close && version == Version::HTTP_11 && !headers.get_all(CONNECTION).iter().any(is_close) {
        header(&mut out, "connection", b"close");
    }
    if !headers.contains_key(DATE) {
        let now = httpdate::fmt_http_date(SystemTime::now());
        header(&mut out, "date", now.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(body);
    }
    out
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: &str = "GET /api/v1/policies/runtime/app-embedded?wait=30 HTTP/1.1\r\n\
                        Host: console\r\nAuthorization: Bearer t\r\nIf-None-Match: \"3\"\r\n\r\n";

    /// `Some(close)` when served here, `None` when hyper's.
    fn decided(head: &str) -> Option<bool> {
        next(head.as_bytes()).map(|native| {
            assert!(native.head <= head.len(), "{head:?}");
            assert_eq!(native.request.method(), Method::GET);
            native.close
        })
    }

    #[test]
    fn only_unremarkable_policy_reads_are_served_outside_hyper() {
        let waas = format!("GET {} HTTP/1.1\r\nHost: c\r\n\r\n", Doc::Waas.path());
        let many: Vec<String> = (0..HEADERS_MAX).map(|i| format!("X-{i}: b")).collect();
        let many = many.join("\r\n");
        let with = |header: &str| POLL.replacen("\r\n\r\n", &format!("\r\n{header}\r\n\r\n"), 1);
        for (what, head, want) in [
            ("a poll", POLL.to_owned(), Some(false)),
            ("the WAAS document", waas, Some(false)),
            (
                "a plain read",
                "GET /api/v1/policies/runtime/app-embedded HTTP/1.1\r\n\r\n".into(),
                Some(false),
            ),
            ("HTTP/1.0", POLL.replace("HTTP/1.1", "HTTP/1.0"), Some(true)),
            (
                "HTTP/1.0 kept alive",
                POLL.replace("HTTP/1.1", "HTTP/1.0").replacen(
                    "\r\n\r\n",
                    "\r\nConnection: keep-alive\r\n\r\n",
                    1,
                ),
                None,
            ),
            ("closing", with("Connection: close"), Some(true)),
            (
                "closing, in capitals",
                with("connection: CLOSE"),
                Some(true),
            ),
            ("kept alive", with("Connection: keep-alive"), Some(false)),
            (
                "another connection option",
                with("Connection: upgrade"),
                None,
            ),
            (
                "two connection options",
                with("Connection: keep-alive, close"),
                None,
            ),
            (
                "a pipelined request after it",
                format!("{POLL}GET / HTTP/1.1\r\n\r\n"),
                Some(false),
            ),
            ("incomplete", POLL[..POLL.len() - 2].to_owned(), None),
            (
                "the request line only",
                "GET /api/v1/policies/runtime/app-embedded HTT".into(),
                None,
            ),
            ("empty", String::new(), None),
            ("a PUT", POLL.replace("GET", "PUT"), None),
            ("a HEAD", POLL.replace("GET", "HEAD"), None),
            ("a lower-case get", POLL.replace("GET", "get"), None),
            (
                "another path",
                POLL.replace("app-embedded?", "app-embedded/x?"),
                None,
            ),
            ("a path prefix", POLL.replace("app-embedded?", "app?"), None),
            (
                "a percent-encoded path",
                POLL.replace("app-embedded", "app%2Dembedded"),
                None,
            ),
            (
                "the absolute form",
                POLL.replace("GET /", "GET http://console/"),
                None,
            ),
            ("a body's length", with("Content-Length: 5"), None),
            ("a zero length", with("Content-Length: 0"), None),
            ("chunked", with("Transfer-Encoding: chunked"), None),
            ("an upgrade", with("Upgrade: websocket"), None),
            ("an expectation", with("Expect: 100-continue"), None),
            ("TE", with("TE: trailers"), None),
            ("a host twice", with("Host: other"), None),
            (
                "a token twice, another case",
                with("authorization: Bearer u"),
                None,
            ),
            ("a folded line", with("X-A: b\r\n c"), None),
            ("a space before the colon", with("X-A : b"), None),
            ("a bare LF", POLL.replace("\r\n", "\n"), Some(false)),
            ("HTTP/2", POLL.replace("HTTP/1.1", "HTTP/2.0"), None),
            ("too many headers", with(&many), None),
            ("a control character", with("X-A: b\x01c"), None),
        ] {
            assert_eq!(decided(&head), want, "{what}: {head:?}");
        }
    }

    #[test]
    fn a_served_request_keeps_its_target_and_headers() {
        let Some(Native { request, .. }) = next(POLL.as_bytes()) else {
            panic!("not served here");
        };
        assert_eq!(
            request.uri(),
            "/api/v1/policies/runtime/app-embedded?wait=30"
        );
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["if-none-match"], "\"3\"");
        assert_eq!(request.headers()["authorization"], "Bearer t");
        assert_eq!(request.headers().len(), 3);
        let pipelined = format!("{POLL}GET / HTTP/1.1\r\n\r\n");
        let Some(Native { head, .. }) = next(pipelined.as_bytes()) else {
            panic!("not served here");
        };
        assert_eq!(head, POLL.len(), "exactly the first head is consumed");
    }

    #[test]
    fn answers_are_written_as_hyper_writes_them() {
        let mut headers = HeaderMap::new();
        headers.insert("etag", HeaderValue::from_static("\"2\""));
        let text = |status, body: &str, version, close| {
            let out = encode(status, &headers, body.as_bytes(), version, close);
            let out = String::from_utf8(out).unwrap();
            let (head, rest) = out.split_once("\r\n\r\n").unwrap();
            let date = head.lines().last().unwrap();
            assert!(
                date.starts_with("date: ") && date.ends_with(" GMT"),
                "{head}"
            );
            (
                head.rsplit_once("\r\n").unwrap().0.to_owned(),
                rest.to_owned(),
            )
        };
        assert_eq!(
            text(StatusCode::OK, "{}", Version::HTTP_11, false),
            (
                "HTTP/1.1 200 OK\r\netag: \"2\"\r\ncontent-length: 2".into(),
                "{}".into()
            )
        );
        assert_eq!(
            text(StatusCode::NOT_MODIFIED, "", Version::HTTP_11, true),
            (
                "HTTP/1.1 304 Not Modified\r\netag: \"2\"\r\nconnection: close".into(),
                String::new()
            )
        );
        assert_eq!(
            text(StatusCode::UNAUTHORIZED, "no", Version::HTTP_10, true),
            (
                "HTTP/1.0 401 Unauthorized\r\netag: \"2\"\r\ncontent-length: 2".into(),
                "no".into()
            )
        );
    }
}
