//! What a run measured: errors counted by kind, latency percentiles, and the report written as
//! JSON and summarised on stdout.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Why a request, a connection or a propagation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ConnectRefused,
    ConnectTimeout,
    /// No local port left on the source address.
    NoLocalPort,
    /// The load generator's own descriptors ran out.
    TooManyFiles,
    Reset,
    /// The console closed the connection before answering.
    Closed,
    Timeout,
    Status5xx,
    Status4xx,
    /// A status or header the API does not give (a policy answer without an ETag, …).
    BadAnswer,
    /// A policy PUT that was not answered 200 with the next revision.
    PutFailed,
    /// A poller that did not see a PUT's revision within the timeout.
    PropagationMissed,
    /// A defender's heartbeats and batches that had not ended well after the stop.
    WriterAborted,
    Other,
}

const KINDS: [Kind; 14] = [
    Kind::ConnectRefused,
    Kind::ConnectTimeout,
    Kind::NoLocalPort,
    Kind::TooManyFiles,
    Kind::Reset,
    Kind::Closed,
    Kind::Timeout,
    Kind::Status5xx,
    Kind::Status4xx,
    Kind::BadAnswer,
    Kind::PutFailed,
    Kind::PropagationMissed,
    Kind::WriterAborted,
    Kind::Other,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::ConnectRefused => "connect refused",
            Kind::ConnectTimeout => "connect timeout",
            Kind::NoLocalPort => "no local port",
            Kind::TooManyFiles => "too many open files",
            Kind::Reset => "reset",
            Kind::Closed => "closed before answer",
            Kind::Timeout => "timeout",
            Kind::Status5xx => "5xx",
            Kind::Status4xx => "4xx",
            Kind::BadAnswer => "bad answer",
            Kind::PutFailed => "put failed",
            Kind::PropagationMissed => "propagation missed",
            Kind::WriterAborted => "writer aborted",
            Kind::Other => "other",
        }
    }
}

/// Every failure of the run, counted by kind, with the first one's words.
pub struct Errors {
    counts: [AtomicU64; KINDS.len()],
    first: Mutex<BTreeMap<&'static str, String>>,
}

impl Errors {
    pub fn new() -> Errors {
        Errors {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            first: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn count(&self, kind: Kind, n: u64, detail: &str) {
        let i = KINDS
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        if self.counts[i].fetch_add(n, Ordering::Relaxed) == 0 {
            let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
            first
                .entry(kind.name())
                .or_insert_with(|| detail.to_owned());
        }
    }

    pub fn summary(&self) -> ErrorReport {
        let by_kind: BTreeMap<&'static str, u64> = KINDS
            .iter()
            .zip(&self.counts)
            .map(|(k, c)| (k.name(), c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        ErrorReport {
            total: by_kind.values().sum(),
            by_kind,
            first: self.first.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

#[derive(Serialize)]
pub struct ErrorReport {
    pub total: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// The first failure of each kind, as it was said.
    pub first: BTreeMap<&'static str, String>,
}

/// Percentiles of durations, in milliseconds (nearest rank).
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    /// `None` when nothing was measured.
    pub fn of(samples: &[Duration]) -> Option<Spread> {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * ms.len() as f64).ceil() as usize;
            round(ms[i.clamp(1, ms.len()) - 1])
        };
        (!ms.is_empty()).then(|| Spread {
            count: ms.len(),
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            max_ms: round(ms[ms.len() - 1]),
        })
    }
}

/// To the microsecond: what the clock and the scheduler can tell apart.
pub fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// A memory figure (KiB) as printed, `-` when it could not be read.
pub fn kib(k: Option<u64>) -> String {
    k.map_or("-".into(), |k| k.to_string())
}

/// A figure to a tenth as printed (seconds, KiB), `-` when not measured.
pub fn tenths(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:.1}"))
}

/// Writes `value` as pretty JSON, a report to be read and shared.
pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).expect("a report serializes");
    std::fs::write(path, text + "\n")
}

/// Shown as `p50 / p99 / max ms (n)`, or `-` when nothing was measured.
pub fn show(spread: &Option<Spread>) -> String {
    match spread {
        Some(s) => format!(
            "p50 {:.1} / p99 {:.1} / max {:.1} ms ({})",
            s.p50_ms, s.p99_ms, s.max_ms, s.count
        ),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let s = Spread::of(&samples).unwrap();
        assert_eq!(
            (s.count, s.p50_ms, s.p99_ms, s.max_ms),
            (200, 100.0, 198.0, 200.0)
        );
        let one = Spread::of(&[Duration::from_micros(1500)]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (1.5, 1.5, 1.5));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn errors_count_by_kind_and_keep_the_first_words() {
        let e = Errors::new();
        e.count(Kind::Reset, 1, "first reset");
        e.count(Kind::Reset, 2, "second reset");
        e.count(Kind::PropagationMissed, 5, "5 pollers");
        let s = e.summary();
        assert_eq!(s.total, 8);
        assert_eq!(s.by_kind["reset"], 3);
        assert_eq!(s.first["reset"], "first reset");
        assert!(!s.by_kind.contains_key("timeout"));
    }
}
