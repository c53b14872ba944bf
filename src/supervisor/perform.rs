//! Performing a socket call for its caller, as decided: on the duplicate of the caller's socket,
//! with the arguments copied once, on the loop when it cannot wait and on a thread of its own
//! when it may (a blocking TCP connect or send), and for sockets that are not IP with the
//! caller's credentials (and for unix sockets its root, cwd and umask). The thread answers the
//! kernel when done (`Responder::complete`), so that the loop keeps serving everyone else.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::Signal;

use super::Supervisor;
use super::answer::Answer;
use crate::sensors::exec;
use crate::sys::seccomp::Responder;
use crate::sys::sockaddr::{self, MMSG_LEN_OFFSET, MMSGHDR_SIZE};
use crate::sys::socket::{self, OwnedMsg, RawAddr, SocketKind};
use crate::sys::{creds, process, remote};

/// Who made a trapped call.
#[derive(Clone, Copy)]
pub(super) struct Caller {
    pub(super) id: u64,
    pub(super) tid: u32,
}

impl Caller {
    /// The calling process (audits name processes, not threads). Looked up only when needed:
    /// an allowed call never pays for the /proc read.
    pub(super) fn tgid(self) -> u32 {
        exec::process_of(self.tid)
    }
}

/// A call to perform on the caller's socket, with the copied and checked arguments.
#[derive(Clone)]
pub(super) enum Perform {
    Connect(RawAddr),
    Bind(RawAddr),
    Send {
        msgs: Vec<OwnedMsg>,
        flags: i32,
        /// sendmmsg(2): where the caller's `struct mmsghdr` array is, to fill in each `msg_len`.
        mmsg_at: Option<u64>,
        stream: bool,
    },
}

/// What a call performed with the caller's credentials carries besides the call: the
/// credentials and file-system context to take on, and what must stay open until it is done.
pub(super) struct AsCaller {
    pub(super) creds: creds::Creds,
    /// Unix sockets only: paths in their addresses resolve, and files they create are made, as
    /// the caller's would be.
    pub(super) fs: Option<creds::Fs>,
    /// The caller's memory, opened while the call waited, for the `msg_len` fields of a
    /// `sendmmsg`: the performer, acting with the caller's credentials, may not open it itself.
    pub(super) mem: Option<std::fs::File>,
    /// Our duplicates of the descriptors passed with SCM_RIGHTS, closed once sent.
    pub(super) passed: Vec<OwnedFd>,
}

impl Perform {
    /// Performs the call. `responder` proves, before the caller's memory is written, that the
    /// call still waits: a send performed on a thread may take long, and a thread id reused
    /// meanwhile must not get another process's memory written.
    fn run(
        self,
        sock: &OwnedFd,
        caller: Caller,
        responder: &Responder,
        mem: Option<&std::fs::File>,
    ) -> socket::Outcome {
        match self {
            Perform::Connect(addr) => socket::connect(sock.as_fd(), &addr),
            Perform::Bind(addr) => socket::bind(sock.as_fd(), &addr),
            Perform::Send {
                mut msgs,
                flags,
                mmsg_at,
                stream,
            } => {
                let mut sent = Vec::new();
                let out =
                    socket::send_msgs(sock.as_fd(), &mut msgs, flags, mmsg_at.is_some(), &mut sent);
                if let Some(at) = mmsg_at.filter(|_| responder.id_valid(caller.id)) {
                    for (i, len) in sent.iter().enumerate() {
                        let field = at + (i * MMSGHDR_SIZE) as u64 + MMSG_LEN_OFFSET;
                        // As the kernel, which stops filling in at a fault, but still reports
                        // what was sent.
                        let bytes = len.to_ne_bytes();
                        let written = match mem {
                            Some(mem) => {
                                std::os::unix::fs::FileExt::write_all_at(mem, &bytes, field)
                            }
                            None => remote::write(caller.tid as i32, field, &bytes),
                        };
                        if written.is_err() {
                            break;
                        }
                    }
                }
                // The kernel signals the sender of a broken stream unless MSG_NOSIGNAL; our own
                // send never signals us (socket.rs), so the caller gets its SIGPIPE from us.
                if stream && out == Err(libc::EPIPE) && flags & libc::MSG_NOSIGNAL == 0 {
                    let _ = process::signal_thread(caller.tgid(), caller.tid, Signal::SIGPIPE);
                }
                out
            }
        }
    }
}

impl Supervisor {
    /// Performs the call, here or, when it may wait (a blocking TCP connect or send), on a thread
    /// of its own that answers the kernel when done, so that the loop keeps serving everyone else.
    pub(super) fn perform(
        &mut self,
        job: Perform,
        sock: OwnedFd,
        kind: SocketKind,
        caller: Caller,
    ) -> Answer {
        let stream = kind.ty == libc::SOCK_STREAM;
        let may_wait = stream
            && match &job {
                Perform::Connect(_) => true,
                Perform::Bind(_) => false,
                Perform::Send { flags, .. } => flags & libc::MSG_DONTWAIT == 0,
            }
            && !socket::is_nonblocking(sock.as_fd()).unwrap_or(false);
        let mut job = job;
        if let (false, true, Perform::Send { flags, .. }) = (may_wait, stream, &mut job) {
            // Judged non-blocking: kept so even if the caller clears O_NONBLOCK meanwhile, so
            // that the loop never waits on a stream send.
            *flags |= libc::MSG_DONTWAIT;
        }
        let Some(net) = self.net.as_ref() else {
            return Answer::Deny(libc::ENOSYS);
        };
        match may_wait {
            false => Answer::Performed(job.run(&sock, caller, &net.responder, None)),
            true => {
                let responder = net.responder.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("net-call".into())
                        .spawn(move || {
                            let out = job.run(&sock, caller, &responder, None);
                            if let Err(e) = responder.complete(caller.id, out) {
                                log::debug!("answering a performed socket call: {e}");
                            }
                        });
                match spawned {
                    Ok(_) => Answer::Deferred,
                    Err(e) => {
                        log::error!("cannot start a thread for a blocking socket call: {e}");
                        Answer::Deny(libc::EAGAIN)
                    }
                }
            }
        }
    }

    /// Performs a call on a socket that is not IP as its caller. On the loop itself when that
    /// cannot wait and needs nothing of the caller's file-system context (`inline`): the loop's
    /// thread takes on the caller's credentials for the call alone (credentials are per thread;
    /// its real and saved uid stay the supervisor's, so the caller cannot signal it meanwhile)
    /// and takes its own back at once. Otherwise on a thread of its own, which first takes on
    /// the caller's file-system context (unix sockets: unshare(CLONE_FS), so no other thread
    /// shares it) and credentials, then answers the kernel when done: the thread ends with the
    /// call, and the loop never waits on a send to a full receiver.
    pub(super) fn perform_as_caller(
        &mut self,
        job: Perform,
        sock: OwnedFd,
        caller: Caller,
        with: AsCaller,
    ) -> Answer {
        let Some(net) = self.net.as_ref() else {
            return Answer::Deny(libc::ENOSYS);
        };
        let job = match inline(job, &sock, &with) {
            Inline::Run(mut quick, retry) => {
                // Read now, not at start: the supervisor's credentials may have changed since.
                let own = match creds::current() {
                    Ok(own) => own,
                    Err(e) => {
                        log::warn!("socket call by {} refused: {e}", caller.tid);
                        return Answer::Deny(libc::EPERM);
                    }
                };
                if let Err(e) = creds::assume(&with.creds, creds::RealUid::Keep) {
                    back_to(&own);
                    log::warn!(
                        "socket call by {} refused: cannot act as the caller: {e}",
                        caller.tid
                    );
                    return Answer::Deny(libc::EPERM);
                }
                if let Perform::Send { flags, .. } = &mut quick {
                    *flags |= libc::MSG_DONTWAIT;
                }
                let out = quick.run(&sock, caller, &net.responder, with.mem.as_ref());
                back_to(&own);
                match (out, retry) {
                    // A send that would have waited: performed on a thread, as asked.
                    (Err(libc::EAGAIN), Some(job)) => job,
                    (out, _) => return Answer::Performed(out),
                }
            }
            Inline::No(job) => job,
        };
        let responder = net.responder.clone();
        let spawned = std::thread::Builder::new()
            .name("net-as-caller".into())
            .spawn(move || {
                let assumed = match &with.fs {
                    Some(fs) => creds::enter_fs(fs),
                    None => Ok(()),
                }
                .and_then(|()| creds::assume(&with.creds, creds::RealUid::Keep));
                let out = match assumed {
                    Ok(()) => job.run(&sock, caller, &responder, with.mem.as_ref()),
                    Err(e) => {
                        log::warn!(
                            "socket call by {} refused: cannot act as the caller: {e}",
                            caller.tid
                        );
                        Err(libc::EPERM)
                    }
                };
                if let Err(e) = responder.complete(caller.id, out) {
                    log::debug!("answering a performed socket call: {e}");
                }
                // Named, so that the closure owns them: our duplicates of passed descriptors
                // are closed only once the send is done.
                drop(with.passed);
            });
        match spawned {
            Ok(_) => Answer::Deferred,
            Err(e) => {
                log::error!("cannot start a thread for a socket call: {e}");
                Answer::Deny(libc::EAGAIN)
            }
        }
    }
}

/// Whether a call performed as its caller may run on the loop.
enum Inline {
    /// Yes, with MSG_DONTWAIT on a send; if it would have waited (EAGAIN) where the caller's
    /// call waits, the job to perform on a thread instead.
    Run(Perform, Option<Perform>),
    No(Perform),
}

/// A call that cannot wait, and resolves no path the caller's cwd or root would change, runs
/// on the loop: a netlink connect or bind; a unix connect of a datagram socket, or of a
/// non-blocking stream socket, to an address that is absolute or abstract, from a caller
/// sharing the supervisor's root; a send on a socket that is not a stream, or on a stream that
/// does not wait (O_NONBLOCK or MSG_DONTWAIT: its short write is the caller's to handle), whose
/// unix addresses, if any, are absolute or abstract, from such a caller. Other connects and
/// binds (unix: the cwd, the umask, a full backlog; AF_ALG: module loading) run on a thread.
fn inline(job: Perform, sock: &OwnedFd, with: &AsCaller) -> Inline {
    let nonblocking = socket::is_nonblocking(sock.as_fd()).unwrap_or(false);
    let fs_free = with
        .fs
        .as_ref()
        .is_none_or(|fs| fs.root_is_ours().unwrap_or(false));
    let (ok, waits) = match &job {
        Perform::Connect(addr) => {
            let ok = match socket::socket_kind(sock.as_fd()) {
                Ok(k) if k.domain == libc::AF_NETLINK => true,
                // A unix datagram connect never waits (unix_dgram_connect); a stream one waits
                // for room in a full backlog unless O_NONBLOCK.
                Ok(k) if k.domain == libc::AF_UNIX => {
                    fs_free
                        && !sockaddr::unix_path_is_relative(addr.bytes())
                        && (k.ty == libc::SOCK_DGRAM || nonblocking)
                }
                _ => false,
            };
            (ok, false)
        }
        Perform::Bind(_) => (
            socket::socket_kind(sock.as_fd()).is_ok_and(|k| k.domain == libc::AF_NETLINK),
            false,
        ),
        Perform::Send {
            msgs,
            flags,
            stream,
            ..
        } => {
            let caller_waits = !nonblocking && flags & libc::MSG_DONTWAIT == 0;
            let paths = msgs.iter().all(|m| {
                m.name
                    .as_ref()
                    .is_none_or(|a| !sockaddr::unix_path_is_relative(a.bytes()))
            });
            (fs_free && paths && !(*stream && caller_waits), caller_waits)
        }
    };
    match (ok, waits) {
        (false, _) => Inline::No(job),
        (true, true) => Inline::Run(job.clone(), Some(job)),
        (true, false) => Inline::Run(job, None),
    }
}

/// Takes the loop's thread back to the supervisor's credentials after a call performed as its
/// caller. Cannot fail after `assume` succeeded (the saved uid and permitted set were kept);
/// if it ever does, the supervisor stops rather than go on with a workload's credentials.
fn back_to(own: &creds::Creds) {
    if let Err(e) = creds::restore(own) {
        log::error!("cannot take back the supervisor's credentials: {e}");
        std::process::abort();
    }
}
