//! Where audit events are written locally: stderr (the default), stdout (`-`) or an append-only
//! file, one JSON line per `write(2)` so that concurrent writers never interleave a line.
//!
//! Every event written can also be handed to a tee (the console shipper's queue), which must not
//! block: local writing never waits on the console (docs/audit.md).
//!
//! Floods are folded: an event identical (same activity) to one written less than
//! [`FOLD_WINDOW`] ago is not written again but counted, and the count goes out as one event with
//! `count` = N when the window closes. One looping attacker thus cannot drown the log, and one
//! that varies its activity (a new port or address each time) cannot grow the defender's memory:
//! at most [`MAX_OPEN`] windows are open, the oldest is closed early to make room, and each event
//! finds its window by hash in constant time (the supervisor's loop never scans them).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Event;

pub const FOLD_WINDOW: Duration = Duration::from_secs(1);
/// The most fold windows open at once; past it the oldest closes early (its count is written).
pub const MAX_OPEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open audit file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
}

enum Target {
    Stderr,
    Stdout,
    File(File),
}

struct Folded {
    event: Event,
    written_at: Instant,
    /// Identical events seen since `event` was written.
    pending: u64,
}

/// Receives every event the sink writes, right after it is written locally.
pub type Tee = Box<dyn FnMut(&Event) + Send>;

pub struct Sink {
    target: Target,
    /// Open fold windows by activity hash; a bucket holds the (rare) distinct activities that
    /// share a hash.
    open: HashMap<u64, Vec<Folded>>,
    /// (opened at, activity hash) of every open window, oldest first: windows open in time order,
    /// so the front is always the next to close.
    order: VecDeque<(Instant, u64)>,
    tee: Option<Tee>,
}

impl Sink {
    /// `None`: stderr; `-`: stdout; anything else: a file opened for appending (created 0600).
    pub fn open(path: Option<&std::path::Path>) -> Result<Sink, SinkError> {
        let target = match path {
            None => Target::Stderr,
            Some(p) if p.as_os_str() == "-" => Target::Stdout,
            Some(p) => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(p)
                    .map_err(|source| SinkError::Open {
                        path: p.to_path_buf(),
                        source,
                    })?;
                Target::File(file)
            }
        };
        Ok(Sink {
            target,
            open: HashMap::new(),
            order: VecDeque::new(),
            tee: None,
        })
    }

    /// Also hands every event written from now on to `tee`.
    pub fn tee(&mut self, tee: Tee) {
        self.tee = Some(tee);
    }

    /// Writes `event` now, or counts it if an identical one went out within the fold window.
    pub fn emit(&mut self, event: Event) {
        let now = Instant::now();
        self.flush_due(now);
        let hash = event.activity_hash();
        if let Some(f) = self
            .open
            .get_mut(&hash)
            .and_then(|bucket| bucket.iter_mut().find(|f| f.event.same_activity(&event)))
        {
            f.pending += 1;
            return;
        }
        if self.order.len() >= MAX_OPEN
            && let Some((opened, oldest)) = self.order.pop_front()
        {
            self.close(oldest, |f| f.written_at <= opened);
        }
        self.write(&event);
        self.open.entry(hash).or_default().push(Folded {
            event,
            written_at: now,
            pending: 0,
        });
        self.order.push_back((now, hash));
    }

    /// Writes the folded counts whose window has closed. Call it when [`Sink::next_deadline`] passes.
    pub fn flush_due(&mut self, now: Instant) {
        while let Some(&(opened, hash)) = self.order.front() {
            if now.duration_since(opened) < FOLD_WINDOW {
                break;
            }
            self.order.pop_front();
            self.close(hash, |f| now.duration_since(f.written_at) >= FOLD_WINDOW);
        }
    }

    /// Writes every pending count now (at exit).
    pub fn flush_all(&mut self) {
        self.order.clear();
        let buckets: Vec<Vec<Folded>> = self.open.drain().map(|(_, b)| b).collect();
        for f in buckets.into_iter().flatten() {
            self.write_folded(f);
        }
    }

    /// When the earliest fold window closes, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|&(opened, _)| opened + FOLD_WINDOW)
    }

    /// Closes the windows of one hash bucket that `due` picks, writing their counts.
    fn close(&mut self, hash: u64, due: impl Fn(&Folded) -> bool) {
        let Some(bucket) = self.open.get_mut(&hash) else {
            return;
        };
        let (closing, staying): (Vec<Folded>, Vec<Folded>) =
            std::mem::take(bucket).into_iter().partition(|f| due(f));
        match staying.is_empty() {
            true => {
                self.open.remove(&hash);
            }
            false => *bucket = staying,
        }
        for f in closing {
            self.write_folded(f);
        }
    }

    fn write_folded(&mut self, f: Folded) {
        if f.pending > 0 {
            let mut event = f.event;
            event.id = super::new_id();
            event.time = super::now();
            event.count = f.pending;
            self.write(&event);
        }
    }

    fn write(&mut self, event: &Event) {
        let mut line = serde_json::to_vec(event).expect("audit events always serialize");
        line.push(b'\n');
        let result = match &mut self.target {
            Target::Stderr => io::stderr().lock().write_all(&line),
            Target::Stdout => io::stdout().lock().write_all(&line),
            Target::File(f) => f.write_all(&line),
        };
        if let Err(e) = result {
            // Nowhere better to say it; the decision the event records was already enforced.
            log::error!("cannot write audit event {}: {e}", event.id);
        }
        if let Some(tee) = &mut self.tee {
            tee(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Scope;

    fn read(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn floods_fold_into_one_counted_event() {
        let dir = std::env::temp_dir().join(format!("defender-sink-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let mut sink = Sink::open(Some(&dir)).unwrap();
        let scope = Scope::default();
        for _ in 0..5 {
            sink.emit(Event::defender(
                &scope,
                crate::audit::Effect::Alert,
                None,
                "same".into(),
            ));
        }
        sink.emit(Event::defender(
            &scope,
            crate::audit::Effect::Alert,
            None,
            "other".into(),
        ));
        assert_eq!(read(&dir).len(), 2, "first of each kind written at once");
        assert!(sink.next_deadline().is_some());
        sink.flush_due(Instant::now() + FOLD_WINDOW);
        let lines = read(&dir);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["message"], "same");
        assert_eq!(lines[2]["count"], 4);
        assert!(sink.next_deadline().is_none());
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn distinct_floods_keep_at_most_max_open_windows_and_lose_no_count() {
        let path = std::env::temp_dir().join(format!("defender-sink-max-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut sink = Sink::open(Some(&path)).unwrap();
        let scope = Scope::default();
        let distinct = MAX_OPEN + 100;
        // Each distinct activity twice: the first written at once, the second counted.
        for round in 0..2 {
            for i in 0..distinct {
                sink.emit(Event::defender(
                    &scope,
                    crate::audit::Effect::Alert,
                    None,
                    format!("m{i}"),
                ));
                assert!(sink.order.len() <= MAX_OPEN, "round {round}, event {i}");
            }
        }
        sink.flush_all();
        let lines = read(&path);
        let total: u64 = lines.iter().map(|l| l["count"].as_u64().unwrap()).sum();
        assert_eq!(
            total,
            2 * distinct as u64,
            "every event is written or counted"
        );
        assert!(sink.next_deadline().is_none());
        std::fs::remove_file(&path).unwrap();
    }
}
