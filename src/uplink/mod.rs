//! The defender's side of the console (`--console URL --token T`): the runtime policy and the
//! WAAS policy fetched by long poll and applied atomically, the last good ones kept on disk,
//! audits shipped in batches through a spool on disk, heartbeats. With no writable state directory (a read-only root file system)
//! the spool is in memory and no policy is kept: the defender still starts.
//!
//! The order matters, because the supervisor forks and a fork needs a process with one thread:
//! 1. [`Uplink::prepare`], before fork, starts no thread: state directory, spool, the policy to
//!    start from (the cached one, else `--policy`, else the default), and the WAAS policy (the
//!    cached one, else what `--waas-policy` put in force).
//! 2. [`Starter::run`], the supervisor's `after_fork`: first contact with the console (one bounded
//!    attempt, or until `--wait-for-console` runs out; then the WAAS policy, one attempt), then
//!    the threads: the two policy feeds, shipper, heartbeat. The command's launch is decided only
//!    after this; a token the console refuses at this point stops it (a configuration error, not
//!    a reason to run unprotected).
//! 3. [`Uplink::finish`], once the command is done: delivers what is left (audits, then the last
//!    activity report in a heartbeat), within a bound.

mod cache;
mod client;
mod heartbeat;
mod policy_feed;
mod shipper;
mod spool;

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::audit::{self, Event, Scope, Sink, SinkError, Tee};
use crate::policy::live::Source;
use crate::policy::{self, Live, Policy};
use crate::waas;
use cache::Cache;
pub use client::Ca;
use client::{Client, ClientError, Fetched, POLICY, WAAS_POLICY};
use policy_feed::Feed;
use shipper::Msg;
use spool::Spool;

/// Without `--wait-for-console`, how long the first contact may take before the command starts
/// under the fallback policy.
const FIRST_CONTACT: Duration = Duration::from_secs(3);
/// The spool's size on disk; past it the oldest undelivered events are dropped (and audited).
const SPOOL_MAX_BYTES: u64 = 32 << 20;
/// The spool's size in memory, when no directory is writable: the memory is the container's, so
/// less than on disk; past it too the oldest are dropped (and audited).
const MEMORY_SPOOL_MAX_BYTES: u64 = 8 << 20;
/// Where the defender keeps its state when it may (otherwise a directory under $TMPDIR).
const SYSTEM_STATE_DIR: &str = "/var/lib/defender";

/// What `defender run` says about the console.
pub struct Config {
    pub console: String,
    pub token: String,
    /// The CAs to trust instead of the public roots.
    pub ca: Option<Ca>,
    /// Where the cached policy and the spool live; `None`: [`default_state_dir`].
    pub state_dir: Option<PathBuf>,
    /// Do not start the command before the console answered, for at most this long.
    pub wait: Option<Duration>,
    /// `--policy`, the fallback when the console is away and nothing is cached.
    pub local: Option<(PathBuf, Policy)>,
    /// The WAAS policy in force (from `--waas-policy`, or none), which the uplink replaces with
    /// the cached WAAS document, then with the console's revisions.
    pub waas: waas::live::Live,
    /// `--audit-file`, where the uplink's own `defender` events are written too.
    pub audit_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error(transparent)]
    Setup(#[from] client::SetupError),
    #[error("state directory {path} is in use by another defender; give each its own --state-dir")]
    StateDirBusy { path: PathBuf },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What the uplink threads share.
struct Shared {
    client: Client,
    live: Live,
    scope: Scope,
    /// `None` when no directory is writable: no console policy is kept then.
    cache: Option<Cache<Policy>>,
    waas: waas::live::Live,
    /// The last good WAAS document, beside `cache`.
    waas_cache: Option<Cache<waas::Compiled>>,
    /// This run of the defender, in heartbeats.
    instance: String,
    link: Mutex<LinkState>,
    /// Exchanges with the console started so far: the last one's [`Ticket`].
    exchanges: AtomicU64,
    /// The uplink's own `defender` events go out through their own sink (the supervisor owns
    /// the other); both append whole lines, so they never interleave.
    reports: Mutex<Sink>,
    /// Held while the defender runs: two defenders sharing a spool would overwrite each other's
    /// batches. `None` with no state directory.
    _state_lock: Option<Flock<File>>,
}

/// Why the command must not start after all, found once the defender is forked.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--wait-for-console` ran out, or the console refused: the message says which (it is also
    /// what the audit of it says).
    #[error("{message}")]
    NoConsole {
        message: String,
        source: ClientError,
    },
    /// The console refused the token at the first contact: a configuration error.
    #[error("{message}")]
    TokenRefused {
        message: String,
        source: ClientError,
    },
    #[error("cannot start the console uplink: {0}")]
    Threads(#[source] io::Error),
}

/// An exchange with the console, numbered when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ticket(u64);

/// What the link is, and the exchange whose outcome said so.
#[derive(Clone, Copy, Debug)]
struct LinkState {
    link: Link,
    by: Ticket,
}

impl LinkState {
    /// Moves to what `next` makes of the link after the exchange of `ticket`: the state before
    /// and after, or nothing when an exchange started later has already set it (this outcome is
    /// older news).
    fn apply(&mut self, ticket: Ticket, next: impl FnOnce(Link) -> Link) -> Option<(Link, Link)> {
        if ticket < self.by {
            return None;
        }
        let was = self.link;
        *self = LinkState {
            link: next(was),
            by: ticket,
        };
        Some((was, self.link))
    }
}

/// What the last exchange with the console said, to audit changes rather than every failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Unknown,
    Up,
    /// Unreachable; with the status of a refusal said before the outage and not yet lifted,
    /// so that a refused token the console accepts again after a restart is said to be
    /// accepted, not only that the console is back.
    Down(Option<u16>),
    /// Refused with this HTTP status.
    Refused(u16),
}

impl Link {
    /// The state after `error`, from the state `was`.
    fn after(was: Link, error: &ClientError) -> Link {
        match error {
            ClientError::Unreachable(_) => Link::Down(match was {
                Link::Refused(status) => Some(status),
                Link::Down(refused) => refused,
                Link::Unknown | Link::Up => None,
            }),
            ClientError::Refused { status, .. } => Link::Refused(*status),
        }
    }

    /// What an exchange that succeeds in this state is news of, if anything.
    fn recovery(self) -> Option<&'static str> {
        match self {
            Link::Down(Some(401 | 403)) => Some("reachable again and accepts the token again"),
            Link::Down(_) => Some("reachable again"),
            Link::Refused(401 | 403) => Some("accepts the token again"),
            Link::Refused(_) => Some("answers again"),
            Link::Unknown | Link::Up => None,
        }
    }
}

impl Shared {
    /// Writes a `defender` event (locally, and to the console through the shipper).
    fn report(&self, message: String) {
        log::info!("{message}");
        let in_force = self.live.current();
        let event = Event::defender(
            &self.scope,
            audit::Effect::Alert,
            in_force.rule_name(),
            message,
        );
        lock(&self.reports).emit(event);
    }

    /// Numbers an exchange about to start. Several threads talk to the console (the policy
    /// feeds, the heartbeat, the shipper), and one whose request failed before a console
    /// restarted may come to say so after another has had an answer from the restarted console:
    /// an outcome is news only if no exchange started after it has already said what the link
    /// is.
    pub(super) fn exchange(&self) -> Ticket {
        Ticket(self.exchanges.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Moves the link to what `next` makes of it, unless an exchange started after `ticket`'s
    /// has already set it; `said` gets the state before and after, and runs under the lock so
    /// that the audits of two changes come out in the order of the changes.
    fn settle(
        &self,
        ticket: Ticket,
        next: impl FnOnce(Link) -> Link,
        said: impl FnOnce(Link, Link),
    ) {
        let mut state = lock(&self.link);
        if let Some((was, now)) = state.apply(ticket, next) {
            said(was, now);
        }
    }

    /// An exchange succeeded; the change from a failure is audited.
    pub(super) fn reached(&self, ticket: Ticket) {
        self.settle(
            ticket,
            |_| Link::Up,
            |was, _| {
                if let Some(news) = was.recovery() {
                    self.report(format!("Console {} {news}", self.client.base()));
                }
            },
        );
    }

    /// An exchange failed; a change of state is audited, not every failure (each thread polls).
    pub(super) fn missed(&self, ticket: Ticket, error: &ClientError) {
        self.settle(
            ticket,
            |was| Link::after(was, error),
            |was, now| {
                if was != now {
                    self.report(self.failure(error));
                }
            },
        );
    }

    /// What a failed exchange is said as.
    fn failure(&self, error: &ClientError) -> String {
        let console = self.client.base();
        let current = self.live.current();
        let in_force = &current.source;
        let kept = self.audits_kept();
        match error {
            ClientError::Unreachable(e) => format!(
                "Console {console} unreachable ({e}): {in_force} stays in force; audits are kept {kept} until it answers",
            ),
            ClientError::Refused { status, .. } => format!(
                "Console {console} {} ({error}): {in_force} stays in force; audits are kept {kept} until it takes them",
                refusal(*status)
            ),
        }
    }

    fn is_down(&self) -> bool {
        matches!(lock(&self.link).link, Link::Down(_) | Link::Refused(_))
    }

    /// Where undelivered audits wait, for messages.
    fn audits_kept(&self) -> &'static str {
        match self.cache {
            Some(_) => "on disk",
            None => "in memory",
        }
    }
}

/// What a console's refusal means: 401 and 403 are about the token.
fn refusal(status: u16) -> &'static str {
    match status {
        401 | 403 => "refused the token",
        _ => "refused the defender",
    }
}

/// A poisoned lock still holds a usable value here (a sink, a state flag).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The handle `defender run` keeps: the policy in force, the tee for its audit sink, and the
/// final delivery.
pub struct Uplink {
    shared: Arc<Shared>,
    to_shipper: mpsc::Sender<Msg>,
}

/// The after-fork half: first contact, then the threads.
pub struct Starter {
    shared: Arc<Shared>,
    from_sinks: mpsc::Receiver<Msg>,
    spool: Spool,
    wait: Option<Duration>,
    /// When the cached policy in force was saved; or why the cache could not be used.
    cache_note: Option<String>,
}

impl Uplink {
    /// Everything that needs no thread and no network (before fork).
    pub fn prepare(cfg: Config, scope: &Scope) -> Result<(Uplink, Starter), UplinkError> {
        let client = Client::new(&cfg.console, &cfg.token, cfg.ca.as_ref())?;
        let dir = cfg
            .state_dir
            .unwrap_or_else(|| default_state_dir(&scope.container));
        let (state, no_state) = match open_state(&dir) {
            Ok(state) => (Some(state), None),
            Err(StateError::Busy) => return Err(UplinkError::StateDirBusy { path: dir }),
            // A read-only root file system, or a volume the user may not write: the defender
            // must start all the same (said once, below).
            Err(StateError::Io(e)) => (None, Some(format!("{}: {e}", dir.display()))),
        };
        let (state_lock, spool, cache, waas_cache) = match state {
            Some((lock, spool)) => (
                Some(lock),
                spool,
                Some(Cache::new(&dir)),
                Some(Cache::<waas::Compiled>::new(&dir)),
            ),
            None => (None, Spool::in_memory(MEMORY_SPOOL_MAX_BYTES), None, None),
        };
        // The cached WAAS document, when there is one, replaces `--waas-policy` as the cached
        // runtime policy replaces `--policy`; an unusable one is ignored (said in the log).
        match waas_cache.as_ref().map(|c| c.load(client.base())) {
            None | Some(Ok(None)) => {}
            Some(Ok(Some(c))) => {
                cfg.waas.set(
                    Some(&c.policy),
                    Source::Cached {
                        revision: c.revision,
                    },
                );
            }
            Some(Err(e)) => log::warn!(
                "the cached WAAS policy in {} is unusable: {e}",
                dir.display()
            ),
        }
        let cached = cache.as_ref().map(|c| c.load(client.base()));
        let (policy, source, cache_note) = match cached {
            None | Some(Ok(None)) => fallback(cfg.local, None),
            Some(Ok(Some(c))) => (
                c.policy,
                Source::Cached {
                    revision: c.revision,
                },
                Some(format!("saved {}", c.saved_at)),
            ),
            Some(Err(e)) => {
                let problem = format!("the cached policy in {} is unusable: {e}", dir.display());
                log::warn!("{problem}");
                fallback(cfg.local, Some(problem))
            }
        };
        let live = Live::new(policy, source, scope.identity());
        // The console proposes rules from what the workload does: summarise it for the heartbeats.
        crate::activity::enable();
        let (to_shipper, from_sinks) = mpsc::channel();
        let mut reports = Sink::open(cfg.audit_file.as_deref())?;
        reports.tee(shipper::tee(to_shipper.clone()));
        let shared = Arc::new(Shared {
            client,
            live,
            scope: scope.clone(),
            cache,
            waas: cfg.waas,
            waas_cache,
            instance: uuid::Uuid::new_v4().to_string(),
            link: Mutex::new(LinkState {
                link: Link::Unknown,
                by: Ticket(0),
            }),
            exchanges: AtomicU64::new(0),
            reports: Mutex::new(reports),
            _state_lock: state_lock,
        });
        if let Some(why) = no_state {
            shared.report(format!(
                "No writable state directory ({why}): audits wait for the console in memory ({}, the oldest dropped past it) and no console policy is kept for the next start",
                spool.describe()
            ));
        }
        let starter = Starter {
            shared: shared.clone(),
            from_sinks,
            spool,
            wait: cfg.wait,
            cache_note,
        };
        Ok((Uplink { shared, to_shipper }, starter))
    }

    /// The policy in force, for the supervisor.
    pub fn live(&self) -> Live {
        self.shared.live.clone()
    }

    /// What the supervisor's audit sink hands every event to.
    pub fn tee(&self) -> Tee {
        shipper::tee(self.to_shipper.clone())
    }

    /// Delivers the events not yet delivered, giving up after `within` (they stay in the spool for
    /// the next run with this state directory). Waits only while the console answers.
    pub fn finish(&self, within: Duration) {
        lock(&self.shared.reports).flush_all();
        let (done, finished) = mpsc::channel();
        let deadline = Instant::now() + within;
        if self.to_shipper.send(Msg::Finish { deadline, done }).is_ok() {
            // Nothing arrives if the shipper never started (the command never ran).
            let _ = finished.recv_timeout(within + Duration::from_secs(1));
        }
        // The last of the activity report (a short command may end between two heartbeats),
        // while the console answers and time is left.
        let left = deadline.saturating_duration_since(Instant::now());
        if !self.shared.is_down() && !left.is_zero() {
            heartbeat::beat(&self.shared, left);
        }
    }
}

impl Starter {
    /// First contact with the console, then the threads. An error means the command must not
    /// start (`--wait-for-console` ran out, or the console refused the token).
    pub fn run(self) -> Result<(), StartError> {
        let shared = &self.shared;
        // Before the threads: this exchange is the first, alone.
        let ticket = shared.exchange();
        let fetched = self.first_contact();
        let have = match fetched {
            Ok((revision, document)) => {
                shared.reached(ticket);
                policy_feed::apply(shared, &revision, &document);
                let have_waas = self.first_waas();
                Some((revision, have_waas))
            }
            Err(
                e @ ClientError::Refused {
                    status: 401 | 403, ..
                },
            ) => {
                let message = format!(
                    "Console {} refused the token given in --token (DEFENDER_TOKEN) ({e}): the command was not started; give the defender token of this console",
                    shared.client.base()
                );
                shared.report(message.clone());
                self.spool_reports();
                return Err(StartError::TokenRefused { message, source: e });
            }
            Err(e) => {
                let console = shared.client.base();
                let what = match &e {
                    ClientError::Unreachable(e) => match self.wait {
                        Some(wait) => {
                            format!("did not answer within {} s ({e})", wait.as_secs_f64())
                        }
                        None => format!("unreachable at start ({e})"),
                    },
                    ClientError::Refused { status, .. } => format!("{} ({e})", refusal(*status)),
                };
                if self.wait.is_some() {
                    let message = format!("Console {console} {what}: the command was not started");
                    shared.report(message.clone());
                    self.spool_reports();
                    return Err(StartError::NoConsole { message, source: e });
                }
                shared.settle(ticket, |was| Link::after(was, &e), |_, _| ());
                let mut message = format!(
                    "Console {console} {what}: enforcing {} until it answers",
                    shared.live.current().source
                );
                if let Some(note) = &self.cache_note {
                    message.push_str(&format!(" ({note})"));
                }
                shared.report(message);
                None
            }
        };
        let (have, have_waas) = match have {
            Some((revision, waas)) => (Some(revision), waas),
            None => (None, None),
        };
        self.spawn(have, have_waas).map_err(StartError::Threads)
    }

    /// The WAAS policy from a console that just answered, one attempt: put in force before the
    /// command starts. The revision applied, if any; a failure is left to the feed, which tries
    /// again at once.
    fn first_waas(&self) -> Option<String> {
        let shared = &self.shared;
        match shared
            .client
            .fetch_policy(WAAS_POLICY, None, Duration::ZERO, FIRST_CONTACT)
        {
            Ok(Fetched::Policy { revision, document }) => {
                Feed::Waas.apply(shared, &revision, &document);
                Some(revision)
            }
            Ok(Fetched::Unchanged) => None,
            Err(e) => {
                log::info!("WAAS policy not fetched at start ({e}); the feed tries again");
                None
            }
        }
    }

    /// The policy from the console: one attempt, or attempts until `--wait-for-console` runs out.
    fn first_contact(&self) -> Result<(String, String), ClientError> {
        let deadline = Instant::now() + self.wait.unwrap_or(FIRST_CONTACT);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let error = match self.shared.client.fetch_policy(
                POLICY,
                None,
                Duration::ZERO,
                left.max(Duration::from_millis(100)),
            ) {
                Ok(Fetched::Policy { revision, document }) => return Ok((revision, document)),
                Ok(Fetched::Unchanged) => {
                    ClientError::Unreachable(client::Away::UnaskedNotModified)
                }
                Err(e) => e,
            };
            // A refusal (a wrong token) will not change by waiting.
            let left = deadline.saturating_duration_since(Instant::now());
            if self.wait.is_none() || matches!(error, ClientError::Refused { .. }) || left.is_zero()
            {
                return Err(error);
            }
            log::debug!("console not there yet ({error}); retrying");
            std::thread::sleep(backoff.next_delay().min(left));
        }
    }

    /// The command will not start, so no shipper will: the events the uplink queued (why it
    /// did not start) go to the spool, for the next run with this state directory to deliver.
    fn spool_reports(self) {
        lock(&self.shared.reports).flush_all();
        shipper::Shipper::new(self.shared, self.from_sinks, self.spool).spool_queued();
    }

    fn spawn(self, have: Option<String>, have_waas: Option<String>) -> io::Result<()> {
        let named = |name: &str| std::thread::Builder::new().name(name.into());
        let shared = self.shared.clone();
        named("defender-policy").spawn(move || policy_feed::run(&shared, Feed::Runtime, have))?;
        let shared = self.shared.clone();
        named("defender-waas-policy")
            .spawn(move || policy_feed::run(&shared, Feed::Waas, have_waas))?;
        let shared = self.shared.clone();
        named("defender-heartbeat").spawn(move || heartbeat::run(&shared))?;
        let shipper = shipper::Shipper::new(self.shared, self.from_sinks, self.spool);
        named("defender-shipper").spawn(move || shipper.run())?;
        Ok(())
    }
}

/// The policy to start from when nothing is cached: `--policy`, else the default.
fn fallback(
    local: Option<(PathBuf, Policy)>,
    problem: Option<String>,
) -> (Policy, Source, Option<String>) {
    match local {
        Some((path, p)) => (p, Source::File(path), problem),
        None => (policy::default_policy(), Source::Default, problem),
    }
}

/// `/var/lib/defender` when it can be created and written, else `$TMPDIR/defender-<container>`.
pub fn default_state_dir(container: &str) -> PathBuf {
    let system = Path::new(SYSTEM_STATE_DIR);
    let writable = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
    if create_private_dir(system).is_ok() && writable(system) {
        return system.to_path_buf();
    }
    let safe: String = container
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    std::env::temp_dir().join(format!("defender-{safe}"))
}

/// Why the state directory cannot be used.
enum StateError {
    /// Another defender holds its lock.
    Busy,
    /// It cannot be made, written or read.
    Io(io::Error),
}

/// The state directory made and locked, and its spool opened.
fn open_state(dir: &Path) -> Result<(Flock<File>, Spool), StateError> {
    create_private_dir(dir).map_err(StateError::Io)?;
    let lock = lock_state_dir(dir).map_err(|e| e.map_or(StateError::Busy, StateError::Io))?;
    let spool = Spool::open(&dir.join("spool"), SPOOL_MAX_BYTES).map_err(StateError::Io)?;
    Ok((lock, spool))
}

/// An exclusive lock on `DIR/lock` (close-on-exec, so the command never holds it); `Err(None)`
/// when another process holds it.
fn lock_state_dir(dir: &Path) -> Result<Flock<File>, Option<io::Error>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(Some)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => None,
        e => Some(e.into()),
    })
}

/// Writes `data` to `path` through `aside` (created 0600, then renamed over `path`): a crash
/// leaves the old file or the new one, never half of one.
fn write_whole(aside: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(aside)?
        .write_all(data)?;
    std::fs::rename(aside, path)
}

/// The state holds policies and audits: readable by its owner only.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Exponential backoff with full jitter, so that a fleet of defenders does not knock on a console
/// that just came back in the same instant: each pause is drawn anew from zero up to a ceiling
/// that doubles from `first` to `max` with each failure in a row. The first retry is already
/// random (within `first`), which spreads a fleet whose polls were all cut by the same restart.
struct Backoff {
    first: Duration,
    max: Duration,
    /// Failures in a row before this one.
    attempt: u32,
}

/// The pause after `attempt` failures in a row (0: the first retry), for `random` in [0, 1):
/// uniform below `first` × 2^`attempt`, capped at `max`.
fn full_jitter(first: Duration, max: Duration, attempt: u32, random: f64) -> Duration {
    let ceiling = first.saturating_mul(2u32.saturating_pow(attempt)).min(max);
    ceiling.mul_f64(random.clamp(0.0, 1.0))
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            attempt: 0,
        }
    }

    /// The pause before the next attempt.
    fn next_delay(&mut self) -> Duration {
        // RandomState is seeded afresh from the OS each time: 53 of its bits make a fraction.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        let delay = full_jitter(self.first, self.max, self.attempt, fraction);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_draws_below_a_doubling_ceiling_up_to_its_cap() {
        let ms = Duration::from_millis;
        let (first, max) = (ms(250), ms(5000));
        // (failures before, random) -> pause
        for (attempt, random, want) in [
            (0, 0.0, ms(0)),
            (0, 0.5, ms(125)),
            (0, 0.999_999, ms(250).mul_f64(0.999_999)),
            (1, 0.5, ms(250)),
            (2, 0.5, ms(500)),
            (4, 1.0, ms(4000)),
            // The cap: 250 ms × 2^5 = 8 s is above 5 s.
            (5, 0.5, ms(2500)),
            (5, 1.0, ms(5000)),
            (u32::MAX, 0.2, ms(1000)),
            // A random value out of range is clamped.
            (0, 7.0, ms(250)),
        ] {
            assert_eq!(
                full_jitter(first, max, attempt, random),
                want,
                "{attempt} {random}"
            );
        }
    }

    #[test]
    fn backoff_draws_within_its_ceilings_spreads_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        for ceiling in [100, 200, 400, 500, 500] {
            let got = b.next_delay();
            assert!(got < Duration::from_millis(ceiling), "{got:?} vs {ceiling}");
        }
        b.reset();
        // The first retries of a fleet are spread over the first window, not the same value.
        let firsts: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(firsts.len() > 10, "{firsts:?}");
        assert!(firsts.iter().all(|d| *d < Duration::from_millis(100)));
        assert!(b.next_delay() < Duration::from_millis(100));
    }

    #[test]
    fn link_states_and_what_a_success_after_them_says() {
        let refused = |status| ClientError::Refused {
            status,
            body: String::new(),
        };
        let away = ClientError::Unreachable(client::Away::NoRevision);
        for (was, error, state, recovery) in [
            (Link::Up, &away, Link::Down(None), Some("reachable again")),
            (
                Link::Unknown,
                &away,
                Link::Down(None),
                Some("reachable again"),
            ),
            (
                Link::Up,
                &refused(401),
                Link::Refused(401),
                Some("accepts the token again"),
            ),
            (
                Link::Down(None),
                &refused(403),
                Link::Refused(403),
                Some("accepts the token again"),
            ),
            (
                Link::Up,
                &refused(404),
                Link::Refused(404),
                Some("answers again"),
            ),
            // A refused token, then an outage (the console restarting with the right token):
            // the success after it says both.
            (
                Link::Refused(401),
                &away,
                Link::Down(Some(401)),
                Some("reachable again and accepts the token again"),
            ),
            (
                Link::Down(Some(403)),
                &away,
                Link::Down(Some(403)),
                Some("reachable again and accepts the token again"),
            ),
            (
                Link::Refused(500),
                &away,
                Link::Down(Some(500)),
                Some("reachable again"),
            ),
        ] {
            assert_eq!(Link::after(was, error), state, "{was:?} {error:?}");
            assert_eq!(state.recovery(), recovery, "{state:?}");
        }
        assert_eq!(Link::Up.recovery(), None);
        assert_eq!(Link::Unknown.recovery(), None);
    }

    #[test]
    fn an_outcome_older_than_the_state_is_no_news() {
        let away = ClientError::Unreachable(client::Away::NoRevision);
        let refused = ClientError::Refused {
            status: 401,
            body: String::new(),
        };
        let mut state = LinkState {
            link: Link::Up,
            by: Ticket(0),
        };
        // Exchange 1 went to a console that was then stopped; exchange 2 had the restarted
        // console's refusal first: 1's failure, said after, changes nothing.
        assert_eq!(
            state.apply(Ticket(2), |was| Link::after(was, &refused)),
            Some((Link::Up, Link::Refused(401)))
        );
        assert_eq!(state.apply(Ticket(1), |was| Link::after(was, &away)), None);
        assert_eq!(state.link, Link::Refused(401));
        // A failure of an exchange started later is news, and the refusal is remembered.
        assert_eq!(
            state.apply(Ticket(3), |was| Link::after(was, &away)),
            Some((Link::Refused(401), Link::Down(Some(401))))
        );
        assert_eq!(state.apply(Ticket(2), |_| Link::Up), None);
        assert_eq!(
            state.apply(Ticket(4), |_| Link::Up),
            Some((Link::Down(Some(401)), Link::Up))
        );
    }

    #[test]
    fn a_state_dir_serves_one_defender_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_state_dir(dir.path()).unwrap();
        assert!(matches!(lock_state_dir(dir.path()), Err(None)));
        drop(held);
        assert!(lock_state_dir(dir.path()).is_ok());
    }

    #[test]
    fn state_dir_names_are_safe() {
        // Not /var/lib/defender here only when that is not writable; either way a plain path.
        let dir = default_state_dir("web/../x y");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            dir == Path::new(SYSTEM_STATE_DIR) || name == "defender-web_.._x_y",
            "{}",
            dir.display()
        );
    }
}
