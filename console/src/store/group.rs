//! Group commit: batches stored at the same time are written in one transaction. The first
//! caller to find no transaction being written leads: it takes every batch waiting (up to a
//! bound), writes and commits them, and hands each caller its own answer; the others wait for
//! it. A commit writes each page it dirtied once, so twenty batches that touch the same index
//! pages cost one commit's pages instead of twenty.
//!
//! The writer may stop before the last batch taken (when its transaction has taken long enough,
//! so that a policy change waiting for the connection waits for a short transaction only): the
//! batches it did not write go back to the head of the queue, in their order, for the next one.
//!
//! A transaction that fails fails every batch in it (each caller gets the error, nothing of the
//! transaction is kept): the defenders keep what was refused with a 5xx and post it again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::StoreError;
use crate::events::Event;

/// One `add_audits` call's batch, waiting for its transaction: its events, the name of the token
/// that delivered them, and when they arrived.
pub struct Batch {
    pub events: Vec<Event>,
    pub source: String,
    pub now: String,
}

/// A batch's place in the queue.
type Ticket = u64;

/// What a transaction answered: each batch's count, or why it failed (for all of them).
type Outcome = Result<Vec<usize>, String>;

/// What one batch is answered: its count, or why its transaction failed.
type Answer = Result<usize, String>;

/// The queue's bookkeeping, without the waiting: the batches not yet taken, whether a
/// transaction is being written, and the answers not yet collected.
struct Queue<B> {
    waiting: VecDeque<(Ticket, B)>,
    next: Ticket,
    writing: bool,
    answers: HashMap<Ticket, Answer>,
}

impl<B> Queue<B> {
    fn new() -> Queue<B> {
        Queue {
            waiting: VecDeque::new(),
            next: 0,
            writing: false,
            answers: HashMap::new(),
        }
    }

    fn push(&mut self, batch: B) -> Ticket {
        let ticket = self.next;
        self.next += 1;
        self.waiting.push_back((ticket, batch));
        ticket
    }

    /// The batches of the next transaction, oldest first: none while one is being written;
    /// otherwise the oldest, and those after it while their sizes add up to `bound` at most.
    /// Taking some marks a transaction as being written.
    fn lead(&mut self, bound: usize, size: impl Fn(&B) -> usize) -> Vec<(Ticket, B)> {
        if self.writing {
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut total = 0;
        while let Some((_, batch)) = self.waiting.front() {
            total += size(batch);
            if !taken.is_empty() && total > bound {
                break;
            }
            taken.extend(self.waiting.pop_front());
        }
        self.writing = !taken.is_empty();
        taken
    }

    /// The transaction of `tickets` (their `batches`) ended with `outcome`: the batches written
    /// (a prefix, at least one) get their answers, the others go back to the head of the queue.
    fn finish(&mut self, tickets: &[Ticket], mut batches: Vec<B>, outcome: Outcome) {
        self.writing = false;
        let answers: Vec<Answer> = match outcome {
            Ok(counts) if (1..=tickets.len()).contains(&counts.len()) => {
                let rest = batches.split_off(counts.len());
                for item in tickets[counts.len()..].iter().copied().zip(rest).rev() {
                    self.waiting.push_front(item);
                }
                counts.into_iter().map(Ok).collect()
            }
            Ok(counts) => {
                let e = format!(
                    "a group of {} batches was answered {} counts",
                    tickets.len(),
                    counts.len()
                );
                vec![Err(e); tickets.len()]
            }
            Err(e) => vec![Err(e); tickets.len()],
        };
        self.answers.extend(tickets.iter().copied().zip(answers));
    }

    /// The answer of `ticket`, once its transaction ended (collected once).
    fn collect(&mut self, ticket: Ticket) -> Option<Answer> {
        self.answers.remove(&ticket)
    }
}

/// Batches of `B` waiting for their transaction; `size` weighs a batch against the bound.
pub struct Group<B> {
    queue: Mutex<Queue<B>>,
    ended: Condvar,
    bound: usize,
    size: fn(&B) -> usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The queue's state is consistent between statements; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<B> Group<B> {
    /// A transaction takes batches up to `bound` in all (by `size`), always at least one.
    pub fn new(bound: usize, size: fn(&B) -> usize) -> Group<B> {
        Group {
            queue: Mutex::new(Queue::new()),
            ended: Condvar::new(),
            bound,
            size,
        }
    }

    /// Stores `batch` in the next transaction and returns its own count once that committed.
    /// The transaction is written by this thread if none is being written (with `write`, which
    /// gets every batch taken, oldest first, and answers a count for each of those it wrote: the
    /// first ones, at least one), or by the thread writing one otherwise.
    pub fn submit(
        &self,
        batch: B,
        write: impl Fn(&[B]) -> Result<Vec<usize>, StoreError>,
    ) -> Result<usize, StoreError> {
        let mut queue = lock(&self.queue);
        let ticket = queue.push(batch);
        loop {
            if let Some(answer) = queue.collect(ticket) {
                return answer.map_err(|e| StoreError { source: e.into() });
            }
            let taken = queue.lead(self.bound, self.size);
            if taken.is_empty() {
                queue = self
                    .ended
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            drop(queue);
            let (tickets, batches): (Vec<Ticket>, Vec<B>) = taken.into_iter().unzip();
            let mut leading = Leading {
                group: self,
                tickets,
                batches,
                outcome: Err("the transaction of this group panicked".into()),
            };
            leading.outcome = write(&leading.batches).map_err(|e| e.source.to_string());
            drop(leading);
            queue = lock(&self.queue);
        }
    }
}

#[cfg(test)]
impl<B> Group<B> {
    /// How many batches wait for a transaction, and whether one is being written.
    pub fn waiting(&self) -> (usize, bool) {
        let queue = lock(&self.queue);
        (queue.waiting.len(), queue.writing)
    }
}

/// The transaction being written by this thread: ending it (even by a panic while writing,
/// where panics unwind: the release build aborts the process instead) answers its batches and
/// lets the next leader start, so that no caller waits forever.
struct Leading<'a, B> {
    group: &'a Group<B>,
    tickets: Vec<Ticket>,
    batches: Vec<B>,
    outcome: Outcome,
}

impl<B> Drop for Leading<'_, B> {
    fn drop(&mut self) {
        let outcome = std::mem::replace(&mut self.outcome, Ok(Vec::new()));
        let batches = std::mem::take(&mut self.batches);
        lock(&self.group.queue).finish(&self.tickets, batches, outcome);
        self.group.ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches are their sizes.
    fn queue(sizes: &[usize]) -> Queue<usize> {
        let mut q = Queue::new();
        for &s in sizes {
            q.push(s);
        }
        q
    }

    fn tickets(taken: &[(Ticket, usize)]) -> Vec<Ticket> {
        taken.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn a_transaction_takes_the_oldest_batches_up_to_the_bound() {
        let cases: [(&[usize], bool, Vec<Ticket>); 7] = [
            (&[], false, vec![]),
            (&[100], false, vec![0]),
            (&[100, 100, 100], false, vec![0, 1, 2]),
            // Exactly the bound fits; one more event does not.
            (&[600, 400, 1], false, vec![0, 1]),
            // The oldest goes even above the bound (a batch is never split nor left behind).
            (&[1500, 1], false, vec![0]),
            // Order is kept: a small batch after a large one waits for the next transaction.
            (&[900, 200, 50], false, vec![0]),
            // Nothing while a transaction is being written.
            (&[100], true, vec![]),
        ];
        for (sizes, writing, want) in cases {
            let mut q = queue(sizes);
            q.writing = writing;
            let taken = q.lead(1000, |s| *s);
            assert_eq!(tickets(&taken), want, "{sizes:?} writing {writing}");
            assert_eq!(q.writing, writing || !want.is_empty(), "{sizes:?}");
            assert_eq!(q.waiting.len(), sizes.len() - want.len(), "{sizes:?}");
        }
    }

    #[test]
    fn each_batch_gets_its_own_answer_and_a_failure_fails_them_all() {
        let fail = || Err::<usize, String>("disk full".into());
        let cases: [(Outcome, Vec<Option<Answer>>); 4] = [
            (Ok(vec![3, 0]), vec![Some(Ok(3)), Some(Ok(0))]),
            (Err("disk full".into()), vec![Some(fail()), Some(fail())]),
            // A writer answering no count, or more than it was given, answers no one a count.
            (
                Ok(vec![]),
                vec![
                    Some(Err("a group of 2 batches was answered 0 counts".into())),
                    Some(Err("a group of 2 batches was answered 0 counts".into())),
                ],
            ),
            (
                Ok(vec![1, 2, 3]),
                vec![
                    Some(Err("a group of 2 batches was answered 3 counts".into())),
                    Some(Err("a group of 2 batches was answered 3 counts".into())),
                ],
            ),
        ];
        for (outcome, want) in cases {
            let mut q = queue(&[10, 20, 30]);
            let (taken, batches): (Vec<Ticket>, Vec<usize>) =
                q.lead(30, |s| *s).into_iter().unzip();
            assert_eq!(taken, [0, 1]);
            q.finish(&taken, batches, outcome.clone());
            assert!(!q.writing);
            let got = vec![q.collect(0), q.collect(1)];
            assert_eq!(got, want, "{outcome:?}");
            // Collected once; the batch not taken has no answer and leads the next transaction.
            assert_eq!((q.collect(0), q.collect(2)), (None, None));
            assert_eq!(tickets(&q.lead(30, |s| *s)), [2]);
        }
    }

    #[test]
    fn the_batches_a_writer_stopped_before_lead_the_next_transaction_in_order() {
        let mut q = queue(&[10, 20, 30, 40]);
        let (taken, batches): (Vec<Ticket>, Vec<usize>) = q.lead(60, |s| *s).into_iter().unzip();
        assert_eq!(taken, [0, 1, 2]);
        // Written: the first only.
        q.finish(&taken, batches, Ok(vec![1]));
        assert_eq!(q.collect(0), Some(Ok(1)));
        assert_eq!((q.collect(1), q.collect(2)), (None, None));
        // 1 and 2 are back before 3, with their batches.
        assert_eq!(q.lead(1000, |s| *s), [(1, 20), (2, 30), (3, 40)]);
    }

    /// Holds the queue as if a transaction were being written until `n` callers wait, then
    /// ends it as a transaction of no batches would.
    fn release_when_waiting(group: &Group<usize>, n: usize) {
        while lock(&group.queue).waiting.len() < n {
            std::thread::yield_now();
        }
        lock(&group.queue).finish(&[], Vec::new(), Ok(vec![]));
        group.ended.notify_all();
    }

    #[test]
    fn callers_waiting_together_are_written_in_one_transaction() {
        let group = &Group::new(1000, |s: &usize| *s);
        let written = Mutex::new(Vec::new());
        let write = |batches: &[usize]| {
            written.lock().unwrap().push(batches.to_vec());
            Ok(batches.iter().map(|b| b * 2).collect())
        };
        lock(&group.queue).writing = true;
        let answers = std::thread::scope(|s| {
            let callers: Vec<_> = (1..=3)
                .map(|n| s.spawn(move || group.submit(n, write).unwrap()))
                .collect();
            release_when_waiting(group, 3);
            callers
                .into_iter()
                .map(|c| c.join().unwrap())
                .collect::<Vec<_>>()
        });
        // Each caller its own count.
        assert_eq!(answers, [2, 4, 6]);
        let mut written = written.into_inner().unwrap();
        assert_eq!(written.len(), 1, "one transaction: {written:?}");
        written[0].sort();
        assert_eq!(written[0], [1, 2, 3]);
        assert!(lock(&group.queue).answers.is_empty());
    }

    #[test]
    fn a_leader_that_panics_answers_every_batch_it_took() {
        let group = &Group::new(1000, |s: &usize| *s);
        let write = |_: &[usize]| -> Result<Vec<usize>, StoreError> { panic!("writer bug") };
        lock(&group.queue).writing = true;
        let ends = std::thread::scope(|s| {
            let callers: Vec<_> = (1..=2)
                .map(|n| s.spawn(move || group.submit(n, write).map_err(|e| e.to_string())))
                .collect();
            release_when_waiting(group, 2);
            callers.into_iter().map(|c| c.join()).collect::<Vec<_>>()
        });
        // The leader unwound; the other caller was answered the failure, not left waiting.
        assert_eq!(ends.iter().filter(|e| e.is_err()).count(), 1);
        let answered: Vec<_> = ends.into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            answered,
            [Err(
                "storage: the transaction of this group panicked".to_owned()
            )]
        );
        // The next caller leads a transaction of its own.
        assert_eq!(group.submit(5, |b| Ok(vec![b.len()])).unwrap(), 1);
    }
}
