//! The SQLite store: one file in the data directory, WAL mode so that reads (the pages, the
//! audit queries) go on while a batch is written. One connection writes, one reads; each behind
//! a lock, because a connection is used by one thread at a time. The writer is taken in turns
//! ([`Writer`]): ordinary writes before the next group of audit batches, which are committed
//! together ([`Group`]).
//!
//! The schema grows by migrations: a console upgraded in place opens the database of the one
//! before it and brings it up to date, keeping its rows.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::group::{Batch, Group};
use super::sample::Sample;
use super::sql::{Dialect, Reader, Value};
use super::writer::{Priority, Writer};
use super::{
    ActivityEntry, ActivityQuery, AuditField, AuditQuery, Beat, Bucket, DefenderSeen, Expired,
    Heartbeat, Lease, Observation, POLICY_COLUMNS, Put, Revision, SessionRecord, Store, StoreError,
    StoredEvent, StoredPolicy, Summary, TokenRecord, TooNew, UserRecord, audits, bitmaps,
    deliveries, observations, people, rollup, table, word_rows, words,
};
use crate::documents::Doc;
use crate::events::{Event, MAX_BATCH};

/// The tables as the first console created them (schema version 0); later changes are
/// [`MIGRATIONS`], so that a database of any earlier console is brought to the same tables.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS policies (
    revision INTEGER PRIMARY KEY,
    document TEXT NOT NULL,
    updated  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audits (
    seq       INTEGER PRIMARY KEY, -- arrival order, to order events of the same time
    id        TEXT NOT NULL UNIQUE,
    time      TEXT NOT NULL,
    type      TEXT NOT NULL,
    effect    TEXT NOT NULL,
    rule      TEXT,
    attack    TEXT,
    container TEXT NOT NULL,
    image     TEXT NOT NULL,
    task      TEXT,
    pid       INTEGER NOT NULL,
    process   TEXT NOT NULL,
    cmdline   TEXT,
    parent    TEXT,
    domain    TEXT,
    ip        TEXT,
    port      INTEGER,
    message   TEXT NOT NULL,
    count     INTEGER NOT NULL,
    received  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audits_by_time ON audits (time DESC, seq DESC);
CREATE TABLE IF NOT EXISTS defenders (
    id         TEXT PRIMARY KEY,
    container  TEXT NOT NULL,
    image      TEXT NOT NULL,
    task       TEXT,
    version    TEXT NOT NULL,
    revision   TEXT,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);
";

/// What [`SCHEMA`] (the first console's tables, kept as they were) became since, in order: the
/// database's `user_version` counts those applied. Appended to, never edited.
const MIGRATIONS: &[&str] = &[
    // 1: the custom rule that decided an event (audit field `customRule`).
    "ALTER TABLE audits ADD COLUMN custom_rule TEXT;",
    // 2: the ECS identity of the container (audit fields `cluster`, `family`, `service`).
    "ALTER TABLE audits ADD COLUMN cluster TEXT;
     ALTER TABLE audits ADD COLUMN family TEXT;
     ALTER TABLE audits ADD COLUMN service TEXT;",
    // 3: the ECS identity in heartbeats (the defenders page).
    "ALTER TABLE defenders ADD COLUMN cluster TEXT;
     ALTER TABLE defenders ADD COLUMN family TEXT;
     ALTER TABLE defenders ADD COLUMN service TEXT;",
    // 4: users, sessions, named tokens, the activity log; the token that delivered an audit.
    people::PEOPLE_SCHEMA,
    // 5: who saved each revision.
    REVISION_AUTHORS,
    // 6: the activity defenders report with their heartbeats.
    super::observations::MIGRATION,
    // 7: the web application firewall: its audits' request fields, the ports a defender protects.
    WAAS_FIELDS,
    // 8: audit queries: the text search, an index per filter.
    audits::MIGRATION,
    // 9: the webhooks' delivery cursors.
    deliveries::MIGRATION,
    // 10: the WAAS policy's revisions.
    WAAS_POLICIES,
    // 11: the rollup of audit counts per hour and in all, built from the events stored.
    rollup::MIGRATION,
    // 12: the rollup's marginal totals, read largest first.
    rollup::MARGINALS,
    // 13: the rollup's marginal rows per hour (over every type and effect).
    rollup::HOURS,
    // 14: the text search's words in the rollup (then [`word_rows::backfill`]: [`BACKFILLS`]).
    word_rows::MIGRATION,
    // 15: the bitmap index of audits (chunks sealed afterwards by the console's index task).
    bitmaps::SQLITE_TABLES,
    // 16: the newest chunk sealed in part.
    bitmaps::SQLITE_PARTS,
];

/// What a migration builds from the rows already stored in Rust rather than SQL, after every
/// migration is applied, when the database had not reached the migration's number yet.
const BACKFILLS: &[(usize, Backfill)] = &[(14, word_rows::backfill)];

/// A backfill of [`BACKFILLS`], run inside the migrations' transaction.
type Backfill = fn(&Connection) -> Result<(), StoreError>;

/// Migration 10: the revisions of the WAAS policy, as `policies` holds the runtime policy's.
const WAAS_POLICIES: &str = "CREATE TABLE waas_policies (
    revision INTEGER PRIMARY KEY,
    document TEXT NOT NULL,
    updated  TEXT NOT NULL,
    author   TEXT
);";

/// Migration 7: `waas` audits' `method`, `url`, `sourceIp`, `field`, `requestId`; the ports each
/// defender's firewall protects (a JSON array of port numbers, as its heartbeat says).
const WAAS_FIELDS: &str = "ALTER TABLE audits ADD COLUMN method TEXT;
     ALTER TABLE audits ADD COLUMN url TEXT;
     ALTER TABLE audits ADD COLUMN source_ip TEXT;
     ALTER TABLE audits ADD COLUMN field TEXT;
     ALTER TABLE audits ADD COLUMN request_id TEXT;
     ALTER TABLE defenders ADD COLUMN protects TEXT;";

/// Migration 4: who saved each revision of the policy (`by`); earlier revisions keep NULL, shown as
/// unknown. (`author`, since `BY` is an SQL keyword.)
const REVISION_AUTHORS: &str = "ALTER TABLE policies ADD COLUMN author TEXT;";

/// How long [`Store::ready`] waits for a lock held by a write before it answers "not ready".
const READY_TIMEOUT: Duration = Duration::from_secs(2);

fn stored_policy(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredPolicy> {
    Ok(StoredPolicy {
        revision: r.get::<_, i64>(0)? as u64,
        document: r.get(1)?,
        updated: r.get(2)?,
        by: r.get(3)?,
    })
}

/// The events a transaction of audit batches takes at most (more only for a single larger
/// batch, which the API refuses anyway): the largest batch the API takes, so that a commit is
/// never more than about two batches' work for the callers waiting behind it.
const GROUP_EVENTS: usize = MAX_BATCH;
/// A transaction of audit batches stops taking the next batch once it has worked this long: a
/// policy change (or any ordinary write) waits for the transaction being written, and on a
/// large database whose indexes no longer fit the page cache, ten thousand events take seconds.
/// (Group commit's gain is mostly made by then: the upper index pages are written once.)
const TRANSACTION_WORK: Duration = Duration::from_millis(10);

pub struct Sqlite {
    writer: Writer,
    /// Audit batches waiting to be committed together.
    audits: Group<Batch>,
    reader: Mutex<Connection>,
    /// The connection the bitmap index reads a chunk's events through (long reads, which the
    /// queries on `reader` do not wait for).
    sealer: Mutex<Connection>,
    /// The bitmap index's chunks hold `2^shift` positions ([`bitmaps::SHIFT`]; smaller in tests).
    shift: u32,
    /// The last sample a summary was computed over (the page asks for several of one filter);
    /// locked after `reader`.
    sample: Mutex<Option<Sample>>,
    /// The samples of the partial hours of the last time range the rollup answered; locked after
    /// `reader`.
    spans: Mutex<rollup::Spans>,
    /// The database file, opened afresh by [`Store::ready`].
    path: PathBuf,
    /// Its device and inode when opened: the file the connections write, whatever is at `path`
    /// later.
    opened: (u64, u64),
    /// The database file open with an exclusive `flock(2)` on it, held while this store lives.
    /// Last, so dropped last: closing a descriptor of the file drops every `fcntl` lock the
    /// process holds on it (fcntl(2)), which must not happen under an open connection.
    _held: std::fs::File,
}

/// Another console has the database open: the SQLite store is one console's, and two would both
/// act as the only instance (each sends every webhook and runs retention; a policy change on one
/// wakes only its own long polls).
#[derive(Debug, thiserror::Error)]
#[error(
    "{0}: another console has this database open; one console serves a SQLite database \
     (several instances share a PostgreSQL database)"
)]
struct InUse(String);

/// The database file at `path` (created if absent), locked for this console alone.
///
/// `flock(2)` rather than SQLite's own locks: those are `fcntl` record locks taken and dropped
/// per transaction, and Linux keeps the two kinds apart, so the lock neither blocks SQLite nor is
/// released by it. It goes with the process (its descriptor), however the process ends.
fn hold(path: &Path) -> Result<std::fs::File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError { source: e.into() })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError {
            source: Box::new(InUse(path.display().to_string())),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError { source: e.into() }),
    }
}

/// The device and inode of the file at `path`.
fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|m| device_and_inode(&m))
}

fn device_and_inode(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError { source: e.into() }
    }
}

fn lock<T>(c: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it leaves the connection usable: SQLite rolls back what was open.
    // (The sample is emptied before it is read again, so a panic leaves none half read.)
    c.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sqlite {
    /// Writes a chunk [`bitmaps::next`] built, unless retention deleted events since it read
    /// them or it is sealed already (as far: a part sealed before is replaced).
    pub(super) fn store_chunk(
        &self,
        built: &bitmaps::Built,
    ) -> Result<Option<bitmaps::Sealed>, StoreError> {
        let mut c = self.writer.take(Priority::Bulk);
        let tx = c.transaction()?;
        // One writer: no deletion can come between this check and the commit.
        let deletions: i64 = tx.query_row(bitmaps::deletions(Dialect::Sqlite), [], |r| r.get(0))?;
        if deletions != built.deletions {
            return Ok(None);
        }
        let there: Option<Option<i64>> = tx
            .query_row(
                "SELECT upto FROM audit_chunks WHERE chunk = ?1",
                [built.chunk],
                |r| r.get(0),
            )
            .optional()?;
        match bitmaps::write(there, built.upto) {
            bitmaps::Write::Skip => return Ok(None),
            bitmaps::Write::Add => {}
            bitmaps::Write::Replace => {
                tx.execute("DELETE FROM audit_bits WHERE chunk = ?1", [built.chunk])?;
                tx.execute("DELETE FROM audit_chunks WHERE chunk = ?1", [built.chunk])?;
            }
        }
        tx.execute(
            "INSERT INTO audit_chunks (chunk, first_time, last_time, events, words, upto) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                built.chunk,
                built.first,
                built.last,
                built.events,
                built.words,
                built.upto
            ],
        )?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO audit_bits (key, chunk, bits) VALUES (?1, ?2, ?3)")?;
            for (key, bits) in &built.bits {
                insert.execute(params![key, built.chunk, bits])?;
            }
        }
        tx.commit()?;
        Ok(Some(built.sealed()))
    }

    /// A summary of `q`'s sample (the one kept, if still the database's).
    fn sampled<T>(
        &self,
        c: &mut dyn Reader,
        q: &AuditQuery,
        summarise: impl FnOnce(&Sample) -> Result<T, StoreError>,
    ) -> Result<Summary<T>, StoreError> {
        let mut kept = lock(&self.sample);
        let sample = Sample::of(c, q, rollup::SAMPLE, &mut kept)?;
        Ok(Summary {
            rows: summarise(sample)?,
            sampled: sample.cut,
        })
    }

    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let held = hold(path)?;
        let open = || -> rusqlite::Result<Connection> {
            let c = Connection::open(path)?;
            c.busy_timeout(Duration::from_secs(10))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            // WAL with NORMAL: a power loss may lose the last transactions, never corrupt.
            c.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(c)
        };
        let mut writer = open()?;
        // Each stored audit updates a dozen indexes and the text index at places far apart: a
        // page cache of 32 MiB (SQLite's default is 2 MiB) keeps their upper levels in memory and
        // stores batches about a third faster once the database outgrows the default.
        writer.pragma_update(None, "cache_size", -32 * 1024)?;
        migrate(&mut writer)?;
        let reader = open()?;
        reader.execute_batch(words::VOCABULARY)?;
        let sealer = open()?;
        // The file locked, not whatever `path` names by now.
        let opened = held
            .metadata()
            .map(|m| device_and_inode(&m))
            .map_err(|e| StoreError { source: e.into() })?;
        Ok(Sqlite {
            writer: Writer::new(writer),
            audits: Group::new(GROUP_EVENTS, |b: &Batch| b.events.len()),
            reader: Mutex::new(reader),
            sealer: Mutex::new(sealer),
            shift: bitmaps::SHIFT,
            sample: Mutex::new(None),
            spans: Mutex::default(),
            path: path.to_path_buf(),
            opened,
            _held: held,
        })
    }
}

/// Creates the tables of a new database, or brings an older one up to date, in one transaction:
/// an upgrade that fails half-way leaves the database as it was.
fn migrate(c: &mut Connection) -> Result<(), StoreError> {
    let tx = c.transaction()?;
    tx.execute_batch(SCHEMA)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let applied = usize::try_from(version).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(TooNew::error(version, MIGRATIONS.len()));
    }
    for migration in &MIGRATIONS[applied..] {
        tx.execute_batch(migration)?;
    }
    for (number, backfill) in BACKFILLS {
        if applied < *number {
            backfill(&tx)?;
        }
    }
    // PRAGMA takes no bound parameters; the value is a number of ours.
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))?;
    tx.commit()?;
    Ok(())
}

/// Stores the audit batches of one transaction, oldest first, each event with its batch's
/// source and arrival time; answers how many of each batch's events were new. An id stored
/// already, or earlier in the same transaction (another batch delivering it too), is skipped
/// and counted for no one but the batch that stored it. All of them or none: a failure rolls
/// the transaction back and fails every batch.
///
/// Whatever else must change with the events stored (counts kept beside them) belongs in this
/// transaction too, so that it commits, or fails, with them.
/// Writes the first of `batches` and those after it until [`TRANSACTION_WORK`] is spent, in one
/// transaction; answers the count of each one written.
fn add_batches(
    c: &mut Connection,
    batches: &[Batch],
    shift: u32,
) -> Result<Vec<usize>, StoreError> {
    let started = std::time::Instant::now();
    let tx = c.transaction()?;
    let mut counts = Vec::with_capacity(batches.len());
    // The events stored, for the counts kept beside them (duplicates skipped), and their words.
    let mut stored = Vec::new();
    let mut words = word_rows::Counts::default();
    {
        // Arrival positions are given here, above the newest stored, above every webhook's
        // cursor and above the bitmap index's sealed chunks: SQLite would reuse the positions of
        // the newest rows once deleted, and a webhook that passed them would never send what
        // arrived there, nor would a sealed chunk count it.
        let mut seq: i64 = tx
            .prepare_cached(&format!(
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM audits), 0), \
                            COALESCE((SELECT MAX(seq) FROM deliveries), 0), {})",
                bitmaps::sealed_end(shift)
            ))?
            .query_row([], |r| r.get(0))?;
        let mut insert = tx.prepare_cached(&format!(
            "INSERT OR IGNORE INTO audits ({}, received, seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
                     ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)",
            audits::COLUMNS
        ))?;
        for batch in batches {
            let mut added = 0;
            for e in &batch.events {
                let inserted = insert.execute(params![
                    e.id,
                    e.time,
                    e.kind.as_str(),
                    e.effect.as_str(),
                    e.rule,
                    e.attack,
                    e.custom_rule,
                    e.container,
                    e.image,
                    e.task,
                    e.pid,
                    e.process,
                    e.cmdline,
                    e.parent,
                    e.domain,
                    e.ip,
                    e.port,
                    e.message,
                    e.count as i64,
                    e.cluster,
                    e.family,
                    e.service,
                    batch.source,
                    e.method,
                    e.url,
                    e.source_ip,
                    e.field,
                    e.request_id,
                    batch.now,
                    seq + 1,
                ])?;
                // An id stored already is ignored and takes no position.
                if inserted == 1 {
                    seq += 1;
                    stored.push(e);
                    let kinds = (e.kind.as_str(), e.effect.as_str());
                    words.add(seq, &e.time, kinds, e.count, &super::sql::searched(e))?;
                }
                added += inserted;
            }
            counts.push(added);
            if started.elapsed() >= TRANSACTION_WORK {
                break;
            }
        }
        rollup::add(&tx, &stored)?;
        words.write(&tx)?;
    }
    tx.commit()?;
    Ok(counts)
}

/// What the audit plans read SQLite through: a read transaction (the rollup and the events of
/// the partial hours, a sample and its version, read at one point in time).
pub(super) struct Snapshot<'c> {
    tx: rusqlite::Transaction<'c>,
}

impl<'c> Snapshot<'c> {
    /// A snapshot of what `c` sees (which must not be in a transaction already).
    pub(super) fn of(c: &'c Connection) -> Result<Snapshot<'c>, StoreError> {
        Ok(Snapshot {
            tx: c.unchecked_transaction()?,
        })
    }
}

impl Reader for Snapshot<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn rows(
        &mut self,
        sql: &str,
        values: &[Value],
        row: &mut dyn FnMut(&[Value]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut select = self.tx.prepare_cached(sql)?;
        let columns = select.column_count();
        let mut rows = select.query(rusqlite::params_from_iter(values))?;
        // One row's values, the vector reused from row to row.
        let mut values = Vec::with_capacity(columns);
        while let Some(r) = rows.next()? {
            values.clear();
            for i in 0..columns {
                values.push(r.get::<_, Value>(i)?);
            }
            if !row(&values)? {
                break;
            }
        }
        Ok(())
    }

    /// SQLite's `PRAGMA data_version`: another connection's commit changes it.
    fn version(&mut self) -> Result<i64, StoreError> {
        Ok(self.tx.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
impl Sqlite {
    /// This store with the bitmap index's chunks of `2^shift` positions.
    pub(super) fn chunks(self, shift: u32) -> Sqlite {
        Sqlite { shift, ..self }
    }

    /// `f` of a snapshot of the reading connection.
    pub(super) fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut dyn Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut Snapshot::of(&lock(&self.reader))?)
    }

    /// The reading connection, for tests that look at the database itself.
    pub(super) fn reader_for_tests(&self) -> MutexGuard<'_, Connection> {
        lock(&self.reader)
    }
}

/// The lease of the only process using the database.
struct Sole;

impl Lease for Sole {
    fn held(&self) -> bool {
        true
    }
}

impl Store for Sqlite {
    fn policy(&self, doc: Doc) -> Result<Option<StoredPolicy>, StoreError> {
        let table = table(doc);
        lock(&self.reader)
            .query_row(
                &format!("SELECT {POLICY_COLUMNS} FROM {table} ORDER BY revision DESC LIMIT 1"),
                [],
                stored_policy,
            )
            .optional()
            .map_err(StoreError::from)
    }

    fn put_policy(
        &self,
        doc: Doc,
        document: &str,
        now: &str,
        by: &str,
        after: Option<u64>,
    ) -> Result<Put, StoreError> {
        let table = table(doc);
        let mut c = self.writer.ordinary();
        let tx = c.transaction()?;
        let newest = tx
            .query_row(
                &format!("SELECT {POLICY_COLUMNS} FROM {table} ORDER BY revision DESC LIMIT 1"),
                [],
                stored_policy,
            )
            .optional()?;
        if let (Some(after), Some(newest)) = (after, &newest)
            && after != newest.revision
        {
            return Ok(Put::Behind(newest.clone()));
        }
        tx.execute(
            &format!("INSERT INTO {table} (document, updated, author) VALUES (?1, ?2, ?3)"),
            params![document, now, by],
        )?;
        let revision = tx.last_insert_rowid() as u64;
        tx.commit()?;
        Ok(Put::Saved(StoredPolicy {
            revision,
            document: document.into(),
            updated: now.into(),
            by: Some(by.into()),
        }))
    }

    fn changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        // Only this process writes the file (its connections are the only ones).
        None
    }

    fn turn(&self, _task: &str, _now: &str, _since: &str) -> Result<bool, StoreError> {
        // One process: always its turn.
        Ok(true)
    }

    fn lease(&self, _name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        Ok(Some(Box::new(Sole)))
    }

    fn add_audits(&self, events: &[Event], source: &str, now: &str) -> Result<usize, StoreError> {
        let batch = Batch {
            events: events.to_vec(),
            source: source.into(),
            now: now.into(),
        };
        self.audits.submit(batch, |batches| {
            add_batches(&mut self.writer.take(Priority::Bulk), batches, self.shift)
        })
    }

    fn audits(&self, q: &AuditQuery) -> Result<Vec<StoredEvent>, StoreError> {
        audits::audits(&mut Snapshot::of(&lock(&self.reader))?, q, self.shift)
    }

    fn count_audits(&self, q: &AuditQuery) -> Result<u64, StoreError> {
        let c = lock(&self.reader);
        let snapshot = &mut Snapshot::of(&c)?;
        match rollup::plan(q, rollup::Ask::Count) {
            Some(route) => rollup::count(snapshot, q, &route, Some(&mut lock(&self.spans))),
            None => match bitmaps::count(snapshot, q, self.shift)? {
                Some(n) => Ok(n),
                None => audits::count(snapshot, q),
            },
        }
    }

    fn seal(&self, parts: bool) -> Result<Option<bitmaps::Sealed>, StoreError> {
        let built = bitmaps::next(&mut Snapshot::of(&lock(&self.sealer))?, self.shift, parts)?;
        match built {
            Some(built) => self.store_chunk(&built),
            None => Ok(None),
        }
    }

    fn audit(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        audits::by_id(&mut Snapshot::of(&lock(&self.reader))?, id)
    }

    fn audit_stats(
        &self,
        q: &AuditQuery,
        group: AuditField,
    ) -> Result<Summary<Vec<(String, u64)>>, StoreError> {
        let c = lock(&self.reader);
        let snapshot = &mut Snapshot::of(&c)?;
        match rollup::plan(q, rollup::Ask::Stats(group)) {
            Some(route) => Ok(Summary {
                rows: rollup::stats(snapshot, q, &route, group, Some(&mut lock(&self.spans)))?,
                sampled: None,
            }),
            None => self.sampled(snapshot, q, |sample| sample.stats(group, q.limit, q.offset)),
        }
    }

    fn audit_histogram(
        &self,
        q: &AuditQuery,
        minutes: u32,
    ) -> Result<Summary<Vec<Bucket>>, StoreError> {
        let c = lock(&self.reader);
        let snapshot = &mut Snapshot::of(&c)?;
        match rollup::plan(q, rollup::Ask::Histogram(minutes)) {
            Some(route) => Ok(Summary {
                rows: rollup::histogram(
                    snapshot,
                    q,
                    &route,
                    minutes,
                    Some(&mut lock(&self.spans)),
                )?,
                sampled: None,
            }),
            None => self.sampled(snapshot, q, |sample| {
                Ok(sample.histogram(minutes, q.limit, q.offset))
            }),
        }
    }

    fn expire(&self, cutoff: &str, batch: u32) -> Result<Expired, StoreError> {
        let mut expired = Expired::default();
        let counters = [
            &mut expired.audits,
            &mut expired.activity,
            &mut expired.defenders,
            &mut expired.observations,
        ];
        // Audits go by whole hours, the rollup's first: its counts may lead the events by the
        // few seconds their batches take.
        let (hour, audits_cutoff) = rollup::aligned(cutoff)?;
        rollup::expire(&mut self.writer.take(Priority::Bulk), hour)?;
        for (table, counter) in audits::EXPIRING.into_iter().zip(counters) {
            let cutoff = match table.0 {
                "audits" => &audits_cutoff,
                _ => cutoff,
            };
            // The writer is taken per batch: ingestion goes on between them.
            loop {
                let mut c = self.writer.take(Priority::Bulk);
                let tx = c.transaction()?;
                if table.0 == "audits" {
                    for statement in bitmaps::UNSEAL {
                        tx.execute(statement, [cutoff])?;
                    }
                }
                let deleted = audits::expire_batch(&tx, table, cutoff, batch)?;
                tx.commit()?;
                *counter += deleted;
                if deleted < u64::from(batch) {
                    break;
                }
            }
            if table.0 == "audits" {
                self.writer
                    .take(Priority::Bulk)
                    .execute(bitmaps::EXPIRED, [])?;
            }
        }
        // The planner's statistics, which choose among the filters' indexes, follow what the
        // tables hold now; sampled (`analysis_limit`), so that this stays short however large.
        self.writer
            .take(Priority::Bulk)
            .execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")?;
        Ok(expired)
    }

    fn audits_after(&self, seq: i64, limit: u32) -> Result<Vec<(i64, StoredEvent)>, StoreError> {
        audits::after(&mut Snapshot::of(&lock(&self.reader))?, seq, limit)
    }

    fn heartbeats(&self, beats: &[Beat]) -> Result<(), StoreError> {
        // A bulk write: a policy saved meanwhile goes before it, waiting for no more than the
        // transaction being written.
        let mut c = self.writer.take(Priority::Bulk);
        let tx = c.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO defenders (id, container, image, task, version, revision, first_seen, \
                   last_seen, cluster, family, service, protects) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (id) DO UPDATE SET container = ?2, image = ?3, task = ?4, version = ?5, \
                   revision = ?6, last_seen = ?8, cluster = ?9, family = ?10, service = ?11, \
                   protects = ?12",
            )?;
            for Beat {
                beat: b,
                observed,
                first,
                last,
            } in beats
            {
                upsert.execute(params![
                    b.id,
                    b.container,
                    b.image,
                    b.task,
                    b.version,
                    b.revision,
                    first,
                    last,
                    b.cluster,
                    b.family,
                    b.service,
                    serde_json::to_string(&b.protects).expect("ports always serialize"),
                ])?;
                observations::add(&tx, b, observed, last)?;
            }
        }
        tx.commit().map_err(StoreError::from)
    }

    fn defenders(&self) -> Result<Vec<DefenderSeen>, StoreError> {
        let c = lock(&self.reader);
        let mut select = c.prepare_cached(
            "SELECT id, container, image, task, version, revision, first_seen, last_seen, \
                   cluster, family, service, protects \
                 FROM defenders ORDER BY last_seen DESC",
        )?;
        let rows = select.query_map([], |r| {
            Ok(DefenderSeen {
                beat: Heartbeat {
                    id: r.get(0)?,
                    container: r.get(1)?,
                    image: r.get(2)?,
                    task: r.get(3)?,
                    cluster: r.get(8)?,
                    family: r.get(9)?,
                    service: r.get(10)?,
                    version: r.get(4)?,
                    revision: r.get(5)?,
                    // Written by this console as a JSON array of ports; NULL before migration 7.
                    protects: r
                        .get::<_, Option<String>>(11)?
                        .and_then(|p| serde_json::from_str(&p).ok())
                        .unwrap_or_default(),
                },
                first_seen: r.get(6)?,
                last_seen: r.get(7)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    fn revisions(&self, doc: Doc) -> Result<Vec<Revision>, StoreError> {
        let c = lock(&self.reader);
        // Documents are stored validated, so `rules` is always a list.
        let mut select = c.prepare_cached(&format!(
            "SELECT revision, updated, author, json_array_length(document, '$.rules') \
                 FROM {} ORDER BY revision DESC",
            table(doc)
        ))?;
        let rows = select.query_map([], |r| {
            Ok(Revision {
                revision: r.get::<_, i64>(0)? as u64,
                time: r.get(1)?,
                by: r.get(2)?,
                rules: r.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    fn revision(&self, doc: Doc, revision: u64) -> Result<Option<StoredPolicy>, StoreError> {
        // Beyond i64: no such row (SQLite's rowids are i64).
        let Ok(revision) = i64::try_from(revision) else {
            return Ok(None);
        };
        lock(&self.reader)
            .query_row(
                &format!(
                    "SELECT {POLICY_COLUMNS} FROM {} WHERE revision = ?1",
                    table(doc)
                ),
                [revision],
                stored_policy,
            )
            .optional()
            .map_err(StoreError::from)
    }

    // ---- observations ----
    fn observations(&self, since: Option<&str>) -> Result<Vec<Observation>, StoreError> {
        observations::since(&lock(&self.reader), since).map_err(StoreError::from)
    }

    // ---- operations ----
    fn ready(&self) -> Result<(), StoreError> {
        // The serving connections keep writing the file they opened even once it is deleted or
        // replaced, and what they write is then lost at the next start: not ready.
        match identity(&self.path) {
            Ok(found) if found == self.opened => {}
            Ok(_) => {
                return Err(StoreError::message(
                    "the database file was replaced since the console opened it".into(),
                ));
            }
            Err(e) => return Err(StoreError::message(format!("the database file: {e}"))),
        }
        // A fresh connection, not the serving ones: it fails as a restart would on a file
        // damaged or made unreadable. Read-write without creating: a missing file is an error,
        // not a new database.
        use rusqlite::OpenFlags;
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(READY_TIMEOUT)?;
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if usize::try_from(version).ok() != Some(MIGRATIONS.len()) {
            return Err(StoreError::message(format!(
                "the database file is at schema version {version}, not this console's {}",
                MIGRATIONS.len()
            )));
        }
        c.query_row("SELECT COUNT(*) FROM policies", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    fn size(&self) -> Result<u64, StoreError> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let len = |p: &Path| match std::fs::metadata(p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::message(format!("{}: {e}", p.display()))),
        };
        Ok(len(&self.path)? + len(Path::new(&wal))?)
    }

    fn delivery_cursor(&self, target: &str) -> Result<i64, StoreError> {
        deliveries::cursor(&self.writer.ordinary(), target)
    }

    fn set_delivery_cursor(&self, target: &str, seq: i64) -> Result<(), StoreError> {
        deliveries::set_cursor(&self.writer.ordinary(), target, seq)
    }

    // ---- people ----
    fn add_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        people::add_user(&self.writer.ordinary(), user)
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        people::user(&lock(&self.reader), name)
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        people::users(&lock(&self.reader))
    }

    fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        people::delete_user(&mut self.writer.ordinary(), name)
    }

    fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        people::add_session(&self.writer.ordinary(), session)
    }

    fn session(
        &self,
        id_hash: &str,
        now: &str,
        idle_cutoff: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        people::session(&self.writer.ordinary(), id_hash, now, idle_cutoff)
    }

    fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        people::delete_session(&self.writer.ordinary(), id_hash)
    }

    fn add_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        people::add_token(&self.writer.ordinary(), token)
    }

    fn use_token(&self, hash: &str, now: &str) -> Result<Option<TokenRecord>, StoreError> {
        people::use_token(&self.writer.ordinary(), hash, now)
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        people::tokens(&lock(&self.reader))
    }

    fn revoke_token(&self, name: &str, now: &str) -> Result<bool, StoreError> {
        people::revoke_token(&self.writer.ordinary(), name, now)
    }

    fn add_activity(&self, entry: &ActivityEntry) -> Result<(), StoreError> {
        people::add_activity(&self.writer.ordinary(), entry)
    }

    fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityEntry>, StoreError> {
        people::activity(&lock(&self.reader), query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Effect, Kind};
    use crate::store::Pattern;

    fn event(id: &str, time: &str, kind: Kind, container: &str) -> Event {
        Event {
            id: id.into(),
            time: time.into(),
            kind,
            effect: Effect::Prevent,
            rule: Some("r".into()),
            attack: None,
            custom_rule: None,
            container: container.into(),
            image: "img".into(),
            task: None,
            cluster: None,
            family: None,
            service: None,
            pid: 1,
            process: "/bin/x".into(),
            cmdline: None,
            parent: None,
            domain: None,
            ip: None,
            port: Some(443),
            method: None,
            url: None,
            source_ip: None,
            field: None,
            request_id: None,
            message: "m".into(),
            count: 1,
        }
    }

    fn exact(value: &str) -> Pattern {
        Pattern::Exact(value.into())
    }

    fn ids(events: &[StoredEvent]) -> Vec<&str> {
        events.iter().map(|e| e.event.id.as_str()).collect()
    }

    /// The events of `stored`, without their source.
    fn events(stored: Vec<StoredEvent>) -> Vec<Event> {
        stored.into_iter().map(|s| s.event).collect()
    }

    #[test]
    fn webhook_cursors_start_at_the_newest_and_positions_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = Sqlite::open(&path).unwrap();
        let t = "2026-11-29T10:00:00.000000Z";
        let ids_after = |seq| -> Vec<String> {
            s.audits_after(seq, 100)
                .unwrap()
                .into_iter()
                .map(|(_, e)| e.event.id)
                .collect()
        };
        let batch = [
            event("a", t, Kind::Process, "web"),
            event("b", t, Kind::Dns, "web"),
        ];
        assert_eq!(s.add_audits(&batch, "defender", t).unwrap(), 2);
        // A new webhook starts after what is stored; its cursor is kept.
        let start = s.delivery_cursor("hook").unwrap();
        assert_eq!(ids_after(start), Vec::<String>::new());
        assert_eq!(ids_after(0), ["a", "b"]);
        let again = [
            event("b", t, Kind::Dns, "web"),
            event("c", t, Kind::Dns, "web"),
        ];
        assert_eq!(s.add_audits(&again, "defender", t).unwrap(), 1);
        let after = s.audits_after(start, 100).unwrap();
        assert_eq!(after.len(), 1);
        s.set_delivery_cursor("hook", after[0].0).unwrap();
        assert_eq!(s.delivery_cursor("hook").unwrap(), after[0].0);
        assert_eq!(s.audits_after(0, 2).unwrap().len(), 2);

        // The newest rows deleted (as retention may), a new event still lands after the cursor.
        Connection::open(&path)
            .unwrap()
            .execute("DELETE FROM audits WHERE id IN ('b', 'c')", [])
            .unwrap();
        assert_eq!(
            s.add_audits(&[event("d", t, Kind::Process, "web")], "defender", t)
                .unwrap(),
            1
        );
        assert_eq!(ids_after(s.delivery_cursor("hook").unwrap()), ["d"]);
    }

    #[test]
    fn audits_are_idempotent_filtered_and_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("db")).unwrap();
        let t = |n: u32| format!("2026-11-29T10:00:{n:02}.000000Z");
        let batch = [
            event("a", &t(1), Kind::Process, "web"),
            event("b", &t(3), Kind::Dns, "web"),
            event("c", &t(2), Kind::Process, "db"),
        ];
        assert_eq!(s.add_audits(&batch, "defender", &t(9)).unwrap(), 3);
        // Delivered again (at least once), plus one new: only the new one counts.
        let again = [batch[0].clone(), event("d", &t(3), Kind::Process, "web")];
        assert_eq!(s.add_audits(&again, "other", &t(9)).unwrap(), 1);

        let all = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        // Newest first; same time: the later arrival first.
        assert_eq!(ids(&s.audits(&all).unwrap()), ["d", "b", "c", "a"]);
        let stored = s.audits(&all).unwrap();
        assert_eq!(stored[3].event, batch[0]);
        // Each event names the token that delivered it first.
        assert_eq!(stored[0].source.as_deref(), Some("other"));
        assert_eq!(stored[3].source.as_deref(), Some("defender"));
        // One event by its id (the audits page's event page), as the list has it.
        assert_eq!(s.audit("a").unwrap().as_ref(), Some(&stored[3]));
        assert_eq!(s.audit("zz").unwrap(), None);
        let cases = [
            (
                all.clone().with(AuditField::Container, exact("web")),
                vec!["d", "b", "a"],
            ),
            (
                all.clone().with(AuditField::Type, exact("process")),
                vec!["d", "c", "a"],
            ),
            (
                AuditQuery {
                    since: Some(t(2)),
                    until: Some(t(3)),
                    ..all.clone()
                },
                vec!["c"],
            ),
            (all.clone().with(AuditField::Effect, exact("alert")), vec![]),
            (
                AuditQuery {
                    limit: 2,
                    offset: 1,
                    ..all.clone()
                },
                vec!["b", "c"],
            ),
        ];
        for (q, want) in cases {
            assert_eq!(ids(&s.audits(&q).unwrap()), want, "{q:?}");
        }
    }

    /// Batches that wait while a transaction is written are committed together: an id two of
    /// them carry is stored once and counted for one of them; each caller gets its own count.
    #[test]
    fn batches_waiting_together_share_a_transaction_and_each_id_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("db")).unwrap();
        let t = "2026-11-29T10:00:00.000000Z";
        let batch = |ids: &[&str]| -> Vec<Event> {
            ids.iter()
                .map(|id| event(id, t, Kind::Process, "web"))
                .collect()
        };
        let (first, second, third) = (batch(&["a", "b"]), batch(&["b", "c"]), batch(&["c", "d"]));
        // An ordinary write holds the writer: the first caller leads a transaction of its batch
        // and waits for its turn; the two after it queue for the next transaction.
        let held = s.writer.ordinary();
        let add = |b: &[Event]| s.add_audits(b, "defender", t).unwrap();
        let counts = std::thread::scope(|scope| {
            let first = scope.spawn(|| add(&first));
            while s.audits.waiting() != (0, true) {
                std::thread::yield_now();
            }
            let (second, third) = (scope.spawn(|| add(&second)), scope.spawn(|| add(&third)));
            while s.audits.waiting() != (2, true) {
                std::thread::yield_now();
            }
            drop(held);
            [first, second, third].map(|h| h.join().unwrap())
        });
        // `b` is the first transaction's; `c` goes to whichever of the other two is written
        // first (2 and 0, or 1 and 1): counted once in all.
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1] + counts[2], 2, "{counts:?}");
        let all = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        let mut stored = ids(&s.audits(&all).unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        stored.sort();
        assert_eq!(stored, ["a", "b", "c", "d"]);
    }

    /// A flood of audit batches from several threads and policy changes in parallel: every
    /// change is stored while the flood goes on (no flood thread reached its last batch), and no
    /// transaction of batches took the connection between a change asking for it and getting it
    /// (it waited for the one being written, at most).
    #[test]
    fn a_policy_change_during_a_flood_of_audits_waits_for_one_transaction_at_most() {
        use super::super::writer::Step;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        const FLOODERS: usize = 4;
        const MOST: usize = 5_000;
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("db")).unwrap();
        let t = "2026-11-29T10:00:00.000000Z";
        let (stop, posted) = (AtomicBool::new(false), AtomicUsize::new(0));
        let changes = 20;
        let flooded = std::thread::scope(|scope| {
            let flooders: Vec<_> = (0..FLOODERS)
                .map(|f| {
                    let (s, stop, posted) = (&s, &stop, &posted);
                    scope.spawn(move || {
                        let mut n = 0;
                        while !stop.load(Ordering::SeqCst) && n < MOST {
                            let batch: Vec<Event> = (0..100)
                                .map(|i| event(&format!("{f}-{n}-{i}"), t, Kind::Process, "web"))
                                .collect();
                            s.add_audits(&batch, "defender", t).unwrap();
                            posted.fetch_add(1, Ordering::SeqCst);
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            for i in 0..changes {
                // Each change made with the flood going on: batches stored since the last.
                let seen = posted.load(Ordering::SeqCst);
                while posted.load(Ordering::SeqCst) == seen {
                    std::thread::yield_now();
                }
                let document = format!("{{\"change\": {i}}}");
                s.put_policy(Doc::Runtime, &document, t, "admin", None)
                    .unwrap();
            }
            stop.store(true, Ordering::SeqCst);
            flooders
                .into_iter()
                .map(|f| f.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert!(flooded.iter().all(|&n| n < MOST), "{flooded:?}");
        let steps = s.writer.steps();
        let asked: Vec<usize> = (0..steps.len())
            .filter(|&i| steps[i] == Step::Asked(Priority::Ordinary))
            .collect();
        // The first policy revisions of the console are written before the flood (open).
        assert!(asked.len() >= changes, "{}", asked.len());
        for &i in &asked {
            let took = (i..steps.len())
                .find(|&j| steps[j] == Step::Took(Priority::Ordinary))
                .expect("every change took the connection");
            assert!(
                !steps[i..took].contains(&Step::Took(Priority::Bulk)),
                "a transaction of batches went before the change asking at {i}: {:?}",
                &steps[i..=took]
            );
        }
        // And the flood did go on between the changes.
        let bulk_between = steps[asked[0]..*asked.last().unwrap()]
            .iter()
            .filter(|&&step| step == Step::Took(Priority::Bulk))
            .count();
        assert!(bulk_between > 0, "{steps:?}");
    }

    /// The audits table of the console before custom rules (schema version 0), as it created it.
    const SCHEMA_0_AUDITS: &str = "
        CREATE TABLE audits (
            seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
            type TEXT NOT NULL, effect TEXT NOT NULL, rule TEXT, attack TEXT,
            container TEXT NOT NULL, image TEXT NOT NULL, task TEXT, pid INTEGER NOT NULL,
            process TEXT NOT NULL, cmdline TEXT, parent TEXT, domain TEXT, ip TEXT, port INTEGER,
            message TEXT NOT NULL, count INTEGER NOT NULL, received TEXT NOT NULL
        );
        INSERT INTO audits (id, time, type, effect, rule, attack, container, image, pid, process,
                            message, count, received)
        VALUES ('old', '2026-11-29T10:00:01.000000Z', 'process', 'prevent', 'r',
                'processExplicitlyDenied', 'web', 'img', 7, '/bin/mkdir', 'm', 1, 't');
    ";

    #[test]
    fn an_older_database_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(SCHEMA_0_AUDITS)
            .unwrap();

        let s = Sqlite::open(&path).unwrap();
        let all = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        let old = s.audits(&all).unwrap();
        assert_eq!(ids(&old), ["old"]);
        assert_eq!(
            (
                old[0].event.custom_rule.as_deref(),
                old[0].event.message.as_str(),
                old[0].source.as_deref()
            ),
            (None, "m", None)
        );
        let mut new = event("new", "2026-11-29T10:00:02.000000Z", Kind::Process, "web");
        new.attack = Some("customRule".into());
        new.custom_rule = Some("netcat listener".into());
        new.cluster = Some("prod".into());
        new.family = Some("orders".into());
        new.service = Some("orders-api".into());
        assert_eq!(
            s.add_audits(std::slice::from_ref(&new), "defender", "t")
                .unwrap(),
            1
        );
        let by_custom = all
            .clone()
            .with(AuditField::CustomRule, exact("netcat listener"));
        assert_eq!(events(s.audits(&by_custom).unwrap()), [new.clone()]);
        // The ECS columns: the old row has none, so no ECS filter selects it.
        assert_eq!(
            [
                &old[0].event.cluster,
                &old[0].event.family,
                &old[0].event.service
            ],
            [&None, &None, &None]
        );
        let cases = [
            (Some("prod"), None, None, vec!["new"]),
            (None, Some("orders"), Some("orders-api"), vec!["new"]),
            (Some("prod"), Some("other"), None, vec![]),
            (None, None, Some("orders"), vec![]), // exact, as the other fields
        ];
        for (cluster, family, service, want) in cases {
            let mut q = all.clone();
            for (field, value) in [
                (AuditField::Cluster, cluster),
                (AuditField::Family, family),
                (AuditField::Service, service),
            ] {
                if let Some(v) = value {
                    q = q.with(field, exact(v));
                }
            }
            assert_eq!(ids(&s.audits(&q).unwrap()), want, "{q:?}");
        }
        // The text search covers the rows of before the migration.
        let search = AuditQuery {
            search: Some(crate::store::Search::parse("mkdir").unwrap()),
            ..all.clone()
        };
        assert_eq!(ids(&s.audits(&search).unwrap()), ["old"]);
        drop(s);

        // Opened again: nothing to migrate, nothing lost.
        let s = Sqlite::open(&path).unwrap();
        assert_eq!(ids(&s.audits(&all).unwrap()), ["new", "old"]);
        let version: i64 = lock(&s.reader)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        drop(s);

        // A database of a newer console is refused, untouched.
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(c);
        let err = Sqlite::open(&path).err().unwrap().to_string();
        assert!(err.contains("schema version 99, newer"), "{err}");
    }

    /// A database of the console before the ECS columns (schema version 1) gains them, empty on
    /// its rows.
    #[test]
    fn a_database_at_version_1_gains_the_ecs_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "{SCHEMA_0_AUDITS} {} PRAGMA user_version = 1;",
                MIGRATIONS[0]
            ))
            .unwrap();
        let s = Sqlite::open(&path).unwrap();
        let all = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        let old = s.audits(&all).unwrap();
        assert_eq!((ids(&old), &old[0].event.cluster), (vec!["old"], &None));
        let mut new = event("new", "2026-11-29T10:00:02.000000Z", Kind::Process, "app");
        new.service = Some("orders-api".into());
        s.add_audits(std::slice::from_ref(&new), "defender", "t")
            .unwrap();
        let by_service = all.with(AuditField::Service, exact("orders-api"));
        assert_eq!(events(s.audits(&by_service).unwrap()), [new]);
    }

    /// A database at schema `version` (as the console of that version left it) holding the rows
    /// `rows` inserts.
    fn database_at(path: &Path, version: usize, rows: &str) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(SCHEMA).unwrap();
        for migration in &MIGRATIONS[..version] {
            c.execute_batch(migration).unwrap();
        }
        c.execute_batch(&format!("{rows}; PRAGMA user_version = {version};"))
            .unwrap();
    }

    /// Revisions saved before authors were kept (schema version 3) stay, with no author.
    #[test]
    fn a_database_at_version_3_keeps_its_revisions_without_authors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        database_at(
            &path,
            3,
            r#"INSERT INTO policies (document, updated) VALUES ('{"rules": []}', 't0')"#,
        );
        let s = Sqlite::open(&path).unwrap();
        let old = s.revision(Doc::Runtime, 1).unwrap().unwrap();
        assert_eq!((old.document.as_str(), old.by), (r#"{"rules": []}"#, None));
        s.put_policy(Doc::Runtime, r#"{"rules": [{}]}"#, "t1", "carol", None)
            .unwrap();
        let listed: Vec<(u64, Option<String>, u64)> = s
            .revisions(Doc::Runtime)
            .unwrap()
            .into_iter()
            .map(|r| (r.revision, r.by, r.rules))
            .collect();
        assert_eq!(listed, [(2, Some("carol".into()), 1), (1, None, 0)]);
    }

    /// A database of the console before the rollup (schema version 10) holding events: migration
    /// 11 counts them, so that totals and summaries answered from the rollup include them.
    #[test]
    fn a_database_at_version_10_gets_its_events_rolled_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        database_at(
            &path,
            10,
            "INSERT INTO audits (id, time, type, effect, container, image, pid, process, message,
                                 count, received)
             VALUES ('a', '2026-11-29T10:00:01.000000Z', 'process', 'prevent', 'web', 'img', 1,
                     '/bin/x', 'm', 2, 't'),
                    ('b', '2026-11-29T10:59:59.999999Z', 'dns', 'alert', 'web', 'img', 1,
                     '/bin/x', 'm', 3, 't'),
                    ('c', '2026-11-29T11:00:00.000000Z', 'dns', 'alert', 'db', 'img', 1,
                     '/bin/y', 'm', 4, 't')",
        );
        let s = Sqlite::open(&path).unwrap();
        let rolled: i64 = lock(&s.reader)
            .query_row(
                "SELECT events FROM audit_totals WHERE field = 'container' AND value = 'web' \
                 AND type = 'dns'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rolled, 1);
        let all = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        let web = all.clone().with(AuditField::Container, exact("web"));
        assert_eq!(s.count_audits(&web).unwrap(), 2);
        assert_eq!(
            s.audit_stats(&all, AuditField::Container).unwrap(),
            Summary {
                rows: vec![("web".into(), 5), ("db".into(), 4)],
                sampled: None
            }
        );
        let hours: Vec<(String, u64)> = s
            .audit_histogram(&all, 60)
            .unwrap()
            .rows
            .into_iter()
            .map(|b| (b.start, b.count))
            .collect();
        assert_eq!(
            hours,
            [
                ("2026-11-29T10:00:00Z".into(), 3),
                ("2026-11-29T10:00:00Z".into(), 2),
                ("2026-11-29T11:00:00Z".into(), 4)
            ]
        );
        // New events add to the old ones' counts.
        s.add_audits(
            &[event("d", "2026-11-29T11:30:00.000000Z", Kind::Dns, "web")],
            "defender",
            "t",
        )
        .unwrap();
        assert_eq!(s.count_audits(&web).unwrap(), 3);
    }

    #[test]
    fn policies_and_defenders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = Sqlite::open(&path).unwrap();
        assert_eq!(s.policy(Doc::Runtime).unwrap(), None);
        assert_eq!(s.revisions(Doc::Runtime).unwrap(), []);
        let first = s
            .put_policy(Doc::Runtime, r#"{"rules": [1]}"#, "t1", "alice", Some(0))
            .unwrap()
            .saved();
        assert_eq!(first.revision, 1);
        assert_eq!(
            s.put_policy(Doc::Runtime, r#"{"rules": [1, 2]}"#, "t2", "bob", Some(1))
                .unwrap()
                .saved()
                .revision,
            2
        );
        drop(s);
        let s = Sqlite::open(&path).unwrap();
        let p = s.policy(Doc::Runtime).unwrap().unwrap();
        assert_eq!(
            (p.revision, p.document.as_str(), p.by.as_deref()),
            (2, r#"{"rules": [1, 2]}"#, Some("bob"))
        );
        // Every revision is kept, newest first, with its author and rule count.
        let revision = |revision, time: &str, by: &str, rules| Revision {
            revision,
            time: time.into(),
            by: Some(by.into()),
            rules,
        };
        assert_eq!(
            s.revisions(Doc::Runtime).unwrap(),
            [revision(2, "t2", "bob", 2), revision(1, "t1", "alice", 1)]
        );
        assert_eq!(s.revision(Doc::Runtime, 1).unwrap(), Some(first));
        assert_eq!(s.revision(Doc::Runtime, 3).unwrap(), None);
        assert_eq!(s.revision(Doc::Runtime, u64::MAX).unwrap(), None);
        // The WAAS policy has revisions of its own, numbered from 1.
        assert_eq!(s.policy(Doc::Waas).unwrap(), None);
        let waas = s
            .put_policy(Doc::Waas, r#"{"rules": []}"#, "t3", "carol", None)
            .unwrap()
            .saved();
        assert_eq!(waas.revision, 1);
        assert_eq!(s.policy(Doc::Waas).unwrap(), Some(waas.clone()));
        assert_eq!(s.revision(Doc::Waas, 1).unwrap(), Some(waas));
        assert_eq!(
            s.revisions(Doc::Waas).unwrap(),
            [revision(1, "t3", "carol", 0)]
        );
        assert_eq!(s.policy(Doc::Runtime).unwrap().unwrap().revision, 2);

        let mut beat = Heartbeat {
            id: "i1".into(),
            container: "web".into(),
            image: "img".into(),
            task: None,
            cluster: Some("prod".into()),
            family: None,
            service: Some("orders-api".into()),
            version: "0.1.0".into(),
            revision: Some("1".into()),
            protects: vec![8080],
        };
        let none = defender::activity::Observed::default;
        s.heartbeats(&[Beat::one(beat.clone(), none(), "t1")])
            .unwrap();
        beat.revision = Some("2".into());
        // Coalesced beats: an existing defender keeps its first sighting; a new one is first
        // seen at the first of its beats, both last seen at the last.
        let other = Heartbeat {
            id: "i2".into(),
            ..beat.clone()
        };
        s.heartbeats(&[
            Beat {
                first: "t1.5".into(),
                ..Beat::one(beat.clone(), none(), "t2")
            },
            Beat {
                first: "t1.7".into(),
                ..Beat::one(other, none(), "t1.9")
            },
        ])
        .unwrap();
        let seen = s.defenders().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (&*seen[1].beat.id, &*seen[1].first_seen, &*seen[1].last_seen),
            ("i2", "t1.7", "t1.9")
        );
        let seen = &seen[..1];
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (
                seen[0].beat.revision.as_deref(),
                &*seen[0].first_seen,
                &*seen[0].last_seen
            ),
            (Some("2"), "t1", "t2")
        );
        assert_eq!(seen[0].beat, beat);
    }
}
