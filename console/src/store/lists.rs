//! The plans of the audit list that stay fast however many events match: a glob on an indexed
//! field expanded into the stored values it matches (read from the field's index by skipping from
//! one distinct value to the next), the list then merged from one index range per value, the count
//! an `IN` of them; and the text search's page read either from its matches sorted by time (few)
//! or from the events newest first, each looked up among its matches (many; on PostgreSQL each
//! one's words checked). Every plan returns what `ORDER BY time DESC, seq DESC` over all the
//! matches would. They read through a [`Reader`], so that SQLite and PostgreSQL answer by the same
//! plans, but for the few places where PostgreSQL's indexes ask for another (the text search's
//! walk, a page after an offset).

use super::audits::{COLUMNS, column, conditions, page};
use super::query::{AuditField, AuditQuery, GlobPart, Pattern, Search};
use super::sql::{self, Dialect, Reader, Value};
use super::{StoreError, bitmaps, rollup, words};

/// At most this many values a glob may expand into; past it the glob is checked by the backend's
/// match (`GLOB`, `~`) on every candidate row (correct, and as slow as it was). Also keeps the
/// merged list within SQLite's 500 terms of a compound `SELECT`.
pub const MAX_VALUES: usize = 256;

/// At most this many distinct values read from an index to expand one glob (each one index seek):
/// a glob with no literal start over a field of millions of distinct values stops here.
pub const MAX_STEPS: usize = 10_000;

/// The text search's threshold: when fewer than this many events (plus the page's `offset +
/// limit`) contain the words, they are read and sorted by time; otherwise the events are read
/// newest first and each looked up among the matches until the page is full.
pub const PROBE: u64 = 2_000;

/// Per condition of [`AuditQuery::fields`], in their order: the stored values a glob matches,
/// or `None` (an exact value, a field without an index, a glob past the bounds).
pub type Expanded = Vec<Option<Vec<String>>>;

/// Whether a glob on `field` is expanded: text fields with a `(field, time)` index. `pid` and
/// `port` are numbers (their index order is not their text's), `source`, `cmdline` and `url` have
/// no index.
pub(super) fn expandable(field: AuditField) -> bool {
    !matches!(
        field,
        AuditField::Pid
            | AuditField::Port
            | AuditField::Source
            | AuditField::Cmdline
            | AuditField::Url
    )
}

/// A glob's literal start: every value it matches starts so.
fn literal_start(parts: &[GlobPart]) -> &str {
    match parts.first() {
        Some(GlobPart::Text(text)) => text,
        _ => "",
    }
}

/// What a walk over a field's distinct values decided.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Keep the value and go on.
    Keep,
    /// Not a match; go on.
    Skip,
    /// Past the values that start with the literal start: the expansion is complete.
    Done,
    /// Too many values or steps: give up, `GLOB` decides.
    TooMany,
}

/// The decision for the `steps`-th distinct value (counted from 1) of a walk that has `kept`
/// values so far.
fn step(pattern: &Pattern, start: &str, value: &str, steps: usize, kept: usize) -> Step {
    if !value.starts_with(start) {
        Step::Done
    } else if steps > MAX_STEPS {
        Step::TooMany
    } else if !pattern.matches(value) {
        Step::Skip
    } else if kept == MAX_VALUES {
        Step::TooMany
    } else {
        Step::Keep
    }
}

/// The SQL of the distinct values of `column` from `?1` on, ascending: each the smallest value
/// greater than the previous, one seek in the field's index (a partial index holds the rows
/// where the field is present, which `>=` and `>` imply).
pub(super) fn distinct_values_sql(column: &str) -> String {
    format!(
        "WITH RECURSIVE v(x) AS (
             SELECT min({column}) FROM audits WHERE {column} >= ?1
             UNION ALL
             SELECT (SELECT min({column}) FROM audits WHERE {column} > v.x) FROM v
             WHERE v.x IS NOT NULL)
         SELECT x FROM v WHERE x IS NOT NULL"
    )
}

/// The stored values of `field` that `glob` matches, ascending; `None` past the bounds.
fn glob_values(
    r: &mut dyn Reader,
    field: AuditField,
    pattern: &Pattern,
    parts: &[GlobPart],
) -> Result<Option<Vec<String>>, StoreError> {
    let start = literal_start(parts);
    let mut kept = Some(Vec::new());
    let mut steps = 0;
    // Rows come one seek at a time: stopping here stops the walk.
    r.rows(
        &distinct_values_sql(column(field)),
        &[Value::Text(start.into())],
        &mut |row| {
            let value = sql::text(row, 0)?;
            steps += 1;
            let Some(values) = &mut kept else {
                return Ok(false);
            };
            Ok(match step(pattern, start, &value, steps, values.len()) {
                Step::Keep => {
                    values.push(value);
                    true
                }
                Step::Skip => true,
                Step::Done => false,
                Step::TooMany => {
                    kept = None;
                    false
                }
            })
        },
    )?;
    Ok(kept)
}

/// The expansion of each glob of `q` (see [`Expanded`]).
pub fn expand(r: &mut dyn Reader, q: &AuditQuery) -> Result<Expanded, StoreError> {
    q.fields
        .iter()
        .map(|(field, pattern)| match pattern {
            Pattern::Glob(parts) if expandable(*field) => glob_values(r, *field, pattern, parts),
            _ => Ok(None),
        })
        .collect()
}

/// The condition the list is merged over: the expanded glob of fewest values (each value one
/// index range to read), if any glob expanded into two or more. None when a glob matched no value
/// or one value (the `IN` of the plain plan is then one index range, or nothing).
pub(super) fn merged_over(expanded: &Expanded) -> Option<usize> {
    let sizes = expanded
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().map(|values| (values.len(), i)));
    match sizes.min()? {
        (0 | 1, _) => None,
        (_, i) => Some(i),
    }
}

/// The SQL of a page, and its parameters: merged over a glob's values, the text search's matches
/// sorted by time or its page found newest first, the few matches the bitmap index lists
/// (chunks of `2^shift` positions), or the conditions as they are; a deep offset first moved
/// past the hours it skips ([`rollup::skip_hours`]). (What it reads to decide, the globs'
/// values, the text search's matches and the bitmaps, is read through `r`.)
pub fn select(
    r: &mut dyn Reader,
    q: &AuditQuery,
    shift: u32,
) -> Result<(String, Vec<Value>), StoreError> {
    let skipped = rollup::skip_hours(r, q, rollup::DEEP)?;
    let q = skipped.as_ref().unwrap_or(q);
    let one = words::one_word(r, q)?;
    let q = one.as_ref().map_or(q, |(q, _)| q);
    let expanded = expand(r, q)?;
    if let Some(search) = &q.search {
        if let Some(found) = by_arrival(r, q, &expanded, search)? {
            return Ok(by_seq(q, found));
        }
        let wanted = q.offset as usize + q.limit as usize;
        if let Some(found) = walked(r, q, &expanded, search, wanted)? {
            return Ok(by_seq(q, found));
        }
    } else {
        let over = merged_over(&expanded);
        let listed = bitmaps::listed(r, q, &expanded, over, shift)?;
        if over.is_some() || listed.is_some() {
            return Ok(merged(r, q, &expanded, over, listed.as_ref()));
        }
    }
    Ok(sorted(r, q, &expanded, COLUMNS))
}

/// How many more of a text search's last arrivals than twice its page [`by_arrival`] reads.
const ARRIVALS: u64 = 256;

/// The largest `offset + limit` [`by_arrival`] answers (the API's largest page).
const MOST_ARRIVALS: u64 = 10_000;

/// At most this many of a search's last arrivals [`by_arrival`] reads (each one row read by
/// `seq`).
const MOST_READS: u64 = 20_000;

/// At most this many events [`by_arrival`] reads that arrived before the matches it read and are
/// newer than its page's last (each an index entry), to look for the words among them.
const MOST_LATE: u64 = 10_000;

/// How many events one statement reads by `seq` (within SQLite's limit on parameters).
pub(super) const CHUNK: usize = 500;

/// The newest `offset + limit` events of a text search and `q`'s other conditions, found among
/// the search's last arrivals, without reading every match: the `seq`s of its last `2 × (offset
/// + limit) + ARRIVALS` matches to arrive, from the end of the words' lists; their rows' times,
/// and the other conditions checked; the newest of those by time. When the other conditions
/// leave fewer than the page (a glob of a few containers among many), more arrivals are read, as
/// many again as the share they left says is needed twice over (up to [`MOST_READS`]). Events arrive in about the
/// order of their times, but not exactly (a defender's spool is sent late): an earlier arrival
/// may still be newer. So unless every match was read, the events of the other conditions that
/// arrived before the earliest read and are newer than the page's last (the index newest first,
/// down to the page's last: about the page's events, and those sent late) are read, and the
/// words' lists between the least and greatest of their `seq`s (FTS5 seeks there): those that
/// hold the words join the page, in their place by time. `None` when it cannot tell (the page's
/// last not among those read, more than [`MOST_LATE`] such events), or on PostgreSQL (no such
/// read): [`select`]'s other plans answer.
fn by_arrival(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    search: &Search,
) -> Result<Option<Vec<i64>>, StoreError> {
    let dialect = r.dialect();
    let Some(sql) = dialect.search_newest() else {
        return Ok(None);
    };
    let wanted = u64::from(q.offset) + u64::from(q.limit);
    match wanted {
        0 => return Ok(Some(Vec::new())),
        // A download's million rows: each read by `seq` would cost more than the other plans'
        // index entries.
        w if w > MOST_ARRIVALS => return Ok(None),
        _ => {}
    }
    let Some((_, words)) = dialect.search_seqs(search) else {
        return Ok(None);
    };
    let mut reads = 2 * wanted + ARRIVALS;
    let (arrived, mut found) = loop {
        let arrived = sql::first_column(
            r,
            sql,
            &[words.clone(), Value::Integer(reads as i64)],
            sql::int,
        )?;
        let mut found: Vec<(String, i64)> = Vec::with_capacity(arrived.len());
        by_seqs(r, q, expanded, &arrived, "time, seq", &mut |row| {
            found.push((sql::text(row, 0)?, sql::int(row, 1)?));
            Ok(true)
        })?;
        let kept = found.len() as u64;
        if kept >= wanted || (arrived.len() as u64) < reads || reads == MOST_READS {
            break (arrived, found);
        }
        reads = MOST_READS.min(reads * (2 * wanted).div_ceil(kept.max(1)).clamp(2, 16));
    };
    found.sort_unstable_by(|a, b| b.cmp(a));
    found.truncate(wanted as usize);
    if (arrived.len() as u64) == reads {
        // Not every match read: the page's last must be among those read, and the earlier
        // arrivals of the other conditions newer than it are on the page if they hold the words.
        let (Some((time, seq)), Some(earliest)) = (found.get(wanted as usize - 1), arrived.last())
        else {
            return Ok(None);
        };
        let (sql, values) = late_select(r, q, expanded, (time, *seq), *earliest);
        let mut late: Vec<(String, i64)> = Vec::new();
        r.rows(&sql, &values, &mut |row| {
            late.push((sql::text(row, 0)?, sql::int(row, 1)?));
            Ok(late.len() as u64 <= MOST_LATE)
        })?;
        if late.len() as u64 > MOST_LATE {
            return Ok(None);
        }
        if !late.is_empty() {
            // Late events whose words cannot be read: no page from here (never one without them).
            if dialect.search_between().is_none() {
                return Ok(None);
            }
            let mut holding = std::collections::HashSet::new();
            let seqs = late.iter().map(|(_, seq)| *seq).collect();
            words::holding(r, &words, seqs, &mut |seq| {
                holding.insert(seq);
            })?;
            found.extend(late.into_iter().filter(|(_, seq)| holding.contains(seq)));
            found.sort_unstable_by(|a, b| b.cmp(a));
            found.truncate(wanted as usize);
        }
    }
    Ok(Some(found.into_iter().map(|(_, seq)| seq).collect()))
}

/// Reads `columns` of the events of `seqs` that `q`'s conditions but its text search select, by
/// `seq`, [`CHUNK`] at a time (one statement each; `row` is called with each statement's rows).
pub(super) fn by_seqs(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    seqs: &[i64],
    columns: &str,
    row: &mut dyn FnMut(&[Value]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    for chunk in seqs.chunks(CHUNK) {
        let (sql, values) = seqs_select(r, q, expanded, chunk, columns);
        r.rows(&sql, &values, row)?;
    }
    Ok(())
}

/// The statement of [`by_seqs`] for one chunk of `seqs`.
pub(super) fn seqs_select(
    r: &dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    seqs: &[i64],
    columns: &str,
) -> (String, Vec<Value>) {
    let mut values: Vec<Value> = seqs.iter().map(|s| Value::Integer(*s)).collect();
    let list: Vec<String> = (1..=seqs.len()).map(|n| format!("?{n}")).collect();
    let conditions = others(r, q, expanded, &mut values);
    let sql = format!(
        "SELECT {columns} FROM {} WHERE seq IN ({}) AND {conditions}",
        r.dialect().by_key("audits"),
        list.join(", ")
    );
    (sql, values)
}

/// The `seq`s of the newest `n` events of `q` (its limit and offset aside), newest first, by the
/// plans of [`select`]: a glob of several values is a merge of their index ranges read newest
/// first, page by page (see [`merge`]). What a summary that the rollup cannot answer is computed
/// over.
pub fn newest(r: &mut dyn Reader, q: &AuditQuery, n: u32) -> Result<Vec<i64>, StoreError> {
    let q = AuditQuery {
        limit: n,
        offset: 0,
        ..q.clone()
    };
    let q = words::one_word(r, &q)?.map_or(q, |(q, _)| q);
    let expanded = expand(r, &q)?;
    if let Some(search) = &q.search {
        if let Some(found) = walked(r, &q, &expanded, search, n as usize)? {
            return Ok(found);
        }
    } else if let Some(i) = merged_over(&expanded) {
        return merge(r, &q, &expanded, i);
    }
    let (sql, values) = sorted(r, &q, &expanded, "seq");
    seqs(r, &sql, &values, usize::MAX, |_| true)
}

/// The first column (a `seq`) of the rows of `sql` that `keep` keeps, until `n` are kept.
fn seqs(
    r: &mut dyn Reader,
    sql: &str,
    values: &[Value],
    n: usize,
    keep: impl Fn(i64) -> bool,
) -> Result<Vec<i64>, StoreError> {
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    r.rows(sql, values, &mut |row| {
        let seq = sql::int(row, 0)?;
        if keep(seq) {
            out.push(seq);
        }
        Ok(out.len() < n)
    })?;
    Ok(out)
}

/// The smallest page of one value's range [`merge`] reads.
const FIRST_PAGE: usize = 16;

/// One value's index range as [`merge`] reads it: the entries of the last page not yet taken,
/// and where the next page starts.
struct Range {
    /// The range's condition (`values` up to `bound`), then the page's bounds.
    values: Vec<Value>,
    bound: usize,
    /// Newest first: (time, seq).
    page: std::collections::VecDeque<(String, i64)>,
    /// How many entries the next page asks for (twice the last, at most what the merge takes in
    /// all), or `None` when the last page was the range's end.
    next: Option<usize>,
}

/// The statements of a range's pages, on `conditions` of `bound` parameters: its first page
/// (the next parameter its size), and a page after an entry (the next three its time, its `seq`
/// and the page's size).
pub(super) fn pages(conditions: &str, bound: usize) -> [String; 2] {
    let order = "ORDER BY time DESC, seq DESC";
    [
        format!(
            "SELECT time, seq FROM audits WHERE {conditions} {order} LIMIT ?{}",
            bound + 1
        ),
        format!(
            "SELECT time, seq FROM audits WHERE {conditions} AND (time, seq) < (?{}, ?{}) \
             {order} LIMIT ?{}",
            bound + 1,
            bound + 2,
            bound + 3
        ),
    ]
}

impl Range {
    /// Replaces the page (all taken but its last entry, or none yet) by the next one: `sqls`
    /// reads a range's first page, and a page after a key; no page is longer than `most`.
    fn refill(
        &mut self,
        r: &mut dyn Reader,
        sqls: &[String; 2],
        most: usize,
    ) -> Result<(), StoreError> {
        let Some(size) = self.next else {
            self.page.clear();
            return Ok(());
        };
        self.values.truncate(self.bound);
        let sql = match self.page.back() {
            None => &sqls[0],
            Some((time, seq)) => {
                self.values.push(Value::Text(time.clone()));
                self.values.push(Value::Integer(*seq));
                &sqls[1]
            }
        };
        self.values.push(Value::Integer(size as i64));
        self.page.clear();
        let page = &mut self.page;
        r.rows(sql, &self.values, &mut |row| {
            page.push_back((sql::text(row, 0)?, sql::int(row, 1)?));
            Ok(true)
        })?;
        self.next = (self.page.len() == size).then_some(size.saturating_mul(2).min(most));
        Ok(())
    }
}

/// The newest `q.limit` events of the values of the glob at condition `i`, a merge of sorted
/// lists: each value's index range read newest first in pages, the newest head taken each time.
/// A range's pages grow (from `limit / values`, at least [`FIRST_PAGE`], doubling), each keyed
/// after the last entry read (`(time, seq) <`, a seek in the range): `limit` entries read in all,
/// at most twice over plus a first page per value, not `limit` per value. (The pages take one
/// statement at a time, which a [`Reader`] holds; not every value's cursor open at once.)
fn merge(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    i: usize,
) -> Result<Vec<i64>, StoreError> {
    let n = q.limit as usize;
    let Some(matched) = expanded[i].as_ref().filter(|_| n > 0) else {
        return Ok(Vec::new());
    };
    let first = (n / matched.len().max(1)).max(FIRST_PAGE);
    let mut ranges = Vec::with_capacity(matched.len());
    let mut sqls = None;
    for value in matched {
        let mut one = q.clone();
        one.fields[i].1 = Pattern::Exact(value.clone());
        let mut values = Vec::new();
        let conditions = conditions(r.dialect(), &one, expanded, &mut values);
        let bound = values.len();
        // The same statements for every value: only its parameter differs.
        sqls.get_or_insert_with(|| pages(&conditions, bound));
        ranges.push(Range {
            values,
            bound,
            page: Default::default(),
            next: Some(first.min(n)),
        });
    }
    let Some(sqls) = &sqls else {
        return Ok(Vec::new());
    };
    // The head of each range: (time, seq) largest first, with the range it came from.
    let mut heads = std::collections::BinaryHeap::new();
    for (at, range) in ranges.iter_mut().enumerate() {
        range.refill(r, sqls, n)?;
        if let Some(entry) = range.page.front() {
            heads.push((entry.clone(), at));
        }
    }
    let mut out = Vec::new();
    while out.len() < n {
        let Some(((_, seq), at)) = heads.pop() else {
            break;
        };
        out.push(seq);
        let range = &mut ranges[at];
        if range.page.len() == 1 {
            // The page's last entry is the next page's key: kept until it is read.
            range.refill(r, sqls, n)?;
        } else {
            range.page.pop_front();
        }
        if let Some(entry) = range.page.front() {
            heads.push((entry.clone(), at));
        }
    }
    Ok(out)
}

/// The conditions as they are, in time order: one filter's index read newest first, or the
/// text search's few matches read by `seq` and sorted; `columns` of the page. On PostgreSQL a
/// page after an `offset` skips index entries only: the page's keys are read first (`time` and
/// `seq`, which every filter's index holds: an index-only scan), then its rows by `seq`. Asked
/// for the columns at once, PostgreSQL reads the table row of every entry it skips (offset
/// 500,000 of 1,000,000: 64,095 table pages, 0.2 s).
fn sorted(
    r: &dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    columns: &str,
) -> (String, Vec<Value>) {
    let mut values = Vec::new();
    let conditions = conditions(r.dialect(), q, expanded, &mut values);
    let page = page(q, &mut values);
    let order = "ORDER BY time DESC, seq DESC";
    let sql = match (r.dialect(), q.offset) {
        (Dialect::Postgres, 1..) => format!(
            "SELECT {columns} FROM (SELECT seq AS s, time AS t FROM audits WHERE {conditions} \
             {order} {page}) AS p JOIN audits ON audits.seq = p.s ORDER BY p.t DESC, p.s DESC"
        ),
        _ => format!("SELECT {columns} FROM audits WHERE {conditions} {order} {page}"),
    };
    (sql, values)
}

/// A set of `seq`s, such as those a full-text query matches: one bit each, from a top down (a bit
/// per event between the top and the smallest in the set, however many it holds).
#[derive(Default)]
pub(super) struct Matches {
    top: i64,
    bits: Vec<u64>,
    /// How many the set holds.
    pub(super) count: u64,
}

impl Matches {
    /// An empty set of `seq`s at most `top`.
    pub(super) fn below(top: i64) -> Matches {
        Matches {
            top,
            ..Matches::default()
        }
    }

    /// Reads them from the words' index by `sql`, largest first (no event row is read).
    fn read(r: &mut dyn Reader, sql: &str, words: Value) -> Result<Matches, StoreError> {
        let mut m: Option<Matches> = None;
        r.rows(sql, &[words], &mut |row| {
            let seq = sql::int(row, 0)?;
            m.get_or_insert_with(|| Matches::below(seq)).insert(seq);
            Ok(true)
        })?;
        Ok(m.unwrap_or_default())
    }

    /// One more, at most the top and not in the set yet.
    pub(super) fn insert(&mut self, seq: i64) {
        let at = self.top.abs_diff(seq) as usize;
        if at / 64 >= self.bits.len() {
            self.bits.resize(at / 64 + 1, 0);
        }
        self.bits[at / 64] |= 1 << (at % 64);
        self.count += 1;
    }

    pub(super) fn contains(&self, seq: i64) -> bool {
        if self.count == 0 || seq > self.top {
            return false;
        }
        let at = self.top.abs_diff(seq) as usize;
        self.bits
            .get(at / 64)
            .is_some_and(|w| w & (1 << (at % 64)) != 0)
    }
}

/// The `WHERE` clause of `q`'s conditions but its text search, its parameters in `values`.
fn others(r: &dyn Reader, q: &AuditQuery, expanded: &Expanded, values: &mut Vec<Value>) -> String {
    let others = AuditQuery {
        search: None,
        ..q.clone()
    };
    conditions(r.dialect(), &others, expanded, values)
}

/// The `seq`s of the events of `q`'s conditions but its text search, in the order of the index
/// that selects them.
pub(super) fn others_select(
    r: &dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
) -> (String, Vec<Value>) {
    let mut values = Vec::new();
    let conditions = others(r, q, expanded, &mut values);
    (format!("SELECT seq FROM audits WHERE {conditions}"), values)
}

/// The `seq`s of the events of `q`'s conditions but its text search, newest first.
pub(super) fn walk_select(
    r: &dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
) -> (String, Vec<Value>) {
    let (sql, values) = others_select(r, q, expanded);
    (format!("{sql} ORDER BY time DESC, seq DESC"), values)
}

/// The `seq`s of the newest `wanted` events of `q`, found by walking the events of its other
/// conditions newest first and keeping those its text search matches; `None` when the matches
/// are better read and sorted by time. How a walk tells a match depends on the full-text index:
///
/// - SQLite: FTS5's lists hold the matches' `seq`s, read first (no event row); when fewer than
///   [`PROBE`] plus `wanted` events match, they are sorted instead. Asking the index about each
///   event (a `rowid =` with `MATCH`) costs a new FTS5 query per event, about 0.1 ms.
/// - PostgreSQL: a GIN index holds row addresses, not `seq`s, so reading every match's `seq` reads
///   a table page per match (a word in 130,449 of 1,000,000 events: 75,519 pages, 0.4 to 1.2 s),
///   and learning how many match costs as much. The walk checks each event's words instead, and
///   gives up after [`WALK`] events per match wanted (at most [`MOST_WALKED`]): a word that rare
///   among the events walked has few matches, which are sorted.
fn walked(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    search: &Search,
    wanted: usize,
) -> Result<Option<Vec<i64>>, StoreError> {
    let Some((sql, words)) = r.dialect().search_seqs(search) else {
        return walk_words(r, q, expanded, search, wanted);
    };
    if let Some(found) = walk_lists(r, q, expanded, &words, wanted)? {
        return Ok(Some(found));
    }
    let matches = Matches::read(r, sql, words)?;
    if matches.count < PROBE + wanted as u64 {
        return Ok(None);
    }
    let (sql, values) = walk_select(r, q, expanded);
    seqs(r, &sql, &values, wanted, |seq| matches.contains(seq)).map(Some)
}

/// The first walk of [`walk_lists`] reads this many events per match wanted (plus [`ARRIVALS`]):
/// enough for a word in one event of 16 among those of the other conditions.
const WALK_GUESS: usize = 16;

/// The most events [`walk_lists`] reads (an index range, 2 to 3 ms, and the search's lists around
/// them) before it gives up.
const MOST_WALKED_LISTS: usize = 20_000;

/// The walk of [`walked`] on SQLite, without reading every match first: the events of the other
/// conditions newest first (their index, [`walk_select`]), up to `WALK_GUESS × wanted +
/// ARRIVALS` and then up to [`MOST_WALKED_LISTS`], each batch looked up in the search's lists
/// around its `seq`s ([`words::holding`]: one seek per run of them). Reading every match's `seq`
/// first costs the length of its lists (1.3 million entries, about 90 ms, for a word in one event
/// of eight at 10,000,000 events) whatever the page; this costs about the events walked. The
/// matches' `seq`s, newest first, when `wanted` were found or the events ended; else `None`.
fn walk_lists(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    words: &Value,
    wanted: usize,
) -> Result<Option<Vec<i64>>, StoreError> {
    if wanted == 0 {
        return Ok(Some(Vec::new()));
    }
    let (sql, values) = walk_select(r, q, expanded);
    let first = wanted
        .saturating_mul(WALK_GUESS)
        .saturating_add(ARRIVALS as usize)
        .min(MOST_WALKED_LISTS);
    let mut found = Vec::new();
    let mut checked = 0;
    for most in [first, MOST_WALKED_LISTS] {
        if most <= checked {
            continue;
        }
        let mut walked = Vec::new();
        r.rows(&sql, &values, &mut |row| {
            walked.push(sql::int(row, 0)?);
            Ok(walked.len() < most)
        })?;
        let mut holding = std::collections::HashSet::new();
        let batch = walked.get(checked..).unwrap_or_default();
        words::holding(r, words, batch.to_vec(), &mut |seq| {
            holding.insert(seq);
        })?;
        for seq in batch.iter().filter(|seq| holding.contains(seq)) {
            if found.len() == wanted {
                break;
            }
            found.push(*seq);
        }
        if found.len() == wanted || walked.len() < most {
            return Ok(Some(found));
        }
        checked = walked.len();
    }
    Ok(None)
}

/// Events a walk on PostgreSQL reads per match it is to find before it gives up: a word in at
/// least one in 50 of the events walked fills its page by the walk.
pub const WALK: usize = 50;

/// The most events a walk on PostgreSQL reads (about 20 ms): past it the matches are sorted.
pub const MOST_WALKED: usize = 20_000;

/// The walk of [`walked`] on PostgreSQL: the first [`WALK`] × `wanted` (at most [`MOST_WALKED`])
/// events of the other conditions newest first, each with whether its words match. The matches'
/// `seq`s when `wanted` were found or the events ended (every candidate checked), else `None`.
fn walk_words(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    search: &Search,
    wanted: usize,
) -> Result<Option<Vec<i64>>, StoreError> {
    let most = wanted.saturating_mul(WALK).min(MOST_WALKED);
    let (sql, values) = words_walk_select(r, q, expanded, search, most);
    let (mut found, mut read) = (Vec::new(), 0);
    if wanted > 0 {
        r.rows(&sql, &values, &mut |row| {
            read += 1;
            if sql::int(row, 1)? != 0 {
                found.push(sql::int(row, 0)?);
            }
            Ok(found.len() < wanted)
        })?;
    }
    Ok((found.len() == wanted || read < most).then_some(found))
}

/// The statement of a walk on PostgreSQL: the `seq`s of the first `most` events of `q`'s
/// conditions but its text search, newest first (an index read in the list's order), each with
/// whether its words match the search (checked on the event's row, not through the GIN index).
pub(super) fn words_walk_select(
    r: &dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    search: &Search,
    most: usize,
) -> (String, Vec<Value>) {
    let mut values = Vec::new();
    let conditions = others(r, q, expanded, &mut values);
    let words = r.dialect().search(search, &mut values);
    values.push(Value::Integer(i64::try_from(most).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT seq, {words} FROM audits WHERE {conditions} \
         ORDER BY time DESC, seq DESC LIMIT ?{}",
        values.len()
    );
    (sql, values)
}

/// The statement of [`by_arrival`]'s late events: the (time, seq) of those of `q`'s conditions but
/// its text search newer than the page's last (time, seq) that arrived before `earliest`.
pub(super) fn late_select(
    r: &dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    (time, seq): (&str, i64),
    earliest: i64,
) -> (String, Vec<Value>) {
    // Without `since`: the page's last event is at or after it, so everything newer is too, and
    // with it SQLite starts the time index's range there (a week: 2.3 million entries, 0.55 s,
    // at 10,000,000 events) instead of at the page's last event.
    let q = &AuditQuery {
        since: None,
        ..q.clone()
    };
    let mut values = Vec::new();
    let conditions = others(r, q, expanded, &mut values);
    values.extend([
        Value::Text(time.into()),
        Value::Integer(seq),
        Value::Integer(earliest),
    ]);
    let n = values.len();
    let sql = format!(
        // `+seq`: not the rowid's range (every earlier arrival), the index by time (or a
        // filter's) from the page's last on.
        "SELECT time, seq FROM audits WHERE {conditions} AND (time, seq) > (?{}, ?{}) \
         AND +seq < ?{n}",
        n - 2,
        n - 1
    );
    (sql, values)
}

/// The page of `found`, the `seq`s of the newest `offset + limit` events of `q` newest first:
/// its rows read by `seq`.
fn by_seq(q: &AuditQuery, found: Vec<i64>) -> (String, Vec<Value>) {
    let page: Vec<Value> = found
        .into_iter()
        .skip(q.offset as usize)
        .map(Value::Integer)
        .collect();
    // `IN (NULL)`: no row (PostgreSQL has no empty `IN ()`).
    let list: Vec<String> = match page.len() {
        0 => vec!["NULL".into()],
        n => (1..=n).map(|n| format!("?{n}")).collect(),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM audits WHERE seq IN ({}) ORDER BY time DESC, seq DESC",
        list.join(", ")
    );
    (sql, page)
}

/// One subquery per value of the glob `over` that `listed` does not list, each the newest
/// `offset + limit` events of that value (its index range, newest first); for what `listed`
/// lists, the rows of its positions, and the events of the positions outside the sealed chunks
/// (by position), each checked against the conditions (the listed values alone) and the newest
/// `offset + limit` kept; all merged and paged, then the page's rows read by `seq`. A walked
/// value reads at most `offset + limit` index entries of its range.
fn merged(
    r: &dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
    over: Option<usize>,
    listed: Option<&bitmaps::Listed>,
) -> (String, Vec<Value>) {
    let dialect = r.dialect();
    let mut values = vec![Value::Integer(i64::from(q.offset) + i64::from(q.limit))];
    let mut selects = Vec::new();
    if let Some(i) = over {
        for value in expanded[i].iter().flatten() {
            if listed.is_some_and(|l| l.values.contains(value)) {
                continue;
            }
            let mut one = q.clone();
            one.fields[i].1 = Pattern::Exact(value.clone());
            let conditions = conditions(dialect, &one, expanded, &mut values);
            selects.push(format!("SELECT seq, time FROM audits WHERE {conditions}"));
        }
    }
    if let Some(listed) = listed {
        let mut narrowed = expanded.clone();
        if let Some(i) = over {
            narrowed[i] = Some(listed.values.clone());
        }
        for batch in listed.seqs.chunks(CHUNK) {
            let list: Vec<String> = batch
                .iter()
                .map(|seq| {
                    values.push(Value::Integer(*seq));
                    format!("?{}", values.len())
                })
                .collect();
            let conditions = conditions(dialect, q, &narrowed, &mut values);
            selects.push(format!(
                "SELECT seq, time FROM audits WHERE seq IN ({}) AND {conditions}",
                list.join(", ")
            ));
        }
        for (from, to) in &listed.rest {
            values.extend([Value::Integer(*from), Value::Integer(*to)]);
            let (a, b) = (values.len() - 1, values.len());
            let conditions = conditions(dialect, q, &narrowed, &mut values);
            selects.push(format!(
                "SELECT seq, time FROM {} WHERE seq >= ?{a} AND seq < ?{b} AND {conditions}",
                bitmaps::by_position(dialect, q, a, b)
            ));
        }
    }
    if selects.is_empty() {
        selects.push("SELECT seq, time FROM audits WHERE 1 = 0".into());
    }
    let arms: Vec<String> = selects
        .into_iter()
        .enumerate()
        .map(|(n, select)| {
            format!("SELECT * FROM ({select} ORDER BY time DESC, seq DESC LIMIT ?1) AS v{n}")
        })
        .collect();
    let page = page(q, &mut values);
    let sql = format!(
        "SELECT {COLUMNS} FROM (SELECT seq AS s, time AS t FROM ({}) AS m \
         ORDER BY t DESC, s DESC {page}) AS p JOIN audits ON audits.seq = p.s \
         ORDER BY p.t DESC, p.s DESC",
        arms.join(" UNION ALL ")
    );
    (sql, values)
}

/// The SQL that counts the events of `q`, and its parameters: each glob `expanded` an `IN` of its
/// values (a count per index range); a text search alone, the length of its words' lists (each
/// match is an event: the triggers keep the index to the table), no event read.
pub(super) fn count_select(
    r: &dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
) -> (String, Vec<Value>) {
    if let Some(search) = &q.search
        && q.fields.is_empty()
        && q.since.is_none()
        && q.until.is_none()
    {
        let (sql, words) = r.dialect().search_count(search);
        return (sql.into(), vec![words]);
    }
    let mut values = Vec::new();
    let conditions = conditions(r.dialect(), q, expanded, &mut values);
    (
        format!("SELECT count(*) FROM audits WHERE {conditions}"),
        values,
    )
}

/// How many events match, whatever the limit and offset: on SQLite, a text search of one stored
/// word from FTS5's vocabulary ([`words::count`]); otherwise by [`count_select`]'s statement.
pub fn count(r: &mut dyn Reader, q: &AuditQuery) -> Result<u64, StoreError> {
    if let Some(n) = words::count(r, q)? {
        return Ok(n);
    }
    let expanded = expand(r, q)?;
    counted(r, q, &expanded)
}

/// How many events match, by [`count_select`]'s statement.
pub(super) fn counted(
    r: &mut dyn Reader,
    q: &AuditQuery,
    expanded: &Expanded,
) -> Result<u64, StoreError> {
    let (sql, values) = count_select(r, q, expanded);
    let mut n = 0;
    r.rows(&sql, &values, &mut |row| {
        n = sql::number(row, 0)?;
        Ok(false)
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's walk finds a word's newest events by walking the events newest first and looking
    /// each batch up in the word's lists (it reads no list beyond them): the page when found,
    /// every match when the events end first, and nothing (`None`, the other plans then answer)
    /// when [`MOST_WALKED_LISTS`] events hold too few.
    #[test]
    fn the_walk_looks_each_batch_up_in_the_words_lists() {
        use crate::store::audits::tests::{all, event, store};
        use crate::store::sqlite::Snapshot;
        let n = MOST_WALKED_LISTS as u32 + 1_000;
        let events: Vec<_> = (0..n)
            .map(|i| {
                let time = format!(
                    "2026-11-29T{:02}:{:02}:{:02}.000000Z",
                    i / 3600,
                    i / 60 % 60,
                    i % 60
                );
                let mut e = event(&format!("e{i}"), i, &time);
                e.message = match (i % 1_000, i % 10) {
                    (0, _) => "rare curl",
                    (_, 0) => "curl",
                    _ => "other",
                }
                .into();
                e
            })
            .collect();
        let (_dir, s) = store(&events);
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        let walk = |r: &mut Snapshot, word: &str, wanted: usize| {
            let q = AuditQuery {
                search: Some(Search::parse(&format!("\"{word}\"")).unwrap()),
                ..all()
            };
            let (_, words) = r.dialect().search_seqs(q.search.as_ref().unwrap()).unwrap();
            walk_lists(r, &q, &vec![], &words, wanted).unwrap()
        };
        // `seq` is the arrival, in time order: the newest events of the word are the last ones.
        let newest = |every: i64, count: usize| -> Vec<i64> {
            (1..=i64::from(n))
                .rev()
                .filter(|s| (s - 1) % every == 0)
                .take(count)
                .collect()
        };
        assert_eq!(walk(r, "curl", 5), Some(newest(10, 5)));
        assert_eq!(walk(r, "curl", 0), Some(Vec::new()));
        // 20 of the word among the last 20,000 events: it gives up.
        assert_eq!(walk(r, "rare", 100), None);
        // Fewer events of the conditions than the walk reads: every match.
        let q = AuditQuery {
            search: Some(Search::parse("\"rare\"").unwrap()),
            since: Some("2026-11-29T05:00:00.000000Z".into()),
            ..all()
        };
        let (_, words) = r.dialect().search_seqs(q.search.as_ref().unwrap()).unwrap();
        let found = walk_lists(r, &q, &vec![], &words, 100).unwrap().unwrap();
        assert_eq!(
            found,
            newest(1_000, 100)
                .into_iter()
                .filter(|s| *s > 18_000)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_walk_keeps_matches_and_stops_past_its_start_or_its_bounds() {
        let glob = |g: &str| Pattern::parse(g).unwrap();
        let cases = [
            // (glob, start, value, steps, kept) -> step
            ("prod-*", "prod-", "prod-us", 1, 0, Step::Keep),
            ("prod-*", "prod-", "prodx", 1, 0, Step::Done),
            ("prod-*", "prod-", "staging", 2, 1, Step::Done),
            ("prod-?s", "prod-", "prod-eu", 3, 0, Step::Skip),
            ("*shell*", "", "bash", 5, 0, Step::Skip),
            ("*shell*", "", "reverse shell", 6, 0, Step::Keep),
            ("prod-*", "prod-", "prod-x", MAX_STEPS, 0, Step::Keep),
            ("prod-*", "prod-", "prod-x", MAX_STEPS + 1, 0, Step::TooMany),
            ("prod-*", "prod-", "prod-x", 300, MAX_VALUES, Step::TooMany),
            ("prod-?", "prod-", "prod-xy", 300, MAX_VALUES, Step::Skip),
            (
                "prod-*",
                "prod-",
                "zzz",
                MAX_STEPS + 1,
                MAX_VALUES,
                Step::Done,
            ),
        ];
        for (g, start, value, steps, kept, want) in cases {
            assert_eq!(
                step(&glob(g), start, value, steps, kept),
                want,
                "{g} {value} {steps} {kept}"
            );
        }
    }

    #[test]
    fn literal_starts() {
        for (glob, want) in [
            ("prod-*", "prod-"),
            ("*x", ""),
            ("[ab]x*", ""),
            (r"a\*b?", "a*b"),
            ("?", ""),
        ] {
            match Pattern::parse(glob).unwrap() {
                Pattern::Glob(parts) => assert_eq!(literal_start(&parts), want, "{glob}"),
                p => panic!("{glob}: {p:?}"),
            }
        }
    }

    #[test]
    fn the_list_merges_over_the_glob_of_fewest_values() {
        let v = |n: usize| Some((0..n).map(|i| i.to_string()).collect::<Vec<_>>());
        let cases: [(Expanded, Option<usize>); 6] = [
            (vec![], None),
            (vec![None, None], None),
            (vec![None, v(3)], Some(1)),
            (vec![v(5), None, v(2)], Some(2)),
            (vec![v(5), v(1)], None), // one value: the plain plan's `IN` is one range
            (vec![v(0), v(9)], None), // nothing matches
        ];
        for (expanded, want) in cases {
            assert_eq!(merged_over(&expanded), want, "{expanded:?}");
        }
    }

    /// A text search's page found among its last arrivals is the page of every match sorted by
    /// time: in arrival order; with an event that arrived first but is the newest (then the plan
    /// gives way to the others); with other conditions, pages past what it reads, and a word in
    /// a few events. A condition that keeps a fifth of the arrivals first read (the containers of
    /// events ending in 0 or 5: about 91 of 456 for a page of 100) has more read, and the page
    /// found.
    #[test]
    fn a_page_found_among_the_last_arrivals_is_the_page_of_every_match() {
        use crate::store::audits::tests::{all, event, store};
        use crate::store::sqlite::Snapshot;
        let events = |early: bool| -> Vec<crate::events::Event> {
            // Sent before all the others and newer than any of them (a spool sent late): one
            // without the word, one with it.
            let first = early.then(|| {
                let mut held = event("early-curl", 0, "2026-11-29T11:30:00.000000Z");
                held.message = "curl early".into();
                [event("early", 0, "2026-11-29T11:00:00.000000Z"), held]
            });
            first
                .into_iter()
                .flatten()
                .chain((0..1_500u32).map(|n| {
                    let time = format!("2026-11-29T10:{:02}:{:02}.000000Z", n / 60 % 60, n % 60);
                    let mut e = event(&format!("e{n}"), n, &time);
                    e.message = ["curl ran", "curl again", "quiet", "rare xmrig"][match n % 100 {
                        0 => 3,
                        n => n as usize % 3,
                    }]
                    .into();
                    e
                }))
                .collect()
        };
        for early in [false, true] {
            let mut answered = 0;
            let (_dir, s) = store(&events(early));
            let c = s.reader_for_tests();
            let r = &mut Snapshot::of(&c).unwrap();
            let searched = |words: &str| AuditQuery {
                search: Some(Search::parse(words).unwrap()),
                ..all()
            };
            let fifth = Pattern::parse("e*[05]-container").unwrap();
            let queries = [
                searched("curl"),
                searched("xmrig"),
                searched("curl").with(AuditField::Type, Pattern::parse("[dp]*").unwrap()),
                searched("curl").with(AuditField::Container, fifth.clone()),
                AuditQuery {
                    since: Some("2026-11-29T10:10:00.000000Z".into()),
                    ..searched("cur")
                },
            ];
            for q in queries {
                for (limit, offset) in [(1, 0), (10, 0), (7, 30), (100, 0), (100, 500), (10, 2_000)]
                {
                    let q = AuditQuery {
                        limit,
                        offset,
                        ..q.clone()
                    };
                    let mut values = Vec::new();
                    let sql = format!(
                        "SELECT seq FROM audits WHERE {} ORDER BY time DESC, seq DESC {}",
                        conditions(r.dialect(), &q, &[], &mut values),
                        page(&q, &mut values)
                    );
                    let want = seqs(r, &sql, &values, usize::MAX, |_| true).unwrap();
                    let expanded = expand(r, &q).unwrap();
                    let search = q.search.as_ref().unwrap();
                    let found = by_arrival(r, &q, &expanded, search).unwrap();
                    if let Some(found) = &found {
                        assert_eq!(&found[(offset as usize).min(found.len())..], want, "{q:?}");
                        answered += 1;
                    }
                    let few = q.fields == [(AuditField::Container, fifth.clone())];
                    if few && !early && (limit, offset) == (100, 0) {
                        assert!(found.is_some(), "more arrivals read");
                    }
                    // The early events are newer than any page and arrived before the matches
                    // read: the one that holds the word heads the page, found among them.
                    let curl = q.search == searched("curl").search && q.fields.is_empty();
                    if early && curl && q.since.is_none() && offset == 0 {
                        let held = "SELECT seq FROM audits WHERE id = 'early-curl'";
                        let held = seqs(r, held, &[], 1, |_| true).unwrap();
                        assert_eq!(want[..1], held[..]);
                        assert_eq!(found.as_ref().map(|f| f[0]), Some(held[0]), "{q:?}");
                    }
                    let (sql, values) = select(r, &q, bitmaps::SHIFT).unwrap();
                    let got = seqs(
                        r,
                        &sql.replacen(COLUMNS, "seq", 1),
                        &values,
                        usize::MAX,
                        |_| true,
                    )
                    .unwrap();
                    assert_eq!(got, want, "{q:?}");
                }
            }
            assert!(answered >= if early { 5 } else { 15 }, "{answered}");
        }
    }

    #[test]
    fn matches_hold_exactly_their_seqs() {
        let cases: [&[i64]; 5] = [&[], &[5], &[1_000, 999, 64, 63, 1], &[130, 2], &[1 << 40]];
        for seqs in cases {
            let mut m = Matches::below(seqs.first().copied().unwrap_or_default());
            for &seq in seqs {
                m.insert(seq);
            }
            assert_eq!(m.count, seqs.len() as u64);
            for probe in (0..1_100).chain([1 << 40, (1 << 40) + 1]) {
                assert_eq!(m.contains(probe), seqs.contains(&probe), "{seqs:?} {probe}");
            }
        }
        // In any order, below a top given first (the `seq`s of an index range).
        let seqs = [5, 1_999, 64, 2_000, 700];
        let mut m = Matches::below(2_000);
        seqs.iter().for_each(|seq| m.insert(*seq));
        assert_eq!(m.count, 5);
        for probe in 0..2_100 {
            assert_eq!(m.contains(probe), seqs.contains(&probe), "{probe}");
        }
    }
}
