//! The defender's panic policy at the boundary of the firewall's containment
//! (`defender::waas::contain`), under the real panic hook the `run` subcommand installs
//! (`supervisor::keeper::kill_workload_on_panic`), each case in a process of its own (this test
//! binary run again): a panic inside a containment scope is caught and the process goes on; a
//! panic in any other thread, as in the seccomp supervisor, still ends the process with SIGABRT
//! (docs/waas.md, "Panics"). No input is known that makes the inspection panic, so the proxy's
//! own use of the scope is proven by the unit tests of `contain` and by reading.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use defender::waas::contain::{self, Contained, Panicked};

/// Which case the re-run process plays (unset: this is the parent).
const CASE: &str = "DEFENDER_TEST_PANIC_CASE";

/// Runs this test binary again, only `child`, as `case`.
fn run_as(case: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .output()
        .unwrap()
}

/// The re-run process: the real hook, then the case. Nothing when run as a test of its own.
#[test]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    defender::supervisor::keeper::kill_workload_on_panic();
    match case.as_str() {
        "contained" => {
            // In a thread of its own, as a proxy worker is.
            let caught = std::thread::spawn(|| {
                let sync = contain::catch(|| -> u8 { panic!("inspection panicked") });
                let future = Contained::new(async { panic!("forwarding panicked") });
                let mut future = std::pin::pin!(future);
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let polled = future.as_mut().poll_ready(&mut cx);
                (sync, polled, contain::active())
            })
            .join()
            .unwrap();
            assert_eq!(
                caught,
                (
                    Err(Panicked("inspection panicked".into())),
                    Err(Panicked("forwarding panicked".into())),
                    false
                )
            );
            println!("survived");
        }
        "uncontained" => {
            // Any other thread, as the supervisor's: the hook aborts before `join` could see it.
            let _ = std::thread::spawn(|| panic!("supervisor panicked")).join();
            println!("survived");
        }
        other => panic!("unknown case {other}"),
    }
}

/// `poll` once, ready or not (the cases' futures are ready at once).
trait PollReady: std::future::Future {
    fn poll_ready(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Self::Output {
        match self.poll(cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("not ready"),
        }
    }
}
impl<F: std::future::Future> PollReady for F {}

#[test]
fn a_contained_panic_is_caught_and_the_process_goes_on() {
    let out = run_as("contained");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}: {stdout}", out.status);
    assert!(stdout.contains("survived"), "{stdout}");
}

#[test]
fn any_other_panic_still_aborts() {
    let out = run_as("uncontained");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{:?}: {stdout} {stderr}",
        out.status
    );
    assert!(!stdout.contains("survived"), "{stdout}");
    // The previous hook (the standard one) still printed the panic before the abort.
    assert!(stderr.contains("supervisor panicked"), "{stderr}");
}
