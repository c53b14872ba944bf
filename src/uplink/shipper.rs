//! The shipper: takes every audit event the sinks wrote (through their tee, a channel that never
//! blocks them), gathers them into batches, puts each batch in the spool on disk, and delivers the
//! spool oldest first, retrying with backoff while the console is away.
//!
//! Delivery is at least once: a batch leaves the spool only after the console said it stored it,
//! so a console that dies mid-request gets the batch again, and de-duplicates it on `id`.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::client::ClientError;
use super::spool::Spool;
use super::{Backoff, SPOOL_MAX_BYTES, Shared};
use crate::audit::Tee;

/// A batch is spooled when it has this many events, or when its first is this old.
const BATCH_EVENTS: usize = 200;
const BATCH_DELAY: Duration = Duration::from_millis(100);
/// Events per request when catching up on a spool.
const POST_EVENTS: usize = 1000;
const POST_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) enum Msg {
    /// One event, as the JSON line written locally.
    Line(String),
    /// Deliver what is left before `deadline`, then say so on `done` and stop.
    Finish { deadline: Instant, done: Sender<()> },
}

/// The tee given to a sink: serializes the event and queues it, never waiting.
pub(super) fn tee(to_shipper: Sender<Msg>) -> Tee {
    Box::new(move |event| {
        let line = serde_json::to_string(event).expect("audit events always serialize");
        // Fails only once the shipper is gone, at exit or when it never started: the event is
        // written locally all the same.
        let _ = to_shipper.send(Msg::Line(line));
    })
}

pub(super) struct Shipper {
    shared: Arc<Shared>,
    from_sinks: Receiver<Msg>,
    spool: Spool,
    /// Events received and not yet spooled, and when the first of them came.
    pending: Vec<String>,
    pending_since: Option<Instant>,
    backoff: Backoff,
    /// When to try the console again after a failure; `None`: as soon as there is something.
    retry_at: Option<Instant>,
}

impl Shipper {
    pub(super) fn new(shared: Arc<Shared>, from_sinks: Receiver<Msg>, spool: Spool) -> Shipper {
        Shipper {
            shared,
            from_sinks,
            spool,
            pending: Vec::new(),
            pending_since: None,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(5)),
            retry_at: None,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let received = match self.next_wake() {
                Some(at) => self
                    .from_sinks
                    .recv_timeout(at.saturating_duration_since(Instant::now())),
                None => self
                    .from_sinks
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(Msg::Line(line)) => self.add(line),
                Ok(Msg::Finish { deadline, done }) => {
                    self.finish(deadline);
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if self
                .pending_since
                .is_some_and(|t| now >= t + BATCH_DELAY || self.pending.len() >= BATCH_EVENTS)
            {
                self.spool_pending();
            }
            if !self.spool.is_empty() && self.retry_at.is_none_or(|t| now >= t) {
                self.deliver(POST_TIMEOUT);
            }
        }
    }

    /// When there is something to do without new events: spool the pending batch, or retry.
    fn next_wake(&self) -> Option<Instant> {
        let spool = (!self.spool.is_empty()).then(|| self.retry_at.unwrap_or_else(Instant::now));
        [self.pending_since.map(|t| t + BATCH_DELAY), spool]
            .into_iter()
            .flatten()
            .min()
    }

    fn add(&mut self, line: String) {
        self.pending_since.get_or_insert_with(Instant::now);
        self.pending.push(line);
    }

    fn spool_pending(&mut self) {
        let lines = std::mem::take(&mut self.pending);
        self.pending_since = None;
        match self.spool.push(&lines) {
            Ok(0) => {}
            Ok(dropped) => self.shared.report(format!(
                "Audit spool full ({} MiB): the {dropped} oldest undelivered events were dropped",
                SPOOL_MAX_BYTES >> 20
            )),
            Err(e) => log::error!(
                "cannot spool {} audit events: {e}; they were written locally only",
                lines.len()
            ),
        }
    }

    /// Delivers the spool oldest first until it is empty (true) or an attempt fails (false).
    fn deliver(&mut self, timeout: Duration) -> bool {
        loop {
            let batch = match self.spool.peek(POST_EVENTS) {
                Ok(Some(b)) => b,
                Ok(None) => return true,
                Err(e) => {
                    log::error!("cannot read the audit spool: {e}");
                    self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                    return false;
                }
            };
            match self.shared.client.post_audits(&batch.body, timeout) {
                Ok(()) => {
                    self.shared.reached();
                    self.backoff.reset();
                    self.retry_at = None;
                }
                // The console will never take these (it validates every event): keeping them
                // would block every later event behind them.
                Err(ClientError::Refused {
                    status: status @ (400 | 413 | 422),
                    body,
                }) => self.shared.report(format!(
                    "The console refused {} audit events (HTTP {status}: {body}); they were dropped",
                    batch.events
                )),
                Err(e) => {
                    self.shared.missed(&e);
                    self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                    return false;
                }
            }
            if let Err(e) = self.spool.remove(&batch) {
                log::error!("cannot remove delivered events from the spool: {e}");
                return false;
            }
        }
    }

    /// At exit: spools what is left and delivers it before `deadline`. If the console was
    /// already away, one attempt only: the container's exit is not held up for it.
    fn finish(&mut self, deadline: Instant) {
        while let Ok(msg) = self.from_sinks.try_recv() {
            if let Msg::Line(line) = msg {
                self.add(line);
            }
        }
        self.spool_pending();
        let away = self.shared.is_down();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.deliver(left.min(POST_TIMEOUT)) || away {
                break;
            }
            let retry = self.retry_at.unwrap_or_else(Instant::now).min(deadline);
            std::thread::sleep(retry.saturating_duration_since(Instant::now()));
        }
        if !self.spool.is_empty() {
            log::warn!(
                "{} audit events not delivered to the console; they stay in the spool for the next run",
                self.spool.len()
            );
        }
    }
}
