//! Sensors: one file per trapped family. Each turns a trapped call into plain data about the
//! activity (what is launched, where it connects) so that the policy can decide on it.

pub mod exec;
pub mod net;

use std::os::unix::fs::MetadataExt;

/// Which file a path named when it was looked at: device and inode, as stat(2) reports them.
/// Comparing identities (not paths) is what proves that the file that runs is the one decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl From<&nix::sys::stat::FileStat> for FileId {
    fn from(st: &nix::sys::stat::FileStat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

impl From<&std::fs::Metadata> for FileId {
    fn from(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}
