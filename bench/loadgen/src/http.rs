//! The HTTP side of a simulated defender: one HTTP/1.1 connection at a time to a console, opened
//! from a chosen local address (so that a fleet spreads over many source addresses and does not
//! run out of ephemeral ports), requests with a deadline, and every failure sorted into a kind.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use crate::report::Kind;

/// How long a connection attempt may take, as the defender's client allows.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A console to connect to: its address and what the `Host` header says.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    addr: SocketAddr,
    authority: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?}: only http://HOST:PORT consoles are supported")]
    Scheme(String),
    #[error("{url:?}: cannot resolve {authority:?}: {reason}")]
    Resolve {
        url: String,
        authority: String,
        reason: String,
    },
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let base = url.trim_end_matches('/');
        let authority = base
            .strip_prefix("http://")
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| TargetError::Scheme(url.into()))?;
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let resolve_error = |reason: String| TargetError::Resolve {
            url: url.into(),
            authority: authority.into(),
            reason,
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_error("no address".into()))?;
        Ok(Target {
            url: base.into(),
            addr,
            authority: authority.into(),
        })
    }

    /// A request to this console with a bearer token (and a JSON body, if any).
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        token: &str,
        headers: &[(header::HeaderName, String)],
        body: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut r = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, &self.authority)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::USER_AGENT, "defender-loadgen");
        for (name, value) in headers {
            r = r.header(name, value);
        }
        if body.is_some() {
            r = r.header(header::CONTENT_TYPE, "application/json");
        }
        r.body(Full::new(body.unwrap_or_default()))
            .expect("the request's parts are valid")
    }
}

/// A failed request or connection: its kind (counted) and what happened (the first of each kind
/// is shown).
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }
}

/// What the console answered.
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    /// `Connection: close`: the console closes this connection (every refusal does).
    pub close: bool,
    pub body: Bytes,
}

pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects to `target` from `source` (any port of it), or from the kernel's choice.
    pub async fn open(target: &Target, source: Option<IpAddr>) -> Result<Conn, Failure> {
        let socket = match target.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(connect_failure)?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(connect_failure)?;
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(target.addr))
            .await
            .map_err(|_| Failure::new(Kind::ConnectTimeout, "no answer within 3 s"))?
            .map_err(connect_failure)?;
        // Small requests answered one at a time: no Nagle delay on them.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(request_failure)?;
        tokio::spawn(async move {
            // Its end is seen by the next request on `sender`, which is where it is counted.
            let _ = connection.await;
        });
        Ok(Conn { sender })
    }

    /// Sends `request` and reads the whole answer, all within `timeout`.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Failure::new(Kind::Timeout, format!("no answer within {timeout:?}")))?
            .map_err(request_failure)?;
        let header = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let close = header(header::CONNECTION).is_some_and(|c| c.eq_ignore_ascii_case("close"));
        Ok(Answer {
            status: parts.status.as_u16(),
            etag: header(header::ETAG),
            close,
            body,
        })
    }
}

/// The kind of a failure to connect.
fn connect_failure(e: std::io::Error) -> Failure {
    use std::io::ErrorKind as K;
    let kind = match e.kind() {
        K::ConnectionRefused => Kind::ConnectRefused,
        K::TimedOut => Kind::ConnectTimeout,
        // Every port of the source address is taken.
        K::AddrNotAvailable | K::AddrInUse => Kind::NoLocalPort,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Kind::Reset,
        _ if matches!(
            e.raw_os_error(),
            Some(nix::libc::EMFILE | nix::libc::ENFILE)
        ) =>
        {
            Kind::TooManyFiles
        }
        _ => Kind::Other,
    };
    Failure::new(kind, e.to_string())
}

/// The kind of a failed exchange: reset, closed by the console before it answered, or other.
fn request_failure(e: hyper::Error) -> Failure {
    use std::error::Error as _;
    use std::io::ErrorKind as K;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let kind = match io.kind() {
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Kind::Reset,
                K::UnexpectedEof => Kind::Closed,
                _ => Kind::Other,
            };
            return Failure::new(kind, format!("{e}: {io}"));
        }
        source = s.source();
    }
    let kind = if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        Kind::Closed
    } else {
        Kind::Other
    };
    Failure::new(kind, e.to_string())
}

/// The failure a status means: a server error, a refusal, or an answer the API does not give.
pub fn status_failure(what: &str, answer: &Answer) -> Failure {
    let kind = match answer.status {
        500..=599 => Kind::Status5xx,
        400..=499 => Kind::Status4xx,
        _ => Kind::BadAnswer,
    };
    let body: String = String::from_utf8_lossy(&answer.body)
        .chars()
        .take(200)
        .collect();
    Failure::new(kind, format!("{what}: HTTP {}: {body}", answer.status))
}

/// `"7"` (or `W/"7"`) is revision 7.
pub fn revision(etag: &str) -> Option<u64> {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_etags() {
        let t = Target::parse("http://127.0.0.1:8083/").unwrap();
        assert_eq!(
            (t.url.as_str(), t.addr.port()),
            ("http://127.0.0.1:8083", 8083)
        );
        assert_eq!(Target::parse("http://127.0.0.1").unwrap().addr.port(), 80);
        for bad in [
            "https://127.0.0.1:1",
            "127.0.0.1:1",
            "http://",
            "http://h:1/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(revision("\"12\""), Some(12));
        assert_eq!(revision("W/\"3\""), Some(3));
        assert_eq!(revision("\"x\""), None);
    }
}
