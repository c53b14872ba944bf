//! The writing connection, taken in turns: an ordinary write (a policy, a person, a session, a
//! token's use, a heartbeat) goes before the next bulk write (a group of audit batches, a batch of
//! retention), so that a policy saved during a flood of audits waits for the one transaction
//! being written at most, never for the queue of batches behind it.
//!
//! Ordinary writes are short and few (each is one person's or one defender's request), so bulk
//! writes still get their turns between them.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::Connection;

/// Which writes go first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Ordinary,
    Bulk,
}

/// Who holds the connection and who waits for it.
#[derive(Debug, Default)]
struct Turns {
    busy: bool,
    /// Ordinary writes waiting for their turn.
    ordinary: usize,
    /// Every write asking for the connection and taking it, in order, for the tests to read.
    #[cfg(test)]
    steps: Vec<Step>,
}

/// A write asking for the connection, or taking it.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Asked(Priority),
    Took(Priority),
}

impl Turns {
    /// Whether a write of `priority` may take the connection now.
    fn may_go(&self, priority: Priority) -> bool {
        !self.busy && (priority == Priority::Ordinary || self.ordinary == 0)
    }
}

pub struct Writer {
    connection: Mutex<Connection>,
    turns: Mutex<Turns>,
    free: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it leaves it usable: SQLite rolls back what was open, and `Turns` is
    // consistent between statements.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Writer {
    pub fn new(connection: Connection) -> Writer {
        Writer {
            connection: Mutex::new(connection),
            turns: Mutex::new(Turns::default()),
            free: Condvar::new(),
        }
    }

    /// The connection, once every write before this one's turn ended.
    pub fn take(&self, priority: Priority) -> Turn<'_> {
        let mut turns = lock(&self.turns);
        #[cfg(test)]
        turns.steps.push(Step::Asked(priority));
        if priority == Priority::Ordinary {
            turns.ordinary += 1;
        }
        while !turns.may_go(priority) {
            turns = self
                .free
                .wait(turns)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if priority == Priority::Ordinary {
            turns.ordinary -= 1;
        }
        turns.busy = true;
        #[cfg(test)]
        turns.steps.push(Step::Took(priority));
        drop(turns);
        Turn {
            writer: self,
            connection: lock(&self.connection),
        }
    }

    /// An ordinary write's turn.
    pub fn ordinary(&self) -> Turn<'_> {
        self.take(Priority::Ordinary)
    }

    /// The writes that asked for the connection and took it so far, in order.
    #[cfg(test)]
    pub fn steps(&self) -> Vec<Step> {
        lock(&self.turns).steps.clone()
    }
}

/// The connection, held for one turn.
pub struct Turn<'a> {
    writer: &'a Writer,
    connection: MutexGuard<'a, Connection>,
}

impl Deref for Turn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl DerefMut for Turn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        lock(&self.writer.turns).busy = false;
        self.writer.free.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::{Bulk, Ordinary};

    #[test]
    fn ordinary_writes_go_before_bulk_ones() {
        let cases = [
            // (busy, ordinary waiting, priority) -> may go
            (false, 0, Ordinary, true),
            (false, 0, Bulk, true),
            (false, 1, Ordinary, true),
            (false, 1, Bulk, false),
            (true, 0, Ordinary, false),
            (true, 0, Bulk, false),
            (true, 2, Ordinary, false),
        ];
        for (busy, ordinary, priority, want) in cases {
            let turns = Turns {
                busy,
                ordinary,
                ..Turns::default()
            };
            assert_eq!(turns.may_go(priority), want, "{turns:?} {priority:?}");
        }
    }

    #[test]
    fn an_ordinary_write_waiting_takes_the_next_turn() {
        let writer = Writer::new(Connection::open_in_memory().unwrap());
        let order = Mutex::new(Vec::new());
        let held = writer.take(Bulk);
        std::thread::scope(|s| {
            let bulk = s.spawn(|| {
                let _turn = writer.take(Bulk);
                order.lock().unwrap().push(Bulk);
            });
            let ordinary = s.spawn(|| {
                let _turn = writer.ordinary();
                order.lock().unwrap().push(Ordinary);
            });
            // Released once the ordinary write waits: whether the bulk one waits already or
            // comes later, the ordinary one goes first.
            while lock(&writer.turns).ordinary == 0 {
                std::thread::yield_now();
            }
            drop(held);
            bulk.join().unwrap();
            ordinary.join().unwrap();
        });
        assert_eq!(order.into_inner().unwrap(), [Ordinary, Bulk]);
    }
}
