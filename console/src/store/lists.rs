//! The plans of the audit list that stay fast however many events match: a glob on an indexed
//! field expanded into the stored values it matches (read from the field's index by skipping from
//! one distinct value to the next), the list then merged from one index range per value, the count
//! an `IN` of them; and the text search's page read either from its matches sorted by time (few)
//! or from the events newest first, each looked up among its matches (many). Every plan returns
//! what `ORDER BY time DESC, seq DESC` over all the matches would.

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::StoreError;
use super::audits::{COLUMNS, column, conditions, fts_query, page};
use super::query::{AuditField, AuditQuery, GlobPart, Pattern};

/// At most this many values a glob may expand into; past it the glob is checked by `GLOB` on
/// every candidate row (correct, and as slow as it was). Also keeps the merged list within
/// SQLite's 500 terms of a compound `SELECT`.
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
    c: &Connection,
    field: AuditField,
    pattern: &Pattern,
    parts: &[GlobPart],
) -> Result<Option<Vec<String>>, StoreError> {
    let start = literal_start(parts);
    let mut select = c.prepare_cached(&distinct_values_sql(column(field)))?;
    let mut rows = select.query([start])?;
    let mut kept = Vec::new();
    let mut steps = 0;
    // Rows come one seek at a time: stopping here stops the walk.
    while let Some(row) = rows.next()? {
        let value: String = row.get(0)?;
        steps += 1;
        match step(pattern, start, &value, steps, kept.len()) {
            Step::Keep => kept.push(value),
            Step::Skip => {}
            Step::Done => break,
            Step::TooMany => return Ok(None),
        }
    }
    Ok(Some(kept))
}

/// The expansion of each glob of `q` (see [`Expanded`]).
pub fn expand(c: &Connection, q: &AuditQuery) -> Result<Expanded, StoreError> {
    q.fields
        .iter()
        .map(|(field, pattern)| match pattern {
            Pattern::Glob(parts) if expandable(*field) => glob_values(c, *field, pattern, parts),
            _ => Ok(None),
        })
        .collect()
}

/// The condition the list is merged over: the expanded glob of fewest values (each value one
/// index range to read), if any glob expanded into two or more. None when a glob matched no value
/// or one value (the `IN` of the plain plan is then one index range, or nothing).
fn merged_over(expanded: &Expanded) -> Option<usize> {
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
/// sorted by time or its page found newest first, or the conditions as they are.
pub fn select(c: &Connection, q: &AuditQuery) -> Result<(String, Vec<Value>), StoreError> {
    let expanded = expand(c, q)?;
    if let Some(search) = &q.search {
        let matches = Matches::read(c, &fts_query(search))?;
        if matches.count >= PROBE + u64::from(q.offset) + u64::from(q.limit) {
            return newest_first(c, q, &expanded, &matches);
        }
    } else if let Some(i) = merged_over(&expanded) {
        return Ok(merged(q, &expanded, i));
    }
    Ok(sorted(q, &expanded, COLUMNS))
}

/// The `seq`s of the newest `n` events of `q` (its limit and offset aside), newest first, by the
/// plans of [`select`]: a glob of several values is a merge of their index ranges read newest
/// first, one step at a time (`n` entries read in all, not `n` per value). What a summary that
/// the rollup cannot answer is computed over.
pub fn newest(c: &Connection, q: &AuditQuery, n: u32) -> Result<Vec<i64>, StoreError> {
    let q = AuditQuery {
        limit: n,
        offset: 0,
        ..q.clone()
    };
    let expanded = expand(c, &q)?;
    if let Some(search) = &q.search {
        let matches = Matches::read(c, &fts_query(search))?;
        if matches.count >= PROBE + u64::from(n) {
            return walk(c, &q, &expanded, &matches);
        }
    } else if let Some(i) = merged_over(&expanded) {
        return merge(c, &q, &expanded, i);
    }
    let (sql, values) = sorted(&q, &expanded, "seq");
    let mut select = c.prepare_cached(&sql)?;
    let seqs = select.query_map(params_from_iter(values), |r| r.get(0))?;
    Ok(seqs.collect::<Result<_, _>>()?)
}

/// The newest `q.limit` events of the values of the glob at condition `i`: each value's index
/// range read newest first, the newest head taken each time (a merge of sorted lists).
fn merge(
    c: &Connection,
    q: &AuditQuery,
    expanded: &Expanded,
    i: usize,
) -> Result<Vec<i64>, StoreError> {
    let mut selects = Vec::new();
    for value in expanded[i].iter().flatten() {
        let mut one = q.clone();
        one.fields[i].1 = Pattern::Exact(value.clone());
        let mut values = Vec::new();
        let conditions = conditions(&one, expanded, &mut values);
        let sql =
            format!("SELECT time, seq FROM audits WHERE {conditions} ORDER BY time DESC, seq DESC");
        selects.push((c.prepare(&sql)?, values));
    }
    let mut ranges = Vec::with_capacity(selects.len());
    for (select, values) in &mut selects {
        ranges.push(select.query(params_from_iter(values.iter()))?);
    }
    // The head of each range: (time, seq) largest first, with the range it came from.
    let mut heads = std::collections::BinaryHeap::new();
    for (at, range) in ranges.iter_mut().enumerate() {
        if let Some(r) = range.next()? {
            heads.push((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, at));
        }
    }
    let mut out = Vec::new();
    while out.len() < q.limit as usize {
        let Some((_, seq, at)) = heads.pop() else {
            break;
        };
        out.push(seq);
        if let Some(r) = ranges[at].next()? {
            heads.push((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, at));
        }
    }
    Ok(out)
}

/// The conditions as they are, in time order: one filter's index read newest first, or the
/// text search's few matches read by `seq` and sorted; `columns` of the page.
fn sorted(q: &AuditQuery, expanded: &Expanded, columns: &str) -> (String, Vec<Value>) {
    let mut values = Vec::new();
    let conditions = conditions(q, expanded, &mut values);
    let page = page(q, &mut values);
    let sql = format!(
        "SELECT {columns} FROM audits WHERE {conditions} ORDER BY time DESC, seq DESC {page}"
    );
    (sql, values)
}

/// The `seq`s a full-text query matches: one bit each, from the largest down (a bit per event
/// between the largest and the smallest match, however many match).
#[derive(Default)]
struct Matches {
    top: i64,
    bits: Vec<u64>,
    count: u64,
}

impl Matches {
    /// Reads them from the words' lists (no event row is read).
    fn read(c: &Connection, words: &str) -> Result<Matches, StoreError> {
        let mut select = c.prepare_cached(
            "SELECT rowid FROM audits_text WHERE audits_text MATCH ?1 ORDER BY rowid DESC",
        )?;
        let mut rows = select.query([words])?;
        let mut m = Matches::default();
        while let Some(row) = rows.next()? {
            m.insert(row.get(0)?);
        }
        Ok(m)
    }

    /// One more, smaller than the others.
    fn insert(&mut self, seq: i64) {
        if self.count == 0 {
            self.top = seq;
        }
        let at = self.top.abs_diff(seq) as usize;
        if at / 64 >= self.bits.len() {
            self.bits.resize(at / 64 + 1, 0);
        }
        self.bits[at / 64] |= 1 << (at % 64);
        self.count += 1;
    }

    fn contains(&self, seq: i64) -> bool {
        if self.count == 0 || seq > self.top {
            return false;
        }
        let at = self.top.abs_diff(seq) as usize;
        self.bits
            .get(at / 64)
            .is_some_and(|w| w & (1 << (at % 64)) != 0)
    }
}

/// The `seq`s of the events of `q`'s conditions but its text search, newest first.
pub(super) fn walk_select(q: &AuditQuery, expanded: &Expanded) -> (String, Vec<Value>) {
    let others = AuditQuery {
        search: None,
        ..q.clone()
    };
    let mut values = Vec::new();
    let conditions = conditions(&others, expanded, &mut values);
    let sql = format!("SELECT seq FROM audits WHERE {conditions} ORDER BY time DESC, seq DESC");
    (sql, values)
}

/// The `seq`s of the newest `offset + limit` matches of `q`: the other conditions' events read
/// newest first (their `seq`s only, from the index), each looked up among the matches.
fn walk(
    c: &Connection,
    q: &AuditQuery,
    expanded: &Expanded,
    matches: &Matches,
) -> Result<Vec<i64>, StoreError> {
    let (sql, values) = walk_select(q, expanded);
    let mut walk = c.prepare_cached(&sql)?;
    let mut rows = walk.query(params_from_iter(values))?;
    let wanted = q.offset as usize + q.limit as usize;
    let mut found = Vec::new();
    while found.len() < wanted {
        let Some(row) = rows.next()? else { break };
        let seq: i64 = row.get(0)?;
        if matches.contains(seq) {
            found.push(seq);
        }
    }
    Ok(found)
}

/// A page of the text search's many matches: the other conditions' events read newest first
/// (their `seq`s only, from the index), each looked up among the matches, until `offset + limit`
/// matched; the page's rows are then read by `seq`. Asking the full-text index about each event
/// instead (a `rowid =` with `MATCH`) costs it a new query per event, about 0.1 ms.
fn newest_first(
    c: &Connection,
    q: &AuditQuery,
    expanded: &Expanded,
    matches: &Matches,
) -> Result<(String, Vec<Value>), StoreError> {
    let found = walk(c, q, expanded, matches)?;
    let page: Vec<Value> = found
        .into_iter()
        .skip(q.offset as usize)
        .map(Value::Integer)
        .collect();
    let list: Vec<String> = (1..=page.len()).map(|n| format!("?{n}")).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM audits WHERE seq IN ({}) ORDER BY time DESC, seq DESC",
        list.join(", ")
    );
    Ok((sql, page))
}

/// One subquery per value of the glob at condition `i`, each the newest `offset + limit` events of
/// that value (its index range, newest first), merged and paged; then the page's rows read by
/// `seq`. A page reads at most values × (offset + limit) index entries.
fn merged(q: &AuditQuery, expanded: &Expanded, i: usize) -> (String, Vec<Value>) {
    let mut values = Vec::new();
    values.push(Value::Integer(i64::from(q.offset) + i64::from(q.limit)));
    let each = values.len();
    let arms: Vec<String> = expanded[i]
        .iter()
        .flatten()
        .map(|value| {
            let mut one = q.clone();
            one.fields[i].1 = Pattern::Exact(value.clone());
            let conditions = conditions(&one, expanded, &mut values);
            format!(
                "SELECT * FROM (SELECT seq, time FROM audits WHERE {conditions} \
                 ORDER BY time DESC, seq DESC LIMIT ?{each})"
            )
        })
        .collect();
    let page = page(q, &mut values);
    let sql = format!(
        "SELECT {COLUMNS} FROM (SELECT seq AS s, time AS t FROM ({}) \
         ORDER BY t DESC, s DESC {page}) AS p JOIN audits ON audits.seq = p.s \
         ORDER BY p.t DESC, p.s DESC",
        arms.join(" UNION ALL ")
    );
    (sql, values)
}

/// The SQL that counts the events of `q`, and its parameters: each expanded glob an `IN` of its
/// values (a count per index range); a text search alone, the length of its words' lists (each
/// match is an event: the triggers keep the index to the table), no event read.
pub(super) fn count_select(
    c: &Connection,
    q: &AuditQuery,
) -> Result<(String, Vec<Value>), StoreError> {
    if let Some(search) = &q.search
        && q.fields.is_empty()
        && q.since.is_none()
        && q.until.is_none()
    {
        let sql = "SELECT count(*) FROM audits_text WHERE audits_text MATCH ?1";
        return Ok((sql.into(), vec![Value::Text(fts_query(search))]));
    }
    let expanded = expand(c, q)?;
    let mut values = Vec::new();
    let conditions = conditions(q, &expanded, &mut values);
    Ok((
        format!("SELECT count(*) FROM audits WHERE {conditions}"),
        values,
    ))
}

/// How many events match, whatever the limit and offset.
pub fn count(c: &Connection, q: &AuditQuery) -> Result<u64, StoreError> {
    let (sql, values) = count_select(c, q)?;
    let n: i64 = c
        .prepare_cached(&sql)?
        .query_row(params_from_iter(values), |r| r.get(0))?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn matches_hold_exactly_their_seqs() {
        let cases: [&[i64]; 5] = [&[], &[5], &[1_000, 999, 64, 63, 1], &[130, 2], &[1 << 40]];
        for seqs in cases {
            let mut m = Matches::default();
            for &seq in seqs {
                m.insert(seq);
            }
            assert_eq!(m.count, seqs.len() as u64);
            for probe in (0..1_100).chain([1 << 40, (1 << 40) + 1]) {
                assert_eq!(m.contains(probe), seqs.contains(&probe), "{seqs:?} {probe}");
            }
        }
    }
}
