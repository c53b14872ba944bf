//! The `proc.*` facts custom rules read (policy/custom, `Process`): for a launch, of the program
//! being launched and of the one launching it; for a socket call or a DNS question, of the calling
//! program and its parent. Read from /proc, the launch itself and the caller's argv, only for the
//! fields the scripts in force read (`Custom::fields`), each once; a policy without custom rules
//! reads nothing. Whatever cannot be read is an error, for the supervisor to treat as a call it
//! could not inspect (fail closed by effect).

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::exec::Launch;
use crate::policy::custom::{Field, FieldSet, Process, Protocol};
use crate::sys::pidfd;
use crate::sys::procfs::{self, Status};
use crate::sys::socket::SocketKind;

/// The user names of the container's /etc/passwd, read once at start, before the command runs:
/// the workload may rewrite the file afterwards, and a name it gives itself must not change what
/// `proc.user` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    names: HashMap<u32, String>,
    /// The uid of every process of the workload, as long as none has called a setuid-family call
    /// (`Trapped::SetUid`, noted before it happens): the command's, which no_new_privs keeps
    /// any exec from changing. `None` from the first such call on: each is looked up.
    common_uid: Option<u32>,
}

impl Users {
    /// /etc/passwd as it is now; unreadable or missing (a distroless image), every user is its
    /// number.
    /// The command, started by this process, has its effective uid.
    pub fn load() -> Users {
        let users = match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Users::parse(&text),
            Err(e) => {
                log::debug!("/etc/passwd: {e}: users are named by their uid");
                Users::default()
            }
        };
        // Not known (cannot be: getresuid does not fail): every uid is looked up, as after a
        // setuid.
        let own = crate::sys::creds::current().ok().map(|c| c.uids.effective);
        Users {
            common_uid: own,
            ..users
        }
    }

    /// A process is about to change its uid: look every uid up from now on.
    pub fn note_setuid(&mut self) {
        self.common_uid = None;
    }

    /// The entries of passwd(5) text, `name:password:uid:...`; a line that is not one is skipped.
    /// The first entry of a uid names it, as getpwuid(3) finds it. Pure.
    fn parse(text: &str) -> Users {
        let mut names = HashMap::new();
        for line in text.lines() {
            let mut fields = line.split(':');
            let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(uid) = uid.parse::<u32>() else {
                continue;
            };
            if !name.is_empty() {
                names.entry(uid).or_insert_with(|| name.to_string());
            }
        }
        Users {
            names,
            common_uid: None,
        }
    }

    /// `proc.user`: the name of `uid`, else its number as text.
    pub fn name(&self, uid: u32) -> String {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

/// `proc.cmdline`: the arguments joined by single spaces, invalid UTF-8 replaced. Pure.
pub fn join(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| String::from_utf8_lossy(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The arguments of /proc/PID/cmdline (each ends with a NUL). Pure.
pub fn split_cmdline(raw: &[u8]) -> Vec<Vec<u8>> {
    if raw.is_empty() {
        return Vec::new();
    }
    raw.strip_suffix(&[0])
        .unwrap_or(raw)
        .split(|&b| b == 0)
        .map(<[u8]>::to_vec)
        .collect()
}

/// `net.protocol` of a socket: `udp` for a datagram socket, `raw` for a raw one, `tcp` for a
/// stream (and the other connection-oriented types). Pure.
pub fn protocol(kind: SocketKind) -> Protocol {
    match kind.ty {
        libc::SOCK_DGRAM => Protocol::Udp,
        libc::SOCK_RAW => Protocol::Raw,
        _ => Protocol::Tcp,
    }
}

/// The last component of a path, as `proc.name` and `proc.pname` show it.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `proc.name` of a launch: the file name of the path as executed, which the process's `comm`
/// becomes; except through a descriptor (`/proc/self/fd/3`, `/dev/fd/3`), where that is a number
/// that names nothing, and a rule on `proc.name` would be passed by naming a descriptor of the
/// denied program: the file's own name then (its real path's).
fn launch_name(path: &Path, real: Option<&Path>) -> String {
    match real {
        Some(real) if path.starts_with("/proc") || path.starts_with("/dev/fd") => file_name(real),
        _ => file_name(path),
    }
}

fn needs(fields: FieldSet, any: &[Field]) -> bool {
    any.iter().any(|f| fields.contains(*f))
}

/// `proc.user`, `proc.uid` and `proc.interactive` of thread `tid`, into `p`: its effective uid
/// and whether it has a controlling terminal (/proc/TID/stat). Returns the parent process when
/// `want_ppid`. The uid and parent come from a pidfd of the thread (`pidfd::info`), which spares
/// a launch the status file of a process /proc has not shown yet; /proc/TID/status before Linux
/// 6.13.
fn identity(
    tid: u32,
    fields: FieldSet,
    users: &Users,
    p: &mut Process,
    want_ppid: bool,
) -> io::Result<Option<u32>> {
    let want_uid = needs(fields, &[Field::ProcUser, Field::ProcUid]);
    let mut ppid = None;
    if let (true, false, Some(uid)) = (want_uid, want_ppid, users.common_uid) {
        // No process has changed its uid: it is the command's, nothing to look up.
        p.uid = uid;
        if fields.contains(Field::ProcUser) {
            p.user = users.name(uid);
        }
    } else if want_uid || want_ppid {
        let (uid, parent) = match pidfd::info(tid) {
            Ok(info) => (Some(info.euid), Some(info.ppid)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => {
                let status = Status::of(tid)?;
                (status.euid(), status.ppid())
            }
            Err(e) => return Err(e),
        };
        let missing = |what| io::Error::new(io::ErrorKind::InvalidData, what);
        if want_uid {
            p.uid = uid.ok_or_else(|| missing("no Uid in the status"))?;
            if fields.contains(Field::ProcUser) {
                p.user = users.name(p.uid);
            }
        }
        if want_ppid {
            ppid = Some(parent.ok_or_else(|| missing("no PPid in the status"))?);
        }
    }
    if fields.contains(Field::ProcInteractive) {
        p.interactive = procfs::tty_nr(tid)? != 0;
    }
    Ok(ppid)
}

/// The facts of the program that makes a socket call or asks a DNS question, thread `tid`: its
/// image (/proc/TID/exe), its command line (/proc/TID/cmdline: what the program shows, which it
/// may have rewritten itself), its parent process (`PPid`; none outside our PID namespace) and
/// its identity.
pub fn of_caller(tid: u32, fields: FieldSet, users: &Users) -> io::Result<Process> {
    let mut p = Process::default();
    let parent = needs(fields, &[Field::ProcPname, Field::ProcPpath]);
    let ppid = identity(tid, fields, users, &mut p, parent)?;
    if needs(fields, &[Field::ProcName, Field::ProcPath]) {
        let exe = procfs::exe(tid)?;
        p.name = file_name(&exe);
        p.path = exe.display().to_string();
    }
    if fields.contains(Field::ProcCmdline) {
        p.cmdline = join(&split_cmdline(&procfs::cmdline(tid)?));
    }
    if parent {
        let ppid = ppid.unwrap_or_default();
        if ppid != 0 {
            let exe = procfs::exe(ppid)?;
            p.pname = file_name(&exe);
            p.ppath = exe.display().to_string();
        }
    }
    Ok(p)
}

/// Reads into `p` the facts of `wanted` that a launch by thread `tid` shares in all its views: the
/// launching program (`proc.pname`, `proc.ppath`: the caller's image) and the identity the new
/// program starts with; they are no longer `unread`. The effective uid is the caller's: no_new_privs is set on the whole workload
/// (seccomp::install sets it before the filter, and it is inherited and cannot be unset), so a
/// set-user-ID or file-capability bit does not change credentials at exec
/// (bprm_fill_uid, cap_bprm_creds_from_file); and the terminal is the caller's process's, which
/// the exec stop checks again.
pub fn read_launcher(tid: u32, wanted: FieldSet, users: &Users, p: &mut Process) -> io::Result<()> {
    // The fields read together: a uid and its name, an image's name and path.
    let pairs = [
        FieldSet::of(&[Field::ProcUser, Field::ProcUid]),
        FieldSet::of(&[Field::ProcPname, Field::ProcPpath]),
    ];
    let wanted = pairs
        .iter()
        .filter(|pair| !pair.intersection(wanted).is_empty())
        .fold(wanted, |w, pair| w.union(*pair))
        .intersection(LAUNCHER);
    identity(tid, wanted, users, p, false)?;
    if needs(wanted, &[Field::ProcPname, Field::ProcPpath]) {
        let exe = procfs::exe(tid)?;
        p.pname = file_name(&exe);
        p.ppath = exe.display().to_string();
    }
    p.unread = p.unread.without(wanted);
    Ok(())
}

/// The fields [`read_launcher`] reads; the others of a launch are the launch's own.
const LAUNCHER: FieldSet = FieldSet::of(&[
    Field::ProcPname,
    Field::ProcPpath,
    Field::ProcUser,
    Field::ProcUid,
    Field::ProcInteractive,
]);

/// The launcher's facts before any is read: those of `fields` that [`read_launcher`] reads, all
/// unread, so that only what a decision turns out to depend on is read (`Custom::needs`).
pub fn unread_launcher(fields: FieldSet) -> Process {
    Process {
        unread: fields.intersection(LAUNCHER),
        ..Process::default()
    }
}

/// The views of a launch custom rules judge (pure): the file launched, named as executed (what
/// `comm` becomes) with its real path (what /proc/PID/exe will show) and the caller's `argv`;
/// and for a `#!` script, its interpreter, with the command line the kernel builds for it
/// ([`interpreter_argv`]). `argv` is `None` when no script reads `proc.cmdline`; `launcher` holds
/// the facts both views share ([`of_launcher`]).
pub fn launch_views(launch: &Launch, argv: Option<&[Vec<u8>]>, launcher: &Process) -> Vec<Process> {
    let view = |path: &Path, real: Option<&Path>, cmdline: String| Process {
        name: launch_name(path, real),
        path: real.unwrap_or(path).display().to_string(),
        cmdline,
        ..launcher.clone()
    };
    let image = &launch.image;
    let mut views = vec![view(
        &image.path,
        image.real.as_deref(),
        argv.map(join).unwrap_or_default(),
    )];
    if let Some(interpreter) = &launch.interpreter {
        let cmdline = argv
            .map(|argv| {
                join(&interpreter_argv(
                    interpreter.started_as.as_deref().unwrap_or_default(),
                    launch.shebang_arg.as_deref(),
                    &launch.filename,
                    argv,
                ))
            })
            .unwrap_or_default();
        views.push(view(
            &interpreter.path,
            interpreter.real.as_deref(),
            cmdline,
        ));
    }
    views
}

/// The argv the kernel gives the interpreter of a script (fs/binfmt_script.c): the interpreter as
/// the `#!` line names it, the line's argument if any, the script's name as the kernel has it
/// (`bprm->filename`), then the caller's arguments after argv[0]. Pure.
pub fn interpreter_argv(
    interpreter: &[u8],
    arg: Option<&[u8]>,
    filename: &[u8],
    argv: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    std::iter::once(interpreter)
        .chain(arg)
        .chain([filename])
        .map(<[u8]>::to_vec)
        .chain(argv.iter().skip(1).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::exec::Image;
    use std::path::PathBuf;

    #[test]
    fn passwd_entries() {
        let users = Users::parse(
            "root:x:0:0:root:/root:/bin/sh\n\
             # a comment\n\
             \n\
             jake:x:1000:1000::/home/jake:/bin/sh\n\
             alias:x:1000:1000::/:/bin/sh\n\
             broken:x:abc:0::/:/bin/sh\n\
             short:x\n\
             :x:7:7::/:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
        );
        for (uid, want) in [
            (0, "root"),
            (1000, "jake"),
            (65534, "nobody"),
            (7, "7"),
            (4242, "4242"),
        ] {
            assert_eq!(users.name(uid), want, "uid {uid}");
        }
        assert_eq!(Users::parse("").name(0), "0");
    }

    #[test]
    fn command_lines() {
        let v = |v: &[&str]| v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        for (args, want) in [
            (v(&["nc", "-l", "4444"]), "nc -l 4444"),
            (v(&["a b", "c"]), "a b c"),
            (v(&["x", "", "y"]), "x  y"),
            (v(&[]), ""),
            (vec![b"\xffz".to_vec()], "\u{fffd}z"),
        ] {
            assert_eq!(join(&args), want, "{args:?}");
        }
        for (raw, want) in [
            (&b"nc\0-l\0"[..], v(&["nc", "-l"])),
            (b"nc\0\0", v(&["nc", ""])),
            (b"rewritten title", v(&["rewritten title"])),
            (b"", v(&[])),
        ] {
            assert_eq!(split_cmdline(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn protocols() {
        let kind = |ty| SocketKind {
            domain: libc::AF_INET,
            ty,
        };
        assert_eq!(protocol(kind(libc::SOCK_STREAM)), Protocol::Tcp);
        assert_eq!(protocol(kind(libc::SOCK_DGRAM)), Protocol::Udp);
        assert_eq!(protocol(kind(libc::SOCK_RAW)), Protocol::Raw);
    }

    #[test]
    fn interpreter_command_lines() {
        let v = |v: &[&str]| v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            (
                "/bin/sh",
                None,
                "./s",
                &["s", "a", "b"],
                &["/bin/sh", "./s", "a", "b"],
            ),
            (
                "/usr/bin/env",
                Some("python3 -u"),
                "/app/run",
                &["run"],
                &["/usr/bin/env", "python3 -u", "/app/run"],
            ),
            ("/bin/sh", None, "/dev/fd/3", &[], &["/bin/sh", "/dev/fd/3"]),
        ];
        for (interp, arg, filename, argv, want) in cases {
            let got = interpreter_argv(
                interp.as_bytes(),
                arg.map(str::as_bytes),
                filename.as_bytes(),
                &v(argv),
            );
            assert_eq!(got, v(want), "{interp} {arg:?} {filename}");
        }
    }

    #[test]
    fn views_of_a_launch() {
        let image = |path: &str, real: Option<&str>, started_as: Option<&str>| Image {
            path: path.into(),
            links: Vec::new(),
            real: real.map(PathBuf::from),
            stamp: None,
            lent: Vec::new(),
            started_as: started_as.map(|a| a.as_bytes().to_vec()),
            own_name: None,
        };
        let launcher = Process {
            pname: "sh".into(),
            ppath: "/bin/sh".into(),
            user: "jake".into(),
            uid: 1000,
            interactive: true,
            ..Process::default()
        };
        let binary = Launch {
            image: image("/usr/bin/nc", Some("/bin/busybox"), Some("nc")),
            interpreter: None,
            script_argv: None,
            shebang_arg: None,
            filename: b"/usr/bin/nc".to_vec(),
        };
        let argv = vec![b"nc".to_vec(), b"-l".to_vec()];
        let views = launch_views(&binary, Some(&argv), &launcher);
        assert_eq!(
            views,
            vec![Process {
                name: "nc".into(),
                path: "/bin/busybox".into(),
                cmdline: "nc -l".into(),
                ..launcher.clone()
            }]
        );
        let script = Launch {
            image: image("/app/run.sh", Some("/app/run.sh"), None),
            interpreter: Some(image("/bin/sh", Some("/bin/dash"), Some("/bin/sh"))),
            script_argv: Some(1),
            shebang_arg: None,
            filename: b"./run.sh".to_vec(),
        };
        let argv = vec![b"./run.sh".to_vec(), b"-x".to_vec()];
        let views = launch_views(&script, Some(&argv), &launcher);
        let names: Vec<(&str, &str, &str)> = views
            .iter()
            .map(|p| (p.name.as_str(), p.path.as_str(), p.cmdline.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("run.sh", "/app/run.sh", "./run.sh -x"),
                ("sh", "/bin/dash", "/bin/sh ./run.sh -x"),
            ]
        );
        assert!(views.iter().all(|p| p.user == "jake" && p.interactive));
        // Unresolved: the path as executed; no command line read: none.
        let unresolved = Launch {
            image: image("/tmp/x", None, Some("x")),
            ..binary.clone()
        };
        // Through a descriptor, the name is the file's own: a number names nothing.
        for path in ["/proc/self/fd/3", "/proc/412/fd/3", "/dev/fd/3"] {
            let through_fd = Launch {
                image: image(path, Some("/usr/bin/nc.openbsd"), None),
                ..binary.clone()
            };
            let views = launch_views(&through_fd, None, &Process::default());
            assert_eq!(views[0].name, "nc.openbsd", "{path}");
        }
        let views = launch_views(&unresolved, None, &Process::default());
        assert_eq!(
            (views[0].path.as_str(), views[0].cmdline.as_str()),
            ("/tmp/x", "")
        );
    }

    /// Until a process of the workload calls setuid, every uid is the command's, and nothing is
    /// looked up (a thread that does not exist is not asked); after it, each is.
    #[test]
    fn the_common_uid_until_a_setuid() {
        let mut users = Users::parse("app:x:1000:1000::/app:/bin/sh\n");
        users.common_uid = Some(1000);
        let fields = FieldSet::of(&[Field::ProcUser, Field::ProcUid]);
        let gone = u32::MAX / 2;
        let mut p = unread_launcher(fields);
        read_launcher(gone, fields, &users, &mut p).unwrap();
        assert_eq!(
            (p.uid, p.user.as_str(), p.unread),
            (1000, "app", FieldSet::default())
        );
        users.note_setuid();
        let mut p = unread_launcher(fields);
        assert!(read_launcher(gone, fields, &users, &mut p).is_err());
    }

    #[test]
    fn reads_its_own_facts() {
        let me = std::process::id();
        let users = Users::default();
        let all = [
            Field::ProcName,
            Field::ProcPath,
            Field::ProcCmdline,
            Field::ProcPname,
            Field::ProcPpath,
            Field::ProcUser,
            Field::ProcUid,
            Field::ProcInteractive,
        ];
        let fields = FieldSet::of(&all);
        let p = of_caller(me, fields, &users).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(p.path, exe.display().to_string());
        assert!(p.cmdline.starts_with(&*std::env::args().next().unwrap()));
        // /proc/self belongs to the process's effective uid.
        let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
        assert_eq!(p.uid, euid);
        assert_eq!(p.user, p.uid.to_string());
        assert!(!p.ppath.is_empty());
        // Nothing asked, nothing read.
        assert_eq!(
            of_caller(me, FieldSet::default(), &users).unwrap(),
            Process::default()
        );
        // The launcher's facts: all unread at first, then only what is asked for is read.
        let mut l = unread_launcher(fields);
        assert_eq!(l.unread, fields.without(FieldSet::of(&all[..3])));
        read_launcher(me, FieldSet::of(&[Field::ProcPpath]), &users, &mut l).unwrap();
        assert_eq!((l.ppath.as_str(), l.name.as_str()), (p.path.as_str(), ""));
        assert!(!l.unread.contains(Field::ProcPpath) && l.unread.contains(Field::ProcUid));
        read_launcher(me, l.unread, &users, &mut l).unwrap();
        assert_eq!((l.uid, l.unread), (p.uid, FieldSet::default()));
    }
}
