//! `POST /v1/workspaces/{id}/patch`: apply a (multi-file) unified diff, all of it or nothing.
//!
//! The body is `{"patch": "<unified diff>", "check": false}`. The diff is plain unified (`---` /
//! `+++` / `@@`) or git's (`diff --git`, `new file mode`, `deleted file mode`); paths are relative
//! to the workspace root, with git's `a/` and `b/` prefixes dropped when both sides carry them
//! (or the one side of a creation or deletion). `--- /dev/null` creates a file (and, on Unix, its
//! missing folders: see `folders`), `+++ /dev/null` deletes one. Renames, copies and binary
//! patches are refused (`patch.invalid`).
//!
//! # Sequence
//! 1. *Plan*, in memory: every file's path goes through the API's path rules for writes
//!    ([`WorkspaceRoot::resolve_for_write`]: lexical rules, protected paths, symlinks, hard
//!    links), its current bytes are read through [`WorkspaceRoot::open_file`], and its hunks
//!    are applied (`diffy`). Any failure ends the call here with nothing written: a hunk that does
//!    not match is `patch.does_not_apply` naming the file and the hunk.
//! 2. With `check: true` the call stops here and answers what would change.
//! 3. *Stage*: each new content is written and fsynced to a temp file beside its target (as a
//!    write does, through the opened folder's descriptor).
//! 4. *Commit*, file by file: each target is re-checked (same device, inode, size, mtime, ctime as
//!    when it was read; a change by another program is `file.conflict`), then renamed over, created
//!    with no-replace semantics, or removed. If one fails, the files already committed get their
//!    old content back (in reverse order) and the error is answered.
//!
//! Patches and writes through the API are serialised by the API's write lock, so no API client
//! can change a file between the plan and the commit.
//!
//! # Answer
//! [`PatchResult`]: each file changed, how (`created`, `modified`, `deleted`), and its new SHA-256
//! (the `expected` of a later write).

mod apply;
mod folders;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit_layer::AuditNote;
use super::error::{ApiError, ApiResult};
use super::write::read_capped;
use super::{ApiState, WorkspaceId};

pub(crate) use apply::{apply_patch, plan_patch};

/// What to apply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// The unified diff (one or more files).
    pub patch: String,
    /// Only check that the patch applies; write nothing.
    #[serde(default)]
    pub check: bool,
}

/// What a patch did (or, with `check`, would do).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatchResult {
    /// Whether the files were written (`false` for a `check`).
    pub applied: bool,
    /// The files, in the patch's order.
    pub files: Vec<PatchedFile>,
}

/// One file of a patch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatchedFile {
    /// The path as the patch names it (prefix dropped, normalised).
    pub path: String,
    /// The file actually changed (symlinks resolved), workspace-relative.
    pub resolved_path: String,
    /// What happens to it.
    pub change: FileChange,
    /// SHA-256 (hex) of the new content; absent for a deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size of the new content in bytes (0 for a deletion).
    pub size: u64,
}

/// How a patch changes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileChange {
    /// A new file.
    Created,
    /// An existing file, changed.
    Modified,
    /// An existing file, removed.
    Deleted,
}

/// Applies a unified diff to files of the workspace, atomically.
#[utoipa::path(
    post,
    path = "/v1/workspaces/{id}/patch",
    tag = "files",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body(content = PatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied (or, with `check`, applicable)", body = PatchResult),
        (status = 400, description = "`patch.invalid` (unparsable, binary, rename, a file twice), `request.invalid`, `path.*` lexical refusals", body = super::ErrorBody),
        (status = 403, description = "`path.outside_workspace`, `path.hard_link`, `path.dangling_symlink`, `path.protected`", body = super::ErrorBody),
        (status = 404, description = "`workspace.not_found`, `path.not_found` (a file to change, or a new file's folder)", body = super::ErrorBody),
        (status = 409, description = "`patch.does_not_apply` (the file and hunk named), `file.conflict` (changed meanwhile; nothing left changed)", body = super::ErrorBody),
        (status = 413, description = "`file.too_large`: the request or a file exceeds the write cap", body = super::ErrorBody),
    )
)]
pub(crate) async fn patch_files(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match patch_parsed(state, id, headers, body).await {
        Ok(result) => {
            // the audit record names the files changed (they are in the body, not the query)
            let note = AuditNote::paths(result.files.iter().map(|f| f.path.as_str()));
            let mut response = Json(result).into_response();
            response.extensions_mut().insert(note);
            response
        }
        Err(e) => e.into_response(),
    }
}

/// [`patch_files`] until its answer.
async fn patch_parsed(
    state: ApiState,
    id: i64,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<PatchResult> {
    let cap = state.limits().max_write_bytes;
    let bytes = read_capped(body, &headers, cap).await?;
    let request: PatchBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(format!(
            "the patch request is not JSON of the form {{\"patch\": \"<unified diff>\", \"check\": false}}: {e}"
        ))
    })?;
    state
        .blocking(move |s| {
            // serialise with writes: nothing through the API changes a file between plan and commit
            let _one_writer = s
                .inner
                .write_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let ws = s.workspace(id)?;
            if request.check {
                plan_patch(&ws, &request.patch, cap).map(|plan| plan.result(false))
            } else {
                apply_patch(&ws, &request.patch, cap)
            }
        })
        .await
}
