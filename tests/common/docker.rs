//! The Docker CLI from tests. No image can be pulled: images are built FROM scratch or imported
//! from a root file system. Every image, container and volume a test names through [`Docker`]
//! gets a name unique to the test run and is removed when the test ends, passed or failed.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long one docker command may take before the test gives up on it (a build on a busy
/// machine is the slowest); a guard against hangs, never a measurement.
pub const DOCKER_GUARD: Duration = Duration::from_secs(300);

/// The static release build of the defender (`.ci/run` and the README's first command make it):
/// the binary that goes into containers. Refused when it is older than its sources: a test of
/// it would pass or fail for code that is no longer the code under test.
pub fn static_binary() -> PathBuf {
    const BUILD: &str = "cargo build --release --target x86_64-unknown-linux-musl";
    let p = super::target_root().join("x86_64-unknown-linux-musl/release/defender");
    assert!(
        p.exists(),
        "{} is missing: run `{BUILD}` (.ci/run does)",
        p.display()
    );
    if let Some(newer) = changed_since_built(&p) {
        panic!(
            "{} is older than {}: rebuild it with `{BUILD}` (.ci/run does)",
            p.display(),
            newer.display()
        );
    }
    p
}

/// A source file of `binary` modified after `binary` was linked (or gone since), if any. Cargo
/// lists in the binary's dep-info, `binary.d` next to it, every file it compiled into it: each
/// `.rs` of src/ it includes and the files they `include_str!`. Those are the files to compare,
/// rather than everything under src/, Cargo.toml and Cargo.lock: a change there that does not
/// concern the defender (another binary's source, a comment in the manifest, a dependency of
/// the test programs) leaves cargo nothing to rebuild, and the binary would be refused forever.
fn changed_since_built(binary: &Path) -> Option<PathBuf> {
    let built = fs::metadata(binary).and_then(|m| m.modified()).unwrap();
    let dep_info = binary.with_extension("d");
    let text = fs::read_to_string(&dep_info).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; cargo writes it with the binary",
            dep_info.display()
        )
    });
    // `TARGET: DEP DEP ...`, spaces in a path escaped with a backslash.
    let (_, deps) = text
        .lines()
        .next()
        .and_then(|l| l.split_once(": "))
        .unwrap_or_else(|| panic!("{}: no dependency line", dep_info.display()));
    let deps = deps.replace("\\ ", "\0");
    assert!(
        !deps.trim().is_empty(),
        "{}: no sources",
        dep_info.display()
    );
    deps.split_whitespace()
        .map(|d| PathBuf::from(d.replace('\0', " ")))
        .find(|d| {
            fs::metadata(d)
                .and_then(|m| m.modified())
                .map_or(true, |t| t > built)
        })
}

/// Debian's busybox-static: the userland of images built FROM scratch (a dynamic busybox would
/// need a libc there).
pub fn static_busybox() -> PathBuf {
    let busybox = super::require("busybox");
    let out = Command::new(super::require("file"))
        .arg(&busybox)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("statically linked"),
        "{} is not static: busybox-static is needed",
        busybox.display()
    );
    busybox
}

#[derive(Clone, Copy)]
enum Kind {
    Container,
    Volume,
    Image,
}

pub struct Docker {
    bin: PathBuf,
    made: RefCell<Vec<(Kind, String)>>,
}

impl Docker {
    /// Fails loudly when the Docker CLI is missing.
    pub fn new() -> Docker {
        Docker {
            bin: super::require("docker"),
            made: RefCell::new(Vec::new()),
        }
    }

    /// `docker ARGS`, run to completion.
    pub fn output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        super::finish_within(super::spawn_piped(&mut cmd), DOCKER_GUARD)
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "docker {}: {}{}",
            args.join(" "),
            super::stdout(&out),
            super::stderr(&out)
        );
        super::stdout(&out)
    }

    fn unique(&self, kind: Kind, what: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "defender-test-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.made.borrow_mut().push((kind, name.clone()));
        name
    }

    /// A name for an image this test builds (removed at the end).
    pub fn image(&self, what: &str) -> String {
        self.unique(Kind::Image, what)
    }

    /// A name for a container this test runs (removed at the end).
    pub fn container(&self, what: &str) -> String {
        self.unique(Kind::Container, what)
    }

    /// A volume, created now (removed at the end).
    pub fn volume(&self, what: &str) -> String {
        let name = self.unique(Kind::Volume, what);
        self.ok(&["volume", "create", &name]);
        name
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // Containers first: they hold the volumes and images.
        let made = self.made.take();
        for order in [Kind::Container, Kind::Volume, Kind::Image] {
            for (kind, name) in &made {
                let args: &[&str] = match (order, kind) {
                    (Kind::Container, Kind::Container) => &["rm", "-f", "-v"],
                    (Kind::Volume, Kind::Volume) => &["volume", "rm", "-f"],
                    (Kind::Image, Kind::Image) => &["rmi", "-f"],
                    _ => continue,
                };
                let _ = Command::new(&self.bin).args(args).arg(name).output();
            }
        }
    }
}
