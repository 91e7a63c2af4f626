//! Crash-safe replacement of state files: write a temp file in the same folder, fsync it, rename it
//! over the target, fsync the folder.
//!
//! A crash or `kill -9` at any point leaves either the old file or the new one, never a torn mix.
//! A failed write leaves the old file as it was.

use std::io::Write;
use std::path::{Path, PathBuf};

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
        .prefix(".katachi-tmp-")
        .tempfile_in(dir)
        .map_err(wrap)?;
    tmp.write_all(bytes).map_err(wrap)?;
    tmp.as_file().sync_all().map_err(wrap)?;
    tmp.persist(path).map_err(|e| wrap(e.error))?;
    sync_dir(dir).map_err(wrap)?;
    Ok(())
}

/// Makes a rename in `dir` durable.
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
