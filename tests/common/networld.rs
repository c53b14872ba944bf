//! The network tests' own world: a private network, mount and UTS namespace (held open by a
//! `sleep` the test starts), with test addresses on its loopback, a real DNS server (dnsmasq) that
//! logs every question it is asked, a web server, and a private `/etc/resolv.conf`, `/etc/hosts`
//! and `/etc/nsswitch.conf` bind-mounted over the host's inside the namespace only. Every command
//! (the defender and the native baselines alike) runs inside it through `nsenter`; nothing reaches
//! the host's network. Everything is killed on drop, and the namespaces go with the last process.
//!
//! Debian packages: dnsmasq-base, iproute2, util-linux (unshare, nsenter, mount), python3.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{HANG_GUARD, World, output_within, require, test_program, wait_until};

/// The DNS server's address, the only `nameserver` of the world's resolv.conf.
pub const NAMESERVER: &str = "10.53.0.1";
/// The web server; `allowed.test`, `denied.test` and `other.test` all resolve to it.
pub const WEB: &str = "10.80.0.1";
/// A TEST-NET-3 address on the world's loopback; tests deny `203.0.113.0/24`.
pub const DENIED_IP: &str = "203.0.113.5";
/// An IPv6 documentation address on the world's loopback; tests deny `2001:db8::/32`.
pub const DENIED_IP6: &str = "2001:db8::5";
/// An IPv6 address on the world's loopback that tests leave allowed.
pub const WEB6: &str = "fd00::80";
/// The TTL of every answer the DNS server makes up (its `--local-ttl`): distinctive, so a test can
/// tell the server's answer from anyone else's.
pub const TTL: u32 = 4242;
/// Names the DNS server knows (A records only: AAAA questions get an empty NOERROR answer). Any
/// other name, `invalid.` included, is NXDOMAIN.
pub const NAMES: [&str; 3] = ["allowed.test", "denied.test", "other.test"];
/// A name with [`BIG_COUNT`] A records (10.81.0.1 ...): its answer does not fit a 512-byte UDP
/// message, so glibc's resolver gets it truncated and asks again over TCP.
pub const BIG_NAME: &str = "big.test";
pub const BIG_COUNT: usize = 40;
/// The body of `http://WEB/index.html`.
pub const INDEX: &str = "hello from the network test world\n";
/// PATH for every command: the system's tools only (never a pyenv shim or a developer's bin).
pub const SYSTEM_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// One question the DNS server was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `A`, `AAAA`, ...
    pub kind: String,
    /// The name as asked, lowercased, without a trailing dot.
    pub name: String,
}

pub struct NetWorld {
    pub world: World,
    /// `sleep infinity` in the new namespaces; every command enters them through its pid. It is
    /// never waited for before drop, so its pid cannot be reused while the world lives.
    holder: Child,
    servers: Vec<Child>,
    sentinels: AtomicU32,
}

impl Deref for NetWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl NetWorld {
    /// The namespaces, their addresses and files, the DNS server and a web server on `WEB:80`.
    pub fn new() -> NetWorld {
        for tool in ["unshare", "nsenter", "ip", "mount", "dnsmasq", "python3"] {
            require(tool);
        }
        let world = World::new();
        let holder = Command::new(require("unshare"))
            .args([
                "--net",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
            ])
            .args(["sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare starts");
        let mut nw = NetWorld {
            world,
            holder,
            servers: Vec::new(),
            sentinels: AtomicU32::new(0),
        };
        nw.await_namespaces();
        nw.setup();
        nw.start_dns();
        nw.serve_http(&format!("{WEB}:80"));
        nw
    }

    /// The pid whose namespaces the world's commands enter.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Waits until the holder runs `sleep` in namespaces of its own, and refuses to go on
    /// otherwise: a command meant for the world must never change the host's network or files.
    fn await_namespaces(&self) {
        let pid = self.pid();
        let ns = |p: &str, kind: &str| fs::read_link(format!("/proc/{p}/ns/{kind}")).ok();
        let ready = wait_until(Duration::from_secs(10), || {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        assert!(ready, "unshare (pid {pid}) did not get to `sleep infinity`");
        for kind in ["net", "mnt", "uts"] {
            let theirs = ns(&pid.to_string(), kind);
            assert!(theirs.is_some(), "cannot read /proc/{pid}/ns/{kind}");
            assert_ne!(
                theirs,
                ns("self", kind),
                "the world's holder (pid {pid}) shares the test's {kind} namespace"
            );
        }
    }

    /// `nsenter` into the world, then `program args...`, with cwd the world's directory and PATH
    /// the system's.
    fn ns_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(require("nsenter"));
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["--net", "--mount", "--uts"])
            .arg(format!("--wd={}", self.dir.path().display()))
            .arg("--")
            .arg(program)
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::null());
        c
    }

    /// Addresses on the loopback, the hostname (no dot, so glibc derives no search domain from
    /// it), and the private resolver files.
    fn setup(&self) {
        let resolv = self.path("resolv.conf");
        // timeout:2 attempts:2: a query the defender swallowed would take 4 s or more to fail,
        // far from the "under a second" a prevented name must fail in.
        fs::write(
            &resolv,
            format!("nameserver {NAMESERVER}\noptions timeout:2 attempts:2\n"),
        )
        .unwrap();
        let hosts = self.path("hosts");
        fs::write(&hosts, "127.0.0.1 localhost\n::1 localhost\n").unwrap();
        let nsswitch = self.path("nsswitch.conf");
        fs::write(&nsswitch, "hosts: files dns\n").unwrap();
        let mut script = String::from("set -e\nip link set lo up\n");
        for addr in [NAMESERVER, WEB, DENIED_IP] {
            script += &format!("ip addr add {addr}/32 dev lo\n");
        }
        for addr in [WEB6, DENIED_IP6] {
            script += &format!("ip addr add {addr}/128 dev lo nodad\n");
        }
        script += "echo networld > /proc/sys/kernel/hostname\n";
        for (file, target) in [
            (&resolv, "/etc/resolv.conf"),
            (&hosts, "/etc/hosts"),
            (&nsswitch, "/etc/nsswitch.conf"),
        ] {
            script += &format!("mount --bind {} {target}\n", file.display());
        }
        let out = output_within(self.ns_command("sh").arg("-c").arg(&script));
        assert!(
            out.status.success(),
            "setting up the network world failed: {}\nscript:\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn spawn_server(&mut self, what: &str, c: &mut Command) {
        let child = c
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path(&format!("{what}.stderr"))).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        self.servers.push(child);
    }

    fn start_dns(&mut self) {
        let mut c = self.ns_command(require("dnsmasq"));
        c.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--group=root",
            "--pid-file=",
            "--bind-interfaces",
            "--log-queries",
        ])
        .arg(format!("--listen-address={NAMESERVER}"))
        .arg(format!("--local-ttl={TTL}"))
        .arg(format!("--log-facility={}", self.dns_log().display()));
        for name in NAMES {
            c.arg(format!("--host-record={name},{WEB}"));
        }
        for i in 1..=BIG_COUNT {
            c.arg(format!("--host-record={BIG_NAME},10.81.0.{i}"));
        }
        // Every other name does not exist.
        c.arg("--address=/#/");
        self.spawn_server("dnsmasq", &mut c);
        self.await_listening(&format!("{NAMESERVER}:53"), "dnsmasq");
    }

    /// Starts another web server inside the world (GET: files under `www/`; POST: the sha256 of
    /// the body) on `addr` (`IP:PORT` or `[IPV6]:PORT`), and waits until it accepts.
    pub fn serve_http(&mut self, addr: &str) {
        let sa: SocketAddr = addr.parse().expect("IP:PORT");
        let www = self.path("www");
        if !www.exists() {
            fs::create_dir(&www).unwrap();
            fs::write(www.join("index.html"), INDEX).unwrap();
            fs::write(self.path("http_server.py"), include_str!("http_server.py")).unwrap();
        }
        let mut c = self.ns_command("/usr/bin/python3");
        c.arg(self.path("http_server.py"))
            .arg(sa.ip().to_string())
            .arg(sa.port().to_string())
            .arg(&www);
        let name = format!("http-{}-{}", sa.ip(), sa.port());
        self.spawn_server(&name, &mut c);
        self.await_listening(addr, &name);
    }

    /// Puts a file under the web servers' root (`http://WEB/NAME`).
    pub fn web_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.path("www").join(name);
        fs::write(&p, contents).unwrap();
        p
    }

    /// Waits until something accepts TCP connections on `addr` inside the world: the server
    /// started by [`NetWorld::spawn_server`] as `what`.
    fn await_listening(&self, addr: &str, what: &str) {
        let sa: SocketAddr = addr.parse().expect("IP:PORT");
        let up = self.in_netns(move || {
            wait_until(Duration::from_secs(10), || {
                TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok()
            })
        });
        if !up {
            let log = fs::read_to_string(self.path(&format!("{what}.stderr"))).unwrap_or_default();
            panic!("{what} is not listening on {addr} inside the world after 10 s\n{log}");
        }
    }

    /// Runs `f` on a thread that has joined the world's network namespace (only that thread).
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns_of(self.pid(), f)
    }

    /// `command` run inside the world without the defender (a native baseline).
    pub fn native(&self, command: &[&str]) -> Output {
        self.native_timed(command).0
    }

    /// [`NetWorld::native`], and how long it took.
    pub fn native_timed(&self, command: &[&str]) -> (Output, Duration) {
        let mut c = self.ns_command(command[0]);
        c.args(&command[1..]);
        timed(&mut c)
    }

    /// `defender run ... -- command...` inside the world (see [`World::command`]), not started.
    pub fn command(&self, policy: Option<&Path>, extra: &[&str], command: &[&str]) -> Command {
        let inner = self.world.command(policy, extra, command);
        let mut c = self.ns_command(inner.get_program());
        c.args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// Runs `command` under the defender with `policy_json`, inside the world.
    pub fn run(&self, policy_json: &str, command: &[&str]) -> Output {
        self.run_timed(policy_json, command).0
    }

    /// [`NetWorld::run`], and how long the whole `defender run` took.
    pub fn run_timed(&self, policy_json: &str, command: &[&str]) -> (Output, Duration) {
        let p = self.policy(policy_json);
        timed(&mut self.command(Some(&p), &[], command))
    }

    pub fn dns_log(&self) -> PathBuf {
        self.path("dns.log")
    }

    /// Every question the DNS server logged so far, in order. First asks it a question of its own
    /// (a sentinel, left out of the result) and waits until that is logged, so that every question
    /// asked before this call is in the log.
    pub fn dns_queries(&self) -> Vec<Query> {
        let n = self.sentinels.fetch_add(1, Ordering::Relaxed);
        let sentinel = format!("sentinel-{n}.invalid");
        let helper = test_program("net_helper");
        let out = self.native(&[
            helper.to_str().unwrap(),
            "dns-connect-write",
            NAMESERVER,
            &sentinel,
        ]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("rcode=3"),
            "the DNS server did not answer the sentinel query: {out:?}"
        );
        let mut queries = Vec::new();
        let logged = wait_until(Duration::from_secs(10), || {
            queries = parse_dns_log(&fs::read_to_string(self.dns_log()).unwrap_or_default());
            queries.iter().any(|q| q.name == sentinel)
        });
        assert!(logged, "the DNS server never logged {sentinel}");
        queries.retain(|q| !q.name.starts_with("sentinel-"));
        queries
    }

    /// The names (lowercased) the DNS server was asked about, in order, each once.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for q in self.dns_queries() {
            if !names.contains(&q.name) {
                names.push(q.name);
            }
        }
        names
    }
}

impl Drop for NetWorld {
    fn drop(&mut self) {
        for child in self
            .servers
            .iter_mut()
            .chain(std::iter::once(&mut self.holder))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `f` on a thread that has joined the network namespace of process `pid` (only that
/// thread), and returns what it returned.
pub fn in_netns_of<T: Send>(pid: u32, f: impl FnOnce() -> T + Send) -> T {
    let netns = fs::File::open(format!("/proc/{pid}/ns/net")).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the world's network namespace");
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// Runs `c` to completion (stdin closed, under the hang guard) and times it.
fn timed(c: &mut Command) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = super::finish_within(super::spawn_piped(c), HANG_GUARD);
    (out, t0.elapsed())
}

/// The questions in a dnsmasq `--log-queries` log: lines like
/// `... dnsmasq[12]: query[AAAA] allowed.test from 10.53.0.1`.
fn parse_dns_log(log: &str) -> Vec<Query> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("query[")? + "query[".len()..];
            let (kind, rest) = rest.split_once("] ")?;
            let name = rest.split_whitespace().next()?;
            Some(Query {
                kind: kind.to_owned(),
                name: name.trim_end_matches('.').to_ascii_lowercase(),
            })
        })
        .collect()
}

/// `setpriv` to nobody (uid and gid 65534) with no supplementary group: the prefix of a command
/// that runs without root's identity and capabilities.
pub fn as_nobody() -> Vec<String> {
    let setpriv = require("setpriv");
    let prefix = [
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ];
    std::iter::once(setpriv.to_str().unwrap())
        .chain(prefix)
        .map(str::to_owned)
        .collect()
}

/// A program of `test-programs/` built static for the musl target (`.ci/run` builds it; see the
/// panic message), under the target directory of the `defender` under test.
pub fn musl_test_program(name: &str) -> PathBuf {
    let target = super::target_root().join("x86_64-unknown-linux-musl");
    let found = ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join(name))
        .find(|p| p.exists());
    let path = found.unwrap_or_else(|| {
        panic!(
            "{name} for musl is missing under {}: build it with `cargo build --release \
             --target x86_64-unknown-linux-musl -p defender-test-programs --bin {name}` \
             (.ci/run does)",
            target.display()
        )
    });
    // A glibc build would name its dynamic loader; a static musl one names none.
    let bytes = fs::read(&path).unwrap();
    assert!(
        !bytes.windows(12).any(|w| w == b"ld-linux-x86"),
        "{} is not a static musl binary",
        path.display()
    );
    path
}

/// Checks the fields every audit of the network sensors carries (docs/audit.md), for the world's
/// container: `kind` (`dns`, `network`, `listen`), effect, rule, attack (`{kind}ExplicitlyDenied`
/// or `{kind}NotAllowed`), process, pid and count. Returns the verdict as the message says it.
pub fn check_audit(
    a: &Value,
    kind: &str,
    effect: &str,
    rule: &str,
    explicit: bool,
    process: &str,
) -> &'static str {
    let (attack, verdict) = if explicit {
        ("ExplicitlyDenied", "explicitly denied")
    } else {
        ("NotAllowed", "is not allowed")
    };
    assert_eq!(a["type"], kind, "{a}");
    assert_eq!(a["effect"], effect, "{a}");
    assert_eq!(a["rule"], rule, "{a}");
    assert_eq!(a["attack"], format!("{kind}{attack}"), "{a}");
    assert_eq!(a["process"], process, "{a}");
    assert_eq!(a["container"], "test-container", "{a}");
    assert_eq!(a["image"], "test/image:1", "{a}");
    assert_eq!(a["count"], 1, "{a}");
    assert!(a["pid"].as_u64().is_some_and(|p| p > 1), "{a}");
    verdict
}

/// `defender run`'s exit status when a `block` effect stopped the container.
pub const BLOCKED_EXIT: i32 = 99;

/// Checks that `out`, a run of `sh -c '...; echo survived'` whose `...` did something the rule
/// blocks, was stopped: the defender exited [`BLOCKED_EXIT`], the shell never went on, and one
/// `defender` event reports the block.
pub fn assert_blocked(w: &World, out: &Output) {
    assert_eq!(out.status.code(), Some(BLOCKED_EXIT), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("survived"),
        "the shell must be killed before it goes on: {out:?}"
    );
    let blocks: Vec<Value> = w
        .audits_of("defender")
        .into_iter()
        .filter(|e| e["effect"] == "block")
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "one defender block event: {:#?}",
        w.audits()
    );
}

/// The one event of `audits`; fails unless there is exactly one.
pub fn only(audits: Vec<Value>) -> Value {
    assert_eq!(audits.len(), 1, "expected exactly one event: {audits:#?}");
    audits.into_iter().next().unwrap()
}

/// A lenient DNS server's log: every message that reached it, raw (see `raw_dns_server.py`).
impl NetWorld {
    /// Starts the lenient server on UDP and TCP port 53 of `ip` (an address of the world).
    pub fn serve_raw_dns(&mut self, ip: &str) {
        fs::write(
            self.path("raw_dns_server.py"),
            include_str!("raw_dns_server.py"),
        )
        .unwrap();
        let mut c = self.ns_command("/usr/bin/python3");
        c.arg(self.path("raw_dns_server.py"))
            .arg(ip)
            .arg(self.raw_dns_log(ip));
        let name = format!("raw-dns-{ip}");
        self.spawn_server(&name, &mut c);
        self.await_listening(&format!("{ip}:53"), &name);
    }

    fn raw_dns_log(&self, ip: &str) -> PathBuf {
        self.path(&format!("raw-dns-{ip}.log"))
    }

    /// Every message the lenient server on `ip` received so far, in order, with its transport
    /// (`udp`, `tcp`, `tcp-partial`). First sends it two sentinel datagrams, one after the other
    /// is logged, so that everything that reached it before this call is in the log.
    pub fn raw_dns_messages(&self, ip: &str) -> Vec<(String, Vec<u8>)> {
        let server: SocketAddr = format!("{ip}:53").parse().unwrap();
        let read = || -> Vec<(String, Vec<u8>)> {
            fs::read_to_string(self.raw_dns_log(ip))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let (kind, hex) = l.split_once(' ')?;
                    let bytes = (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                        .collect();
                    Some((kind.to_owned(), bytes))
                })
                .collect()
        };
        for _ in 0..2 {
            let n = self.sentinels.fetch_add(1, Ordering::Relaxed);
            let sentinel = format!("sentinel-{n}").into_bytes();
            let sent = sentinel.clone();
            self.in_netns(move || {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                s.send_to(&sent, server).unwrap();
            });
            let logged = wait_until(Duration::from_secs(10), || {
                read().iter().any(|(_, m)| *m == sentinel)
            });
            assert!(
                logged,
                "the lenient DNS server on {ip} never logged its sentinel"
            );
        }
        let mut messages = read();
        messages.retain(|(_, m)| !m.starts_with(b"sentinel-"));
        messages
    }
}
