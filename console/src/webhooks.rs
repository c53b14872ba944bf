//! Webhooks (`--webhook URL`, `--webhook-format`): every audit newly stored is POSTed to each
//! webhook, one event per request, in arrival order, exactly once in the normal case.
//!
//! Each webhook is one thread with a cursor over the audits' arrival order (`seq`) kept in the
//! database: it reads what arrived after its cursor, delivers it, and moves the cursor one event
//! at a time. Ingestion only wakes it (a channel of one slot that a full slot leaves as is), so a
//! slow or dead receiver never slows a batch, and nothing waits in memory: a restart of the
//! console or of the receiver resumes at the cursor.
//!
//! A receiver that fails (no connection, a timeout, a 5xx, 408 or 429) gets the same event again
//! after a backoff doubling up to [`MAX_BACKOFF`], for as long as it takes, holding the events
//! after it. One that refuses an event (any other status) [`MAX_REFUSALS`] times has that event
//! skipped, counted and logged: a receiver that will never take it must not stop the others.
//!
//! Several console instances sharing a database deliver each webhook once: a worker delivers only
//! while it holds the webhook's lease (a lock in the database that ends with its holder's
//! connection); the others wait and try to take it every [`LEASE_RETRY`], and the one that does
//! resumes at the cursor. An event being delivered when its instance died may be delivered twice.
//!
//! A URL may hold credentials (user information, or a secret path as chat webhooks have): it is
//! never logged nor stored; logs name a webhook by its index and scheme and host.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::auth::digest;
use crate::metrics::Metrics;
use crate::store::{Store, StoredEvent};

/// What each request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The stored event itself, as `GET /audits` shows it.
    Json,
    /// `{"text": "..."}`: a one-line summary, as Slack's incoming webhooks (and the chat services
    /// copying them) take it.
    Slack,
}

/// The wait before the second attempt; each failure doubles it up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Refusals (4xx and the like) of one event before it is skipped.
const MAX_REFUSALS: u32 = 5;
/// One request, from connecting to the end of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Events read from the database at a time.
const BATCH: u32 = 100;
/// How often an idle webhook looks for events without being woken: audits stored by another
/// console instance wake no one here.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How often a webhook whose lease another instance holds tries to take it.
const LEASE_RETRY: Duration = Duration::from_secs(5);

/// Why a `--webhook` was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL itself is not repeated: it may hold credentials.
    #[error("--webhook number {number}: {problem}")]
    Url {
        number: usize,
        problem: &'static str,
    },
    #[error("--webhook number {number}: starting its thread: {source}")]
    Thread {
        number: usize,
        source: std::io::Error,
    },
}

/// A webhook as given.
struct Target {
    index: usize,
    /// The URL as given: what error texts are scrubbed of.
    url: String,
    /// The URL requested: without its user information, sent as `authorization` instead.
    request: String,
    /// `Basic ...` from the URL's user information, percent-decoded as RFC 3986 writes it.
    authorization: Option<String>,
    /// `scheme://host[:port]`: how logs name it.
    shown: String,
    /// Its cursor's key: the SHA-256 of the URL.
    key: String,
}

/// The wake-ups of the running webhooks.
pub struct Webhooks {
    wake: Vec<SyncSender<()>>,
}

impl Webhooks {
    /// Checks every URL, then starts a thread for each.
    pub fn start(
        urls: &[String],
        format: Format,
        store: &Arc<dyn Store>,
        metrics: &Arc<Metrics>,
    ) -> Result<Webhooks, WebhookError> {
        let targets = urls
            .iter()
            .enumerate()
            .map(|(index, url)| target(index, url))
            .collect::<Result<Vec<_>, _>>()?;
        let mut wake = Vec::new();
        for t in targets {
            // Shown at 0 from the start: a rate needs the series before its first change.
            let labels = Metrics::webhook(t.index);
            for family in [
                &metrics.webhook_deliveries,
                &metrics.webhook_failures,
                &metrics.webhook_skipped,
            ] {
                family.get_or_create(&labels).inc_by(0);
            }
            let (tx, rx) = sync_channel(1);
            let number = t.index + 1;
            let worker = Worker {
                target: t,
                format,
                store: store.clone(),
                metrics: metrics.clone(),
                agent: agent(),
            };
            std::thread::Builder::new()
                .name(format!("webhook-{}", number - 1))
                .spawn(move || worker.run(&rx))
                .map_err(|source| WebhookError::Thread { number, source })?;
            wake.push(tx);
        }
        Ok(Webhooks { wake })
    }

    /// Tells every webhook that audits were stored; never waits.
    pub fn wake(&self) {
        for w in &self.wake {
            // Full: a wake-up is pending already, and it will read everything stored by then.
            match w.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    log::error!("a webhook's thread has stopped; its events wait in the database")
                }
            }
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A redirect is the receiver's answer, not a place to send the event (and its
        // credentials) on to.
        .max_redirects(0)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .user_agent(format!("defender-console/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// A `--webhook` checked: `http` or `https` with a host. `index` counts from 0.
fn target(index: usize, url: &str) -> Result<Target, WebhookError> {
    let bad = |problem| WebhookError::Url {
        number: index + 1,
        problem,
    };
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| bad("not a URL (expected http://HOST/PATH or https://HOST/PATH)"))?;
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s,
        _ => return Err(bad("not an http or https URL")),
    };
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    // The user information, if any, is everything up to the last `@`.
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    let authorization = userinfo.map(|u| {
        let (user, password) = u.split_once(':').unwrap_or((u, ""));
        let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
        let mut credentials = decode(user);
        credentials.push(b':');
        credentials.extend(decode(password));
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(Target {
        index,
        url: url.to_owned(),
        request: format!("{scheme}://{host}{path}"),
        authorization,
        shown: format!("{scheme}://{host}"),
        key: digest(url),
    })
}

/// What an attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Worth trying again as it is: the receiver or the way to it failed.
    Failed,
    /// The receiver refused the event.
    Refused,
}

fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Failed,
        _ => Outcome::Refused,
    }
}

/// The wait after the `failures`-th failure of an event in a row (from 1).
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

/// The body of an event's request.
fn body(format: Format, e: &StoredEvent) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(e),
        Format::Slack => serde_json::to_vec(&serde_json::json!({ "text": summary(e) })),
    }
    .expect("an event always serializes")
}

/// One line: what happened where and why. Chat services read `<...>` as links and mentions
/// (`<!channel>`) and `&` as an entity: the workload chose some of these words (its process
/// names, its messages), so those three are escaped as Slack asks, and nothing it wrote breaks
/// the line.
fn summary(stored: &StoredEvent) -> String {
    let e = &stored.event;
    let mut line = format!(
        "defender: {} {} in container {} (image {}): {}",
        e.effect.as_str(),
        e.kind.as_str(),
        e.container,
        e.image,
        e.message
    );
    if let Some(rule) = &e.rule {
        line.push_str(&format!(" [rule {rule}]"));
    }
    line.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Worker {
    target: Target,
    format: Format,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    agent: ureq::Agent,
}

impl Worker {
    fn run(&self, wake: &Receiver<()>) {
        let t = &self.target;
        let name = format!("webhook {}", t.key);
        loop {
            let lease = self.retry_store("taking its lease", || self.store.lease(&name));
            let Some(lease) = lease else {
                // Another instance delivers it.
                match wake.recv_timeout(LEASE_RETRY) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            log::info!(
                "webhook {} ({}): delivering from this console instance (it holds the lease)",
                t.index,
                t.shown
            );
            // Read after the lease is taken: the last holder may have moved it.
            let mut cursor =
                self.retry_store("reading its cursor", || self.store.delivery_cursor(&t.key));
            while lease.held() {
                let batch =
                    self.retry_store("reading audits", || self.store.audits_after(cursor, BATCH));
                if batch.is_empty() {
                    match wake.recv_timeout(IDLE_CHECK) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => continue,
                        // The console is stopping.
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                for (seq, event) in batch {
                    if !lease.held() {
                        break;
                    }
                    self.deliver(&event);
                    self.retry_store("moving its cursor", || {
                        self.store.set_delivery_cursor(&t.key, seq)
                    });
                    cursor = seq;
                }
            }
            log::warn!(
                "webhook {} ({}): lost its lease; another console instance may deliver it",
                t.index,
                t.shown
            );
        }
    }

    /// A storage call, tried again after a backoff until it works: the webhook can do nothing
    /// else meanwhile, and the events wait in the database.
    fn retry_store<T>(
        &self,
        what: &str,
        mut call: impl FnMut() -> Result<T, crate::store::StoreError>,
    ) -> T {
        let mut failures = 0;
        loop {
            match call() {
                Ok(v) => return v,
                Err(e) => {
                    failures += 1;
                    log::error!(
                        "webhook {} ({}): {what}: {e}",
                        self.target.index,
                        self.target.shown
                    );
                    std::thread::sleep(backoff(failures));
                }
            }
        }
    }

    /// Sends `e` until the receiver takes it, or has refused it [`MAX_REFUSALS`] times.
    fn deliver(&self, e: &StoredEvent) {
        let t = &self.target;
        let labels = Metrics::webhook(t.index);
        let body = body(self.format, e);
        let (mut failures, mut refusals) = (0, 0);
        loop {
            let mut request = self
                .agent
                .post(&t.request)
                .header("Content-Type", "application/json");
            if let Some(a) = &t.authorization {
                request = request.header("Authorization", a);
            }
            let answer = request.send(&body[..]);
            let (result, why) = match answer {
                Ok(r) => (
                    outcome(r.status().as_u16()),
                    format!("status {}", r.status()),
                ),
                Err(err) => (Outcome::Failed, self.scrubbed(&err.to_string())),
            };
            if result == Outcome::Delivered {
                self.metrics.webhook_deliveries.get_or_create(&labels).inc();
                return;
            }
            self.metrics.webhook_failures.get_or_create(&labels).inc();
            failures += 1;
            if result == Outcome::Refused {
                refusals += 1;
                if refusals >= MAX_REFUSALS {
                    self.metrics.webhook_skipped.get_or_create(&labels).inc();
                    log::warn!(
                        "webhook {} ({}): audit {}: refused {refusals} times ({why}); skipped",
                        t.index,
                        t.shown,
                        e.event.id
                    );
                    return;
                }
            }
            let wait = backoff(failures);
            log::warn!(
                "webhook {} ({}): audit {}: {why}; trying again in {wait:?}",
                t.index,
                t.shown,
                e.event.id
            );
            std::thread::sleep(wait);
        }
    }

    /// An error's text without the URL (which the transport may quote).
    fn scrubbed(&self, text: &str) -> String {
        text.replace(&self.target.url, &self.target.shown)
            .replace(&self.target.request, &self.target.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Effect, Kind};

    #[test]
    fn urls_are_checked_and_never_shown() {
        let t = target(
            0,
            "https://user:s3cret@hooks.example:8443/services/T0/B1/XyZ?k=v",
        )
        .unwrap();
        assert_eq!(t.shown, "https://hooks.example:8443");
        assert_eq!(
            t.request,
            "https://hooks.example:8443/services/T0/B1/XyZ?k=v"
        );
        assert_eq!(t.authorization.as_deref(), Some("Basic dXNlcjpzM2NyZXQ="));
        assert_eq!(t.key.len(), 64);
        // Percent-decoded, as RFC 3986 writes `@` and `:` in user information.
        let t = target(0, "http://us%40er:p%3Ass@h/").unwrap();
        assert_eq!(t.authorization.as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
        assert_eq!(
            (t.request.as_str(), t.shown.as_str()),
            ("http://h/", "http://h")
        );
        assert_eq!(target(0, "http://h").unwrap().authorization, None);
        assert_eq!(
            target(1, "http://127.0.0.1:9/").unwrap().shown,
            "http://127.0.0.1:9"
        );
        for (url, problem) in [
            ("ftp://host/x", "not an http or https URL"),
            ("hooks.example/x", "not a URL"),
            ("/relative", "not an http or https URL"),
            ("http://user:pw@/x", "not a URL"),
            ("http://a b/", "not a URL"),
        ] {
            let e = target(2, url).err().unwrap().to_string();
            assert!(e.starts_with("--webhook number 3: "), "{e}");
            assert!(e.contains(problem), "{url}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn statuses() {
        for (status, want) in [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (301, Outcome::Refused),
            (400, Outcome::Refused),
            (404, Outcome::Refused),
            (408, Outcome::Failed),
            (429, Outcome::Failed),
            (500, Outcome::Failed),
            (503, Outcome::Failed),
        ] {
            assert_eq!(outcome(status), want, "{status}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let ms = |n| backoff(n).as_millis();
        assert_eq!((ms(1), ms(2), ms(3), ms(5)), (250, 500, 1000, 4000));
        assert_eq!(backoff(8), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn slack_summaries_are_one_line_and_escaped() {
        let event: crate::events::Event = serde_json::from_value(serde_json::json!({
            "id": "e1", "time": "2026-12-01T10:00:00Z", "type": "process", "effect": "prevent",
            "rule": "orders", "container": "orders-1", "image": "orders:1.2", "pid": 7,
            "process": "/bin/sh", "message": "<!channel> ran\n& then", "count": 1
        }))
        .unwrap();
        assert_eq!((event.kind, event.effect), (Kind::Process, Effect::Prevent));
        let stored = StoredEvent {
            event,
            source: Some("defender".into()),
        };
        assert_eq!(
            summary(&stored),
            "defender: prevent process in container orders-1 (image orders:1.2): &lt;!channel&gt; \
             ran &amp; then [rule orders]"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&body(Format::Slack, &stored)).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 1);
        let json: serde_json::Value = serde_json::from_slice(&body(Format::Json, &stored)).unwrap();
        assert_eq!(
            (json["id"].as_str(), json["source"].as_str()),
            (Some("e1"), Some("defender"))
        );
    }
}
