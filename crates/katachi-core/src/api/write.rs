//! `PUT /v1/workspaces/{id}/file?path=…&expected=…`: replace or create a file, atomically, only if
//! it is still the version the client saw.
//!
//! `expected` is the SHA-256 (hex) of the content the client based its edit on (from a read's
//! `x-katachi-sha256` or `stat`), or `absent` to create a new file. Any other current state is
//! `file.conflict` (409): a concurrent change is never silently overwritten.
//!
//! # Sequence
//! 1. Resolve the path (a symlink inside the workspace is written through to its target; a hard-
//!    linked file is refused, see [`super::paths`]), hash the current content, compare.
//! 2. Stage the new bytes in a temp file in the same folder, reached through the opened folder's
//!    descriptor ([`super::checked_open::anchored_path`]), keeping the old file's permission bits (new files
//!    get `0644`); fsync.
//! 3. Re-check the file: same device, inode, size, mtime and ctime as when it was hashed (a change by
//!    another program in between is a conflict), then rename over it and fsync the folder. A new file
//!    is moved in with no-replace semantics, so one that appeared meanwhile is never clobbered.
//!
//! API writes are serialised by one lock, so two API clients cannot both pass step 1. What remains
//! is the instant between the re-check and the rename of step 3 for writers outside the agent.

use std::fs::Metadata;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::checked_open::anchored_path;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::paths::{QueryPath, RelPath, WorkspaceRoot, WriteTarget};
use super::stat::sha256_of;
use super::{ApiQuery, ApiState, WorkspaceId};
use crate::atomic_file::{AtomicWriteError, StagedReplacement};

/// Permission bits of a file created through the API.
pub(super) const NEW_FILE_MODE: u32 = 0o644;

/// Query parameters of a write (besides `path`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WriteParams {
    /// SHA-256 (hex) of the content being replaced, or `absent` to create a new file.
    expected: String,
}

/// What a write did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WriteResult {
    /// The path as requested.
    pub path: String,
    /// The file actually written (symlinks resolved), workspace-relative.
    pub resolved_path: String,
    /// SHA-256 (hex) of the new content: the `expected` value of the next write.
    pub sha256: String,
    /// Size of the new content in bytes.
    pub size: u64,
    /// Whether the file was created (rather than replaced).
    pub created: bool,
}

/// What the client expects to be at the path now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// No file.
    Absent,
    /// A file with this SHA-256 (lowercase hex).
    Sha256(String),
}

impl Expected {
    fn parse(raw: &str) -> ApiResult<Self> {
        if raw == "absent" {
            return Ok(Expected::Absent);
        }
        let hex = raw.to_ascii_lowercase();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Expected::Sha256(hex));
        }
        Err(ApiError::invalid(
            "`expected` must be the SHA-256 (64 hex digits) of the current content, or `absent`",
        ))
    }
}

/// Writes a file if it still has the expected content.
#[utoipa::path(
    put,
    path = "/v1/workspaces/{id}/file",
    tag = "files",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("path" = String, Query, description = "File path relative to the workspace root"),
        WriteParams,
    ),
    request_body(content(("application/octet-stream")), description = "The new content (binary)"),
    responses(
        (status = 200, description = "Replaced", body = WriteResult),
        (status = 201, description = "Created", body = WriteResult),
        (status = 400, description = "`path.*` lexical refusals, `path.not_a_file`, `request.invalid`", body = super::ErrorBody),
        (status = 403, description = "`path.outside_workspace`, `path.hard_link`, `path.dangling_symlink`, `path.protected` (the rule in the message)", body = super::ErrorBody),
        (status = 404, description = "`workspace.not_found`, `path.not_found` (the folder)", body = super::ErrorBody),
        (status = 409, description = "`file.conflict`: the file is not the expected version; `path.changed`", body = super::ErrorBody),
        (status = 413, description = "`file.too_large`: the body exceeds the write cap", body = super::ErrorBody),
    )
)]
pub(crate) async fn write_file(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
    path: QueryPath,
    ApiQuery(params): ApiQuery<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<WriteResult>)> {
    let rel = path.required()?;
    let expected = Expected::parse(&params.expected)?;
    let bytes = read_capped(body, &headers, state.limits().max_write_bytes).await?;
    let result = state
        .blocking(move |s| {
            // serialise API writes: two clients must not both pass the hash check
            let _one_writer = s
                .inner
                .write_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let ws = s.workspace(id)?;
            write_checked(&ws, &rel, &expected, &bytes)
        })
        .await?;
    let status = if result.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(result)))
}

/// The request body, refused with `file.too_large` past `cap` bytes (checked while reading).
pub(super) async fn read_capped(body: Body, headers: &HeaderMap, cap: usize) -> ApiResult<Vec<u8>> {
    let too_large = || {
        ApiError::new(
            ErrorCode::FileTooLarge,
            format!("the new content is larger than the write cap of {cap} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(ApiError::invalid("the request body could not be read")),
    }
}

fn write_checked(
    ws: &WorkspaceRoot,
    rel: &RelPath,
    expected: &Expected,
    bytes: &[u8],
) -> ApiResult<WriteResult> {
    let conflict = |why: &str| {
        ApiError::new(
            ErrorCode::FileConflict,
            format!(
                "{:?} {why}; read it again and redo the change",
                rel.as_str()
            ),
        )
    };
    let result = |resolved_path: String, created: bool| WriteResult {
        path: rel.as_str().to_owned(),
        resolved_path,
        sha256: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
        created,
    };
    match ws.resolve_for_write(rel)? {
        WriteTarget::Existing(target) => {
            let file = ws.open_file(&target)?;
            let hashed = file
                .metadata()
                .map_err(|e| ApiError::io("examining the file", &e))?;
            let current = sha256_of(&file).map_err(|e| ApiError::io("reading the file", &e))?;
            match expected {
                Expected::Absent => return Err(conflict("already exists")),
                Expected::Sha256(h) if *h != current => {
                    return Err(conflict("was changed since it was read"))
                }
                Expected::Sha256(_) => {}
            }
            let canonical = RelPath::parse(target.canonical_rel.as_bytes())?;
            let (parent_rel, name) = canonical
                .split_last()
                .ok_or_else(|| ApiError::new(ErrorCode::PathNotAFile, "not a file"))?;
            let parent = ws.resolve(&parent_rel)?;
            // `dir` must outlive `staged`: the temp file's path goes through its descriptor
            let dir = ws.open_dir(&parent)?;
            let anchored = anchored_path(&dir, &parent.abs, name);
            let staged = StagedReplacement::stage(&anchored, bytes, permission_bits(&hashed))
                .map_err(|e| write_error(&e))?;
            // re-check just before the rename: another program may have written meanwhile
            match std::fs::symlink_metadata(&anchored) {
                Ok(now) if same_version(&hashed, &now) => {}
                _ => return Err(conflict("was changed while it was being written")),
            }
            staged.commit().map_err(|e| write_error(&e))?;
            Ok(result(target.canonical_rel, false))
        }
        WriteTarget::New { parent, name } => {
            if *expected != Expected::Absent {
                return Err(conflict("does not exist (it was deleted or never existed)"));
            }
            let dir = ws.open_dir(&parent)?;
            let anchored = anchored_path(&dir, &parent.abs, &name);
            let staged = StagedReplacement::stage(&anchored, bytes, NEW_FILE_MODE)
                .map_err(|e| write_error(&e))?;
            // no-replace move: a file that appeared meanwhile is a conflict, never clobbered
            staged.commit_new().map_err(|e| {
                if e.source.kind() == std::io::ErrorKind::AlreadyExists {
                    conflict("was created by someone else meanwhile")
                } else {
                    write_error(&e)
                }
            })?;
            let resolved = if parent.canonical_rel.is_empty() {
                name
            } else {
                format!("{}/{name}", parent.canonical_rel)
            };
            Ok(result(resolved, true))
        }
    }
}

pub(super) fn write_error(e: &AtomicWriteError) -> ApiError {
    ApiError::io("writing the file", &e.source)
}

/// The file's permission bits, kept by the replacement (setuid/setgid/sticky are dropped).
pub(super) fn permission_bits(meta: &Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        NEW_FILE_MODE
    }
}

/// Whether `now` is the same file, unmodified, as `then`.
pub(super) fn same_version(then: &Metadata, now: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let key = |m: &Metadata| {
            (
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        };
        key(then) == key(now)
    }
    #[cfg(not(unix))]
    {
        then.len() == now.len() && then.modified().ok() == now.modified().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &std::path::Path) -> WorkspaceRoot {
        WorkspaceRoot {
            id: 1,
            root: std::fs::canonicalize(dir).unwrap(),
            protected: Default::default(),
        }
    }

    fn sha(b: &[u8]) -> Expected {
        Expected::Sha256(hex::encode(Sha256::digest(b)))
    }

    #[test]
    fn expected_accepts_hex_and_absent_only() {
        assert_eq!(Expected::parse("absent").unwrap(), Expected::Absent);
        let upper = "AB".repeat(32);
        assert_eq!(
            Expected::parse(&upper).unwrap(),
            Expected::Sha256("ab".repeat(32))
        );
        assert!(Expected::parse("abc").is_err());
        assert!(Expected::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn replace_with_the_right_hash_and_conflict_with_a_stale_one() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = root(tmp.path());
        std::fs::write(tmp.path().join("f"), b"one").unwrap();
        let rel = RelPath::parse(b"f").unwrap();
        let r = write_checked(&ws, &rel, &sha(b"one"), b"two").unwrap();
        assert!(!r.created);
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"two");
        let err = write_checked(&ws, &rel, &sha(b"one"), b"three").unwrap_err();
        assert_eq!(err.code(), ErrorCode::FileConflict);
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"two");
    }

    #[test]
    fn create_needs_absent_and_absent_on_an_existing_file_conflicts() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = root(tmp.path());
        let rel = RelPath::parse(b"new.txt").unwrap();
        let err = write_checked(&ws, &rel, &sha(b""), b"x").unwrap_err();
        assert_eq!(err.code(), ErrorCode::FileConflict);
        assert!(
            write_checked(&ws, &rel, &Expected::Absent, b"x")
                .unwrap()
                .created
        );
        let err = write_checked(&ws, &rel, &Expected::Absent, b"y").unwrap_err();
        assert_eq!(err.code(), ErrorCode::FileConflict);
        assert_eq!(std::fs::read(tmp.path().join("new.txt")).unwrap(), b"x");
    }

    #[cfg(unix)]
    #[test]
    fn replacing_keeps_the_mode_and_new_files_are_0644() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let ws = root(tmp.path());
        let script = tmp.path().join("run.sh");
        std::fs::write(&script, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
        let rel = RelPath::parse(b"run.sh").unwrap();
        write_checked(&ws, &rel, &sha(b"#!/bin/sh\n"), b"#!/bin/sh\ntrue\n").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&script), 0o750);
        let rel = RelPath::parse(b"fresh").unwrap();
        write_checked(&ws, &rel, &Expected::Absent, b"x").unwrap();
        assert_eq!(mode(&tmp.path().join("fresh")), 0o644);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_inside_is_written_through_to_its_target() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = root(tmp.path());
        std::fs::write(tmp.path().join("real"), b"a").unwrap();
        std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
        let r = write_checked(&ws, &RelPath::parse(b"link").unwrap(), &sha(b"a"), b"b").unwrap();
        assert_eq!(r.resolved_path, "real");
        assert_eq!(std::fs::read(tmp.path().join("real")).unwrap(), b"b");
        assert!(std::fs::symlink_metadata(tmp.path().join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
