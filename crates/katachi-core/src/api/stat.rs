//! `GET /v1/workspaces/{id}/stat?path=…`: what is at a path, and the SHA-256 of a file's content
//! (the `expected` value of a write, for files too large to be hashed inline by a read).

use std::io::Read;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::checked_open::link_count;
use super::error::{ApiError, ApiResult};
use super::paths::QueryPath;
use super::{ApiState, WorkspaceId};

/// What kind of thing a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symlink (in tree listings; `stat` follows symlinks that stay inside the workspace).
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl FileKind {
    /// The kind of `ft`.
    pub(crate) fn of(ft: std::fs::FileType) -> Self {
        if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        }
    }
}

/// What is at a path.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileStat {
    /// The path as requested (workspace-relative).
    pub path: String,
    /// The path with symlinks resolved (workspace-relative); writes go there.
    pub resolved_path: String,
    /// What it is (after following symlinks inside the workspace).
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, Unix seconds.
    pub modified: Option<i64>,
    /// Hard links to the file; more than 1 means the API will not read or write it.
    pub link_count: u64,
    /// SHA-256 (hex) of the content, for regular single-link files within the read cap.
    pub sha256: Option<String>,
}

/// Describes a path, hashing a file's content.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/stat",
    tag = "files",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("path" = Option<String>, Query, description = "Path relative to the workspace root (default: the root)"),
    ),
    responses(
        (status = 200, description = "What is at the path", body = FileStat),
        (status = 400, description = "`path.*` lexical refusals", body = super::ErrorBody),
        (status = 403, description = "`path.outside_workspace`, `path.protected` (the rule in the message)", body = super::ErrorBody),
        (status = 404, description = "`workspace.not_found`, `path.not_found`", body = super::ErrorBody),
    )
)]
pub(crate) async fn stat_path(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
    path: QueryPath,
) -> ApiResult<Json<FileStat>> {
    let rel = path.or_root();
    let stat = state
        .blocking(move |s| {
            let ws = s.workspace(id)?;
            let r = ws.resolve(&rel)?;
            let kind = FileKind::of(r.meta.file_type());
            let links = link_count(&r.meta);
            let hashable =
                kind == FileKind::File && links == 1 && r.meta.len() <= s.limits().max_read_bytes;
            let sha256 = if hashable {
                let file = ws.open_file(&r)?;
                Some(sha256_of(file).map_err(|e| ApiError::io("reading the file", &e))?)
            } else {
                None
            };
            Ok(FileStat {
                path: rel.as_str().to_owned(),
                resolved_path: r.canonical_rel.clone(),
                kind,
                size: r.meta.len(),
                modified: r
                    .meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .and_then(|d| i64::try_from(d.as_secs()).ok()),
                link_count: links,
                sha256,
            })
        })
        .await?;
    Ok(Json(stat))
}

/// SHA-256 (lowercase hex) of everything `reader` yields, read in bounded chunks.
///
/// # Errors
/// The reader's I/O error.
pub(crate) fn sha256_of(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; super::READ_CHUNK_BYTES];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_one_shot_digest() {
        let data = vec![7u8; super::super::READ_CHUNK_BYTES * 2 + 5];
        assert_eq!(
            sha256_of(&data[..]).unwrap(),
            hex::encode(Sha256::digest(&data))
        );
        assert_eq!(
            sha256_of(&b""[..]).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
