//! The PostgreSQL store (`--database postgres://...`): the same tables and the same audit query
//! plans as the SQLite store, in a database that several console instances share. The driver is
//! asynchronous (tokio-postgres, with a deadpool pool); the store's calls are blocking, as the
//! [`Store`] trait says, so each runs its queries to completion on the store's own small runtime,
//! where the connections live.
//!
//! What makes several instances one console:
//! - a policy revision is stored only if the newest is still the one its instance saw
//!   ([`Put::Behind`] otherwise), under a transaction lock, and announced with `NOTIFY`; each
//!   instance `LISTEN`s ([`listen`]) and wakes its long polls (the app also checks every second,
//!   so that a lost notification cannot leave a defender stale);
//! - audit ids are unique in the table, so a batch delivered to two instances is stored once;
//!   arrival positions are given under one lock per transaction, so they are also commit order;
//! - users, sessions and tokens are rows like any other;
//! - retention runs by turns ([`Store::turn`]) and each webhook under a lease ([`Store::lease`]),
//!   a session advisory lock that ends with its holder's connection.

mod audits;
mod listen;
mod reader;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use super::group::{Batch, Group};
use super::sample::Sample;
use super::{
    ActivityEntry, ActivityQuery, AuditField, AuditQuery, Beat, Bucket, DefenderSeen, Expired,
    Heartbeat, Lease, Observation, POLICY_COLUMNS, Put, Revision, SessionRecord, Store, StoreError,
    StoredEvent, StoredPolicy, Summary, TOKEN_COLUMNS, TokenRecord, TooNew, UserRecord,
    observations, table,
};
use crate::documents::Doc;
use crate::events::{Event, MAX_BATCH};

/// The schema, by migrations applied in order; `schema_migrations` records those applied.
/// Appended to, never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    // 2: the rollup's marginal rows per hour, built from `audit_counts`; analysed at once, so
    // that the planner knows the new table before autovacuum comes to it.
    concat!(
        include_str!("hours.sql"),
        include_str!("../rollup_hours.sql"),
        "ANALYZE audit_hours;\n"
    ),
    // 3: the words of the text search in the rollup, and the runs of letters other words begin with.
    concat!(
        include_str!("words.sql"),
        include_str!("words_backfill.sql"),
        // The planner's statistics of the rows just written, so that a word's count reads its
        // key's range (without them it read every word's rows by hour: 98 ms at 1,000,000
        // events, against 4 ms); autovacuum would take minutes to gather them.
        "ANALYZE audit_counts, audit_word_runs;"
    ),
    // 4: the bitmap index of audits (chunks sealed afterwards by the console's index task).
    super::bitmaps::POSTGRES_TABLES,
    // 5: the newest chunk sealed in part.
    super::bitmaps::POSTGRES_PARTS,
];

/// Connections kept open to the database by one instance: the ingestion workers, the pages,
/// the long polls' checks and the webhooks share them (each call holds one for its queries).
const POOL_SIZE: usize = 16;
/// How long a call waits for a free connection, or for one to be made, before it fails.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Transaction advisory lock keys (`pg_advisory_xact_lock`): one per kind of write that must be
/// made one at a time across the fleet. Arbitrary constants, the same in every instance.
mod keys {
    /// Applying migrations (instances started together).
    pub const MIGRATE: i64 = 0x6465_6600_0001;
    /// Storing a policy revision.
    pub const POLICY: i64 = 0x6465_6600_0002;
    /// Storing audits: arrival positions are given in commit order.
    pub const INGEST: i64 = 0x6465_6600_0003;
}

/// The channel policy changes are announced on.
const CHANNEL: &str = "defender_console_policy";

/// The events a transaction of audit batches takes at most (as the SQLite store).
const GROUP_EVENTS: usize = MAX_BATCH;

pub struct Postgres {
    /// The runtime the connections and the listener run on; `None` once dropped.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// Woken by a notification of a policy change (from any instance).
    changes: Arc<Notify>,
    /// Audit batches waiting to be committed together.
    audits: Group<Batch>,
    /// The last sample a summary was computed over.
    sample: Mutex<Option<Sample>>,
    /// The samples of the partial hours of the last time range the rollup answered.
    spans: Mutex<super::rollup::Spans>,
    /// The bitmap index's chunks hold `2^shift` positions ([`SHIFT`](super::bitmaps::SHIFT);
    /// smaller in tests).
    shift: u32,
    /// The connection settings, for the listener's and the leases' own connections.
    config: tokio_postgres::Config,
    /// TLS as the URL's `sslmode` asks, every connection's.
    tls: MakeRustlsConnect,
}

/// How connections to the database are made secure: TLS when the URL's `sslmode` asks for it
/// (`require`; `prefer`, the default, falls back to plain text when the server offers no TLS),
/// the server's certificate checked against `ca` (a PEM file of the authorities to trust, such
/// as a cloud provider's bundle) or else the public web authorities, and its name against the
/// URL's host.
fn tls(ca: Option<&std::path::Path>) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let shown = path.display();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| StoreError::message(format!("--database-ca {shown}: {e}")))?
            {
                let cert =
                    cert.map_err(|e| StoreError::message(format!("--database-ca {shown}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::message(format!("--database-ca {shown}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(StoreError::message(format!(
                    "--database-ca {shown}: no certificate in it"
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::message(format!("TLS to the database: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// A [`StoreError`] of PostgreSQL's, with its detail (what constraint, which column) when it has
/// one: tokio-postgres's own text says only "db error".
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        let message = match e.as_db_error() {
            Some(db) => match db.detail() {
                Some(detail) => format!("{}: {} ({detail})", db.severity(), db.message()),
                None => format!("{}: {}", db.severity(), db.message()),
            },
            // The driver's own text is short ("error performing TLS handshake"): what it wraps
            // says why (the certificate's problem, the refused connection).
            None => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(&format!(": {s}"));
                    source = s.source();
                }
                text
            }
        };
        StoreError {
            source: message.into(),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => StoreError {
                source: format!("the database's connection pool: {e}").into(),
            },
        }
    }
}

fn stored_policy(r: &tokio_postgres::Row) -> StoredPolicy {
    StoredPolicy {
        revision: r.get::<_, i64>(0) as u64,
        document: r.get(1),
        updated: r.get(2),
        by: r.get(3),
    }
}

/// A connection from the pool.
type Client = deadpool_postgres::Object;

impl Postgres {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, with
    /// libpq's parameters such as `sslmode=require`), trusting `ca` for its certificate ([`tls`]),
    /// and creates its tables or brings them up to date.
    pub fn open(url: &str, ca: Option<&std::path::Path>) -> Result<Postgres, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::message(format!("not a PostgreSQL URL: {e}")))?;
        // The URL's own `options` after ours, so that a setting given there wins.
        let options = format!("{SESSION} {}", config.get_options().unwrap_or_default());
        config.options(options.trim_end());
        let tls = tls(ca)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::message(format!("the database's runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                // A connection is checked before it is lent again: one the server closed (a
                // restart, a failover) is replaced instead of failing the next call.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| StoreError::message(format!("the database's connection pool: {e}")))?;
        let changes = Arc::new(Notify::new());
        let store = Postgres {
            pool,
            changes: changes.clone(),
            audits: Group::new(GROUP_EVENTS, |b: &Batch| b.events.len()),
            sample: Mutex::new(None),
            spans: Mutex::default(),
            shift: super::bitmaps::SHIFT,
            config: config.clone(),
            tls: tls.clone(),
            runtime: Some(runtime),
        };
        store.run(async {
            let mut c = store.client().await?;
            migrate(&mut c).await
        })?;
        store
            .runtime()
            .spawn(listen::run(config, tls, CHANNEL, changes));
        Ok(store)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
    }

    /// Runs `f` to completion on the store's runtime. Store calls come from blocking threads
    /// (the web layer's blocking pool, ingestion workers, webhooks), never from async tasks.
    fn run<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime().block_on(f)
    }

    async fn client(&self) -> Result<Client, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// One statement's rows, on a pooled connection.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let statement = c.prepare_cached(sql).await?;
            Ok(c.query(&statement, params).await?)
        })
    }

    /// One statement's count of rows changed, on a pooled connection.
    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let statement = c.prepare_cached(sql).await?;
            Ok(c.execute(&statement, params).await?)
        })
    }

    /// A summary of `q`'s sample (the one kept, if still the database's).
    fn sampled<T>(
        &self,
        q: &AuditQuery,
        summarise: impl FnOnce(&Sample) -> Result<T, StoreError>,
    ) -> Result<Summary<T>, StoreError> {
        let mut kept = self.sample.lock().unwrap_or_else(|p| p.into_inner());
        self.read(|r| {
            let sample = Sample::of(r, q, super::SAMPLE, &mut kept)?;
            Ok(Summary {
                rows: summarise(sample)?,
                sampled: sample.cut,
            })
        })
    }

    /// The kept samples of partial hours.
    fn spans(&self) -> std::sync::MutexGuard<'_, super::rollup::Spans> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a chunk [`bitmaps::next`](super::bitmaps::next) built, unless retention deleted
    /// events since it read them or another instance sealed it first (as far: a part sealed
    /// before is replaced).
    pub(super) fn store_chunk(
        &self,
        built: &super::bitmaps::Built,
    ) -> Result<Option<super::Sealed>, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            // The row locked until the commit: a retention batch (which updates it first) waits
            // for this transaction, or this one for the batch under way, then sees its count.
            let deletions: i64 = tx
                .query_one(
                    super::bitmaps::deletions(super::sql::Dialect::Postgres),
                    &[],
                )
                .await?
                .get(0);
            if deletions != built.deletions {
                return Ok(None);
            }
            // Another instance may have sealed it meanwhile: its transaction committed before
            // the lock above was granted, and this statement's snapshot is taken after.
            let there: Option<Option<i64>> = tx
                .query_opt(
                    "SELECT upto FROM audit_chunks WHERE chunk = $1",
                    &[&built.chunk],
                )
                .await?
                .map(|row| row.get(0));
            match super::bitmaps::write(there, built.upto) {
                super::bitmaps::Write::Skip => return Ok(None),
                super::bitmaps::Write::Add => {}
                super::bitmaps::Write::Replace => {
                    tx.execute("DELETE FROM audit_bits WHERE chunk = $1", &[&built.chunk])
                        .await?;
                    tx.execute("DELETE FROM audit_chunks WHERE chunk = $1", &[&built.chunk])
                        .await?;
                }
            }
            tx.execute(
                "INSERT INTO audit_chunks (chunk, first_time, last_time, events, words, upto) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &built.chunk,
                    &built.first,
                    &built.last,
                    &built.events,
                    &i32::from(built.words),
                    &built.upto,
                ],
            )
            .await?;
            tx.execute(
                "INSERT INTO audit_bits (key, chunk, bits) \
                 SELECT k, $2, b FROM unnest($1::text[], $3::bytea[]) AS u(k, b)",
                &[
                    &built.bits.keys().collect::<Vec<_>>(),
                    &built.chunk,
                    &built.bits.values().collect::<Vec<_>>(),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(built.sealed()))
        })
    }

    /// Runs `f` on a [`reader::PgReader`]: one read-only snapshot on a pooled connection.
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn super::sql::Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self.run(self.client())?;
        reader::PgReader::with(self.runtime(), &mut c, f)
    }
}

#[cfg(test)]
impl Postgres {
    /// This store with the bitmap index's chunks of `2^shift` positions.
    pub(super) fn chunks(mut self, shift: u32) -> Postgres {
        self.shift = shift;
        self
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Not waiting: the store may be dropped on an async worker, where blocking is refused.
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}

/// The settings of every connection of the console:
/// - `jit=off`: a statement whose estimated cost passes `jit_above_cost` is compiled first, and a
///   count over a million rows spent 0.8 s compiling (measured at 10,000,000 events); the
///   console's statements are short, and their plans' costs say little of how short.
/// - `work_mem=64MB` (the default is 4 MB): the bitmap of a million rows' pages that a count
///   intersects outgrows 4 MB and turns lossy, and then every row of those pages is read and
///   its words tested again (the same count of a word in a container of 1.5 million events:
///   7.5 s against 1.5 s at 10,000,000 events). It bounds each sort or
///   bitmap of a statement; PostgreSQL takes it only as a statement needs it.
const SESSION: &str = "-c jit=off -c work_mem=64MB";

/// The database's schema version: the number of migrations applied.
const SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

/// Applies the migrations not yet applied, each in its transaction, under a lock that makes
/// instances starting together take turns.
async fn migrate(c: &mut Client) -> Result<(), StoreError> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied TEXT NOT NULL)",
    )
    .await?;
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&keys::MIGRATE])
        .await?;
    let applied: i64 = tx.query_one(SCHEMA_VERSION, &[]).await?.get(0);
    let known = MIGRATIONS.len();
    if usize::try_from(applied).map_or(true, |a| a > known) {
        return Err(TooNew::error(applied, known));
    }
    if (applied as usize) < known {
        // Ingestion waits while the schema changes: a storing transaction checks the version
        // under this lock ([`audits::add_batches`]), so an older instance's events are either
        // committed before a backfill reads the table or refused after.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&keys::INGEST])
            .await?;
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        tx.batch_execute(migration).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)",
            &[&(i as i64 + 1), &crate::app::now()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

impl Store for Postgres {
    fn policy(&self, doc: Doc) -> Result<Option<StoredPolicy>, StoreError> {
        let rows = self.query(
            &format!(
                "SELECT {POLICY_COLUMNS} FROM {} ORDER BY revision DESC LIMIT 1",
                table(doc)
            ),
            &[],
        )?;
        Ok(rows.first().map(stored_policy))
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
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            // One revision at a time across the fleet: the newest read here stays the newest
            // until this commits.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&keys::POLICY])
                .await?;
            let newest = tx
                .query_opt(
                    &format!(
                        "SELECT {POLICY_COLUMNS} FROM {table} ORDER BY revision DESC LIMIT 1"
                    ),
                    &[],
                )
                .await?
                .map(|r| stored_policy(&r));
            let newest_revision = newest.as_ref().map_or(0, |p| p.revision);
            if let (Some(after), Some(newest)) = (after, &newest)
                && after != newest_revision
            {
                return Ok(Put::Behind(newest.clone()));
            }
            let revision = newest_revision + 1;
            tx.execute(
                &format!(
                    "INSERT INTO {table} (revision, document, updated, author) VALUES ($1, $2, $3, $4)"
                ),
                &[&(revision as i64), &document, &now, &by],
            )
            .await?;
            // Delivered to every listening instance when this commits, not before.
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &doc.noun()])
                .await?;
            tx.commit().await?;
            Ok(Put::Saved(StoredPolicy {
                revision,
                document: document.into(),
                updated: now.into(),
                by: Some(by.into()),
            }))
        })
    }

    fn changes(&self) -> Option<Arc<Notify>> {
        Some(self.changes.clone())
    }

    fn add_audits(&self, events: &[Event], source: &str, now: &str) -> Result<usize, StoreError> {
        let batch = Batch {
            events: events.to_vec(),
            source: source.into(),
            now: now.into(),
        };
        self.audits.submit(batch, |batches| {
            self.run(async {
                let mut c = self.client().await?;
                audits::add_batches(&mut c, batches, self.shift).await
            })
        })
    }

    fn audits(&self, q: &AuditQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(|r| super::audits::audits(r, q, self.shift))
    }

    fn audit(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.read(|r| super::audits::by_id(r, id))
    }

    fn count_audits(&self, q: &AuditQuery) -> Result<u64, StoreError> {
        self.read(|r| {
            let route = match super::rollup::plan(q, super::rollup::Ask::Count) {
                Some(route) => Some(route),
                None => super::rollup::plan_words(r, q)?,
            };
            match route {
                // A search's partial hours are counted by SQL: its summaries are not the
                // rollup's (they are sampled), so a kept sample of them would serve nothing.
                Some(route) if route.word => super::rollup::count(r, q, &route, None),
                Some(route) => super::rollup::count(r, q, &route, Some(&mut self.spans())),
                None => match super::bitmaps::count(r, q, self.shift)? {
                    Some(n) => Ok(n),
                    None => match super::words::count_on_postgres(r, q)? {
                        Some(n) => Ok(n),
                        None => super::audits::count(r, q),
                    },
                },
            }
        })
    }

    fn audit_stats(
        &self,
        q: &AuditQuery,
        group: AuditField,
    ) -> Result<Summary<Vec<(String, u64)>>, StoreError> {
        match super::rollup::plan(q, super::rollup::Ask::Stats(group)) {
            Some(route) => Ok(Summary {
                rows: self
                    .read(|r| super::rollup::stats(r, q, &route, group, Some(&mut self.spans())))?,
                sampled: None,
            }),
            None => self.sampled(q, |sample| sample.stats(group, q.limit, q.offset)),
        }
    }

    fn audit_histogram(
        &self,
        q: &AuditQuery,
        minutes: u32,
    ) -> Result<Summary<Vec<Bucket>>, StoreError> {
        match super::rollup::plan(q, super::rollup::Ask::Histogram(minutes)) {
            Some(route) => Ok(Summary {
                rows: self.read(|r| {
                    super::rollup::histogram(r, q, &route, minutes, Some(&mut self.spans()))
                })?,
                sampled: None,
            }),
            None => self.sampled(q, |sample| Ok(sample.histogram(minutes, q.limit, q.offset))),
        }
    }

    fn expire(&self, cutoff: &str, batch: u32) -> Result<Expired, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            audits::expire(&mut c, cutoff, batch).await
        })
    }

    fn seal(&self, parts: bool) -> Result<Option<super::Sealed>, StoreError> {
        match self.read(|r| super::bitmaps::next(r, self.shift, parts))? {
            Some(built) => self.store_chunk(&built),
            None => Ok(None),
        }
    }

    fn audits_after(&self, seq: i64, limit: u32) -> Result<Vec<(i64, StoredEvent)>, StoreError> {
        self.read(|r| super::audits::after(r, seq, limit))
    }

    fn heartbeats(&self, beats: &[Beat]) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            // Every defender in one statement (the caller coalesced them: one per id).
            let text = |f: fn(&Beat) -> &str| beats.iter().map(f).collect::<Vec<&str>>();
            let opt = |f: fn(&Beat) -> Option<&str>| beats.iter().map(f).collect::<Vec<_>>();
            let protects: Vec<String> = beats
                .iter()
                .map(|b| serde_json::to_string(&b.beat.protects).expect("ports always serialize"))
                .collect();
            tx.execute(
                "INSERT INTO defenders AS d (id, container, image, task, version, revision, \
                   first_seen, last_seen, cluster, family, service, protects) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                   $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                   $11::text[], $12::text[]) \
                 ON CONFLICT (id) DO UPDATE SET container = excluded.container, \
                   image = excluded.image, task = excluded.task, version = excluded.version, \
                   revision = excluded.revision, last_seen = excluded.last_seen, \
                   cluster = excluded.cluster, family = excluded.family, \
                   service = excluded.service, protects = excluded.protects",
                &[
                    &text(|b| &b.beat.id),
                    &text(|b| &b.beat.container),
                    &text(|b| &b.beat.image),
                    &opt(|b| b.beat.task.as_deref()),
                    &text(|b| &b.beat.version),
                    &opt(|b| b.beat.revision.as_deref()),
                    &text(|b| &b.first),
                    &text(|b| &b.last),
                    &opt(|b| b.beat.cluster.as_deref()),
                    &opt(|b| b.beat.family.as_deref()),
                    &opt(|b| b.beat.service.as_deref()),
                    &protects,
                ],
            )
            .await?;
            for b in beats {
                observe(&tx, &b.beat, &b.observed, &b.last).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn defenders(&self) -> Result<Vec<DefenderSeen>, StoreError> {
        let rows = self.query(
            "SELECT id, container, image, task, version, revision, first_seen, last_seen, \
                    cluster, family, service, protects \
             FROM defenders ORDER BY last_seen DESC",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| DefenderSeen {
                beat: Heartbeat {
                    id: r.get(0),
                    container: r.get(1),
                    image: r.get(2),
                    task: r.get(3),
                    cluster: r.get(8),
                    family: r.get(9),
                    service: r.get(10),
                    version: r.get(4),
                    revision: r.get(5),
                    protects: r
                        .get::<_, Option<String>>(11)
                        .and_then(|p| serde_json::from_str(&p).ok())
                        .unwrap_or_default(),
                },
                first_seen: r.get(6),
                last_seen: r.get(7),
            })
            .collect())
    }

    fn revisions(&self, doc: Doc) -> Result<Vec<Revision>, StoreError> {
        // Documents are stored validated, so `rules` is always a list.
        let rows = self.query(
            &format!(
                "SELECT revision, updated, author, \
                        COALESCE(jsonb_array_length(CAST(document AS jsonb) -> 'rules'), 0) \
                 FROM {} ORDER BY revision DESC",
                table(doc)
            ),
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| Revision {
                revision: r.get::<_, i64>(0) as u64,
                time: r.get(1),
                by: r.get(2),
                rules: r.get::<_, i32>(3).max(0) as u64,
            })
            .collect())
    }

    fn revision(&self, doc: Doc, revision: u64) -> Result<Option<StoredPolicy>, StoreError> {
        let Ok(revision) = i64::try_from(revision) else {
            return Ok(None);
        };
        let rows = self.query(
            &format!(
                "SELECT {POLICY_COLUMNS} FROM {} WHERE revision = $1",
                table(doc)
            ),
            &[&revision],
        )?;
        Ok(rows.first().map(stored_policy))
    }

    fn observations(&self, since: Option<&str>) -> Result<Vec<Observation>, StoreError> {
        let rows = self.query(
            "SELECT container, image, kind, value, count, first_seen, last_seen FROM observations \
             WHERE $1::text IS NULL OR last_seen >= $1 ORDER BY kind, value",
            &[&since],
        )?;
        rows.iter()
            .map(|r| {
                let kind: String = r.get(2);
                Ok(Observation {
                    container: r.get(0),
                    image: r.get(1),
                    kind: defender::activity::Kind::ALL
                        .into_iter()
                        .find(|k| k.as_str() == kind)
                        .ok_or_else(|| {
                            StoreError::message(format!("observations: unknown kind {kind:?}"))
                        })?,
                    value: r.get(3),
                    count: r.get::<_, i64>(4).max(0) as u64,
                    first_seen: r.get(5),
                    last_seen: r.get(6),
                })
            })
            .collect()
    }

    fn ready(&self) -> Result<(), StoreError> {
        let rows = self.query(SCHEMA_VERSION, &[])?;
        let version: i64 = rows.first().map_or(0, |r| r.get(0));
        if usize::try_from(version).ok() != Some(MIGRATIONS.len()) {
            return Err(StoreError::message(format!(
                "the database is at schema version {version}, not this console's {}",
                MIGRATIONS.len()
            )));
        }
        self.query("SELECT COUNT(*) FROM policies", &[])?;
        Ok(())
    }

    fn size(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT pg_database_size(current_database())", &[])?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    fn delivery_cursor(&self, target: &str) -> Result<i64, StoreError> {
        self.execute(
            "INSERT INTO deliveries (target, seq) SELECT $1, COALESCE(MAX(seq), 0) FROM audits \
             ON CONFLICT (target) DO NOTHING",
            &[&target],
        )?;
        let rows = self.query("SELECT seq FROM deliveries WHERE target = $1", &[&target])?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    fn set_delivery_cursor(&self, target: &str, seq: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE deliveries SET seq = $2 WHERE target = $1",
            &[&target, &seq],
        )
        .map(drop)
    }

    fn turn(&self, task: &str, now: &str, since: &str) -> Result<bool, StoreError> {
        // One row per task; the update happens for one instance per period, whichever asks first.
        let taken = self.execute(
            "INSERT INTO turns AS t (task, at) VALUES ($1, $2) \
             ON CONFLICT (task) DO UPDATE SET at = excluded.at WHERE t.at <= $3",
            &[&task, &now, &since],
        )?;
        Ok(taken == 1)
    }

    fn lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        self.run(listen::lease(self.config.clone(), self.tls.clone(), name))
    }

    fn add_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        Ok(self.execute(
            "INSERT INTO users (name, role, hash, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[&u.name, &u.role, &u.hash, &u.created],
        )? == 1)
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let rows = self.query(
            "SELECT name, role, hash, created FROM users WHERE name = $1",
            &[&name],
        )?;
        Ok(rows.first().map(user_of))
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = self.query(
            "SELECT name, role, hash, created FROM users ORDER BY name",
            &[],
        )?;
        Ok(rows.iter().map(user_of).collect())
    }

    fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let deleted = tx
                .execute("DELETE FROM users WHERE name = $1", &[&name])
                .await?
                == 1;
            tx.execute("DELETE FROM sessions WHERE \"user\" = $1", &[&name])
                .await?;
            tx.commit().await?;
            Ok(deleted)
        })
    }

    fn add_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sessions (id_hash, \"user\", role, csrf, created, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            &[&s.id_hash, &s.user, &s.role, &s.csrf, &s.last_seen],
        )
        .map(drop)
    }

    fn session(
        &self,
        id_hash: &str,
        now: &str,
        idle_cutoff: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.execute("DELETE FROM sessions WHERE last_seen < $1", &[&idle_cutoff])?;
        let rows = self.query(
            "UPDATE sessions SET last_seen = $2 WHERE id_hash = $1 \
             RETURNING id_hash, \"user\", role, csrf, last_seen",
            &[&id_hash, &now],
        )?;
        Ok(rows.first().map(|r| SessionRecord {
            id_hash: r.get(0),
            user: r.get(1),
            role: r.get(2),
            csrf: r.get(3),
            last_seen: r.get(4),
        }))
    }

    fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
            .map(drop)
    }

    fn add_token(&self, t: &TokenRecord) -> Result<bool, StoreError> {
        Ok(self.execute(
            "INSERT INTO tokens (name, role, hash, collections, created) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&t.name, &t.role, &t.hash, &t.collections, &t.created],
        )? == 1)
    }

    fn use_token(&self, hash: &str, now: &str) -> Result<Option<TokenRecord>, StoreError> {
        let rows = self.query(
            &format!(
                "UPDATE tokens SET last_used = $2 WHERE hash = $1 AND revoked IS NULL \
                 RETURNING {TOKEN_COLUMNS}"
            ),
            &[&hash, &now],
        )?;
        Ok(rows.first().map(token_of))
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self.query(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created, name"),
            &[],
        )?;
        Ok(rows.iter().map(token_of).collect())
    }

    fn revoke_token(&self, name: &str, now: &str) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE tokens SET revoked = $2 WHERE name = $1 AND revoked IS NULL",
            &[&name, &now],
        )? == 1)
    }

    fn add_activity(&self, e: &ActivityEntry) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO activity (time, actor, action, detail) VALUES ($1, $2, $3, $4)",
            &[&e.time, &e.actor, &e.action, &e.detail.to_string()],
        )
        .map(drop)
    }

    fn activity(&self, q: &ActivityQuery) -> Result<Vec<ActivityEntry>, StoreError> {
        let rows = self.query(
            "SELECT time, actor, action, detail FROM activity \
             WHERE ($1::text IS NULL OR time >= $1) AND ($2::text IS NULL OR time < $2) \
             ORDER BY time DESC, seq DESC LIMIT $3",
            &[&q.since, &q.until, &i64::from(q.limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let detail: String = r.get(3);
                ActivityEntry {
                    time: r.get(0),
                    actor: r.get(1),
                    action: r.get(2),
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                }
            })
            .collect())
    }
}

/// Adds the activity a heartbeat reports, inside the caller's transaction: a value seen already
/// is counted; a new one is added while its kind holds fewer than the bound for the container
/// and image (two instances adding at once may pass it by one each).
async fn observe(
    tx: &deadpool_postgres::Transaction<'_>,
    beat: &Heartbeat,
    observed: &defender::activity::Observed,
    now: &str,
) -> Result<(), StoreError> {
    let held = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM observations \
                 WHERE container = $1 AND image = $2 AND kind = $3",
        )
        .await?;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO observations AS o \
                   (container, image, kind, value, count, first_seen, last_seen, cluster, \
                    family, service) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9) \
                 ON CONFLICT (container, image, kind, value) DO UPDATE SET \
                   count = o.count + excluded.count, last_seen = excluded.last_seen, \
                   cluster = excluded.cluster, family = excluded.family, \
                   service = excluded.service",
        )
        .await?;
    let update = tx
        .prepare_cached(
            "UPDATE observations SET count = count + $5, last_seen = $6, \
                   cluster = $7, family = $8, service = $9 \
                 WHERE container = $1 AND image = $2 AND kind = $3 AND value = $4",
        )
        .await?;
    for e in &observed.entries {
        let count = i64::try_from(e.count).unwrap_or(i64::MAX);
        let kind = e.kind.as_str();
        let n: i64 = tx
            .query_one(&held, &[&beat.container, &beat.image, &kind])
            .await?
            .get(0);
        let statement = match n < observations::MAX_PER_KIND {
            true => &upsert,
            // Full: only a value already there is counted.
            false => &update,
        };
        tx.execute(
            statement,
            &[
                &beat.container,
                &beat.image,
                &kind,
                &e.value,
                &count,
                &now,
                &beat.cluster,
                &beat.family,
                &beat.service,
            ],
        )
        .await?;
    }
    Ok(())
}

fn token_of(r: &tokio_postgres::Row) -> TokenRecord {
    TokenRecord {
        name: r.get(0),
        role: r.get(1),
        hash: r.get(2),
        collections: r.get(3),
        created: r.get(4),
        last_used: r.get(5),
        revoked: r.get(6),
    }
}

fn user_of(r: &tokio_postgres::Row) -> UserRecord {
    UserRecord {
        name: r.get(0),
        role: r.get(1),
        hash: r.get(2),
        created: r.get(3),
    }
}

#[cfg(test)]
pub(in crate::store) mod tests;
