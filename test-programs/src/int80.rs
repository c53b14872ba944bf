//! The i386 ABI from a 64-bit test program: one system call through `int 0x80`, and memory below
//! 4 GiB for its pointers, shared by the programs that check the defender's handling of that ABI.

/// One i386 system call through `int 0x80`, from this 64-bit process; returns eax (sign-extended).
/// rbx is reserved by LLVM, so it is swapped in and out around the instruction.
pub fn int80(nr: u32, ebx: u32, ecx: u32, edx: u32) -> i32 {
    let ret: u64;
    // SAFETY: `int 0x80` enters the kernel's i386 system call path; the only memory it reads is
    // what `ebx`/`ecx`/`edx` point to (below 4 GiB, prepared by the caller). rbx is restored by
    // the second xchg; r8-r11 are declared clobbered because older kernels did not preserve them.
    unsafe {
        std::arch::asm!(
            "xchg {b}, rbx",
            "int 0x80",
            "xchg {b}, rbx",
            b = inout(reg) u64::from(ebx) => _,
            inlateout("rax") u64::from(nr) => ret,
            in("rcx") u64::from(ecx),
            in("rdx") u64::from(edx),
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    ret as u32 as i32
}

/// A fresh, zeroed, writable mapping of `len` bytes below 4 GiB (MAP_32BIT), where the i386 and
/// x32 ABIs can point (their pointers are 32 bits). Never unmapped: what a call reads there must
/// outlive it.
pub fn low_memory(len: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no existing
    // memory is affected.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    assert!(
        base != libc::MAP_FAILED,
        "mmap(MAP_32BIT): {}",
        std::io::Error::last_os_error()
    );
    assert!(
        base as usize + len <= u32::MAX as usize,
        "MAP_32BIT gave high memory"
    );
    base.cast()
}
