//! PID-1 duties of `defender run` (docs/pid1.md; docs/cli.md, "Exit status"), driven through the
//! real binary around real programs: exit statuses pass through, signals sent to the defender reach
//! the command, orphans are reaped, leftovers (those that called `setsid` too) get TERM then KILL
//! after the grace period, the command has the terminal's foreground, and the command's stdout is
//! untouched by the defender's own output.
//!
//! Every wait is bounded by a generous guard (`common::HANG_GUARD`) that turns a hang into a failure;
//! no test measures time.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::Pid;

/// `defender run` (default policy, audits to the world's file) around `sh -c SCRIPT`, run in the
/// world's directory, with default dispositions for every signal a test sends.
fn sh(world: &World, extra: &[&str], script: &str) -> Command {
    let mut c = world.command(None, extra, &["sh", "-c", script]);
    default_dispositions(&mut c);
    c
}

/// A shell ignores signals that were ignored when it started (POSIX), and `cargo test` run from a
/// non-interactive script in the background inherits SIGINT and SIGQUIT ignored. A container's PID 1
/// starts with default dispositions, so give the defender (and through it the command) those.
fn default_dispositions(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls signal(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        c.pre_exec(|| {
            for s in [
                Signal::SIGHUP,
                Signal::SIGINT,
                Signal::SIGQUIT,
                Signal::SIGTERM,
                Signal::SIGUSR1,
                Signal::SIGUSR2,
                Signal::SIGWINCH,
            ] {
                signal::signal(s, SigHandler::SigDfl).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

fn read(world: &World, file: &str) -> String {
    std::fs::read_to_string(world.path(file)).unwrap_or_default()
}

/// The full command line of a process, NULs as spaces; empty if it is gone.
fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// Processes whose command line mentions `marker` (a path unique to one test's directory).
fn processes_mentioning(marker: &Path) -> Vec<(i32, String)> {
    let marker = marker.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .map(|p| (p, cmdline(p)))
        .filter(|(_, c)| c.contains(&marker))
        .collect()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

// ---- exit statuses ----

#[test]
fn exit_codes_pass_through() {
    let world = World::new();
    for n in [0, 1, 2, 7, 42, 126, 127, 128, 200, 255] {
        let out = output_within(&mut sh(&world, &[], &format!("exit {n}")));
        assert_eq!(
            code(&out),
            Some(n),
            "`sh -c 'exit {n}'`: stderr:\n{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_the_signal() {
    let world = World::new();
    // Real-time signals too, which have numbers but no names in every library (34: 162).
    for (sig, want) in [("KILL", 137), ("SEGV", 139), ("TERM", 143), ("s 34", 162)] {
        let out = output_within(&mut sh(&world, &[], &format!("kill -{sig} $$")));
        assert_eq!(
            code(&out),
            Some(want),
            "`sh -c 'kill -{sig} $$'`: stderr:\n{}",
            stderr(&out)
        );
    }
}

// ---- signal forwarding ----

/// Sends `sig` to the defender once the command has its trap in place. The trap records that the
/// command got the signal, then re-raises it with the default action, so the command dies of it.
/// Returns the defender's output and what the trap recorded.
fn send_to_defender(sig: Signal, trap_action: &str) -> (Output, String) {
    let world = World::new();
    let name = sig.as_str().trim_start_matches("SIG");
    let script = format!(
        "trap 'echo got-{name} >> received; {trap_action}' {name}\n\
         touch ready\n\
         while :; do sleep 0.1; done"
    );
    let child = spawn_piped(&mut sh(&world, &[], &script));
    let child = wait_for_file(&world, child, "ready");
    signal::kill(Pid::from_raw(child.id() as i32), sig).expect("signal the defender");
    let out = finish_within(child, HANG_GUARD);
    (out, read(&world, "received"))
}

fn signal_reaches_command(sig: Signal, want: i32) {
    let name = sig.as_str().trim_start_matches("SIG");
    let (out, received) = send_to_defender(sig, &format!("trap - {name}; kill -{name} $$"));
    assert_eq!(
        received.trim(),
        format!("got-{name}"),
        "the command's {name} trap did not run (signal not forwarded?); defender status {:?}, stderr:\n{}",
        out.status,
        stderr(&out)
    );
    assert_eq!(code(&out), Some(want), "{name}: stderr:\n{}", stderr(&out));
}

#[test]
fn term_reaches_the_command() {
    signal_reaches_command(Signal::SIGTERM, 143);
}

#[test]
fn usr1_reaches_the_command() {
    signal_reaches_command(Signal::SIGUSR1, 138);
}

#[test]
fn usr2_reaches_the_command() {
    signal_reaches_command(Signal::SIGUSR2, 140);
}

#[test]
fn hup_reaches_the_command() {
    signal_reaches_command(Signal::SIGHUP, 129);
}

#[test]
fn int_reaches_the_command() {
    signal_reaches_command(Signal::SIGINT, 130);
}

#[test]
fn quit_reaches_the_command() {
    signal_reaches_command(Signal::SIGQUIT, 131);
}

/// WINCH is ignored by default, so the command traps it and exits with a code of its own.
#[test]
fn winch_reaches_the_command() {
    let (out, received) = send_to_defender(Signal::SIGWINCH, "exit 3");
    assert_eq!(
        received.trim(),
        "got-WINCH",
        "WINCH not forwarded; stderr:\n{}",
        stderr(&out)
    );
    assert_eq!(code(&out), Some(3), "stderr:\n{}", stderr(&out));
}

/// The classic init test: `exec sleep 60` gets TERM and dies of it.
#[test]
fn term_kills_an_execed_sleep() {
    let world = World::new();
    let child = spawn_piped(&mut sh(&world, &[], "touch ready; exec sleep 60"));
    let child = wait_for_file(&world, child, "ready");
    let defender = child.id() as i32;
    // Wait until the command is `sleep` itself, not the shell about to exec it. (The process
    // started is the keeper when not PID 1; the command is its grandchild.)
    let is_sleep = || {
        descendants(defender).iter().any(|&c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .is_ok_and(|comm| comm.trim() == "sleep")
        })
    };
    assert!(
        wait_until(HANG_GUARD, is_sleep),
        "the command never became `sleep`"
    );
    signal::kill(Pid::from_raw(defender), Signal::SIGTERM).unwrap();
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(code(&out), Some(143), "stderr:\n{}", stderr(&out));
}

// ---- reaping ----

/// Orphans are reparented to the defender (a child subreaper when not PID 1), which must reap them.
/// Each orphan waits until its parent *is* the defender before it exits, so without reaping each
/// would certainly stay a zombie child of the defender while the command keeps running.
#[test]
fn orphaned_grandchildren_are_reaped() {
    const ORPHANS: usize = 5;
    let world = World::new();
    // orphan.sh DEFENDER_PID: waits (bounded) to be reparented to the defender, records its pid, exits.
    std::fs::write(
        world.path("orphan.sh"),
        "n=0\n\
         while [ \"$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$$/status)\" != \"$1\" ]; do\n\
         \x20 n=$((n + 1)); if [ $n -gt 600 ]; then echo \"$$ never reparented to $1\" >> orphans.err; exit 1; fi\n\
         \x20 sleep 0.05\n\
         done\n\
         echo $$ >> orphans\n",
    )
    .unwrap();
    // The subshell starts orphan.sh in the background and exits at once: orphan.sh is orphaned.
    let script = format!(
        "for i in $(seq {ORPHANS}); do ( sh ./orphan.sh \"$PPID\" & ); done\n\
         while [ ! -e done ]; do sleep 0.1; done"
    );
    let child = spawn_piped(&mut sh(&world, &[], &script));
    let defender = supervisor_of(child.id() as i32);

    let recorded =
        || read(&world, "orphans").lines().count() >= ORPHANS || world.path("orphans.err").exists();
    let all_recorded = wait_until(HANG_GUARD, recorded);
    let orphans: Vec<i32> = read(&world, "orphans")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();

    // While the defender still runs (the command waits for `done`): no zombie child is left.
    let zombies = || {
        children_of(defender)
            .into_iter()
            .filter(|&c| proc_status(c, "State").is_some_and(|s| s.starts_with('Z')))
            .collect::<Vec<_>>()
    };
    let defender_ppid = defender.to_string();
    let orphan_left = || {
        orphans
            .iter()
            .copied()
            .filter(|&o| proc_status(o, "PPid").as_deref() == Some(defender_ppid.as_str()))
            .collect::<Vec<_>>()
    };
    let reaped = wait_until(Duration::from_secs(10), || {
        zombies().is_empty() && orphan_left().is_empty()
    });
    let (left_zombies, left_orphans) = (zombies(), orphan_left());

    std::fs::write(world.path("done"), "").unwrap();
    let out = finish_within(child, HANG_GUARD);
    assert!(
        all_recorded && !world.path("orphans.err").exists(),
        "the orphans were not all reparented to the defender ({orphans:?}); {}; defender stderr:\n{}",
        read(&world, "orphans.err"),
        stderr(&out)
    );
    assert_eq!(orphans.len(), ORPHANS);
    assert!(
        reaped,
        "zombies left under the defender (pid {defender}): zombie children {left_zombies:?}, orphans still its children {left_orphans:?}"
    );
    assert_eq!(code(&out), Some(0), "stderr:\n{}", stderr(&out));
}

// ---- leftovers when the command exits ----

/// The command leaves a background process that ignores TERM (its trap only logs): it gets TERM,
/// then KILL once the grace period is over, and the defender exits with the command's status only
/// once it is gone.
#[test]
fn leftovers_get_term_then_kill_after_the_grace_period() {
    stubborn_leftover("");
}

/// The same for a leftover that called `setsid`: a session and process group of its own do not
/// hide it (the defender finds its descendants through /proc).
#[test]
fn leftovers_that_called_setsid_get_term_then_kill_too() {
    let world = stubborn_leftover("setsid");
    let sid = |file| read(&world, file).trim().to_owned();
    assert!(
        !sid("bg.sid").is_empty(),
        "the leftover recorded no session"
    );
    assert_ne!(
        sid("bg.sid"),
        sid("command.sid"),
        "the leftover is still in the command's session"
    );
}

/// A leftover started with `launch` (a prefix such as `setsid`) that ignores TERM: checks that
/// it got TERM, then KILL, before the defender exited with the command's status; returns the
/// world, whose `bg.sid` and `command.sid` name the sessions of the leftover and the command.
fn stubborn_leftover(launch: &str) -> World {
    let world = World::new();
    let bg = world.path("stubborn.sh");
    // Field 6 of /proc/PID/stat is the session (the command name, field 2, is `sh`: no spaces).
    std::fs::write(
        &bg,
        "trap 'echo got-term >> term-log' TERM\n\
         echo $$ > bg.pid\n\
         cut -d' ' -f6 /proc/$$/stat > bg.sid\n\
         touch bg.ready\n\
         while :; do sleep 0.1; done\n",
    )
    .unwrap();
    let script = format!(
        "cut -d' ' -f6 /proc/$$/stat > command.sid\n\
         {launch} sh '{}' &\n\
         while [ ! -e bg.ready ]; do sleep 0.05; done\n\
         exit 7",
        bg.display()
    );
    let out = output_within(&mut sh(&world, &["--grace-period", "1"], &script));
    assert_eq!(
        code(&out),
        Some(7),
        "the command's status; stderr:\n{}",
        stderr(&out)
    );
    assert!(
        read(&world, "term-log").contains("got-term"),
        "the leftover never got TERM; stderr:\n{}",
        stderr(&out)
    );
    // Checked at once: the defender must not exit before its leftovers are gone.
    let pid: i32 = read(&world, "bg.pid").trim().parse().expect("bg.pid");
    assert!(
        !cmdline(pid).contains(&*bg.to_string_lossy()),
        "the leftover (pid {pid}) survived the defender: {}",
        cmdline(pid)
    );
    let survivors = processes_mentioning(world.dir.path());
    assert!(
        survivors.is_empty(),
        "processes of the test survived the defender: {survivors:?}"
    );
    world
}

/// A leftover that exits on TERM lets the defender exit at once, not after the grace period (60 s
/// here, longer than the hang guard).
#[test]
fn leftovers_that_exit_on_term_end_the_grace_period_early() {
    let world = World::new();
    let bg = world.path("polite.sh");
    std::fs::write(
        &bg,
        "trap 'echo got-term >> term-log; exit 0' TERM\n\
         touch bg.ready\n\
         while :; do sleep 0.1; done\n",
    )
    .unwrap();
    let script = format!(
        "sh '{}' &\n\
         while [ ! -e bg.ready ]; do sleep 0.05; done\n\
         exit 7",
        bg.display()
    );
    let child = spawn_piped(&mut sh(&world, &["--grace-period", "60"], &script));
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(code(&out), Some(7), "stderr:\n{}", stderr(&out));
    assert!(
        read(&world, "term-log").contains("got-term"),
        "the leftover never got TERM"
    );
    let survivors = processes_mentioning(world.dir.path());
    assert!(
        survivors.is_empty(),
        "processes of the test survived the defender: {survivors:?}"
    );
}

// ---- stdout belongs to the command ----

/// `defender run --log-level debug` with audits going to stderr (no `--audit-file`), so the
/// defender has plenty of its own to say.
fn chatty(world: &World, script: &str) -> Command {
    let mut c = Command::new(defender());
    c.args([
        "run",
        "--log-level",
        "debug",
        "--container",
        "test-container",
        "--",
        "sh",
        "-c",
        script,
    ])
    .current_dir(world.dir.path());
    for var in [
        "DEFENDER_POLICY",
        "DEFENDER_CONSOLE",
        "DEFENDER_AUDIT_FILE",
        "DEFENDER_LOG",
    ] {
        c.env_remove(var);
    }
    c
}

/// Copies /bin/true into the world as `nmap`, a tool the default policy alerts on.
fn fake_nmap(world: &World) {
    std::fs::copy(require("true"), world.path("nmap")).unwrap();
}

#[test]
fn stdout_passes_through_byte_exact() {
    let world = World::new();
    fake_nmap(&world);
    // Random bytes, with an audited launch in the middle so the defender writes an audit event.
    let script = "head -c 100000 /dev/urandom > data; ./nmap; cat data";
    let out = output_within(&mut chatty(&world, script));
    assert_eq!(code(&out), Some(0), "stderr:\n{}", stderr(&out));
    let data = std::fs::read(world.path("data")).unwrap();
    assert_eq!(data.len(), 100_000);
    assert!(
        out.stdout == data,
        "stdout differs from the command's output ({} bytes vs {})",
        out.stdout.len(),
        data.len()
    );
    // The defender did speak, on stderr.
    let err = stderr(&out);
    assert!(
        err.contains("defender: "),
        "no diagnostics on stderr at debug level:\n{err}"
    );
    assert!(
        err.contains("processExplicitlyDenied"),
        "no audit event on stderr:\n{err}"
    );
}

#[test]
fn binary_stdout_passes_through_and_nothing_of_the_defender_joins_it() {
    let world = World::new();
    fake_nmap(&world);
    let script = r"./nmap; printf 'a\000b\377\r\n\033[0m no newline at the end'";
    let out = output_within(&mut chatty(&world, script));
    assert_eq!(code(&out), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(
        out.stdout,
        b"a\0b\xff\r\n\x1b[0m no newline at the end",
        "stderr:\n{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("processExplicitlyDenied"),
        "no audit event on stderr:\n{}",
        stderr(&out)
    );

    // And a command that prints nothing leaves stdout empty.
    let out = output_within(&mut chatty(&world, "./nmap"));
    assert_eq!(code(&out), Some(0), "stderr:\n{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "the defender wrote to stdout: {:?}",
        stdout(&out)
    );
}

/// On a terminal (a pty from `script`) the command gets a process group of its own and the
/// terminal's foreground (its group is the terminal's, not the defender's): the keys a user types
/// (Ctrl-C, Ctrl-Z) signal the command's group, and it may read the terminal.
#[test]
fn on_a_terminal_the_command_is_the_foreground_process_group() {
    let world = World::new();
    // Fields of /proc/PID/stat: pid, comm (`sh`, no spaces), state, ppid, pgrp, session, tty,
    // tpgid (the terminal's foreground group). The command's parent is the supervisor.
    let report = "read -r pid comm state ppid pgrp session tty tpgid rest < /proc/$$/stat; \
        read -r p c s pp parent_pgrp rest < /proc/$PPID/stat; \
        echo \"pid=$pid pgrp=$pgrp tpgid=$tpgid parent_pgrp=$parent_pgrp\"";
    let line = format!(
        "{} run --audit-file '{}' -- sh -c '{report}'",
        defender().display(),
        world.audit_path().display()
    );
    let out = output_within(Command::new(require("script")).args(["-qfec", &line, "/dev/null"]));
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let field = |name: &str| -> i64 {
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text:?}"))
    };
    let (pid, pgrp, tpgid, parent_pgrp) = (
        field("pid"),
        field("pgrp"),
        field("tpgid"),
        field("parent_pgrp"),
    );
    assert_eq!(pgrp, pid, "the command leads a group of its own: {text}");
    assert_ne!(
        parent_pgrp, pgrp,
        "the defender is in another group: {text}"
    );
    assert_eq!(tpgid, pgrp, "the command's group has the terminal: {text}");
}

/// The Rust runtime ignores SIGPIPE; the command must get it back at its default, as from any init.
#[test]
fn the_command_does_not_inherit_the_defenders_ignored_sigpipe() {
    let w = World::new();
    let out = w.run(
        r#"{"rules": []}"#,
        &["sh", "-c", "grep SigIgn /proc/self/status"],
    );
    let text = stdout(&out);
    let mask = text
        .trim()
        .strip_prefix("SigIgn:\t")
        .and_then(|m| u64::from_str_radix(m, 16).ok());
    let sigpipe = 1u64 << (Signal::SIGPIPE as i32 - 1);
    // This test process ignores SIGPIPE itself (Rust); what else it ignores passes on, as it should.
    assert_eq!(
        mask.map(|m| m & sigpipe),
        Some(0),
        "SIGPIPE ignored in the command: {text}"
    );
}

/// The console token is the defender's secret (`DEFENDER_TOKEN`, docs/cli.md): the command's environment
/// does not carry it, while the rest of the environment passes unchanged. The console named here
/// does not answer (a closed port), so the defender starts on its fallback policy at once.
#[test]
fn the_console_token_is_withheld_from_the_command() {
    let world = World::new();
    let state = world.path("state");
    let mut c = world.command(
        None,
        &["--state-dir", state.to_str().unwrap()],
        &[
            "sh",
            "-c",
            "echo \"token=${DEFENDER_TOKEN-unset} other=${OTHER-unset}\"",
        ],
    );
    c.env("DEFENDER_CONSOLE", "http://127.0.0.1:1")
        .env("DEFENDER_TOKEN", "s3cr3t")
        .env("OTHER", "kept");
    let out = output_within(&mut c);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "token=unset other=kept\n");
}

/// An empty container or image name (`DEFENDER_CONTAINER=` in a task definition) counts as none:
/// events name the container by the next source (the hostname here), never "".
#[test]
fn empty_names_fall_back_to_the_next_source() {
    let world = World::new();
    let policy = world.policy(&process_policy(
        "no-mkdir",
        r#"{"effect": "prevent", "deny": ["mkdir"]}"#,
    ));
    let target = world.path("d");
    let mut c = world.unnamed_command(
        Some(&policy),
        &[],
        &["/bin/mkdir", target.to_str().unwrap()],
    );
    c.env("DEFENDER_CONTAINER", "").env("DEFENDER_IMAGE", " ");
    let out = output_within(&mut c);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    let events = world.audits_of("process");
    assert_eq!(events.len(), 1, "{events:?}");
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(events[0]["container"], host.as_str());
    assert_eq!(events[0]["image"], "unknown");
}
