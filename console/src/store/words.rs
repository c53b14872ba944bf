//! The text search of one word on SQLite, through FTS5's vocabulary (`fts5vocab`, the temporary
//! tables of [`VOCABULARY`]): which stored words a word's prefix names, and how many events hold
//! a word. FTS5 answers a prefix by merging the lists of every word so starting, positions
//! included, before its first row; when the prefix names one stored word, the search is that
//! word's own list, read from its end and counted without reading an event. With other
//! conditions, the exact count reads the smaller side: the word's events by `seq`, or the
//! conditions' index range with the word's list between the least and greatest `seq` found.
//! PostgreSQL has no vocabulary: a word with other conditions is counted there by
//! [`count_on_postgres`], the word's and the conditions' sizes read from the rollup.

use super::StoreError;
use super::lists::{self, Expanded, Matches};
use super::query::{AuditField, AuditQuery, Pattern, Search, Term};
use super::rollup::{self, Ask};
use super::sql::{self, Dialect, Reader, Value};

/// FTS5's vocabulary of the text search, created on the connection that reads: `audits_words`,
/// per stored word how many events hold it (`doc`, counted from the word's list as it is read,
/// without its positions), and `audits_word_instances`, a row per place a word is found, read for
/// its first row only (which words are stored, without counting any). Temporary tables, not a
/// migration: they store nothing (they read `audits_text`'s own index), so a migration would
/// only name them, in every database file, and the tools that copy or fill the schema would have
/// two more virtual tables to know.
pub const VOCABULARY: &str = "
CREATE VIRTUAL TABLE temp.audits_words USING fts5vocab(main, audits_text, 'row');
CREATE VIRTUAL TABLE temp.audits_word_instances USING fts5vocab(main, audits_text, 'instance');
";

/// The first stored word from `?1` on, up to `?2` (a prefix followed by the byte `FF`, which no
/// UTF-8 text holds: every word that starts with the prefix sorts before it, every later one
/// after). Its first place only is read: no word's list is counted.
const FIRST_WORD: &str = "SELECT term FROM temp.audits_word_instances \
                          WHERE term >= ?1 AND term <= CAST(?2 AS TEXT) LIMIT 1";

/// How many events hold the word `?1` (none: no row).
const WORD_EVENTS: &str = "SELECT doc FROM temp.audits_words WHERE term = ?1";

/// The `seq`s from `?2` to `?3` of the events whose words hold `?1`: FTS5 seeks to `?2` in the
/// word's list and stops past `?3`.
const BETWEEN: &str = sql::SQLITE_SEARCH_BETWEEN;

/// The longest word looked up in the vocabulary, in bytes: far below the length past which FTS5
/// cuts a word (32,768 bytes), so that the word looked up is the word it indexed.
pub(super) const LONGEST: usize = 1_024;

/// The word of a search that the vocabulary answers for, as FTS5 indexes it, and whether it is a
/// prefix: a single term of a single word of ASCII letters and digits, which FTS5's tokenizer
/// (unicode61) lowercases and changes in no other way. Phrases and several terms are left to
/// FTS5, and so is a term with any other character: its folding of accents and other scripts is
/// its own, and a word folded otherwise here would be looked up as another word.
pub(super) fn single_word(search: &Search) -> Option<(String, bool)> {
    let [term] = search.terms.as_slice() else {
        return None;
    };
    if !term.text.is_ascii() {
        return None;
    }
    let mut words = term
        .text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty());
    let word = words.next()?;
    if words.next().is_some() || word.len() > LONGEST {
        return None;
    }
    Some((word.to_ascii_lowercase(), term.prefix))
}

/// The whole word a prefix stands for, from the first two stored words from the prefix on that
/// start with it: none (nothing stored starts so, so the prefix as a whole word finds what it
/// finds, nothing), one (that word), or two (`None`: the prefix names several, FTS5 merges them).
/// A first word not starting with the prefix is a misread bound: `None`, as for several.
fn named(prefix: &str, first: Option<String>, second: Option<String>) -> Option<String> {
    match (first, second) {
        (None, _) => Some(prefix.to_owned()),
        (Some(word), None) if word.starts_with(prefix) => Some(word),
        _ => None,
    }
}

/// The first stored word from `from` on that starts with `prefix`, if any.
fn first_word(r: &mut dyn Reader, from: &str, prefix: &str) -> Result<Option<String>, StoreError> {
    let mut bound = prefix.as_bytes().to_vec();
    bound.push(0xff);
    let mut found = None;
    r.rows(
        FIRST_WORD,
        &[Value::Text(from.into()), Value::Blob(bound)],
        &mut |row| {
            found = Some(sql::text(row, 0)?);
            Ok(false)
        },
    )?;
    Ok(found)
}

/// `q` with its text search made the one stored word it names, whole, and that word: a search of
/// [`single_word`] whose prefix names exactly one stored word (or none), or that is a whole word.
/// `None` on PostgreSQL, for any other search, or a prefix of several stored words.
pub(super) fn one_word(
    r: &mut dyn Reader,
    q: &AuditQuery,
) -> Result<Option<(AuditQuery, String)>, StoreError> {
    let Some(search) = &q.search else {
        return Ok(None);
    };
    let Some((word, prefix)) = single_word(search).filter(|_| r.dialect() == Dialect::Sqlite)
    else {
        return Ok(None);
    };
    let whole = if prefix {
        let first = first_word(r, &word, &word)?;
        let second = match &first {
            // The smallest text after the first word: that word and a NUL.
            Some(first) => first_word(r, &format!("{first}\0"), &word)?,
            None => None,
        };
        named(&word, first, second)
    } else {
        Some(word)
    };
    Ok(whole.map(|word| {
        let search = Search {
            terms: vec![Term {
                text: word.clone(),
                prefix: false,
            }],
        };
        let q = AuditQuery {
            search: Some(search),
            ..q.clone()
        };
        (q, word)
    }))
}

/// At most this many events of the word are counted by reading them by `seq` (about 6 ms of
/// CPU), whatever the other conditions hold.
pub const MOST_BY_SEQ: u64 = 2_000;

/// What reading an event by `seq` and checking the conditions on it costs, in entries of the
/// conditions' index read in order: 2.9 µs of CPU against 0.11 µs, measured with the console's
/// SQLite on the benchmark's 1,000,000 events, the pages cached (an event not in the cache costs
/// a random read, an index range far fewer).
pub const ROW_COST: u64 = 25;

/// How the count of a word and other conditions is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Side {
    /// The word's events, read by `seq` (from its list) and checked.
    Word,
    /// The conditions' index range into a set of `seq`s, then the word's list between the least
    /// and greatest of them, each looked up in the set.
    Conditions,
    /// The plain statement (SQLite plans it), the word read from its own list.
    Statement,
}

/// Which side the count of `events` events of a word and other conditions reads, given how many
/// events the conditions select when the rollup counts them: the word's when it is small, or
/// cheaper to read by `seq` than the conditions' index range; the conditions' otherwise; the
/// plain statement when the conditions' size is unknown and the word is not small.
pub(super) fn side(events: u64, conditions: Option<u64>) -> Side {
    match conditions {
        _ if events <= MOST_BY_SEQ => Side::Word,
        Some(c) if events.saturating_mul(ROW_COST) <= c => Side::Word,
        Some(_) => Side::Conditions,
        None => Side::Statement,
    }
}

/// How many events match `q`, when its text search is one stored word (see [`one_word`]): that
/// word's number of events from the vocabulary, with no other condition; otherwise read from
/// the smaller side ([`side`]). `None` when the vocabulary cannot answer (the list's plain count
/// then does).
pub(super) fn count(r: &mut dyn Reader, q: &AuditQuery) -> Result<Option<u64>, StoreError> {
    let Some((q, word)) = one_word(r, q)? else {
        return Ok(None);
    };
    if let Some(n) = by_rows(r, &q, &word)? {
        return Ok(Some(n));
    }
    let mut events = 0;
    r.rows(WORD_EVENTS, &[Value::Text(word)], &mut |row| {
        events = sql::number(row, 0)?;
        Ok(false)
    })?;
    let others = AuditQuery {
        search: None,
        ..q.clone()
    };
    if events == 0 || (others.fields.is_empty() && others.since.is_none() && others.until.is_none())
    {
        return Ok(Some(events));
    }
    // The conditions' size, only to choose: the rollup may briefly count fewer events than are
    // stored (retention deletes an hour's counts before its events), never changing the answer.
    let conditions = match rollup::plan(&others, Ask::Count) {
        Some(route) if events > MOST_BY_SEQ => Some(rollup::count(r, &others, &route, None)?),
        _ => None,
    };
    let expanded = lists::expand(r, &q)?;
    let n = match side(events, conditions) {
        Side::Word => by_word(r, &q, &expanded)?,
        Side::Conditions => by_conditions(r, &q, &expanded)?,
        Side::Statement => lists::counted(r, &q, &expanded)?,
    };
    Ok(Some(n))
}

/// At most this many events of the other conditions (as the rollup counts them) are read on
/// PostgreSQL, each checked for the word, when the word holds more: PostgreSQL's planner knows a
/// value's share only from its sampled statistics (a rare container's 20 events estimated at
/// 23,000), and intersects the word's GIN list with the value's index, and reading the list of a
/// word in one event of eight takes 150 ms at 10,000,000 events, where 10,000 rows take ~20 ms.
pub const MOST_CHECKED: u64 = 10_000;

/// How many events match `q` on PostgreSQL when its text search is one word the words' rows
/// count ([`rollup::plan_words`]) and it has other conditions the rollup counts
/// ([`rollup::plan`]): both sizes read from the rollup, then the conditions' events each checked
/// for the word when they are few and fewer than the word's, else the plain count of the word
/// named whole (a prefix that names one stored word is that word: its GIN list alone, not every
/// word so starting). `None`: another search or condition, or SQLite.
pub(super) fn count_on_postgres(
    r: &mut dyn Reader,
    q: &AuditQuery,
) -> Result<Option<u64>, StoreError> {
    let kinds = |f: &AuditField| matches!(f, AuditField::Type | AuditField::Effect);
    if r.dialect() != Dialect::Postgres || q.fields.iter().all(|(f, _)| kinds(f)) {
        return Ok(None);
    }
    let word_only = AuditQuery {
        fields: q.fields.iter().filter(|(f, _)| kinds(f)).cloned().collect(),
        ..q.clone()
    };
    let others = AuditQuery {
        search: None,
        ..q.clone()
    };
    // The rollup's plan first: it reads nothing, where the word's takes up to three seeks.
    let Some(others_route) = rollup::plan(&others, Ask::Count) else {
        return Ok(None);
    };
    let Some(words_route) = rollup::plan_words(r, &word_only)? else {
        return Ok(None);
    };
    let Some(Pattern::Exact(word)) = words_route.value.clone() else {
        return Ok(None);
    };
    // Sizes only to choose: the rollup may briefly count fewer events than are stored (retention
    // deletes an hour's counts before its events), never changing the answer.
    let holding = rollup::count(r, &word_only, &words_route, None)?;
    let selected = rollup::count(r, &others, &others_route, None)?;
    let search = Search {
        terms: vec![Term {
            text: word,
            prefix: false,
        }],
    };
    let whole = AuditQuery {
        search: Some(search.clone()),
        ..q.clone()
    };
    let expanded = lists::expand(r, &whole)?;
    if selected > MOST_CHECKED || selected >= holding {
        return lists::counted(r, &whole, &expanded).map(Some);
    }
    let mut values = Vec::new();
    let conditions = super::audits::conditions(r.dialect(), &others, &expanded, &mut values);
    let words = r.dialect().search(&search, &mut values);
    // OFFSET 0 keeps the planner from merging the subquery (and from pushing the word's test
    // into it): the conditions' rows are read first, by their index.
    let sql = format!(
        "SELECT count(*) FROM (SELECT words FROM audits WHERE {conditions} OFFSET 0) AS audits \
         WHERE {words}"
    );
    let mut n = 0;
    r.rows(&sql, &values, &mut |row| {
        n = sql::number(row, 0)?;
        Ok(false)
    })?;
    Ok(Some(n))
}

/// The events of `q`'s word (every `seq` of its list) with the other conditions, counted by
/// reading them by `seq`.
fn by_word(r: &mut dyn Reader, q: &AuditQuery, expanded: &Expanded) -> Result<u64, StoreError> {
    let Some((sql, words)) = q.search.as_ref().and_then(|s| r.dialect().search_seqs(s)) else {
        return lists::counted(r, q, expanded);
    };
    let seqs = sql::first_column(r, sql, &[words], sql::int)?;
    let mut n = 0;
    lists::by_seqs(r, q, expanded, &seqs, "count(*)", &mut |row| {
        n += sql::number::<u64>(row, 0)?;
        Ok(true)
    })?;
    Ok(n)
}

/// The events of `q`'s other conditions (their index range), counted among the `seq`s of `q`'s
/// word ([`among`]).
fn by_conditions(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
) -> Result<u64, StoreError> {
    let Some((_, words)) = q.search.as_ref().and_then(|s| r.dialect().search_seqs(s)) else {
        return lists::counted(r, q, expanded);
    };
    let (sql, values) = lists::others_select(r, q, expanded);
    let seqs = sql::first_column(r, &sql, &values, sql::int)?;
    among(r, &words, seqs)
}

/// Neighbouring `seq`s further apart than this are read as two runs of the word's list ([`runs`]):
/// a statement seeks into the list in about as long as reading the 500 entries such a gap holds
/// of a word in one event of eight (~30 µs); the list of a rarer word costs less to cross, but
/// the seek no more.
const GAP: i64 = 4_096;

/// At most this many runs are read (the widest gaps split): a few milliseconds of seeks.
const MOST_RUNS: usize = 256;

/// The ranges `(least, greatest)` of sorted `seqs` that [`among`] reads: split where neighbours
/// are more than `gap` apart, at the `most - 1` widest such gaps at most. The events a query
/// selects lie in runs of arrival (a day's events arrived over a day, and again in a batch
/// delivered late); the word's list between the first and the last of them all would cross
/// everything that arrived in between.
fn runs(seqs: &[i64], gap: i64, most: usize) -> Vec<(i64, i64)> {
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Vec::new();
    };
    // (width, index of the gap's left end)
    let mut cuts: Vec<(i64, usize)> = seqs
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] - w[0] > gap)
        .map(|(i, w)| (w[1] - w[0], i))
        .collect();
    let kept = most.saturating_sub(1);
    if cuts.len() > kept {
        if kept > 0 {
            cuts.select_nth_unstable_by(kept - 1, |a, b| b.cmp(a));
        }
        cuts.truncate(kept);
    }
    cuts.sort_unstable_by_key(|&(_, i)| i);
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = first;
    for (_, i) in cuts {
        out.push((start, seqs[i]));
        start = seqs[i + 1];
    }
    out.push((start, last));
    out
}

/// How many of `seqs` (distinct, any order) hold the word of `words` ([`holding`]).
fn among(r: &mut dyn Reader, words: &Value, seqs: Vec<i64>) -> Result<u64, StoreError> {
    let mut n = 0;
    holding(r, words, seqs, &mut |_| n += 1)?;
    Ok(n)
}

/// Calls `found` with each of `seqs` (distinct, any order) whose words hold the search `words`
/// (its full-text query), in `seq` order: the search's lists read between the least and greatest
/// `seq` of each of their [`runs`], each entry looked up in the set of them.
pub(super) fn holding(
    r: &mut dyn Reader,
    words: &Value,
    mut seqs: Vec<i64>,
    found: &mut dyn FnMut(i64),
) -> Result<(), StoreError> {
    seqs.sort_unstable();
    let Some(&top) = seqs.last() else {
        return Ok(());
    };
    let mut selected = Matches::below(top);
    for &seq in &seqs {
        selected.insert(seq);
    }
    for (low, high) in runs(&seqs, GAP, MOST_RUNS) {
        r.rows(
            BETWEEN,
            &[words.clone(), Value::Integer(low), Value::Integer(high)],
            &mut |row| {
                let seq = sql::int(row, 0)?;
                if selected.contains(seq) {
                    found(seq);
                }
                Ok(true)
            },
        )?;
    }
    Ok(())
}

/// At most this many uncounted events ([`word_rows`](super::word_rows)) in a count's hours are
/// read by the rows' plan ([`by_rows`]), each by `seq` (about 3 µs: 30 ms in all); more, and the
/// count is read as if there were no rows.
pub const MOST_UNCOUNTED: usize = 10_000;

/// The count of `q`, whose search is the whole word `word`, from the word's rows: the whole hours
/// of its range from `audit_counts` ([`rollup::word_route`]), plus the events of those hours whose
/// words are not counted (`audit_uncounted`, checked against the word's list), plus the events
/// of the partial hours at its ends (at most an hour each, [`by_conditions`]). `None` when the
/// rows cannot answer: a word with a digit, a condition on another field, or more than
/// [`MOST_UNCOUNTED`] uncounted events in the hours, or a word longer than [`LONGEST`].
fn by_rows(r: &mut dyn Reader, q: &AuditQuery, word: &str) -> Result<Option<u64>, StoreError> {
    // A prefix may name a stored word longer than any counted (`word_rows` leaves them out).
    if word.len() > LONGEST {
        return Ok(None);
    }
    let Some(route) = rollup::word_route(q, word) else {
        return Ok(None);
    };
    let Some((_, words)) = q.search.as_ref().and_then(|s| r.dialect().search_seqs(s)) else {
        return Ok(None);
    };
    let (from, to, spans) = match route.time {
        rollup::Time::Hours { from, to, spans } => (from, to, spans),
        rollup::Time::All => (None, None, Vec::new()),
    };
    let Some(uncounted) = uncounted(r, q, from, to)? else {
        return Ok(None);
    };
    let mut n = among(r, &words, uncounted)?;
    let whole = rollup::Route {
        time: rollup::Time::Hours {
            from,
            to,
            spans: Vec::new(),
        },
        ..route
    };
    n += rollup::count(r, q, &whole, None)?;
    if !spans.is_empty() {
        let expanded = lists::expand(r, q)?;
        for (since, until) in spans {
            let part = AuditQuery {
                since: Some(since),
                until: Some(until),
                ..q.clone()
            };
            n += by_conditions(r, &part, &expanded)?;
        }
    }
    Ok(Some(n))
}

/// The `seq`s of the uncounted events in the hours `from..to` (each end open when `None`) of
/// `q`'s type and effect ([`uncounted_select`]), or `None` past [`MOST_UNCOUNTED`].
fn uncounted(
    r: &mut dyn Reader,
    q: &AuditQuery,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Option<Vec<i64>>, StoreError> {
    let (sql, values) = uncounted_select(r.dialect(), q, from, to);
    let seqs = sql::first_column(r, &sql, &values, sql::int)?;
    Ok((seqs.len() <= MOST_UNCOUNTED).then_some(seqs))
}

/// The statement of [`uncounted`], and its parameters: the uncounted events read by hour first,
/// each event then by `seq` (`CROSS JOIN` keeps SQLite from walking the type's index instead),
/// one more than [`MOST_UNCOUNTED`] at most.
fn uncounted_select(
    dialect: Dialect,
    q: &AuditQuery,
    from: Option<i64>,
    to: Option<i64>,
) -> (String, Vec<Value>) {
    let kinds = AuditQuery {
        search: None,
        since: None,
        until: None,
        ..q.clone()
    };
    let mut values = Vec::new();
    let mut clauses = vec![super::audits::conditions(dialect, &kinds, &[], &mut values)];
    for (bound, op) in [(from, ">="), (to, "<")] {
        if let Some(hour) = bound {
            values.push(Value::Integer(hour));
            clauses.push(format!("u.hour {op} ?{}", values.len()));
        }
    }
    let sql = format!(
        "SELECT u.seq FROM audit_uncounted AS u CROSS JOIN audits ON audits.seq = u.seq \
         WHERE {} LIMIT {}",
        clauses.join(" AND "),
        MOST_UNCOUNTED + 1
    );
    (sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::audits::tests::{all, event, explain, store};
    use crate::store::audits::{audits, conditions, page};
    use crate::store::query::{AuditField, Pattern};
    use crate::store::sql::Recorded;
    use crate::store::sqlite::Snapshot;

    /// Events whose messages hold a word alone (`wget`), one word and a longer one (`curl`,
    /// `curls`; `shadow`, `shadowy`), a word written with an accent, in capitals and without
    /// (`Été`, `ETE`, `ete`), and a word in most events (`ran`, more than [`MOST_BY_SEQ`]); of
    /// every type, over three hours, some deleted by retention (FTS5 then keeps their deletion
    /// until it merges its segments).
    fn words_store() -> (tempfile::TempDir, crate::store::Sqlite) {
        let messages = [
            "curl fetched, ran",
            "CURLS listed, ran",
            "Été shadow ran",
            "ETE x ran",
            "wget /etc/shadowy",
            "ete curl ran",
            "cat /etc/shadow ran",
        ];
        let events: Vec<_> = (0..4_200u32)
            .map(|n| {
                let (hour, minute) = (9 + n / 1_400, n % 1_400 / 24);
                let time = format!("2026-11-29T{hour:02}:{minute:02}:00.000000Z");
                let mut e = event(&format!("e{n}"), n, &time);
                e.message = messages[n as usize % messages.len()].into();
                (e.cmdline, e.domain, e.url, e.ip) = (None, None, None, None);
                e.process = "/bin/sh".into();
                e.container = format!("c{}", n % 4);
                e
            })
            .collect();
        let (dir, s) = store(&events);
        let old: Vec<_> = (0..40u32)
            .map(|n| {
                let mut e = event(&format!("old{n}"), n, "2026-11-01T00:00:00.000000Z");
                e.message = ["curl old", "curls old", "wgetold"][n as usize % 3].into();
                e
            })
            .collect();
        s.add_audits(&old, "defender", "t").unwrap();
        let cutoff = "2026-11-15T00:00:00.000000Z";
        assert_eq!(s.expire(cutoff, 7).unwrap().audits, 40);
        (dir, s)
    }

    /// The side a count read, from its statements.
    fn side_read(statements: &[(String, Vec<Value>)]) -> Option<Side> {
        let read = |start: &str| statements.iter().any(|(sql, _)| sql.starts_with(start));
        if read(BETWEEN) {
            Some(Side::Conditions)
        } else if read("SELECT count(*) FROM audits NOT INDEXED WHERE seq IN (") {
            Some(Side::Word)
        } else if statements.iter().any(|(sql, _)| {
            sql.starts_with("SELECT count(*) FROM audits WHERE") && sql.contains("MATCH")
        }) {
            Some(Side::Statement)
        } else {
            None
        }
    }

    /// A search whose prefix names one stored word is read as that word and counted from the
    /// vocabulary, or from the side [`side`] picks (each side taken here), always as the plain
    /// `MATCH` of the search counts, and never through a prefix query; a prefix of two words
    /// (`curl`: `curls`; `shadow`: `shadowy`), a phrase, two terms or a word with an accent is
    /// left to FTS5. Pages are the plain statement's.
    #[test]
    fn one_stored_word_is_read_from_its_own_list_and_counted_exactly() {
        let (_dir, s) = words_store();
        let others = [
            all(),
            all().with(AuditField::Type, Pattern::Exact("process".into())),
            AuditQuery {
                since: Some("2026-11-29T10:00:00.000000Z".into()),
                ..all()
            },
            AuditQuery {
                until: Some("2026-11-29T10:30:00.000000Z".into()),
                ..all().with(AuditField::Container, Pattern::parse("c[12]").unwrap())
            },
            // No rollup: the conditions' size is unknown.
            all().with(AuditField::Pid, Pattern::parse("1*").unwrap()),
            all().with(AuditField::Container, Pattern::Exact("none".into())),
        ];
        let cases = [
            ("curl", None),
            ("curls", Some("curls")),
            ("CURLS", Some("curls")),
            ("Curl*s", None), // two words: `curl` then `s`
            (r#""curl""#, Some("curl")),
            ("ete", Some("ete")), // `Été`, `ETE` and `ete` alike
            ("ETE", Some("ete")),
            ("Été", None),
            ("shadow", None),
            ("shadowy", Some("shadowy")),
            ("wge", Some("wget")), // the deleted events' `wgetold` no longer stored
            ("ra", Some("ran")),
            ("zzz", Some("zzz")), // nothing stored: the word itself, found nowhere
            ("/etc/shadow", None),
            ("fetched listed", None),
        ];
        let c = s.reader_for_tests();
        let mut read = Snapshot::of(&c).unwrap();
        let snapshot = &mut read;
        let mut sides = std::collections::HashSet::new();
        let mut through_store = Vec::new();
        for (text, want) in cases {
            for other in &others {
                let q = AuditQuery {
                    search: Some(Search::parse(text).unwrap()),
                    ..other.clone()
                };
                let expanded = lists::expand(snapshot, &q).unwrap();
                let plain = lists::counted(snapshot, &q, &expanded).unwrap();
                let r = &mut Recorded {
                    inner: snapshot,
                    statements: Vec::new(),
                };
                assert_eq!(lists::count(r, &q).unwrap(), plain, "{q:?}");
                let one = one_word(r, &q).unwrap();
                assert_eq!(one.as_ref().map(|(_, w)| w.as_str()), want, "{q:?}");
                let Some((narrowed, _)) = &one else {
                    continue;
                };
                // No prefix query: every full-text query a whole word.
                let prefixed = |v: &Value| matches!(v, Value::Text(t) if t.ends_with(" *"));
                assert!(
                    !r.statements.iter().any(|(_, v)| v.iter().any(prefixed)),
                    "{:?}",
                    r.statements
                );
                sides.insert(side_read(&r.statements));
                let expanded = lists::expand(r, narrowed).unwrap();
                assert_eq!(by_word(r, narrowed, &expanded).unwrap(), plain, "{q:?}");
                assert_eq!(by_conditions(r, narrowed, &expanded).unwrap(), plain);
                assert_eq!(lists::counted(r, narrowed, &expanded).unwrap(), plain);
                through_store.push((q.clone(), plain));
                for (limit, offset) in [(10, 0), (7, 40), (100, 0)] {
                    let page_q = AuditQuery {
                        limit,
                        offset,
                        ..q.clone()
                    };
                    let mut values = Vec::new();
                    let sql = format!(
                        "SELECT id FROM audits WHERE {} ORDER BY time DESC, seq DESC {}",
                        conditions(r.dialect(), &page_q, &[], &mut values),
                        page(&page_q, &mut values)
                    );
                    let mut want = Vec::new();
                    r.rows(&sql, &values, &mut |row| {
                        want.push(sql::text(row, 0)?);
                        Ok(true)
                    })
                    .unwrap();
                    let got: Vec<String> = audits(r, &page_q, crate::store::bitmaps::SHIFT)
                        .unwrap()
                        .into_iter()
                        .map(|e| e.event.id)
                        .collect();
                    assert_eq!(got, want, "{page_q:?}");
                }
            }
        }
        let every = [
            None,
            Some(Side::Word),
            Some(Side::Conditions),
            Some(Side::Statement),
        ];
        assert_eq!(sides, every.into(), "{sides:?}");
        // The store's own count (its reading connection, released first) is the same.
        drop(read);
        drop(c);
        for (q, plain) in through_store {
            assert_eq!(s.count_audits(&q).unwrap(), plain, "{q:?}");
        }
    }

    /// The vocabulary is read by the word (`term =`) or from a prefix up to its bound (`term >=`
    /// and `term <=`), never every word; the conditions' side reads one index range, and the
    /// word's list between two `seq`s.
    #[test]
    fn the_vocabulary_and_the_sides_read_ranges() {
        let (_dir, s) = words_store();
        let c = s.reader_for_tests();
        let text = |t: &str| Value::Text(t.into());
        let p = explain(&c, (WORD_EVENTS.into(), vec![text("curl")]));
        // 259: `term =` (256), and the columns read (`term`, `doc`; not `cnt`, so no position is
        // read).
        assert_eq!(
            p,
            ["SCAN temp.audits_words VIRTUAL TABLE INDEX 259:"],
            "{p:?}"
        );
        let bound = Value::Blob(b"cur\xff".to_vec());
        let p = explain(&c, (FIRST_WORD.into(), vec![text("cur"), bound]));
        // 1537: `term >=` (512) and `term <=` (1024), the column `term` read.
        assert_eq!(
            p,
            ["SCAN temp.audits_word_instances VIRTUAL TABLE INDEX 1537:"]
        );
        let between = vec![text("\"curl\""), Value::Integer(1), Value::Integer(9)];
        let p = explain(&c, (BETWEEN.into(), between));
        // `MATCH` on the table's column (6), then `rowid >=` and `rowid <=`: a seek.
        assert_eq!(p, ["SCAN audits_text VIRTUAL TABLE INDEX 0:M6><"], "{p:?}");
        let r = &Snapshot::of(&c).unwrap();
        let q = AuditQuery {
            since: Some("2026-11-29T10:00:00.000000Z".into()),
            ..all().with(AuditField::Type, Pattern::Exact("process".into()))
        };
        let p = explain(&c, lists::others_select(r, &q, &vec![None]));
        assert_eq!(
            p,
            ["SEARCH audits USING COVERING INDEX audits_by_type (type=? AND time>?)"]
        );
        // The word's side: its events by `seq`.
        let p = explain(
            &c,
            lists::seqs_select(r, &q, &vec![None], &[1, 2], "count(*)"),
        );
        assert_eq!(p, ["SEARCH audits USING INTEGER PRIMARY KEY (rowid=?)"]);
        // The uncounted events of a type and a range of hours: by hour, then each by `seq`.
        let p = explain(&c, uncounted_select(Dialect::Sqlite, &q, Some(1), Some(9)));
        assert_eq!(
            p,
            [
                "SEARCH u USING COVERING INDEX audit_uncounted_by_hour (hour>? AND hour<?)",
                "SEARCH audits USING INTEGER PRIMARY KEY (rowid=?)"
            ]
        );
    }

    #[test]
    fn a_single_word_is_one_term_of_one_ascii_word_folded_as_fts5_folds_it() {
        let word = |q: &str| single_word(&Search::parse(q).unwrap());
        let cases: [(&str, Option<(&str, bool)>); 14] = [
            ("curl", Some(("curl", true))),
            ("CURL", Some(("curl", true))),
            ("Curl*", Some(("curl", true))),
            ("-curl:", Some(("curl", true))),
            (r#""curl""#, Some(("curl", false))),
            (r#""Shadow"#, Some(("shadow", false))),
            ("443", Some(("443", true))),
            ("/usr/bin/curl", None), // three words: a phrase
            ("curl_x", None),        // `_` separates words
            ("curl wget", None),     // two terms
            (r#""rm -rf""#, None),
            ("été", None), // FTS5 folds accents its own way
            ("ETE", Some(("ete", true))),
            ("curlы", None),
        ];
        for (q, want) in cases {
            assert_eq!(word(q), want.map(|(w, p)| (w.to_owned(), p)), "{q}");
        }
        let long = "x".repeat(LONGEST + 1);
        assert_eq!(word(&long), None);
        assert_eq!(word(&long[1..]), Some((long[1..].to_owned(), true)));
    }

    #[test]
    fn a_prefix_stands_for_the_one_word_it_names() {
        let s = |w: &str| Some(w.to_owned());
        let cases = [
            ("curl", None, None, s("curl")),        // nothing stored starts so
            ("curl", s("curl"), None, s("curl")),   // the word itself
            ("cur", s("curl"), None, s("curl")),    // one longer word
            ("curl", s("curl"), s("curls"), None),  // two words
            ("cur", s("curl"), s("current"), None), // two longer words
            ("curl", s("curm"), None, None),        // a misread bound
            ("ete", s("ete"), None, s("ete")),      // stored folded
            ("curl", s("curlы"), None, s("curlы")), // a longer word of any script
        ];
        for (prefix, first, second, want) in cases {
            assert_eq!(
                named(prefix, first.clone(), second.clone()),
                want,
                "{prefix} {first:?} {second:?}"
            );
        }
    }

    #[test]
    fn the_seqs_are_read_in_runs_split_at_their_widest_gaps() {
        // (seqs, gap, most runs) -> runs
        type Case<'a> = (&'a [i64], i64, usize, &'a [(i64, i64)]);
        let cases: [Case; 8] = [
            (&[], 10, 4, &[]),
            (&[5], 10, 4, &[(5, 5)]),
            (&[1, 2, 3, 20, 21, 40], 10, 4, &[(1, 3), (20, 21), (40, 40)]),
            // A gap of exactly `gap` is crossed.
            (&[1, 11, 22], 10, 4, &[(1, 11), (22, 22)]),
            // Two runs at most: the widest gap (40 → 100) splits.
            (&[1, 20, 40, 100], 10, 2, &[(1, 40), (100, 100)]),
            (&[1, 20, 40, 100], 10, 3, &[(1, 20), (40, 40), (100, 100)]),
            (&[1, 20, 40, 100], 10, 1, &[(1, 100)]),
            (&[1, 20, 40, 100], 10, 0, &[(1, 100)]),
        ];
        for (seqs, gap, most, want) in cases {
            assert_eq!(runs(seqs, gap, most), want, "{seqs:?} {gap} {most}");
        }
    }

    /// The queries the words' rows answer in [`words_store`], with the partial hours at either
    /// end, both, or within one hour.
    fn counted_queries() -> Vec<AuditQuery> {
        let at = |t: &str| Some(format!("2026-11-29T{t}:00.000000Z"));
        let process = || all().with(AuditField::Type, Pattern::Exact("process".into()));
        vec![
            all(),
            process(),
            all().with(AuditField::Type, Pattern::parse("[pn]*").unwrap()),
            all().with(AuditField::Effect, Pattern::Exact("audit".into())),
            AuditQuery {
                since: at("10:00"),
                ..all()
            },
            AuditQuery {
                since: at("10:30"),
                ..process()
            },
            AuditQuery {
                until: at("10:30"),
                ..all()
            },
            AuditQuery {
                since: at("09:15"),
                until: at("11:45"),
                ..process()
            },
            AuditQuery {
                since: at("10:10"),
                until: at("10:20"),
                ..all()
            },
        ]
    }

    /// A word of letters with conditions on type, effect and time only is counted from its rows,
    /// the uncounted events (`Été`: not ASCII) and the partial hours, as FTS5's `MATCH` counts it,
    /// after retention too, without reading the word's number of events from the vocabulary; a
    /// word with a digit or another condition is not.
    #[test]
    fn a_word_of_letters_is_counted_from_its_rows() {
        let (_dir, s) = words_store();
        let c = s.reader_for_tests();
        let mut read = Snapshot::of(&c).unwrap();
        let snapshot = &mut read;
        for text in [r#""curl""#, "ran", "ete", "Ete", "shadowy", "wget", "zzz"] {
            for other in counted_queries() {
                let q = AuditQuery {
                    search: Some(Search::parse(text).unwrap()),
                    ..other
                };
                let expanded = lists::expand(snapshot, &q).unwrap();
                let plain = lists::counted(snapshot, &q, &expanded).unwrap();
                let (narrowed, word) = one_word(snapshot, &q).unwrap().unwrap();
                let r = &mut Recorded {
                    inner: snapshot,
                    statements: Vec::new(),
                };
                assert_eq!(by_rows(r, &narrowed, &word).unwrap(), Some(plain), "{q:?}");
                let read = |part: &str| r.statements.iter().any(|(sql, _)| sql.contains(part));
                assert!(read("FROM audit_counts WHERE field = ?1"), "{q:?}");
                assert!(read("FROM audit_uncounted"), "{q:?}");
                assert!(!read("audits_words"), "{q:?}");
                assert_eq!(lists::count(r, &q).unwrap(), plain, "{q:?}");
            }
        }
        // Another field, or a word with a digit: not the rows.
        let container = AuditQuery {
            search: Some(Search::parse("ran").unwrap()),
            ..all().with(AuditField::Container, Pattern::Exact("c1".into()))
        };
        assert_eq!(by_rows(snapshot, &container, "ran").unwrap(), None);
        assert_eq!(by_rows(snapshot, &all(), "ran1").unwrap(), None);
    }

    /// Past [`MOST_UNCOUNTED`] uncounted events in its hours, a count is not read from the rows,
    /// and is still right.
    #[test]
    fn many_uncounted_events_leave_the_count_to_the_index() {
        let events: Vec<_> = (0..=MOST_UNCOUNTED as u32)
            .map(|n| {
                let mut e = event(&format!("u{n}"), n, "2026-11-29T10:00:00.000000Z");
                e.message = "café ran".into();
                e
            })
            .collect();
        let (_dir, s) = store(&events);
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        let q = AuditQuery {
            search: Some(Search::parse(r#""ran""#).unwrap()),
            ..all()
        };
        assert_eq!(by_rows(r, &q, "ran").unwrap(), None);
        assert_eq!(lists::count(r, &q).unwrap(), events.len() as u64);
    }

    /// The rows of every word FTS5 indexed for ASCII text: each word of letters alone has the
    /// number of events the vocabulary gives it (`doc`), whatever separates the words (every ASCII
    /// character but letters and digits); no other word has rows.
    #[test]
    fn the_rows_hold_the_words_fts5_indexed_of_ascii_text() {
        let separators: String = (0u8..128)
            .map(char::from)
            .filter(|c| !c.is_ascii_alphanumeric())
            .collect();
        let texts = [
            format!("alpha{separators}Beta"),
            separators.chars().map(|c| format!("w{c}")).collect(),
            "x1y z2 3q CamelCase snake_case kebab-case a.b.c".into(),
            "x".repeat(2_000),
        ];
        let events: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(n, text)| {
                let mut e = event(&format!("t{n}"), n as u32, "2026-11-29T10:00:00.000000Z");
                e.message = text.clone();
                e.cmdline = Some(format!("{text} --flag"));
                e
            })
            .collect();
        let (_dir, s) = store(&events);
        let c = s.reader_for_tests();
        let pairs = |sql: &str| -> std::collections::BTreeMap<String, i64> {
            let mut select = c.prepare(sql).unwrap();
            let rows = select.query_map([], |r| Ok((r.get(0)?, r.get(1)?)));
            rows.unwrap().map(Result::unwrap).collect()
        };
        let mut vocabulary = pairs("SELECT term, doc FROM temp.audits_words");
        vocabulary.retain(|t, _| t.len() <= LONGEST && t.bytes().all(|b| b.is_ascii_lowercase()));
        let rows =
            pairs("SELECT value, sum(events) FROM audit_counts WHERE field = 'word' GROUP BY 1");
        assert!(vocabulary.contains_key("beta") && vocabulary.contains_key("w"));
        assert_eq!(rows, vocabulary);
        // A prefix that names the one stored word longer than any counted: not its (absent) rows.
        let q = AuditQuery {
            search: Some(Search::parse("xxx").unwrap()),
            ..all()
        };
        let r = &mut Snapshot::of(&c).unwrap();
        assert_eq!(one_word(r, &q).unwrap().unwrap().1.len(), 2_000);
        assert_eq!(lists::count(r, &q).unwrap(), 1);
    }
    #[test]
    fn the_count_reads_the_smaller_side() {
        let cases = [
            // (the word's events, the conditions' per the rollup) -> side
            (0, None, Side::Word),
            (MOST_BY_SEQ, None, Side::Word),
            (MOST_BY_SEQ, Some(1), Side::Word),
            (MOST_BY_SEQ + 1, None, Side::Statement),
            (10_000, Some(10_000 * ROW_COST), Side::Word),
            (10_000, Some(10_000 * ROW_COST - 1), Side::Conditions),
            (1_306_162, Some(133_000), Side::Conditions),
            (50_000, Some(10_000_000), Side::Word),
            (u64::MAX, Some(u64::MAX - 1), Side::Conditions),
        ];
        for (events, conditions, want) in cases {
            assert_eq!(side(events, conditions), want, "{events} {conditions:?}");
        }
    }
}
