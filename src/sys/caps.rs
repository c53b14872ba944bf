//! The calling process's capability sets: reading all five (capget(2), PR_CAPBSET_READ,
//! PR_CAP_AMBIENT_IS_SET) and taking capabilities out of them (PR_CAPBSET_DROP,
//! PR_CAP_AMBIENT_LOWER, capset(2)). See capabilities(7).

use std::io;

use super::cvt;

/// The five capability sets of a thread, one bit per capability number (capabilities(7)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    pub bounding: u64,
}

/// `_LINUX_CAPABILITY_VERSION_3` (linux/capability.h): 64-bit sets, as two 32-bit words.
const VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 takes two of them, low word first.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Capability numbers the kernel may know; PR_CAPBSET_READ answers EINVAL past the last one.
const MAX_CAPS: u32 = 64;

/// The calling thread's effective, permitted and inheritable sets (capget(2)).
pub fn thread_sets() -> io::Result<(u64, u64, u64)> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget(2) with version 3 writes exactly two `struct __user_cap_data_struct` (our
    // `Data`, same layout) to the second pointer, which points at an array of two; it reads (and on
    // a version mismatch writes) one header through the first, which points at a live `Header`.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    })?;
    let join = |f: fn(&Data) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

/// The calling thread's five sets.
pub fn read() -> io::Result<CapSets> {
    let (effective, permitted, inheritable) = thread_sets()?;
    let mut sets = CapSets {
        effective,
        permitted,
        inheritable,
        ambient: 0,
        bounding: 0,
    };
    for cap in 0..MAX_CAPS {
        // SAFETY: PR_CAPBSET_READ takes integers only and touches no memory of ours.
        let in_bounding =
            unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        match cvt(in_bounding) {
            Ok(1) => sets.bounding |= 1 << cap,
            Ok(_) => {}
            // Past the kernel's last capability.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
        // SAFETY: PR_CAP_AMBIENT_IS_SET takes integers only and touches no memory of ours.
        let ambient = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if cvt(ambient)? == 1 {
            sets.ambient |= 1 << cap;
        }
    }
    Ok(sets)
}

/// Takes `cap` out of the bounding set (PR_CAPBSET_DROP): EPERM without CAP_SETPCAP in the
/// effective set.
pub fn drop_bounding(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes integers only and touches no memory of ours.
    cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// Takes `cap` out of the ambient set (PR_CAP_AMBIENT_LOWER): any process may.
pub fn lower_ambient(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_LOWER takes integers only and touches no memory of ours.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_LOWER as libc::c_ulong,
            cap as libc::c_ulong,
            0,
            0,
        )
    })?;
    Ok(())
}

/// Sets the effective, permitted and inheritable sets of the calling thread (capset(2) with pid
/// 0 acts on the calling thread, never on the process); the kernel refuses any that would grow,
/// and clears from the ambient set what leaves the other two.
pub fn set(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let word = |v: u64, high: bool| if high { (v >> 32) as u32 } else { v as u32 };
    let data: [Data; 2] = [false, true].map(|high| Data {
        effective: word(effective, high),
        permitted: word(permitted, high),
        inheritable: word(inheritable, high),
    });
    // SAFETY: capset(2) with version 3 reads exactly two `struct __user_cap_data_struct` from the
    // second pointer, an array of two live `Data`; it reads (and on a version mismatch writes) one
    // header through the first, which points at a live `Header`.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) })?;
    Ok(())
}
