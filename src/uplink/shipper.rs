//! The shipper: takes every audit event the sinks wrote (through their tee, a channel that never
//! blocks them), gathers them into batches, puts each batch in the spool on disk, and delivers the
//! spool oldest first, retrying with backoff while the console is away.
//!
//! Delivery is at least once: a batch leaves the spool only after the console said it stored it,
//! so a console that dies mid-request gets the batch again, and de-duplicates it on `id`.
//!
//! The console takes at most 16 MiB per request and refuses a whole batch for one bad event, so
//! nothing one event can do may cost the others: a request holds at most [`POST_BYTES`], the
//! copy of an event sent to the console has its over-long strings cut (the local audit line
//! stays whole), and a batch the console refuses is halved until the events it refuses are
//! alone; only those are dropped, and audited.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::client::ClientError;
use super::spool::{self, Spool};
use super::{Backoff, Shared};
use crate::audit::{Event, Tee};

/// A batch is spooled when it has this many events or bytes, or when its first is this old.
const BATCH_EVENTS: usize = 200;
const BATCH_BYTES: usize = 1 << 20;
const BATCH_DELAY: Duration = Duration::from_millis(100);
/// Events per request when catching up on a spool.
const POST_EVENTS: usize = 1000;
/// Bytes per request, a quarter of what the console accepts (a spooled batch may pass it by one
/// event, and so may a spool left by an older defender: halving takes care of those).
const POST_BYTES: u64 = 4 << 20;
/// The longest string an event sent to the console holds, in bytes before JSON escaping (which at
/// worst makes it six times longer): a command line may be 1 MiB, and `message` repeats it.
const FIELD_MAX_BYTES: usize = 32 << 10;
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
        let line = for_console(event);
        // Fails only once the shipper is gone, at exit or when it never started: the event is
        // written locally all the same.
        let _ = to_shipper.send(Msg::Line(line));
    })
}

/// The line sent to the console for `event`: each string longer than [`FIELD_MAX_BYTES`] cut
/// there, ending with a marker saying how long it was (the local audit has it whole).
fn for_console(event: &Event) -> String {
    let serialize = |e: &Event| serde_json::to_string(e).expect("audit events always serialize");
    let line = serialize(event);
    // A line this short has no string to cut.
    if line.len() <= FIELD_MAX_BYTES {
        return line;
    }
    let mut e = event.clone();
    let optional = [&mut e.cmdline, &mut e.parent, &mut e.domain];
    for s in [&mut e.message, &mut e.process]
        .into_iter()
        .chain(optional.into_iter().flatten())
    {
        crate::audit::cut(s, FIELD_MAX_BYTES, "; whole in the local audit");
    }
    serialize(&e)
}

/// What a console refused, of a batch: the events dropped and its first answer.
#[derive(Default)]
struct Refused {
    events: usize,
    answer: Option<(u16, String)>,
}

pub(super) struct Shipper {
    shared: Arc<Shared>,
    from_sinks: Receiver<Msg>,
    spool: Spool,
    /// Events received and not yet spooled, their bytes, and when the first of them came.
    pending: Vec<String>,
    pending_bytes: usize,
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
            pending_bytes: 0,
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
            if self.pending_since.is_some_and(|t| {
                now >= t + BATCH_DELAY
                    || self.pending.len() >= BATCH_EVENTS
                    || self.pending_bytes >= BATCH_BYTES
            }) {
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
        self.pending_bytes += line.len();
        self.pending.push(line);
    }

    fn spool_pending(&mut self) {
        let lines = std::mem::take(&mut self.pending);
        self.pending_since = None;
        self.pending_bytes = 0;
        match self.spool.push(&lines) {
            Ok(0) => {}
            Ok(dropped) => self.shared.report(format!(
                "Audit spool full ({}): the {dropped} oldest undelivered events were dropped",
                self.spool.describe()
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
            let batch = match self.spool.peek(POST_EVENTS, POST_BYTES) {
                Ok(Some(b)) => b,
                Ok(None) => return true,
                Err(e) => {
                    log::error!("cannot read the audit spool: {e}");
                    self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                    return false;
                }
            };
            let mut refused = Refused::default();
            let ticket = self.shared.exchange();
            match self.post(&batch.events, timeout, &mut refused) {
                Ok(()) => {
                    self.shared.reached(ticket);
                    self.backoff.reset();
                    self.retry_at = None;
                }
                // What was delivered of the batch goes again with it: the console keeps one copy.
                Err(e) => {
                    self.shared.missed(ticket, &e);
                    let pause = self.backoff.next_delay();
                    log::debug!("audit delivery: {e}; next in {} ms", pause.as_millis());
                    self.retry_at = Some(Instant::now() + pause);
                    return false;
                }
            }
            if let Some((status, body)) = refused.answer {
                self.shared.report(format!(
                    "The console refused {} audit events (HTTP {status}: {body}); they were dropped, the other {} of their batch delivered",
                    refused.events,
                    batch.events.len() - refused.events
                ));
            }
            if let Err(e) = self.spool.remove(&batch) {
                log::error!("cannot remove delivered events from the spool: {e}");
                return false;
            }
        }
    }

    /// Posts `events`. The console refuses a whole batch for one event it will never take (a bad
    /// one, one too big): keeping them would block every later event behind them, dropping them
    /// all would lose the good ones. So a refused batch is halved, down to the single events
    /// refused, which are counted in `refused` and dropped.
    fn post(
        &self,
        events: &[Vec<u8>],
        timeout: Duration,
        refused: &mut Refused,
    ) -> Result<(), ClientError> {
        match self
            .shared
            .client
            .post_audits(&spool::body(events), timeout)
        {
            Err(ClientError::Refused {
                status: status @ (400 | 413 | 422),
                body,
            }) => {
                if let [_] = events {
                    refused.events += 1;
                    refused.answer.get_or_insert((status, body));
                    return Ok(());
                }
                let (first, second) = events.split_at(events.len() / 2);
                self.post(first, timeout, refused)?;
                self.post(second, timeout, refused)
            }
            other => other,
        }
    }

    /// Spools the events received and those still queued.
    pub(super) fn spool_queued(&mut self) {
        while let Ok(msg) = self.from_sinks.try_recv() {
            if let Msg::Line(line) = msg {
                self.add(line);
            }
        }
        self.spool_pending();
    }

    /// At exit: spools what is left and delivers it before `deadline`. If the console was
    /// already away, one attempt only: the container's exit is not held up for it.
    fn finish(&mut self, deadline: Instant) {
        self.spool_queued();
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
            let fate = match self.spool.is_on_disk() {
                true => "they stay in the spool for the next run",
                false => "they are lost with the defender (no writable state directory)",
            };
            log::warn!(
                "{} audit events not delivered to the console; {fate}",
                self.spool.len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Scope;

    #[test]
    fn only_over_long_strings_are_cut_for_the_console() {
        let scope = Scope::default();
        // The cut falls inside the `é`: it moves before it.
        let long = format!(
            "{}é{}",
            "x".repeat(FIELD_MAX_BYTES - 1),
            "x".repeat(FIELD_MAX_BYTES)
        );
        for (message, cut) in [("short".to_owned(), false), (long.clone(), true)] {
            let event = Event::defender(&scope, crate::audit::Effect::Alert, None, message.clone());
            let sent: serde_json::Value = serde_json::from_str(&for_console(&event)).unwrap();
            let sent = sent["message"].as_str().unwrap();
            if cut {
                let marker = format!("… (truncated, {} bytes in all;", long.len());
                assert!(sent.contains(&marker), "{}", &sent[FIELD_MAX_BYTES - 10..]);
                assert!(sent.len() < FIELD_MAX_BYTES + 100);
                assert!(sent.starts_with(&long[..FIELD_MAX_BYTES - 1]));
            } else {
                assert_eq!(sent, message);
            }
        }
    }
}
