//! A real PostgreSQL server for tests (the `postgresql` package from apt): a new cluster made by
//! `initdb` in a temporary directory, served on a free local port, as the `postgres` user when
//! the tests run as root (the server refuses to run as root). Shared by the console's own unit
//! tests (through `#[path]`) and the integration tests.
//!
//! The server is started by `setpriv --pdeathsig SIGINT` from a thread that lives as long as
//! the test process, so it stops (a fast shutdown) when the tests end, even when a test panics
//! or the process is killed; [`PgServer`] also stops it when dropped, and removes its directory.
//! A server never dropped (kept in a static for a whole test process) leaves its directory: the
//! next start of a server removes those whose test process has ended.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

/// A running server; stopped when dropped.
pub struct PgServer {
    /// The cluster's directory, removed when dropped.
    _dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    child: Option<Child>,
}

/// What a test cluster's directory is named from, in the temporary directory.
const CLUSTER_PREFIX: &str = "pg-test-";
/// The file in a cluster's directory naming the test process it serves.
const OWNER: &str = "owner.pid";

/// Removes the clusters of test processes that have ended. A server kept for a whole test
/// process (the console's unit tests keep one in a static, never dropped) stops with the process
/// but leaves its directory, hundreds of MiB of it; the next start clears those.
fn sweep_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let named = entry
            .file_name()
            .to_string_lossy()
            .starts_with(CLUSTER_PREFIX);
        let owner = std::fs::read_to_string(path.join(OWNER))
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok());
        // A directory with no owner yet may be another process's, being made: left alone.
        let ended = owner.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH)
        });
        if named && ended {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The directory of the newest PostgreSQL's programs installed.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb (the tests need \
             the `postgresql` package: apt-get install postgresql; .ci/run installs it)"
        ),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command run as the user the server runs as (`postgres` when the tests run as root), that
/// gets SIGINT when the thread that started it ends.
fn as_server_user(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    if is_root() {
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
    }
    c.args(["--pdeathsig", "SIGINT", "--"]).arg(program);
    c
}

/// A free local TCP port (bound, then released for the server to take).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("its address").port()
}

impl PgServer {
    /// Makes a new cluster and serves it; panics with the server's own words if it cannot.
    pub fn start() -> PgServer {
        PgServer::start_with(None)
    }

    /// [`PgServer::start`], serving TLS with this PEM certificate chain and key when given.
    pub fn start_tls(cert: &Path, key: &Path) -> PgServer {
        PgServer::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> PgServer {
        let bin = bin_dir();
        sweep_stale_clusters();
        let dir = tempfile::Builder::new()
            .prefix(CLUSTER_PREFIX)
            .tempdir()
            .expect("a temporary directory");
        std::fs::write(dir.path().join(OWNER), std::process::id().to_string())
            .expect("writing the cluster's owner");
        if is_root() {
            let postgres = nix::unistd::User::from_name("postgres")
                .expect("reading the user database")
                .expect("the postgresql package's `postgres` user");
            std::os::unix::fs::chown(
                dir.path(),
                Some(postgres.uid.as_raw()),
                Some(postgres.gid.as_raw()),
            )
            .expect("giving the cluster's directory to postgres");
        }
        let data = dir.path().join("data");
        let init = as_server_user(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
            ])
            .arg("--locale=C.UTF-8")
            .arg("-D")
            .arg(&data)
            .output()
            .expect("running initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        // The server reads its certificate and key as its own user, the key private to it.
        let mut settings: Vec<String> = Vec::new();
        if let Some((cert, key)) = tls {
            for (from, name, mode) in [(cert, "server.crt", 0o644), (key, "server.key", 0o600)] {
                let to = data.join(name);
                std::fs::copy(from, &to).expect("copying the server's TLS files");
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
                if is_root() {
                    let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
                    std::os::unix::fs::chown(
                        &to,
                        Some(postgres.uid.as_raw()),
                        Some(postgres.gid.as_raw()),
                    )
                    .unwrap();
                }
            }
            settings.extend(
                [
                    "ssl=on",
                    "ssl_cert_file=server.crt",
                    "ssl_key_file=server.key",
                ]
                .map(String::from),
            );
        }
        let port = free_port();
        // Started from a thread that never ends: the server's death signal follows the thread
        // that started it, and a test's thread ends with its test.
        let (tx, rx) = mpsc::channel();
        let (postgres, sockets) = (bin.join("postgres"), dir.path().to_owned());
        std::thread::spawn(move || {
            let spawned = as_server_user(&postgres)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", sockets.display()))
                // Tests, not benchmarks: nothing needs to survive a crash of the machine.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
                // Little write-ahead log kept between checkpoints: a cluster stays small.
                .args(["-c", "max_wal_size=64MB", "-c", "min_wal_size=32MB"])
                .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            let _ = tx.send(spawned);
            loop {
                std::thread::park();
            }
        });
        let mut child = rx
            .recv()
            .expect("the starting thread answers")
            .expect("starting postgres");
        // Ready when it says so; its log goes on to the test's stderr after that.
        let stderr = child.stderr.take().expect("piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(tx) = &ready {
                    said.push(line.clone());
                    if line.contains("database system is ready to accept connections") {
                        let _ = tx.send(Ok(()));
                        ready = None;
                    }
                } else {
                    eprintln!("postgres: {line}");
                }
            }
            if let Some(tx) = ready {
                let _ = tx.send(Err(said.join("\n")));
            }
        });
        match ready_rx.recv().expect("the log reader answers") {
            Ok(()) => {}
            Err(said) => panic!("postgres stopped before it was ready:\n{said}"),
        }
        PgServer {
            _dir: dir,
            port,
            bin,
            child: Some(child),
        }
    }

    /// The URL of database `name` (the console's `--database`).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new empty database and answers its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs `sql` with psql on database `db`; its output, or a panic with psql's error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A fast shutdown: clients are disconnected, nothing is kept.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = child.wait();
        }
    }
}
