//! The text search's words counted on SQLite: which words of an event the console counts in the
//! rollup (`audit_counts` under [`rollup::WORD`]) exactly as FTS5 indexes them, written with each
//! stored batch and, for the events stored before, by migration 14's backfill; and the events
//! whose words it leaves to FTS5 (`audit_uncounted`), which a count reads from the index instead.
//! FTS5's vocabulary says how many events hold a word only by walking the word's whole list
//! (1.3 million entries, 60-130 ms, for a word in one event of eight at 10,000,000 events); the
//! rows say it per hour, type and effect.

use std::collections::{BTreeSet, HashMap};

use rusqlite::Connection;

use super::StoreError;
use super::rollup::{self, Tally};
use super::words::LONGEST;

/// Migration 14: the events whose words are not in the rollup, by hour (which retention and a
/// count's range read). The rows of the words of the events already stored follow ([`backfill`],
/// run by the migration).
pub const MIGRATION: &str = "CREATE TABLE audit_uncounted (
    seq  INTEGER PRIMARY KEY,
    hour INTEGER NOT NULL
);
CREATE INDEX audit_uncounted_by_hour ON audit_uncounted (hour);";

/// Forgets the uncounted events of the hours before `?1`, as retention deletes their events.
pub const EXPIRE: &str = "DELETE FROM audit_uncounted WHERE hour < ?1";

/// The words of lowercase ASCII letters alone that FTS5 indexes for `texts`, each once; `None`
/// when a text holds a character outside ASCII ([`ascii_words`]). Words longer than a search
/// looks up, [`LONGEST`], are left out: no count would read them.
pub fn counted_words(texts: &[Option<&str>]) -> Option<BTreeSet<String>> {
    Some(
        ascii_words(texts)?
            .filter(|w| w.len() <= LONGEST && w.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_ascii_lowercase)
            .collect(),
    )
}

/// Every word FTS5 indexes for `texts`, as written (not yet lowercased); `None` when a text holds
/// a character outside ASCII. FTS5's `unicode61` tokenizer splits ASCII text at every character
/// but the letters and digits and folds it by lowercasing alone, as the callers do; outside ASCII
/// it splits and folds by its own Unicode tables (`é` folded to `e` inside a word, a letter of a
/// script newer than its tables taken as a separator), which the console does not reproduce:
/// such an event's words are left to FTS5.
pub fn ascii_words<'a>(texts: &[Option<&'a str>]) -> Option<impl Iterator<Item = &'a str>> {
    if !texts.iter().flatten().all(|t| t.is_ascii()) {
        return None;
    }
    let texts: Vec<&'a str> = texts.iter().flatten().copied().collect();
    Some(
        texts
            .into_iter()
            .flat_map(|t| t.split(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|w| !w.is_empty()),
    )
}

/// What stored events add to the words' rows and to `audit_uncounted`, gathered, then written.
#[derive(Default)]
pub struct Counts {
    /// Per (word, hour, type, effect).
    rows: HashMap<(String, i64, String, String), Tally>,
    /// (seq, hour) of the events whose words are not counted.
    uncounted: Vec<(i64, i64)>,
}

impl Counts {
    /// One stored event: its `seq`, time, type, effect, `count` and searched texts.
    pub fn add(
        &mut self,
        seq: i64,
        time: &str,
        (kind, effect): (&str, &str),
        count: u64,
        texts: &[Option<&str>],
    ) -> Result<(), rollup::BadTime> {
        let hour = rollup::hour(time)?;
        match counted_words(texts) {
            None => self.uncounted.push((seq, hour)),
            Some(words) => {
                for word in words {
                    let tally = self
                        .rows
                        .entry((word, hour, kind.into(), effect.into()))
                        .or_default();
                    tally.events += 1;
                    tally.n += count;
                }
            }
        }
        Ok(())
    }

    /// How many rows and uncounted events are gathered.
    fn len(&self) -> usize {
        self.rows.len() + self.uncounted.len()
    }

    /// Adds what is gathered to the tables (inside the caller's transaction), and forgets it.
    pub fn write(&mut self, c: &Connection) -> Result<(), StoreError> {
        for ((word, hour, kind, effect), t) in self.rows.drain() {
            rollup::add_count(c, (rollup::WORD, &word, hour, &kind, &effect), &t)?;
        }
        let mut uncounted =
            c.prepare_cached("INSERT INTO audit_uncounted (seq, hour) VALUES (?1, ?2)")?;
        for (seq, hour) in self.uncounted.drain(..) {
            uncounted.execute([seq, hour])?;
        }
        Ok(())
    }
}

/// How many rows [`backfill`] gathers before writing them (about 100 bytes each).
const GATHERED: usize = 1_000_000;

/// The words' rows and the uncounted events of every event stored (migration 14, inside its
/// transaction): one pass over the events in `seq` order, the rows gathered in memory and
/// written every [`GATHERED`].
pub fn backfill(c: &Connection) -> Result<(), StoreError> {
    let mut counts = Counts::default();
    let mut select = c.prepare(
        "SELECT seq, time, type, effect, count, message, cmdline, process, domain, ip, url \
         FROM audits ORDER BY seq",
    )?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let text = |i| row.get_ref(i).and_then(|v| Ok(v.as_str_or_null()?));
        let given = |i| {
            text(i)?.ok_or(rusqlite::Error::InvalidColumnType(
                i,
                "text".into(),
                rusqlite::types::Type::Null,
            ))
        };
        let texts = [text(5)?, text(6)?, text(7)?, text(8)?, text(9)?, text(10)?];
        let count: i64 = row.get(4)?;
        counts.add(
            row.get(0)?,
            given(1)?,
            (given(2)?, given(3)?),
            u64::try_from(count).unwrap_or(0),
            &texts,
        )?;
        if counts.len() >= GATHERED {
            counts.write(c)?;
        }
    }
    counts.write(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audits::tests::{event, store};
    use crate::store::{Sqlite, Store};

    /// A word's row: value, hour, type, effect, events, sum of `count`.
    type Row = (String, i64, String, String, i64, i64);

    /// The words' rows and the uncounted events, in order.
    fn counted(c: &Connection) -> (Vec<Row>, Vec<(i64, i64)>) {
        let mut rows = c
            .prepare(
                "SELECT value, hour, type, effect, events, n FROM audit_counts \
                 WHERE field = 'word' ORDER BY 1, 2, 3, 4",
            )
            .unwrap();
        let rows = rows
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let mut uncounted = c
            .prepare("SELECT seq, hour FROM audit_uncounted ORDER BY seq")
            .unwrap();
        let uncounted = uncounted
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (rows, uncounted)
    }

    /// Migration 14 on a database that holds events (a console before it) makes the rows and the
    /// uncounted events that ingestion made of the same events, duplicates skipped; retention
    /// removes both with their hours.
    #[test]
    fn the_backfill_counts_the_words_as_ingestion_does() {
        let messages = ["curl ran", "Ran WGET", "café ran", "x1 ran ran"];
        let events: Vec<_> = (0..60u32)
            .map(|n| {
                let time = format!("2026-11-29T{:02}:{:02}:00.000000Z", 9 + n / 20, n % 60);
                let mut e = event(&format!("e{n}"), n, &time);
                e.message = messages[n as usize % messages.len()].into();
                e
            })
            .collect();
        let (dir, s) = store(&events);
        // Sent again: stored once, counted once.
        s.add_audits(&events[..10], "defender", "t").unwrap();
        let ingested = counted(&s.reader_for_tests());
        assert_eq!(ingested.1.len(), 15, "{:?}", ingested.1);
        let ran: i64 = ingested
            .0
            .iter()
            .filter(|r| r.0 == "ran")
            .map(|r| r.4)
            .sum();
        assert_eq!(ran, 45);
        drop(s);
        let path = dir.path().join("db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "DELETE FROM audit_counts WHERE field = 'word'; DROP TABLE audit_uncounted; \
                 DROP TABLE audit_chunks; DROP TABLE audit_bits; DROP TABLE audit_sealing; \
                 PRAGMA user_version = 13;",
            )
            .unwrap();
        let s = Sqlite::open(&path).unwrap();
        assert_eq!(counted(&s.reader_for_tests()), ingested);
        // Retention: the hours before 10:00 go, rows and uncounted events alike.
        s.expire("2026-11-29T10:30:00.000000Z", 100).unwrap();
        let (rows, uncounted) = counted(&s.reader_for_tests());
        let hour = rollup::hour("2026-11-29T10:00:00Z").unwrap();
        assert!(rows.iter().all(|r| r.1 >= hour) && !rows.is_empty());
        assert!(uncounted.iter().all(|u| u.1 >= hour) && uncounted.len() == 10);
    }

    /// FTS5's splitting and folding of ASCII, and no words at all for a text outside it.
    #[test]
    fn the_words_of_ascii_text_are_its_runs_of_letters_lowercased() {
        let set = |w: &[&str]| Some(w.iter().map(|w| w.to_string()).collect::<BTreeSet<_>>());
        type Case<'a> = (&'a [Option<&'a str>], Option<BTreeSet<String>>);
        let cases: [Case; 8] = [
            (
                &[Some("curl -s http://Example.COM/x.sh")],
                set(&["curl", "example", "com", "http", "s", "sh", "x"]),
            ),
            // Digits join a word, which is then not counted; `_` separates.
            (&[Some("a1b c_d 443 e")], set(&["c", "d", "e"])),
            // Each word once, over every text.
            (&[Some("ran ran"), None, Some("RAN Ran")], set(&["ran"])),
            (&[Some("")], set(&[])),
            // A character outside ASCII anywhere: none counted.
            (&[Some("curl"), Some("café")], None),
            (&[Some("curl\u{a0}x")], None),
            // Every ASCII punctuation, space and control character separates.
            (
                &[Some(
                    "a!b\"c#d$e%f&g'h(i)j*k+l,m-n.o/p:q;r<s=t>u?v@w[x\\y]z^a`b{c|d}e~f\u{7f}g\u{1}h\th",
                )],
                set(&[
                    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p",
                    "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
                ]),
            ),
            (&[Some(&"x".repeat(LONGEST + 1)), Some("y")], set(&["y"])),
        ];
        for (texts, want) in cases {
            assert_eq!(counted_words(texts), want, "{texts:?}");
        }
    }
}
