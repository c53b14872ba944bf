//! One measurement made by several load generator processes (a fleet larger than one process's
//! descriptors): the part each writes with `--record` (its pollers' revision changes and its
//! `PUT`s, on the wall clock, which every process of one machine shares), and `loadgen merge`,
//! which reads the parts and computes propagation over every poller of every part, the polls
//! held, the consoles' memory per held poll and the errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::{ErrorReport, Spread, kib, round, show, tenths};

/// What one process recorded: written by `--record`, read by `loadgen merge`.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Part {
    /// Its runtime pollers (one per defender).
    pub defenders: usize,
    /// Its `PUT`s that made a revision (a failed one is in `errors`); empty for a process run
    /// with `--puts 0`.
    pub puts: Vec<PutTimes>,
    /// Its pollers' revision changes, grouped by (from, to).
    pub changes: Vec<Change>,
    /// Long polls under way when it read the memory: by its own count, and by the consoles'
    /// (summed over every `--console`, so every process's polls).
    pub held: usize,
    pub held_by_console: Option<u64>,
    pub lost: u64,
    pub held_at_end: usize,
    /// The `--pid`s' resident memory (KiB, summed): before this process connected, with every
    /// poll it waited for held.
    pub rss: Option<PartRss>,
    pub errors: PartErrors,
    pub cpu_seconds_loadgen: Option<f64>,
    pub cpu_seconds_consoles: Option<f64>,
    pub load_start: String,
    pub load_end: String,
    pub nofile: u64,
}

/// A `PUT` that made `revision`, and for how long after its answer a poller's change counts.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct PutTimes {
    pub revision: u64,
    pub sent_unix_ns: u64,
    pub answered_unix_ns: u64,
    pub timeout_ms: u64,
}

/// Pollers that went from revision `from` (0: none, their first answer) to `to`, and when each
/// did. A poller whose change crosses a `PUT`'s revision (`from` < it ≤ `to`) has seen it then.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Change {
    pub from: u64,
    pub to: u64,
    pub at_unix_ns: Vec<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct PartRss {
    pub idle_kib: u64,
    pub held_kib: Option<u64>,
    pub loaded_kib: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct PartErrors {
    pub by_kind: BTreeMap<String, u64>,
    pub first: BTreeMap<String, String>,
}

impl From<&ErrorReport> for PartErrors {
    fn from(e: &ErrorReport) -> PartErrors {
        PartErrors {
            by_kind: e.by_kind.iter().map(|(k, n)| ((*k).into(), *n)).collect(),
            first: e
                .first
                .iter()
                .map(|(k, s)| ((*k).into(), s.clone()))
                .collect(),
        }
    }
}

/// Groups revision changes `(from, to, at)` as a part holds them.
pub fn group_changes(changes: &[(u64, u64, u64)]) -> Vec<Change> {
    let mut by_pair: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
    for &(from, to, at) in changes {
        by_pair.entry((from, to)).or_default().push(at);
    }
    by_pair
        .into_iter()
        .map(|((from, to), at_unix_ns)| Change {
            from,
            to,
            at_unix_ns,
        })
        .collect()
}

/// The errors kind the merge counts afresh, over every part's pollers.
const MISSED: &str = "propagation missed";

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: {source}", path = path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a part written by --record: {source}", path = path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0} of the parts made PUTs: a merge needs exactly one (the others run with --puts 0)")]
    Leaders(usize),
    #[error("--out {path}: {source}", path = path.display())]
    Out {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The merged measurement.
#[derive(Serialize, Debug)]
pub struct Merged {
    pub parts: usize,
    pub defenders: usize,
    /// The consoles' count of long polls with every poll held, as the process that made the
    /// `PUT`s read it (it waits for `--expect-polls`), and the processes' own counts summed.
    pub held_by_console: Option<u64>,
    pub held: usize,
    pub lost: u64,
    pub held_at_end: usize,
    pub rss: Option<MergedRss>,
    pub puts: Vec<MergedPut>,
    /// Over every `PUT` and every poller of every part.
    pub propagation: Option<Spread>,
    pub propagation_from_sent: Option<Spread>,
    /// Every part's errors summed, `propagation missed` counted over all of them instead.
    pub errors: MergedErrors,
    /// Every process's own CPU time summed; the consoles' as the `PUT`s' process read it.
    pub cpu_seconds_loadgens: Option<f64>,
    pub cpu_seconds_consoles: Option<f64>,
    /// Each part's, in the order given.
    pub loads: Vec<String>,
    pub nofile: Vec<u64>,
}

/// The consoles' memory as the `PUT`s' process read it: before any connection (it is started
/// first), with every poll of every process held, at the end of its traffic.
#[derive(Serialize, Debug, PartialEq)]
pub struct MergedRss {
    pub idle_kib: u64,
    pub held_kib: Option<u64>,
    pub loaded_kib: Option<u64>,
    /// (held − idle) / the consoles' count of polls held.
    pub per_held_poll_kib: Option<f64>,
}

#[derive(Serialize, Debug)]
pub struct MergedPut {
    pub revision: u64,
    pub put_ms: f64,
    pub seen: usize,
    pub missed: usize,
    pub seen_before_answer: usize,
    pub propagation: Option<Spread>,
    pub from_sent: Option<Spread>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct MergedErrors {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub first: BTreeMap<String, String>,
}

/// When each poller of every part first had `put`'s revision, within its timeout of the answer:
/// each poller's changes only go up, so at most one of them crosses the revision.
fn seen_at(parts: &[Part], put: &PutTimes) -> Vec<u64> {
    let last = put.answered_unix_ns + put.timeout_ms * 1_000_000;
    parts
        .iter()
        .flat_map(|p| &p.changes)
        .filter(|c| c.from < put.revision && put.revision <= c.to)
        .flat_map(|c| c.at_unix_ns.iter().copied())
        .filter(|&at| at <= last)
        .collect()
}

/// The merge of `parts`, exactly one of which made the `PUT`s.
pub fn merge(parts: &[Part]) -> Result<Merged, MergeError> {
    let leaders: Vec<&Part> = parts.iter().filter(|p| !p.puts.is_empty()).collect();
    let [leader] = leaders[..] else {
        return Err(MergeError::Leaders(leaders.len()));
    };
    let defenders: usize = parts.iter().map(|p| p.defenders).sum();
    let mut all_after_answer = Vec::new();
    let mut all_after_sent = Vec::new();
    let mut missed_total = 0;
    let puts = leader
        .puts
        .iter()
        .map(|put| {
            let seen = seen_at(parts, put);
            let since = |from: u64| -> Vec<Duration> {
                seen.iter()
                    .map(|&at| Duration::from_nanos(at.saturating_sub(from)))
                    .collect()
            };
            let (after_answer, after_sent) = (since(put.answered_unix_ns), since(put.sent_unix_ns));
            let missed = defenders.saturating_sub(seen.len());
            missed_total += missed as u64;
            let merged = MergedPut {
                revision: put.revision,
                put_ms: round(put.answered_unix_ns.saturating_sub(put.sent_unix_ns) as f64 / 1e6),
                seen: seen.len(),
                missed,
                seen_before_answer: seen.iter().filter(|&&at| at < put.answered_unix_ns).count(),
                propagation: Spread::of(&after_answer),
                from_sent: Spread::of(&after_sent),
            };
            all_after_answer.extend(after_answer);
            all_after_sent.extend(after_sent);
            merged
        })
        .collect();

    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    for p in parts {
        for (kind, n) in p.errors.by_kind.iter().filter(|(k, _)| *k != MISSED) {
            *by_kind.entry(kind.clone()).or_default() += n;
        }
        for (kind, words) in p.errors.first.iter().filter(|(k, _)| *k != MISSED) {
            first.entry(kind.clone()).or_insert_with(|| words.clone());
        }
    }
    if missed_total > 0 {
        by_kind.insert(MISSED.into(), missed_total);
        first.insert(
            MISSED.into(),
            format!(
                "{missed_total} times a poller did not have a PUT's revision within its timeout"
            ),
        );
    }
    let sum = |pick: fn(&Part) -> Option<f64>| -> Option<f64> {
        parts.iter().map(pick).sum::<Option<f64>>().map(round)
    };
    Ok(Merged {
        parts: parts.len(),
        defenders,
        held_by_console: leader.held_by_console,
        held: parts.iter().map(|p| p.held).sum(),
        lost: parts.iter().map(|p| p.lost).sum(),
        held_at_end: parts.iter().map(|p| p.held_at_end).sum(),
        rss: leader.rss.map(|r| MergedRss {
            idle_kib: r.idle_kib,
            held_kib: r.held_kib,
            loaded_kib: r.loaded_kib,
            per_held_poll_kib: r
                .held_kib
                .zip(leader.held_by_console.filter(|n| *n > 0))
                .map(|(h, n)| round((h as f64 - r.idle_kib as f64) / n as f64)),
        }),
        puts,
        propagation: Spread::of(&all_after_answer),
        propagation_from_sent: Spread::of(&all_after_sent),
        errors: MergedErrors {
            total: by_kind.values().sum(),
            by_kind,
            first,
        },
        cpu_seconds_loadgens: sum(|p| p.cpu_seconds_loadgen),
        cpu_seconds_consoles: leader.cpu_seconds_consoles,
        loads: parts
            .iter()
            .map(|p| format!("{} -> {}", p.load_start, p.load_end))
            .collect(),
        nofile: parts.iter().map(|p| p.nofile).collect(),
    })
}

/// `loadgen merge`: reads the parts, writes the merged report, prints its summary; the errors
/// counted.
pub fn run(parts: &[PathBuf], out: Option<&Path>) -> Result<u64, MergeError> {
    let read = parts
        .iter()
        .map(|path| {
            let text = std::fs::read(path).map_err(|source| MergeError::Read {
                path: path.clone(),
                source,
            })?;
            serde_json::from_slice::<Part>(&text).map_err(|source| MergeError::Parse {
                path: path.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let m = merge(&read)?;
    for p in &m.puts {
        println!(
            "PUT {} answered in {:.1} ms: {}/{} pollers saw it, {} before the answer; after the \
             answer {}; after the PUT was sent {}",
            p.revision,
            p.put_ms,
            p.seen,
            m.defenders,
            p.seen_before_answer,
            show(&p.propagation),
            show(&p.from_sent)
        );
    }
    println!(
        "{} parts, {} defenders; polls held {} (consoles say {}), {} lost, {} held at the end",
        m.parts,
        m.defenders,
        m.held,
        m.held_by_console.map_or("-".into(), |n| n.to_string()),
        m.lost,
        m.held_at_end
    );
    if let Some(r) = &m.rss {
        println!(
            "consoles' RSS: idle {} KiB, polls held {} KiB, loaded {} KiB, per held poll {} KiB",
            r.idle_kib,
            kib(r.held_kib),
            kib(r.loaded_kib),
            tenths(r.per_held_poll_kib)
        );
    }
    println!(
        "propagation (all PUTs, every part): after the answer {}; after the PUT was sent {}",
        show(&m.propagation),
        show(&m.propagation_from_sent)
    );
    println!(
        "errors: {} {:?}; CPU seconds: loadgens {}, consoles {}; loads {:?}",
        m.errors.total,
        m.errors.by_kind,
        tenths(m.cpu_seconds_loadgens),
        tenths(m.cpu_seconds_consoles),
        m.loads
    );
    if let Some(path) = out {
        crate::report::write_json(path, &m).map_err(|source| MergeError::Out {
            path: path.into(),
            source,
        })?;
    }
    Ok(m.errors.total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// An arbitrary wall-clock origin.
    const T0: u64 = 1_800_000_000_000 * MS;

    fn part(defenders: usize, changes: &[(u64, u64, u64)]) -> Part {
        Part {
            defenders,
            changes: group_changes(
                &changes
                    .iter()
                    .map(|&(f, t, ms)| (f, t, T0 + ms * MS))
                    .collect::<Vec<_>>(),
            ),
            ..Part::default()
        }
    }

    fn put(revision: u64, sent_ms: u64, answered_ms: u64) -> PutTimes {
        PutTimes {
            revision,
            sent_unix_ns: T0 + sent_ms * MS,
            answered_unix_ns: T0 + answered_ms * MS,
            timeout_ms: 10_000,
        }
    }

    #[test]
    fn changes_are_grouped_by_revisions() {
        let g = group_changes(&[(1, 2, 30), (0, 1, 10), (1, 2, 20)]);
        assert_eq!(
            g,
            vec![
                Change {
                    from: 0,
                    to: 1,
                    at_unix_ns: vec![10]
                },
                Change {
                    from: 1,
                    to: 2,
                    at_unix_ns: vec![30, 20]
                },
            ]
        );
    }

    #[test]
    fn percentiles_are_over_every_part_together() {
        // 200 pollers, 100 in each of two processes, seeing revision 2 at 1..=200 ms after the
        // PUT was sent (odd in one part, even in the other): the merged percentiles are those of
        // 1..=200, which neither part has alone.
        let mut leader = part(
            100,
            &(1..=100).map(|i| (1, 2, 2 * i - 1)).collect::<Vec<_>>(),
        );
        leader.puts = vec![put(2, 0, 50)];
        leader.held_by_console = Some(200);
        let other = part(100, &(1..=100).map(|i| (1, 2, 2 * i)).collect::<Vec<_>>());
        let m = merge(&[other, leader]).unwrap();
        assert_eq!(m.defenders, 200);
        let p = &m.puts[0];
        assert_eq!((p.seen, p.missed, p.seen_before_answer), (200, 0, 49));
        assert_eq!(p.put_ms, 50.0);
        let from_sent = p.from_sent.unwrap();
        assert_eq!(
            (
                from_sent.count,
                from_sent.p50_ms,
                from_sent.p99_ms,
                from_sent.max_ms
            ),
            (200, 100.0, 198.0, 200.0)
        );
        // From the answer, a poller that had it before counts 0 ms.
        let after = p.propagation.unwrap();
        assert_eq!(
            (after.p50_ms, after.p99_ms, after.max_ms),
            (50.0, 148.0, 150.0)
        );
        assert_eq!(m.propagation_from_sent, p.from_sent);
        assert_eq!(m.errors.total, 0);
    }

    #[test]
    fn a_change_past_several_revisions_is_seen_for_each_and_late_ones_are_missed() {
        // Two PUTs (revisions 2 and 3), three pollers in two parts: one sees 2 then 3, one jumps
        // from 1 to 3 (it has seen 2 too, at that moment), one sees 2 only after the timeout
        // and never 3.
        let mut leader = part(2, &[(1, 2, 100), (2, 3, 1_100), (1, 3, 1_200)]);
        leader.puts = vec![put(2, 0, 50), put(3, 1_000, 1_050)];
        leader.errors.by_kind.insert(MISSED.into(), 1);
        leader.errors.by_kind.insert("reset".into(), 2);
        leader
            .errors
            .first
            .insert("reset".into(), "reset by peer".into());
        let mut late = part(1, &[(1, 2, 20_000)]);
        late.errors.by_kind.insert("timeout".into(), 1);
        let m = merge(&[leader, late]).unwrap();
        let seen: Vec<(u64, usize, usize)> = m
            .puts
            .iter()
            .map(|p| (p.revision, p.seen, p.missed))
            .collect();
        assert_eq!(seen, vec![(2, 2, 1), (3, 2, 1)]);
        let from_sent = m.puts[0].from_sent.unwrap();
        assert_eq!((from_sent.p50_ms, from_sent.max_ms), (100.0, 1_200.0));
        assert_eq!(m.propagation_from_sent.unwrap().count, 4);
        // The leader's own "propagation missed" (its pollers only) gives way to the merge's.
        assert_eq!(m.errors.by_kind[MISSED], 2);
        assert_eq!(m.errors.by_kind["reset"], 2);
        assert_eq!(m.errors.by_kind["timeout"], 1);
        assert_eq!(m.errors.total, 5);
        assert_eq!(m.errors.first["reset"], "reset by peer");
    }

    #[test]
    fn memory_per_held_poll_is_over_every_console_and_every_part() {
        let mut leader = part(10, &[]);
        leader.puts = vec![put(2, 0, 1)];
        leader.held_by_console = Some(30_000);
        leader.rss = Some(PartRss {
            idle_kib: 70_000,
            held_kib: Some(70_000 + 30_000 * 17),
            loaded_kib: None,
        });
        leader.cpu_seconds_loadgen = Some(1.5);
        leader.cpu_seconds_consoles = Some(9.0);
        let mut other = part(20, &[]);
        other.cpu_seconds_loadgen = Some(2.25);
        let m = merge(&[leader, other]).unwrap();
        assert_eq!(m.rss.unwrap().per_held_poll_kib, Some(17.0));
        assert_eq!(m.cpu_seconds_loadgens, Some(3.75));
        assert_eq!(m.cpu_seconds_consoles, Some(9.0));
        // Every poller missed the one PUT: no change was recorded.
        assert_eq!(m.puts[0].missed, 30);
        assert_eq!(m.propagation, None);
    }

    #[test]
    fn a_merge_needs_exactly_one_part_with_puts() {
        assert!(matches!(
            merge(&[part(1, &[]), part(1, &[])]),
            Err(MergeError::Leaders(0))
        ));
        let mut a = part(1, &[]);
        a.puts = vec![put(2, 0, 1)];
        assert!(matches!(
            merge(&[a.clone(), a]),
            Err(MergeError::Leaders(2))
        ));
    }
}
