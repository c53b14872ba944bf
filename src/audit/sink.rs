//! Where audit events are written locally: stderr (the default), stdout (`-`) or an append-only
//! file, one JSON line per `write(2)` so that concurrent writers never interleave a line.
//!
//! Every event written can also be handed to a tee (the console shipper's queue), which must not
//! block: local writing never waits on the console (audit.md).
//!
//! Floods are folded: an event identical (same activity) to one written less than
//! [`FOLD_WINDOW`] ago is not written again but counted, and the count goes out as one event with
//! `count` = N when the window closes. One looping attacker thus cannot drown the log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Event;

pub const FOLD_WINDOW: Duration = Duration::from_secs(1);

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
    recent: Vec<Folded>,
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
            recent: Vec::new(),
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
        if let Some(f) = self
            .recent
            .iter_mut()
            .find(|f| f.event.same_activity(&event))
        {
            f.pending += 1;
            return;
        }
        self.write(&event);
        self.recent.push(Folded {
            event,
            written_at: now,
            pending: 0,
        });
    }

    /// Writes the folded counts whose window has closed. Call it when [`Sink::next_deadline`] passes.
    pub fn flush_due(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.recent.len() {
            if now.duration_since(self.recent[i].written_at) >= FOLD_WINDOW {
                let f = self.recent.swap_remove(i);
                self.write_folded(f);
            } else {
                i += 1;
            }
        }
    }

    /// Writes every pending count now (at exit).
    pub fn flush_all(&mut self) {
        for f in std::mem::take(&mut self.recent) {
            self.write_folded(f);
        }
    }

    /// When the earliest fold window closes, if any is open with a pending count.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.recent.iter().map(|f| f.written_at + FOLD_WINDOW).min()
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
            sink.emit(Event::defender(&scope, "alert", None, "same".into()));
        }
        sink.emit(Event::defender(&scope, "alert", None, "other".into()));
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
}
