//! The simulated defenders. Each behaves as the real one's uplink does (src/uplink/): a long poll
//! on the runtime policy on a connection of its own (first a plain GET for the revision in
//! force, then `If-None-Match: "REV"` with `?wait=`, the request allowed the wait plus 10 s), a
//! second one on the WAAS policy when asked, and heartbeats and audit batches one at a time on
//! another kept-alive connection; after any failure the connection is dropped and the next
//! attempt waits a backoff doubling from 250 ms to 5 s, ±20 %, as the defender's does. A batch
//! not acknowledged is sent again as it was (same ids: the console stores it once).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper::{Method, header};
use tokio::sync::{Notify, watch};
use tokio::time::sleep;

use crate::http::{Answer, Conn, Failure, Target, revision, status_failure};
use crate::report::{Errors, Kind};

pub const POLICY: &str = "/api/v1/policies/runtime/app-embedded";
const WAAS_POLICY: &str = "/api/v1/policies/firewall/app/app-embedded";
const AUDITS: &str = "/api/v1/audits/runtime/app-embedded";
const HEARTBEAT: &str = "/api/v1/defenders/heartbeat";
/// How much longer than its wait a long poll may take before it counts as lost (the defender's).
const SLACK: Duration = Duration::from_secs(10);
/// A plain request's deadline (the defender's POST timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every simulated defender shares: the run's settings and what they measured.
pub struct Fleet {
    pub run: String,
    pub defender_token: String,
    /// The long poll's `?wait=`.
    pub wait: Duration,
    pub errors: Errors,
    /// Long polls sent and not yet answered, now (a poll the console holds is one of them).
    pub holding: AtomicUsize,
    /// Runtime pollers that had their first answer (first contact made).
    pub contacted: AtomicUsize,
    /// Polls that failed after their poller's first contact: connections lost.
    pub lost: AtomicU64,
    /// The revision a PUT is waiting for, and when each poller first saw it.
    pub watch: Mutex<Watch>,
    /// Told when every expected poller has seen the watched revision.
    pub all_seen: Notify,
    /// With `--record`: every runtime poller's revision changes, (from, to, wall clock in ns
    /// since the epoch), for a merge with other processes' (crate::merge).
    pub changes: Option<Mutex<Vec<(u64, u64, u64)>>>,
}

#[derive(Default)]
pub struct Watch {
    /// 0: no PUT is waiting.
    pub target: u64,
    pub expected: usize,
    pub seen: Vec<Instant>,
}

impl Fleet {
    /// A runtime poller went from `before` to `now`: counted for the watched revision when it
    /// crosses it.
    fn saw(&self, before: Option<u64>, now: u64) {
        let at = Instant::now();
        if let Some(changes) = &self.changes {
            let wall = crate::unix_nanos(SystemTime::now());
            let mut c = changes.lock().unwrap_or_else(|e| e.into_inner());
            c.push((before.unwrap_or(0), now, wall));
        }
        let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if w.target != 0 && now >= w.target && before.is_none_or(|b| b < w.target) {
            w.seen.push(at);
            if w.seen.len() >= w.expected {
                self.all_seen.notify_one();
            }
        }
    }

    fn failed(&self, f: &Failure) {
        self.errors.count(f.kind, 1, &f.detail);
    }
}

/// One simulated defender.
pub struct Defender {
    pub index: usize,
    pub target: Target,
    pub source: Option<IpAddr>,
    /// The runtime revision it holds (0: none yet), which its heartbeats report.
    pub revision: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Runtime,
    Waas,
}

/// Polls `feed` until the task is aborted.
pub async fn poll(fleet: Arc<Fleet>, me: Arc<Defender>, feed: Feed) {
    let path = match feed {
        Feed::Runtime => POLICY,
        Feed::Waas => WAAS_POLICY,
    };
    let mut conn: Option<Conn> = None;
    let mut have: Option<u64> = None;
    let mut backoff = Backoff::new();
    loop {
        let c = match &mut conn {
            Some(c) => c,
            None => match Conn::open(&me.target, me.source).await {
                Ok(c) => conn.insert(c),
                Err(f) => {
                    fleet.failed(&f);
                    sleep(backoff.next_delay()).await;
                    continue;
                }
            },
        };
        let (query, headers, timeout) = match have {
            Some(rev) => (
                format!("{path}?wait={}", fleet.wait.as_secs()),
                vec![(header::IF_NONE_MATCH, format!("\"{rev}\""))],
                fleet.wait + SLACK,
            ),
            None => (path.to_owned(), vec![], REQUEST_TIMEOUT),
        };
        let request = me
            .target
            .request(Method::GET, &query, &fleet.defender_token, &headers, None);
        let long = have.is_some();
        if long {
            fleet.holding.fetch_add(1, Ordering::SeqCst);
        }
        let answer = c.send(request, timeout).await;
        if long {
            fleet.holding.fetch_sub(1, Ordering::SeqCst);
        }
        let failure = match answer {
            Ok(a) if a.status == 304 && long => {
                drop_if_closing(&mut conn, &a);
                backoff.reset();
                continue;
            }
            Ok(a) if a.status == 200 => match a.etag.as_deref().and_then(revision) {
                Some(rev) => {
                    drop_if_closing(&mut conn, &a);
                    backoff.reset();
                    if feed == Feed::Runtime {
                        if have.is_none() {
                            fleet.contacted.fetch_add(1, Ordering::SeqCst);
                        }
                        if have != Some(rev) {
                            fleet.saw(have, rev);
                            me.revision.store(rev, Ordering::SeqCst);
                        }
                    }
                    have = Some(rev);
                    continue;
                }
                None => Failure::new(Kind::BadAnswer, "a policy answer without a revision ETag"),
            },
            Ok(a) => status_failure(path, &a),
            Err(f) => f,
        };
        fleet.failed(&failure);
        if have.is_some() {
            fleet.lost.fetch_add(1, Ordering::SeqCst);
        }
        conn = None;
        sleep(backoff.next_delay()).await;
    }
}

fn drop_if_closing(conn: &mut Option<Conn>, answer: &Answer) {
    if answer.close {
        *conn = None;
    }
}

/// What a defender's heartbeats and audit batches do.
#[derive(Clone, Copy)]
pub struct Traffic {
    pub heartbeat: Option<Duration>,
    /// One batch every so often.
    pub batch_every: Option<Duration>,
    pub events: usize,
    /// A connection per request (`Connection: close`) instead of one kept alive, as the real
    /// defender keeps it: a defender then holds a descriptor of the console's only for its poll
    /// and while a request is under way.
    pub close: bool,
}

/// What one defender's writer measured.
#[derive(Default)]
pub struct Written {
    pub heartbeats: u64,
    pub heartbeat_latency: Vec<Duration>,
    pub batches: u64,
    /// Events in batches the console answered 200, and how many of them it said were new.
    pub events_acked: u64,
    pub events_stored: u64,
    pub batch_latency: Vec<Duration>,
    /// Events of a batch the console refused (4xx): dropped, as the defender drops them.
    pub events_refused: u64,
    /// Events of a batch still not acknowledged when the run ended.
    pub events_unsent: u64,
}

/// Sends heartbeats and audit batches until `stop`; a request under way when it comes is
/// finished first, so that what the console stored is what was acknowledged.
pub async fn write(
    fleet: Arc<Fleet>,
    me: Arc<Defender>,
    traffic: Traffic,
    mut stop: watch::Receiver<bool>,
) -> Written {
    let mut out = Written::default();
    let mut conn: Option<Conn> = None;
    let mut backoff = Backoff::new();
    let start = tokio::time::Instant::now();
    // The first of each at a random point of its period, so that the fleet does not beat in step.
    let first = |period: Option<Duration>| period.map(|p| start + p.mul_f64(random_unit()));
    let mut next_beat = first(traffic.heartbeat);
    let mut next_batch = first(traffic.batch_every);
    let mut pending: Option<(Bytes, u64)> = None;
    let mut batch_no = 0u64;
    loop {
        let Some(next) = [next_beat, next_batch].into_iter().flatten().min() else {
            let _ = stop.wait_for(|s| *s).await;
            break;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let now = tokio::time::Instant::now();
        if next_beat.is_some_and(|t| t <= now) {
            let body = heartbeat(&fleet, &me);
            let sent = Instant::now();
            let answer = exchange(&fleet, &me, &mut conn, HEARTBEAT, body, traffic.close).await;
            next_beat = traffic.heartbeat.map(|p| now + p);
            match answer {
                Ok(_) => {
                    out.heartbeats += 1;
                    out.heartbeat_latency.push(sent.elapsed());
                }
                Err(f) => fleet.failed(&f),
            }
        }
        if let Some(due) = next_batch.filter(|t| *t <= now) {
            let (body, events) = pending.take().unwrap_or_else(|| {
                batch_no += 1;
                (
                    audit_batch(&fleet, &me, batch_no, traffic.events),
                    traffic.events as u64,
                )
            });
            let sent = Instant::now();
            match exchange(&fleet, &me, &mut conn, AUDITS, body.clone(), traffic.close).await {
                Ok(a) => {
                    backoff.reset();
                    out.batches += 1;
                    out.batch_latency.push(sent.elapsed());
                    out.events_acked += events;
                    out.events_stored += stored(&a.body);
                    next_batch = traffic.batch_every.map(|p| (due + p).max(now));
                }
                Err(f) => {
                    fleet.failed(&f);
                    if f.kind == Kind::Status4xx {
                        out.events_refused += events;
                    } else {
                        pending = Some((body, events));
                    }
                    next_batch = Some(now + backoff.next_delay());
                }
            }
        }
    }
    out.events_unsent = pending.map_or(0, |(_, n)| n);
    out
}

/// A POST on the writer's connection (opened first if needed); anything but 2xx is a failure, and
/// the connection is dropped after it (or when the console closes it, or `close` asked it to).
async fn exchange(
    fleet: &Fleet,
    me: &Defender,
    conn: &mut Option<Conn>,
    path: &str,
    body: Bytes,
    close: bool,
) -> Result<Answer, Failure> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(Conn::open(&me.target, me.source).await?),
    };
    let headers = if close {
        vec![(header::CONNECTION, "close".to_owned())]
    } else {
        vec![]
    };
    let request = me.target.request(
        Method::POST,
        path,
        &fleet.defender_token,
        &headers,
        Some(body),
    );
    let answer = c.send(request, REQUEST_TIMEOUT).await;
    match answer {
        Ok(a) if (200..300).contains(&a.status) => {
            if close {
                *conn = None;
            } else {
                drop_if_closing(conn, &a);
            }
            Ok(a)
        }
        Ok(a) => {
            *conn = None;
            Err(status_failure(path, &a))
        }
        Err(f) => {
            *conn = None;
            Err(f)
        }
    }
}

/// `stored` of `{"received": N, "stored": M}`.
fn stored(body: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["stored"].as_u64())
        .unwrap_or(0)
}

fn container(me: &Defender) -> String {
    format!("loadgen-{}", me.index)
}

const IMAGE: &str = "loadgen/app:1";

/// A heartbeat as the defender sends it (no activity report: nothing was observed).
fn heartbeat(fleet: &Fleet, me: &Defender) -> Bytes {
    let revision = match me.revision.load(Ordering::SeqCst) {
        0 => None,
        r => Some(r.to_string()),
    };
    let beat = serde_json::json!({
        "id": format!("{}-{}", fleet.run, me.index),
        "container": container(me),
        "image": IMAGE,
        "version": "loadgen",
        "revision": revision,
    });
    Bytes::from(beat.to_string())
}

/// `events` audit events as a defender writes a refused launch, ids unique to the run.
fn audit_batch(fleet: &Fleet, me: &Defender, batch: u64, events: usize) -> Bytes {
    let time = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let container = container(me);
    let all: Vec<serde_json::Value> = (0..events)
        .map(|n| {
            serde_json::json!({
                "id": format!("{}-{}-{batch}-{n}", fleet.run, me.index),
                "time": time,
                "type": "process",
                "effect": "prevent",
                "rule": "loadgen",
                "attack": "processExplicitlyDenied",
                "container": container,
                "image": IMAGE,
                "pid": 1000 + n,
                "process": "/usr/bin/curl",
                "cmdline": format!("curl http://198.51.100.{}/", n % 250),
                "parent": "/bin/sh",
                "message": format!(
                    "/usr/bin/curl launched from /bin/sh is explicitly denied by a runtime rule. \
                     Full command: curl http://198.51.100.{}/", n % 250),
                "count": 1,
            })
        })
        .collect();
    Bytes::from(serde_json::Value::Array(all).to_string())
}

/// A number in [0, 1): RandomState is seeded afresh from the OS each time.
pub fn random_unit() -> f64 {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (random % 1_000_000) as f64 / 1_000_000.0
}

/// The defender's retry pacing: doubling from 250 ms up to 5 s, each within ±20 %.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        base.mul_f64(0.8 + 0.4 * random_unit())
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}
