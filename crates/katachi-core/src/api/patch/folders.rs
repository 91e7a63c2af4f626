//! New folders for the files a patch creates (`--- /dev/null` into `new/dir/file.rs`): planned
//! with the patch and checked by the path rules, made when it is staged — relative to the opened
//! parent's descriptor, each new folder opened without following symlinks — and removed again
//! (innermost first, only while empty) unless the patch goes through.
//!
//! Unix only; elsewhere a new file's folder must exist (`path.not_found`).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::paths::{changed, protected, RelPath, Resolved, WorkspaceRoot};

/// Most folders one new file may need.
const MAX_NEW_FOLDERS: usize = 16;

/// Permission bits of a new folder (before the umask).
#[cfg(unix)]
const NEW_FOLDER_MODE: u32 = 0o755;

/// For a new file at `rel` whose folder is missing (`missing` is that refusal): the nearest
/// existing folder, the folders to make in it (outermost first), and the file's name.
///
/// # Errors
/// `missing` where folders are not made (not Unix); `path.not_a_directory` when the nearest
/// existing ancestor is a file; `path.dangling_symlink`; `path.protected` for the new path;
/// `patch.invalid` past [`MAX_NEW_FOLDERS`]; the path rules' refusals for the ancestor.
pub(super) fn plan_new_folders(
    ws: &WorkspaceRoot,
    rel: &RelPath,
    missing: ApiError,
) -> ApiResult<(Resolved, Vec<String>, String)> {
    if cfg!(not(unix)) {
        return Err(missing);
    }
    let Some((mut folder, name)) = rel.split_last() else {
        return Err(missing);
    };
    let mut new_folders = Vec::new();
    let ancestor = loop {
        match ws.resolve(&folder) {
            Ok(found) => break found,
            Err(e) if e.code() == ErrorCode::PathNotFound => {
                let Some((up, last)) = folder.split_last() else {
                    return Err(e);
                };
                new_folders.push(last.to_owned());
                folder = up;
            }
            Err(e) => return Err(e),
        }
        if new_folders.len() > MAX_NEW_FOLDERS {
            return Err(ApiError::new(
                ErrorCode::PatchInvalid,
                format!(
                    "{:?} needs more than {MAX_NEW_FOLDERS} new folders",
                    rel.as_str()
                ),
            ));
        }
    };
    if !ancestor.meta.is_dir() {
        return Err(ApiError::new(
            ErrorCode::PathNotADirectory,
            format!("{:?} is not a folder", ancestor.requested.as_str()),
        ));
    }
    new_folders.reverse();
    // the outermost new folder must not be there at all: a dangling symlink would redirect it
    if let Some(first) = new_folders.first() {
        match std::fs::symlink_metadata(ancestor.abs.join(first)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ApiError::new(
                    ErrorCode::PathDanglingSymlink,
                    format!(
                        "a folder on {:?} is a symlink to nothing; remove it first",
                        rel.as_str()
                    ),
                ))
            }
            Ok(_) => return Err(changed(rel)),
            Err(e) => return Err(ApiError::io("examining the path", &e)),
        }
    }
    let canonical = std::iter::once(ancestor.canonical_rel.as_str())
        .chain(new_folders.iter().map(String::as_str))
        .chain(std::iter::once(name))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let names = [rel.as_str(), canonical.as_str()];
    if let Some(rule) = ws.protected.write_rule(&names, Some(&ancestor.abs)) {
        return Err(protected(&ws.root, rel, rule));
    }
    let name = name.to_owned();
    Ok((ancestor, new_folders, name))
}

/// The folders made for one file of a patch; removed on drop unless [`NewFolders::keep`] was called.
#[derive(Debug, Default)]
pub(super) struct NewFolders {
    /// Each folder made: its parent's descriptor and its name, outermost first.
    made: Vec<(File, String)>,
    /// The patch went through.
    keep: bool,
}

impl NewFolders {
    /// Keeps the folders (the patch was committed).
    pub(super) fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for NewFolders {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for (parent, name) in self.made.iter().rev() {
            // only while empty: another file of the patch, or someone else, may have used it
            #[cfg(unix)]
            if let Err(e) =
                rustix::fs::unlinkat(parent, name.as_str(), rustix::fs::AtFlags::REMOVEDIR)
            {
                tracing::warn!(folder = name, error = %e, "api: a folder made for a failed patch was left");
            }
            #[cfg(not(unix))]
            let _ = (parent, name);
        }
    }
}

/// Makes `names` (outermost first) in the opened folder `dir` (at `abs`); returns them, the
/// innermost folder opened, and its path. A folder already there (made for an earlier file of the
/// patch) is used when it is a real folder.
///
/// # Errors
/// `path.changed` when a name turns out to be a symlink or a file; `io.failed`.
#[cfg(unix)]
pub(super) fn make(
    dir: File,
    abs: &Path,
    names: &[String],
    rel: &RelPath,
) -> ApiResult<(NewFolders, File, PathBuf)> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    let mut folders = NewFolders::default();
    let mut current = dir;
    let mut current_abs = abs.to_path_buf();
    for name in names {
        let made = match rustix::fs::mkdirat(
            &current,
            name.as_str(),
            Mode::from_raw_mode(NEW_FOLDER_MODE),
        ) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => return Err(ApiError::io("making a folder", &e.into())),
        };
        // never through a symlink: one swapped in after the mkdir is refused here
        let opened = rustix::fs::openat(
            &current,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => changed(rel),
            other => ApiError::io("opening a new folder", &other.into()),
        })?;
        let next = File::from(opened);
        if made {
            folders.made.push((current, name.clone()));
        }
        current = next;
        current_abs.push(name);
    }
    Ok((folders, current, current_abs))
}

/// Where folders are not made: only an existing folder is used (see [`plan_new_folders`]).
///
/// # Errors
/// `path.not_found` when `names` is not empty.
#[cfg(not(unix))]
pub(super) fn make(
    dir: File,
    abs: &Path,
    names: &[String],
    rel: &RelPath,
) -> ApiResult<(NewFolders, File, PathBuf)> {
    if !names.is_empty() {
        return Err(ApiError::new(
            ErrorCode::PathNotFound,
            format!(
                "the folder of {:?} does not exist; create it first",
                rel.as_str()
            ),
        ));
    }
    Ok((NewFolders::default(), dir, abs.to_path_buf()))
}
