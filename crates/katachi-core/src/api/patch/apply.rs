//! The three steps of a patch (see the parent module): plan in memory, stage beside the targets,
//! commit with rollback.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::PathBuf;

use diffy::patch_set::{FileMode, FileOperation, ParseOptions, PatchKind, PatchSet};
use sha2::{Digest, Sha256};

use super::folders::{make as make_folders, plan_new_folders, NewFolders};
use super::{FileChange, PatchResult, PatchedFile};
use crate::api::checked_open::anchored_path;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::paths::{RelPath, Resolved, WorkspaceRoot, WriteTarget};
use crate::api::write::{permission_bits, same_version, write_error, NEW_FILE_MODE};
use crate::atomic_file::StagedReplacement;

/// Permission bits of a file a git patch creates as executable (`new file mode 100755`).
const NEW_EXECUTABLE_MODE: u32 = 0o755;

/// What a patch will do, computed in memory; nothing written yet.
#[derive(Debug)]
pub(crate) struct Plan {
    /// One per file, in the patch's order.
    edits: Vec<Edit>,
}

/// One file's change.
#[derive(Debug)]
struct Edit {
    /// The path as the patch names it.
    path: RelPath,
    /// The file changed (symlinks resolved), workspace-relative.
    resolved_path: String,
    /// Its folder and name.
    parent: Resolved,
    /// Folders to make in `parent` first, outermost first (a new file in a new folder).
    new_folders: Vec<String>,
    /// Its name in `parent` (in the innermost new folder).
    name: String,
    /// What happens to it.
    change: FileChange,
    /// The current content and metadata (modifications and deletions).
    old: Option<(Vec<u8>, Metadata)>,
    /// The new content (creations and modifications).
    new: Option<Vec<u8>>,
    /// Permission bits of the new content, and of the old one when restored.
    mode: u32,
}

impl Plan {
    /// The answer for this plan.
    pub(crate) fn result(&self, applied: bool) -> PatchResult {
        PatchResult {
            applied,
            files: self
                .edits
                .iter()
                .map(|e| PatchedFile {
                    path: e.path.as_str().to_owned(),
                    resolved_path: e.resolved_path.clone(),
                    change: e.change,
                    sha256: e.new.as_ref().map(|b| hex::encode(Sha256::digest(b))),
                    size: e.new.as_ref().map_or(0, |b| b.len() as u64),
                })
                .collect(),
        }
    }
}

/// Parses `text` and applies every hunk in memory against the files as they are now.
///
/// # Errors
/// `patch.invalid`, `patch.does_not_apply`, `file.too_large`, and the path rules' refusals;
/// nothing is written in any case.
pub(crate) fn plan_patch(ws: &WorkspaceRoot, text: &str, cap: usize) -> ApiResult<Plan> {
    let options = if text.lines().any(|l| l.starts_with("diff --git ")) {
        ParseOptions::gitdiff()
    } else {
        ParseOptions::unidiff()
    };
    let files = PatchSet::parse_bytes(text.as_bytes(), options)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("the patch cannot be parsed: {e}")))?;
    if files.is_empty() {
        return Err(invalid(
            "the patch holds no file; send a unified diff: `--- a/path`, `+++ b/path`, then `@@ -l,n +l,n @@` hunks",
        ));
    }
    let targets = files
        .iter()
        .map(|f| target_of(f.operation()))
        .collect::<ApiResult<Vec<_>>>()?;
    let twice = |p: &str| {
        invalid(format!(
            "{p:?} is changed twice by the patch; put all of its hunks in one section"
        ))
    };
    for (i, (_, path)) in targets.iter().enumerate() {
        if targets[..i].iter().any(|(_, p)| p == path) {
            return Err(twice(path));
        }
    }
    let mut edits: Vec<Edit> = Vec::with_capacity(files.len());
    for (file, (change, path)) in files.iter().zip(targets) {
        let PatchKind::Text(hunks) = file.patch() else {
            return Err(invalid(format!(
                "{path:?}: binary patches are not supported; write the file instead"
            )));
        };
        let rel = RelPath::parse(path.as_bytes())?;
        let executable = matches!(file.new_mode(), Some(FileMode::Executable));
        let edit = plan_file(ws, rel, change, executable, cap, |old| {
            diffy::apply_bytes(old, hunks)
        })?;
        // two names of one file (a symlink and its target)
        if edits.iter().any(|e| e.resolved_path == edit.resolved_path) {
            return Err(twice(edit.path.as_str()));
        }
        edits.push(edit);
    }
    Ok(Plan { edits })
}

/// Plans, stages and commits the patch in `text`.
///
/// # Errors
/// As [`plan_patch`], plus `file.conflict` (a file changed meanwhile) and `io.failed`; the files
/// committed before the failure are restored.
pub(crate) fn apply_patch(ws: &WorkspaceRoot, text: &str, cap: usize) -> ApiResult<PatchResult> {
    let plan = plan_patch(ws, text, cap)?;
    commit(stage(ws, &plan)?)?;
    Ok(plan.result(true))
}

/// The change and the workspace-relative path of one file's section.
fn target_of(op: &FileOperation<'_, [u8]>) -> ApiResult<(FileChange, String)> {
    let text = |p: &[u8]| {
        String::from_utf8(p.to_vec()).map_err(|_| invalid("a path in the patch is not UTF-8"))
    };
    let (change, old, new) =
        match op {
            FileOperation::Create(p) => (FileChange::Created, None, Some(text(p)?)),
            FileOperation::Delete(p) => (FileChange::Deleted, Some(text(p)?), None),
            FileOperation::Modify { original, modified } => (
                FileChange::Modified,
                Some(text(original)?),
                Some(text(modified)?),
            ),
            FileOperation::Rename { .. } | FileOperation::Copy { .. } => return Err(invalid(
                "renames and copies are not supported; create the new file and delete the old one",
            )),
        };
    // git's `a/` and `b/` prefixes, dropped only when every side present carries its own
    let prefixed = old.as_deref().is_none_or(|o| o.starts_with("a/"))
        && new.as_deref().is_none_or(|n| n.starts_with("b/"));
    let strip = |p: Option<String>| p.map(|p| if prefixed { p[2..].to_owned() } else { p });
    let (old, new) = (strip(old), strip(new));
    match (old, new) {
        (Some(o), Some(n)) if o != n => Err(invalid(format!(
            "the section for {o:?} names another new path {n:?}; renames are not supported"
        ))),
        (_, Some(p)) | (Some(p), None) => Ok((change, p)),
        (None, None) => Err(invalid("a section of the patch names no file")),
    }
}

/// Plans one file: resolves it by the write rules, reads it, applies its hunks with `apply`.
fn plan_file(
    ws: &WorkspaceRoot,
    rel: RelPath,
    change: FileChange,
    executable: bool,
    cap: usize,
    apply: impl Fn(&[u8]) -> Result<Vec<u8>, diffy::ApplyError>,
) -> ApiResult<Edit> {
    let hunk_error = |e: diffy::ApplyError| {
        ApiError::new(
            ErrorCode::PatchDoesNotApply,
            format!(
                "{:?}: {e} (its context or removed lines are not in the file); read the file again and make the patch against its current content",
                rel.as_str()
            ),
        )
    };
    let new_file = |parent: Resolved, new_folders: Vec<String>, name: String| {
        let new = apply(b"").map_err(hunk_error)?;
        check_size(&rel, new.len(), cap)?;
        let resolved_path = std::iter::once(parent.canonical_rel.as_str())
            .chain(new_folders.iter().map(String::as_str))
            .chain(std::iter::once(name.as_str()))
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        Ok(Edit {
            path: rel.clone(),
            resolved_path,
            parent,
            new_folders,
            name,
            change,
            old: None,
            new: Some(new),
            mode: if executable {
                NEW_EXECUTABLE_MODE
            } else {
                NEW_FILE_MODE
            },
        })
    };
    let target = match ws.resolve_for_write(&rel) {
        // a new file whose folder is missing: the folders are made with the patch
        Err(e) if change == FileChange::Created && e.code() == ErrorCode::PathNotFound => {
            let (parent, new_folders, name) = plan_new_folders(ws, &rel, e)?;
            return new_file(parent, new_folders, name);
        }
        other => other?,
    };
    match (change, target) {
        (FileChange::Created, WriteTarget::New { parent, name }) => {
            new_file(parent, Vec::new(), name)
        }
        (FileChange::Created, WriteTarget::Existing(_)) => Err(ApiError::new(
            ErrorCode::PatchDoesNotApply,
            format!(
                "{:?}: the patch creates it (`--- /dev/null`) but it already exists; read it and patch it instead",
                rel.as_str()
            ),
        )),
        (_, WriteTarget::New { .. }) => Err(ApiError::new(
            ErrorCode::PathNotFound,
            format!(
                "{:?} does not exist; to create it use `--- /dev/null`",
                rel.as_str()
            ),
        )),
        (_, WriteTarget::Existing(target)) => {
            if change == FileChange::Deleted && target.canonical_rel != rel.as_str() {
                return Err(invalid(format!(
                    "{:?} is a symlink; a patch deletes only regular files, not through links",
                    rel.as_str()
                )));
            }
            let file = ws.open_file(&target)?;
            let meta = file
                .metadata()
                .map_err(|e| ApiError::io("examining the file", &e))?;
            let old = read_capped_file(&rel, file, cap)?;
            let new = apply(&old).map_err(hunk_error)?;
            if change == FileChange::Deleted && !new.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::PatchDoesNotApply,
                    format!(
                        "{:?}: the deletion does not remove all of the file's current content; read it again",
                        rel.as_str()
                    ),
                ));
            }
            check_size(&rel, new.len(), cap)?;
            let canonical = RelPath::parse(target.canonical_rel.as_bytes())?;
            let (parent_rel, name) = canonical
                .split_last()
                .ok_or_else(|| ApiError::new(ErrorCode::PathNotAFile, "not a file"))?;
            let parent = ws.resolve(&parent_rel)?;
            Ok(Edit {
                path: rel.clone(),
                resolved_path: target.canonical_rel.clone(),
                new_folders: Vec::new(),
                name: name.to_owned(),
                parent,
                change,
                mode: permission_bits(&meta),
                old: Some((old, meta)),
                new: (change != FileChange::Deleted).then_some(new),
            })
        }
    }
}

/// `file.too_large` when a new content exceeds the write cap.
fn check_size(rel: &RelPath, len: usize, cap: usize) -> ApiResult<()> {
    if len > cap {
        return Err(ApiError::new(
            ErrorCode::FileTooLarge,
            format!(
                "{:?} would be {len} bytes, more than the write cap of {cap} bytes",
                rel.as_str()
            ),
        ));
    }
    Ok(())
}

/// The file's bytes, refused past `cap`.
fn read_capped_file(rel: &RelPath, file: File, cap: usize) -> ApiResult<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ApiError::io("reading the file", &e))?;
    if bytes.len() > cap {
        return Err(ApiError::new(
            ErrorCode::FileTooLarge,
            format!(
                "{:?} is larger than the write cap of {cap} bytes; it cannot be patched through the API",
                rel.as_str()
            ),
        ));
    }
    Ok(bytes)
}

/// One edit with its new content written beside the target, not yet in place.
#[derive(Debug)]
pub(crate) struct Staged<'p> {
    /// The new content, staged (creations and modifications). Declared before `dir`, so that it
    /// is dropped first: removing an unused temp file goes through the folder's descriptor.
    staged: Option<StagedReplacement>,
    /// The folders made for it (removed on drop unless the patch went through); after `staged`,
    /// so that they are empty by then.
    folders: NewFolders,
    /// The edit.
    edit: &'p Edit,
    /// The opened folder; `anchored` goes through its descriptor, so it must outlive the commit.
    dir: File,
    /// The target, reached through `dir`.
    anchored: PathBuf,
}

/// Writes every new content to a temp file beside its target (fsynced).
///
/// # Errors
/// `path.changed` (a folder swapped since the plan), `io.failed`; the temp files made so far are
/// removed.
pub(crate) fn stage<'p>(ws: &WorkspaceRoot, plan: &'p Plan) -> ApiResult<Vec<Staged<'p>>> {
    plan.edits
        .iter()
        .map(|edit| {
            let parent = ws.open_dir(&edit.parent)?;
            let (folders, dir, dir_abs) =
                make_folders(parent, &edit.parent.abs, &edit.new_folders, &edit.path)?;
            let anchored = anchored_path(&dir, &dir_abs, &edit.name);
            let staged = match &edit.new {
                Some(bytes) => Some(
                    StagedReplacement::stage(&anchored, bytes, edit.mode)
                        .map_err(|e| write_error(&e))?,
                ),
                None => None,
            };
            Ok(Staged {
                folders,
                edit,
                dir,
                anchored,
                staged,
            })
        })
        .collect()
}

/// Puts every staged edit in place, in order; when one fails, restores those done (in reverse).
///
/// # Errors
/// `file.conflict` (a file changed since it was read), `io.failed`; the message says whether the
/// earlier files were restored.
pub(crate) fn commit(staged: Vec<Staged<'_>>) -> ApiResult<()> {
    let mut done: Vec<Staged<'_>> = Vec::with_capacity(staged.len());
    for mut one in staged {
        if let Err(e) = commit_one(&mut one) {
            let restored = rollback(&done);
            let message = match (done.is_empty(), restored) {
                (true, _) => e.message().to_owned(),
                (false, true) => format!(
                    "{}; the files changed before it were restored, nothing was changed",
                    e.message()
                ),
                (false, false) => format!(
                    "{}; some files changed before it could not be restored (see the agent's log) — check `git status`",
                    e.message()
                ),
            };
            return Err(ApiError::new(e.code(), message));
        }
        done.push(one);
    }
    for one in &mut done {
        one.folders.keep();
    }
    Ok(())
}

/// Puts one edit in place, re-checking the file first.
fn commit_one(one: &mut Staged<'_>) -> ApiResult<()> {
    let edit = one.edit;
    let conflict = |why: &str| {
        ApiError::new(
            ErrorCode::FileConflict,
            format!(
                "{:?} {why}; nothing was written, read it again and redo the patch",
                edit.path.as_str()
            ),
        )
    };
    // re-check just before the change: another program may have written meanwhile
    if let Some((_, then)) = &edit.old {
        match std::fs::symlink_metadata(&one.anchored) {
            Ok(now) if same_version(then, &now) => {}
            _ => return Err(conflict("was changed while the patch was being applied")),
        }
    }
    match (edit.change, one.staged.take()) {
        (FileChange::Modified, Some(staged)) => staged.commit().map_err(|e| write_error(&e)),
        (FileChange::Created, Some(staged)) => staged.commit_new().map_err(|e| {
            if e.source.kind() == std::io::ErrorKind::AlreadyExists {
                conflict("was created by someone else meanwhile")
            } else {
                write_error(&e)
            }
        }),
        (FileChange::Deleted, _) => {
            std::fs::remove_file(&one.anchored)
                .map_err(|e| ApiError::io("deleting the file", &e))?;
            one.dir
                .sync_all()
                .map_err(|e| ApiError::io("syncing the folder", &e))
        }
        (_, None) => Err(ApiError::new(
            ErrorCode::IoFailed,
            "a patched file was not staged",
        )),
    }
}

/// Restores the edits in `done`, last first; whether all were restored.
fn rollback(done: &[Staged<'_>]) -> bool {
    let mut all = true;
    for one in done.iter().rev() {
        let edit = one.edit;
        let restore = |commit_new: bool| -> std::io::Result<()> {
            let Some((old, _)) = &edit.old else {
                return Ok(());
            };
            let staged =
                StagedReplacement::stage(&one.anchored, old, edit.mode).map_err(|e| e.source)?;
            if commit_new {
                staged.commit_new().map_err(|e| e.source)
            } else {
                staged.commit().map_err(|e| e.source)
            }
        };
        let result = match edit.change {
            FileChange::Modified => restore(false),
            FileChange::Deleted => restore(true),
            FileChange::Created => std::fs::remove_file(&one.anchored),
        };
        if let Err(e) = result {
            all = false;
            tracing::error!(
                path = edit.resolved_path,
                error = %e,
                "api: a patched file could not be restored after a later file failed"
            );
        }
    }
    all
}

/// `patch.invalid` with `message`.
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::PatchInvalid, message)
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
