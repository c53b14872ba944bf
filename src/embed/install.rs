//! `defender install DIR [--state-dir DIR=UID:GID]...`: copies the running binary to
//! `DIR/defender`, and makes the state directories of containers that run as another user. It is
//! what a Fargate carrier container runs to fill the task volumes (as root: Fargate makes a
//! volume root's, mode 0755, so only the carrier can give a non-root container a directory of its
//! own there), and a way to put the binary into a build context or an image stage: neither side
//! needs a shell or any other tool.

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

/// A state directory to make, owned by the user its container runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    pub dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for StateDir {
    type Err = String;

    /// `DIR=UID:GID`, or `DIR=UID` (the group is then the uid's number, as for a task definition's
    /// `user` of one number). Pure.
    fn from_str(arg: &str) -> Result<StateDir, String> {
        let bad = || format!("{arg:?} is not DIR=UID:GID (an absolute directory, numeric ids)");
        let (dir, ids) = arg.rsplit_once('=').ok_or_else(bad)?;
        let (uid, gid) = ids.split_once(':').unwrap_or((ids, ids));
        let dir = PathBuf::from(dir);
        match (dir.is_absolute(), uid.parse(), gid.parse()) {
            (true, Ok(uid), Ok(gid)) => Ok(StateDir { dir, uid, gid }),
            _ => Err(bad()),
        }
    }
}

/// Makes `state.dir` (and what is missing above it), owned by its user, mode 0700: the defender
/// of that container keeps its state there and nobody else reads it.
pub fn make_state_dir(state: &StateDir) -> Result<(), InstallError> {
    let fail = |context| {
        move |source| InstallError {
            dir: state.dir.clone(),
            context,
            source,
        }
    };
    fs::create_dir_all(&state.dir).map_err(fail("creating the state directory"))?;
    std::os::unix::fs::chown(&state.dir, Some(state.uid), Some(state.gid))
        .map_err(fail("giving the state directory to its user"))?;
    fs::set_permissions(&state.dir, fs::Permissions::from_mode(0o700))
        .map_err(fail("setting the state directory's mode"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_arguments() {
        // The argument, and the directory, uid and gid it gives (none: refused).
        type Case<'a> = (&'a str, Option<(&'a str, u32, u32)>);
        let cases: &[Case] = &[
            (
                "/var/lib/defender/app=1000:1000",
                Some(("/var/lib/defender/app", 1000, 1000)),
            ),
            (
                "/var/lib/defender/app=1000",
                Some(("/var/lib/defender/app", 1000, 1000)),
            ),
            ("/s/a=b=7:8", Some(("/s/a=b", 7, 8))),
            ("relative=1000", None),
            ("/s/app=app", None),
            ("/s/app=1000:staff", None),
            ("/s/app", None),
        ];
        for (arg, want) in cases {
            let got = arg.parse::<StateDir>().ok();
            let want = want.map(|(d, uid, gid)| StateDir {
                dir: d.into(),
                uid,
                gid,
            });
            assert_eq!(got, want, "{arg}");
        }
    }

    #[test]
    fn makes_a_state_directory_its_users_own() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir {
            dir: dir.path().join("defender/app"),
            uid: 4242,
            gid: 4343,
        };
        // Owning it to another uid takes CAP_CHOWN: the tests run as root, as CI does.
        make_state_dir(&state).unwrap();
        let m = fs::metadata(&state.dir).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (4242, 4343, 0o700));
        // Again: nothing to do, no error.
        make_state_dir(&state).unwrap();
    }

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
