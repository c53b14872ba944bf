//! The HTTP side of the conversation with the console (`/api/v1`, defined in the console's issue): a
//! blocking ureq agent over rustls (no OpenSSL: the binary stays static), the bearer token, and an
//! optional CA (a file, or the PEM text itself) for consoles whose certificate no public root
//! signs.
//!
//! Blocking calls on purpose: each uplink thread does one thing at a time, and ureq starts no
//! thread of its own until a call is made (which happens after fork, see `supervisor::run`).
//!
//! Two agents, so two connection pools: the policy reads (the long polls) never share a
//! connection with an audit batch or a heartbeat. A plain-HTTP console holds a connection that
//! has only carried policy reads without any HTTP buffers; one that has carried a `POST` costs it
//! hyper's 16 KiB for as long as it lives (docs/console-api.md, "Serving").

use std::path::PathBuf;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// The policy documents' paths under the console's base URL: the runtime policy, the WAAS policy.
pub(super) const POLICY: &str = "/api/v1/policies/runtime/app-embedded";
pub(super) const WAAS_POLICY: &str = "/api/v1/policies/firewall/app/app-embedded";
const AUDITS: &str = "/api/v1/audits/runtime/app-embedded";
const HEARTBEAT: &str = "/api/v1/defenders/heartbeat";

/// How long a connection attempt may take: a console that does not answer in this time is away.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Setting the client up failed: bad flags, unreadable CA file. The defender cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("--console {url:?}: not an http:// or https:// URL")]
    Url { url: String },
    #[error("--console-ca {}: {source}", path.display())]
    CaUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--console-ca {ca}: {source}")]
    CaInvalid { ca: Ca, source: Box<ureq::Error> },
    #[error("--console-ca {ca}: no PEM certificate in it")]
    CaEmpty { ca: Ca },
}

/// The CAs to trust for an https:// console (`--console-ca`, `DEFENDER_CONSOLE_CA`): a PEM
/// file, or the PEM text itself, because a Fargate task definition carries environment variables
/// and secrets, not files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ca {
    File(PathBuf),
    Pem(String),
}

/// What starts the PEM text of a certificate; no file path a user would give starts with it.
const PEM_START: &str = "-----BEGIN";

impl Ca {
    /// The flag's value: PEM text when it starts with `-----BEGIN` (after blanks, which a secret
    /// pasted into a console often gains), else a file path.
    pub fn parse(value: &std::ffi::OsStr) -> Ca {
        match value.to_str() {
            Some(text) if text.trim_start().starts_with(PEM_START) => Ca::Pem(text.to_owned()),
            _ => Ca::File(value.into()),
        }
    }
}

/// How clap reads the flag.
impl From<std::ffi::OsString> for Ca {
    fn from(value: std::ffi::OsString) -> Ca {
        Ca::parse(&value)
    }
}

/// For messages: the file's path, or that it was PEM text (not repeated: it may be long).
impl std::fmt::Display for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ca::File(path) => write!(f, "{}", path.display()),
            Ca::Pem(_) => f.write_str("(PEM text)"),
        }
    }
}

/// A request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer, a broken connection or a server error: the console is away; try again later.
    #[error(transparent)]
    Unreachable(Away),
    /// The console answered and refused (4xx): the same request will be refused again.
    #[error("HTTP {status}: {body}")]
    Refused { status: u16, body: String },
}

/// Why the console counts as away.
#[derive(Debug, thiserror::Error)]
pub enum Away {
    /// No connection, a broken one, a timeout.
    #[error(transparent)]
    Transport(Box<ureq::Error>),
    /// A server error (5xx, or a status the API does not give).
    #[error("HTTP {status}: {body}")]
    Server { status: u16, body: String },
    #[error("the console's policy answer has no ETag")]
    NoRevision,
    #[error("304 without a revision asked for")]
    UnaskedNotModified,
}

/// The answer to a policy fetch.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A revision other than the one we have: its number (the ETag, unquoted) and document.
    Policy { revision: String, document: String },
    /// Still the revision we have (304).
    Unchanged,
}

pub struct Client {
    /// Audit batches and heartbeats.
    agent: ureq::Agent,
    /// Policy reads only.
    polls: ureq::Agent,
    base: String,
    authorization: String,
}

impl Client {
    /// A client for the console at `url` (its base URL), trusting only the certificates in `ca`
    /// when given, else the public web PKI roots compiled in.
    pub fn new(url: &str, token: &str, ca: Option<&Ca>) -> Result<Client, SetupError> {
        let base = url.trim_end_matches('/').to_string();
        let valid = ["http://", "https://"]
            .iter()
            .any(|scheme| base.len() > scheme.len() && base.starts_with(scheme));
        if !valid {
            return Err(SetupError::Url { url: url.into() });
        }
        let roots = match ca {
            Some(ca) => RootCerts::new_with_certs(&read_ca(ca)?),
            None => RootCerts::WebPki,
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(format!("defender/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build();
        Ok(Client {
            agent: config.new_agent(),
            polls: config.new_agent(),
            base,
            authorization: format!("Bearer {token}"),
        })
    }

    /// The console's base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Fetches the policy document at `path` ([`POLICY`], [`WAAS_POLICY`]). With `have` (the
    /// revision we hold), the console answers only when its revision differs, waiting up to
    /// `wait` for a change (a long poll); the request as a whole may take `wait` plus `slack`.
    pub fn fetch_policy(
        &self,
        path: &str,
        have: Option<&str>,
        wait: Duration,
        slack: Duration,
    ) -> Result<Fetched, ClientError> {
        let mut request = self
            .polls
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.authorization);
        if let Some(revision) = have {
            request = request
                .header("If-None-Match", format!("\"{revision}\""))
                .query("wait", wait.as_secs().to_string());
        }
        let mut response = request
            .config()
            .timeout_global(Some(wait + slack))
            .build()
            .call()
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        if status == 304 {
            return Ok(Fetched::Unchanged);
        }
        let revision = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(unquote);
        let body = response.body_mut().read_to_string().map_err(unreachable)?;
        check(status, &body)?;
        let revision = revision.ok_or_else(|| ClientError::Unreachable(Away::NoRevision))?;
        Ok(Fetched::Policy {
            revision,
            document: body,
        })
    }

    /// Posts a batch of audit events (a JSON array).
    pub fn post_audits(&self, batch: &[u8], timeout: Duration) -> Result<(), ClientError> {
        self.post(AUDITS, batch, timeout)
    }

    /// Posts a heartbeat (a JSON object).
    pub fn heartbeat(&self, beat: &[u8], timeout: Duration) -> Result<(), ClientError> {
        self.post(HEARTBEAT, beat, timeout)
    }

    fn post(&self, path: &str, body: &[u8], timeout: Duration) -> Result<(), ClientError> {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json")
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body)
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        check(status, &body)
    }
}

/// 2xx is success, 4xx a refusal, anything else the console being unwell (retry).
fn check(status: u16, body: &str) -> Result<(), ClientError> {
    let short: String = body.trim().chars().take(300).collect();
    match status {
        200..=299 => Ok(()),
        400..=499 => Err(ClientError::Refused {
            status,
            body: short,
        }),
        _ => Err(ClientError::Unreachable(Away::Server {
            status,
            body: short,
        })),
    }
}

fn unreachable(e: ureq::Error) -> ClientError {
    ClientError::Unreachable(Away::Transport(Box::new(e)))
}

/// `"7"` and `W/"7"` are revision 7.
fn unquote(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// Every certificate of the PEM file or text.
fn read_ca(ca: &Ca) -> Result<Vec<Certificate<'static>>, SetupError> {
    let pem = match ca {
        Ca::File(path) => std::fs::read(path).map_err(|source| SetupError::CaUnreadable {
            path: path.clone(),
            source,
        })?,
        Ca::Pem(text) => text.as_bytes().to_vec(),
    };
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                return Err(SetupError::CaInvalid {
                    ca: ca.clone(),
                    source: Box::new(e),
                });
            }
        };
        match item {
            PemItem::Certificate(c) => certs.push(c),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(SetupError::CaEmpty { ca: ca.clone() });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_pem_text_when_it_starts_like_pem() {
        for (value, pem) in [
            ("/etc/ssl/ca.pem", false),
            ("ca.pem", false),
            ("-----BEGIN CERTIFICATE-----\nMII", true),
            ("\n  -----BEGIN CERTIFICATE-----", true),
            ("./-----BEGIN", false),
        ] {
            let ca = Ca::parse(value.as_ref());
            assert_eq!(matches!(ca, Ca::Pem(_)), pem, "{value}");
            assert_eq!(ca.to_string() == "(PEM text)", pem, "{value}");
        }
    }

    #[test]
    fn urls_and_etags() {
        for (url, ok) in [
            ("http://127.0.0.1:8083", true),
            ("https://console.example/", true),
            ("console.example:8083", false),
            ("ftp://console.example", false),
            ("http://", false),
        ] {
            assert_eq!(Client::new(url, "t", None).is_ok(), ok, "{url}");
        }
        let c = Client::new("https://console.example/", "t", None).unwrap();
        assert_eq!(c.base(), "https://console.example");
        for (etag, want) in [("\"7\"", "7"), ("W/\"12\"", "12"), (" 3 ", "3")] {
            assert_eq!(unquote(etag), want);
        }
    }

    #[test]
    fn statuses() {
        assert!(check(200, "").is_ok());
        assert!(matches!(
            check(403, "no"),
            Err(ClientError::Refused { status: 403, .. })
        ));
        assert!(matches!(check(503, ""), Err(ClientError::Unreachable(_))));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not pem").unwrap();
        let err = Client::new("https://c", "t", Some(&Ca::File(path)))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        // PEM text that holds no certificate (a key pasted by mistake) is named as text.
        let key = Ca::parse("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n".as_ref());
        let err = Client::new("https://c", "t", Some(&key)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "--console-ca (PEM text): no PEM certificate in it"
        );
        let missing = Client::new("https://c", "t", Some(&Ca::File(dir.path().join("nope"))))
            .err()
            .unwrap();
        assert!(
            missing.to_string().starts_with("--console-ca "),
            "{missing}"
        );
    }
}
