//! What the test programs in `src/bin/` share: the i386 ABI (`int 0x80`, memory below 4 GiB).

pub mod int80;
