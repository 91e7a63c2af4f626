//! Crash-safe replacement of state files: write a temp file in the same folder, fsync it, rename it
//! over the target, fsync the folder.
//!
//! A crash or `kill -9` at any point leaves either the old file or the new one, never a torn mix.
//! A failed write leaves the old file as it was.
//!
//! State files are private (`0600`, [`write_private_atomically`]); files in a workspace keep the mode
//! the user gave them ([`StagedReplacement`], which also lets the caller check once more that the
//! file did not change before the new version takes its place).
//!
//! A kill between the temp file and the rename leaves the temp file (`.katachi-tmp-*`) behind:
//! [`remove_stale_temps`] removes those older than [`STALE_TEMP_AGE`] (the agent's home does it for
//! its own folders each time it opens).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The name every temp file of this module starts with.
const TEMP_PREFIX: &str = ".katachi-tmp-";

/// How old a temp file must be before [`remove_stale_temps`] takes it for a killed write's
/// leftover: a write takes milliseconds, so another process's write in progress is never this old.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// A state file could not be replaced; the previous content (if any) is intact.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct AtomicWriteError {
    /// The file that was being replaced.
    pub path: PathBuf,
    /// What the OS said (no room, read-only folder, permissions).
    #[source]
    pub source: std::io::Error,
}

/// Replaces `path` with `bytes` atomically; the new file has mode `0600` on Unix.
///
/// # Errors
/// [`AtomicWriteError`] when any step fails; the old file is then untouched and the temp file removed.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let wrap = |source| AtomicWriteError {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // tempfile creates the file 0600 on Unix, in the same folder so the rename is atomic.
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(wrap)?;
    tmp.write_all(bytes).map_err(wrap)?;
    tmp.as_file().sync_all().map_err(wrap)?;
    tmp.persist(path).map_err(|e| wrap(e.error))?;
    sync_dir(dir).map_err(wrap)?;
    Ok(())
}

/// A new version of a file, written and fsynced beside it but not yet in its place.
///
/// [`StagedReplacement::commit`] renames it over the target; dropping it instead removes the temp
/// file and leaves the target untouched. Between the two the caller can re-check the target (the
/// agent API compares it with the version the client saw, so a concurrent edit is never overwritten).
pub struct StagedReplacement {
    /// The written and fsynced temp file in the target's folder.
    tmp: tempfile::NamedTempFile,
    /// The file it will replace.
    path: PathBuf,
    /// The folder holding both, fsynced after the rename.
    dir: PathBuf,
}

impl std::fmt::Debug for StagedReplacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedReplacement")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StagedReplacement {
    /// Writes `bytes` to a temp file beside `path` with permission bits `mode` (Unix; ignored
    /// elsewhere), and fsyncs it. The mode is set exactly (not filtered by the umask).
    ///
    /// # Errors
    /// [`AtomicWriteError`] when the temp file cannot be created or written; nothing is left behind.
    pub fn stage(path: &Path, bytes: &[u8], mode: u32) -> Result<Self, AtomicWriteError> {
        let wrap = |source| AtomicWriteError {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)
            .map_err(wrap)?;
        set_mode(tmp.as_file(), mode).map_err(wrap)?;
        tmp.write_all(bytes).map_err(wrap)?;
        tmp.as_file().sync_all().map_err(wrap)?;
        Ok(Self {
            tmp,
            path: path.to_path_buf(),
            dir,
        })
    }

    /// Renames the staged file over the target and makes the rename durable.
    ///
    /// # Errors
    /// [`AtomicWriteError`]; when the rename fails the target is untouched and the temp file removed.
    pub fn commit(self) -> Result<(), AtomicWriteError> {
        let wrap = |source| AtomicWriteError {
            path: self.path.clone(),
            source,
        };
        self.tmp.persist(&self.path).map_err(|e| wrap(e.error))?;
        sync_dir(&self.dir).map_err(wrap)?;
        Ok(())
    }

    /// Moves the staged file to the target only if nothing is there yet (`renameat2(NOREPLACE)` or
    /// link + unlink), so creating a file never replaces one that appeared meanwhile.
    ///
    /// # Errors
    /// [`AtomicWriteError`] with kind `AlreadyExists` when the target appeared; the temp file is
    /// then removed and the target untouched.
    pub fn commit_new(self) -> Result<(), AtomicWriteError> {
        let wrap = |source| AtomicWriteError {
            path: self.path.clone(),
            source,
        };
        self.tmp
            .persist_noclobber(&self.path)
            .map_err(|e| wrap(e.error))?;
        sync_dir(&self.dir).map_err(wrap)?;
        Ok(())
    }
}

/// Replaces `path` with `bytes` atomically, giving the new file permission bits `mode` (Unix).
///
/// # Errors
/// [`AtomicWriteError`] when any step fails; the old file is then untouched and the temp file removed.
pub fn write_atomically_with_mode(
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), AtomicWriteError> {
    StagedReplacement::stage(path, bytes, mode)?.commit()
}

fn set_mode(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

/// Makes a rename in `dir` durable.
/// Removes the temp files this module left in `dir` (directly in it) when a write was killed before
/// its rename, once they are [`STALE_TEMP_AGE`] older than `now`; returns how many it removed.
/// Only regular files named `.katachi-tmp-*` are touched (a symlink of that name is not followed
/// or removed); an entry that cannot be read or removed is skipped.
pub fn remove_stale_temps(dir: &Path, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        // DirEntry::metadata does not follow symlinks
        let Ok(meta) = entry.metadata() else { continue };
        let stale = meta
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        if meta.file_type().is_file() && stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_temp_files_of_killed_writes_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for name in [
            ".katachi-tmp-old",
            ".katachi-tmp-fresh",
            "state",
            ".other-tmp-old",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.join(".katachi-tmp-folder")).unwrap();
        let target = dir.join("outside");
        std::fs::write(&target, b"kept").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, dir.join(".katachi-tmp-link")).unwrap();
        let now = SystemTime::now();
        let old = now - STALE_TEMP_AGE - Duration::from_secs(1);
        for name in [".katachi-tmp-old", "state", ".other-tmp-old"] {
            std::fs::File::options()
                .write(true)
                .open(dir.join(name))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }

        assert_eq!(remove_stale_temps(dir, now), 1);
        let mut left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            ".katachi-tmp-folder",
            ".katachi-tmp-fresh",
            ".other-tmp-old",
            "outside",
            "state",
        ];
        if cfg!(unix) {
            want.insert(2, ".katachi-tmp-link");
        }
        assert_eq!(
            left, want,
            "a write in progress, other files, folders and links stay"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        assert_eq!(remove_stale_temps(&dir.join("missing"), now), 0);
    }

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("state");
        write_private_atomically(&p, b"one").unwrap();
        write_private_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("state");
        write_private_atomically(&p, b"x").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[cfg(unix)]
    #[test]
    fn staged_replacement_sets_the_given_mode() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("script.sh");
        write_atomically_with_mode(&p, b"#!/bin/sh\n", 0o755).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn dropped_staged_replacement_leaves_the_target_and_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("file");
        std::fs::write(&p, b"old").unwrap();
        let staged = StagedReplacement::stage(&p, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
        drop(staged);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn commit_new_never_replaces_an_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("file");
        let staged = StagedReplacement::stage(&p, b"new", 0o644).unwrap();
        std::fs::write(&p, b"appeared meanwhile").unwrap();
        let err = staged.commit_new().unwrap_err();
        assert_eq!(err.source.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"appeared meanwhile");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("state");
        write_private_atomically(&p, b"old").unwrap();
        // A target inside a missing folder cannot be written; the old file elsewhere is untouched.
        let bad = tmp.path().join("missing").join("state");
        assert!(write_private_atomically(&bad, b"new").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
    }
}
