//! Handles on files without reading them (`O_PATH`), and resolving a caller's path inside its own
//! root (openat2(2) with RESOLVE_IN_ROOT).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// `openat2(2)` with RESOLVE_IN_ROOT: opens `path` (absolute or relative to `root`) as `O_PATH`,
/// resolving every symlink and `..` as if `root` were `/`. This is how a caller's path is resolved
/// when the caller is chrooted, without trusting absolute symlinks to stay inside.
pub fn open_in_root(root: &impl AsFd, path: &Path) -> io::Result<OwnedFd> {
    let how = nix::fcntl::OpenHow::new()
        .flags(nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC)
        .resolve(nix::fcntl::ResolveFlag::RESOLVE_IN_ROOT);
    Ok(nix::fcntl::openat2(root.as_fd(), path, how)?)
}

/// Opens `path` as O_PATH, following symlinks: a handle on the file itself, without reading it.
pub fn open_path(path: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?)
}

/// Opens a directory as O_PATH (for [`open_in_root`]).
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok(nix::fcntl::open(
        path,
        flags,
        nix::sys::stat::Mode::empty(),
    )?)
}
