//! Attack 4 of issue 9, descriptor swap on local sockets, and what performing every socket call
//! in the supervisor must keep working: calls on unix sockets are performed with the caller's
//! credentials, root, cwd and umask, so peers see the caller's uid and gid (and the defender's
//! pid), relative paths resolve from the caller's directory, socket files get the caller's owner
//! and umask, permission checks are the caller's, and descriptors passed with SCM_RIGHTS arrive.
//!
//! Debian packages: util-linux (setpriv, nsenter, unshare), python3, iproute2, dnsmasq-base.

mod common;

use std::io::{IoSliceMut, Read, Write};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

use common::networld::{self, DENIED_IP, NetWorld};
use common::{
    HANG_GUARD, finish_within, output_within, require, spawn_piped, stderr, stdout, test_program,
};
use serde_json::{Value, json};

const RULE: &str = "swap-test";
/// The denied destination's port: a UDP listener there counts what reaches it.
const PORT: u16 = 9999;
/// The tries of the swap: the issue's number.
const TRIES: &str = "20000";

fn deny_policy() -> String {
    json!({"rules": [{"name": RULE, "network": {
        "effect": "prevent",
        "outbound": {"allow": [], "deny": ["203.0.113.0/24"]},
    }}]})
    .to_string()
}

/// The datagrams waiting on `s`, received and counted.
fn drain_udp(s: &UdpSocket) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    std::iter::from_fn(|| s.recv(&mut buf).ok()).count()
}

fn drain_unix(s: &UnixDatagram) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    std::iter::from_fn(|| s.recv(&mut buf).ok()).count()
}

/// `ok=O eperm=E other=X` as numbers.
fn tally(out: &std::process::Output) -> (u64, u64, u64) {
    let s = stdout(out);
    let field = |k: &str| -> u64 {
        s.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {s:?}; stderr: {}", stderr(out)))
    };
    (field("ok"), field("eperm"), field("other"))
}

/// The swap attack with `mode`: natively the denied listener gets datagrams (the program works);
/// under the defender it gets none, while the unix receiver gets the calls made on the unix
/// socket (they were performed) and the calls made on the UDP socket with the denied address
/// were refused with EPERM and audited.
fn swap(mode: &str) {
    let nw = NetWorld::new();
    let denied = nw.in_netns(|| UdpSocket::bind((DENIED_IP, PORT)).expect("denied listener"));
    let path = nw.path("receiver.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    let attack = test_program("attack_swap").display().to_string();
    let target = format!("{DENIED_IP}:{PORT}");
    let argv = [
        attack.as_str(),
        mode,
        path.to_str().unwrap(),
        &target,
        TRIES,
    ];

    let native = nw.native(&argv);
    assert!(native.status.success(), "{native:?}");
    assert!(stdout(&native).contains("last=ok"), "{native:?}");
    assert!(
        drain_udp(&denied) > 0,
        "natively, the attack program reaches the listener: {native:?}"
    );
    drain_unix(&receiver);

    let out = nw.run(&deny_policy(), &argv);
    assert!(out.status.success(), "{out:?}");
    let (ok, eperm, _) = tally(&out);
    assert_eq!(
        drain_udp(&denied),
        0,
        "{mode}: nothing may reach the denied address: {}",
        stdout(&out)
    );
    assert!(
        drain_unix(&receiver) > 0 && ok > 0,
        "{mode}: calls on the unix socket were performed: {}",
        stdout(&out)
    );
    assert!(
        eperm > 0,
        "{mode}: the denied sends were refused: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).ends_with(&format!("last={}\n", libc::EPERM)),
        "the plain send is refused too: {}",
        stdout(&out)
    );
    let audits = nw.audits_of("network");
    assert!(!audits.is_empty(), "{mode}: the refusals were audited");
    for a in &audits {
        assert_eq!(a["ip"], DENIED_IP, "{a}");
        assert_eq!(a["port"], PORT, "{a}");
        assert_eq!(a["effect"], "prevent", "{a}");
        assert_eq!(a["rule"], RULE, "{a}");
    }
}

#[test]
fn swapping_the_descriptor_under_sendto_sends_nothing_to_a_denied_address() {
    swap("sendto");
}

#[test]
fn swapping_the_descriptor_under_sendmsg_sends_nothing_to_a_denied_address() {
    swap("sendmsg");
}

#[test]
fn swapping_the_descriptor_under_connect_connects_nothing_to_a_denied_address() {
    swap("connect");
}

// ---------------------------------------------------------------------------------------------
// Unix sockets performed as the caller
// ---------------------------------------------------------------------------------------------

/// The uid and gid the unprivileged callers run as (nobody, nogroup).
const NOBODY: u32 = 65534;

/// A directory every user may write in, inside the world's scratch directory (opened up too).
fn shared_dir(nw: &NetWorld, name: &str) -> PathBuf {
    std::fs::set_permissions(nw.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = nw.path(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// `setpriv` to nobody with no supplementary group, then `python3 -c script args...`.
fn as_nobody(script: &str, args: &[&str]) -> Vec<String> {
    let mut v = networld::as_nobody();
    v.extend(["/usr/bin/python3", "-c", script].map(str::to_owned));
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// Runs `argv` under the defender (deny policy) in the world, in the background.
fn start_guarded(nw: &NetWorld, argv: &[String]) -> std::process::Child {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let policy = nw.policy(&deny_policy());
    spawn_piped(&mut nw.command(Some(&policy), &[], &argv))
}

const PEER_CLIENT: &str = r#"
import errno, os, socket, sys
os.chdir(sys.argv[1])
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("private.sock")
    print("private=ok")
except OSError as e:
    print("private=" + errno.errorcode[e.errno])
s = socket.socket(socket.AF_UNIX)
s.connect("server.sock")
s.sendall(b"hi")
print("reply=" + s.recv(16).decode())
"#;

/// SO_PEERCRED of a client performed by the defender: the caller's uid and gid, the defender's
/// pid (the supervisor's thread made the connect). The relative path resolves from the caller's
/// cwd, and the permission check on the socket file is the caller's (a socket only root may
/// write to refuses nobody, as natively).
#[test]
fn unix_peers_see_the_callers_uid_and_gid_and_the_defenders_pid() {
    let nw = NetWorld::new();
    let dir = shared_dir(&nw, "peer");
    let listener = UnixListener::bind(dir.join("server.sock")).unwrap();
    std::fs::set_permissions(
        dir.join("server.sock"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let _private = UnixListener::bind(dir.join("private.sock")).unwrap();
    std::fs::set_permissions(
        dir.join("private.sock"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let cred =
            nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials).unwrap();
        let mut hi = [0u8; 2];
        s.read_exact(&mut hi).unwrap();
        s.write_all(b"hello").unwrap();
        cred
    });
    let argv = as_nobody(PEER_CLIENT, &[dir.to_str().unwrap()]);
    let child = start_guarded(&nw, &argv);
    // The process started is the keeper; the supervisor is its child (not PID 1).
    let defender_pid = common::supervisor_of(child.id() as i32);
    let out = finish_within(child, HANG_GUARD);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "private=EACCES\nreply=hello\n", "{out:?}");
    let cred = server.join().unwrap();
    assert_eq!((cred.uid(), cred.gid()), (NOBODY, NOBODY), "the caller's");
    assert_eq!(
        cred.pid(),
        defender_pid,
        "the defender's pid, not the caller's"
    );
    assert!(nw.audits_of("network").is_empty());
}

const BIND_CLIENT: &str = r#"
import os, socket, sys
os.chdir(sys.argv[1])
os.umask(0o027)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("made.sock")
print("bound")
"#;

/// A relative bind from the caller's own directory makes the socket file there, owned by the
/// caller and masked by the caller's umask, exactly as natively.
#[test]
fn unix_bind_makes_the_file_in_the_callers_cwd_with_its_owner_and_umask() {
    let nw = NetWorld::new();
    let native_dir = shared_dir(&nw, "native");
    let guarded_dir = nw.path("guarded");
    std::fs::create_dir(&guarded_dir).unwrap();
    std::fs::set_permissions(&guarded_dir, std::fs::Permissions::from_mode(0o777)).unwrap();

    let native_argv = as_nobody(BIND_CLIENT, &[native_dir.to_str().unwrap()]);
    let native_argv: Vec<&str> = native_argv.iter().map(String::as_str).collect();
    let native = nw.native(&native_argv);
    assert_eq!(stdout(&native), "bound\n", "{native:?}");

    let out = finish_within(
        start_guarded(
            &nw,
            &as_nobody(BIND_CLIENT, &[guarded_dir.to_str().unwrap()]),
        ),
        HANG_GUARD,
    );
    assert_eq!(stdout(&out), "bound\n", "{out:?}");
    let meta = |d: &Path| std::fs::metadata(d.join("made.sock")).unwrap();
    let (n, g) = (meta(&native_dir), meta(&guarded_dir));
    assert_eq!((g.uid(), g.gid()), (NOBODY, NOBODY));
    assert_eq!(g.mode() & 0o7777, 0o750, "0777 masked by the caller's 027");
    assert_eq!(
        (g.uid(), g.gid(), g.mode()),
        (n.uid(), n.gid(), n.mode()),
        "as natively"
    );
}

const RIGHTS_CLIENT: &str = r#"
import errno, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
with open(sys.argv[2]) as f:
    socket.send_fds(s, [b"F"], [f.fileno()])
print("ack=" + s.recv(16).decode())
def creds(pid, uid, gid):
    try:
        s.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", pid, uid, gid))])
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print("own=" + creds(os.getpid(), os.getuid(), os.getgid()))
print("root=" + creds(os.getpid(), 0, 0))
"#;

/// A descriptor passed with SCM_RIGHTS through a call the defender performs arrives, open on the
/// same file; explicit SCM_CREDENTIALS are sent when they are the caller's own and refused
/// (EPERM, as the kernel refuses them to nobody) when they claim root.
#[test]
fn descriptors_and_own_credentials_pass_over_unix_sockets() {
    let nw = NetWorld::new();
    let dir = shared_dir(&nw, "rights");
    let secret = dir.join("passed.txt");
    std::fs::write(&secret, "passed by descriptor\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sock = dir.join("server.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::PassCred, &true).unwrap();
    let server = std::thread::spawn(move || {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        let (mut s, _) = listener.accept().unwrap();
        let mut data = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut data)];
        let mut space =
            nix::cmsg_space!([std::os::fd::RawFd; 1], nix::sys::socket::UnixCredentials);
        let msg =
            recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
        let (mut passed, mut creds) = (None, None);
        for c in msg.cmsgs().unwrap() {
            match c {
                ControlMessageOwned::ScmRights(fds) => {
                    // SAFETY: the kernel just installed this descriptor for us; nothing else
                    // owns it.
                    passed = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) })
                }
                ControlMessageOwned::ScmCredentials(c) => creds = Some(c),
                _ => {}
            }
        }
        let mut text = String::new();
        std::fs::File::from(passed.expect("a descriptor"))
            .read_to_string(&mut text)
            .unwrap();
        s.write_all(b"got").unwrap();
        // Until the client is done.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (text, creds.expect("credentials"))
    });
    let argv = as_nobody(
        RIGHTS_CLIENT,
        &[sock.to_str().unwrap(), secret.to_str().unwrap()],
    );
    let child = start_guarded(&nw, &argv);
    // The process started is the keeper; the supervisor is its child (not PID 1).
    let defender_pid = common::supervisor_of(child.id() as i32);
    let out = finish_within(child, HANG_GUARD);
    assert_eq!(stdout(&out), "ack=got\nown=ok\nroot=EPERM\n", "{out:?}");
    let (text, creds) = server.join().unwrap();
    assert_eq!(text, "passed by descriptor\n");
    assert_eq!((creds.uid(), creds.gid()), (NOBODY, NOBODY));
    assert_eq!(creds.pid(), defender_pid);
    let audits: Vec<Value> = nw.audits_of("network");
    assert!(audits.is_empty(), "{audits:#?}");
}

/// Netlink calls are performed too, with the caller's capabilities: reading addresses works as
/// natively; adding one is refused to nobody (EPERM, as natively: the supervisor's privileges
/// never lend themselves) and works for root, which holds CAP_NET_ADMIN here.
#[test]
fn netlink_calls_are_performed_with_the_callers_capabilities() {
    let nw = NetWorld::new();
    let ip = require("ip");
    let ip = ip.to_str().unwrap();
    let show = [ip, "-o", "addr", "show", "dev", "lo"];
    let native = nw.native(&show);
    let guarded = nw.run(&deny_policy(), &show);
    assert!(guarded.status.success(), "{guarded:?}");
    assert_eq!(stdout(&guarded), stdout(&native));
    assert!(stdout(&guarded).contains(DENIED_IP), "{guarded:?}");

    let add = [ip, "addr", "add", "10.99.0.1/32", "dev", "lo"];
    let nobody = networld::as_nobody();
    let mut as_nobody: Vec<&str> = nobody.iter().map(String::as_str).collect();
    as_nobody.extend_from_slice(&add);
    let refused = nw.run(&deny_policy(), &as_nobody);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        stderr(&refused).contains("Operation not permitted"),
        "{refused:?}"
    );
    assert!(!stdout(&nw.native(&show)).contains("10.99.0.1"));
    // Root keeps NET_ADMIN only when asked to (the defender removes it from the command).
    let policy = nw.policy(&deny_policy());
    let added =
        output_within(&mut nw.command(Some(&policy), &["--keep-capability", "NET_ADMIN"], &add));
    assert!(added.status.success(), "{added:?}");
    assert!(stdout(&nw.native(&show)).contains("10.99.0.1"));
}

/// Root of a user namespace the workload made itself holds every capability there, none over
/// the container's network namespace: its netlink request is refused (EPERM, as natively), not
/// performed with the capabilities its own namespace shows.
#[test]
fn a_user_namespace_of_its_own_lends_no_capability_to_performed_calls() {
    let nw = NetWorld::new();
    let add = [
        require("unshare").to_str().unwrap().to_owned(),
        "--user".into(),
        "--map-root-user".into(),
        "--".into(),
        require("ip").to_str().unwrap().to_owned(),
        "addr".into(),
        "add".into(),
        "10.99.0.2/32".into(),
        "dev".into(),
        "lo".into(),
    ];
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    let native = nw.native(&add);
    assert!(
        stderr(&native).contains("Operation not permitted"),
        "{native:?}"
    );
    let guarded = nw.run(&deny_policy(), &add);
    assert!(
        stderr(&guarded).contains("Operation not permitted"),
        "{guarded:?}"
    );
    let show = nw.native(&[
        require("ip").to_str().unwrap(),
        "-o",
        "addr",
        "show",
        "dev",
        "lo",
    ]);
    assert!(!stdout(&show).contains("10.99.0.2"), "{show:?}");
}

const MMSG_CLIENT: &str = r#"
import ctypes, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
data = [ctypes.create_string_buffer(b, len(b)) for b in (b"one", b"three")]
iovs = (iovec * 2)()
msgs = (mmsghdr * 2)()
for i, d in enumerate(data):
    iovs[i].base = ctypes.addressof(d)
    iovs[i].len = len(d)
    msgs[i].hdr.iov = ctypes.pointer(iovs[i])
    msgs[i].hdr.iovlen = 1
n = libc.sendmmsg(s.fileno(), msgs, 2, 0)
print("sent=%d lens=%s" % (n, ",".join(str(m.len) for m in msgs)))
"#;

/// A `sendmmsg` on a unix socket by an unprivileged caller: performed, and the `msg_len` of
/// each message written back into the caller's memory (through its memory opened while the call
/// waited: the performer, acting as nobody, may not open it).
#[test]
fn unix_sendmmsg_fills_in_each_length_for_an_unprivileged_caller() {
    let nw = NetWorld::new();
    let dir = shared_dir(&nw, "mmsg");
    let path = dir.join("receiver.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let argv = as_nobody(MMSG_CLIENT, &[path.to_str().unwrap()]);
    let out = finish_within(start_guarded(&nw, &argv), HANG_GUARD);
    assert_eq!(stdout(&out), "sent=2 lens=3,5\n", "{out:?}");
    let mut buf = [0u8; 16];
    let got: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let n = receiver.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect();
    assert_eq!(got, [b"one".to_vec(), b"three".to_vec()]);
}
