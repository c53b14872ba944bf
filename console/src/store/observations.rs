//! The activity defenders report with their heartbeats (`observed`), stored per container and
//! image: one row per kind and value, with how often and when it was first and last seen. What the
//! learning page and the proposal read.
//!
//! Bounded per defender: a container and image keep at most [`MAX_PER_KIND`] values of each kind;
//! a new value beyond that is not stored (the ones already there keep being counted). A defender
//! keeps at most `activity::MAX_ENTRIES` values per kind for a run, so this holds several runs'
//! worth. Retention by age is a later change.

use rusqlite::{Connection, params};

use super::{Heartbeat, Observation};
use defender::activity::{Kind, Observed};

/// The table, as migration 4 creates it.
pub const MIGRATION: &str = "
CREATE TABLE observations (
    container  TEXT NOT NULL,
    image      TEXT NOT NULL,
    cluster    TEXT,
    family     TEXT,
    service    TEXT,
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    count      INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    PRIMARY KEY (container, image, kind, value)
);
CREATE INDEX observations_by_time ON observations (last_seen);
";

/// Values of one kind kept per container and image.
pub const MAX_PER_KIND: i64 = 2048;

/// Adds what a heartbeat reports, within the caller's transaction.
pub fn add(
    tx: &Connection,
    beat: &Heartbeat,
    observed: &Observed,
    now: &str,
) -> rusqlite::Result<()> {
    {
        let mut update = tx.prepare_cached(
            "UPDATE observations SET count = count + ?5, last_seen = ?6, \
               cluster = ?7, family = ?8, service = ?9 \
             WHERE container = ?1 AND image = ?2 AND kind = ?3 AND value = ?4",
        )?;
        let mut held = tx.prepare_cached(
            "SELECT COUNT(*) FROM observations WHERE container = ?1 AND image = ?2 AND kind = ?3",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO observations \
               (container, image, kind, value, count, first_seen, last_seen, cluster, family, service) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)",
        )?;
        for e in &observed.entries {
            let count = i64::try_from(e.count).unwrap_or(i64::MAX);
            let kind = e.kind.as_str();
            let (container, image) = (&beat.container, &beat.image);
            let (cluster, family, service) = (&beat.cluster, &beat.family, &beat.service);
            let updated = update.execute(params![
                container, image, kind, e.value, count, now, cluster, family, service
            ])?;
            if updated > 0 {
                continue;
            }
            let n: i64 = held.query_row(params![container, image, kind], |r| r.get(0))?;
            if n < MAX_PER_KIND {
                insert.execute(params![
                    container, image, kind, e.value, count, now, cluster, family, service
                ])?;
            }
        }
    }
    Ok(())
}

/// Every observation last seen at `since` or later (all with `None`).
pub fn since(c: &Connection, since: Option<&str>) -> rusqlite::Result<Vec<Observation>> {
    let mut select = c.prepare_cached(
        "SELECT container, image, kind, value, count, first_seen, last_seen FROM observations \
         WHERE ?1 IS NULL OR last_seen >= ?1 ORDER BY kind, value",
    )?;
    let rows = select.query_map(params![since], |r| {
        let kind: String = r.get(2)?;
        Ok(Observation {
            container: r.get(0)?,
            image: r.get(1)?,
            kind: Kind::ALL
                .into_iter()
                .find(|k| k.as_str() == kind)
                .ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        2,
                        rusqlite::types::Type::Text,
                        format!("unknown kind {kind:?}").into(),
                    )
                })?,
            value: r.get(3)?,
            count: r.get::<_, i64>(4)?.max(0) as u64,
            first_seen: r.get(5)?,
            last_seen: r.get(6)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Beat;
    use defender::activity::Entry;

    fn beat(container: &str) -> Heartbeat {
        Heartbeat {
            id: "d-1".into(),
            container: container.into(),
            image: "img".into(),
            task: None,
            cluster: None,
            family: None,
            service: None,
            version: "0".into(),
            revision: None,
            protects: Vec::new(),
        }
    }

    fn observed(entries: &[(Kind, &str, u64)]) -> Observed {
        Observed {
            entries: entries
                .iter()
                .map(|(kind, value, count)| Entry {
                    kind: *kind,
                    value: value.to_string(),
                    count: *count,
                })
                .collect(),
            dropped: Default::default(),
        }
    }

    #[test]
    fn counts_add_up_times_move_and_the_table_is_bounded_per_container() {
        crate::store::tests::each_store(|s| {
            let t = |n: u32| format!("2026-11-29T10:00:{n:02}.000000Z");
            let web = beat("web");
            let observe = |beat: &Heartbeat, observed: Observed, now: &str| {
                s.heartbeats(&[Beat::one(beat.clone(), observed, now)])
            };
            observe(
                &web,
                observed(&[(Kind::Process, "/bin/sh", 2), (Kind::Dns, "a.test", 1)]),
                &t(1),
            )
            .unwrap();
            observe(&web, observed(&[(Kind::Process, "/bin/sh", 3)]), &t(5)).unwrap();
            observe(
                &beat("db"),
                observed(&[(Kind::Process, "/bin/sh", 1)]),
                &t(6),
            )
            .unwrap();
            let all = s.observations(None).unwrap();
            let sh = all
                .iter()
                .find(|o| o.container == "web" && o.value == "/bin/sh")
                .unwrap();
            assert_eq!(
                (sh.count, sh.first_seen.as_str(), sh.last_seen.as_str()),
                (5, t(1).as_str(), t(5).as_str())
            );
            assert_eq!(all.len(), 3);
            let recent = s.observations(Some(&t(2))).unwrap();
            assert!(recent.iter().all(|o| o.value == "/bin/sh"), "{recent:?}");
            assert_eq!(recent.len(), 2);

            let many: Vec<(Kind, String, u64)> = (0..MAX_PER_KIND + 5)
                .map(|i| (Kind::Dns, format!("n{i}.test"), 1))
                .collect();
            let many: Vec<(Kind, &str, u64)> =
                many.iter().map(|(k, v, c)| (*k, v.as_str(), *c)).collect();
            observe(&web, observed(&many), &t(7)).unwrap();
            let dns = s
                .observations(None)
                .unwrap()
                .into_iter()
                .filter(|o| o.container == "web" && o.kind == Kind::Dns)
                .count();
            assert_eq!(dns as i64, MAX_PER_KIND);
        });
    }
}
