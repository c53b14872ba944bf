//! Handing the seccomp listener from the child to the supervisor over a socketpair: the child
//! installs the filter, so only it gets the listener at first. Passed with SCM_RIGHTS (unix(7)),
//! or, when the filter traps `sendmsg` itself (network enforcement), announced by number with a
//! plain write(2) and taken by the supervisor with pidfd_getfd(2): the child's sendmsg would wait
//! for a supervisor that has no listener yet.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// A connected pair of unix stream sockets, both close-on-exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends `fd` with one byte of data (`tag`), which the receiver gets back with it.
pub fn send_fd(sock: &OwnedFd, fd: RawFd, tag: u8) -> io::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&[tag])],
        &cmsg,
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Announces `fd` by number with a write(2), which the filter never traps, then waits until the
/// supervisor says it has taken it (the child must keep it open until then).
pub fn announce_fd(sock: &OwnedFd, fd: RawFd, tag: u8) -> io::Result<()> {
    let mut msg = [tag, 0, 0, 0, 0];
    msg[1..].copy_from_slice(&fd.to_ne_bytes());
    nix::unistd::write(sock, &msg)?;
    let mut ack = [0u8; 1];
    match nix::unistd::read(sock, &mut ack)? {
        1 => Ok(()),
        _ => Err(io::Error::other("the supervisor did not take the listener")),
    }
}

/// Takes the descriptor the child announced: a duplicate from `child`'s table, and its tag;
/// `Ok(None)` when the child closed without announcing one (it failed before).
pub fn take_announced_fd(sock: &OwnedFd, child: u32) -> io::Result<Option<(OwnedFd, u8)>> {
    let mut msg = [0u8; 5];
    let mut got = 0;
    while got < msg.len() {
        match nix::unistd::read(sock, &mut msg[got..]) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let fd = RawFd::from_ne_bytes(msg[1..].try_into().expect("4 bytes"));
    let pidfd = super::pidfd::open_process(child)?;
    let taken = super::pidfd::getfd(std::os::fd::AsFd::as_fd(&pidfd), fd)?;
    nix::unistd::write(sock, &[1])?;
    Ok(Some((taken, msg[0])))
}

/// Receives one descriptor and its tag; `Ok(None)` when the peer closed without sending one (it
/// failed before).
pub fn recv_fd(sock: &OwnedFd) -> io::Result<Option<(OwnedFd, u8)>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other?,
        }
    };
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS installed `fd` in our table for us alone; nothing else owns it.
            return Ok(Some((unsafe { OwnedFd::from_raw_fd(fd) }, byte[0])));
        }
    }
    Ok(None)
}
