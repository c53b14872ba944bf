//! `defender install DIR`: copies the running binary to `DIR/defender`. It is what a Fargate
//! carrier container runs to fill the task volume, and a way to put the binary into a build
//! context or an image stage: neither side needs a shell or any other tool.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("installing into {}: {context}: {source}", dir.display())]
pub struct InstallError {
    dir: PathBuf,
    context: &'static str,
    source: io::Error,
}

/// Copies this executable to `dir/defender` (created 0755, `dir` too if missing) and returns
/// that path. The copy is written beside the target and renamed over it, so a container that
/// starts while the carrier is copying never runs a half-written file.
pub fn install(dir: &Path) -> Result<PathBuf, InstallError> {
    let fail = |context| {
        move |source| InstallError {
            dir: dir.to_path_buf(),
            context,
            source,
        }
    };
    fs::create_dir_all(dir).map_err(fail("creating the directory"))?;
    let mut source = crate::sys::procfs::own_image().map_err(fail("opening /proc/self/exe"))?;
    let target = dir.join("defender");
    let partial = dir.join(format!(".defender.{}.partial", std::process::id()));
    let mut copy = || -> io::Result<()> {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(&partial)?;
        io::copy(&mut source, &mut out)?;
        // Explicitly, not through the umask: the app containers may run as any uid.
        out.set_permissions(fs::Permissions::from_mode(0o755))?;
        out.sync_all()?;
        fs::rename(&partial, &target)
    };
    copy().map_err(|e| {
        let _ = fs::remove_file(&partial);
        fail("copying the binary")(e)
    })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_running_executable() {
        let dir = tempfile::tempdir().unwrap();
        let target = install(&dir.path().join("sub")).unwrap();
        assert_eq!(target, dir.path().join("sub/defender"));
        let me = fs::read("/proc/self/exe").unwrap();
        assert_eq!(fs::read(&target).unwrap(), me);
        let mode = fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // Installing again replaces the file and leaves nothing else behind.
        install(&dir.path().join("sub")).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["defender"]);
    }

    #[test]
    fn says_where_it_failed() {
        let e = install(Path::new("/proc/no-such-dir")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("installing into /proc/no-such-dir: "),
            "{e}"
        );
    }
}
