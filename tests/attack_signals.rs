//! The command never outlives its supervisor, and cannot switch it off with a signal (issue 9,
//! attack 7). The tests run the real defender directly, so it is NOT PID 1 (as under ECS
//! `initProcessEnabled`): the process the test starts is the keeper, whose only child is the
//! supervisor, whose child is the command.
//!
//! - Signals sent from outside, the fault signals included, are forwarded, never fatal; a TERM
//!   sent as soon as the defender exists reaches the command.
//! - The workload's attacks on the defender and the keeper (kill, tkill, tgkill, rt_sigqueueinfo,
//!   pidfd_open, pidfd_send_signal through a thread's pidfd and a /proc directory, prlimit64,
//!   setpgid, F_SETSIG, ptrace, process_vm_readv, kill(-1)) are refused with EPERM and audited,
//!   and the defender enforces afterwards.
//!   They run inside a PID namespace of their own (`unshare --pid`, the defender as its PID 2):
//!   a `kill -9 -1` that got through would then end that namespace, not the test machine.
//! - SIGKILL of the supervisor kills the command and a setsid, double-forked grandchild; SIGKILL
//!   of the keeper leaves the defender enforcing.
//! - Job control: Ctrl-Z under an interactive bash stops the job and returns the prompt; `fg`
//!   continues it with the terminal.
//!
//! Every wait is on an observable fact (a file, an audit line, /proc, terminal output) under the
//! hang guard; nothing sleeps to order events.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::*;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

fn read(world: &World, file: &str) -> String {
    std::fs::read_to_string(world.path(file)).unwrap_or_default()
}

fn kill(pid: i32, sig: Signal) {
    signal::kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill {pid} {sig}: {e}"));
}

/// A process's identity that survives pid reuse: (pid, start time in clock ticks since boot).
fn identity(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    Some((pid, start))
}

fn alive(id: (i32, u64)) -> bool {
    identity(id.0) == Some(id)
}

// ---- signals from outside ----

/// Every fault signal sent to the supervisor with kill(2) is forwarded to the command, whose traps
/// record them; none kills the defender. SEGV and BUS twice (the Rust runtime's handler let the
/// second one kill before). Then the same to the keeper, and TERM ends the command: 143.
#[test]
fn fault_signals_from_outside_are_forwarded_and_never_fatal() {
    let world = World::new();
    let faults = ["ABRT", "ILL", "TRAP", "FPE", "SYS", "SEGV", "BUS"];
    let traps: String = faults
        .iter()
        .map(|s| format!("trap 'echo {s} >> received' {s}\n"))
        .collect();
    let script = format!("{traps}touch ready\nwhile :; do sleep 0.05; done");
    let mut cmd = world.command(None, &[], &["sh", "-c", &script]);
    let child = wait_for_file(&world, spawn_piped(&mut cmd), "ready");
    let keeper = child.id() as i32;
    let defender = supervisor_of(keeper);

    let sequence = [
        (defender, "ABRT"),
        (defender, "ILL"),
        (defender, "TRAP"),
        (defender, "FPE"),
        (defender, "SYS"),
        (defender, "SEGV"),
        (defender, "SEGV"),
        (defender, "BUS"),
        (defender, "BUS"),
        (keeper, "SEGV"),
        (keeper, "SEGV"),
        (keeper, "ABRT"),
    ];
    for (n, (target, name)) in sequence.iter().enumerate() {
        let sig: Signal = format!("SIG{name}").parse().unwrap();
        kill(*target, sig);
        // One at a time: the command's trap recorded this one before the next goes out.
        let recorded = wait_until(HANG_GUARD, || read(&world, "received").lines().count() > n);
        assert!(
            recorded,
            "{name} sent to pid {target} never reached the command; received so far:\n{}",
            read(&world, "received")
        );
        assert_eq!(read(&world, "received").lines().nth(n), Some(*name));
        assert!(
            proc_status(defender, "State").is_some_and(|s| !s.starts_with('Z')),
            "the supervisor died of {name}"
        );
    }
    kill(keeper, Signal::SIGTERM);
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(
        out.status.code(),
        Some(143),
        "TERM reaches the command, which dies of it; stderr:\n{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("was killed by"), "{}", stderr(&out));
}

/// SigBlk of a process that blocked every signal it can (all but KILL and STOP).
const ALL_BLOCKED: &str = "fffffffffffbfeff";

/// TERM sent as soon as the defender exists (its first instruction has run: its mask shows every
/// signal blocked), 200 times: the command is always started and gets it (143); the defender
/// never dies of it. Before that, the kernel is still in execve or the dynamic loader runs, and
/// no program's code can act (docs/pid1.md).
#[test]
fn term_as_soon_as_the_defender_exists_reaches_the_command() {
    let world = World::new();
    for i in 0..200 {
        let mut cmd = world.command(None, &[], &["sleep", "100"]);
        let child = spawn_piped(&mut cmd);
        let pid = child.id() as i32;
        // Spins (no pause between looks): the TERM goes out the moment the mask shows.
        let deadline = std::time::Instant::now() + HANG_GUARD;
        let blocked = loop {
            if proc_status(pid, "SigBlk").as_deref() == Some(ALL_BLOCKED) {
                break true;
            }
            if std::time::Instant::now() >= deadline {
                break false;
            }
        };
        assert!(blocked, "run {i}: the defender never blocked its signals");
        kill(pid, Signal::SIGTERM);
        let out = finish_within(child, HANG_GUARD);
        assert_eq!(
            out.status.code(),
            Some(143),
            "run {i}: status {:?}; stderr:\n{}",
            out.status,
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("was killed by"),
            "run {i}: the supervisor died; stderr:\n{}",
            stderr(&out)
        );
    }
}

/// TERM right after spawn (when the spawner's fork and exec return, the new image may not have run
/// a single instruction yet), 200 times: either the command is started and gets it (143), or the
/// defender died of it before its first instruction, and so before it started anything: no command
/// ever runs on without it.
#[test]
fn term_right_after_spawn_never_leaves_a_command_behind() {
    let world = World::new();
    let (mut forwarded, mut before_start) = (0, 0);
    for i in 0..200 {
        let marker = format!("started-{i}");
        let script = format!("echo $$ > {marker}; exec sleep 100");
        let mut cmd = world.command(None, &[], &["sh", "-c", &script]);
        let child = spawn_piped(&mut cmd);
        kill(child.id() as i32, Signal::SIGTERM);
        let out = finish_within(child, HANG_GUARD);
        match (out.status.code(), out.status.signal()) {
            (Some(143), _) => forwarded += 1,
            (None, Some(15)) => {
                before_start += 1;
                assert!(
                    !world.path(&marker).exists(),
                    "run {i}: the defender died of TERM after starting the command"
                );
            }
            _ => panic!(
                "run {i}: status {:?}; stderr:\n{}",
                out.status,
                stderr(&out)
            ),
        }
        assert!(!stderr(&out).contains("was killed by"), "{}", stderr(&out));
    }
    eprintln!(
        "TERM right after spawn: {forwarded} forwarded, {before_start} before the first instruction"
    );
}

// ---- the workload attacks its supervisor ----

/// Calls that target the defender's processes, by a workload that is root with CAP_KILL. Prints
/// `name=errno` per attack (0: it went through). argv: defender pid, keeper pid.
const ATTACK_PY: &str = r#"
import ctypes, os, signal, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
D, K = int(sys.argv[1]), int(sys.argv[2])
def call(name, nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    print(f"{name}={ctypes.get_errno() if r < 0 else 0}", flush=True)
info = ctypes.create_string_buffer(128)
tids = sorted(int(t) for t in os.listdir(f"/proc/{D}/task"))
for t in tids:
    call(f"tkill-{t}", 200, t, 9)
    call(f"tgkill-{t}", 234, D, t, 19)
    if t != D:
        # A thread's own pidfd (PIDFD_THREAD, 6.9): its id is not the defender's pid.
        pfd = libc.syscall(ctypes.c_long(434), ctypes.c_long(t), ctypes.c_long(os.O_EXCL))
        if pfd >= 0:
            call(f"pidfd_send_signal-thread-{t}", 424, pfd, 9, 0, 0)
call("tkill-keeper", 200, K, 9)
call("rt_sigqueueinfo", 129, D, 9, ctypes.addressof(info))
call("rt_tgsigqueueinfo", 297, D, D, 9, ctypes.addressof(info))
call("pidfd_open-defender", 434, D, 0)
call("pidfd_open-keeper", 434, K, 0)
call("prlimit64-defender", 302, D, 7, 0, ctypes.addressof(info))
call("setpgid-defender-group", 109, 0, os.getpgid(D))
call("fcntl-F_SETSIG-KILL", 72, 1, 10, 9)
call("ptrace-seize-defender", 101, 0x4206, D, 0, 0)
call("ptrace-attach-keeper", 101, 16, K, 0, 0)
iov = (ctypes.c_ulong * 2)(ctypes.addressof(info), 8)
call("process_vm_readv-defender", 310, D, ctypes.addressof(iov), 1, ctypes.addressof(iov), 1, 0)
proc_dir = os.open(f"/proc/{D}", os.O_RDONLY | os.O_DIRECTORY)
call("pidfd_send_signal-procdir", 424, proc_dir, 9, 0, 0)
proc_dir = os.open(f"/proc/{K}", os.O_RDONLY | os.O_DIRECTORY)
call("pidfd_send_signal-procdir-keeper", 424, proc_dir, 19, 0, 0)
# What the workload may still do: signal its own processes, through a pidfd too.
child = subprocess.Popen(["sleep", "100"])
signal.pidfd_send_signal(os.pidfd_open(child.pid), signal.SIGTERM)
print(f"own-child={child.wait()}", flush=True)
"#;

#[test]
fn the_workload_cannot_signal_its_supervisor() {
    let world = World::new();
    std::fs::write(world.path("attack.py"), ATTACK_PY).unwrap();
    let policy = world.policy(
        r#"{"rules": [{"name": "guard-test",
            "processes": {"effect": "prevent", "deny": ["mkdir"]},
            "network": {"effect": "alert", "outbound": {"allow": [], "deny": ["192.0.2.1"]}}}]}"#,
    );
    // The command: $PPID is the supervisor, its parent the keeper.
    let script = "D=$PPID; K=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$D/status)\n\
        for s in KILL STOP SEGV CONT; do kill -$s $D 2>/dev/null; echo kill-$s-defender=$? >> results; done\n\
        kill -KILL $K 2>/dev/null; echo kill-KILL-keeper=$? >> results\n\
        kill -STOP $K 2>/dev/null; echo kill-STOP-keeper=$? >> results\n\
        kill -9 -1 2>/dev/null; echo kill-KILL-all=$? >> results\n\
        kill -9 -$(ps -o pgid= $D | tr -d ' ') 2>/dev/null; echo kill-KILL-group=$? >> results\n\
        python3 attack.py $D $K >> results 2>> attack.err\n\
        mkdir denied-dir 2>/dev/null; echo mkdir=$? >> results\n\
        echo done >> results";
    // In a PID namespace of its own, with sh as its init: the defender is not PID 1 there. setsid
    // gives the defender a process group the namespace can name.
    let defender = defender();
    let inner = format!(
        "setsid -w \"$0\" run --policy '{}' --audit-file '{}' --container c --image i -- sh -c \"$1\"; st=$?; exit $st",
        policy.display(),
        world.audit_path().display()
    );
    let mut cmd = Command::new(require("unshare"));
    cmd.args(["--pid", "--fork", "--mount-proc", "sh", "-c", &inner])
        .arg(&defender)
        .arg(script)
        .current_dir(world.dir.path());
    let out = output_within(&mut cmd);
    let results = read(&world, "results");
    let show = || {
        format!(
            "status {:?}\nresults:\n{results}\nattack.err:\n{}\nstderr:\n{}",
            out.status,
            read(&world, "attack.err"),
            stderr(&out)
        )
    };
    assert_eq!(out.status.code(), Some(0), "{}", show());
    assert!(results.ends_with("done\n"), "{}", show());
    let lines: Vec<(&str, &str)> = results.lines().filter_map(|l| l.split_once('=')).collect();
    let errno = |name: &str| {
        lines
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no result for {name}\n{}", show()))
    };
    // The shell's kill prints 1 for any failure; the calls below print the errno itself.
    for name in [
        "kill-KILL-defender",
        "kill-STOP-defender",
        "kill-SEGV-defender",
        "kill-CONT-defender",
        "kill-KILL-keeper",
        "kill-STOP-keeper",
        "kill-KILL-all",
        "kill-KILL-group",
    ] {
        assert_eq!(errno(name), "1", "{name}\n{}", show());
    }
    let eperm = libc::EPERM.to_string();
    let mut refused = 8;
    for (name, value) in &lines {
        if name.starts_with("tkill")
            || name.starts_with("tgkill")
            || name.starts_with("pidfd_send_signal")
            || ["rt_sigqueueinfo", "rt_tgsigqueueinfo", "prlimit64-defender"].contains(name)
            || name.starts_with("pidfd_open")
            || name.starts_with("setpgid")
            || name.starts_with("fcntl")
            || name.starts_with("ptrace")
            || name.starts_with("process_vm")
        {
            assert_eq!(
                *value,
                eperm,
                "{name} was not refused with EPERM\n{}",
                show()
            );
            refused += 1;
        }
    }
    assert!(
        lines.iter().any(|(n, _)| n.starts_with("tkill-")),
        "{}",
        show()
    );
    // The workload's own processes are still its to signal.
    assert_eq!(errno("own-child"), "-15", "{}", show());
    // And the defender still enforces after all that.
    // 126: the shell's status for a launch that failed with EPERM.
    assert_eq!(errno("mkdir"), "126", "{}", show());
    assert!(!world.path("denied-dir").exists());
    let process = world.audits_of("process");
    assert!(
        process
            .iter()
            .any(|e| e["process"].as_str().is_some_and(|p| p.ends_with("/mkdir"))),
        "{process:?}"
    );
    // Every refusal is audited, naming the caller (folded repeats count in `count`).
    let guard: Vec<_> = world
        .audits_of("defender")
        .into_iter()
        .filter(|e| e["effect"] == "prevent")
        .collect();
    let audited: u64 = guard.iter().map(|e| e["count"].as_u64().unwrap_or(1)).sum();
    assert_eq!(audited, refused, "{guard:#?}\n{}", show());
    for e in &guard {
        let message = e["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("tried to reach the defender's own processes"),
            "{e}"
        );
        let process = e["process"].as_str().unwrap_or_default();
        assert!(
            process.ends_with("sh") || process.contains("python") || process.ends_with("kill"),
            "the audit names the caller, not the defender: {e}"
        );
    }
}

// ---- never outlive ----

/// SIGKILL of the supervisor (not the keeper): the command and a grandchild that called setsid and
/// was orphaned (double fork) die with it; the keeper exits 128 + 9.
#[test]
fn the_command_and_its_descendants_die_with_the_supervisor() {
    let world = World::new();
    let script = "( setsid sh -c 'sleep 1000 & echo $! > grandchild.pid' & )\n\
        while [ ! -s grandchild.pid ]; do sleep 0.05; done\n\
        echo $$ > command.pid\n\
        while :; do sleep 0.05; done";
    let mut cmd = world.command(None, &[], &["sh", "-c", script]);
    let child = wait_for_file(&world, spawn_piped(&mut cmd), "command.pid");
    let keeper = child.id() as i32;
    let defender = supervisor_of(keeper);
    let pid = |file: &str| -> i32 { read(&world, file).trim().parse().expect(file) };
    let command = identity(pid("command.pid")).expect("the command runs");
    let grandchild = identity(pid("grandchild.pid")).expect("the grandchild runs");
    // The grandchild is orphaned to the supervisor (a subreaper), in a session of its own.
    assert!(
        wait_until(HANG_GUARD, || {
            proc_status(grandchild.0, "PPid") == Some(defender.to_string())
        }),
        "the grandchild was never reparented to the supervisor"
    );

    kill(defender, Signal::SIGKILL);
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(137), "stderr:\n{}", stderr(&out));
    assert!(
        stderr(&out).contains("was killed by SIGKILL"),
        "{}",
        stderr(&out)
    );
    // The keeper exits only once nothing is left (it waits until it has no child).
    assert!(!alive(command), "the command outlived the supervisor");
    assert!(!alive(grandchild), "the grandchild outlived the supervisor");
}

/// SIGKILL of the keeper (only possible from outside): the supervisor carries on, says so, and
/// still prevents a denied launch.
#[test]
fn the_supervisor_outlives_its_keeper_and_keeps_enforcing() {
    let world = World::new();
    let policy = world.policy(&process_policy(
        "no-mkdir",
        r#"{"effect": "prevent", "deny": ["mkdir"]}"#,
    ));
    let script = "touch ready\n\
        while [ ! -e go ]; do sleep 0.05; done\n\
        mkdir denied-dir 2>/dev/null; echo $? > mkdir.status";
    let mut cmd = world.command(Some(&policy), &[], &["sh", "-c", script]);
    let child = wait_for_file(&world, spawn_piped(&mut cmd), "ready");
    let keeper = child.id() as i32;
    let defender = identity(supervisor_of(keeper)).unwrap();
    kill(keeper, Signal::SIGKILL);
    let gone_reported = wait_until(HANG_GUARD, || {
        world.audits_of("defender").iter().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("keeper process is gone"))
        })
    });
    assert!(gone_reported, "{:?}", world.audits());
    assert!(alive(defender), "the supervisor died with its keeper");
    std::fs::write(world.path("go"), "").unwrap();
    // stdout and stderr close when the supervisor, which holds them, exits.
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.signal(), Some(9));
    // 126: the shell's status for a launch that failed with EPERM.
    assert_eq!(
        read(&world, "mkdir.status").trim(),
        "126",
        "{}",
        stderr(&out)
    );
    assert!(!world.path("denied-dir").exists());
    assert_eq!(world.audits_of("process").len(), 1, "{:?}", world.audits());
}

// ---- job control ----

/// A terminal session: `script` runs an interactive bash on a pty; what the test writes is typed,
/// what the terminal shows is collected.
struct Terminal {
    child: Child,
    input: std::process::ChildStdin,
    screen: Arc<Mutex<Vec<u8>>>,
    /// How much of the screen earlier expectations consumed.
    seen: usize,
}

impl Terminal {
    fn start() -> Terminal {
        // As a terminal's login session starts: SIGINT and SIGQUIT at their defaults. A test run
        // started in the background of a shell without job control inherits both ignored
        // (POSIX, "Asynchronous Lists"), and an ignored disposition survives exec: Ctrl-C would
        // then reach no one.
        let mut child = Command::new(require("env"))
            .arg("--default-signal=INT,QUIT")
            .arg(require("script"))
            .args(["-qfec", "bash --norc --noprofile -i", "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script starts");
        let input = child.stdin.take().unwrap();
        let mut output = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            input,
            screen,
            seen: 0,
        }
    }

    fn type_in(&mut self, text: &[u8]) {
        self.input.write_all(text).unwrap();
        self.input.flush().unwrap();
    }

    /// Waits until the terminal shows `text` after what was already expected.
    fn expect(&mut self, text: &str) {
        let found = wait_until(HANG_GUARD, || {
            let screen = self.screen.lock().unwrap();
            screen[self.seen..]
                .windows(text.len())
                .position(|w| w == text.as_bytes())
                .map(|at| self.seen += at + text.len())
                .is_some()
        });
        if !found {
            let screen = String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned();
            let _ = self.child.kill();
            panic!("the terminal never showed {text:?}; it shows:\n{screen}");
        }
    }
}

#[test]
fn ctrl_z_stops_the_job_and_fg_continues_it() {
    let world = World::new();
    let mut t = Terminal::start();
    // The prompt is set by a command whose echo does not contain it.
    t.type_in(b"PS1='P''ROMPT> '\n");
    t.expect("PROMPT> ");
    let line = format!(
        "{} run --audit-file '{}' -- sh -c 'echo RE\"\"ADY; exec cat'\n",
        defender().display(),
        world.audit_path().display()
    );
    t.type_in(line.as_bytes());
    t.expect("READY");
    // The terminal echoes the line, then cat repeats it: cat reads the terminal.
    t.type_in(b"ping1\n");
    t.expect("ping1\r\nping1\r\n");
    t.type_in(b"\x1a");
    t.expect("Stopped");
    t.expect("PROMPT> ");
    t.type_in(b"jobs\n");
    t.expect("Stopped");
    t.expect("PROMPT> ");
    t.type_in(b"fg\n");
    t.expect("cat");
    // cat continued, and has the terminal back.
    t.type_in(b"ping2\n");
    t.expect("ping2\r\nping2\r\n");
    t.type_in(b"\x03");
    t.expect("PROMPT> ");
    t.type_in(b"echo status=$?\n");
    t.expect("status=130");
    t.type_in(b"exit\n");
    let status = t.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

// ---- as PID 1 ----

/// As PID 1 of its namespace the defender needs neither keeper nor trap: the kernel drops SIGKILL
/// and SIGSTOP from inside the namespace to its init (sig_task_ignored, SIGNAL_UNKILLABLE), so the
/// workload's kills "succeed" and do nothing, no guard audit is written, and the defender still
/// enforces.
#[test]
fn as_pid_1_the_kernel_protects_the_defender() {
    let world = World::new();
    let policy = world.policy(&process_policy(
        "no-mkdir",
        r#"{"effect": "prevent", "deny": ["mkdir"]}"#,
    ));
    let script = "echo ppid=$PPID >> results\n\
        kill -KILL 1; echo kill-KILL=$? >> results\n\
        kill -STOP 1; echo kill-STOP=$? >> results\n\
        mkdir denied-dir 2>/dev/null; echo mkdir=$? >> results";
    let mut cmd = Command::new(require("unshare"));
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(defender())
        .args(["run", "--audit-file"])
        .arg(world.audit_path())
        .arg("--policy")
        .arg(&policy)
        .args(["--", "sh", "-c", script])
        .current_dir(world.dir.path());
    let out = output_within(&mut cmd);
    let results = read(&world, "results");
    assert_eq!(
        results,
        "ppid=1\nkill-KILL=0\nkill-STOP=0\nmkdir=126\n",
        "stderr:\n{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(!world.path("denied-dir").exists());
    // No guard audit (the start-up capability report aside: the test runs as root).
    assert!(
        common::without_capability_report(world.audits_of("defender")).is_empty(),
        "{:?}",
        world.audits()
    );
    assert_eq!(world.audits_of("process").len(), 1, "{:?}", world.audits());
}

// ---- the other subcommands ----

/// Only `run` keeps its signals blocked: `policy check`, reading a policy from a pipe that never
/// ends, dies of a TERM like any program.
#[test]
fn other_subcommands_get_their_signals_back() {
    let mut child = Command::new(defender())
        .args(["policy", "check", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // It waits in read(2) on the pipe (state S) once its mask is back to the test's.
    let waiting = wait_until(HANG_GUARD, || {
        proc_status(pid, "State").is_some_and(|s| s.starts_with('S'))
            && proc_status(pid, "SigBlk").as_deref() != Some(ALL_BLOCKED)
    });
    assert!(waiting, "{:?}", proc_status(pid, "SigBlk"));
    kill(pid, Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

/// `pidfd_send_signal(N, SIGSTOP)` in a loop while another thread flips descriptor N between a
/// pidfd of a harmless child and the supervisor's /proc directory: the supervisor judges and
/// performs each call on its own duplicate, so the child's stops go through, the supervisor's are
/// refused and audited, and none ever reaches it (it would hang the test).
#[test]
fn a_descriptor_swapped_under_pidfd_send_signal_never_reaches_the_supervisor() {
    let world = World::new();
    let policy = world.policy(&process_policy(
        "no-mkdir",
        r#"{"effect": "prevent", "deny": ["mkdir"]}"#,
    ));
    let script = format!(
        "'{}' pidfd-swap $PPID 2000 > swap.out\n\
         mkdir denied-dir 2>/dev/null; echo mkdir=$? >> swap.out",
        test_program("attack_signals").display()
    );
    let out = output_within(&mut world.command(Some(&policy), &[], &["sh", "-c", &script]));
    let result = read(&world, "swap.out");
    assert_eq!(out.status.code(), Some(0), "{result}\n{}", stderr(&out));
    let count = |key: &str| -> u64 {
        result
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {result:?}"))
    };
    let (sent, refused) = (count("sent"), count("refused"));
    assert!(sent > 0 && refused > 0, "both targets were hit: {result}");
    assert_eq!(count("other"), 0, "{result}");
    assert_eq!(
        count("mkdir"),
        126,
        "the supervisor still enforces: {result}"
    );
    let audited: u64 = world
        .audits_of("defender")
        .iter()
        .filter(|e| e["effect"] == "prevent")
        .map(|e| e["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(audited, refused, "{:?}", world.audits_of("defender"));
}

// ---- thread ids and the C libraries' internal signals ----

/// The defender's other threads (the DNS forwarder's, those that perform calls) are named by
/// their thread ids: `kill`, `rt_sigqueueinfo`, `prlimit64` of such an id act on the whole
/// defender. Each is refused; `F_SETSIG` of a C library's internal signal (32: glibc's thread
/// cancellation, which the C library's threads unblock) is refused, and those signals, sent from
/// outside, leave the defender running (it ignores them).
#[test]
fn a_thread_id_of_the_defender_is_the_defender() {
    let world = World::new();
    let policy = world.policy(
        r#"{"rules":[{"name":"net","processes":{"effect":"prevent","deny":["mkdir"]},"network":{"effect":"prevent","outbound":{"deny":["203.0.113.0/24"]}}}]}"#,
    );
    let script = r#"
import errno, fcntl, os, signal, subprocess
ppid = os.getppid()
tids = [int(t) for t in os.listdir(f"/proc/{ppid}/task") if int(t) != ppid]
out = [f"threads={len(tids)}"]
def attempt(name, f):
    try:
        f()
        out.append(f"{name}=ok")
    except OSError as e:
        out.append(f"{name}={errno.errorcode[e.errno]}")
for t in tids:
    attempt("stop", lambda: os.kill(t, signal.SIGSTOP))
    attempt("kill", lambda: os.kill(t, signal.SIGKILL))
    attempt("prlimit", lambda: __import__("resource").prlimit(t, __import__("resource").RLIMIT_FSIZE, (1, 1)))
r, w = os.pipe()
attempt("setown", lambda: fcntl.fcntl(r, 8, ppid))
attempt("setsig32", lambda: fcntl.fcntl(r, 10, 32))
open("ready", "w").close()
while not os.path.exists("go"):
    os.sched_yield()
attempt("mkdir", lambda: subprocess.call(["mkdir", "denied-dir"]))
print(" ".join(out))
"#;
    let mut cmd = world.command(
        Some(&policy),
        &[],
        &[require("python3").to_str().unwrap(), "-c", script],
    );
    let child = wait_for_file(&world, spawn_piped(&mut cmd), "ready");
    // From outside: the C libraries' internal signals, which no C library lets a program block.
    let supervisor = supervisor_of(child.id() as i32);
    for sig in ["32", "33", "34"] {
        for pid in [supervisor, child.id() as i32] {
            let st = Command::new(require("kill"))
                .args(["-s", sig, &pid.to_string()])
                .status()
                .unwrap();
            assert!(st.success(), "kill -s {sig} {pid}");
        }
    }
    std::fs::write(world.path("go"), "").unwrap();
    let out = finish_within(child, HANG_GUARD);
    let line = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !line.contains("threads=0"),
        "the defender has threads to aim at: {line}"
    );
    for attack in ["stop", "kill", "prlimit", "setsig32"] {
        assert!(
            line.contains(&format!("{attack}=EPERM")),
            "{attack}: {line}"
        );
        assert!(!line.contains(&format!("{attack}=ok")), "{attack}: {line}");
    }
    // Still enforcing after all of it.
    assert!(line.contains("mkdir=EPERM"), "{line}");
    assert!(!world.path("denied-dir").exists());
    let refusals = world
        .audits_of("defender")
        .into_iter()
        .filter(|e| e["effect"] == "prevent")
        .count();
    assert!(refusals >= 4, "{:?}", world.audits());
}
