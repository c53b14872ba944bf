//! Sockets of a trapped caller, worked on from the supervisor: taking a duplicate of the caller's
//! socket (`pidfd_getfd(2)`), asking the kernel what kind of socket it is, and performing
//! `connect`/`bind`/`sendto`/`sendmsg`/`sendmmsg` on it with arguments the supervisor copied and
//! checked, so that what the kernel executes is exactly what was decided on (a CONTINUE is not a
//! security boundary: the kernel would read the caller's memory again, after the decision).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// What the kernel says a socket is: fixed when it was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketKind {
    /// `SO_DOMAIN`: AF_INET, AF_INET6, AF_UNIX, ...
    pub domain: i32,
    /// `SO_TYPE`: SOCK_STREAM, SOCK_DGRAM, ...
    pub ty: i32,
}

/// Asks the kernel what kind of socket `fd` is; ENOTSOCK when it is not one.
pub fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<SocketKind> {
    Ok(SocketKind {
        domain: int_option(fd, libc::SO_DOMAIN)?,
        ty: int_option(fd, libc::SO_TYPE)?,
    })
}

fn int_option(fd: BorrowedFd<'_>, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals; the kernel writes at most `len` bytes to `value`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            &mut value as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(value)
}

/// Whether the open file description has O_NONBLOCK: then a connect or send on it never waits.
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// The largest socket address the kernel copies in (`sizeof(struct sockaddr_storage)`); a longer
/// `addrlen` is EINVAL (net/socket.c, move_addr_to_kernel).
pub const MAX_SOCKADDR: usize = size_of::<libc::sockaddr_storage>();

/// A socket address exactly as the caller passed it: the bytes and the length it gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    /// `bytes` must be at most [`MAX_SOCKADDR`] long.
    pub fn new(bytes: &[u8]) -> RawAddr {
        assert!(bytes.len() <= MAX_SOCKADDR, "socket address too long");
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        // SAFETY: `storage` is MAX_SOCKADDR bytes and `bytes` is no longer; the regions are
        // distinct (one is a local).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                &mut storage as *mut _ as *mut u8,
                bytes.len(),
            )
        };
        RawAddr {
            storage,
            len: bytes.len() as libc::socklen_t,
        }
    }

    pub fn from_socket_addr(addr: SocketAddr) -> RawAddr {
        RawAddr::new(&super::sockaddr::encode(addr))
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `storage` is MAX_SOCKADDR initialized bytes and `len` is at most that.
        unsafe {
            std::slice::from_raw_parts(&self.storage as *const _ as *const u8, self.len as usize)
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }
}

/// The result of a call performed for the caller: its return value, or the errno to give it.
pub type Outcome = Result<i64, i32>;

fn outcome(ret: isize) -> Outcome {
    if ret < 0 {
        Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(ret as i64)
    }
}

/// connect(2) on our duplicate of the caller's socket, with the checked address.
pub fn connect(fd: BorrowedFd<'_>, addr: &RawAddr) -> Outcome {
    // SAFETY: `addr` points at `len` initialized bytes that live for the call.
    outcome(unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), addr.len) } as isize)
}

/// bind(2) on our duplicate of the caller's socket, with the checked address.
pub fn bind(fd: BorrowedFd<'_>, addr: &RawAddr) -> Outcome {
    // SAFETY: as for connect.
    outcome(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), addr.len) } as isize)
}

/// One message to send, copied out of the caller: destination, data, ancillary data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedMsg {
    pub name: Option<RawAddr>,
    pub data: Vec<u8>,
    pub control: Vec<u8>,
}

/// sendmsg(2)-style send of copied messages on our duplicate: one message is `sendmsg`, more is
/// `sendmmsg` (whose result is the number sent, and `sent[i]` the bytes of message i).
/// `MSG_NOSIGNAL` is always added: a broken pipe must not signal the supervisor (the caller's own
/// SIGPIPE is the caller's business, see supervisor/perform.rs).
pub fn send_msgs(
    fd: BorrowedFd<'_>,
    msgs: &mut [OwnedMsg],
    flags: i32,
    many: bool,
    sent: &mut Vec<u32>,
) -> Outcome {
    let mut iovs: Vec<libc::iovec> = msgs
        .iter_mut()
        .map(|m| libc::iovec {
            iov_base: m.data.as_mut_ptr() as *mut libc::c_void,
            iov_len: m.data.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = msgs
        .iter_mut()
        .zip(iovs.iter_mut())
        .map(|(m, iov)| {
            // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
            let mut h: libc::msghdr = unsafe { zeroed() };
            if let Some(name) = &m.name {
                h.msg_name = name.as_ptr() as *mut libc::c_void;
                h.msg_namelen = name.len;
            }
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            if !m.control.is_empty() {
                h.msg_control = m.control.as_mut_ptr() as *mut libc::c_void;
                h.msg_controllen = m.control.len() as _;
            }
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    let flags = flags | libc::MSG_NOSIGNAL;
    let ret = if many {
        // The system call itself, not the C library's wrapper: musl's sendmmsg on 64-bit targets
        // is a loop of sendmsg (src/network/sendmmsg.c, to clear the padding next to its 32-bit
        // msg_iovlen and msg_controllen), one system call per message. Our headers need no such
        // fix: each was zeroed whole before its fields were set, so the padding is zero and the
        // kernel's 64-bit fields read exactly the lengths set.
        // SAFETY: every header points at buffers owned by `msgs`/`iovs`, alive and unmoved for
        // the call; the kernel writes only the `msg_len` fields of `hdrs`; the other arguments
        // are integers.
        let n = unsafe {
            libc::syscall(
                libc::SYS_sendmmsg,
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                flags as libc::c_uint,
            )
        };
        n as isize
    } else {
        // SAFETY: as above, for the one header.
        unsafe { libc::sendmsg(fd.as_raw_fd(), &hdrs[0].msg_hdr, flags) }
    };
    let result = outcome(ret);
    sent.clear();
    if many && let Ok(n) = result {
        sent.extend(hdrs.iter().take(n as usize).map(|h| h.msg_len));
    }
    result
}

/// The local address of a socket: for a client, where its queries come from.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    address_of(fd, libc::getsockname)
}

/// The peer a socket is connected to.
pub fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    address_of(fd, libc::getpeername)
}

fn address_of(
    fd: BorrowedFd<'_>,
    call: unsafe extern "C" fn(
        libc::c_int,
        *mut libc::sockaddr,
        *mut libc::socklen_t,
    ) -> libc::c_int,
) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = MAX_SOCKADDR as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `storage`, which is that large.
    cvt(unsafe {
        call(
            fd.as_raw_fd(),
            &mut storage as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    })?;
    let raw = RawAddr {
        storage,
        len: len.min(MAX_SOCKADDR as libc::socklen_t),
    };
    super::sockaddr::inet_address(raw.bytes())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}
