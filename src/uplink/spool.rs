//! The audit spool: a bounded queue on disk of the events not yet delivered to the console, so
//! that they survive the console being away (and the defender restarting with the same state
//! directory).
//!
//! One file per batch (a segment), named `<sequence>-<events>.jsonl`, holding one event per line
//! as it was written locally. A segment is written aside and renamed into place, so a crash never
//! leaves half of one; it is deleted once the console has stored it. When the spool is over its
//! size, the oldest segments are dropped (and counted, for an audit saying so): the newest events
//! are the ones an operator needs when the console returns.
//!
//! With no writable state directory (a read-only root file system) the same queue lives in memory:
//! same bound and same dropping, but nothing survives the defender.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    seq: u64,
    events: usize,
    bytes: u64,
}

pub struct Spool {
    store: Store,
    segments: VecDeque<Segment>,
    bytes: u64,
    max_bytes: u64,
}

/// Where the segments' texts are.
enum Store {
    /// One file per segment in this directory.
    Disk(PathBuf),
    /// The texts, in the order of `segments` (segments only ever leave from the front).
    Memory(VecDeque<Vec<u8>>),
}

/// Some of the oldest segments, to be sent as one request.
pub struct Batch {
    /// The events, one JSON object each.
    pub events: Vec<Vec<u8>>,
    segments: usize,
}

/// `events` as one request body: a JSON array.
pub fn body(events: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.push(b']');
    body
}

impl Spool {
    /// Opens (creating) the spool in `dir`, picking up the segments a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        super::create_private_dir(dir)?;
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            match parse_name(&name) {
                Some((seq, events)) => segments.push(Segment {
                    seq,
                    events,
                    bytes: entry.metadata()?.len(),
                }),
                // Left by a crash while writing: never renamed, so never complete.
                None if name.ends_with(".tmp") => std::fs::remove_file(entry.path())?,
                None => {}
            }
        }
        segments.sort_by_key(|s| s.seq);
        Ok(Spool {
            store: Store::Disk(dir.to_path_buf()),
            bytes: segments.iter().map(|s| s.bytes).sum(),
            segments: segments.into(),
            max_bytes,
        })
    }

    /// An empty spool in memory, for when no directory is writable.
    pub fn in_memory(max_bytes: u64) -> Spool {
        Spool {
            store: Store::Memory(VecDeque::new()),
            segments: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// For messages: its bound and where it is, e.g. `32 MiB on disk`.
    pub fn describe(&self) -> String {
        let place = match self.store {
            Store::Disk(_) => "on disk",
            Store::Memory(_) => "in memory",
        };
        format!("{} MiB {place}", self.max_bytes >> 20)
    }

    pub fn is_on_disk(&self) -> bool {
        matches!(self.store, Store::Disk(_))
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.events).sum()
    }

    /// Appends a batch of events (JSON objects, one per line). Returns how many old events were
    /// dropped to keep the spool under its size.
    pub fn push(&mut self, lines: &[String]) -> io::Result<usize> {
        if lines.is_empty() {
            return Ok(0);
        }
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        let bytes = text.len() as u64;
        let mut dropped = 0;
        while self.bytes + bytes > self.max_bytes
            && let Some(oldest) = self.segments.front().copied()
        {
            self.remove_oldest(&oldest)?;
            dropped += oldest.events;
        }
        let segment = Segment {
            seq: self.segments.back().map_or(1, |s| s.seq + 1),
            events: lines.len(),
            bytes,
        };
        match &mut self.store {
            Store::Disk(dir) => {
                let aside = dir.join(format!("{}.tmp", segment.seq));
                super::write_whole(&aside, &segment_path(dir, &segment), text.as_bytes())?;
            }
            Store::Memory(texts) => texts.push_back(text.into_bytes()),
        }
        self.bytes += bytes;
        self.segments.push_back(segment);
        Ok(dropped)
    }

    /// The oldest segments holding at most `max_events` events and `max_bytes` bytes (but at
    /// least one segment, whatever its size); `None` when the spool is empty.
    pub fn peek(&self, max_events: usize, max_bytes: u64) -> io::Result<Option<Batch>> {
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut segments = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            if segments > 0
                && (events.len() + segment.events > max_events || bytes + segment.bytes > max_bytes)
            {
                break;
            }
            let text = match &self.store {
                Store::Disk(dir) => std::fs::read(segment_path(dir, segment))?,
                Store::Memory(texts) => texts[i].clone(),
            };
            events.extend(
                text.split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
            bytes += segment.bytes;
            segments += 1;
        }
        Ok((segments > 0).then_some(Batch { events, segments }))
    }

    /// Deletes the segments of `batch` (delivered).
    pub fn remove(&mut self, batch: &Batch) -> io::Result<()> {
        for _ in 0..batch.segments {
            if let Some(s) = self.segments.front().copied() {
                self.remove_oldest(&s)?;
            }
        }
        Ok(())
    }

    /// Deletes the oldest segment, `oldest`; it stays counted when its file cannot be deleted.
    fn remove_oldest(&mut self, oldest: &Segment) -> io::Result<()> {
        match &mut self.store {
            Store::Disk(dir) => std::fs::remove_file(segment_path(dir, oldest))?,
            Store::Memory(texts) => {
                texts.pop_front();
            }
        }
        self.segments.pop_front();
        self.bytes -= oldest.bytes;
        Ok(())
    }
}

fn segment_path(dir: &Path, s: &Segment) -> PathBuf {
    dir.join(format!("{:020}-{}.jsonl", s.seq, s.events))
}

/// `00000000000000000042-17.jsonl` is segment 42 with 17 events.
fn parse_name(name: &str) -> Option<(u64, usize)> {
    let (seq, events) = name.strip_suffix(".jsonl")?.split_once('-')?;
    Some((seq.parse().ok()?, events.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANY: u64 = u64::MAX;

    fn lines(from: usize, n: usize) -> Vec<String> {
        (from..from + n)
            .map(|i| format!(r#"{{"id":"{i}"}}"#))
            .collect()
    }

    fn ids(batch: &Batch) -> Vec<String> {
        let v: Vec<serde_json::Value> = serde_json::from_slice(&body(&batch.events)).unwrap();
        v.iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn names() {
        for (name, want) in [
            ("00000000000000000042-17.jsonl", Some((42, 17))),
            ("42-1.jsonl", Some((42, 1))),
            ("42.tmp", None),
            ("42-x.jsonl", None),
            ("policy.json", None),
        ] {
            assert_eq!(parse_name(name), want, "{name}");
        }
    }

    #[test]
    fn delivers_oldest_first_in_batches_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.peek(10, MANY).unwrap().is_none());
        spool.push(&lines(0, 3)).unwrap();
        spool.push(&lines(3, 3)).unwrap();
        spool.push(&lines(6, 5)).unwrap();
        assert_eq!(spool.len(), 11);

        // Two segments fit in 7 events; the third would not.
        let batch = spool.peek(7, MANY).unwrap().unwrap();
        assert_eq!(ids(&batch), ["0", "1", "2", "3", "4", "5"]);
        // Not delivered: a new process finds everything, plus a half-written segment it ignores.
        std::fs::write(dir.path().join("99.tmp"), "{").unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(!dir.path().join("99.tmp").exists());
        assert_eq!(spool.len(), 11);
        let batch = spool.peek(7, MANY).unwrap().unwrap();
        spool.remove(&batch).unwrap();
        // A segment larger than the batch size still goes, alone.
        let batch = spool.peek(2, MANY).unwrap().unwrap();
        assert_eq!(batch.events.len(), 5);
        assert_eq!(ids(&batch), ["6", "7", "8", "9", "10"]);
        spool.remove(&batch).unwrap();
        assert!(spool.is_empty());
        spool.push(&lines(11, 1)).unwrap();
        assert_eq!(ids(&spool.peek(10, MANY).unwrap().unwrap()), ["11"]);
    }

    #[test]
    fn a_batch_is_bounded_in_bytes_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let segment = lines(0, 2).concat().len() as u64 + 2;
        for i in 0..3 {
            spool.push(&lines(i * 2, 2)).unwrap();
        }
        // Two segments fit in the bytes, the third would not; a segment over the bound still
        // goes, alone.
        assert_eq!(
            ids(&spool.peek(100, segment * 2).unwrap().unwrap()).len(),
            4
        );
        assert_eq!(ids(&spool.peek(100, 1).unwrap().unwrap()), ["0", "1"]);
    }

    #[test]
    fn drops_the_oldest_when_full_on_disk_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let one = lines(10, 10).concat().len() as u64 + 10;
        for mut spool in [
            Spool::open(dir.path(), one * 2).unwrap(),
            Spool::in_memory(one * 2),
        ] {
            assert_eq!(spool.push(&lines(0, 10)).unwrap(), 0);
            assert_eq!(spool.push(&lines(10, 10)).unwrap(), 0);
            assert_eq!(spool.push(&lines(20, 10)).unwrap(), 10);
            let batch = spool.peek(100, MANY).unwrap().unwrap();
            let got = ids(&batch);
            assert_eq!((got.len(), got[0].as_str()), (20, "10"));
        }
    }

    #[test]
    fn in_memory_delivers_oldest_first_in_batches() {
        let mut spool = Spool::in_memory(1 << 20);
        assert!(!spool.is_on_disk());
        assert_eq!(spool.describe(), "1 MiB in memory");
        spool.push(&lines(0, 3)).unwrap();
        spool.push(&lines(3, 3)).unwrap();
        spool.push(&lines(6, 5)).unwrap();
        let batch = spool.peek(7, MANY).unwrap().unwrap();
        assert_eq!(ids(&batch), ["0", "1", "2", "3", "4", "5"]);
        spool.remove(&batch).unwrap();
        assert_eq!(spool.len(), 5);
        let batch = spool.peek(2, MANY).unwrap().unwrap();
        assert_eq!(ids(&batch), ["6", "7", "8", "9", "10"]);
        spool.remove(&batch).unwrap();
        assert!(spool.is_empty() && spool.bytes == 0);
    }
}
