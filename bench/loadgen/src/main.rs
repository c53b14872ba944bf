//! `loadgen`: a fleet of simulated defenders against one or several consoles (issue 15). It ramps
//! up their long polls, reads the consoles' memory with every poll held, then runs heartbeats,
//! audit batches and spaced policy PUTs for a while, and reports what it measured: propagation
//! of each PUT to every poller, ingestion, batch and heartbeat latency, memory per held poll,
//! errors by kind. A fleet larger than one process's descriptors is run by several processes,
//! each recording its part (`--record`), merged by `loadgen merge`. How to run it and what each
//! figure means: docs/benchmarks.md.

mod fleet;
mod http;
mod merge;
mod report;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use clap::Parser;
use hyper::{Method, header};
use serde::Serialize;
use tokio::task::JoinSet;

use fleet::{Defender, Feed, Fleet, POLICY, Traffic, Watch, Written};
use http::{Conn, Target, revision, status_failure};
use merge::{Part, PartRss, PutTimes};
use report::{ErrorReport, Kind, Spread, kib, round, show, tenths};

/// Simulated defenders against one or several consoles; `loadgen merge` merges the parts that
/// several such processes recorded. SIGTERM or SIGINT ends a run early, its report written.
#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    // A flag given twice takes the last value: a script adds its own after the user's.
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Option<Args>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Merges the parts written by several processes' `--record` (exactly one of which made
    /// PUTs) into one report: propagation over every poller, polls held, memory per held poll,
    /// errors.
    Merge {
        /// The parts.
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// Where to write the merged report as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct Args {
    /// A console's base URL (`http://HOST:PORT`); repeated, the defenders are spread over them
    /// round-robin (a load balancer is one URL).
    #[arg(long = "console", required = true)]
    consoles: Vec<String>,
    /// The token the defenders use.
    #[arg(long, env = "LOADGEN_DEFENDER_TOKEN")]
    defender_token: String,
    /// The token the policy PUTs use (an admin's or an operator's); needed when `--puts` > 0.
    #[arg(long, env = "LOADGEN_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// How many defenders.
    #[arg(long, default_value_t = 100)]
    defenders: usize,
    /// New defenders per second while ramping up.
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// How long to wait after the ramp for every long poll to be held.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    ramp_timeout: Duration,
    /// Also poll the WAAS policy, as a real defender does (two long polls per defender).
    #[arg(long)]
    waas: bool,
    /// The long poll's `?wait=` (whole seconds; the defender's is 30 s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// How long heartbeats and audit batches run, once every poll is held (longer if the PUTs
    /// need it).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Each defender's heartbeat interval; 0 for none (the defender's is 5 s).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Audit batches per second per defender; 0 for none.
    #[arg(long, default_value_t = 0.1)]
    audit_rate: f64,
    /// Events per audit batch.
    #[arg(long, default_value_t = 20)]
    events: usize,
    /// Heartbeats and batches each on a new connection (`Connection: close`) instead of one
    /// kept alive per defender (the real defender's): for a fleet larger than half the
    /// descriptors the console or the load generator may open.
    #[arg(long)]
    close_writes: bool,
    /// Policy PUTs, one after the other: each waits for every runtime poller to see its revision
    /// (or `--put-timeout`), then `--put-interval` passes before the next.
    #[arg(long, default_value_t = 3)]
    puts: usize,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    put_interval: Duration,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    put_timeout: Duration,
    /// A console's process id, whose resident memory (VmRSS) is read idle, with every poll held,
    /// and under load; repeatable.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Spread the connections over this many source addresses from `--source-base` on (bound
    /// before connecting: each has its own ephemeral ports); 0 lets the kernel choose.
    #[arg(long, default_value_t = 0)]
    sources: u32,
    #[arg(long, default_value = "127.0.0.2")]
    source_base: Ipv4Addr,
    /// Where to write the report as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Wait, before reading the memory and making the PUTs, until the consoles count this many
    /// long polls held: every process's of a run by several (each its own `--defenders`).
    #[arg(long)]
    expect_polls: Option<u64>,
    /// Also write this process's part of a measurement by several (when each runtime poller saw
    /// each revision, the PUTs' times, on the wall clock) for `loadgen merge`.
    #[arg(long)]
    record: Option<PathBuf>,
}

/// How long the writers have to finish after the stop.
const WRITERS_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum LoadgenError {
    #[error(transparent)]
    Target(#[from] http::TargetError),
    #[error("--puts needs --admin-token (or LOADGEN_ADMIN_TOKEN)")]
    NoAdminToken,
    #[error("--wait must be whole seconds from 1 to 120")]
    Wait,
    #[error("--ramp must be a positive number of defenders per second")]
    Ramp,
    #[error("--sources {0} from --source-base {1} runs past 255.255.255.255")]
    Sources(u32, Ipv4Addr),
    #[error("--pid {pid}: {source}")]
    Rss { pid: u32, source: std::io::Error },
    #[error("--out {path}: {source}", path = path.display())]
    Out {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--record {path}: {source}", path = path.display())]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen for SIGTERM and SIGINT: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
}

fn main() {
    let cli = Cli::parse();
    let result = match (cli.command, cli.run) {
        (Some(Command::Merge { parts, out }), _) => {
            merge::run(&parts, out.as_deref()).map_err(LoadgenError::from)
        }
        (None, Some(args)) => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            let result = runtime.block_on(run(args));
            // The aborted pollers' connections are not waited for.
            runtime.shutdown_background();
            result
        }
        (None, None) => unreachable!("clap requires --console when no subcommand is given"),
    };
    match result {
        // A run with failures is reported all the same, and said by the exit status.
        Ok(errors) => std::process::exit(i32::from(errors > 0)),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    }
}

#[derive(Serialize)]
struct Report {
    /// The command line, tokens left out.
    command: Vec<String>,
    cpus: usize,
    /// /proc/loadavg when the run started and when it ended.
    load_start: String,
    load_end: String,
    /// The load generator's RLIMIT_NOFILE (soft) after raising it.
    nofile: u64,
    /// CPU time (user + system) spent from the start to the end of the traffic: by the load
    /// generator, and by the consoles of `--pid` (summed), which share the machine's CPUs.
    cpu_seconds: CpuSeconds,
    pollers: Pollers,
    rss: Option<Rss>,
    puts: Vec<Put>,
    /// Every PUT's, from its answer and from its sending.
    propagation: Option<Spread>,
    propagation_from_sent: Option<Spread>,
    traffic_seconds: f64,
    ingestion: Ingestion,
    heartbeats: Heartbeats,
    errors: ErrorReport,
}

#[derive(Serialize)]
struct CpuSeconds {
    loadgen: Option<f64>,
    consoles: Option<f64>,
}

#[derive(Serialize)]
struct Pollers {
    defenders: usize,
    /// Long polls per defender (2 with `--waas`).
    polls_per_defender: usize,
    /// Runtime pollers that had their first answer.
    contacted: usize,
    /// Seconds from the first connection to every poll held (`null`: not within the timeout).
    all_held_after: Option<f64>,
    /// Long polls under way when the memory was read, by our count and by the consoles'
    /// `defender_console_long_polls_open` (summed; `null` where /metrics was not readable).
    held: usize,
    held_by_console: Option<u64>,
    /// Polls that failed after first contact (each a connection lost), and polls under way at
    /// the end.
    lost: u64,
    held_at_end: usize,
}

#[derive(Serialize)]
struct Rss {
    pids: Vec<u32>,
    idle_kib: u64,
    /// `null` when it could not be read then (the load generator out of descriptors, a console
    /// gone): counted as an error, the rest of the report kept.
    held_kib: Option<u64>,
    loaded_kib: Option<u64>,
    /// (held − idle) / long polls held.
    per_held_poll_kib: Option<f64>,
}

#[derive(Serialize)]
struct Put {
    console: String,
    revision: Option<u64>,
    /// The PUT's own latency.
    put_ms: Option<f64>,
    seen: usize,
    missed: usize,
    /// Pollers that saw the revision before the PUT's answer arrived (0 ms in `propagation`).
    seen_before_answer: usize,
    /// From the PUT's answer to each poller seeing the revision.
    propagation: Option<Spread>,
    /// From the PUT being sent: the above plus what of the PUT's own time came first.
    from_sent: Option<Spread>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Ingestion {
    /// Defenders whose heartbeats and batches had not ended 30 s after the stop: their counts are
    /// missing from these (0 in a run that went as it should).
    writers_aborted: usize,
    batches: u64,
    events_acked: u64,
    events_stored: u64,
    events_refused: u64,
    events_unsent: u64,
    /// Events acknowledged per second of the traffic phase.
    events_per_second: f64,
    batch_latency: Option<Spread>,
}

#[derive(Serialize)]
struct Heartbeats {
    sent: u64,
    latency: Option<Spread>,
}

/// Runs the fleet; the number of errors counted.
async fn run(args: Args) -> Result<u64, LoadgenError> {
    let consoles = args
        .consoles
        .iter()
        .map(|u| Target::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    if args.puts > 0 && args.admin_token.is_none() {
        return Err(LoadgenError::NoAdminToken);
    }
    if args.wait.subsec_nanos() != 0 || !(1..=120).contains(&args.wait.as_secs()) {
        return Err(LoadgenError::Wait);
    }
    if !(args.ramp.is_finite() && args.ramp > 0.0) {
        return Err(LoadgenError::Ramp);
    }
    if u32::from(args.source_base)
        .checked_add(args.sources)
        .is_none()
    {
        return Err(LoadgenError::Sources(args.sources, args.source_base));
    }
    let feeds = if args.waas { 2 } else { 1 };
    let expected_polls = args.defenders * feeds;
    // Each defender holds its polls' connections and a writer's, and the PUTs a few more.
    let writer = u64::from(!args.close_writes);
    let nofile = raise_nofile(args.defenders as u64 * (feeds as u64 + writer) + 1024);
    let load_start = loadavg();
    let stop_asked = stop_signals()?;
    let idle = read_rss(&args.pids)?;
    let own = [std::process::id()];
    let cpu_start = (cpu_seconds(&own), cpu_seconds(&args.pids));

    let fleet = Arc::new(Fleet {
        run: format!("lg{:x}", unix_nanos(SystemTime::now())),
        defender_token: args.defender_token.clone(),
        wait: args.wait,
        errors: report::Errors::new(),
        holding: Default::default(),
        contacted: Default::default(),
        lost: Default::default(),
        watch: Default::default(),
        all_seen: Default::default(),
        changes: args.record.is_some().then(Default::default),
    });
    let defenders: Vec<Arc<Defender>> = (0..args.defenders)
        .map(|i| {
            Arc::new(Defender {
                index: i,
                target: consoles[i % consoles.len()].clone(),
                source: (args.sources > 0).then(|| {
                    IpAddr::V4(Ipv4Addr::from(
                        u32::from(args.source_base) + i as u32 % args.sources,
                    ))
                }),
                revision: AtomicU64::new(0),
            })
        })
        .collect();

    // Said before the first connection: a script starts the other processes of a run by several
    // once this one has read the consoles' memory idle.
    println!(
        "consoles' RSS idle {idle} KiB; ramping up {} defenders",
        args.defenders
    );
    // The ramp: pollers only, so that the memory read next is the polls'.
    let mut pollers = JoinSet::new();
    let ramp_start = Instant::now();
    for (i, d) in defenders.iter().enumerate() {
        let due = ramp_start + Duration::from_secs_f64(i as f64 / args.ramp);
        tokio::time::sleep_until(due.into()).await;
        if *stop_asked.borrow() {
            break;
        }
        pollers.spawn(fleet::poll(fleet.clone(), d.clone(), Feed::Runtime));
        if args.waas {
            pollers.spawn(fleet::poll(fleet.clone(), d.clone(), Feed::Waas));
        }
    }
    let deadline = Instant::now() + args.ramp_timeout;
    let mut held_by_console;
    let all_held_after = loop {
        held_by_console = console_polls(&consoles, args.admin_token.as_deref()).await;
        let ours = fleet.holding.load(Ordering::SeqCst);
        // Every process's polls, when several make the run: only the consoles can count them.
        let consoles_hold = match args.expect_polls {
            Some(all) => held_by_console.is_some_and(|n| n >= all),
            None => held_by_console.is_none_or(|n| n >= expected_polls as u64),
        };
        if ours >= expected_polls && consoles_hold {
            break Some(ramp_start.elapsed().as_secs_f64());
        }
        if Instant::now() >= deadline || *stop_asked.borrow() {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let held = fleet.holding.load(Ordering::SeqCst);
    let held_rss = read_rss_later(&fleet, &args.pids);
    println!(
        "{} defenders, {held} long polls held after {:.1} s (consoles say {})",
        args.defenders,
        ramp_start.elapsed().as_secs_f64(),
        held_by_console.map_or("-".into(), |n| n.to_string())
    );

    // The traffic: heartbeats and audits from every defender, and the PUTs.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let traffic = Traffic {
        heartbeat: (!args.heartbeat.is_zero()).then_some(args.heartbeat),
        batch_every: (args.audit_rate > 0.0 && args.events > 0)
            .then(|| Duration::from_secs_f64(1.0 / args.audit_rate)),
        events: args.events,
        close: args.close_writes,
    };
    let traffic_start = Instant::now();
    let mut writers = JoinSet::new();
    if traffic.heartbeat.is_some() || traffic.batch_every.is_some() {
        for d in &defenders {
            writers.spawn(fleet::write(
                fleet.clone(),
                d.clone(),
                traffic,
                stop_rx.clone(),
            ));
        }
    }
    let puts = match &args.admin_token {
        Some(admin) if args.puts > 0 => {
            put_policies(&fleet, &consoles, admin, &args, &stop_asked).await
        }
        _ => Vec::new(),
    };
    let mut asked = stop_asked.clone();
    tokio::select! {
        _ = tokio::time::sleep_until((traffic_start + args.duration).into()) => {}
        _ = asked.wait_for(|s| *s) => println!("stopped by a signal"),
    }
    let loaded_rss = read_rss_later(&fleet, &args.pids);
    let spent = |start: Option<f64>, end: Option<f64>| Some(round(end? - start?));
    let cpu = CpuSeconds {
        loadgen: spent(cpu_start.0, cpu_seconds(&own)),
        consoles: spent(cpu_start.1, cpu_seconds(&args.pids)),
    };
    let _ = stop_tx.send(true);
    let mut written = Written::default();
    // A writer finishes its request under way (at most a connection's and a request's timeouts,
    // twice); one still running after this is aborted and counted, so that a report is written
    // whatever the console does.
    let give_up = tokio::time::Instant::now() + WRITERS_GRACE;
    while let Ok(Some(w)) = tokio::time::timeout_at(give_up, writers.join_next()).await {
        let w = w.expect("a writer does not panic");
        written.heartbeats += w.heartbeats;
        written.heartbeat_latency.extend(w.heartbeat_latency);
        written.batches += w.batches;
        written.events_acked += w.events_acked;
        written.events_stored += w.events_stored;
        written.batch_latency.extend(w.batch_latency);
        written.events_refused += w.events_refused;
        written.events_unsent += w.events_unsent;
    }
    let writers_aborted = writers.len();
    writers.abort_all();
    if writers_aborted > 0 {
        fleet.errors.count(
            Kind::WriterAborted,
            writers_aborted as u64,
            &format!("{writers_aborted} writers had not ended {WRITERS_GRACE:?} after the stop"),
        );
    }
    let traffic_seconds = traffic_start.elapsed().as_secs_f64();
    let held_at_end = fleet.holding.load(Ordering::SeqCst);
    pollers.abort_all();

    let all = |pick: fn(&Seen) -> &Vec<Duration>| -> Vec<Duration> {
        puts.iter()
            .flat_map(|(_, s)| pick(s).iter().copied())
            .collect()
    };
    let (after_answer, after_sent) = (all(|s| &s.after_answer), all(|s| &s.after_sent));
    let put_times: Vec<PutTimes> = puts.iter().filter_map(|(_, s)| s.times).collect();
    let report = Report {
        command: redacted_command(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_start,
        load_end: loadavg(),
        nofile,
        cpu_seconds: cpu,
        pollers: Pollers {
            defenders: args.defenders,
            polls_per_defender: feeds,
            contacted: fleet.contacted.load(Ordering::SeqCst),
            all_held_after: all_held_after.map(|s| round(s * 1e3) / 1e3),
            held,
            held_by_console,
            lost: fleet.lost.load(Ordering::SeqCst),
            held_at_end,
        },
        rss: (!args.pids.is_empty()).then(|| Rss {
            pids: args.pids.clone(),
            idle_kib: idle,
            held_kib: held_rss,
            loaded_kib: loaded_rss,
            per_held_poll_kib: held_rss
                .filter(|_| held > 0)
                .map(|h| round((h as f64 - idle as f64) / held as f64)),
        }),
        propagation: Spread::of(&after_answer),
        propagation_from_sent: Spread::of(&after_sent),
        puts: puts.into_iter().map(|(p, _)| p).collect(),
        traffic_seconds: round(traffic_seconds),
        ingestion: Ingestion {
            writers_aborted,
            batches: written.batches,
            events_acked: written.events_acked,
            events_stored: written.events_stored,
            events_refused: written.events_refused,
            events_unsent: written.events_unsent,
            events_per_second: round(written.events_acked as f64 / traffic_seconds),
            batch_latency: Spread::of(&written.batch_latency),
        },
        heartbeats: Heartbeats {
            sent: written.heartbeats,
            latency: Spread::of(&written.heartbeat_latency),
        },
        errors: fleet.errors.summary(),
    };
    print_summary(&report);
    if let Some(path) = &args.record {
        let part = Part {
            defenders: args.defenders,
            puts: put_times,
            changes: merge::group_changes(
                &fleet
                    .changes
                    .as_ref()
                    .map(|c| std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner())))
                    .unwrap_or_default(),
            ),
            held: report.pollers.held,
            held_by_console: report.pollers.held_by_console,
            lost: report.pollers.lost,
            held_at_end: report.pollers.held_at_end,
            rss: report.rss.as_ref().map(|r| PartRss {
                idle_kib: r.idle_kib,
                held_kib: r.held_kib,
                loaded_kib: r.loaded_kib,
            }),
            errors: (&report.errors).into(),
            cpu_seconds_loadgen: report.cpu_seconds.loadgen,
            cpu_seconds_consoles: report.cpu_seconds.consoles,
            load_start: report.load_start.clone(),
            load_end: report.load_end.clone(),
            nofile: report.nofile,
        };
        let text = serde_json::to_vec(&part).expect("the part serializes");
        std::fs::write(path, text).map_err(|source| LoadgenError::Record {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &args.out {
        report::write_json(path, &report).map_err(|source| LoadgenError::Out {
            path: path.clone(),
            source,
        })?;
    }
    Ok(report.errors.total)
}

/// When the pollers saw a PUT's revision: after its answer (0 if before), after its sending;
/// and the PUT's own times on the wall clock, for a merge.
#[derive(Default)]
struct Seen {
    after_answer: Vec<Duration>,
    after_sent: Vec<Duration>,
    times: Option<PutTimes>,
}

/// The PUTs, one after the other, each on a console in turn; each with its propagation times.
async fn put_policies(
    fleet: &Fleet,
    consoles: &[Target],
    admin: &str,
    args: &Args,
    stop_asked: &tokio::sync::watch::Receiver<bool>,
) -> Vec<(Put, Seen)> {
    let mut out = Vec::new();
    for k in 0..args.puts {
        tokio::time::sleep(args.put_interval).await;
        if *stop_asked.borrow() {
            break;
        }
        let console = &consoles[k % consoles.len()];
        let mut put = Put {
            console: console.url.clone(),
            revision: None,
            put_ms: None,
            seen: 0,
            missed: 0,
            seen_before_answer: 0,
            propagation: None,
            from_sent: None,
            error: None,
        };
        let seen = match put_one(fleet, console, admin, args, k, &mut put).await {
            Ok(seen) => seen,
            Err(f) => {
                fleet.errors.count(Kind::PutFailed, 1, &f.detail);
                put.error = Some(f.detail);
                Seen::default()
            }
        };
        put.propagation = Spread::of(&seen.after_answer);
        put.from_sent = Spread::of(&seen.after_sent);
        println!(
            "PUT {} on {} answered in {} ms: {}/{} pollers saw it, {} before the answer; \
             after the answer {}; after the PUT was sent {}",
            put.revision.map_or("-".into(), |r| r.to_string()),
            put.console,
            put.put_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
            put.seen,
            args.defenders,
            put.seen_before_answer,
            show(&put.propagation),
            show(&put.from_sent)
        );
        out.push((put, seen));
    }
    out
}

/// One PUT of a new document, made conditional on the revision read just before so that the
/// revision to watch for is known before any poller can see it.
async fn put_one(
    fleet: &Fleet,
    console: &Target,
    admin: &str,
    args: &Args,
    k: usize,
    put: &mut Put,
) -> Result<Seen, http::Failure> {
    let mut conn = Conn::open(console, None).await?;
    let get = console.request(Method::GET, POLICY, admin, &[], None);
    let a = conn.send(get, Duration::from_secs(10)).await?;
    let current = match a.etag.as_deref().and_then(revision) {
        Some(r) if a.status == 200 => r,
        _ => return Err(status_failure("GET policy", &a)),
    };
    let target = current + 1;
    {
        let mut w = fleet.watch.lock().unwrap_or_else(|e| e.into_inner());
        *w = Watch {
            target,
            expected: args.defenders,
            seen: Vec::with_capacity(args.defenders),
        };
    }
    let document = format!(
        r#"{{"rules": [{{"name": "loadgen {} put {k}", "processes": {{"effect": "alert", "deny": ["/usr/bin/loadgen-{k}"]}}}}]}}"#,
        fleet.run
    );
    let request = console.request(
        Method::PUT,
        POLICY,
        admin,
        &[(header::IF_MATCH, format!("\"{current}\""))],
        Some(Bytes::from(document)),
    );
    let (sent, sent_wall) = (Instant::now(), SystemTime::now());
    let answer = conn.send(request, Duration::from_secs(30)).await;
    let (answered, answered_wall) = (Instant::now(), SystemTime::now());
    let result = match answer {
        Ok(a) if a.status == 200 => {
            let rev = serde_json::from_slice::<serde_json::Value>(&a.body)
                .ok()
                .and_then(|v| v["revision"].as_u64());
            put.revision = rev;
            put.put_ms = Some(round((answered - sent).as_secs_f64() * 1e3));
            if rev == Some(target) {
                Ok(())
            } else {
                Err(http::Failure::new(
                    Kind::PutFailed,
                    format!("PUT answered revision {rev:?}, not {target}"),
                ))
            }
        }
        Ok(a) => Err(status_failure("PUT policy", &a)),
        Err(f) => Err(f),
    };
    if let Err(f) = result {
        fleet.watch.lock().unwrap_or_else(|e| e.into_inner()).target = 0;
        return Err(f);
    }
    let deadline = answered + args.put_timeout;
    loop {
        let done = {
            let w = fleet.watch.lock().unwrap_or_else(|e| e.into_inner());
            w.seen.len() >= w.expected
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if done || left.is_zero() {
            break;
        }
        // A permit left from an earlier PUT only makes this look again.
        let _ = tokio::time::timeout(left, fleet.all_seen.notified()).await;
    }
    let seen = std::mem::take(&mut *fleet.watch.lock().unwrap_or_else(|e| e.into_inner())).seen;
    put.seen = seen.len();
    put.missed = args.defenders.saturating_sub(seen.len());
    put.seen_before_answer = seen.iter().filter(|t| **t < answered).count();
    if put.missed > 0 {
        fleet.errors.count(
            Kind::PropagationMissed,
            put.missed as u64,
            &format!(
                "{} pollers did not see revision {target} within {:?}",
                put.missed, args.put_timeout
            ),
        );
    }
    Ok(Seen {
        after_answer: seen
            .iter()
            .map(|t| t.saturating_duration_since(answered))
            .collect(),
        after_sent: seen
            .iter()
            .map(|t| t.saturating_duration_since(sent))
            .collect(),
        times: Some(PutTimes {
            revision: target,
            sent_unix_ns: unix_nanos(sent_wall),
            answered_unix_ns: unix_nanos(answered_wall),
            timeout_ms: args.put_timeout.as_millis() as u64,
        }),
    })
}

/// The consoles' count of long polls held (`defender_console_long_polls_open`), summed; `None`
/// when one's /metrics cannot be read.
async fn console_polls(consoles: &[Target], token: Option<&str>) -> Option<u64> {
    let mut sum = 0;
    for c in consoles {
        let mut conn = Conn::open(c, None).await.ok()?;
        let request = c.request(Method::GET, "/metrics", token.unwrap_or(""), &[], None);
        let a = conn.send(request, Duration::from_secs(5)).await.ok()?;
        if a.status != 200 {
            return None;
        }
        let text = String::from_utf8_lossy(&a.body);
        sum += text.lines().find_map(|l| {
            l.strip_prefix("defender_console_long_polls_open ")
                .and_then(|n| n.trim().parse::<u64>().ok())
        })?;
    }
    Some(sum)
}

/// Raises RLIMIT_NOFILE to `want` (or at least to the hard limit, when raising the hard limit is
/// not allowed); returns the soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= want {
        return soft;
    }
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
    getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(s, _)| s)
}

/// [`read_rss`] once the run is under way: a failure is counted, not the end of the run (whose
/// report, or part of a measurement by several processes, would then be lost).
fn read_rss_later(fleet: &Fleet, pids: &[u32]) -> Option<u64> {
    read_rss(pids)
        .inspect_err(|e| fleet.errors.count(Kind::Other, 1, &e.to_string()))
        .ok()
}

/// The sum of the processes' VmRSS, in KiB.
fn read_rss(pids: &[u32]) -> Result<u64, LoadgenError> {
    let mut sum = 0;
    for &pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|source| LoadgenError::Rss { pid, source })?;
        sum += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| LoadgenError::Rss {
                pid,
                source: std::io::Error::other("no VmRSS line"),
            })?;
    }
    Ok(sum)
}

/// The processes' CPU time (user + system), summed, in seconds: fields 14 and 15 of
/// /proc/PID/stat, in clock ticks. `None` when one cannot be read.
fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    use nix::unistd::{SysconfVar, sysconf};
    let tick = sysconf(SysconfVar::CLK_TCK).ok().flatten()? as f64;
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command's name, in parentheses, may hold spaces: the fields start after it.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    (!pids.is_empty()).then(|| ticks as f64 / tick)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Nanoseconds since the epoch: the clock every process of one machine shares.
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Set when SIGTERM or SIGINT arrives: the run then ends early and is reported (a script stops
/// the processes that made no PUTs this way once the one that did has finished).
fn stop_signals() -> Result<tokio::sync::watch::Receiver<bool>, LoadgenError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(LoadgenError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(LoadgenError::Signals)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        // The value stays true for the receivers when the sender is gone.
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// The command line with the tokens' values left out (the report is shared).
fn redacted_command() -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in std::env::args() {
        if hide_next {
            out.push("…".into());
            hide_next = false;
        } else if let Some((flag, _)) = arg.split_once('=').filter(|(f, _)| f.ends_with("-token")) {
            out.push(format!("{flag}=…"));
        } else {
            hide_next = arg.ends_with("-token");
            out.push(arg);
        }
    }
    out
}

fn print_summary(r: &Report) {
    let p = &r.pollers;
    println!(
        "pollers: {} defenders × {} polls, {} contacted, {} held, {} lost, {} held at the end",
        p.defenders, p.polls_per_defender, p.contacted, p.held, p.lost, p.held_at_end
    );
    if let Some(rss) = &r.rss {
        println!(
            "console RSS: idle {} KiB, polls held {} KiB, loaded {} KiB, per held poll {} KiB",
            rss.idle_kib,
            kib(rss.held_kib),
            kib(rss.loaded_kib),
            tenths(rss.per_held_poll_kib)
        );
    }
    println!(
        "propagation (all PUTs): after the answer {}; after the PUT was sent {}",
        show(&r.propagation),
        show(&r.propagation_from_sent)
    );
    let i = &r.ingestion;
    println!(
        "ingestion: {} events acked ({} stored) in {} batches over {:.1} s: {:.0} events/s, batch latency {}",
        i.events_acked,
        i.events_stored,
        i.batches,
        r.traffic_seconds,
        i.events_per_second,
        show(&i.batch_latency)
    );
    println!(
        "heartbeats: {} sent, latency {}",
        r.heartbeats.sent,
        show(&r.heartbeats.latency)
    );
    println!(
        "errors: {} {:?}; load {} -> {}; CPU seconds: loadgen {}, consoles {}",
        r.errors.total,
        r.errors.by_kind,
        r.load_start,
        r.load_end,
        tenths(r.cpu_seconds.loadgen),
        tenths(r.cpu_seconds.consoles)
    );
}
