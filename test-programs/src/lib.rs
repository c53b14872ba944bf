//! What the test programs in `src/bin/` share: the i386 system call entry (`int 0x80`).

pub mod int80;
