//! Start-up: the flags of `docs/cli.md`, the data directory, tokens, storage, then serving HTTP
//! or HTTPS until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use clap::Parser;

use crate::app::{AppState, Operations};
use crate::auth::{Origin, TokenError, Tokens};
use crate::beats::Beats;
use crate::gate::{Admitted, Gate};
use crate::ingest::{self, Ingest};
use crate::metrics::Metrics;
use crate::store::{Postgres, Sqlite, Store, StoreError};
use crate::tls::TlsError;
use crate::webhooks::{WebhookError, Webhooks};
use crate::{api, gate, http, index, operations, people, retention, tls, web, webhooks};

/// Where the database and the generated tokens live unless --data-dir says otherwise.
const DEFAULT_DATA_DIR: &str = "/var/lib/defender-console";
/// The largest request body: an audit batch of up to 10,000 events.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, Parser)]
#[command(
    name = "defender-console",
    version,
    about = "The defender console: the App-Embedded runtime policy, fetched live by every defender; audits collected and shown."
)]
pub struct Args {
    /// Address and port to serve on.
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8083"
    )]
    listen: String,
    /// Where the database and the generated tokens live [default: /var/lib/defender-console].
    #[arg(long, env = "DEFENDER_CONSOLE_DATA", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where policies, audits and people are kept: sqlite:PATH (one console; a relative PATH is
    /// inside DIR) or postgres://USER:PASSWORD@HOST[:PORT]/DB (several consoles may share it)
    /// [default: sqlite:console.db].
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// With --database postgres://...: the PEM certificates of the authorities that may sign the
    /// database server's certificate [default: the public web authorities].
    #[arg(long, env = "DEFENDER_CONSOLE_DATABASE_CA", value_name = "F")]
    database_ca: Option<PathBuf>,
    /// Token for people and automation: edit the policy, read audits [default: generated on
    /// first start, kept in DIR/admin.token].
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_ADMIN_TOKEN",
        value_name = "T",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Token for defenders: read the policy, send audits and heartbeats [default: generated on
    /// first start, kept in DIR/defender.token].
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_DEFENDER_TOKEN",
        value_name = "T",
        hide_env_values = true
    )]
    defender_token: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_TLS_CERT",
        value_name = "F",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_TLS_KEY",
        value_name = "F",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Log every policy long poll as it starts waiting (one line per defender and poll: for
    /// debugging, and for tests that must know a poll waits before they change the policy).
    #[arg(long, env = "DEFENDER_CONSOLE_LOG_POLLS")]
    log_polls: bool,
    /// How often the heartbeats received are written, together (e.g. 500ms, 2s).
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_HEARTBEAT_FLUSH",
        value_name = "DURATION",
        default_value = crate::beats::FLUSH_EVERY,
        value_parser = humantime::parse_duration
    )]
    heartbeat_flush: std::time::Duration,
    /// A page session unused this long ends (e.g. 30m, 12h).
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_SESSION_IDLE",
        value_name = "DURATION",
        default_value = "12h",
        value_parser = humantime::parse_duration
    )]
    session_idle: std::time::Duration,
    /// Delete audits and activity-log entries older than this many days, forget defenders not
    /// seen for as long, and the activity they reported (0: keep everything).
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_RETENTION_DAYS",
        value_name = "N",
        default_value_t = 90
    )]
    retention_days: u32,
    /// Require this bearer token on `GET /metrics` [default: none, /metrics is open].
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_METRICS_TOKEN",
        value_name = "T",
        hide_env_values = true
    )]
    metrics_token: Option<String>,
    /// POST every newly stored audit to this URL (repeatable; in the environment, separated by
    /// spaces).
    #[arg(
        long = "webhook",
        env = "DEFENDER_CONSOLE_WEBHOOKS",
        value_name = "URL",
        value_delimiter = ' ',
        hide_env_values = true
    )]
    webhooks: Vec<String>,
    /// What a webhook request carries: the event (json) or a one-line summary (slack).
    #[arg(
        long,
        env = "DEFENDER_CONSOLE_WEBHOOK_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value = "json"
    )]
    webhook_format: webhooks::Format,
}

/// Why the console could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--data-dir {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{}: {source}", path.display())]
    Database { path: PathBuf, source: StoreError },
    /// The PostgreSQL database could not be opened (the URL is never repeated: it holds a
    /// password).
    #[error("--database {shown}: {source}")]
    Postgres { shown: String, source: StoreError },
    #[error(
        "--database {0:?}: expected sqlite:PATH or postgres://USER:PASSWORD@HOST[:PORT]/DATABASE"
    )]
    DatabaseUrl(String),
    /// Several instances must agree on the two tokens, which a generated one would not.
    #[error(
        "with --database postgres://..., give --admin-token and --defender-token (the same to \
         every console instance): the {0} token would be generated for this instance alone"
    )]
    SharedTokens(&'static str),
    /// The policy in force could not be read or first stored.
    #[error(transparent)]
    Policy(#[from] StoreError),
    #[error("tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("ingestion threads: {0}")]
    Ingest(#[source] std::io::Error),
    #[error("--heartbeat-flush: the interval must be longer than zero")]
    HeartbeatFlush,
    #[error("heartbeat thread: {0}")]
    Beats(#[source] std::io::Error),
    #[error("--listen {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    /// The listener's address could not be read, or the TLS listener not started.
    #[error(transparent)]
    Serve(#[from] std::io::Error),
    #[error("--metrics-token: a token must be non-empty, without spaces")]
    MetricsToken,
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

pub fn run(args: Args) -> Result<(), ServeError> {
    // Before anything is opened: every connection holds a descriptor, and a fleet is many.
    let open_files = gate::raise_open_files();
    let dir = args.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| ServeError::DataDir {
                path: dir.clone(),
                source,
            })?;
    }
    let database = Database::parse(args.database.as_deref())?;
    if matches!(database, Database::Postgres(_)) {
        for (name, given) in [
            ("admin", &args.admin_token),
            ("defender", &args.defender_token),
        ] {
            if given.is_none() {
                return Err(ServeError::SharedTokens(name));
            }
        }
    }
    let (tokens, origins) = Tokens::load(&dir, args.admin_token, args.defender_token)?;
    for (name, origin) in ["admin", "defender"].iter().zip(origins) {
        match origin {
            Origin::Generated(p) => {
                eprintln!(
                    "defender-console: generated the {name} token, kept in {}",
                    p.display()
                )
            }
            Origin::Kept(p) => eprintln!("defender-console: {name} token from {}", p.display()),
            Origin::Given => {}
        }
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::config(cert, key)?),
        _ => None,
    };
    if let Some(t) = &args.metrics_token
        && (t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ServeError::MetricsToken);
    }
    let store: Arc<dyn Store> = match database {
        Database::Sqlite(path) => {
            let path = dir.join(path);
            Arc::new(Sqlite::open(&path).map_err(|source| ServeError::Database { path, source })?)
        }
        Database::Postgres(url) => {
            let shown = shown(&url);
            let store = Postgres::open(&url, args.database_ca.as_deref()).map_err(|source| {
                ServeError::Postgres {
                    shown: shown.clone(),
                    source,
                }
            })?;
            eprintln!("defender-console: database {shown}");
            Arc::new(store)
        }
    };
    let metrics = Arc::new(Metrics::new());
    let webhooks = Webhooks::start(&args.webhooks, args.webhook_format, &store, &metrics)?;
    if args.heartbeat_flush.is_zero() {
        return Err(ServeError::HeartbeatFlush);
    }
    let gate = Arc::new(Gate::new(open_files, metrics.clone()));
    let native = metrics.requests_native.clone();
    let beats = Beats::start(store.clone(), args.heartbeat_flush).map_err(ServeError::Beats)?;
    let operations = Operations {
        gate: gate.clone(),
        ingest: Ingest::start(ingest::WORKERS, ingest::QUEUED_EVENTS)
            .map_err(ServeError::Ingest)?,
        metrics,
        metrics_token: args.metrics_token,
        webhooks,
        beats: beats.clone(),
    };
    let state = Arc::new(AppState::new(
        store,
        tokens,
        tls.is_some(),
        args.log_polls,
        args.session_idle,
        operations,
    )?);
    let app = api::routes()
        .merge(people::routes())
        .merge(web::routes())
        .merge(operations::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::shed,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            operations::observe,
        ))
        .with_state(state.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let served = runtime.block_on(async move {
        let tcp = gate::bind(&args.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: args.listen.clone(),
                source,
            })?;
        let addr: SocketAddr = tcp.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Tests and scripts wait for this line (and learn the port when it was 0).
        eprintln!("defender-console: listening on {scheme}://{addr}");
        tokio::spawn(state.clone().follow());
        tokio::spawn(index::run(state.clone()));
        tokio::spawn(retention::run(state, args.retention_days));
        // Stops at once on a signal: policy polls may be held open for minutes, and every write
        // is a transaction, so nothing is left half done; defenders retry what was cut.
        match tls {
            None => tokio::select! {
                () = http::serve(Admitted { tcp, gate }, app, native) => {},
                () = stop() => {},
            },
            Some(config) => {
                let listener = tls::TlsListener::new(tcp, gate, config)?;
                tokio::select! {
                    () = http::serve(listener, app, native) => {},
                    () = stop() => {},
                }
            }
        }
        Ok(())
    });
    // Heartbeats answered but still waiting are written before the console ends, once every
    // request has ended (the runtime dropped with its tasks): no heartbeat is answered after.
    drop(runtime);
    if let Err(e) = beats.flush() {
        log::error!("heartbeats not written at the stop: {e}");
    }
    served
}

/// Which database `--database` names.
#[derive(Debug, PartialEq, Eq)]
enum Database {
    /// The file's path, relative to the data directory unless absolute.
    Sqlite(PathBuf),
    /// The URL as given (libpq's form, which tokio-postgres reads).
    Postgres(String),
}

impl Database {
    fn parse(url: Option<&str>) -> Result<Database, ServeError> {
        let Some(url) = url else {
            return Ok(Database::Sqlite("console.db".into()));
        };
        if let Some(path) = url.strip_prefix("sqlite:")
            && !path.is_empty()
        {
            return Ok(Database::Sqlite(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_owned()));
        }
        // Not repeated whole: it may be a URL with a password in it.
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        Err(ServeError::DatabaseUrl(format!("{scheme}:...")))
    }
}

/// A PostgreSQL URL as logs show it: without its user information (which holds the password).
fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = host.split_once('?').map_or(host, |(host, _)| host);
    format!("{scheme}://{host}")
}

/// SIGTERM or SIGINT.
async fn stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    eprintln!("defender-console: stopping");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            Database::parse(None).unwrap(),
            Database::Sqlite("console.db".into())
        );
        assert_eq!(
            Database::parse(Some("sqlite:/srv/c.db")).unwrap(),
            Database::Sqlite("/srv/c.db".into())
        );
        assert_eq!(
            Database::parse(Some("postgres://u:p@db:5432/console")).unwrap(),
            Database::Postgres("postgres://u:p@db:5432/console".into())
        );
        for bad in ["sqlite:", "mysql://u:secret@h/db", "console.db"] {
            let e = Database::parse(Some(bad)).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
            assert!(e.contains("expected sqlite:PATH"), "{e}");
        }
        assert_eq!(
            shown("postgres://console:s3cret@db.internal:5432/console?sslmode=require"),
            "postgres://db.internal:5432/console"
        );
    }
}
