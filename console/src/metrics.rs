//! The console's Prometheus metrics, served by `GET /metrics` in the text format of the Prometheus
//! project's own client (`prometheus-client`): every name starts `defender_console_`. Labels are
//! bounded: requests by route template (never the raw path), webhooks by their index among the
//! `--webhook` flags (never the URL, which may hold credentials).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::gate::RefusedLabels;

/// The route of a request that matched none (a 404): one label value for all of them.
pub const UNMATCHED: &str = "unmatched";

/// A request's labels: its method (`other` for a non-standard one), the route template it
/// matched, its status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// A webhook's index among the `--webhook` flags, from 0.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: String,
}

type Latencies = Family<RequestLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    /// Set when scraped: the defenders heard from within the connected window.
    pub defenders_connected: Gauge,
    pub long_polls_open: Gauge,
    pub requests_native: Counter,
    pub audits_received: Counter,
    pub audits_stored: Counter,
    pub requests: Latencies,
    /// Set when scraped.
    pub database_size: Gauge,
    pub webhook_deliveries: Family<WebhookLabels, Counter>,
    pub webhook_failures: Family<WebhookLabels, Counter>,
    pub webhook_skipped: Family<WebhookLabels, Counter>,
    pub connections_refused: Family<RefusedLabels, Counter>,
    /// Set when scraped.
    pub connections_open: Gauge,
    pub audit_batches_refused: Counter,
}

/// Latency buckets from 1 ms to about 65 s (long polls are held up to 120 s and land in `+Inf`).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("defender_console"),
            defenders_connected: Gauge::default(),
            long_polls_open: Gauge::default(),
            requests_native: Counter::default(),
            audits_received: Counter::default(),
            audits_stored: Counter::default(),
            requests: Family::new_with_constructor(latency_histogram),
            database_size: Gauge::default(),
            webhook_deliveries: Family::default(),
            webhook_failures: Family::default(),
            webhook_skipped: Family::default(),
            connections_refused: Family::default(),
            connections_open: Gauge::default(),
            audit_batches_refused: Counter::default(),
        };
        let mut r = m.registry;
        r.register(
            "defenders_connected",
            "Defenders whose last heartbeat is recent (within 15 s)",
            m.defenders_connected.clone(),
        );
        r.register(
            "long_polls_open",
            "Policy long polls waiting for a change",
            m.long_polls_open.clone(),
        );
        r.register(
            "requests_native",
            "Policy reads (long polls among them) served outside hyper on plain HTTP: their \
             connections keep no HTTP buffers",
            m.requests_native.clone(),
        );
        r.register(
            "audits_received",
            "Audit events in batches the console answered 200 (new and already stored)",
            m.audits_received.clone(),
        );
        r.register(
            "audits_stored",
            "Audit events stored as new (after de-duplication by id)",
            m.audits_stored.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "HTTP requests by method, route template and status, and how long they took",
            Unit::Seconds,
            m.requests.clone(),
        );
        r.register_with_unit(
            "database_size",
            "The database on disk: SQLite's file and write-ahead log, or PostgreSQL's pg_database_size",
            Unit::Bytes,
            m.database_size.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Audit events a webhook's receiver accepted (2xx)",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "webhook_failures",
            "Failed webhook attempts (transport error, timeout, or a status other than 2xx)",
            m.webhook_failures.clone(),
        );
        r.register(
            "webhook_skipped",
            "Audit events a webhook gave up on after its receiver refused them (4xx) repeatedly",
            m.webhook_skipped.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused: defender traffic answered 503 while the connections reached the \
             open-file limit less the reserve (reserve), or a failed accept (descriptors)",
            m.connections_refused.clone(),
        );
        r.register(
            "connections_open",
            "Connections open (HTTP and HTTPS)",
            m.connections_open.clone(),
        );
        r.register(
            "audit_batches_refused",
            "Audit batches answered 503 because the ingestion queue was full",
            m.audit_batches_refused.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Records a request to `route` (a label from [`route_label`]) that took `seconds`.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method_label(method).to_owned(),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).observe(seconds);
    }

    pub fn webhook(index: usize) -> WebhookLabels {
        WebhookLabels {
            webhook: index.to_string(),
        }
    }
}

/// A route template as a label value: each `{name}` segment written `:name`. Braces are valid
/// in the text format, but simple scrapers' parsers (regular expressions reading a label set up
/// to the first `}`) cut the line there.
pub fn route_label(template: &str) -> String {
    template.replace('{', ":").replace('}', "")
}

/// A standard method's name, `other` for any other: a client must not grow the label set.
fn method_label(method: &str) -> &str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .find(|&&m| m == method)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_bounded() {
        for (method, want) in [
            ("GET", "GET"),
            ("DELETE", "DELETE"),
            ("get", "other"),
            ("BREW", "other"),
            ("", "other"),
        ] {
            assert_eq!(method_label(method), want, "{method}");
        }
    }

    #[test]
    fn route_labels() {
        for (template, want) in [
            ("/healthz", "/healthz"),
            ("/api/v1/x/revisions/{n}", "/api/v1/x/revisions/:n"),
            ("/api/v1/tokens/{name}/x", "/api/v1/tokens/:name/x"),
            ("/files/{*rest}", "/files/:*rest"),
        ] {
            assert_eq!(route_label(template), want);
        }
    }

    #[test]
    fn names_are_prefixed_and_values_show() {
        let m = Metrics::new();
        m.audits_stored.inc_by(3);
        m.request("BREW", "/healthz", 200, 0.002);
        m.webhook_failures.get_or_create(&Metrics::webhook(1)).inc();
        let text = m.encode();
        assert!(
            text.contains("defender_console_audits_stored_total 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "defender_console_request_duration_seconds_count{method=\"other\",route=\"/healthz\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("defender_console_webhook_failures_total{webhook=\"1\"} 1"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("defender_console_"), "{line}");
        }
    }
}
