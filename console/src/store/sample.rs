//! The sample a summary is computed over when the rollup of counts cannot answer it: the newest
//! [`SAMPLE`](super::rollup::SAMPLE) matching events, found by the list's plans and read once,
//! then summarised in memory by any field and into histograms of any width. The audits page asks
//! for five summaries and a chart of one filter; the sample is kept (one, the last) until the
//! query or the database changes, so they read it once, not six times.

use std::collections::HashMap;

use super::StoreError;
use super::audits::{self, column};
use super::lists;
use super::query::{AuditField, AuditQuery, Bucket};
use super::rollup::{self, Tally};
use super::sql::{self, Reader, Value};
use crate::events::Effect;

/// One field's values in the sample: each distinct value once, and per event its index.
#[derive(Default)]
struct Column {
    values: Vec<String>,
    of: Vec<Option<u32>>,
}

impl Column {
    fn push(&mut self, value: Option<String>, seen: &mut HashMap<String, u32>) {
        let at = value.map(|v| {
            *seen.entry(v).or_insert_with_key(|v| {
                self.values.push(v.clone());
                (self.values.len() - 1) as u32
            })
        });
        self.of.push(at);
    }
}

/// The newest matching events, in no particular order (a summary is a sum).
pub struct Sample {
    /// The query (limit and offset aside) and the database's version ([`Reader::version`]) it was
    /// read at.
    key: (String, i64),
    /// Per event: its time in Unix seconds, effect and `count`.
    seconds: Vec<i64>,
    effects: Vec<Effect>,
    counts: Vec<u64>,
    /// Per field of [`AuditField::GROUPS`] (what a summary groups by), in that order.
    fields: Vec<Column>,
    /// `Some(size)` when more events matched than the sample holds.
    pub cut: Option<u64>,
}

/// The key a sample of `q` read at `version` is kept under.
fn key(q: &AuditQuery, version: i64) -> (String, i64) {
    let q = AuditQuery {
        limit: 0,
        offset: 0,
        ..q.clone()
    };
    (format!("{q:?}"), version)
}

/// A field's value as text (`pid` and `port` are stored as numbers).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(t) => Some(t.clone()),
        Value::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Sample {
    /// The sample of `q` in `kept` if it is still the database's, else read anew (and kept).
    /// `r` is one snapshot: the version and the events agree.
    pub fn of<'k>(
        r: &mut dyn Reader,
        q: &AuditQuery,
        size: u32,
        kept: &'k mut Option<Sample>,
    ) -> Result<&'k Sample, StoreError> {
        let key = key(q, r.version()?);
        if kept.as_ref().is_none_or(|s| s.key != key) {
            *kept = None;
            *kept = Some(Sample::read(r, q, size, key)?);
        }
        Ok(kept.as_ref().expect("just kept"))
    }

    /// The newest `size` events of `q`, one more looked for to know whether it was cut.
    fn read(
        r: &mut dyn Reader,
        q: &AuditQuery,
        size: u32,
        key: (String, i64),
    ) -> Result<Sample, StoreError> {
        let mut seqs = lists::newest(r, q, size.saturating_add(1))?;
        let cut = (seqs.len() > size as usize).then_some(u64::from(size));
        seqs.truncate(size as usize);
        let mut sample = Sample {
            key,
            seconds: Vec::with_capacity(seqs.len()),
            effects: Vec::with_capacity(seqs.len()),
            counts: Vec::with_capacity(seqs.len()),
            fields: AuditField::GROUPS
                .iter()
                .map(|_| Column::default())
                .collect(),
            cut,
        };
        let columns: Vec<&str> = AuditField::GROUPS.iter().map(|f| column(*f)).collect();
        let mut seen: Vec<HashMap<String, u32>> = columns.iter().map(|_| HashMap::new()).collect();
        for chunk in seqs.chunks(lists::CHUNK) {
            let list: Vec<String> = (1..=chunk.len()).map(|n| format!("?{n}")).collect();
            let sql = format!(
                "SELECT time, effect, count, {} FROM audits WHERE seq IN ({})",
                columns.join(", "),
                list.join(", ")
            );
            let values: Vec<Value> = chunk.iter().map(|s| Value::Integer(*s)).collect();
            r.rows(&sql, &values, &mut |row| {
                sample.seconds.push(rollup::seconds(&sql::text(row, 0)?)?.0);
                sample.effects.push(audits::effect(row, 1)?);
                sample.counts.push(sql::int(row, 2)? as u64);
                for (i, field) in sample.fields.iter_mut().enumerate() {
                    field.push(row.get(3 + i).and_then(text), &mut seen[i]);
                }
                Ok(true)
            })?;
        }
        Ok(sample)
    }

    /// The sums of `count` per value of `group`, largest first (ties by value), `limit` after
    /// `offset`; events without the field are in no group. A field that is not one of
    /// [`AuditField::GROUPS`] (the API refuses others) is an error.
    pub fn stats(
        &self,
        group: AuditField,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let Some(at) = AuditField::GROUPS.iter().position(|f| *f == group) else {
            return Err(StoreError {
                source: format!("a summary by {} is not kept", group.name()).into(),
            });
        };
        let field = &self.fields[at];
        let mut sums = vec![0u64; field.values.len()];
        for (of, n) in field.of.iter().zip(&self.counts) {
            if let Some(v) = of {
                sums[*v as usize] += n;
            }
        }
        let mut rows: Vec<(String, u64)> = field.values.iter().cloned().zip(sums).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(rows
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect())
    }

    /// How many events, and the sum of their `count`s, per bucket of `width` seconds (its start,
    /// aligned on the Unix epoch) and effect.
    pub fn buckets(&self, width: i64) -> HashMap<(i64, Effect), Tally> {
        let mut sums: HashMap<(i64, Effect), Tally> = HashMap::new();
        for ((s, effect), n) in self.seconds.iter().zip(&self.effects).zip(&self.counts) {
            let tally = sums
                .entry((s.div_euclid(width) * width, *effect))
                .or_default();
            tally.events += 1;
            tally.n += n;
        }
        sums
    }

    /// The sums of `count` per bucket of `minutes` (aligned on the Unix epoch) and effect, oldest
    /// first: the newest `limit` buckets after skipping `offset`.
    pub fn histogram(&self, minutes: u32, limit: u32, offset: u32) -> Vec<Bucket> {
        let sums: HashMap<(i64, Effect), u64> = self
            .buckets(i64::from(minutes.max(1)) * 60)
            .into_iter()
            .map(|(key, t)| (key, t.n))
            .collect();
        let mut starts: Vec<i64> = sums.keys().map(|(start, _)| *start).collect();
        starts.sort_unstable_by(|a, b| b.cmp(a));
        starts.dedup();
        let kept: std::collections::HashSet<i64> = starts
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        let mut buckets: Vec<(i64, Bucket)> = sums
            .into_iter()
            .filter(|((start, _), _)| kept.contains(start))
            .map(|((start, effect), count)| {
                let bucket = Bucket {
                    start: rollup::bucket_start(start),
                    count,
                    effect,
                };
                (start, bucket)
            })
            .collect();
        buckets.sort_by(|(a, x), (b, y)| (a, x.effect.as_str()).cmp(&(b, y.effect.as_str())));
        buckets.into_iter().map(|(_, b)| b).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::store::Store;
    use crate::store::audits::conditions;
    use crate::store::audits::tests::{all, event, store};
    use crate::store::query::{Pattern, Search};
    use crate::store::sql::Dialect;
    use crate::store::sqlite::Snapshot;
    use rusqlite::params_from_iter;

    /// Forty events over three minutes, times shared by pairs (the order is then by arrival),
    /// four containers, pids 100 to 139, counts of 1 to 3.
    fn events() -> Vec<Event> {
        (0..40u32)
            .map(|n| {
                let time = format!("2026-11-29T10:{:02}:{:02}.000000Z", n / 20, (n / 2) % 60);
                let mut e = event(&format!("e{n}"), n, &time);
                e.container = format!("web-{}", n % 4);
                e.count = u64::from(n % 3) + 1;
                e
            })
            .collect()
    }

    fn queries() -> Vec<AuditQuery> {
        let glob = |f, g: &str| all().with(f, Pattern::parse(g).unwrap());
        vec![
            all(),
            all().with(AuditField::Container, Pattern::Exact("web-1".into())),
            glob(AuditField::Container, "web-[123]"),
            glob(AuditField::Pid, "1[23]*"),
            AuditQuery {
                search: Some(Search::parse("process").unwrap()),
                ..glob(AuditField::Container, "web-*")
            },
        ]
    }

    /// The newest events by the list's plans are those `ORDER BY time DESC, seq DESC` gives.
    #[test]
    fn the_newest_are_the_newest() {
        let (_dir, s) = store(&events());
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        for q in queries() {
            for n in [1, 7, 40, 100] {
                let mut values = Vec::new();
                let sql = format!(
                    "SELECT seq FROM audits WHERE {} ORDER BY time DESC, seq DESC LIMIT {n}",
                    conditions(Dialect::Sqlite, &q, &[], &mut values)
                );
                let mut select = c.prepare(&sql).unwrap();
                let want: Vec<i64> = select
                    .query_map(params_from_iter(values), |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(lists::newest(r, &q, n).unwrap(), want, "{n} of {q:?}");
            }
        }
    }

    /// A glob's values merged page by page give the newest events as `ORDER BY` does: pages
    /// refilled after an entry whose time others share (three events a time), values of very
    /// different sizes (one of a tenth, the others half the rest each), however many are asked.
    #[test]
    fn the_newest_of_a_glob_are_merged_page_by_page() {
        let events: Vec<Event> = (0..300u32)
            .map(|n| {
                let time = format!("2026-11-29T10:{:02}:{:02}.000000Z", n / 180, (n / 3) % 60);
                let mut e = event(&format!("e{n}"), n, &time);
                e.container = match (n % 10, n % 2) {
                    (0, _) => "web-rare",
                    (_, 0) => "web-even",
                    _ => "web-odd",
                }
                .into();
                e
            })
            .collect();
        let (_dir, s) = store(&events);
        let c = s.reader_for_tests();
        let r = &mut Snapshot::of(&c).unwrap();
        let q = all().with(AuditField::Container, Pattern::parse("web-*").unwrap());
        let mut select = c
            .prepare("SELECT seq FROM audits ORDER BY time DESC, seq DESC")
            .unwrap();
        let every: Vec<i64> = select
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for n in [1, 15, 16, 17, 33, 100, 101, 250, 299, 300, 301, 1000] {
            let want = &every[..every.len().min(n as usize)];
            assert_eq!(lists::newest(r, &q, n).unwrap(), want, "{n}");
        }
    }

    /// A sample of every match sums as SQL's `GROUP BY` does, by every field and into buckets;
    /// a smaller one says it was cut.
    #[test]
    fn a_whole_sample_sums_as_sql_does() {
        let (_dir, s) = store(&events());
        let c = s.reader_for_tests();
        for q in queries() {
            let mut kept = None;
            let sample = Sample::of(&mut Snapshot::of(&c).unwrap(), &q, 1000, &mut kept).unwrap();
            assert_eq!(sample.cut, None);
            for field in AuditField::GROUPS {
                let mut values = Vec::new();
                let column = column(field);
                let sql = format!(
                    "SELECT CAST({column} AS TEXT) AS g, sum(count) AS n FROM audits \
                     WHERE {} AND g IS NOT NULL GROUP BY g ORDER BY n DESC, g LIMIT 5 OFFSET 1",
                    conditions(Dialect::Sqlite, &q, &[], &mut values)
                );
                let mut select = c.prepare(&sql).unwrap();
                let want: Vec<(String, u64)> = select
                    .query_map(params_from_iter(values), |r| {
                        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
                    })
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(
                    sample.stats(field, 5, 1).unwrap(),
                    want,
                    "{field:?} of {q:?}"
                );
            }
            for minutes in [1, 2, 60] {
                let mut values = Vec::new();
                let width = minutes * 60;
                let sql = format!(
                    "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', \
                        CAST(strftime('%s', time) AS INTEGER) / {width} * {width}, 'unixepoch') AS b, \
                        effect, sum(count) FROM audits WHERE {} GROUP BY b, effect ORDER BY b, effect",
                    conditions(Dialect::Sqlite, &q, &[], &mut values)
                );
                let mut select = c.prepare(&sql).unwrap();
                let want: Vec<(String, String, u64)> = select
                    .query_map(params_from_iter(values), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
                    })
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let got: Vec<(String, String, u64)> = sample
                    .histogram(minutes, 100, 0)
                    .into_iter()
                    .map(|b| (b.start, b.effect.as_str().to_owned(), b.count))
                    .collect();
                assert_eq!(got, want, "{minutes} of {q:?}");
            }
        }
        let mut kept = None;
        let cut = Sample::of(&mut Snapshot::of(&c).unwrap(), &all(), 39, &mut kept).unwrap();
        assert_eq!(cut.cut, Some(39));
        assert!(cut.stats(AuditField::Pid, 10, 0).is_err(), "not a group");
    }

    /// The page's summaries of one filter read one sample; a new event makes the next read anew.
    #[test]
    fn one_sample_serves_a_filter_until_the_database_changes() {
        let (_dir, s) = store(&events());
        let c = s.reader_for_tests();
        let q = all().with(AuditField::Container, Pattern::parse("web-*").unwrap());
        let mut kept = None;
        Sample::of(&mut Snapshot::of(&c).unwrap(), &q, 1000, &mut kept).unwrap();
        // Marked: a read anew would bring the counts back.
        kept.as_mut().unwrap().counts.clear();
        let other = AuditQuery {
            limit: 3,
            offset: 9,
            ..q.clone()
        };
        for q in [&q, &other] {
            assert!(
                Sample::of(&mut Snapshot::of(&c).unwrap(), q, 1000, &mut kept)
                    .unwrap()
                    .counts
                    .is_empty()
            );
        }
        let mut late = event("late", 1, "2026-11-29T11:00:00.000000Z");
        late.container = "web-9".into();
        s.add_audits(&[late], "defender", "t").unwrap();
        let after = Sample::of(&mut Snapshot::of(&c).unwrap(), &q, 1000, &mut kept).unwrap();
        assert_eq!(after.counts.len(), 41, "read anew after a commit");
        let narrower = q
            .clone()
            .with(AuditField::Type, Pattern::Exact("dns".into()));
        let narrow =
            Sample::of(&mut Snapshot::of(&c).unwrap(), &narrower, 1000, &mut kept).unwrap();
        assert!(narrow.counts.len() < 41, "another filter, another sample");
    }
}
