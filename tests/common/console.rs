//! The console for the tests: the real `defender-console` binary on a local port (127.0.0.1
//! only, in the test's network namespace or in a [`NetWorld`]'s), its API spoken through ureq, and
//! defenders started against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::networld::{NetWorld, in_netns_of};
use super::webdriver::Browser;
use super::{HANG_GUARD, World, require, wait_until};

pub const ADMIN: &str = "test-admin-token";
pub const DEFENDER: &str = "test-defender-token";
pub const POLICY: &str = "/api/v1/policies/runtime/app-embedded";
pub const AUDITS: &str = "/api/v1/audits/runtime/app-embedded";

/// The `defender-console` binary: the workspace's console member, which cargo builds into the
/// same target directory and profile as the `defender` these tests run (so CARGO_TARGET_DIR and
/// `--release` are followed) when the tests run as `cargo test --workspace`. Cargo gives a test
/// only its own package's binaries, hence the look beside `defender`. Refused when older than its
/// sources: the tests would judge a console that is no longer the code under test.
pub fn console_bin() -> PathBuf {
    let path = super::defender().with_file_name("defender-console");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the console), or \
         `cargo build -p defender-console` first",
        path.display()
    );
    if let Some(newer) = newer_source(&path, &["console/src", "src"]) {
        panic!(
            "{} is older than {}: run the tests with `cargo test --workspace`, or `cargo build -p \
             defender-console` first",
            path.display(),
            newer.display()
        );
    }
    path
}

/// The fleet load generator (`bench/loadgen`, binary `loadgen`), found beside `defender` as the
/// console is, and refused when older than its sources for the same reason.
pub fn loadgen_bin() -> PathBuf {
    let path = super::defender().with_file_name("loadgen");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the load \
         generator), or `cargo build -p defender-loadgen` first",
        path.display()
    );
    if let Some(newer) = newer_source(&path, &["bench/loadgen/src"]) {
        panic!(
            "{} is older than {}: run `cargo build -p defender-loadgen` first",
            path.display(),
            newer.display()
        );
    }
    path
}

/// A file under `dirs` (the sources a binary is built from: the console's own and the defender
/// library's it is built with, or the load generator's) modified after `binary` was linked, if
/// any. Built for `cargo test` alone, the binary has no dep-info of its own next to it, so the
/// sources are the files of those directories: a change there always has cargo rebuild it.
fn newer_source(binary: &Path, dirs: &[&str]) -> Option<PathBuf> {
    fn newest(dir: &Path, built: SystemTime) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(found) = newest(&path, built) {
                    return Some(found);
                }
            } else if entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
            {
                return Some(path);
            }
        }
        None
    }
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    dirs.iter()
        .find_map(|dir| newest(&super::repo_path(dir), built))
}

/// A running console. Killed when dropped.
pub struct Console {
    pub data: PathBuf,
    /// `127.0.0.1:PORT`, known once it listened (port 0 picks one; a restart keeps it).
    pub addr: String,
    /// Flags besides --listen and --data-dir.
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    https: bool,
    agent: ureq::Agent,
    /// As `agent`, but answering redirects as they are (a login's session cookie comes with one).
    pages: ureq::Agent,
    /// The pid of a process whose network namespace the console runs in, and is spoken to in
    /// (a [`NetWorld`]'s); `None`: the test's own.
    netns: Option<u32>,
    /// A command the console is started by (e.g. `prlimit --nofile=N:N`), which execs it.
    wrapper: Vec<String>,
}

/// An HTTP answer: status, headers that matter, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    /// `Connection`: `close` when the console closes the connection after this answer.
    pub connection: Option<String>,
    /// `Set-Cookie`, `Location`, `Retry-After`.
    pub set_cookie: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    /// `X-Total-Count`: how many audits match a query, before its limit and offset.
    pub total_count: Option<u64>,
    /// `X-Sampled-Events`: how many of the newest matching events a summary counted, when cut.
    pub sampled: Option<u64>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Console {
    /// A console on a free port with the test tokens, its data in `data`.
    pub fn start(data: &Path) -> Console {
        Console::start_with(data, "127.0.0.1:0", &token_args())
    }

    /// A console on `addr` with these flags (besides --listen and --data-dir).
    pub fn start_with(data: &Path, addr: &str, args: &[String]) -> Console {
        Console::start_in_netns(data, addr, args, None)
    }

    /// A console on a free port with the test tokens, inside `nw`'s network namespace, where the
    /// defenders `nw` runs reach it (and nothing outside does).
    pub fn start_in(nw: &NetWorld, data: &Path) -> Console {
        Console::start_in_netns(data, "127.0.0.1:0", &token_args(), Some(nw.pid()))
    }

    /// A console on a free port with the test tokens, started by `wrapper` (a command that
    /// execs the console with the arguments after its own, such as `prlimit`).
    pub fn start_under(data: &Path, wrapper: &[&str]) -> Console {
        let mut c = Console::unstarted(data, "127.0.0.1:0", &token_args(), None);
        c.wrapper = wrapper.iter().map(|&a| a.to_owned()).collect();
        c.spawn();
        c
    }

    fn start_in_netns(data: &Path, addr: &str, args: &[String], netns: Option<u32>) -> Console {
        let mut c = Console::unstarted(data, addr, args, netns);
        c.spawn();
        c
    }

    fn unstarted(data: &Path, addr: &str, args: &[String], netns: Option<u32>) -> Console {
        Console {
            data: data.to_path_buf(),
            addr: addr.into(),
            args: args.to_vec(),
            log: data.with_extension("log"),
            child: None,
            https: args.iter().any(|a| a == "--tls-cert"),
            agent: agent(None, 10),
            pages: agent(None, 0),
            netns,
            wrapper: Vec::new(),
        }
    }

    /// Trust `ca` (PEM) for an https console.
    pub fn trust(&mut self, ca: &Path) {
        self.agent = agent(Some(ca), 10);
        self.pages = agent(Some(ca), 0);
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.log);
        let log = std::fs::File::create(&self.log).unwrap();
        // nsenter without --pid execs the console itself: the child is the console.
        let mut command = match self.netns {
            Some(pid) => {
                let mut c = Command::new(require("nsenter"));
                c.arg(format!("--net=/proc/{pid}/ns/net"))
                    .arg("--")
                    .arg(console_bin());
                c
            }
            None if !self.wrapper.is_empty() => {
                let mut c = Command::new(require(&self.wrapper[0]));
                c.args(&self.wrapper[1..]).arg(console_bin());
                c
            }
            None => Command::new(console_bin()),
        };
        let child = command
            .arg("--listen")
            .arg(&self.addr)
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.args)
            .env_remove("DEFENDER_CONSOLE_ADMIN_TOKEN")
            .env_remove("DEFENDER_CONSOLE_DEFENDER_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("defender-console starts");
        self.child = Some(child);
        let mut listening = None;
        let up = wait_until(HANG_GUARD, || {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            // Whole lines only: the console's stderr is unbuffered, so a line may be read before
            // its end (`…//127.0.0.1:` without the port) was written.
            listening = text
                .split_inclusive('\n')
                .filter_map(|l| l.strip_suffix('\n'))
                .find_map(|l| l.split_once("listening on ").map(|(_, url)| url.to_owned()));
            listening.is_some() || self.exited()
        });
        let url = listening.unwrap_or_else(|| {
            panic!(
                "the console did not start (up: {up}): {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        });
        self.addr = url.rsplit("//").next().unwrap().to_owned();
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    /// The console's process id (its memory is read in /proc), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the console wrote on stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// SIGKILL: the console dies mid-whatever.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, a clean stop: waits for the console to end and returns how it did.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("the console runs");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        c.wait().unwrap()
    }

    /// Starts it again on the same address, with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// One request; `token` as a bearer token. Made from the console's network namespace.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.extend(auth.as_deref().map(|a| ("Authorization", a)));
        self.send(&self.agent, method, path, &all, body)
    }

    /// A request as the pages' browser makes it: the session cookie `session` (its id), a form
    /// (`application/x-www-form-urlencoded`) when `form` is given; redirects answered as they are.
    pub fn browse(
        &self,
        method: &str,
        path: &str,
        session: Option<&str>,
        form: Option<&[(&str, &str)]>,
    ) -> Answer {
        let cookie = session.map(|s| format!("defender_console={s}"));
        let mut headers: Vec<(&str, &str)> =
            cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        let body = form.map(|fields| {
            let mut f = form_urlencoded::Serializer::new(String::new());
            f.extend_pairs(fields);
            f.finish()
        });
        if body.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        self.send(&self.pages, method, path, &headers, body.as_deref())
    }

    /// Logs in on the login page: the new session's id, or the refusal.
    pub fn login(&self, username: &str, password: &str) -> Result<String, Box<Answer>> {
        let form = [("username", username), ("password", password)];
        let a = self.browse("POST", "/login", None, Some(&form));
        let id = a.set_cookie.as_deref().and_then(|c| {
            let value = c.strip_prefix("defender_console=")?.split(';').next()?;
            (!value.is_empty()).then(|| value.to_owned())
        });
        match (a.status, id) {
            (303, Some(id)) => Ok(id),
            _ => Err(Box::new(a)),
        }
    }

    fn send(
        &self,
        agent: &ureq::Agent,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let url = format!("{}{path}", self.url());
        let request = ureq::http::Request::builder().method(method).uri(&url);
        let request = headers.iter().fold(request, |r, (k, v)| r.header(*k, *v));
        let send = move || match body {
            Some(b) => agent.run(request.body(b.to_owned()).unwrap()),
            None => agent.run(request.body(()).unwrap()),
        };
        let sent = match self.netns {
            Some(pid) => in_netns_of(pid, send),
            None => send(),
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, content_type) = (header("etag"), header("content-type"));
        let connection = header("connection");
        Answer {
            status: response.status().as_u16(),
            etag,
            content_type,
            connection,
            set_cookie: header("set-cookie"),
            location: header("location"),
            retry_after: header("retry-after"),
            total_count: header("x-total-count").map(|n| n.parse().expect("a number")),
            sampled: header("x-sampled-events").map(|n| n.parse().expect("a number")),
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    /// PUT a policy with the admin token; returns its revision (asserting success).
    pub fn put_policy(&self, json: &str) -> u64 {
        let a = self.call("PUT", POLICY, Some(ADMIN), &[], Some(json));
        assert_eq!(a.status, 200, "PUT policy: {}", a.body);
        a.json()["revision"].as_u64().unwrap()
    }

    /// The value of the unlabelled metric `name` in `GET /metrics` (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        use prometheus_parse::{Scrape, Value as Metric};
        let text = self.call("GET", "/metrics", None, &[], None);
        assert_eq!(text.status, 200, "{}", text.body);
        let scrape = Scrape::parse(text.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        match scrape
            .samples
            .iter()
            .find(|x| x.metric == name)
            .map(|x| &x.value)
        {
            Some(Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v)) => *v,
            _ => 0.0,
        }
    }

    /// `GET /audits?query` with the admin token.
    pub fn audits(&self, query: &str) -> Vec<Value> {
        let a = self.call("GET", &format!("{AUDITS}?{query}"), Some(ADMIN), &[], None);
        assert_eq!(a.status, 200, "GET audits: {}", a.body);
        a.json().as_array().unwrap().clone()
    }
}

/// Logs `b` in to `c`'s pages as the admin (the admin token as the password, no user name) and
/// waits for the audits page.
pub fn log_in(b: &Browser, c: &Console) {
    log_in_as(b, c, "", ADMIN);
}

/// Logs `b` in as `username` and waits for the audits page.
pub fn log_in_as(b: &Browser, c: &Console, username: &str, password: &str) {
    b.goto(&format!("{}/login", c.url()));
    b.type_into("#username", username);
    b.type_into("#password", password);
    b.click("#login");
    assert!(
        wait_until(HANG_GUARD, || b.current_url().ends_with("/audits")),
        "{}",
        b.source()
    );
}

impl Drop for Console {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tokens, and a line for every long poll that waits (console_api waits for it).
pub fn token_args() -> Vec<String> {
    [
        "--admin-token",
        ADMIN,
        "--defender-token",
        DEFENDER,
        "--log-polls",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// An agent that follows up to `redirects` redirects.
fn agent(ca: Option<&Path>, redirects: u32) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(redirects)
        .timeout_global(Some(Duration::from_secs(60)));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i.unwrap() {
                ureq::tls::PemItem::Certificate(c) => Some(c),
                _ => None,
            })
            .collect();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    config.build().new_agent()
}

/// A port nothing listens on right now (for a console started later on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a defender runs: in a [`World`], or inside a [`NetWorld`] (whose console must be
/// started with [`Console::start_in`]).
pub trait Place {
    /// `defender run [flags] -- command` for the place's container, not started.
    fn defender_command(&self, flags: &[&str], command: &[&str]) -> Command;
}

impl Place for World {
    fn defender_command(&self, flags: &[&str], command: &[&str]) -> Command {
        self.command(None, flags, command)
    }
}

impl Place for NetWorld {
    fn defender_command(&self, flags: &[&str], command: &[&str]) -> Command {
        self.command(None, flags, command)
    }
}

/// Waits until the file `stop` appears in the working directory or the directory is gone.
const UNTIL_STOPPED: &str = r#"while [ ! -e stop ] && [ -e "$PWD" ]; do sleep 0.05; done"#;

/// A defender against `console` (state in `w`'s `state`, `extra` flags), its standard error in
/// `log`, started; its command runs until the file `stop` appears in `w`, or `w` is gone (a test
/// that panicked before writing `stop` drops its directory, and the defender then ends too
/// instead of outliving the test).
pub fn defender_until_stopped(w: &World, console: &str, extra: &[&str], log: &Path) -> Child {
    defender(
        w,
        console,
        &w.path("state"),
        extra,
        &["sh", "-c", UNTIL_STOPPED],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(log).unwrap())
    .spawn()
    .unwrap()
}

/// `defender run --console URL --token T --state-dir STATE [extra] -- command` in `place`, for
/// its container, with PATH limited to the system's tools.
pub fn defender(
    place: &impl Place,
    console: &str,
    state: &Path,
    extra: &[&str],
    command: &[&str],
) -> Command {
    let mut args = vec!["--console", console, "--token", DEFENDER, "--state-dir"];
    let state = state.to_str().unwrap();
    args.push(state);
    args.extend_from_slice(extra);
    let mut c = place.defender_command(&args, command);
    c.env("PATH", "/usr/bin:/bin")
        .env_remove("DEFENDER_TOKEN")
        .env_remove("DEFENDER_STATE_DIR")
        .env_remove("DEFENDER_WAIT_FOR_CONSOLE")
        .env_remove("DEFENDER_CONSOLE_CA");
    c
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost: (ca.pem, cert.pem, key.pem).
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// The `defender` audits in `w`'s audit file whose message contains `text`.
pub fn defender_events(w: &World, text: &str) -> Vec<Value> {
    w.audits_of("defender")
        .into_iter()
        .filter(|e| e["message"].as_str().unwrap_or_default().contains(text))
        .collect()
}
