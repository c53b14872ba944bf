//! Audit ingestion off the async workers: batches wait in a queue bounded in events, served by a
//! fixed set of threads that each store one batch at a time; the store commits the batches of
//! the threads storing at the same time in one transaction (group commit). A flood therefore
//! holds a fixed number of threads, not one per request, and the blocking pool stays free for
//! the rest (a policy change, a page). A batch that finds the queue full is refused (the API
//! answers 503 with `Retry-After`): the defender keeps it in its spool and sends it again.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The threads storing batches: enough that a transaction takes a group of batches, few enough
/// that they cost nothing.
pub const WORKERS: usize = 16;
/// The events that may wait: about half a second of ingestion on the measured machine, and tens
/// of MiB of memory at most.
pub const QUEUED_EVENTS: usize = 50_000;

type Job = Box<dyn FnOnce() + Send>;

/// The batches waiting, with their events in all.
#[derive(Default)]
struct Waiting {
    jobs: VecDeque<(usize, Job)>,
    events: usize,
}

impl Waiting {
    /// Whether a batch of `events` fits: one always does in an empty queue (the API bounds a
    /// batch), another while the events waiting stay within `capacity`.
    fn admits(&self, events: usize, capacity: usize) -> bool {
        self.jobs.is_empty() || self.events + events <= capacity
    }
}

struct Shared {
    waiting: Mutex<Waiting>,
    ready: Condvar,
    capacity: usize,
}

fn lock(m: &Mutex<Waiting>) -> MutexGuard<'_, Waiting> {
    // Consistent between statements; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The queue was full: nothing of the batch was taken.
#[derive(Debug)]
pub struct Full;

pub struct Ingest {
    shared: Arc<Shared>,
}

impl Ingest {
    /// Starts `workers` threads serving a queue of `capacity` events.
    pub fn start(workers: usize, capacity: usize) -> std::io::Result<Ingest> {
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            ready: Condvar::new(),
            capacity,
        });
        for n in 0..workers {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("ingest-{n}"))
                .spawn(move || serve(&shared))?;
        }
        Ok(Ingest { shared })
    }

    /// Queues `job`, the storing of a batch of `events`, and returns where its answer will be;
    /// [`Full`] if it does not fit.
    pub fn submit<T: Send + 'static>(
        &self,
        events: usize,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Full> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = lock(&self.shared.waiting);
        if !waiting.admits(events, self.shared.capacity) {
            return Err(Full);
        }
        waiting.events += events;
        waiting.jobs.push_back((
            events,
            Box::new(move || {
                // The caller may have gone (its connection closed): the batch is stored anyway.
                let _ = tx.send(job());
            }),
        ));
        drop(waiting);
        self.shared.ready.notify_one();
        Ok(rx)
    }
}

/// A worker: the oldest batch, one at a time, forever. A job that panics drops its answer (the
/// caller is answered an error) and the worker goes on.
fn serve(shared: &Shared) {
    loop {
        let mut waiting = lock(&shared.waiting);
        let (events, job) = loop {
            match waiting.jobs.pop_front() {
                Some(next) => break next,
                None => {
                    waiting = shared
                        .ready
                        .wait(waiting)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        };
        waiting.events -= events;
        drop(waiting);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_batch_fits_an_empty_queue_or_within_the_capacity() {
        let queued = |events: &[usize]| Waiting {
            jobs: events
                .iter()
                .map(|&e| (e, Box::new(|| {}) as Job))
                .collect(),
            events: events.iter().sum(),
        };
        for (waiting, batch, want) in [
            (vec![], 100, true),
            // Larger than the whole queue, but alone: taken (the API bounds batches).
            (vec![], 5_000, true),
            (vec![600], 400, true),
            (vec![600], 401, false),
            (vec![500, 500], 1, false),
        ] {
            assert_eq!(
                queued(&waiting).admits(batch, 1000),
                want,
                "{waiting:?} {batch}"
            );
        }
    }

    #[test]
    fn a_full_queue_refuses_and_the_workers_answer_each_job() {
        let ingest = Ingest::start(1, 100).unwrap();
        // The only worker is held inside the first job until released.
        let (started_tx, started) = mpsc::channel();
        let (release, held) = mpsc::channel::<()>();
        let first = ingest
            .submit(10, move || {
                started_tx.send(()).unwrap();
                held.recv().unwrap();
                "first"
            })
            .unwrap();
        started.recv().unwrap();
        // The queue is empty again (the worker took the first): 100 events fit, then no more.
        let second = ingest.submit(100, || "second").unwrap();
        assert!(ingest.submit(1, || "third").is_err());
        release.send(()).unwrap();
        assert_eq!(first.blocking_recv().unwrap(), "first");
        assert_eq!(second.blocking_recv().unwrap(), "second");
        // Room again.
        assert_eq!(ingest.submit(1, || 7).unwrap().blocking_recv().unwrap(), 7);
    }

    #[test]
    fn a_job_that_panics_drops_its_answer_and_the_worker_goes_on() {
        let ingest = Ingest::start(1, 100).unwrap();
        let failed = ingest
            .submit(1, || -> u8 { panic!("storage bug") })
            .unwrap();
        assert!(failed.blocking_recv().is_err());
        assert_eq!(ingest.submit(1, || 3).unwrap().blocking_recv().unwrap(), 3);
    }
}
