//! Copying the arguments of a socket call out of a trapped caller's memory with the same limits
//! and errors as the kernel (net/socket.c: move_addr_to_kernel, ___sys_sendmsg), so that the
//! supervisor decides on the copy and performs the call with it.

use super::remote::RemoteMemory;
use super::sockaddr::{Errno, MAX_IOV, MsgHdr, u64_at};
use super::socket::{MAX_SOCKADDR, OwnedMsg, RawAddr};

/// Ancillary data we copy at most (the kernel's limit is net.core.optmem_max); more is ENOBUFS.
const MAX_CONTROL: usize = 64 * 1024;

/// Copies `len` bytes at `addr` out of the caller; EFAULT if any of them is unmapped.
pub fn read_exact(mem: &mut RemoteMemory, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match mem.read(addr + done as u64, &mut buf[done..]) {
            Ok(0) => return Err(libc::EFAULT),
            Ok(n) => done += n,
            Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EFAULT)),
        }
    }
    Ok(buf)
}

/// Copies a socket address argument (`addr`, `addrlen`); `None` for a NULL address or length 0.
pub fn read_sockaddr(
    mem: &mut RemoteMemory,
    addr: u64,
    len: u64,
) -> Result<Option<RawAddr>, Errno> {
    // The kernel reads addrlen as an int: a negative or oversized one is EINVAL.
    let len = len as u32 as i32;
    if len < 0 || len as usize > MAX_SOCKADDR {
        return Err(libc::EINVAL);
    }
    if addr == 0 || len == 0 {
        return Ok(None);
    }
    Ok(Some(RawAddr::new(&read_exact(mem, addr, len as usize)?)))
}

/// Copies one message: address, the data of every iovec (at most `max_data` bytes: `truncate`
/// says whether a longer message is cut, as a stream socket may send part of it, or refused with
/// EMSGSIZE, as a datagram must go whole), and its ancillary data.
pub fn read_msg(
    mem: &mut RemoteMemory,
    hdr: &MsgHdr,
    max_data: usize,
    truncate: bool,
) -> Result<OwnedMsg, Errno> {
    let name = read_sockaddr(mem, hdr.name, u64::from(hdr.namelen))?;
    if hdr.iovlen as usize > MAX_IOV {
        return Err(libc::EMSGSIZE);
    }
    let iovs = if hdr.iovlen == 0 {
        Vec::new()
    } else {
        read_exact(mem, hdr.iov, hdr.iovlen as usize * 16)?
    };
    let mut data = Vec::new();
    for iov in iovs.chunks_exact(16) {
        let (base, len) = (u64_at(iov, 0), u64_at(iov, 8));
        if len > isize::MAX as u64 {
            return Err(libc::EINVAL);
        }
        let room = max_data - data.len();
        if len as usize > room && !truncate {
            return Err(libc::EMSGSIZE);
        }
        data.extend(read_exact(mem, base, (len as usize).min(room))?);
        if data.len() == max_data {
            break;
        }
    }
    if hdr.controllen as usize > MAX_CONTROL {
        return Err(libc::ENOBUFS);
    }
    let control = if hdr.controllen == 0 {
        Vec::new()
    } else {
        read_exact(mem, hdr.control, hdr.controllen as usize)?
    };
    Ok(OwnedMsg {
        name,
        data,
        control,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_messages_with_kernel_limits() {
        let mut mem = RemoteMemory::new(std::process::id() as i32);
        let (a, b) = (b"hello ".to_vec(), b"world".to_vec());
        let iov: Vec<u64> = vec![a.as_ptr() as u64, 6, b.as_ptr() as u64, 5];
        let addr = crate::sys::sockaddr::encode("10.53.0.1:53".parse().unwrap());
        let hdr = MsgHdr {
            name: addr.as_ptr() as u64,
            namelen: addr.len() as u32,
            iov: iov.as_ptr() as u64,
            iovlen: 2,
            control: 0,
            controllen: 0,
        };
        let msg = read_msg(&mut mem, &hdr, 1 << 16, false).unwrap();
        assert_eq!(msg.data, b"hello world");
        assert_eq!(msg.name.unwrap().bytes(), &addr[..]);
        assert_eq!(read_msg(&mut mem, &hdr, 8, false), Err(libc::EMSGSIZE));
        assert_eq!(read_msg(&mut mem, &hdr, 8, true).unwrap().data, b"hello wo");
        let too_many = MsgHdr {
            iovlen: MAX_IOV as u64 + 1,
            ..hdr
        };
        assert_eq!(
            read_msg(&mut mem, &too_many, 1 << 16, false),
            Err(libc::EMSGSIZE)
        );
        let long_name = MsgHdr {
            namelen: 129,
            ..hdr
        };
        assert_eq!(
            read_msg(&mut mem, &long_name, 1 << 16, false),
            Err(libc::EINVAL)
        );
        let unmapped = MsgHdr { iov: 8, ..hdr };
        assert_eq!(
            read_msg(&mut mem, &unmapped, 1 << 16, false),
            Err(libc::EFAULT)
        );
    }
}
