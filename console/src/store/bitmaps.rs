//! The bitmap index of audits: for each chunk of 2^16 arrival positions (`seq`), a compressed
//! bitmap (roaring) of the positions holding each value of the rolled-up fields, each type, each
//! effect and each word of the text search, written once the chunk is complete ("sealed"), and
//! for the newest chunk, in part, as its events arrive (to the newest position stored). The
//! exact total of several conditions that each select millions of events (a rule within a
//! container, a word within a container) is then the size of their bitmaps' intersection, chunk
//! by chunk, instead of a walk of the smaller condition's million index entries; and the page of
//! conditions with few matches lists them ([`listed`]) instead of walking an index range that
//! holds none. The events not in a sealed chunk (or part) wholly inside the query's time range
//! (the newest arrivals; a chunk at an end of the range) are read from the events, by their
//! positions.
//!
//! Why the bitmaps stay true without a lock on ingestion:
//! - positions are given in commit order (SQLite: one writer; PostgreSQL: the ingestion lock),
//!   so once a position is stored, no event will ever be stored below it, except by reusing
//!   positions freed by retention; and a new position is always above every sealed chunk and
//!   every sealed part of one ([`sealed_end`]);
//! - the only change to stored events is retention's delete, which counts itself in
//!   `audit_sealing.deletions` and unseals every chunk whose oldest event is older than its
//!   cutoff, in the same transaction as each batch it deletes; a chunk built from a snapshot is
//!   written only if no deletion happened since (checked in the writing transaction).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use roaring::RoaringBitmap;

use super::StoreError;
use super::audits::{self, conditions};
use super::lists;
use super::query::{AuditField, AuditQuery, Pattern};
use super::rollup::{self, FIELDS};
use super::sql::{self, Dialect, Reader, Value};
use super::word_rows;
use super::words::LONGEST;
use crate::events::{Effect, Kind};

/// A chunk holds the events of `2^SHIFT` consecutive positions.
pub const SHIFT: u32 = 16;

/// The tables on SQLite (migration 15): the sealed chunks, the bitmaps of each key in each, and
/// retention's count of deleting transactions with the cutoff of the one under way.
pub const SQLITE_TABLES: &str = "CREATE TABLE audit_chunks (
    chunk INTEGER PRIMARY KEY, first_time TEXT, last_time TEXT, events INTEGER NOT NULL,
    words INTEGER NOT NULL
);
CREATE TABLE audit_bits (key TEXT NOT NULL, chunk INTEGER NOT NULL, bits BLOB NOT NULL);
CREATE UNIQUE INDEX audit_bits_by_key ON audit_bits (key, chunk);
CREATE INDEX audit_bits_by_chunk ON audit_bits (chunk);
CREATE TABLE audit_sealing (deletions INTEGER NOT NULL, cutoff TEXT);
INSERT INTO audit_sealing VALUES (0, NULL);";

/// The same on PostgreSQL (migration 4): keys and times in byte order (`COLLATE \"C\"`), as a
/// prefix's range of keys is read.
pub const POSTGRES_TABLES: &str = "CREATE TABLE audit_chunks (
    chunk BIGINT PRIMARY KEY, first_time TEXT COLLATE \"C\", last_time TEXT COLLATE \"C\",
    events BIGINT NOT NULL, words INTEGER NOT NULL
);
CREATE TABLE audit_bits (
    key TEXT COLLATE \"C\" NOT NULL, chunk BIGINT NOT NULL, bits BYTEA NOT NULL,
    PRIMARY KEY (key, chunk)
);
CREATE INDEX audit_bits_by_chunk ON audit_bits (chunk);
CREATE TABLE audit_sealing (deletions BIGINT NOT NULL, cutoff TEXT COLLATE \"C\");
INSERT INTO audit_sealing VALUES (0, NULL);
";

/// The newest chunk sealed in part (SQLite migration 16, PostgreSQL migration 5): `upto` is the
/// position its bitmaps end before, NULL for a complete chunk.
pub const SQLITE_PARTS: &str = "ALTER TABLE audit_chunks ADD COLUMN upto INTEGER";

/// The same on PostgreSQL.
pub const POSTGRES_PARTS: &str = "ALTER TABLE audit_chunks ADD COLUMN upto BIGINT";

/// The statements retention runs before each batch of audits it deletes, in the same
/// transaction (`?1`: its cutoff): counted, and the chunks that hold events older than the cutoff
/// unsealed. Valid SQLite and PostgreSQL.
pub const UNSEAL: [&str; 3] = [
    "UPDATE audit_sealing SET deletions = deletions + 1, cutoff = ?1",
    "DELETE FROM audit_bits WHERE chunk IN (SELECT chunk FROM audit_chunks WHERE first_time < ?1)",
    "DELETE FROM audit_chunks WHERE first_time < ?1",
];

/// Run once retention has deleted every audit older than its cutoff: chunks holding older events
/// (late arrivals) may be sealed again.
pub const EXPIRED: &str = "UPDATE audit_sealing SET cutoff = NULL";

/// The last position of the highest sealed chunk (`shift` their size), or of its sealed part, 0
/// when none: a stored event's position is above it. A SQL expression, valid in both.
pub fn sealed_end(shift: u32) -> String {
    format!(
        "COALESCE((SELECT COALESCE(upto, (chunk + 1) * {}) - 1 FROM audit_chunks \
         ORDER BY chunk DESC LIMIT 1), 0)",
        1_i64 << shift
    )
}

/// What the transaction that writes a chunk does, given the row of that chunk already there
/// (`None`: none; `Some(None)`: complete; `Some(Some(upto))`: sealed in part, to `upto`) and
/// the part it built (`None`: complete).
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing: what is there holds as much (another instance sealed it first).
    Skip,
    /// Its rows added.
    Add,
    /// The part there (its row and bitmaps) deleted, then its rows added.
    Replace,
}

/// See [`Write`].
pub fn write(there: Option<Option<i64>>, built: Option<i64>) -> Write {
    match (there, built) {
        (None, _) => Write::Add,
        (Some(None), _) => Write::Skip,
        (Some(Some(there)), Some(built)) if built <= there => Write::Skip,
        (Some(Some(_)), _) => Write::Replace,
    }
}

/// The statement that reads retention's count of deletions, in the transaction that writes a
/// chunk (PostgreSQL locks the row: a retention batch waits for the chunk's transaction, and the
/// chunk's waits for a batch under way, then sees its count).
pub fn deletions(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "SELECT deletions FROM audit_sealing",
        Dialect::Postgres => "SELECT deletions FROM audit_sealing FOR UPDATE",
    }
}

/// A chunk the bitmap index took in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub chunk: i64,
    /// How many events it holds.
    pub events: i64,
    /// The position its bitmaps end before, when sealed in part.
    pub upto: Option<i64>,
}

/// A chunk's events counted, and the keys of their bitmaps: ready to be written.
#[derive(Debug, PartialEq)]
pub struct Built {
    pub chunk: i64,
    /// The position the part built ends before; `None`: the whole chunk.
    pub upto: Option<i64>,
    pub first: Option<String>,
    pub last: Option<String>,
    pub events: i64,
    /// Whether every event's words are in the bitmaps (SQLite: none has text outside ASCII).
    pub words: bool,
    /// Retention's count of deletions when the events were read.
    pub deletions: i64,
    /// Each key, with its bitmap serialized.
    pub bits: BTreeMap<String, Vec<u8>>,
}

/// The key of a field's value.
fn field_key(field: AuditField, value: &str) -> String {
    format!("{}:{value}", field.name())
}

/// The key of a word of lowercase ASCII letters alone (at most [`LONGEST`] bytes): a whole-word
/// search reads it, a prefix search every one in its range.
fn word_key(word: &str) -> String {
    format!("w:{word}")
}

/// The key of the leading run of lowercase ASCII letters of any other word (cut at [`LONGEST`]):
/// a prefix search of letters finds such a word exactly when the run begins with the prefix.
fn run_key(run: &str) -> String {
    format!("r:{run}")
}

/// The words an event's text search finds, in `dialect`: on PostgreSQL its `tsvector`'s lexemes
/// ([`sql::tsvector`]); on SQLite, FTS5's tokens when its texts are ASCII (split at every
/// character but letters and digits, lowercased), `None` otherwise (FTS5 folds other text by its
/// own tables).
fn event_words(dialect: Dialect, texts: &[Option<&str>]) -> Option<BTreeSet<String>> {
    match dialect {
        Dialect::Postgres => Some(sql::tsvector(texts).lexemes),
        Dialect::Sqlite => Some(
            word_rows::ascii_words(texts)?
                .map(str::to_ascii_lowercase)
                .collect(),
        ),
    }
}

/// The keys of a word: its own (letters alone, short enough) or its run's (if it has one).
fn keys_of_word(word: &str) -> Option<String> {
    let run = rollup::letters(word);
    match (run.len() == word.len(), run.is_empty()) {
        (true, _) if word.len() <= LONGEST => Some(word_key(word)),
        (_, true) => None,
        _ => Some(run_key(&run[..run.len().min(LONGEST)])),
    }
}

/// A chunk's sealed part, read back to be extended by the events past it.
struct Part {
    first: Option<String>,
    last: Option<String>,
    events: i64,
    words: bool,
    bits: HashMap<String, RoaringBitmap>,
}

impl Part {
    /// Nothing sealed yet.
    fn none() -> Part {
        Part {
            first: None,
            last: None,
            events: 0,
            words: true,
            bits: HashMap::new(),
        }
    }

    /// Chunk `chunk`'s sealed part `sealed`, with its bitmaps as `r` reads them.
    fn of(r: &mut dyn Reader, chunk: i64, sealed: &Chunk) -> Result<Part, StoreError> {
        let mut part = Part {
            first: sealed.first.clone(),
            last: sealed.last.clone(),
            events: sealed.events,
            words: sealed.words,
            bits: HashMap::new(),
        };
        r.rows(
            "SELECT key, bits FROM audit_bits WHERE chunk = ?1",
            &[Value::Integer(chunk)],
            &mut |row| {
                let key = sql::text(row, 0)?;
                let bits = RoaringBitmap::deserialize_from(sql::blob(row, 1)?)
                    .map_err(|e| StoreError::message(format!("audit_bits {key} {chunk}: {e}")))?;
                part.bits.insert(key, bits);
                Ok(true)
            },
        )?;
        Ok(part)
    }
}

/// Builds chunk `chunk`'s bitmaps, the whole chunk's or its part before `upto`: `part`, what was
/// sealed of it before, and `events`, those past it (each with its position).
fn build(
    dialect: Dialect,
    shift: u32,
    (chunk, upto): (i64, Option<i64>),
    deletions: i64,
    part: Part,
    events: &[(i64, super::StoredEvent)],
) -> Result<Built, StoreError> {
    let start = chunk << shift;
    let mut bitmaps = part.bits;
    let mut built = Built {
        chunk,
        upto,
        first: part.first,
        last: part.last,
        events: part.events + events.len() as i64,
        words: part.words,
        deletions,
        bits: BTreeMap::new(),
    };
    for (seq, stored) in events {
        let e = &stored.event;
        let at = u32::try_from(seq - start)
            .ok()
            .filter(|at| *at < 1 << shift)
            .ok_or_else(|| StoreError::message(format!("event {seq} is not in chunk {chunk}")))?;
        if built.first.as_ref().is_none_or(|f| e.time < *f) {
            built.first = Some(e.time.clone());
        }
        if built.last.as_ref().is_none_or(|l| e.time > *l) {
            built.last = Some(e.time.clone());
        }
        let mut keys = vec![
            field_key(AuditField::Type, e.kind.as_str()),
            field_key(AuditField::Effect, e.effect.as_str()),
        ];
        for field in FIELDS {
            if let Some(v) = rollup::value(e, field) {
                keys.push(field_key(field, v));
            }
        }
        match event_words(dialect, &sql::searched(e)) {
            Some(words) => keys.extend(words.iter().filter_map(|w| keys_of_word(w))),
            None => built.words = false,
        }
        for key in keys {
            bitmaps.entry(key).or_default().insert(at);
        }
    }
    for (key, mut bitmap) in bitmaps {
        bitmap.optimize();
        let mut bytes = Vec::with_capacity(bitmap.serialized_size());
        bitmap
            .serialize_into(&mut bytes)
            .map_err(|e| StoreError::message(format!("bitmap of {key}: {e}")))?;
        built.bits.insert(key, bytes);
    }
    Ok(built)
}

impl Built {
    /// What sealing it did.
    pub fn sealed(&self) -> Sealed {
        Sealed {
            chunk: self.chunk,
            upto: self.upto,
            events: self.events,
        }
    }
}

/// The first integer of the first row of `sql`, `None` when it is NULL or there is no row.
fn one(r: &mut dyn Reader, sql: &str, values: &[Value]) -> Result<Option<i64>, StoreError> {
    Ok(sql::first_column(r, sql, values, sql::opt_int)?
        .into_iter()
        .next()
        .flatten())
}

/// The lowest and highest positions stored (`None`: no event), each one seek of the key's index
/// (two subqueries: SQLite reads `MIN` and `MAX` so only when each is a query's one aggregate).
fn ends(r: &mut dyn Reader) -> Result<Option<(i64, i64)>, StoreError> {
    let sql = "SELECT (SELECT MIN(seq) FROM audits), (SELECT MAX(seq) FROM audits)";
    let mut ends = None;
    r.rows(sql, &[], &mut |row| {
        ends = sql::opt_int(row, 0)?.zip(sql::opt_int(row, 1)?);
        Ok(false)
    })?;
    Ok(ends)
}

/// The fewest new positions past the sealed part of the newest chunk for which it is sealed again
/// (a 16th of a chunk, 4,096 of 65,536), and at least as many as the part holds: each part at
/// least doubles, so a chunk is written about twice in all (its bitmaps; its events are read
/// once, each part extending the one before), however it grows.
fn parts_grow(shift: u32, sealed: i64) -> i64 {
    sealed.max(1 << shift.saturating_sub(4))
}

/// The next chunk to seal, read and built from `r`'s snapshot: the lowest complete chunk not
/// sealed (or sealed in part), else, with `parts`, the newest chunk's positions to the newest
/// stored when they have grown enough past its sealed part ([`parts_grow`]); `None` when there is
/// none, or when it holds events older than the cutoff of a retention under way (which will
/// delete them and would unseal it).
pub fn next(r: &mut dyn Reader, shift: u32, parts: bool) -> Result<Option<Built>, StoreError> {
    let mut state = None;
    r.rows(
        "SELECT deletions, cutoff FROM audit_sealing",
        &[],
        &mut |row| {
            state = Some((sql::int(row, 0)?, sql::opt_text(row, 1)?));
            Ok(false)
        },
    )?;
    let (deletions, cutoff) =
        state.ok_or_else(|| StoreError::message("audit_sealing has no row".into()))?;
    let Some((min, max)) = ends(r)? else {
        return Ok(None);
    };
    let chunks = chunks(r)?;
    // Chunk `chunk` built to `upto` (or whole): its sealed part (if any) read back and extended
    // by the events from its end.
    let cutoff = cutoff.as_deref();
    let read = |r: &mut dyn Reader, chunk: i64, sealed: Option<&Chunk>, upto: Option<i64>| {
        let part = match sealed {
            Some(c) => Part::of(r, chunk, c)?,
            None => Part::none(),
        };
        if cutoff.is_some_and(|c| part.first.as_deref().is_some_and(|f| f < c)) {
            return Ok(None);
        }
        let from = sealed.and_then(|c| c.upto).unwrap_or(chunk << shift);
        let end = upto.unwrap_or((chunk + 1) << shift);
        let Some(events) = read_chunk(r, (from, end), cutoff)? else {
            return Ok(None);
        };
        build(r.dialect(), shift, (chunk, upto), deletions, part, &events).map(Some)
    };
    // A chunk is complete once a position past it is stored.
    for chunk in (min >> shift)..(max >> shift) {
        let built = match chunks.get(&chunk) {
            Some(c) if c.upto.is_none() => continue,
            sealed => read(r, chunk, sealed, None)?,
        };
        if built.is_some() {
            return Ok(built);
        }
    }
    let newest = max >> shift;
    let sealed = chunks.get(&newest);
    if !parts || sealed.is_some_and(|c| c.upto.is_none()) {
        return Ok(None);
    }
    let done = sealed.and_then(|c| c.upto).unwrap_or(newest << shift);
    if max + 1 - done < parts_grow(shift, done - (newest << shift)) {
        return Ok(None);
    }
    read(r, newest, sealed, Some(max + 1))
}

/// The events of positions `from` to `to` (exclusive), each with its position; `None` when one
/// is older than `cutoff` (a retention under way will delete it).
fn read_chunk(
    r: &mut dyn Reader,
    (from, to): (i64, i64),
    cutoff: Option<&str>,
) -> Result<Option<Vec<(i64, super::StoredEvent)>>, StoreError> {
    let range = [Value::Integer(from), Value::Integer(to)];
    if let Some(cutoff) = cutoff {
        let mut old = false;
        r.rows(
            "SELECT 1 FROM audits WHERE seq >= ?1 AND seq < ?2 AND time < ?3 LIMIT 1",
            &[
                range[0].clone(),
                range[1].clone(),
                Value::Text(cutoff.into()),
            ],
            &mut |_| {
                old = true;
                Ok(false)
            },
        )?;
        if old {
            return Ok(None);
        }
    }
    let mut events = Vec::new();
    r.rows(
        &format!(
            "SELECT {}, seq FROM audits WHERE seq >= ?1 AND seq < ?2",
            audits::COLUMNS
        ),
        &range,
        &mut |row| {
            events.push((sql::int(row, 28)?, audits::stored_event(row)?));
            Ok(true)
        },
    )?;
    Ok(Some(events))
}

/// A sealed chunk as a count reads it.
struct Chunk {
    events: i64,
    /// The position its sealed part ends before; `None`: complete.
    upto: Option<i64>,
    first: Option<String>,
    last: Option<String>,
    words: bool,
}

/// One condition of a query, as keys: an event matches when it is in the bitmap of any of
/// `keys`, or of any key in one of the `ranges` (from, to).
#[derive(Debug, Default, PartialEq)]
struct Keys {
    keys: Vec<String>,
    ranges: Vec<(String, String)>,
}

/// Each condition of `q` as [`Keys`], `None` when one is not in the bitmaps (a field not rolled
/// up, a glob whose values were not all listed, a search term of several words or of a word
/// other than letters): such a query is counted from the events.
fn keys(q: &AuditQuery, expanded: &lists::Expanded) -> Option<Vec<Keys>> {
    let mut out = Vec::new();
    for (i, (field, pattern)) in q.fields.iter().enumerate() {
        let values: Vec<String> = match (field, pattern) {
            (AuditField::Type, p) => named(p, &Kind::ALL.map(Kind::as_str)),
            (AuditField::Effect, p) => named(p, &Effect::ALL.map(Effect::as_str)),
            (f, _) if !FIELDS.contains(f) => return None,
            (_, Pattern::Exact(v)) => vec![v.clone()],
            (_, Pattern::Glob(_)) => expanded.get(i)?.clone()?,
        };
        out.push(Keys {
            keys: values.iter().map(|v| field_key(*field, v)).collect(),
            ranges: Vec::new(),
        });
    }
    out.extend(search_keys(q)?);
    Some(out)
}

/// The keys of each term of `q`'s search (see [`keys`]).
fn search_keys(q: &AuditQuery) -> Option<Vec<Keys>> {
    let mut out = Vec::new();
    for term in q.search.iter().flat_map(|s| &s.terms) {
        let (word, prefix) = sql::term_word(term)?;
        if word.is_empty() || rollup::letters(&word) != word || word.len() > LONGEST {
            return None;
        }
        out.push(match prefix {
            false => Keys {
                keys: vec![word_key(&word)],
                ranges: Vec::new(),
            },
            true => {
                // The letters' next: every key beginning with `word` sorts below it.
                let mut next = word.clone();
                let last = next.pop().map_or('a', |c| (c as u8 + 1) as char);
                next.push(last);
                Keys {
                    keys: Vec::new(),
                    ranges: vec![
                        (word_key(&word), word_key(&next)),
                        (run_key(&word), run_key(&next)),
                    ],
                }
            }
        });
    }
    Some(out)
}

/// The names among `names` a type or effect filter selects.
fn named(pattern: &Pattern, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| match pattern {
            Pattern::Exact(v) => v == *n,
            Pattern::Glob(_) => pattern.matches(n),
        })
        .map(|n| (*n).to_owned())
        .collect()
}

/// The most positions outside the sealed chunks a count reads from the events (four chunks):
/// past it (the index not yet built after an upgrade, or far behind) the other plans count.
const MOST_REST: u32 = 4;

/// Whether every field filter of `q` is one the bitmaps hold (what is checked without a read).
fn indexed(q: &AuditQuery) -> bool {
    let indexed =
        |f: &AuditField| FIELDS.contains(f) || matches!(f, AuditField::Type | AuditField::Effect);
    q.fields.iter().all(|(f, _)| indexed(f))
}

/// The sealed chunks, by number.
fn chunks(r: &mut dyn Reader) -> Result<BTreeMap<i64, Chunk>, StoreError> {
    let mut chunks = BTreeMap::new();
    r.rows(
        "SELECT chunk, events, first_time, last_time, words, upto FROM audit_chunks",
        &[],
        &mut |row| {
            chunks.insert(
                sql::int(row, 0)?,
                Chunk {
                    events: sql::int(row, 1)?,
                    upto: sql::opt_int(row, 5)?,
                    first: sql::opt_text(row, 2)?,
                    last: sql::opt_text(row, 3)?,
                    words: sql::int(row, 4)? != 0,
                },
            );
            Ok(true)
        },
    )?;
    Ok(chunks)
}

/// How many events `q` selects, from the bitmaps of the sealed chunks wholly in its time range
/// and the events of the other positions; `None` when the bitmaps do not answer it: fewer than
/// two conditions (the rollup and the indexes answer one), a condition not in them ([`keys`]),
/// more than [`MOST_REST`] chunks' positions outside them, or more than [`MOST_BITMAPS`]
/// bitmaps to read.
pub fn count(r: &mut dyn Reader, q: &AuditQuery, shift: u32) -> Result<Option<u64>, StoreError> {
    let terms = q.search.as_ref().map_or(0, |s| s.terms.len());
    // What needs no read first: the globs' values are walked only for a query the index takes.
    if q.fields.len() + terms < 2 || !indexed(q) || search_keys(q).is_none() {
        return Ok(None);
    }
    let expanded = lists::expand(r, q)?;
    let Some(conditions) = keys(q, &expanded) else {
        return Ok(None);
    };
    let Some((min, max)) = ends(r)? else {
        return Ok(Some(0));
    };
    let chunks = chunks(r)?;
    let (inside, rest) = split(q, shift, min, max, &chunks);
    if !within_rest(&rest, shift) {
        return Ok(None);
    }
    let mut read = 0;
    let Some(common) = common(r, &conditions, inside, &mut read)? else {
        return Ok(None);
    };
    let mut total = size(&common);
    for (from, to) in rest {
        total += counted_between(r, q, &expanded, from, to)?;
    }
    Ok(Some(total))
}

/// Whether the positions of `rest` span at most [`MOST_REST`] chunks.
fn within_rest(rest: &[(i64, i64)], shift: u32) -> bool {
    let span: i64 = rest.iter().map(|(from, to)| to - from).sum();
    span <= i64::from(MOST_REST) << shift
}

/// What the bitmaps say of the matches of a page's query that are few: the values of the glob
/// the page merges over whose matches in the sealed chunks are few (all of them when it merges
/// over none), the positions of those matches, and the positions outside the sealed chunks
/// (whose events are read to find the rest of those values' matches).
#[derive(Debug, PartialEq)]
pub struct Listed {
    /// The values listed, of the glob the page merges over; empty when it merges over none (the
    /// whole query is listed).
    pub values: Vec<String>,
    /// Their matches' positions in the sealed chunks, ascending, whatever their time (a page's
    /// time range is checked on the rows).
    pub seqs: Vec<i64>,
    /// The ranges (from, to exclusive) of positions not in a sealed chunk.
    pub rest: Vec<(i64, i64)>,
}

/// The most matches [`listed`] reads by position: a 32nd of a chunk (2,048 for chunks of
/// 65,536), each one lookup of the table's key. Past it, a walk newest first of a condition's
/// index finds a page after about (that index's range × page / matches) entries, which is then
/// fewer.
fn most_listed(shift: u32) -> u64 {
    1 << shift.saturating_sub(5)
}

/// The page plan's use of the bitmaps: for a query of two or more field conditions, all in the
/// bitmaps and no search, the values of glob `over` (or the whole query with none) whose matches
/// in the sealed chunks number at most [`most_listed`] together, fewest first. A walk of such a
/// value's index range newest first reads the whole range before it finds a page (a rule
/// absent from one of a glob's containers: that container's every event); the positions read
/// here are the matches. `None` when nothing is listed, or the bitmaps do not answer (as for
/// [`count`]).
pub fn listed(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &lists::Expanded,
    over: Option<usize>,
    shift: u32,
) -> Result<Option<Listed>, StoreError> {
    if q.search.is_some() || q.fields.len() < 2 || !indexed(q) {
        return Ok(None);
    }
    let Some(mut conditions) = keys(q, expanded) else {
        return Ok(None);
    };
    let Some((min, max)) = ends(r)? else {
        return Ok(None);
    };
    // Every sealed chunk whatever its times: the rows of the listed positions are checked
    // against the query's time range.
    let timeless = AuditQuery {
        since: None,
        until: None,
        ..q.clone()
    };
    let (inside, rest) = split(&timeless, shift, min, max, &chunks(r)?);
    if !within_rest(&rest, shift) {
        return Ok(None);
    }
    let mut read = 0;
    let Some(i) = over else {
        // No glob merged over: the whole query's matches, if few.
        let Some(common) = common(r, &conditions, inside, &mut read)? else {
            return Ok(None);
        };
        return Ok((size(&common) <= most_listed(shift)).then(|| Listed {
            values: Vec::new(),
            seqs: positions(&common, shift),
            rest,
        }));
    };
    conditions.remove(i);
    let Some(common) = common(r, &conditions, inside, &mut read)? else {
        return Ok(None);
    };
    let where_common = common.keys().copied().collect();
    let mut found = Vec::new();
    for name in expanded[i].iter().flatten() {
        let keys = Keys {
            keys: vec![field_key(q.fields[i].0, name)],
            ranges: Vec::new(),
        };
        let Some(mut bits) = united(r, &keys, &where_common, &mut read)? else {
            return Ok(None);
        };
        for (chunk, b) in &mut bits {
            *b &= &common[chunk];
        }
        found.push((size(&bits), name, bits));
    }
    found.sort_by_key(|(n, name, _)| (*n, *name));
    let mut listed = Listed {
        values: Vec::new(),
        seqs: Vec::new(),
        rest,
    };
    let mut n = 0;
    for (count, name, bits) in found {
        n += count;
        if n > most_listed(shift) {
            break;
        }
        listed.values.push(name.clone());
        listed.seqs.extend(positions(&bits, shift));
    }
    listed.seqs.sort_unstable();
    Ok((!listed.values.is_empty()).then_some(listed))
}

/// How many positions `bits` hold.
fn size(bits: &HashMap<i64, RoaringBitmap>) -> u64 {
    bits.values().map(RoaringBitmap::len).sum()
}

/// The positions of `bits`, ascending.
fn positions(bits: &HashMap<i64, RoaringBitmap>, shift: u32) -> Vec<i64> {
    let mut out: Vec<i64> = bits
        .iter()
        .flat_map(|(chunk, b)| b.iter().map(move |at| (chunk << shift) + i64::from(at)))
        .collect();
    out.sort_unstable();
    out
}

/// The sealed chunks wholly inside `q`'s time range (and, for a search, holding every event's
/// words), and the ranges of positions from `min` to `max` counted from the events instead:
/// chunks not sealed, sealed ones that straddle an end of the range, and the positions past the
/// sealed part of a chunk sealed in part. Sealed chunks (or parts) wholly outside the range, or
/// with no event, are in neither.
fn split(
    q: &AuditQuery,
    shift: u32,
    min: i64,
    max: i64,
    chunks: &BTreeMap<i64, Chunk>,
) -> (BTreeSet<i64>, Vec<(i64, i64)>) {
    let (since, until) = (q.since.as_deref(), q.until.as_deref());
    let mut inside = BTreeSet::new();
    let mut rest: Vec<(i64, i64)> = Vec::new();
    for chunk in (min >> shift)..=(max >> shift) {
        let (from, to) = (
            (chunk << shift).max(min),
            ((chunk + 1) << shift).min(max + 1),
        );
        // Where the positions read from the events begin: the chunk's start, or its sealed
        // part's end.
        let counted_from = match chunks.get(&chunk) {
            None => from,
            Some(c) => {
                let (first, last) = (c.first.as_deref(), c.last.as_deref());
                let before = since.is_some_and(|s| last.is_some_and(|l| l < s));
                let after = until.is_some_and(|u| first.is_some_and(|f| f >= u));
                let within = since.is_none_or(|s| first.is_some_and(|f| f >= s))
                    && until.is_none_or(|u| last.is_some_and(|l| l < u));
                let sealed_to = c.upto.unwrap_or(to).max(from);
                if c.events == 0 || before || after {
                    sealed_to
                } else if within && (q.search.is_none() || c.words) {
                    inside.insert(chunk);
                    sealed_to
                } else {
                    from
                }
            }
        };
        if counted_from >= to {
            continue;
        }
        match rest.last_mut() {
            Some(last) if last.1 == counted_from => last.1 = to,
            _ => rest.push((counted_from, to)),
        }
    }
    (inside, rest)
}

/// The most bitmaps a count reads (a glob of many values, a short prefix of many words): past
/// it, the other plans count.
const MOST_BITMAPS: usize = 50_000;

/// The bitmaps of `keys` in the chunks of `inside`, each chunk's united; `None` once `read`
/// (the bitmaps read so far) passes [`MOST_BITMAPS`].
fn united(
    r: &mut dyn Reader,
    keys: &Keys,
    inside: &BTreeSet<i64>,
    read: &mut usize,
) -> Result<Option<HashMap<i64, RoaringBitmap>>, StoreError> {
    let mut out: HashMap<i64, RoaringBitmap> = HashMap::new();
    let mut add = |row: &[Value]| -> Result<bool, StoreError> {
        let chunk = sql::int(row, 0)?;
        if !inside.contains(&chunk) {
            return Ok(true);
        }
        *read += 1;
        if *read > MOST_BITMAPS {
            return Ok(false);
        }
        let bits = RoaringBitmap::deserialize_from(sql::blob(row, 1)?)
            .map_err(|e| StoreError::message(format!("audit_bits chunk {chunk}: {e}")))?;
        *out.entry(chunk).or_default() |= bits;
        Ok(true)
    };
    // A key's chunks from the first inside to the last (a time range's), by the key's index.
    let (Some(&low), Some(&high)) = (inside.first(), inside.last()) else {
        return Ok(Some(out));
    };
    let (low, high) = (Value::Integer(low), Value::Integer(high));
    for key in &keys.keys {
        r.rows(
            "SELECT chunk, bits FROM audit_bits WHERE key = ?1 AND chunk >= ?2 AND chunk <= ?3",
            &[Value::Text(key.clone()), low.clone(), high.clone()],
            &mut add,
        )?;
    }
    // A range of keys without the chunks' bounds (`add` skips the chunks outside): given both,
    // PostgreSQL's generic plan of the statement (from its sixth run on a connection) read the
    // index by chunk, every key of each chunk (905,449 rows for `shadow` at 10,000,000 events,
    // 110 ms, against 0.3 ms by the key).
    for (from, to) in &keys.ranges {
        r.rows(
            "SELECT chunk, bits FROM audit_bits WHERE key >= ?1 AND key < ?2",
            &[Value::Text(from.clone()), Value::Text(to.clone())],
            &mut add,
        )?;
    }
    Ok((*read <= MOST_BITMAPS).then_some(out))
}

/// The positions of the chunks of `inside` that match every condition, each chunk's (only the
/// chunks where some match); `None` once `read`, the bitmaps read, passes [`MOST_BITMAPS`].
fn common(
    r: &mut dyn Reader,
    conditions: &[Keys],
    mut inside: BTreeSet<i64>,
    read: &mut usize,
) -> Result<Option<HashMap<i64, RoaringBitmap>>, StoreError> {
    let mut common: Option<HashMap<i64, RoaringBitmap>> = None;
    for keys in conditions {
        let Some(bits) = united(r, keys, &inside, read)? else {
            return Ok(None);
        };
        common = Some(match common {
            None => bits,
            Some(mut common) => {
                common.retain(|chunk, b| match bits.get(chunk) {
                    Some(other) => {
                        *b &= other;
                        !b.is_empty()
                    }
                    None => false,
                });
                common
            }
        });
        // The next condition's bitmaps are read only where some event is left.
        inside = common.iter().flatten().map(|(c, _)| *c).collect();
        if inside.is_empty() {
            break;
        }
    }
    Ok(Some(common.unwrap_or_default()))
}

/// The events of positions `?a` to `?b` (exclusive) as a table named `audits`, read by
/// position: on SQLite the table by its key (`NOT INDEXED`); on PostgreSQL a subquery of the
/// columns `q`'s conditions read (`OFFSET 0` keeps the planner from walking a condition's index,
/// or a word's whole list, over every position instead; the words, the largest column, only for
/// a search). The statement's own condition states the range too.
pub(super) fn by_position(dialect: Dialect, q: &AuditQuery, a: usize, b: usize) -> String {
    match dialect {
        Dialect::Sqlite => dialect.by_key("audits"),
        Dialect::Postgres => {
            let mut columns = vec!["seq", "time"];
            let searched = q.search.as_ref().map(|_| "words");
            for column in q
                .fields
                .iter()
                .map(|(f, _)| audits::column(*f))
                .chain(searched)
            {
                if !columns.contains(&column) {
                    columns.push(column);
                }
            }
            format!(
                "(SELECT {} FROM audits WHERE seq >= ?{a} AND seq < ?{b} OFFSET 0) AS audits",
                columns.join(", ")
            )
        }
    }
}

/// How many events of positions `from` to `to` (exclusive) match `q`, read by their positions
/// ([`by_position`]; on SQLite the text search's lists within them alone).
fn counted_between(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &lists::Expanded,
    from: i64,
    to: i64,
) -> Result<u64, StoreError> {
    let dialect = r.dialect();
    let mut values = vec![Value::Integer(from), Value::Integer(to)];
    let others = AuditQuery {
        search: None,
        ..q.clone()
    };
    let mut clause = conditions(dialect, &others, expanded, &mut values);
    if let Some(search) = &q.search {
        let searched = match dialect {
            Dialect::Sqlite => {
                values.push(Value::Text(audits::fts_query(search)));
                format!(
                    "seq IN (SELECT rowid FROM audits_text WHERE audits_text MATCH ?{} \
                     AND rowid >= ?1 AND rowid < ?2)",
                    values.len()
                )
            }
            Dialect::Postgres => dialect.search(search, &mut values),
        };
        clause = format!("{clause} AND {searched}");
    }
    let sql = format!(
        "SELECT count(*) FROM {} WHERE seq >= ?1 AND seq < ?2 AND {clause}",
        by_position(dialect, q, 1, 2)
    );
    Ok(one(r, &sql, &values)?.unwrap_or(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audits::tests::{all, event, ids};
    use crate::store::query::Search;
    use crate::store::{Postgres, Sqlite, Store};

    /// A query of `query`'s filters (`name=value&...`, `q` the search), every event listed.
    fn query(query: &str) -> AuditQuery {
        let mut q = all();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap();
            match name {
                "q" => q.search = Some(Search::parse(value).unwrap()),
                "since" => q.since = Some(value.into()),
                "until" => q.until = Some(value.into()),
                n => q.fields.push((
                    AuditField::parse(n).unwrap(),
                    Pattern::parse(value).unwrap(),
                )),
            }
        }
        q
    }

    /// The time of event `i`: ten per hour, from midnight.
    fn time(i: u32) -> String {
        format!("2026-11-29T{:02}:{:02}:00.000000Z", i / 10, i % 10 * 5)
    }

    /// 100 events of three containers, two rules, and words `curl`, `curl7` (a run), `wget`;
    /// one (SQLite: its chunk's words left to FTS5) with text outside ASCII.
    fn events() -> Vec<crate::events::Event> {
        (0..100)
            .map(|i| {
                let mut e = event(&format!("e{i}"), i, &time(i));
                e.container = ["web", "db", "cache"][i as usize % 3].into();
                e.rule = Some(["r1", "r2"][i as usize % 2].into());
                e.message = match (i, i % 4) {
                    (20, _) => "café curl",
                    (_, 0) => "curl x",
                    (_, 1) => "curl7 y",
                    (_, 2) => "wget z",
                    _ => "other",
                }
                .into();
                e
            })
            .collect()
    }

    /// The queries the bitmaps answer, of two and three conditions, globs, whole words and
    /// prefixes, time ranges that cut chunks.
    const QUERIES: [&str; 9] = [
        "container=web&rule=r1",
        "container=w*&rule=r1",
        "container=web&rule=r2&type=process",
        "q=curl&container=web",
        "q=\"curl\"&container=web",
        "q=cur&rule=r1&effect=alert",
        "container=db&rule=r2&since=2026-11-29T02:30:00.000000Z&until=2026-11-29T07:15:00.000000Z",
        "container=db&rule=r2&since=2026-11-29T03:00:00.000000Z",
        "container=absent&rule=r1",
    ];

    /// Runs a function in a snapshot of a store.
    type With<'a> = &'a dyn Fn(
        &mut dyn FnMut(&mut dyn Reader) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// What the bitmaps count of each of [`QUERIES`] (`None`: they do not answer), and the
    /// events' own count.
    fn counts(with: With) -> Vec<(Option<u64>, u64)> {
        QUERIES
            .iter()
            .map(|text| {
                let q = query(text);
                let mut out = (None, 0);
                with(&mut |r| {
                    out = (count(r, &q, 4)?, lists::count(r, &q)?);
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{text}: {e}"));
                out
            })
            .collect()
    }

    /// Seals every chunk waiting; how many.
    fn seal_all(s: &dyn Store) -> usize {
        std::iter::from_fn(|| s.seal(true).unwrap()).count()
    }

    /// On each store, chunks of 16 positions: the bitmaps answer only once the chunks are
    /// sealed, and then as the events do; retention unseals the chunks it deletes from (their
    /// counts then read the events), they are sealed again; a chunk read before retention deleted
    /// from it is not written.
    fn check(
        name: &str,
        s: &dyn Store,
        with: With,
        store_chunk: &dyn Fn(&Built) -> Option<Sealed>,
    ) {
        let events = events();
        for batch in events.chunks(10) {
            s.add_audits(batch, "defender", "t").unwrap();
        }
        // 100 positions, more than the rest a count reads: the events count.
        for ((bits, _), text) in counts(with).into_iter().zip(QUERIES) {
            assert_eq!(bits, None, "{name}: {text} before sealing");
        }
        // Positions 1 to 100: chunks 0 to 5 are complete, 6 (96 to 100) is sealed in part.
        assert_eq!(seal_all(s), 7, "{name}");
        for ((bits, events), text) in counts(with).into_iter().zip(QUERIES) {
            assert_eq!(bits, Some(events), "{name}: {text}");
        }
        let expected: Vec<u64> = counts(with).into_iter().map(|(_, n)| n).collect();
        assert_ne!(expected[0], 0, "{name}: the data select something");
        for (text, n) in QUERIES.iter().zip(&expected) {
            assert_eq!(s.count_audits(&query(text)).unwrap(), *n, "{name}: {text}");
        }
        // Retention: events before 03:00 (positions 1 to 30) go; chunks 0 and 1 are unsealed.
        s.expire("2026-11-29T03:00:00.000000Z", 7).unwrap();
        let after = counts(with);
        for ((bits, events), text) in after.iter().zip(QUERIES) {
            assert!(
                bits.is_none_or(|b| b == *events),
                "{name}: {text} after retention"
            );
        }
        assert_eq!(seal_all(s), 1, "{name}: chunk 1 (position 31) sealed again");
        for ((bits, events), text) in counts(with).into_iter().zip(QUERIES) {
            assert_eq!(bits, Some(events), "{name}: {text} resealed");
        }
        // Twenty more events (to position 120), then chunk 6 read; retention deletes before it
        // is written.
        let more: Vec<_> = (100..120)
            .map(|i| event(&format!("e{i}"), i, &time(i)))
            .collect();
        s.add_audits(&more, "defender", "t").unwrap();
        // Chunk 6 past its part (101 to 111) and chunk 7 are read from the events.
        for ((bits, events), text) in counts(with).into_iter().zip(QUERIES) {
            assert_eq!(bits, Some(events), "{name}: {text} past the part");
        }
        let mut built = None;
        with(&mut |r| {
            built = next(r, 4, true)?;
            Ok(())
        })
        .unwrap();
        let built = built.expect("chunk 6 is complete");
        assert_eq!((built.chunk, built.upto), (6, None), "{name}");
        // Events before 09:00 go (positions to 90: chunks 1 to 4, and 5 in part).
        s.expire("2026-11-29T09:40:00.000000Z", 1000).unwrap();
        assert_eq!(
            store_chunk(&built),
            None,
            "{name}: written after a deletion"
        );
        // Read again: what is left of chunk 5, 6, and the part of 7 (positions 112 to 120).
        assert_eq!(seal_all(s), 3, "{name}");
        for ((bits, events), text) in counts(with).into_iter().zip(QUERIES) {
            assert_eq!(bits, Some(events), "{name}: {text} at the end");
        }
    }

    #[test]
    fn counts_of_several_conditions_are_the_sealed_chunks_bitmaps_and_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Sqlite::open(&dir.path().join("db")).unwrap().chunks(4);
        check(
            "SQLite",
            &sqlite,
            &|f| sqlite.with_reader(|r| f(r)),
            &|built| sqlite.store_chunk(built).unwrap(),
        );
        let (postgres, _): (Postgres, String) = crate::store::postgres::tests::store();
        let postgres = postgres.chunks(4);
        check(
            "PostgreSQL",
            &postgres,
            &|f| postgres.read(|r| f(r)),
            &|built| postgres.store_chunk(built).unwrap(),
        );
    }

    /// On each store, chunks of 64 positions (so a page lists at most 2 matches): chunk 0
    /// (positions to 63) sealed, chunk 1 to position 100 sealed in part, positions 101 to 103
    /// the rest. `wasm` holds events 10 and 90 (positions 11 and 91, rule r1), 100 (r2) and 102
    /// (r1). The pages of two conditions whose matches in the sealed chunk are few list them
    /// (the bitmaps' positions, then the rest's rows), and are what the conditions select,
    /// newest first.
    fn check_pages(name: &str, s: &dyn Store, with: With) {
        let mut events = events();
        events[10].container = "wasm".into();
        events[90].container = "wasm".into();
        s.add_audits(&events, "defender", "t").unwrap();
        assert_eq!(seal_all(s), 2, "{name}: chunk 0, and chunk 1 in part");
        let more: Vec<_> = [("wasm", "r2"), ("web", "r1"), ("wasm", "r1")]
            .into_iter()
            .enumerate()
            .map(|(k, (container, rule))| {
                let i = 100 + k as u32;
                let mut e = event(&format!("e{i}"), i, &time(i));
                e.container = container.into();
                e.rule = Some(rule.into());
                e
            })
            .collect();
        s.add_audits(&more, "defender", "t").unwrap();
        events.extend(more);
        // Three positions past a part of 37: not enough to seal it again.
        assert_eq!(seal_all(s), 0, "{name}");
        let rest = vec![(101, 104)];
        let listing = |values: &[&str], seqs: &[i64]| Listed {
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            seqs: seqs.to_vec(),
            rest: rest.clone(),
        };
        let since = "since=2026-11-29T05:00:00.000000Z";
        let cases = [
            // The glob's `wasm` listed (two matches sealed), `web` walked (more than 2).
            ("container=w*&rule=r1", Some(listing(&["wasm"], &[11, 91]))),
            // No sealed match of `wasm`: its arm reads the rest alone.
            ("container=w*&rule=r2", Some(listing(&["wasm"], &[]))),
            ("container=wasm&rule=r1", Some(listing(&[], &[11, 91]))),
            (
                &format!("container=w*&rule=r1&{since}"),
                Some(listing(&["wasm"], &[11, 91])),
            ),
            ("container=absent&rule=r1", Some(listing(&[], &[]))),
            // Too many: the walks answer.
            ("container=web&rule=r1", None),
            ("container=*b*&rule=r1", None),
            // Four values: `wasm` listed.
            ("container=*&rule=r1", Some(listing(&["wasm"], &[11, 91]))),
        ];
        for (text, want) in cases {
            for (offset, limit) in [(0, 3), (2, 3), (0, 100)] {
                let q = AuditQuery {
                    offset,
                    limit,
                    ..query(text)
                };
                with(&mut |r| {
                    let expanded = lists::expand(r, &q)?;
                    let over = lists::merged_over(&expanded);
                    assert_eq!(listed(r, &q, &expanded, over, 6)?, want, "{name}: {text}");
                    Ok(())
                })
                .unwrap();
                let mut selected: Vec<&crate::events::Event> = events
                    .iter()
                    .filter(|e| {
                        q.fields
                            .iter()
                            .all(|(f, p)| rollup::value(e, *f).is_some_and(|v| p.matches(v)))
                            && q.since.as_ref().is_none_or(|t| e.time >= *t)
                    })
                    .collect();
                selected.sort_by(|a, b| b.time.cmp(&a.time));
                let want: Vec<&str> = selected
                    .iter()
                    .skip(offset as usize)
                    .take(limit as usize)
                    .map(|e| e.id.as_str())
                    .collect();
                let got = ids(s, &q);
                assert_eq!(got, want, "{name}: {text} offset {offset} limit {limit}");
            }
        }
    }

    #[test]
    fn pages_of_few_matches_read_the_bitmaps_positions_and_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Sqlite::open(&dir.path().join("db")).unwrap().chunks(6);
        check_pages("SQLite", &sqlite, &|f| sqlite.with_reader(|r| f(r)));
        let (postgres, _): (Postgres, String) = crate::store::postgres::tests::store();
        let postgres = postgres.chunks(6);
        check_pages("PostgreSQL", &postgres, &|f| postgres.read(|r| f(r)));
    }

    /// A chunk sealed in part is extended by the events past its part, not read again: a
    /// bitmap deleted from the part behind the store's back stays missing once the chunk is
    /// complete (SQLite, chunks of 16).
    #[test]
    fn a_part_is_extended_by_the_events_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = Sqlite::open(&path).unwrap().chunks(4);
        let events = events();
        // Positions 1 to 20: chunk 0 whole, chunk 1 to position 20 (events 15 to 19).
        s.add_audits(&events[..20], "defender", "t").unwrap();
        assert_eq!(seal_all(&s), 2);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "DELETE FROM audit_bits WHERE chunk = 1 AND key = 'container:web'",
                [],
            )
            .unwrap();
        // Positions 21 to 40: chunk 1 complete, extended; chunk 2 to position 40.
        s.add_audits(&events[20..40], "defender", "t").unwrap();
        let sealed: Vec<Sealed> = std::iter::from_fn(|| s.seal(true).unwrap()).collect();
        assert_eq!(
            sealed,
            [
                Sealed {
                    chunk: 1,
                    events: 16,
                    upto: None
                },
                Sealed {
                    chunk: 2,
                    events: 9,
                    upto: Some(41)
                }
            ]
        );
        // `web` and `r1`: events 0, 6, ..., 36; event 18 (position 19) was in the part.
        let q = query("container=web&rule=r1");
        let mut counted = (None, 0);
        s.with_reader(|r| {
            counted = (count(r, &q, 4)?, lists::count(r, &q)?);
            Ok(())
        })
        .unwrap();
        assert_eq!(counted, (Some(6), 7));
    }

    #[test]
    fn a_chunk_is_written_over_a_smaller_part_only() {
        let cases = [
            (None, None, Write::Add),
            (None, Some(40), Write::Add),
            (Some(None), None, Write::Skip),
            (Some(None), Some(40), Write::Skip),
            (Some(Some(40)), Some(40), Write::Skip),
            (Some(Some(40)), Some(30), Write::Skip),
            (Some(Some(40)), Some(50), Write::Replace),
            (Some(Some(40)), None, Write::Replace),
        ];
        for (there, built, want) in cases {
            assert_eq!(write(there, built), want, "{there:?} {built:?}");
        }
    }

    #[test]
    fn the_newest_chunks_part_is_sealed_again_once_it_doubles() {
        // (shift, positions sealed in the part, new positions past it, sealed again)
        let cases = [
            (16, 0, 4_095, false),
            (16, 0, 4_096, true),
            (16, 4_096, 4_095, false),
            (16, 4_096, 4_096, true),
            (16, 40_000, 39_999, false),
            (4, 0, 1, true),
            (4, 5, 4, false),
        ];
        for (shift, sealed, new, want) in cases {
            assert_eq!(
                new >= parts_grow(shift, sealed),
                want,
                "{shift} {sealed} {new}"
            );
        }
    }

    #[test]
    fn a_words_key_is_its_own_or_its_runs() {
        let long = "a".repeat(LONGEST + 1);
        let cases = [
            ("curl", Some("w:curl".to_owned())),
            ("curl7", Some("r:curl".into())),
            ("x86", Some("r:x".into())),
            ("4444", None),
            ("é", None),
            ("curlé", Some("r:curl".into())),
            (long.as_str(), Some(format!("r:{}", &long[..LONGEST]))),
        ];
        for (word, want) in cases {
            assert_eq!(keys_of_word(word), want, "{word}");
        }
    }

    #[test]
    fn sqlite_words_are_fts5s_ascii_tokens_and_none_outside_ascii() {
        let words = event_words(Dialect::Sqlite, &[Some("curl -s http://X.sh"), None]).unwrap();
        assert_eq!(
            words.into_iter().collect::<Vec<_>>(),
            ["curl", "http", "s", "sh", "x"]
        );
        assert_eq!(event_words(Dialect::Sqlite, &[Some("café")]), None);
    }

    #[test]
    fn conditions_become_keys_or_nothing() {
        let exact = |k: &[&str]| Keys {
            keys: k.iter().map(|k| (*k).to_owned()).collect(),
            ranges: Vec::new(),
        };
        let cases: [(&str, Option<Vec<Keys>>); 8] = [
            (
                "container=web&rule=r",
                Some(vec![exact(&["container:web"]), exact(&["rule:r"])]),
            ),
            (
                "type=d*&effect=prevent",
                Some(vec![
                    exact(&["type:dns", "type:defender"]),
                    exact(&["effect:prevent"]),
                ]),
            ),
            (
                "q=\"curl\"&container=web",
                Some(vec![exact(&["container:web"]), exact(&["w:curl"])]),
            ),
            (
                "q=cuz&rule=r",
                Some(vec![
                    exact(&["rule:r"]),
                    Keys {
                        keys: Vec::new(),
                        ranges: vec![
                            ("w:cuz".into(), "w:cu{".into()),
                            ("r:cuz".into(), "r:cu{".into()),
                        ],
                    },
                ]),
            ),
            ("ip=10.0.0.1&rule=r", None),
            ("q=x86&rule=r", None),
            ("q=/bin/sh&rule=r", None),
            // A glob the walk did not list (`expanded` has no values for it).
            ("container=web*&rule=r", None),
        ];
        for (text, want) in cases {
            let q = query(text);
            assert_eq!(keys(&q, &vec![None; q.fields.len()]), want, "{text}");
        }
    }
}
