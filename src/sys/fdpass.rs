//! Handing the seccomp listener from the child to the supervisor over a socketpair (SCM_RIGHTS,
//! unix(7)): the child installs the filter, so only it gets the listener at first.

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
