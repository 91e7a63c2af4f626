//! Opening a resolved path, re-checked against what was resolved (rules 4–6 of `paths`): the
//! kernel refuses symlinks and escapes that appeared since the check (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` from the root's descriptor on Linux),
//! the opened (device, inode) must be the resolved one, and hard-linked or special files are refused.

use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use super::error::{ApiError, ApiResult, ErrorCode};
use super::paths::{changed, is_loop, RelPath, Resolved, WorkspaceRoot};

impl WorkspaceRoot {
    /// Opens a resolved regular file for reading, re-checking it is the one that was resolved.
    ///
    /// # Errors
    /// `path.not_a_file`, `path.special_file`, `path.hard_link`, `path.changed`, `io.failed`.
    pub fn open_file(&self, r: &Resolved) -> ApiResult<File> {
        check_regular_single_link(r)?;
        let file = open_beneath(&self.root, &r.canonical_rel, OpenKind::ReadFile)
            .map_err(|e| open_error(&r.requested, &e))?;
        verify_same_file(r, &file)?;
        Ok(file)
    }

    /// Opens a resolved folder (to anchor a write in it), re-checking it is the one that was resolved.
    ///
    /// # Errors
    /// `path.not_a_directory`, `path.changed`, `io.failed`.
    pub fn open_dir(&self, r: &Resolved) -> ApiResult<File> {
        if !r.meta.is_dir() {
            return Err(ApiError::new(
                ErrorCode::PathNotADirectory,
                format!("{:?} is not a folder", r.requested.as_str()),
            ));
        }
        let dir = open_beneath(&self.root, &r.canonical_rel, OpenKind::Directory)
            .map_err(|e| open_error(&r.requested, &e))?;
        verify_same_file(r, &dir)?;
        Ok(dir)
    }
}

/// Refuses directories, special files and multiply-linked files (rules 5 and 6).
///
/// # Errors
/// `path.not_a_file`, `path.special_file`, `path.hard_link`.
pub fn check_regular_single_link(r: &Resolved) -> ApiResult<()> {
    let ft = r.meta.file_type();
    if ft.is_dir() {
        return Err(ApiError::new(
            ErrorCode::PathNotAFile,
            format!("{:?} is a folder", r.requested.as_str()),
        ));
    }
    if !ft.is_file() {
        return Err(ApiError::new(
            ErrorCode::PathSpecialFile,
            format!(
                "{:?} is a FIFO, socket or device, which the API does not open",
                r.requested.as_str()
            ),
        ));
    }
    if link_count(&r.meta) > 1 {
        // reject hard links: another name of this file may be outside the workspace
        return Err(ApiError::new(
            ErrorCode::PathHardLink,
            format!(
                "{:?} has several hard links; one may be outside the workspace, so the API does not read or write it (copy it to a new file to use it)",
                r.requested.as_str()
            ),
        ));
    }
    Ok(())
}

/// The number of hard links of a file (1 where the OS does not say).
pub fn link_count(meta: &Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.nlink()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        1
    }
}

/// A path that a write can use to reach `name` inside the opened folder `dir`, so that a folder
/// swapped after the check cannot redirect it. On Linux that is `/proc/self/fd/N/name`; elsewhere
/// (or without /proc) the canonical path.
pub fn anchored_path(dir: &File, canonical_dir: &Path, name: &str) -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd_dir = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        if fd_dir.is_dir() {
            return fd_dir.join(name);
        }
    }
    let _ = dir;
    canonical_dir.join(name)
}

fn open_error(rel: &RelPath, e: &io::Error) -> ApiError {
    match e.kind() {
        io::ErrorKind::NotFound => ApiError::new(
            ErrorCode::PathNotFound,
            format!("{:?} no longer exists", rel.as_str()),
        ),
        // ELOOP / EXDEV from openat2: a symlink or escape appeared after the check
        io::ErrorKind::CrossesDevices => changed(rel),
        _ if is_loop(e) => changed(rel),
        _ => ApiError::io("opening the file", e),
    }
}

/// What is being opened.
#[derive(Debug, Clone, Copy)]
enum OpenKind {
    /// A regular file, read-only.
    ReadFile,
    /// A folder, read-only (to anchor writes and fsync it).
    Directory,
}

/// Opens `rel` (canonical, symlink-free at check time) under `root`, refusing any symlink on the way.
#[cfg(target_os = "linux")]
fn open_beneath(root: &Path, rel: &str, kind: OpenKind) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    // O_NONBLOCK: a FIFO swapped in after the check must not hang the open
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    if matches!(kind, OpenKind::Directory) {
        flags |= OFlags::DIRECTORY;
    }
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let target = if rel.is_empty() { "." } else { rel };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&root_fd, target, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(File::from(fd)),
        // openat2 missing (kernel < 5.6, or filtered by a seccomp profile): open by path and check
        // where the descriptor really points
        Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
            let fd = rustix::fs::openat(&root_fd, target, flags, Mode::empty())?;
            let file = File::from(fd);
            {
                use std::os::fd::AsRawFd;
                let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
                if let Ok(real) = real {
                    if !real.starts_with(root) {
                        return Err(io::Error::from(io::ErrorKind::CrossesDevices));
                    }
                }
            }
            Ok(file)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens `abs` with `O_NOFOLLOW` on the last component; the (dev, ino) check follows.
#[cfg(all(unix, not(target_os = "linux")))]
fn open_beneath(root: &Path, rel: &str, kind: OpenKind) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    if matches!(kind, OpenKind::Directory) {
        flags |= OFlags::DIRECTORY;
    }
    let fd = rustix::fs::open(root.join(rel), flags, Mode::empty())?;
    Ok(File::from(fd))
}

/// Opens `abs` (Windows: no descriptor checks; canonicalisation and the prefix check remain).
#[cfg(not(unix))]
fn open_beneath(root: &Path, rel: &str, kind: OpenKind) -> io::Result<File> {
    let _ = kind;
    File::open(root.join(rel))
}

/// Refuses an opened file that is not the one resolved (TOCTOU: swapped between check and open).
fn verify_same_file(r: &Resolved, file: &File) -> ApiResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let now = file
            .metadata()
            .map_err(|e| ApiError::io("examining the opened file", &e))?;
        if (now.dev(), now.ino()) != (r.meta.dev(), r.meta.ino()) {
            return Err(changed(&r.requested));
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (r, file);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn symlink_out_of_the_root_is_outside_and_one_inside_is_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::write(ws.join("src/a.txt"), b"a").unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../secret", ws.join("out")).unwrap();
        std::os::unix::fs::symlink("src/a.txt", ws.join("in")).unwrap();
        let root = WorkspaceRoot {
            id: 1,
            root: std::fs::canonicalize(&ws).unwrap(),
            protected: Default::default(),
        };
        let out = root.resolve(&RelPath::parse(b"out").unwrap()).unwrap_err();
        assert_eq!(out.code(), ErrorCode::PathOutsideWorkspace);
        let inside = root.resolve(&RelPath::parse(b"in").unwrap()).unwrap();
        assert_eq!(inside.canonical_rel, "src/a.txt");
        assert!(root.open_file(&inside).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_swapped_file_is_detected_after_open() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::write(ws.join("f"), b"one").unwrap();
        let root = WorkspaceRoot {
            id: 1,
            root: ws.clone(),
            protected: Default::default(),
        };
        let r = root.resolve(&RelPath::parse(b"f").unwrap()).unwrap();
        // replaced by another file between the check and the open (the old one kept, so its
        // inode number cannot be reused)
        std::fs::rename(ws.join("f"), ws.join("f.old")).unwrap();
        std::fs::write(ws.join("g"), b"two").unwrap();
        std::fs::rename(ws.join("g"), ws.join("f")).unwrap();
        assert_eq!(
            root.open_file(&r).unwrap_err().code(),
            ErrorCode::PathChanged
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_folder_swapped_for_a_symlink_is_refused_by_the_open() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let ws = base.join("ws");
        std::fs::create_dir_all(ws.join("d")).unwrap();
        std::fs::write(ws.join("d/f"), b"inside").unwrap();
        std::fs::create_dir(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/f"), b"secret").unwrap();
        let root = WorkspaceRoot {
            id: 1,
            root: ws.clone(),
            protected: Default::default(),
        };
        let r = root.resolve(&RelPath::parse(b"d/f").unwrap()).unwrap();
        // the attacker swaps `d` for a symlink to the outside folder after the check
        std::fs::rename(ws.join("d"), base.join("old-d")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), ws.join("d")).unwrap();
        assert_eq!(
            root.open_file(&r).unwrap_err().code(),
            ErrorCode::PathChanged
        );
    }
}
