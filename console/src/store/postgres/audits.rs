//! Audits written to PostgreSQL: batches stored together (duplicates skipped, arrival positions
//! given in commit order, the rollup's counts and the text search's words kept beside them), and
//! retention.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::{Client, SCHEMA_VERSION, keys};
use crate::events::Event;
use crate::store::group::Batch;
use crate::store::{Expired, StoreError, audits, bitmaps, rollup, sql};

/// A transaction of audit batches stops taking the next batch once it has worked this long. Longer
/// than the SQLite store's 10 ms: here a policy save never waits for ingestion (it takes another
/// lock and none of the rollup's rows), and each commit waits for the disk, so the more batches a
/// transaction takes, the more events per second; bounded, because the other instances' storing
/// transactions wait for this one's lock.
const TRANSACTION_WORK: Duration = Duration::from_millis(250);

/// Stores `batches` oldest first until [`TRANSACTION_WORK`] is spent, in one transaction; answers
/// how many of each batch's events were new (an id stored already, or earlier in this
/// transaction, is skipped).
pub async fn add_batches(
    c: &mut Client,
    batches: &[Batch],
    shift: u32,
) -> Result<Vec<usize>, StoreError> {
    let started = Instant::now();
    let tx = c.transaction().await?;
    // One storing transaction at a time across the fleet: positions are given in commit order,
    // so a webhook that read up to one never misses a smaller one committed later; and the
    // rollup's rows, which every batch updates, are never locked in two orders.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&keys::INGEST])
        .await?;
    // A newer console's migration may change what a stored event brings with it (migration 3
    // added the words' rows): an older instance still serving beside it stores nothing rather
    // than events the newer schema would miscount, and its defenders send them again (to the
    // newer instances, behind a load balancer). A migration takes this lock too, so no
    // transaction that passed this check commits after a migration started.
    let version: i64 = tx.query_one(SCHEMA_VERSION, &[]).await?.get(0);
    if usize::try_from(version).ok() != Some(super::MIGRATIONS.len()) {
        return Err(StoreError::message(format!(
            "the database is at schema version {version}, not this console's {}: this console \
             stores no audits",
            super::MIGRATIONS.len()
        )));
    }
    // Above the newest stored, every webhook's cursor and the bitmap index's sealed chunks (as
    // the SQLite store's).
    let mut seq: i64 = tx
        .query_one(
            &format!(
                "SELECT GREATEST(COALESCE((SELECT MAX(seq) FROM audits), 0), \
                                 COALESCE((SELECT MAX(seq) FROM deliveries), 0), {})",
                bitmaps::sealed_end(shift)
            ),
            &[],
        )
        .await?
        .get(0);
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO audits ({}, received, seq, words) \
             SELECT id, time, type, effect, rule, attack, custom_rule, container, image, task, \
                    pid, process, cmdline, parent, domain, ip, port, message, count, cluster, \
                    family, service, source, method, url, source_ip, field, request_id, \
                    received, seq, CAST(words AS tsvector) \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                         $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[], \
                         $16::text[], $17::bigint[], $18::text[], $19::bigint[], $20::text[], \
                         $21::text[], $22::text[], $23::text[], $24::text[], $25::text[], \
                         $26::text[], $27::text[], $28::text[], $29::text[], $30::bigint[], \
                         $31::text[]) \
               AS u(id, time, type, effect, rule, attack, custom_rule, container, image, task, \
                    pid, process, cmdline, parent, domain, ip, port, message, count, cluster, \
                    family, service, source, method, url, source_ip, field, request_id, \
                    received, seq, words) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
            audits::COLUMNS
        ))
        .await?;
    let mut counts = Vec::with_capacity(batches.len());
    let mut stored = Vec::new();
    for batch in batches {
        let ev = &batch.events;
        let text = |f: fn(&Event) -> &str| ev.iter().map(f).collect::<Vec<_>>();
        let opt = |f: fn(&Event) -> Option<&str>| ev.iter().map(f).collect::<Vec<_>>();
        let positions: Vec<i64> = (1..=ev.len() as i64).map(|i| seq + i).collect();
        let mut words: Vec<sql::Words> = ev
            .iter()
            .map(|e| sql::tsvector(&sql::searched(e)))
            .collect();
        let literals: Vec<&str> = words.iter().map(|w| w.tsvector.as_str()).collect();
        let rows = tx
            .query(
                &insert,
                &[
                    &text(|e| &e.id),
                    &text(|e| &e.time),
                    &text(|e| e.kind.as_str()),
                    &text(|e| e.effect.as_str()),
                    &opt(|e| e.rule.as_deref()),
                    &opt(|e| e.attack.as_deref()),
                    &opt(|e| e.custom_rule.as_deref()),
                    &text(|e| &e.container),
                    &text(|e| &e.image),
                    &opt(|e| e.task.as_deref()),
                    &ev.iter().map(|e| i64::from(e.pid)).collect::<Vec<_>>(),
                    &text(|e| &e.process),
                    &opt(|e| e.cmdline.as_deref()),
                    &opt(|e| e.parent.as_deref()),
                    &opt(|e| e.domain.as_deref()),
                    &opt(|e| e.ip.as_deref()),
                    &ev.iter().map(|e| e.port.map(i64::from)).collect::<Vec<_>>(),
                    &text(|e| &e.message),
                    &ev.iter()
                        .map(|e| i64::try_from(e.count).unwrap_or(i64::MAX))
                        .collect::<Vec<_>>(),
                    &opt(|e| e.cluster.as_deref()),
                    &opt(|e| e.family.as_deref()),
                    &opt(|e| e.service.as_deref()),
                    &vec![batch.source.as_str(); ev.len()],
                    &opt(|e| e.method.as_deref()),
                    &opt(|e| e.url.as_deref()),
                    &opt(|e| e.source_ip.as_deref()),
                    &opt(|e| e.field.as_deref()),
                    &opt(|e| e.request_id.as_deref()),
                    &vec![batch.now.as_str(); ev.len()],
                    &positions,
                    &literals,
                ],
            )
            .await?;
        seq += ev.len() as i64;
        // The events stored: of several with one id in the batch, the first (PostgreSQL inserts
        // the rows in order; the later ones conflict with it).
        let first: HashMap<&str, usize> = ev
            .iter()
            .enumerate()
            .rev()
            .map(|(i, e)| (e.id.as_str(), i))
            .collect();
        drop(literals);
        for r in &rows {
            let id: &str = r.get(0);
            let i = first[id];
            stored.push((&ev[i], std::mem::take(&mut words[i].lexemes)));
        }
        counts.push(rows.len());
        if started.elapsed() >= TRANSACTION_WORK {
            break;
        }
    }
    add_counts(&tx, &stored).await?;
    tx.commit().await?;
    Ok(counts)
}

/// Adds what `stored` (each event with its words) counts to the rollup ([`rollup::changes`], and
/// the words' rows and runs: [`rollup::word_changes`]), one statement per table.
async fn add_counts(
    tx: &deadpool_postgres::Transaction<'_>,
    stored: &[(&Event, BTreeSet<String>)],
) -> Result<(), StoreError> {
    let events: Vec<&Event> = stored.iter().map(|(e, _)| *e).collect();
    let mut changes = rollup::changes(&events)?;
    // The words' rows go to `audit_counts` alone: no all-time rows, and none in `audit_hours`
    // (a word's count reads its own rows, by type and effect).
    let words: Vec<(&Event, &BTreeSet<String>)> = stored.iter().map(|(e, w)| (*e, w)).collect();
    let (word_rows, runs) = rollup::word_changes(&words)?;
    changes.hourly.extend(word_rows);
    let hourly = &changes.hourly;
    tx.execute(
        "INSERT INTO audit_counts AS c (field, value, hour, type, effect, events, n) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                              $6::bigint[], $7::bigint[]) \
         ON CONFLICT (field, value, hour, type, effect) DO UPDATE \
         SET events = c.events + excluded.events, n = c.n + excluded.n",
        &[
            &column(hourly, |k, _| k.0),
            &column(hourly, |k, _| k.1),
            &column(hourly, |k, _| k.2),
            &column(hourly, |k, _| k.3),
            &column(hourly, |k, _| k.4),
            &column(hourly, |_, t| t.events as i64),
            &column(hourly, |_, t| t.n as i64),
        ],
    )
    .await?;
    let hours = &changes.hours;
    tx.execute(
        "INSERT INTO audit_hours AS c (field, value, hour, events, n) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) \
         ON CONFLICT (field, value, hour) DO UPDATE \
         SET events = c.events + excluded.events, n = c.n + excluded.n",
        &[
            &column(hours, |k, _| k.0),
            &column(hours, |k, _| k.1),
            &column(hours, |k, _| k.2),
            &column(hours, |_, t| t.events as i64),
            &column(hours, |_, t| t.n as i64),
        ],
    )
    .await?;
    let totals = &changes.totals;
    tx.execute(
        "INSERT INTO audit_totals AS c (field, value, type, effect, events, n) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
                              $6::bigint[]) \
         ON CONFLICT (field, value, type, effect) DO UPDATE \
         SET events = c.events + excluded.events, n = c.n + excluded.n",
        &[
            &column(totals, |k, _| k.0),
            &column(totals, |k, _| k.1),
            &column(totals, |k, _| k.2),
            &column(totals, |k, _| k.3),
            &column(totals, |_, t| t.events as i64),
            &column(totals, |_, t| t.n as i64),
        ],
    )
    .await?;
    // A run already known at this hour or later is neither written nor locked (the common case:
    // the same tokens' letters batch after batch).
    tx.execute(
        "INSERT INTO audit_word_runs AS r (run, hour) \
         SELECT u.run, u.hour FROM unnest($1::text[], $2::bigint[]) AS u(run, hour) \
         WHERE NOT EXISTS (SELECT 1 FROM audit_word_runs AS k \
                           WHERE k.run = u.run AND k.hour >= u.hour) \
         ON CONFLICT (run) DO UPDATE SET hour = excluded.hour WHERE r.hour < excluded.hour",
        &[
            &runs.keys().copied().collect::<Vec<&str>>(),
            &runs.values().copied().collect::<Vec<i64>>(),
        ],
    )
    .await?;
    Ok(())
}

/// One column of the rollup's rows, as an `unnest` parameter takes it.
fn column<K, T>(
    rows: &BTreeMap<K, rollup::Tally>,
    value: impl Fn(&K, &rollup::Tally) -> T,
) -> Vec<T> {
    rows.iter().map(|(k, t)| value(k, t)).collect()
}

/// Deletes what is older than `cutoff` (audits by whole hours, the rollup's first), `batch` rows
/// per transaction.
pub async fn expire(c: &mut Client, cutoff: &str, batch: u32) -> Result<Expired, StoreError> {
    let (hour, audits_cutoff) = rollup::aligned(cutoff)?;
    {
        let tx = c.transaction().await?;
        // The rollup's rows are ingestion's too: taken in its turn.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&keys::INGEST])
            .await?;
        for statement in rollup::EXPIRE {
            let statement = super::reader::numbered(statement);
            match statement.contains("$1") {
                true => tx.execute(&statement, &[&hour]).await?,
                false => tx.execute(&statement, &[]).await?,
            };
        }
        // The runs of letters last seen before the cutoff: every event that had them goes.
        tx.execute("DELETE FROM audit_word_runs WHERE hour < $1", &[&hour])
            .await?;
        tx.commit().await?;
    }
    let mut expired = Expired::default();
    let counters = [
        &mut expired.audits,
        &mut expired.activity,
        &mut expired.defenders,
        &mut expired.observations,
    ];
    for ((table, age), counter) in audits::EXPIRING.into_iter().zip(counters) {
        let cutoff = match table {
            "audits" => audits_cutoff.as_str(),
            _ => cutoff,
        };
        let delete = format!(
            "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE {age} < $1 LIMIT $2)"
        );
        loop {
            let tx = c.transaction().await?;
            // Before the events go: the chunks they are in unsealed, under the row a sealing
            // transaction locks ([`bitmaps::deletions`]).
            if table == "audits" {
                for statement in bitmaps::UNSEAL {
                    tx.execute(&super::reader::numbered(statement), &[&cutoff])
                        .await?;
                }
            }
            let deleted = tx.execute(&delete, &[&cutoff, &i64::from(batch)]).await?;
            tx.commit().await?;
            *counter += deleted;
            if deleted < u64::from(batch) {
                break;
            }
        }
        if table == "audits" {
            c.execute(bitmaps::EXPIRED, &[]).await?;
        }
    }
    Ok(expired)
}
