//! Heartbeats coalesced in memory and written in batches: a fleet beats thousands of times a
//! second, and one write transaction per beat is more than one SQLite writer takes. Each
//! defender (by heartbeat `id`) has at most one entry waiting: its last beat's fields, the
//! activity of all its beats summed. A thread writes what waits every `--heartbeat-flush`
//! (default 1 s), [`PER_TRANSACTION`] defenders a transaction, as bulk writes that a policy
//! saved meanwhile goes before. A read of the defenders or of their activity writes what waits
//! first ([`Beats::flush`]), so that it shows every heartbeat answered before it; a clean stop
//! writes it last. Memory is bounded: beyond [`MAX_WAITING`] defenders or [`MAX_VALUES`]
//! activity values waiting, a heartbeat is refused (503, `Retry-After`) and the defender sends it
//! again, its activity kept meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use defender::activity::{self, Entry, Kind, Observed};

use crate::app::ApiError;
use crate::logs::fields;
use crate::store::{Beat, Heartbeat, Store, StoreError};

/// How often waiting heartbeats are written unless `--heartbeat-flush` says otherwise.
pub const FLUSH_EVERY: &str = "1s";
/// Defenders written per transaction: short enough that the writer is free again within tens
/// of milliseconds, for the audits and the policy that wait their turns.
const PER_TRANSACTION: usize = 1_000;
/// Defenders waiting at most: 100,000 defenders on one console with room to spare.
const MAX_WAITING: usize = 200_000;
/// Activity values waiting at most, all defenders together (each at most 256 bytes).
const MAX_VALUES: usize = 500_000;

/// One defender's beats since the last write.
struct Waiting {
    beat: Heartbeat,
    first: String,
    last: String,
    /// Activity by kind and value: how often seen.
    values: HashMap<(Kind, String), u64>,
    /// Values held per kind, in the order of `Kind::ALL`.
    per_kind: [usize; Kind::ALL.len()],
}

impl Waiting {
    fn new(beat: Heartbeat, first: String, last: String) -> Waiting {
        Waiting {
            beat,
            first,
            last,
            values: HashMap::new(),
            per_kind: [0; Kind::ALL.len()],
        }
    }

    /// Adds `entries`; returns how many values are new here. A kind keeps at most
    /// `activity::MAX_ENTRIES` values, as many as a defender's run ever reports: a value beyond
    /// that comes from no honest defender and is not kept.
    fn add(&mut self, entries: Vec<Entry>) -> usize {
        let mut added = 0;
        for e in entries {
            // Declared in the order of `Kind::ALL`.
            let kind = e.kind as usize;
            match self.values.get_mut(&(e.kind, e.value.clone())) {
                Some(count) => *count = count.saturating_add(e.count),
                None if self.per_kind[kind] < activity::MAX_ENTRIES => {
                    self.values.insert((e.kind, e.value), e.count);
                    self.per_kind[kind] += 1;
                    added += 1;
                }
                None => {}
            }
        }
        added
    }

    fn into_beat(self) -> Beat {
        let mut entries: Vec<Entry> = self
            .values
            .into_iter()
            .map(|((kind, value), count)| Entry { kind, value, count })
            .collect();
        entries.sort_by(|a, b| (a.kind, &a.value).cmp(&(b.kind, &b.value)));
        Beat {
            beat: self.beat,
            observed: Observed {
                entries,
                dropped: Default::default(),
            },
            first: self.first,
            last: self.last,
        }
    }
}

/// Everything waiting, with the values it holds in all and the beats it coalesces.
#[derive(Default)]
struct Pending {
    by_id: HashMap<String, Waiting>,
    values: usize,
    received: u64,
    /// A heartbeat was refused for want of room: write now.
    full: bool,
}

impl Pending {
    /// Takes a beat that arrived after those waiting for its defender.
    fn newer(&mut self, beat: Heartbeat, entries: Vec<Entry>, now: String) {
        let w = self
            .by_id
            .entry(beat.id.clone())
            .or_insert_with(|| Waiting::new(beat.clone(), now.clone(), now.clone()));
        w.beat = beat;
        w.last = now;
        self.values += w.add(entries);
        self.received += 1;
    }

    /// Takes back a beat that could not be written, older than any waiting for its defender.
    fn older(&mut self, b: Beat) {
        let w = self
            .by_id
            .entry(b.beat.id.clone())
            .or_insert_with(|| Waiting::new(b.beat, b.first.clone(), b.last));
        w.first = b.first;
        self.values += w.add(b.observed.entries);
    }
}

/// The heartbeat waiting room was full: nothing of the beat was taken.
#[derive(Debug)]
pub struct Full;

pub struct Beats {
    store: Arc<dyn Store>,
    pending: Mutex<Pending>,
    /// Held by the write under way: a read that flushes waits for it, and so sees its beats.
    writing: Mutex<()>,
    /// Wakes the writing thread early when the waiting room is full.
    full: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Consistent between statements; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Beats {
    /// Starts the thread that writes waiting heartbeats every `every`.
    pub fn start(store: Arc<dyn Store>, every: Duration) -> std::io::Result<Arc<Beats>> {
        let beats = Arc::new(Beats {
            store,
            pending: Mutex::default(),
            writing: Mutex::new(()),
            full: Condvar::new(),
        });
        let writer = beats.clone();
        std::thread::Builder::new()
            .name("heartbeats".into())
            .spawn(move || {
                loop {
                    let pending = lock(&writer.pending);
                    // At the interval's end, or earlier when full.
                    drop(
                        writer
                            .full
                            .wait_timeout_while(pending, every, |p| !p.full)
                            .unwrap_or_else(|poisoned| poisoned.into_inner()),
                    );
                    if let Err(e) = writer.flush() {
                        log::error!("heartbeats: {e}; kept, written again next time");
                    }
                }
            })?;
        Ok(beats)
    }

    /// Takes a heartbeat arrived at `now`, with the activity it reports, to be written with the
    /// next batch; [`Full`] when the waiting room is.
    pub fn record(&self, beat: Heartbeat, observed: Observed, now: String) -> Result<(), Full> {
        let mut pending = lock(&self.pending);
        let new = !pending.by_id.contains_key(&beat.id);
        if (new && pending.by_id.len() >= MAX_WAITING)
            || pending.values + observed.entries.len() > MAX_VALUES
        {
            pending.full = true;
            drop(pending);
            self.full.notify_one();
            return Err(Full);
        }
        pending.newer(beat, observed.entries, now);
        Ok(())
    }

    /// Writes every heartbeat waiting, after the write under way if any; returns how many
    /// defenders it wrote. What a failed transaction held waits again, for the next write.
    pub fn flush(&self) -> Result<usize, StoreError> {
        let _writing = lock(&self.writing);
        let taken = std::mem::take(&mut *lock(&self.pending));
        if taken.by_id.is_empty() {
            return Ok(0);
        }
        let start = Instant::now();
        let mut beats: Vec<Beat> = taken.by_id.into_values().map(Waiting::into_beat).collect();
        let mut written = 0;
        let mut transactions = 0;
        while !beats.is_empty() {
            let rest = beats.split_off(beats.len().min(PER_TRANSACTION));
            if let Err(e) = self.store.heartbeats(&beats) {
                let mut pending = lock(&self.pending);
                for b in beats.into_iter().chain(rest) {
                    pending.older(b);
                }
                return Err(e);
            }
            written += beats.len();
            transactions += 1;
            beats = rest;
        }
        log::info!(
            "heartbeats {}",
            fields(&[
                ("received", &taken.received.to_string()),
                ("written", &written.to_string()),
                ("transactions", &transactions.to_string()),
                (
                    "ms",
                    &format!("{:.1}", start.elapsed().as_secs_f64() * 1000.0)
                ),
            ])
        );
        Ok(written)
    }
}

/// Writes what waits before a read of the defenders or their activity, off the async workers.
pub async fn flush_before_reading(beats: &Arc<Beats>) -> Result<(), ApiError> {
    let beats = beats.clone();
    match tokio::task::spawn_blocking(move || beats.flush()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ApiError::internal(format!("heartbeats: {e}"))),
        Err(e) => Err(ApiError::internal(format!("heartbeats: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Sqlite;

    fn beat(id: &str, revision: &str) -> Heartbeat {
        Heartbeat {
            id: id.into(),
            container: "web".into(),
            image: "img".into(),
            task: None,
            cluster: None,
            family: None,
            service: None,
            version: "1".into(),
            revision: Some(revision.into()),
            protects: Vec::new(),
        }
    }

    fn seen(values: &[(&str, u64)]) -> Observed {
        Observed {
            entries: values
                .iter()
                .map(|(v, count)| Entry {
                    kind: Kind::Dns,
                    value: (*v).into(),
                    count: *count,
                })
                .collect(),
            dropped: Default::default(),
        }
    }

    #[test]
    fn a_defender_waits_once_with_its_last_fields_and_all_its_activity() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(Sqlite::open(&dir.path().join("db")).unwrap());
        // Written only when asked: the thread's interval is longer than the test.
        let beats = Beats::start(store.clone(), Duration::from_secs(3600)).unwrap();
        beats
            .record(beat("a", "1"), seen(&[("x.test", 2)]), "t1".into())
            .unwrap();
        beats
            .record(
                beat("a", "2"),
                seen(&[("x.test", 3), ("y.test", 1)]),
                "t2".into(),
            )
            .unwrap();
        beats
            .record(beat("b", "2"), Observed::default(), "t3".into())
            .unwrap();
        assert!(store.defenders().unwrap().is_empty());
        assert_eq!(beats.flush().unwrap(), 2);
        assert_eq!(beats.flush().unwrap(), 0);
        let seen = store.defenders().unwrap();
        let a = seen.iter().find(|d| d.beat.id == "a").unwrap();
        assert_eq!(
            (&*a.first_seen, &*a.last_seen, a.beat.revision.as_deref()),
            ("t1", "t2", Some("2"))
        );
        let counts: Vec<(String, u64)> = store
            .observations(None)
            .unwrap()
            .into_iter()
            .map(|o| (o.value, o.count))
            .collect();
        assert_eq!(counts, [("x.test".into(), 5), ("y.test".into(), 1)]);
    }

    #[test]
    fn the_waiting_room_is_bounded_in_values_per_kind_and_in_all() {
        let mut w = Waiting::new(beat("a", "1"), "t".into(), "t".into());
        let many: Vec<(String, u64)> = (0..activity::MAX_ENTRIES + 3)
            .map(|i| (format!("n{i}.test"), 1))
            .collect();
        let many: Vec<(&str, u64)> = many.iter().map(|(v, c)| (v.as_str(), *c)).collect();
        assert_eq!(w.add(seen(&many).entries), activity::MAX_ENTRIES);
        // Values held still count; new ones of a full kind are not kept.
        assert_eq!(w.add(seen(&[("n0.test", 4), ("new.test", 1)]).entries), 0);
        assert_eq!(w.values[&(Kind::Dns, "n0.test".to_owned())], 5);

        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(Sqlite::open(&dir.path().join("db")).unwrap());
        let beats = Beats::start(store, Duration::from_secs(3600)).unwrap();
        lock(&beats.pending).values = MAX_VALUES - 1;
        assert!(
            beats
                .record(
                    beat("a", "1"),
                    seen(&[("a.test", 1), ("b.test", 1)]),
                    "t".into()
                )
                .is_err()
        );
        beats
            .record(beat("a", "1"), seen(&[("a.test", 1)]), "t".into())
            .unwrap();
    }
}
