//! Custom rules end to end (issue 11): the real `defender` binary around real programs, under
//! policies whose runtime rule switches on custom rules of the document's library. Proves, for
//! each event type, that the facts a script reads are the ones the contract names and are read
//! before the call goes on:
//! - a launch is judged on its whole command line (5 MB of it, or the kernel's own E2BIG/EFAULT)
//!   before it runs, through every exec path (execveat, fexecve, memfd, /proc/self/fd, i386), a
//!   link by its name and real path, a script as itself and as its interpreter; arguments swapped
//!   or the terminal given up after the check are caught at the exec stop and killed
//!   (`exec_helper race-argv`, `race-setsid`);
//! - the launching program (`proc.pname`, `proc.ppath`), users named from the container's
//!   `/etc/passwd` as it was at start, a terminal (`proc.interactive`);
//! - connects and sends by address (CIDR, `in`), port, protocol and the calling program's facts;
//!   binds by port; DNS questions through the forwarder (UDP and TCP, facts kept from the
//!   connect) and musl's `sendto`; raw sockets, io_uring and i386 socket calls closed under custom
//!   rules alone; a malformed DNS message refused.
//!
//! `allow` is an exception to a section, the first true reference decides, `disable` switches a
//! reference off, `alert`/`prevent`/`block` act as for sections, and every verdict is audited
//! with `attack: customRule` and the custom rule's name (or its own message); repeated denials
//! fold. The grammar's precedence is checked through the binary, and policies put on the console
//! with custom rules decide the next launch, connect and lookup of a running command.
//!
//! Debian packages: coreutils, dash, util-linux (setpriv, unshare, nsenter, mount), bsdutils
//! (script), python3, libc-bin (getent), curl, dnsutils (dig), dnsmasq-base, iproute2; the musl
//! resolver client (`cargo build --release --target x86_64-unknown-linux-musl -p
//! defender-test-programs --bin resolve`, .ci/run).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::console::{self, Console};
use common::networld::{
    BLOCKED_EXIT, DENIED_IP, NAMESERVER, NetWorld, WEB, WEB6, assert_blocked, musl_test_program,
};
use common::{
    HANG_GUARD, RaceTally, World, finish_within, race_until_killed, require, spawn_piped, stderr,
    stdout, test_program, wait_until, without_capability_report,
};
use serde_json::{Value, json};

/// The runtime rule's name in every policy of this file.
const RULE: &str = "r";

/// PATH for every command: the system's tools only, the same on every machine.
const SYSTEM_PATH: &str = "/usr/bin:/bin";

/// What a shell prints when an exec fails with EPERM.
const EPERM_TEXT: &str = "Operation not permitted";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A custom rule of the library.
fn custom(name: &str, kind: &str, script: &str) -> Value {
    json!({"name": name, "type": kind, "script": script})
}

/// A policy with the custom rules `library` and one rule, named [`RULE`], that references
/// `references` (name, effect) in order, with `sections` (a JSON object: `processes`, `dns`, ...)
/// besides.
fn policy(library: &[Value], references: &[(&str, &str)], sections: Value) -> String {
    let refs: Vec<Value> = references
        .iter()
        .map(|(name, effect)| json!({"name": name, "effect": effect}))
        .collect();
    let mut rule = json!({"name": RULE, "customRules": refs});
    for (k, v) in sections.as_object().expect("sections").iter() {
        rule[k] = v.clone();
    }
    json!({"customRules": library, "rules": [rule]}).to_string()
}

/// Every reference with the same effect, no section.
fn all(library: &[Value], effect: &str) -> String {
    let names: Vec<(&str, &str)> = library
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), effect))
        .collect();
    policy(library, &names, json!({}))
}

/// Takes the controlling terminal away from the defender and its command (a new session), so that
/// `proc.interactive` is false unless a test gives the command a terminal (`script`), whatever
/// the terminal the tests were started from.
fn without_terminal(c: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which is
    // async-signal-safe; it touches no lock or allocation of the parent.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        })
    }
}

/// `defender run` under `policy` with PATH set to SYSTEM_PATH and no terminal.
fn run(w: &World, policy: &str, command: &[&str]) -> Output {
    let p = w.policy(policy);
    let mut c = w.command(Some(&p), &[], command);
    c.env("PATH", SYSTEM_PATH).env("SHELL", "/bin/sh");
    common::output_within(without_terminal(&mut c))
}

/// `sh -c SCRIPT` under the defender.
fn run_sh(w: &World, policy: &str, script: &str) -> Output {
    run(w, policy, &["sh", "-c", script])
}

fn canon(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
        .display()
        .to_string()
}

/// The first `dir/name` on SYSTEM_PATH, as a shell searching PATH executes it.
fn which(name: &str) -> String {
    SYSTEM_PATH
        .split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("{name} is not on {SYSTEM_PATH}"))
}

/// The world's directory as the kernel names it.
fn root(w: &World) -> String {
    canon(w.dir.path())
}

/// Copies a program into the world under another name (a file of its own).
fn copy_exe(w: &World, from: impl AsRef<Path>, to: &str) -> PathBuf {
    let dest = w.path(to);
    fs::copy(from.as_ref(), &dest).unwrap();
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
    dest
}

fn script(w: &World, name: &str, text: &str) -> PathBuf {
    let p = w.path(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Everything worth seeing when an assertion fails.
fn show(w: &World, o: &Output) -> String {
    format!(
        "status: {:?}\nstdout: {}\nstderr: {}\naudits: {}",
        o.status,
        stdout(o),
        stderr(o),
        fs::read_to_string(w.audit_path()).unwrap_or_else(|_| "(no audit file)".into())
    )
}

/// The `KEY=VALUE` lines a test script echoed, as a map (a terminal's `\r` left out).
fn echoed(o: &Output) -> std::collections::BTreeMap<String, String> {
    stdout(o)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_end_matches('\r').to_owned()))
        .collect()
}

/// The script echoed `KEY=VALUE` for each of `want` (exit statuses: 126 is a refused exec).
fn expect(w: &World, o: &Output, want: &[(&str, &str)]) {
    let got = echoed(o);
    let wrong: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}={:?}, want {v}", got.get(*k)))
        .collect();
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("; "), show(w, o));
}

/// The `process` audits; asserts there are exactly `n`.
fn process_audits(w: &World, o: &Output, n: usize) -> Vec<Value> {
    let a = w.audits_of("process");
    assert_eq!(a.len(), n, "expected {n} process audit(s)\n{}", show(w, o));
    a
}

fn str_of<'a>(e: &'a Value, field: &str) -> &'a str {
    e[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {e}"))
}

/// The fields of an event of any type that a custom rule decided (docs/audit.md).
fn check_custom_event(e: &Value, kind: &str, effect: &str, custom_rule: &str) {
    assert_eq!(e["type"], kind, "{e}");
    assert_eq!(e["effect"], effect, "{e}");
    assert_eq!(e["attack"], "customRule", "{e}");
    assert_eq!(e["customRule"], custom_rule, "{e}");
    assert_eq!(e["rule"], RULE, "{e}");
    assert_eq!(e["container"], "test-container", "{e}");
    assert_eq!(e["image"], "test/image:1", "{e}");
    assert_eq!(e["count"], 1, "{e}");
    assert!(e["pid"].as_u64().is_some_and(|p| p > 1), "pid: {e}");
}

/// A launch decided by custom rule `name` without a message of its own: the launched file, the
/// launching program, the command line, and the default message naming the rule.
fn check_custom_launch(
    e: &Value,
    effect: &str,
    name: &str,
    process: &str,
    parent: &str,
    cmdline: &str,
) {
    check_custom_event(e, "process", effect, name);
    assert_eq!(str_of(e, "process"), process, "{e}");
    assert_eq!(str_of(e, "parent"), parent, "{e}");
    assert_eq!(str_of(e, "cmdline"), cmdline, "{e}");
    assert_eq!(
        str_of(e, "message"),
        format!(
            "{process} launched from {parent} matched custom rule \"{name}\". Full command: {cmdline}"
        ),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. A launch judged on its arguments, before it runs
// ---------------------------------------------------------------------------------------------

#[test]
fn a_launch_is_prevented_by_its_arguments_alone_before_it_runs() {
    let w = World::new();
    let r = root(&w);
    let library = [custom(
        "forbidden touch",
        "processes",
        r#"proc.name = "touch" and proc.cmdline contains "forbidden""#,
    )];
    let o = run_sh(
        &w,
        &all(&library, "prevent"),
        &format!("touch {r}/forbidden; echo a=$?; touch {r}/fine; echo b=$?"),
    );
    expect(&w, &o, &[("a", "126"), ("b", "0")]);
    assert!(stderr(&o).contains(EPERM_TEXT), "{}", show(&w, &o));
    assert!(
        !w.path("forbidden").exists(),
        "touch ran with the forbidden argument"
    );
    assert!(w.path("fine").exists(), "touch of another file must work");

    let a = process_audits(&w, &o, 1);
    check_custom_launch(
        &a[0],
        "prevent",
        "forbidden touch",
        &which("touch"),
        &canon("/bin/sh"),
        &format!("touch {r}/forbidden"),
    );
}

/// 100 KiB, the size of each padding argument of the long command lines below: under the
/// kernel's MAX_ARG_STRLEN (128 KiB) for one string.
const PAD: usize = 100 * 1024;

#[test]
fn a_long_command_line_is_judged_whole() {
    // `proc.cmdline contains " -l"` must not be bypassed by putting ` -l` after 1.2 MB of
    // arguments: the supervisor reads the whole argv, up to the kernel's own limits.
    let w = World::new();
    let library = [custom(
        "listener",
        "processes",
        r#"proc.name = "true" and proc.cmdline contains " -l""#,
    )];
    let pad = "x".repeat(PAD);
    let mut command = vec![
        "sh",
        "-c",
        r#"/bin/true "$@" -l; echo a=$?; /bin/true "$@"; echo b=$?"#,
        "sh",
    ];
    command.extend(std::iter::repeat_n(pad.as_str(), 12));
    let o = run(&w, &all(&library, "prevent"), &command);
    let got = echoed(&o);
    assert_eq!(
        got.get("a").map(String::as_str),
        Some("126"),
        "the -l after 1.2 MB of arguments got through\nstatus {:?}\nstderr: {}",
        o.status,
        stderr(&o)
    );
    assert_eq!(
        got.get("b").map(String::as_str),
        Some("0"),
        "{}",
        stderr(&o)
    );
    let a = w.audits_of("process");
    assert_eq!(a.len(), 1, "{}", stderr(&o));
    check_custom_event(&a[0], "process", "prevent", "listener");
    // The audit's command line is the capped one (each long argument cut), ending as launched.
    let cmdline = str_of(&a[0], "cmdline");
    assert!(
        cmdline.starts_with("/bin/true ") && cmdline.ends_with(" -l"),
        "{}",
        a[0]
    );
}

/// Python raises its stack limit (the kernel then takes up to 6 MiB of argv and environment,
/// fs/exec.c), execs `/bin/true` with 50 arguments of 100 KiB and its own arguments after them,
/// and prints how that ended: `status=0`, or 100 + the errno.
const HUGE_ARGV: &str = r#"
import os, resource, sys
resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
args = ["true"] + ["x" * 100 * 1024] * 50 + sys.argv[1:]
pid = os.fork()
if pid == 0:
    try:
        os.execv("/bin/true", args)
    except OSError as e:
        os._exit(100 + e.errno)
print("status=%d" % os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;

#[test]
fn a_five_megabyte_command_line_is_judged_whole() {
    let library = [custom(
        "listener",
        "processes",
        r#"proc.name = "true" and proc.cmdline contains " -l""#,
    )];
    for (args, want) in [(&["-l"][..], 100 + libc::EPERM), (&[][..], 0)] {
        let mut command = vec!["/usr/bin/python3", "-c", HUGE_ARGV, "python"];
        command.extend(args);
        let native = Command::new(command[0])
            .args(&command[1..])
            .output()
            .unwrap();
        assert_eq!(stdout(&native).trim(), "status=0", "natively: {native:?}");
        let w = World::new();
        let o = run(&w, &all(&library, "prevent"), &command);
        assert_eq!(
            stdout(&o).trim(),
            format!("status={want}"),
            "{args:?}\nstderr: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_command_line_beyond_the_kernels_limit_fails_with_e2big_as_natively() {
    // 70 arguments of 100 KiB: more than the kernel takes for argv and envp (at most 3/4 of
    // 8 MiB, fs/exec.c), so the exec fails natively with E2BIG. Under a rule reading
    // `proc.cmdline` it must fail the same way: not EPERM, not run, nothing judged on a truncation.
    let w = World::new();
    let program = format!(
        "import os\ntry:\n    os.execv('/bin/true', ['true'] + ['x' * {PAD}] * 70 + ['-l'])\n\
         except OSError as e:\n    print('errno=%d' % e.errno)\n"
    );
    let native = Command::new("/usr/bin/python3")
        .args(["-c", &program])
        .output()
        .unwrap();
    assert_eq!(stdout(&native).trim(), format!("errno={}", libc::E2BIG));
    let library = [custom(
        "listener",
        "processes",
        r#"proc.name = "true" and proc.cmdline contains " -l""#,
    )];
    let o = run(
        &w,
        &all(&library, "prevent"),
        &["/usr/bin/python3", "-c", &program],
    );
    assert_eq!(
        stdout(&o).trim(),
        format!("errno={}", libc::E2BIG),
        "{}",
        show(&w, &o)
    );
}

/// Python execs `/bin/true` with an argv the kernel refuses, and prints the errno it got.
const BAD_ARGV: &str = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if sys.argv[1] == "long":
    argv = (ctypes.c_char_p * 3)(b"true", b"x" * (200 * 1024), None)
else:
    argv = (ctypes.c_void_p * 3)(ctypes.cast(ctypes.c_char_p(b"true"), ctypes.c_void_p).value, 8, None)
libc.execve(b"/bin/true", argv, None)
print("errno=%d" % ctypes.get_errno())
"#;

#[test]
fn an_argument_the_kernel_would_refuse_gets_the_kernels_errno() {
    // One argument over MAX_ARG_STRLEN (128 KiB): E2BIG; a pointer to nothing in argv: EFAULT.
    // Under a rule reading `proc.cmdline`, the same errno, and nothing audited.
    let library = [custom(
        "true",
        "processes",
        r#"proc.name = "true" and proc.cmdline contains "-l""#,
    )];
    for (case, errno) in [("long", libc::E2BIG), ("fault", libc::EFAULT)] {
        let native = Command::new("/usr/bin/python3")
            .args(["-c", BAD_ARGV, case])
            .output()
            .unwrap();
        let want = format!("errno={errno}");
        assert_eq!(stdout(&native).trim(), want, "natively {case}: {native:?}");
        let w = World::new();
        let o = run(
            &w,
            &all(&library, "prevent"),
            &["/usr/bin/python3", "-c", BAD_ARGV, case],
        );
        assert_eq!(stdout(&o).trim(), want, "{case}\n{}", show(&w, &o));
        assert!(
            w.audits_of("process").is_empty(),
            "{case}\n{}",
            show(&w, &o)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Arguments swapped between the check and the exec
// ---------------------------------------------------------------------------------------------

/// How many children one run of `race-argv` forks.
const RACE_ATTEMPTS: u32 = 300;

#[test]
fn race_swapping_an_argument_after_the_check_never_runs_the_forbidden_command() {
    // Each child of `exec_helper race-argv` execve's a program whose one argument another thread
    // flips between `good` (innocent) and `evil` (forbidden by a custom rule on the command
    // line), so the supervisor may decide on `good` and the kernel, copying argv after CONTINUE,
    // start the program with `evil`. Under a custom rule that prevents, the supervisor compares
    // the new program's argv with the one decided on at the exec stop and kills a mismatch
    // before it runs an instruction: `evil` never appears. Tried with a binary (`touch ARG`), a
    // `#!/bin/sh` script (`mark ARG`, whose interpreter gets `/bin/sh PATH ARG`), and the binary
    // under a `processes` allow list that only alerts (the stop's effect is then the custom
    // rule's prevent, stored when the stop was armed, not the section's alert). The runs go on
    // until a child was killed: the proof that the exec-stop check fired.
    for kind in ["binary", "script", "alert list"] {
        let tallies = race_until_killed(kind, || argv_round(kind));
        println!("{kind}: {tallies:?}");
    }
}

/// One run of `race-argv` (see the test above), checked; its tally.
fn argv_round(kind: &str) -> RaceTally {
    let w = World::new();
    let r = root(&w);
    let (path, name, rule) = match kind {
        "binary" | "alert list" => (
            which("touch"),
            "touch",
            r#"proc.name = "touch" and proc.cmdline contains "evil""#,
        ),
        _ => {
            script(&w, "mark", "#!/bin/sh\n: > \"$1\"\n");
            (
                format!("{r}/mark"),
                "mark",
                r#"proc.name = "mark" and proc.cmdline contains "evil""#,
            )
        }
    };
    let library = [custom("no evil", "processes", rule)];
    let sections = match kind {
        "alert list" => {
            json!({"processes": {"effect": "alert", "allow": ["exec_helper", "touch"]}})
        }
        _ => json!({}),
    };
    let helper = test_program("exec_helper");
    let attempts = RACE_ATTEMPTS.to_string();
    let o = run(
        &w,
        &policy(&library, &[("no evil", "prevent")], sections),
        &[
            helper.to_str().unwrap(),
            "race-argv",
            &path,
            "good",
            "evil",
            &attempts,
            name,
            "good",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{kind}: {}", show(&w, &o));
    assert!(
        !w.path("evil").exists(),
        "{kind}: the program ran with the forbidden argument\n{}",
        show(&w, &o)
    );
    let t = RaceTally::parse(&stdout(&o))
        .unwrap_or_else(|| panic!("{kind}: no tally\n{}", show(&w, &o)));
    assert_eq!(t.other, 0, "{kind}: {t:?}\n{}", show(&w, &o));
    assert_eq!(t.ran_allowed + t.killed + t.eperm, RACE_ATTEMPTS, "{t:?}");
    assert!(
        t.killed + t.eperm > 0,
        "{kind}: no exec was ever decided on `evil`: the race did not happen; {t:?}"
    );
    if t.ran_allowed > 0 {
        assert!(w.path("good").exists(), "{kind}: {t:?}");
    }
    // Every refusal and every kill is audited (floods fold into counts), under prevent, naming
    // the forbidden argument.
    let audits = w.audits_of("process");
    let mut audited = 0;
    for a in &audits {
        assert_eq!(a["effect"], "prevent", "{kind}: {a}");
        assert!(
            a["attack"] == "customRule" || a["attack"] == "processNotAllowed",
            "{kind}: {a}"
        );
        // The argument the kernel copied, which the other thread may have been rewriting then:
        // `evil`, or a byte-wise mix of `good` and `evil` (`goil`), never `good` itself.
        let cmdline = str_of(a, "cmdline");
        let arg = cmdline.rsplit(' ').next().unwrap_or_default();
        let torn = arg.len() == 4
            && arg != "good"
            && arg
                .bytes()
                .zip("good".bytes().zip("evil".bytes()))
                .all(|(c, (g, e))| c == g || c == e);
        assert!(torn, "{kind}: {a}");
        audited += a["count"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        audited,
        u64::from(t.killed + t.eperm),
        "{kind}: one audit per refusal and per kill; {t:?}\n{}",
        show(&w, &o)
    );
    assert!(
        t.eperm == 0 || audits.iter().any(|a| a["customRule"] == "no evil"),
        "{kind}: the refusals name the custom rule\n{}",
        show(&w, &o)
    );
    t
}

/// `exec_helper`'s exit status when the exec it tried returned.
const HELPER_EXEC_FAILED: i32 = 111;

#[test]
fn every_exec_path_is_judged_on_its_arguments_and_file() {
    // The exec paths a shell never takes (execveat on an fd or a directory, fexecve, memfd,
    // /proc/self/fd, the i386 ABI with 32-bit argv pointers): `touch` launched through each is
    // judged on its whole command line, by its real path, and (except a memfd copy, which has a
    // name of its own, and /proc/self/fd/N, named `N` as executed) by its file name.
    let touch = which("touch");
    let library = [
        custom(
            "touch args",
            "processes",
            r#"proc.cmdline startswith "touch " and proc.cmdline endswith "/forbidden""#,
        ),
        custom(
            "touch by path",
            "processes",
            &format!(
                r#"proc.path = "{}" and proc.cmdline endswith "/by-path""#,
                canon(&touch)
            ),
        ),
        custom(
            "touch by name",
            "processes",
            r#"proc.name = "touch" and proc.cmdline endswith "/by-name""#,
        ),
    ];
    let p = all(&library, "prevent");
    let helper = test_program("exec_helper");
    let bin = Path::new(&touch)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut failures = Vec::new();
    for sub in [
        "execveat-fd",
        "execveat-opath",
        "fexecve",
        "execveat-dirfd",
        "memfd",
        "proc-fd",
        "int80-execve",
    ] {
        let files: &[(&str, Option<&str>)] = match sub {
            "memfd" => &[("forbidden", Some("touch args")), ("fine", None)],
            // Named as executed (`N`, what its `comm` becomes, docs/exec.md): caught by its path.
            "proc-fd" => &[
                ("forbidden", Some("touch args")),
                ("by-path", Some("touch by path")),
                ("fine", None),
            ],
            _ => &[
                ("forbidden", Some("touch args")),
                ("by-path", Some("touch by path")),
                ("by-name", Some("touch by name")),
                ("fine", None),
            ],
        };
        for (file, verdict) in files {
            let w = World::new();
            let target = format!("{}/{file}", root(&w));
            let mut argv = vec![helper.to_str().unwrap(), sub];
            match sub {
                "execveat-dirfd" => argv.extend([bin.as_str(), "touch"]),
                _ => argv.push(&touch),
            }
            argv.extend(["touch", target.as_str()]);
            let o = run(&w, &p, &argv);
            let made = Path::new(&target).exists();
            let audits = w.audits_of("process");
            let ok = match verdict {
                Some(name) => {
                    !made
                        && o.status.code() == Some(HELPER_EXEC_FAILED)
                        && stderr(&o).contains(&format!("{sub}: errno={} ", libc::EPERM))
                        && audits.len() == 1
                        && audits[0]["customRule"] == *name
                        && audits[0]["cmdline"] == format!("touch {target}")
                }
                None => made && o.status.code() == Some(0) && audits.is_empty(),
            };
            if !ok {
                failures.push(format!(
                    "{sub} touch {file}: want {verdict:?}; made: {made}\n{}",
                    show(&w, &o)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_link_is_named_as_executed_and_pathed_as_resolved() {
    // `innocent` is a symbolic link to touch: `proc.name` is the name executed (`innocent`),
    // `proc.path` the file it resolves to.
    let w = World::new();
    let r = root(&w);
    let touch = canon(which("touch"));
    std::os::unix::fs::symlink(&touch, w.path("innocent")).unwrap();
    let library = [
        custom(
            "by name",
            "processes",
            r#"proc.name = "touch" and proc.cmdline contains "/a""#,
        ),
        custom(
            "by path",
            "processes",
            &format!(r#"proc.path = "{touch}" and proc.cmdline contains "/b""#),
        ),
        custom(
            "link name",
            "processes",
            r#"proc.name = "innocent" and proc.cmdline contains "/c""#,
        ),
    ];
    let o = run_sh(
        &w,
        &all(&library, "prevent"),
        &format!(
            "./innocent {r}/a; echo a=$?; ./innocent {r}/b; echo b=$?; ./innocent {r}/c; echo c=$?"
        ),
    );
    expect(&w, &o, &[("a", "0"), ("b", "126"), ("c", "126")]);
    let a = process_audits(&w, &o, 2);
    check_custom_event(&a[0], "process", "prevent", "by path");
    check_custom_event(&a[1], "process", "prevent", "link name");
}

#[test]
fn a_script_is_judged_as_itself_and_as_its_interpreter() {
    // A `#!/bin/sh -e` script is two launches for custom rules: the script (its name, its
    // command line as the caller gave it) and its interpreter, whose command line is what the
    // kernel builds (fs/binfmt_script.c): `/bin/sh -e PATH ARGS...`, with its real path.
    let w = World::new();
    let r = root(&w);
    script(&w, "job", "#!/bin/sh -e\n: > \"$1\"\n");
    let dash = canon("/bin/sh");
    let library = [
        custom(
            "the script",
            "processes",
            r#"proc.name = "job" and proc.cmdline = "./job s1""#,
        ),
        custom(
            "its interpreter",
            "processes",
            &format!(
                r#"proc.name = "sh" and proc.path = "{dash}" and proc.cmdline = "/bin/sh -e ./job s2""#
            ),
        ),
    ];
    let o = run_sh(
        &w,
        &all(&library, "prevent"),
        &format!("cd {r}; ./job s1; echo a=$?; ./job s2; echo b=$?; ./job s3; echo c=$?"),
    );
    expect(&w, &o, &[("a", "126"), ("b", "126"), ("c", "0")]);
    assert!(!w.path("s1").exists() && !w.path("s2").exists());
    assert!(w.path("s3").exists());
    let a = process_audits(&w, &o, 2);
    check_custom_event(&a[0], "process", "prevent", "the script");
    check_custom_event(&a[1], "process", "prevent", "its interpreter");
}

#[test]
fn race_giving_up_the_terminal_after_the_check_never_runs_the_program_without_one() {
    // Under a rule that lets `sh` run only with a terminal, each child of `exec_helper
    // race-setsid` (itself on the pseudo-terminal of `script`) execs `sh` while a thread calls
    // setsid(2), so the supervisor may decide with the terminal and the shell start without it.
    // The exec stop checks the terminal again and kills such a shell before it runs: none ever
    // finds itself without a terminal (it would write `notty`). The runs go on until a child was
    // killed: the proof that the check fired.
    let tallies = race_until_killed("setsid", setsid_round);
    println!("{tallies:?}");
}

/// One run of `race-setsid` (see the test above), checked; its tally.
fn setsid_round() -> RaceTally {
    let w = World::new();
    let library = [custom(
        "shells need a terminal",
        "processes",
        r#"not proc.interactive and proc.name = "sh""#,
    )];
    let helper = test_program("exec_helper");
    let inner = format!(
        "{} race-setsid /bin/sh {RACE_ATTEMPTS} sh -c 'true 2>/dev/null </dev/tty || echo notty >> notty'",
        helper.display()
    );
    let o = run(
        &w,
        &all(&library, "prevent"),
        &["script", "-qec", &inner, "/dev/null"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&w, &o));
    assert!(
        !w.path("notty").exists(),
        "sh ran without a terminal\n{}",
        show(&w, &o)
    );
    let t = RaceTally::parse(&stdout(&o).replace('\r', ""))
        .unwrap_or_else(|| panic!("no tally\n{}", show(&w, &o)));
    assert_eq!(t.other, 0, "{t:?}\n{}", show(&w, &o));
    assert_eq!(t.ran_allowed + t.killed + t.eperm, RACE_ATTEMPTS, "{t:?}");
    // Every refusal and every kill is audited, under prevent (floods fold into counts).
    let audits = w.audits_of("process");
    let mut audited = 0;
    for a in &audits {
        assert_eq!(a["effect"], "prevent", "{a}");
        audited += a["count"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        audited,
        u64::from(t.killed + t.eperm),
        "one audit per refusal and per kill; {t:?}\n{}",
        show(&w, &o)
    );
    t
}

// ---------------------------------------------------------------------------------------------
// 3. The launching program
// ---------------------------------------------------------------------------------------------

#[test]
fn a_shell_launched_by_a_given_program_is_prevented() {
    // `websrv` is a copy of dash: a shell it launches is prevented (by its file name, or by its
    // real path), the same shell launched by sh is not.
    let w = World::new();
    let r = root(&w);
    let websrv = copy_exe(&w, "/bin/sh", "websrv");
    let websrv = websrv.to_str().unwrap();
    let library = [
        custom(
            "shell from websrv",
            "processes",
            r#"proc.name = "sh" and proc.pname = "websrv""#,
        ),
        custom(
            "dash from websrv path",
            "processes",
            &format!(r#"proc.name = "dash" and proc.ppath = "{r}/websrv""#),
        ),
    ];
    let policy = all(&library, "prevent");
    let shells = "sh -c true; echo a=$?; dash -c true; echo b=$?";

    let o = run(&w, &policy, &[websrv, "-c", shells]);
    expect(&w, &o, &[("a", "126"), ("b", "126")]);
    let a = process_audits(&w, &o, 2);
    let parent = format!("{r}/websrv");
    check_custom_launch(
        &a[0],
        "prevent",
        "shell from websrv",
        &which("sh"),
        &parent,
        "sh -c true",
    );
    check_custom_launch(
        &a[1],
        "prevent",
        "dash from websrv path",
        &which("dash"),
        &parent,
        "dash -c true",
    );

    let w = World::new();
    let o = run(&w, &policy, &["sh", "-c", shells]);
    expect(&w, &o, &[("a", "0"), ("b", "0")]);
    assert!(w.audits_of("process").is_empty(), "{}", show(&w, &o));
}

// ---------------------------------------------------------------------------------------------
// 4. allow, and the first true reference decides
// ---------------------------------------------------------------------------------------------

#[test]
fn allow_is_an_exception_to_a_sections_deny_list() {
    let w = World::new();
    let r = root(&w);
    let library = [custom(
        "allowed dirs",
        "processes",
        r#"proc.name = "mkdir" and proc.cmdline contains "/allowed-""#,
    )];
    let policy = policy(
        &library,
        &[("allowed dirs", "allow")],
        json!({"processes": {"effect": "prevent", "deny": ["mkdir"]}}),
    );
    let o = run_sh(
        &w,
        &policy,
        &format!("mkdir {r}/allowed-1; echo a=$?; mkdir {r}/other; echo b=$?"),
    );
    expect(&w, &o, &[("a", "0"), ("b", "126")]);
    assert!(w.path("allowed-1").is_dir());
    assert!(!w.path("other").exists());
    // The allowed launch is not audited; the other one is the section's, with no customRule.
    let a = process_audits(&w, &o, 1);
    assert_eq!(a[0]["attack"], "processExplicitlyDenied", "{}", a[0]);
    assert_eq!(a[0]["effect"], "prevent", "{}", a[0]);
    assert_eq!(str_of(&a[0], "cmdline"), format!("mkdir {r}/other"));
    assert!(a[0].get("customRule").is_none(), "{}", a[0]);
}

#[test]
fn the_first_true_reference_decides() {
    let library = [
        custom(
            "allowed dirs",
            "processes",
            r#"proc.name = "mkdir" and proc.cmdline contains "/allowed-""#,
        ),
        custom("any mkdir", "processes", r#"proc.name = "mkdir""#),
    ];
    let script = |r: &str| format!("mkdir {r}/allowed-1; echo a=$?; mkdir {r}/other; echo b=$?");

    // allow first: the allowed directory is made; the other mkdir falls to the next reference.
    let w = World::new();
    let r = root(&w);
    let p = policy(
        &library,
        &[("allowed dirs", "allow"), ("any mkdir", "prevent")],
        json!({}),
    );
    let o = run_sh(&w, &p, &script(&r));
    expect(&w, &o, &[("a", "0"), ("b", "126")]);
    let a = process_audits(&w, &o, 1);
    check_custom_launch(
        &a[0],
        "prevent",
        "any mkdir",
        &which("mkdir"),
        &canon("/bin/sh"),
        &format!("mkdir {r}/other"),
    );

    // prevent first: both are prevented by it, the allow is never reached.
    let w = World::new();
    let r = root(&w);
    let p = policy(
        &library,
        &[("any mkdir", "prevent"), ("allowed dirs", "allow")],
        json!({}),
    );
    let o = run_sh(&w, &p, &script(&r));
    expect(&w, &o, &[("a", "126"), ("b", "126")]);
    for e in process_audits(&w, &o, 2) {
        check_custom_event(&e, "process", "prevent", "any mkdir");
    }

    // A disabled reference is off: the next one decides.
    let w = World::new();
    let r = root(&w);
    let p = policy(
        &library,
        &[("any mkdir", "disable"), ("allowed dirs", "prevent")],
        json!({}),
    );
    let o = run_sh(&w, &p, &script(&r));
    expect(&w, &o, &[("a", "126"), ("b", "0")]);
    let a = process_audits(&w, &o, 1);
    check_custom_event(&a[0], "process", "prevent", "allowed dirs");
}

#[test]
fn repeated_custom_denials_are_audited_once_per_attempt_and_folded() {
    // Ten attempts, each a PATH search trying /usr/bin/touch then /bin/touch (one file on a
    // merged /usr): one audit per attempt, identical ones folded into counts.
    let w = World::new();
    let library = [custom(
        "forbidden touch",
        "processes",
        r#"proc.name = "touch" and proc.cmdline contains "forbidden""#,
    )];
    let o = run_sh(
        &w,
        &all(&library, "prevent"),
        "for i in 1 2 3 4 5 6 7 8 9 10; do touch forbidden; done; echo done=1",
    );
    expect(&w, &o, &[("done", "1")]);
    assert!(!w.path("forbidden").exists());
    let audits = w.audits_of("process");
    let counts: u64 = audits
        .iter()
        .map(|a| a["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counts, 10, "{}", show(&w, &o));
    assert!(audits.len() < 10, "nothing was folded\n{}", show(&w, &o));
    for a in &audits {
        assert_eq!(a["customRule"], "forbidden touch", "{a}");
        assert_eq!(a["cmdline"], "touch forbidden", "{a}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. alert and block
// ---------------------------------------------------------------------------------------------

#[test]
fn block_stops_the_container() {
    let w = World::new();
    let library = [custom("no ls", "processes", r#"proc.name = "ls""#)];
    let o = run_sh(&w, &all(&library, "block"), "ls; echo survived");
    assert_eq!(o.status.code(), Some(BLOCKED_EXIT), "{}", show(&w, &o));
    assert_blocked(&w, &o);
    assert!(
        !stdout(&o).contains("policy.json"),
        "ls must not run\n{}",
        show(&w, &o)
    );
    let a = process_audits(&w, &o, 1);
    check_custom_launch(
        &a[0],
        "block",
        "no ls",
        &which("ls"),
        &canon("/bin/sh"),
        "ls",
    );
    let b = w
        .audits_of("defender")
        .into_iter()
        .find(|e| e["effect"] == "block")
        .unwrap();
    assert_eq!(b["rule"], RULE, "{b}");
}

#[test]
fn alert_lets_the_launch_run_and_audits_it_with_the_rules_message() {
    let w = World::new();
    let mut rule = custom("ls watched", "processes", r#"proc.name = "ls""#);
    rule["message"] = json!("someone listed a directory");
    let o = run_sh(&w, &all(&[rule], "alert"), "ls; echo rc=$?");
    assert!(
        stdout(&o).contains("policy.json"),
        "ls runs\n{}",
        show(&w, &o)
    );
    assert!(stdout(&o).contains("rc=0"), "{}", show(&w, &o));
    let a = process_audits(&w, &o, 1);
    check_custom_event(&a[0], "process", "alert", "ls watched");
    assert_eq!(a[0]["message"], "someone listed a directory", "{}", a[0]);
    assert_eq!(str_of(&a[0], "process"), which("ls"));
    assert_eq!(str_of(&a[0], "cmdline"), "ls");
}

// ---------------------------------------------------------------------------------------------
// 6-8. Connections, DNS questions, listening ports
// ---------------------------------------------------------------------------------------------

fn net_helper() -> String {
    test_program("net_helper").display().to_string()
}

/// `net_helper ARGS...` under the defender in `nw` with `policy`; its result line.
fn helper_under(nw: &NetWorld, policy: &str, args: &[&str]) -> String {
    let h = net_helper();
    let mut argv = vec![h.as_str()];
    argv.extend_from_slice(args);
    let out = nw.run(policy, &argv);
    let line = stdout(&out).trim().to_owned();
    assert!(!line.is_empty(), "net_helper printed nothing: {out:?}");
    line
}

/// The events of `kind` written since `before` of them were there.
fn since(nw: &NetWorld, kind: &str, before: usize) -> Vec<Value> {
    nw.audits_of(kind).split_off(before)
}

/// The one event of `events`.
fn one(events: Vec<Value>) -> Value {
    assert_eq!(events.len(), 1, "expected exactly one event: {events:#?}");
    events.into_iter().next().unwrap()
}

fn check_outbound(a: &Value, name: &str, ip: &str, port: u16, process: &str) {
    check_custom_event(a, "network", "prevent", name);
    assert_eq!(a["ip"], ip, "{a}");
    assert_eq!(a["port"], port, "{a}");
    assert_eq!(a["process"], process, "{a}");
    assert_eq!(
        a["message"],
        format!("Outbound connection by {process} to {ip}:{port} matched custom rule \"{name}\""),
        "{a}"
    );
}

#[test]
fn outgoing_connections_are_judged_by_port_address_protocol_and_program() {
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{WEB}:8080"));
    nw.serve_http(&format!("{DENIED_IP}:80"));
    nw.serve_http(&format!("[{WEB6}]:80"));
    let library = [
        custom(
            "helper to 8080",
            "network-outgoing",
            r#"net.outgoing_port = 8080 and proc.name = "net_helper""#,
        ),
        custom(
            "test-net over tcp",
            "network-outgoing",
            r#"net.outgoing_ip = "203.0.113.0/24" and net.protocol = "tcp""#,
        ),
        custom(
            "listed",
            "network-outgoing",
            r#"net.outgoing_ip in ("198.51.100.7", "fd00::80")"#,
        ),
    ];
    let p = all(&library, "prevent");
    let helper = canon(net_helper());
    let at = |ip: &str, port: u16| format!("{ip}:{port}");

    // Natively, every one of these connects.
    for (proto, addr) in [
        ("tcp", at(WEB, 8080)),
        ("tcp", at(DENIED_IP, 80)),
        ("tcp", format!("[{WEB6}]:80")),
    ] {
        let out = nw.native(&[&net_helper(), "connect", proto, &addr]);
        assert_eq!(stdout(&out).trim(), "connect=ok", "natively {addr}");
    }

    assert_eq!(
        helper_under(&nw, &p, &["connect", "tcp", &at(WEB, 8080)]),
        "connect=EPERM"
    );
    check_outbound(
        &one(nw.audits_of("network")),
        "helper to 8080",
        WEB,
        8080,
        &helper,
    );
    assert_eq!(
        helper_under(&nw, &p, &["connect", "tcp", &at(WEB, 80)]),
        "connect=ok",
        "another port works"
    );
    // Another program to the same port: proc.name is the caller's.
    let out = nw.run(
        &p,
        &[
            "curl",
            "-sS",
            "--max-time",
            "20",
            &format!("http://{WEB}:8080/index.html"),
        ],
    );
    assert!(
        out.status.success() && stdout(&out).contains("hello from"),
        "curl to 8080 is not net_helper: {out:?}"
    );
    assert_eq!(nw.audits_of("network").len(), 1, "{:#?}", nw.audits());

    // A CIDR with `=`, and the protocol: TCP to the test net is prevented, UDP is not.
    assert_eq!(
        helper_under(&nw, &p, &["connect", "tcp", &at(DENIED_IP, 80)]),
        "connect=EPERM"
    );
    check_outbound(
        &one(since(&nw, "network", 1)),
        "test-net over tcp",
        DENIED_IP,
        80,
        &helper,
    );
    assert_eq!(
        helper_under(&nw, &p, &["connect", "udp", &at(DENIED_IP, 53)]),
        "connect=ok"
    );
    // `in` with an IPv6 address.
    assert_eq!(
        helper_under(&nw, &p, &["connect", "tcp", &format!("[{WEB6}]:80")]),
        "connect=EPERM"
    );
    check_outbound(&one(since(&nw, "network", 2)), "listed", WEB6, 80, &helper);
    assert_eq!(nw.audits_of("network").len(), 3, "{:#?}", nw.audits());
}

#[test]
fn connection_facts_are_the_calling_programs() {
    // The proc.* facts of a connect are the caller's: its parent (pname), its own command line
    // (/proc/PID/cmdline), its user, its terminal, its real path.
    let nw = NetWorld::new();
    let websrv = copy_exe(&nw, "/bin/sh", "websrv");
    let other = copy_exe(&nw, net_helper(), "other_helper");
    let helper = canon(net_helper());
    let library = [
        custom(
            "from websrv",
            "network-outgoing",
            r#"net.outgoing_port = 80 and proc.pname = "websrv""#,
        ),
        custom(
            "by cmdline",
            "network-outgoing",
            &format!(r#"net.outgoing_port = 5353 and proc.cmdline endswith "udp {WEB}:5353""#),
        ),
        custom(
            "nobody",
            "network-outgoing",
            r#"net.outgoing_port = 81 and proc.user = "nobody" and proc.uid = 65534"#,
        ),
        custom(
            "on a terminal",
            "network-outgoing",
            "net.outgoing_port = 83 and proc.interactive",
        ),
        custom(
            "by path",
            "network-outgoing",
            &format!(
                r#"net.outgoing_port = 82 and proc.path = "{helper}" and proc.name = "net_helper""#
            ),
        ),
    ];
    let p = all(&library, "prevent");
    // Without the tests' terminal, if they have one: only `script` gives the calls one.
    let first_line = |argv: &[&str]| -> String {
        let policy_file = nw.policy(&p);
        let mut c = nw.command(Some(&policy_file), &[], argv);
        let out = common::output_within(without_terminal(&mut c));
        stdout(&out).lines().next().unwrap_or_default().to_owned()
    };
    let connect = |to: &str| format!("{} connect tcp {to}; echo done", net_helper());
    let web = |port: u16| format!("{WEB}:{port}");
    let mut audited = Vec::new();

    let got = first_line(&[websrv.to_str().unwrap(), "-c", &connect(&web(80))]);
    assert_eq!(got, "connect=EPERM", "launched by websrv");
    audited.push("from websrv");
    let got = first_line(&["sh", "-c", &connect(&web(80))]);
    assert_eq!(got, "connect=ok", "launched by sh");

    let h = net_helper();
    assert_eq!(
        first_line(&[&h, "connect", "udp", &web(5353)]),
        "connect=EPERM"
    );
    audited.push("by cmdline");
    let mapped = format!("[::ffff:{WEB}]:5353");
    assert_eq!(first_line(&[&h, "connect", "udp", &mapped]), "connect=ok");

    let nobody = format!(
        "{} {h} connect tcp {}",
        as_user("nobody", "nogroup", ""),
        web(81)
    );
    assert_eq!(first_line(&["sh", "-c", &nobody]), "connect=EPERM");
    audited.push("nobody");
    assert_eq!(
        first_line(&[&h, "connect", "tcp", &web(81)]),
        "connect=ECONNREFUSED"
    );

    let on_terminal = format!("{h} connect tcp {}", web(83));
    let got = first_line(&["script", "-qec", &on_terminal, "/dev/null"]);
    assert_eq!(got.trim_end_matches('\r'), "connect=EPERM", "on a terminal");
    audited.push("on a terminal");
    assert_eq!(
        first_line(&[&h, "connect", "tcp", &web(83)]),
        "connect=ECONNREFUSED"
    );

    assert_eq!(
        first_line(&[&h, "connect", "tcp", &web(82)]),
        "connect=EPERM"
    );
    audited.push("by path");
    assert_eq!(
        first_line(&[other.to_str().unwrap(), "connect", "tcp", &web(82)]),
        "connect=ECONNREFUSED"
    );

    let audits = nw.audits_of("network");
    let names: Vec<&str> = audits
        .iter()
        .map(|a| a["customRule"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, audited, "{audits:#?}");
    for a in &audits {
        check_custom_event(a, "network", "prevent", a["customRule"].as_str().unwrap());
        assert_eq!(a["process"], helper.as_str(), "{a}");
    }
}

#[test]
fn every_way_out_is_judged_under_custom_rules_alone() {
    // No network or dns section: custom rules on outgoing connections alone must trap the socket
    // calls (startup), judge the sends that carry a destination, and close
    // what gets past them (raw sockets, io_uring, the i386 connect).
    let nw = NetWorld::new();
    let attack_raw = test_program("attack_raw").display().to_string();
    let h = net_helper();
    let udp = format!("{WEB}:9999");
    for args in [
        vec!["sendto", udp.as_str()],
        vec!["sendmsg", udp.as_str()],
        vec!["io-uring"],
    ] {
        let mut argv = vec![h.as_str()];
        argv.extend(&args);
        let out = nw.native(&argv);
        assert!(
            stdout(&out).contains("=ok") || stdout(&out).contains("=2 "),
            "natively {args:?}: {out:?}"
        );
    }
    let library = [
        custom(
            "udp 9999",
            "network-outgoing",
            r#"net.outgoing_port = 9999 and net.protocol = "udp""#,
        ),
        custom("8080", "network-outgoing", "net.outgoing_port = 8080"),
    ];
    let p = all(&library, "prevent");
    let mut failures = Vec::new();
    let mut want_audits = 0;
    for (program, args, want, audited) in [
        (
            h.as_str(),
            vec!["sendto", udp.as_str()],
            "sendto=EPERM",
            true,
        ),
        (
            h.as_str(),
            vec!["sendmsg", udp.as_str()],
            "sendmsg=EPERM",
            true,
        ),
        (
            h.as_str(),
            vec!["sendmmsg", udp.as_str()],
            "sendmmsg=EPERM",
            true,
        ),
        (
            h.as_str(),
            vec!["sendto", &format!("{WEB}:9998")],
            "sendto=ok",
            false,
        ),
        // A 32-bit connect is refused outright while calls are checked (its sockaddr is not judged).
        (
            attack_raw.as_str(),
            vec!["int80-connect", WEB, "8081"],
            "connect=EPERM",
            false,
        ),
        (h.as_str(), vec!["io-uring"], "io_uring_setup=EPERM", false),
        (
            attack_raw.as_str(),
            vec!["udp-port", WEB, "9999", "9999"],
            "socket=EPERM",
            false,
        ),
    ] {
        let mut argv = vec![program];
        argv.extend(&args);
        let out = nw.run(&p, &argv);
        let printed = stdout(&out);
        let said = printed.lines().any(|l| l == want);
        if audited {
            want_audits += 1;
        }
        let audits = nw.audits_of("network").len();
        if !said || audits != want_audits {
            failures.push(format!(
                "{args:?}: {printed:?} and {audits} network audit(s), want {want:?} and {want_audits}; stderr: {}",
                stderr(&out)
            ));
            want_audits = audits;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for a in nw.audits_of("network") {
        assert_eq!(a["attack"], "customRule", "{a}");
    }
}

#[test]
fn network_block_and_allow() {
    // block stops the container; allow is an exception to the network section's deny list.
    let nw = NetWorld::new();
    let library = [
        custom(
            "curl to the test net",
            "network-outgoing",
            r#"net.outgoing_ip = "203.0.113.5" and proc.name = "curl""#,
        ),
        custom("telnet", "network-outgoing", "net.outgoing_port = 23"),
    ];
    let section =
        json!({"network": {"effect": "prevent", "outbound": {"deny": ["203.0.113.0/24"]}}});
    let p = policy(
        &library,
        &[("curl to the test net", "allow"), ("telnet", "block")],
        section,
    );
    let mut nw = nw;
    nw.serve_http(&format!("{DENIED_IP}:80"));
    let out = nw.run(
        &p,
        &[
            "curl",
            "-sS",
            "--max-time",
            "20",
            &format!("http://{DENIED_IP}/index.html"),
        ],
    );
    assert!(
        out.status.success() && stdout(&out).contains("hello from"),
        "curl is the exception: {out:?}"
    );
    assert!(nw.audits_of("network").is_empty(), "{:#?}", nw.audits());
    assert_eq!(
        helper_under(&nw, &p, &["connect", "tcp", &format!("{DENIED_IP}:80")]),
        "connect=EPERM",
        "the section judges what the exception does not cover"
    );
    let a = one(nw.audits_of("network"));
    assert_eq!(a["attack"], "networkExplicitlyDenied", "{a}");
    assert!(a.get("customRule").is_none(), "{a}");

    let out = nw.run(
        &p,
        &[
            "sh",
            "-c",
            &format!("{} connect tcp {WEB}:23; echo survived", net_helper()),
        ],
    );
    assert_blocked(&nw, &out);
    let a = one(since(&nw, "network", 1));
    check_custom_event(&a, "network", "block", "telnet");
}

fn check_dns(a: &Value, name: &str, domain: &str, process: &str) {
    check_dns_event(a, "prevent", name, domain, process);
}

fn check_dns_event(a: &Value, effect: &str, name: &str, domain: &str, process: &str) {
    check_custom_event(a, "dns", effect, name);
    assert_eq!(a["domain"], domain, "{a}");
    assert_eq!(a["process"], process, "{a}");
    assert_eq!(
        a["message"],
        format!(
            "DNS resolution of domain name {domain} triggered by {process} matched custom rule \"{name}\""
        ),
        "{a}"
    );
}

#[test]
fn dns_questions_are_judged_by_custom_rules_without_a_dns_section() {
    let nw = NetWorld::new();
    let library = [
        custom("paste sites", "dns", r#"dns.name endswith ".paste.test""#),
        custom("denied", "dns", r#"dns.name = "denied.test""#),
        custom(
            "getent other",
            "dns",
            r#"dns.name = "other.test" and proc.name = "getent""#,
        ),
    ];
    let p = all(&library, "prevent");
    let getent = canon(require("getent"));
    let native = nw.native(&["getent", "hosts", "denied.test"]);
    assert_eq!(
        stdout(&native).split_whitespace().next(),
        Some(WEB),
        "{native:?}"
    );
    let before = nw.dns_queries().len();

    // glibc (connect + send: the forwarder).
    let mut dns_audits = 0;
    for (name, rule) in [
        ("a.paste.test", "paste sites"),
        ("denied.test", "denied"),
        ("other.test", "getent other"),
    ] {
        let out = nw.run(&p, &["getent", "hosts", name]);
        assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
        assert!(out.stdout.is_empty(), "{name}: {out:?}");
        check_dns(&one(since(&nw, "dns", dns_audits)), rule, name, &getent);
        dns_audits += 1;
    }
    let out = nw.run(&p, &["getent", "hosts", "allowed.test"]);
    assert_eq!(stdout(&out).split_whitespace().next(), Some(WEB), "{out:?}");
    // Another program may ask for other.test (Go's pattern: connect + write, the forwarder).
    let out = nw.run(
        &p,
        &[&net_helper(), "dns-connect-write", NAMESERVER, "other.test"],
    );
    assert!(
        stdout(&out).contains(&format!("rcode=0 answers={WEB}")),
        "{out:?}"
    );
    let out = nw.run(
        &p,
        &[
            &net_helper(),
            "dns-connect-write",
            NAMESERVER,
            "x.paste.test",
        ],
    );
    assert!(!stdout(&out).contains("rcode=0"), "{out:?}");
    check_dns(
        &one(since(&nw, "dns", dns_audits)),
        "paste sites",
        "x.paste.test",
        &canon(net_helper()),
    );
    dns_audits += 1;

    // musl (sendto on an unconnected socket, judged by the supervisor).
    let musl = musl_test_program("resolve");
    let out = nw.run(&p, &[musl.to_str().unwrap(), "denied.test"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    check_dns(
        &one(since(&nw, "dns", dns_audits)),
        "denied",
        "denied.test",
        &canon(&musl),
    );
    let out = nw.run(&p, &[musl.to_str().unwrap(), "other.test"]);
    assert!(stdout(&out).contains(WEB), "{out:?}");

    // The server never saw a prevented question (musl's substitute is `invalid.`).
    let asked: Vec<String> = nw.dns_queries()[before..]
        .iter()
        .map(|q| q.name.clone())
        .collect();
    for name in ["a.paste.test", "x.paste.test", "denied.test"] {
        assert!(
            !asked.iter().any(|n| n == name),
            "{name} reached the server: {asked:?}"
        );
    }
    assert!(asked.iter().any(|n| n == "allowed.test"), "{asked:?}");
    assert!(asked.iter().any(|n| n == "other.test"), "{asked:?}");
    assert_eq!(nw.audits_of("dns").len(), dns_audits + 1);
}

#[test]
fn dns_custom_rules_over_tcp_case_insensitive_block_and_allow() {
    // DNS over TCP (dig +tcp: the forwarder's TCP threads), names compared lower-cased and
    // without the trailing dot, `allow` as an exception to the dns section, and `block`.
    let nw = NetWorld::new();
    let dig = require("dig");
    let library = [
        custom("denied", "dns", r#"dns.name = "denied.test""#),
        custom(
            "getent may",
            "dns",
            r#"dns.name = "other.test" and proc.name = "getent""#,
        ),
        custom("big", "dns", r#"dns.name = "big.test""#),
    ];
    let section = json!({"dns": {"effect": "prevent", "deny": ["other.test"]}});
    let p = policy(
        &library,
        &[
            ("denied", "prevent"),
            ("getent may", "allow"),
            ("big", "block"),
        ],
        section,
    );
    let dig = dig.to_str().unwrap();
    let out = nw.run(
        &p,
        &[dig, "+tcp", "+time=3", "+tries=1", "denied.test", "A"],
    );
    assert!(
        stdout(&out).contains("status: NXDOMAIN"),
        "dig +tcp: {out:?}"
    );
    let a = one(nw.audits_of("dns"));
    check_dns(&a, "denied", "denied.test", &canon(dig));
    let out = nw.run(&p, &["getent", "hosts", "DeNied.TEST."]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    check_dns(
        &one(since(&nw, "dns", 1)),
        "denied",
        "denied.test",
        &canon(require("getent")),
    );

    // The exception: getent may resolve other.test, which the section denies to anyone else.
    let out = nw.run(&p, &["getent", "hosts", "other.test"]);
    assert_eq!(stdout(&out).split_whitespace().next(), Some(WEB), "{out:?}");
    assert_eq!(nw.audits_of("dns").len(), 2, "{:#?}", nw.audits());
    let out = nw.run(&p, &[dig, "+time=3", "+tries=1", "other.test", "A"]);
    assert!(stdout(&out).contains("status: NXDOMAIN"), "dig: {out:?}");
    let a = one(since(&nw, "dns", 2));
    assert_eq!(a["attack"], "dnsExplicitlyDenied", "{a}");

    let out = nw.run(&p, &["sh", "-c", "getent hosts big.test; echo survived"]);
    assert_blocked(&nw, &out);
    let a = one(since(&nw, "dns", 3));
    check_custom_event(&a, "dns", "block", "big");
    let asked = nw.dns_names();
    for name in ["denied.test", "big.test"] {
        assert!(
            !asked.iter().any(|n| n == name),
            "{name} reached the server: {asked:?}"
        );
    }
}

#[test]
fn a_malformed_dns_message_is_refused_under_dns_custom_rules_that_prevent() {
    // A datagram to port 53 that is no DNS query names nothing a dns custom rule could judge:
    // with dns custom rules that prevent in force it is refused even though the dns section is
    // off; under alert-only dns custom rules it goes out, audited.
    let nw = NetWorld::new();
    let to = format!("{NAMESERVER}:53");
    let native = nw.native(&[&net_helper(), "sendto", &to]);
    assert_eq!(stdout(&native).trim(), "sendto=ok");
    let library = [custom("denied", "dns", r#"dns.name = "denied.test""#)];
    for (effect, result) in [("prevent", "sendto=EPERM"), ("alert", "sendto=ok")] {
        let before = nw.audits_of("dns").len();
        let got = helper_under(&nw, &all(&library, effect), &["sendto", &to]);
        assert_eq!(got, result, "{effect}");
        let a = one(since(&nw, "dns", before));
        assert_eq!(a["effect"], effect, "{a}");
        assert_eq!(a["rule"], RULE, "{a}");
        assert_eq!(a["process"], canon(net_helper()).as_str(), "{a}");
        assert!(
            str_of(&a, "message").starts_with("Malformed DNS message ("),
            "{a}"
        );
    }
}

#[test]
fn alert_lets_connections_questions_and_binds_through_audited() {
    // Under custom rules that only alert, the call goes through as natively and is audited with
    // the rule's own message when it has one.
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{WEB}:8080"));
    let mut with_message = custom("web 8080", "network-outgoing", "net.outgoing_port = 8080");
    with_message["message"] = json!("something reached the web server on 8080");
    let library = [
        with_message,
        custom("other", "dns", r#"dns.name = "other.test""#),
        custom("8099", "listening", "net.listening_port = 8099"),
    ];
    let p = all(&library, "alert");
    assert_eq!(
        helper_under(&nw, &p, &["connect", "tcp", &format!("{WEB}:8080")]),
        "connect=ok"
    );
    let a = one(nw.audits_of("network"));
    check_custom_event(&a, "network", "alert", "web 8080");
    assert_eq!(
        a["message"], "something reached the web server on 8080",
        "{a}"
    );
    let out = nw.run(&p, &["getent", "hosts", "other.test"]);
    assert_eq!(stdout(&out).split_whitespace().next(), Some(WEB), "{out:?}");
    let a = one(nw.audits_of("dns"));
    check_dns_event(
        &a,
        "alert",
        "other",
        "other.test",
        &canon(require("getent")),
    );
    assert_eq!(
        helper_under(&nw, &p, &["bind", "tcp", "0.0.0.0:8099"]),
        "bind=ok"
    );
    let a = one(nw.audits_of("listen"));
    check_custom_event(&a, "listen", "alert", "8099");
    assert!(nw.dns_names().iter().any(|n| n == "other.test"));
}

#[test]
fn listening_ports_are_judged_by_custom_rules() {
    let nw = NetWorld::new();
    let library = [
        custom("8099", "listening", "net.listening_port = 8099"),
        custom(
            "udp 9000s",
            "listening",
            r#"net.listening_port >= 9000 and net.listening_port < 9010 and net.protocol = "udp""#,
        ),
        custom(
            "low tcp",
            "listening",
            r#"net.listening_port < 1024 and net.protocol = "tcp""#,
        ),
    ];
    let p = all(&library, "prevent");
    let helper = canon(net_helper());
    let mut n = 0;
    for (proto, port, verdict) in [
        ("tcp", 8099, Some("8099")),
        ("tcp", 8098, None),
        ("udp", 9005, Some("udp 9000s")),
        ("tcp", 9005, None),
        ("tcp", 80, Some("low tcp")),
        // Port 0 (the kernel picks one) is not judged, as in the section.
        ("tcp", 0, None),
    ] {
        let got = helper_under(&nw, &p, &["bind", proto, &format!("0.0.0.0:{port}")]);
        match verdict {
            Some(name) => {
                assert_eq!(got, "bind=EPERM", "{proto} {port}");
                let a = one(since(&nw, "listen", n));
                n += 1;
                check_custom_event(&a, "listen", "prevent", name);
                assert_eq!(a["port"], port, "{a}");
                assert_eq!(a["process"], helper.as_str(), "{a}");
                assert_eq!(
                    a["message"],
                    format!(
                        "Process {helper} listening on port {port} matched custom rule \"{name}\""
                    ),
                    "{a}"
                );
            }
            None => {
                assert_eq!(got, "bind=ok", "{proto} {port}");
                assert_eq!(nw.audits_of("listen").len(), n, "{proto} {port}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Users and terminals
// ---------------------------------------------------------------------------------------------

/// `setpriv` to `uid`/`gid` with no supplementary group, then `command`.
fn as_user(uid: &str, gid: &str, command: &str) -> String {
    format!("setpriv --reuid {uid} --regid {gid} --clear-groups {command}")
}

#[test]
fn users_are_named_from_the_passwd_file() {
    let w = World::new();
    let setpriv = canon(require("setpriv"));
    let library = [
        custom(
            "nobody runs id",
            "processes",
            r#"proc.user = "nobody" and proc.name = "id""#,
        ),
        // 4242 is in no passwd file: its name is the number.
        custom(
            "4242 runs id",
            "processes",
            r#"proc.uid = 4242 and proc.user = "4242" and proc.name = "id""#,
        ),
    ];
    let script = format!(
        "{}; echo a=$?; id -u; echo b=$?; {}; echo c=$?",
        as_user("nobody", "nogroup", "id -u"),
        as_user("4242", "4242", "id -u"),
    );
    let o = run_sh(&w, &all(&library, "prevent"), &script);
    expect(&w, &o, &[("a", "126"), ("b", "0"), ("c", "126")]);
    let printed = stdout(&o);
    let ids: Vec<&str> = printed.lines().filter(|l| !l.contains('=')).collect();
    assert_eq!(ids, ["0"], "only root's id ran\n{}", show(&w, &o));
    let a = process_audits(&w, &o, 2);
    check_custom_launch(
        &a[0],
        "prevent",
        "nobody runs id",
        &which("id"),
        &setpriv,
        "id -u",
    );
    check_custom_launch(
        &a[1],
        "prevent",
        "4242 runs id",
        &which("id"),
        &setpriv,
        "id -u",
    );
}

#[test]
fn the_passwd_file_is_read_once_at_start() {
    // In a mount namespace of its own, the defender starts with a passwd file naming uid 4242
    // `jake`; the workload then rewrites it to call 4242 `evil`. The name stays `jake`: the
    // workload cannot rename itself out of a rule.
    for tool in ["unshare", "mount"] {
        require(tool);
    }
    let w = World::new();
    let passwd = w.path("passwd");
    fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/sh\njake:x:4242:4242::/:/bin/sh\n",
    )
    .unwrap();
    let library = [
        custom(
            "jake",
            "processes",
            r#"proc.user = "jake" and proc.name = "id""#,
        ),
        custom("evil", "processes", r#"proc.user = "evil""#),
    ];
    let p = w.policy(&all(&library, "prevent"));
    let script = format!(
        "{}; echo a=$?; echo 'evil:x:4242:4242::/:/bin/sh' > /etc/passwd; {}; echo b=$?; \
         {}; echo c=$?",
        as_user("4242", "4242", "id -u"),
        as_user("4242", "4242", "id -u"),
        as_user("4242", "4242", "true"),
    );
    let inner = w.command(Some(&p), &[], &["sh", "-c", &script]);
    let mut c = Command::new(require("unshare"));
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/passwd && exec "$@""#)
        .arg(&passwd)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(w.dir.path())
        .env("PATH", SYSTEM_PATH);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = common::output_within(without_terminal(&mut c));
    expect(&w, &o, &[("a", "126"), ("b", "126"), ("c", "0")]);
    assert!(
        fs::read_to_string(&passwd).unwrap().starts_with("evil:"),
        "the workload rewrote the passwd file it saw"
    );
    for e in process_audits(&w, &o, 2) {
        check_custom_event(&e, "process", "prevent", "jake");
    }
}

#[test]
fn a_terminal_makes_a_launch_interactive() {
    let w = World::new();
    let library = [
        custom(
            "interactive id",
            "processes",
            r#"proc.interactive and proc.name = "id""#,
        ),
        custom(
            "batch uname",
            "processes",
            r#"proc.interactive = false and proc.name = "uname""#,
        ),
    ];
    // `script` runs its command on a new pseudo-terminal; without it there is none.
    let o = run_sh(
        &w,
        &all(&library, "prevent"),
        r#"id -u; echo a=$?; uname; echo b=$?; script -qec 'id -u; echo c=$?; uname; echo d=$?' /dev/null"#,
    );
    expect(
        &w,
        &o,
        &[("a", "0"), ("b", "126"), ("c", "126"), ("d", "0")],
    );
    let a = process_audits(&w, &o, 2);
    check_custom_event(&a[0], "process", "prevent", "batch uname");
    assert_eq!(str_of(&a[0], "cmdline"), "uname");
    check_custom_event(&a[1], "process", "prevent", "interactive id");
    assert_eq!(str_of(&a[1], "cmdline"), "id -u");
}

// ---------------------------------------------------------------------------------------------
// 10. The grammar through the binary
// ---------------------------------------------------------------------------------------------

#[test]
fn not_in_precedence_and_parentheses_decide_as_the_grammar_says() {
    // Copies of `true` under names of their own; each custom rule judges its own pair, and `zz`
    // in the command line is the other condition. p1 and p2 differ only by parentheses.
    let w = World::new();
    let names = [
        "a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4", "c5", "c05", "d5",
    ];
    for n in names {
        copy_exe(&w, which("true"), n);
    }
    let library = [
        custom(
            "p1",
            "processes",
            r#"proc.name = "a1" or proc.name = "b1" and proc.cmdline contains "zz""#,
        ),
        custom(
            "p2",
            "processes",
            r#"(proc.name = "a2" or proc.name = "b2") and proc.cmdline contains "zz""#,
        ),
        custom(
            "p3",
            "processes",
            r#"proc.name in ("a3", "b3") and not proc.cmdline contains "zz""#,
        ),
        custom(
            "p4",
            "processes",
            r#"NOT Proc.Name = "a4" AND proc.name IN ("a4", "b4")"#,
        ),
        custom(
            "p5",
            "processes",
            "proc.name startswith \"c\" and proc.name endswith \"5\"\n  and proc.name != \"c05\" and proc.uid >= 0",
        ),
    ];
    let mut script = String::new();
    for n in names {
        script += &format!("./{n}; echo {n}=$?; ./{n} zz; echo {n}zz=$?; ");
    }
    let o = run_sh(&w, &all(&library, "prevent"), &script);
    let got = echoed(&o);
    // (command, the custom rule that prevents it, if any)
    let want = [
        ("a1", Some("p1")),
        ("a1zz", Some("p1")),
        ("b1", None),
        ("b1zz", Some("p1")),
        ("a2", None),
        ("a2zz", Some("p2")),
        ("b2", None),
        ("b2zz", Some("p2")),
        ("a3", Some("p3")),
        ("a3zz", None),
        ("b3", Some("p3")),
        ("b3zz", None),
        ("a4", None),
        ("a4zz", None),
        ("b4", Some("p4")),
        ("b4zz", Some("p4")),
        ("c5", Some("p5")),
        ("c5zz", Some("p5")),
        ("c05", None),
        ("c05zz", None),
        ("d5", None),
        ("d5zz", None),
    ];
    let mut wrong = Vec::new();
    for (case, rule) in want {
        let status = if rule.is_some() { "126" } else { "0" };
        if got.get(case).map(String::as_str) != Some(status) {
            wrong.push(format!("{case}: {:?}, want {status}", got.get(case)));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), show(&w, &o));
    let audits = w.audits_of("process");
    let judged: Vec<(String, String)> = audits
        .iter()
        .map(|e| {
            (
                str_of(e, "cmdline")
                    .trim_start_matches("./")
                    .replace(' ', ""),
                e["customRule"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = want
        .iter()
        .filter_map(|(case, rule)| Some(((*case).to_owned(), (*rule)?.to_owned())))
        .collect();
    assert_eq!(judged, expected, "{}", show(&w, &o));
}

// ---------------------------------------------------------------------------------------------
// 11. A policy from the console, changed while the command runs
// ---------------------------------------------------------------------------------------------

#[test]
fn a_custom_rule_put_on_the_console_decides_the_next_launch() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let first = c.put_policy(
        r#"{"rules": [{"name": "watch nc", "processes": {"effect": "alert", "deny": ["nc"]}}]}"#,
    );
    // mkdir runs once, then again once the test says so (the file `go`).
    let workload = "mkdir d1; echo first=$? >> log; \
                    while [ ! -e go ]; do sleep 0.05; done; mkdir d2; echo second=$? >> log";
    let state = w.path("state");
    let mut cmd = console::defender(&w, &c.url(), &state, &[], &["sh", "-c", workload]);
    let child = spawn_piped(without_terminal(&mut cmd));
    let log = || fs::read_to_string(w.path("log")).unwrap_or_default();
    let applied = |revision: u64| {
        console::defender_events(
            &w,
            &format!("Policy revision {revision} from the console applied"),
        )
    };
    assert!(
        wait_until(HANG_GUARD, || log().contains("first=")),
        "the workload never ran: {:?}",
        w.audits()
    );
    assert_eq!(applied(first).len(), 1, "{:?}", w.audits());
    assert_eq!(log(), "first=0\n");

    let second = c.put_policy(&policy(
        &[custom("no mkdir", "processes", r#"proc.name = "mkdir""#)],
        &[("no mkdir", "prevent")],
        json!({"collections": {"containers": ["test-container"]}}),
    ));
    assert!(
        wait_until(HANG_GUARD, || applied(second).len() == 1),
        "revision {second} never applied: {:?}",
        w.audits()
    );
    fs::write(w.path("go"), "").unwrap();
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(log(), "first=0\nsecond=126\n", "{}", stderr(&out));
    assert!(w.path("d1").is_dir());
    assert!(!w.path("d2").exists());
    let a = w.audits_of("process");
    assert_eq!(a.len(), 1, "{a:?}");
    check_custom_event(&a[0], "process", "prevent", "no mkdir");
    assert_eq!(str_of(&a[0], "cmdline"), "mkdir d2");
    assert_eq!(
        without_capability_report(w.audits())
            .iter()
            .filter(|e| e["type"] != "defender")
            .count(),
        1
    );
}

/// A resolver's two sockets: `early`, connected to the name server before the test's file `go`
/// exists, and `late`, connected after; then on `early` a question for allowed.test, on `late`
/// allowed.test and other.test. Prints `NAME=rcode=N` (or `=timeout`) for each.
const TWO_SOCKETS: &str = r#"
import os, socket, struct, sys, time
def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0\0\1\0\1"
def ask(s, name, qid):
    s.send(query(name, qid))
    s.settimeout(5)
    try:
        return "rcode=%d" % (s.recv(4096)[3] & 15)
    except socket.timeout:
        return "timeout"
def connected():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((sys.argv[1], 53))
    return s
early = connected()
open("connected", "w").close()
while not os.path.exists("go"):
    time.sleep(0.02)
late = connected()
print("early=" + ask(early, "allowed.test", 1))
print("late_allowed=" + ask(late, "allowed.test", 2))
print("late_other=" + ask(late, "other.test", 3))
"#;

#[test]
fn a_dns_socket_connected_before_a_rule_needing_its_facts_fails_closed() {
    // The forwarder judges questions on its own threads with the facts read when the socket was
    // connected: those the rule in force then needed. A rule put on the console later that reads
    // `proc.name` finds it unread on a socket connected before: under prevent, its questions are
    // refused (fail closed, as a call that could not be inspected). A socket connected after
    // has the facts: its allowed name resolves, and the one the custom rule names is refused.
    let nw = NetWorld::new();
    fs::write(nw.path("two_sockets.py"), TWO_SOCKETS).unwrap();
    let c = Console::start_in(&nw, &nw.path("data"));
    let section = json!({"dns": {"effect": "prevent", "deny": ["denied.test"]}});
    let first = c.put_policy(&policy(&[], &[], section.clone()));
    let mut cmd = console::defender(
        &nw,
        &c.url(),
        &nw.path("state"),
        &[],
        &["/usr/bin/python3", "two_sockets.py", NAMESERVER],
    );
    let child = spawn_piped(&mut cmd);
    let applied = |revision: u64| {
        console::defender_events(
            &nw,
            &format!("Policy revision {revision} from the console applied"),
        )
    };
    assert!(
        wait_until(HANG_GUARD, || nw.path("connected").exists()),
        "{:?}",
        nw.audits()
    );
    assert_eq!(applied(first).len(), 1, "{:?}", nw.audits());
    let second = c.put_policy(&policy(
        &[custom(
            "python asks other",
            "dns",
            r#"dns.name = "other.test" and proc.name startswith "python""#,
        )],
        &[("python asks other", "prevent")],
        section,
    ));
    assert!(
        wait_until(HANG_GUARD, || applied(second).len() == 1),
        "{:?}",
        nw.audits()
    );
    fs::write(nw.path("go"), "").unwrap();
    let out = finish_within(child, HANG_GUARD);
    let got = echoed(&out);
    let answers: Vec<(&str, &str)> = ["early", "late_allowed", "late_other"]
        .iter()
        .map(|k| (*k, got.get(*k).map(String::as_str).unwrap_or("missing")))
        .collect();
    assert_eq!(
        answers,
        [
            ("early", "rcode=3"),
            ("late_allowed", "rcode=0"),
            ("late_other", "rcode=3")
        ],
        "stdout: {}\nstderr: {}\naudits: {:#?}",
        stdout(&out),
        stderr(&out),
        nw.audits()
    );
    let a = one(nw.audits_of("dns"));
    check_custom_event(&a, "dns", "prevent", "python asks other");
    assert_eq!(a["domain"], "other.test", "{a}");
    let asked = nw.dns_names();
    assert!(asked.iter().any(|n| n == "allowed.test"), "{asked:?}");
    assert!(!asked.iter().any(|n| n == "other.test"), "{asked:?}");
}

#[test]
fn network_and_dns_custom_rules_from_the_console_decide_the_next_calls() {
    // The first revision has no network or DNS rule of any kind; the second has only custom
    // rules on connections and questions. A defender with `--console` traps socket calls from the
    // start, so the second decides the workload's next connect and lookup.
    let mut nw = NetWorld::new();
    nw.serve_http(&format!("{WEB}:8080"));
    let c = Console::start_in(&nw, &nw.path("data"));
    let first = c.put_policy(&policy(
        &[],
        &[],
        json!({"processes": {"effect": "prevent", "deny": ["nmap"]}}),
    ));
    let attempt = |n: u32| {
        format!(
            "{} connect tcp {WEB}:8080 > connect{n}; getent hosts other.test > /dev/null; echo $? > getent{n}",
            net_helper()
        )
    };
    let workload = format!(
        "{}; while [ ! -e go ]; do sleep 0.05; done; {}",
        attempt(1),
        attempt(2)
    );
    let mut cmd = console::defender(
        &nw,
        &c.url(),
        &nw.path("state"),
        &[],
        &["sh", "-c", &workload],
    );
    let child = spawn_piped(&mut cmd);
    let read = |f: &str| {
        fs::read_to_string(nw.path(f))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert!(
        wait_until(HANG_GUARD, || !read("getent1").is_empty()),
        "{:?}",
        nw.audits()
    );
    assert_eq!(
        (read("connect1").as_str(), read("getent1").as_str()),
        ("connect=ok", "0")
    );
    let applied = |revision: u64| {
        console::defender_events(
            &nw,
            &format!("Policy revision {revision} from the console applied"),
        )
    };
    assert_eq!(applied(first).len(), 1, "{:?}", nw.audits());
    let second = c.put_policy(&policy(
        &[
            custom("web 8080", "network-outgoing", "net.outgoing_port = 8080"),
            custom("other", "dns", r#"dns.name = "other.test""#),
        ],
        &[("web 8080", "prevent"), ("other", "prevent")],
        json!({"processes": {"effect": "prevent", "deny": ["nmap"]}}),
    ));
    assert!(
        wait_until(HANG_GUARD, || applied(second).len() == 1),
        "{:?}",
        nw.audits()
    );
    fs::write(nw.path("go"), "").unwrap();
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (read("connect2").as_str(), read("getent2").as_str()),
        ("connect=EPERM", "2"),
        "{:#?}",
        nw.audits()
    );
    check_custom_event(
        &one(nw.audits_of("network")),
        "network",
        "prevent",
        "web 8080",
    );
    check_custom_event(&one(nw.audits_of("dns")), "dns", "prevent", "other");
}
