//! Path resolution: turns a path sent by a client into a file inside an allowed workspace, or a
//! clear refusal. Every handler goes through here before it touches the filesystem.
//!
//! # Rules (each has a test in `tests/suite/api_path_escape.rs`)
//! 1. The path is workspace-relative, `/`-separated, decoded strictly from the query string:
//!    a NUL byte (`path.nul_byte`), more than [`MAX_PATH_BYTES`] bytes or a component of more than
//!    [`MAX_COMPONENT_BYTES`] (`path.too_long`), invalid UTF-8 (`path.not_utf8`), a leading `/` or
//!    drive (`path.absolute`, which also covers `/proc/self/root/…`) and any `..` component
//!    (`path.parent_dir`) are refused before the filesystem is touched.
//! 2. The workspace root is re-checked on every call: it must still canonicalise to itself
//!    (`workspace.unavailable` if it was removed or replaced by a symlink).
//! 3. The joined path is canonicalised (symlinks resolved) and must stay under the root
//!    (`path.outside_workspace`): a symlink to `/etc`, to `/proc/self/root` or to a sibling folder
//!    is refused; a symlink that stays inside is followed.
//! 4. Opening (`checked_open`) re-checks what was resolved (TOCTOU: a directory swapped for a symlink between the
//!    check and the open). On Linux the file is opened with `openat2` from the root's descriptor with
//!    `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, so the kernel refuses any
//!    symlink or `..` that appeared since; where `openat2` is missing, the opened descriptor's real
//!    path (`/proc/self/fd`) must still be under the root. Everywhere on Unix the opened file's
//!    (device, inode) must equal the resolved path's, and the last component is opened `O_NOFOLLOW`.
//!    A mismatch is `path.changed`.
//! 5. Hard links: a regular file with more than one link may have another name outside the
//!    workspace (e.g. `ln ~/.ssh/id_ed25519 ws/x`), and the API cannot tell where. Such files are
//!    refused for reading, searching and writing (`path.hard_link`); the tree still lists them.
//! 6. FIFOs, sockets and devices are refused (`path.special_file`): reading one could block or leak.
//! 7. Protected paths ([`crate::protected`], the rule set the sandbox uses too): reading a `.env*`
//!    file (unless the workspace allows them) or anything in katachi's own folders, and writing
//!    `.git/config`, `.git/hooks/**`, a `.git` file or folder, a `.env*` file or into katachi's
//!    folders are refused (`path.protected`, the rule named in the message). Both the client's path
//!    and the resolved one are checked, so a symlink into a protected path is caught.
//!
//! # Not covered
//! The workspace root itself is trusted once re-checked (rule 2); on Windows rule 4's descriptor
//! checks are absent (canonicalisation and the prefix check remain).

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::{ApiError, ApiResult, ErrorCode};
use crate::protected::{ProtectedPaths, ProtectedRule};
use crate::store::Workspace;

/// Longest path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// Longest path component accepted, in bytes (`NAME_MAX` of common filesystems).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// A workspace-relative path that passed the lexical rules: no NUL, not too long, UTF-8, relative,
/// no `..`. Normalised: components joined by `/`, no `.` or empty components; `""` is the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelPath {
    /// The normalised text.
    text: String,
}

impl RelPath {
    /// Checks `raw` (bytes as decoded from the request) against the lexical rules.
    ///
    /// # Errors
    /// `path.nul_byte`, `path.too_long`, `path.not_utf8`, `path.absolute` or `path.parent_dir`.
    pub fn parse(raw: &[u8]) -> ApiResult<Self> {
        // reject NUL: C APIs would silently truncate the path at it
        if raw.contains(&0) {
            return Err(ApiError::new(
                ErrorCode::PathNulByte,
                "the path contains a NUL byte",
            ));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(ApiError::new(
                ErrorCode::PathTooLong,
                format!(
                    "the path is {} bytes long; the limit is {MAX_PATH_BYTES}",
                    raw.len()
                ),
            ));
        }
        let text = std::str::from_utf8(raw).map_err(|_| {
            ApiError::new(
                ErrorCode::PathNotUtf8,
                "the path is not valid UTF-8; only UTF-8 names can be used through the API",
            )
        })?;
        if is_absolute(text) {
            // reject absolute paths: `/etc/passwd`, `/proc/self/root/…`, `C:\…`
            return Err(ApiError::new(
                ErrorCode::PathAbsolute,
                format!("{text:?} is absolute; send a path relative to the workspace root"),
            ));
        }
        let mut parts = Vec::new();
        for part in text.split(is_separator) {
            match part {
                "" | "." => {}
                // reject `..` even when it would stay inside: no lexical games at all
                ".." => {
                    return Err(ApiError::new(
                        ErrorCode::PathParentDir,
                        format!("{text:?} contains `..`; send a path inside the workspace"),
                    ))
                }
                p if p.len() > MAX_COMPONENT_BYTES => {
                    return Err(ApiError::new(
                        ErrorCode::PathTooLong,
                        format!(
                            "a component of the path is {} bytes long; the limit is {MAX_COMPONENT_BYTES}",
                            p.len()
                        ),
                    ))
                }
                p => parts.push(p),
            }
        }
        let normalised = parts.join("/");
        // what dropping `.` components left must pass the same check (`./\x` would be `\x`), so
        // parsing the normalised text again gives it back
        if is_absolute(&normalised) {
            return Err(ApiError::new(
                ErrorCode::PathAbsolute,
                format!("{text:?} is absolute once `.` is dropped; send a plain relative path"),
            ));
        }
        Ok(Self { text: normalised })
    }

    /// The normalised path; `""` for the workspace root.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is the workspace root.
    pub fn is_root(&self) -> bool {
        self.text.is_empty()
    }

    /// The parent folder and the last component; `None` for the root.
    pub(crate) fn split_last(&self) -> Option<(RelPath, &str)> {
        if self.is_root() {
            return None;
        }
        Some(match self.text.rsplit_once('/') {
            Some((parent, name)) => (
                RelPath {
                    text: parent.to_owned(),
                },
                name,
            ),
            None => (RelPath::default(), self.text.as_str()),
        })
    }

    /// `self/name` (for names read from a directory, which are single components).
    pub(crate) fn child(&self, name: &str) -> RelPath {
        RelPath {
            text: if self.is_root() {
                name.to_owned()
            } else {
                format!("{}/{name}", self.text)
            },
        }
    }
}

fn is_separator(c: char) -> bool {
    c == '/' || (cfg!(windows) && c == '\\')
}

fn is_absolute(text: &str) -> bool {
    let p = Path::new(text);
    let drive = cfg!(windows) && text.as_bytes().get(1) == Some(&b':');
    text.starts_with('/') || text.starts_with('\\') || p.is_absolute() || p.has_root() || drive
}

/// The `path` query parameter, decoded strictly (a lossy decoder would turn a non-UTF-8 name into
/// another, existing one). Absent → `None`.
#[derive(Debug)]
pub struct QueryPath(pub Option<RelPath>);

impl QueryPath {
    /// The path, or `request.invalid` naming the missing parameter.
    ///
    /// # Errors
    /// `request.invalid` when the parameter was not sent.
    pub fn required(self) -> ApiResult<RelPath> {
        self.0
            .ok_or_else(|| ApiError::invalid("the `path` query parameter is required"))
    }

    /// The path, or the workspace root when absent.
    pub fn or_root(self) -> RelPath {
        self.0.unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        path_from_query(parts.uri.query()).map(QueryPath)
    }
}

/// Finds and checks the `path` parameter of a raw query string.
pub(crate) fn path_from_query(query: Option<&str>) -> ApiResult<Option<RelPath>> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_form(key) != b"path" {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::invalid("the `path` parameter is given twice"));
        }
        found = Some(RelPath::parse(&decode_form(value))?);
    }
    Ok(found)
}

fn decode_form(s: &str) -> Vec<u8> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode(plus_as_space.as_bytes()).collect()
}

/// An allowed workspace whose root was re-checked for this call.
#[derive(Debug, Clone)]
pub struct WorkspaceRoot {
    /// The workspace's id.
    pub id: i64,
    /// Its canonical root.
    pub root: PathBuf,
    /// The protected-path rules of this workspace.
    pub protected: ProtectedPaths,
}

/// A path inside a workspace that exists, resolved and checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The path as the client named it (normalised); used in responses.
    pub requested: RelPath,
    /// Canonical path relative to the root (symlinks resolved); `""` for the root.
    pub canonical_rel: String,
    /// Canonical absolute path.
    pub abs: PathBuf,
    /// Its metadata at resolution time (not following symlinks: the canonical path has none).
    pub meta: Metadata,
}

/// Where a write goes: an existing file, or a new name in an existing folder.
#[derive(Debug)]
pub enum WriteTarget {
    /// The file exists (possibly reached through a symlink inside the workspace).
    Existing(Resolved),
    /// Nothing is at the path yet.
    New {
        /// The folder that will hold it.
        parent: Resolved,
        /// The new file's name.
        name: String,
    },
}

impl WorkspaceRoot {
    /// Re-checks an allowed workspace's root: it must exist, be a folder and still be canonical.
    /// Paths in it are then checked against `protected`.
    ///
    /// # Errors
    /// `workspace.unavailable`.
    pub fn verify(ws: &Workspace, protected: ProtectedPaths) -> ApiResult<Self> {
        let stored = PathBuf::from(&ws.path);
        let unavailable = || {
            ApiError::new(
                ErrorCode::WorkspaceUnavailable,
                format!(
                    "workspace {} ({}) is missing or was replaced by a symlink; it works again once the folder is back, or forget it with `katachi workspace rm {}`",
                    ws.id,
                    ws.path,
                    crate::sandbox::shell_word(&ws.path)
                ),
            )
        };
        match std::fs::canonicalize(&stored) {
            // reject a root that was swapped for a symlink: it would redirect every call
            Ok(c) if c == stored && c.is_dir() => Ok(Self {
                id: ws.id,
                root: stored,
                protected,
            }),
            _ => Err(unavailable()),
        }
    }

    /// Resolves an existing path and checks it is inside the workspace and readable under the
    /// protected-path rules.
    ///
    /// # Errors
    /// `path.not_found`, `path.outside_workspace`, `path.symlink_loop`, `path.not_utf8`,
    /// `path.protected`, `io.failed`.
    pub fn resolve(&self, rel: &RelPath) -> ApiResult<Resolved> {
        let joined = self.root.join(rel.as_str());
        let abs = std::fs::canonicalize(&joined).map_err(|e| resolve_error(rel, &e))?;
        let canonical_rel = self.relative_of(&abs, rel)?;
        let meta = std::fs::symlink_metadata(&abs).map_err(|e| resolve_error(rel, &e))?;
        // refuse secrets and katachi's own state, also when reached through a symlink
        let names = [rel.as_str(), canonical_rel.as_str()];
        if let Some(rule) = self.protected.read_rule(&names, &abs, meta.is_file()) {
            return Err(protected(&self.root, rel, rule));
        }
        Ok(Resolved {
            requested: rel.clone(),
            canonical_rel,
            abs,
            meta,
        })
    }

    /// The canonical `abs` relative to the root, refusing anything outside.
    fn relative_of(&self, abs: &Path, rel: &RelPath) -> ApiResult<String> {
        // reject escapes: a symlink (or /proc/self/root) that resolves outside the root
        let inside = abs.strip_prefix(&self.root).map_err(|_| {
            ApiError::new(
                ErrorCode::PathOutsideWorkspace,
                format!(
                    "{:?} leads outside workspace {} (through a symlink)",
                    rel.as_str(),
                    self.id
                ),
            )
        })?;
        let text = inside.to_str().ok_or_else(|| {
            ApiError::new(
                ErrorCode::PathNotUtf8,
                format!("{:?} resolves to a name that is not UTF-8", rel.as_str()),
            )
        })?;
        Ok(text.replace(std::path::MAIN_SEPARATOR, "/"))
    }

    /// Resolves where a write to `rel` goes.
    ///
    /// # Errors
    /// As [`WorkspaceRoot::resolve`] (for the file or its folder), plus `path.not_a_directory` when the
    /// folder is a file and `path.dangling_symlink` when the name is a symlink to nothing.
    pub fn resolve_for_write(&self, rel: &RelPath) -> ApiResult<WriteTarget> {
        let Some((parent_rel, name)) = rel.split_last() else {
            return Err(ApiError::new(
                ErrorCode::PathNotAFile,
                "the workspace root is a folder, not a file",
            ));
        };
        // refuse by name before touching the filesystem: `.git/config`, `.git/hooks/…`, `.git`
        if let Some(rule) = self.protected.lexical_write_rule(rel.as_str()) {
            return Err(protected(&self.root, rel, rule));
        }
        match self.resolve(rel) {
            Ok(existing) => {
                // and by what it resolves to: a symlink to `.git/config` writes `.git/config`
                let names = [rel.as_str(), existing.canonical_rel.as_str()];
                if let Some(rule) = self.protected.write_rule(&names, Some(&existing.abs)) {
                    return Err(protected(&self.root, rel, rule));
                }
                return Ok(WriteTarget::Existing(existing));
            }
            Err(e) if e.code() == ErrorCode::PathNotFound => {}
            Err(e) => return Err(e),
        }
        let parent = self.resolve(&parent_rel).map_err(|e| {
            if e.code() == ErrorCode::PathNotFound {
                ApiError::new(
                    ErrorCode::PathNotFound,
                    format!(
                        "the folder {:?} does not exist; create it first",
                        parent_rel.as_str()
                    ),
                )
            } else {
                e
            }
        })?;
        if !parent.meta.is_dir() {
            return Err(ApiError::new(
                ErrorCode::PathNotADirectory,
                format!("{:?} is not a folder", parent_rel.as_str()),
            ));
        }
        let new_canonical = if parent.canonical_rel.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", parent.canonical_rel)
        };
        let names = [rel.as_str(), new_canonical.as_str()];
        if let Some(rule) = self.protected.write_rule(&names, Some(&parent.abs)) {
            return Err(protected(&self.root, rel, rule));
        }
        match std::fs::symlink_metadata(parent.abs.join(name)) {
            // reject writing through a dangling symlink: its target could be anywhere
            Ok(m) if m.file_type().is_symlink() => Err(ApiError::new(
                ErrorCode::PathDanglingSymlink,
                format!(
                    "{:?} is a symlink to nothing; remove it or write its target",
                    rel.as_str()
                ),
            )),
            Ok(_) => Err(changed(rel)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(WriteTarget::New {
                parent,
                name: name.to_owned(),
            }),
            Err(e) => Err(ApiError::io("examining the path", &e)),
        }
    }
}

/// `path.protected` naming the rule that matched.
pub(super) fn protected(root: &Path, rel: &RelPath, rule: ProtectedRule) -> ApiError {
    ApiError::new(
        ErrorCode::PathProtected,
        format!(
            "{:?} is protected (rule {}): {}",
            rel.as_str(),
            rule.as_str(),
            rule.reason(root)
        ),
    )
}

pub(super) fn changed(rel: &RelPath) -> ApiError {
    ApiError::new(
        ErrorCode::PathChanged,
        format!(
            "{:?} changed while it was being checked; try again",
            rel.as_str()
        ),
    )
}

fn resolve_error(rel: &RelPath, e: &io::Error) -> ApiError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ApiError::new(
            ErrorCode::PathNotFound,
            format!("{:?} does not exist", rel.as_str()),
        ),
        _ if is_loop(e) => ApiError::new(
            ErrorCode::PathSymlinkLoop,
            format!("symlinks on {:?} loop", rel.as_str()),
        ),
        io::ErrorKind::InvalidFilename => ApiError::new(
            ErrorCode::PathTooLong,
            format!("{:?} is too long for the filesystem", rel.as_str()),
        ),
        _ => ApiError::io("resolving the path", e),
    }
}

pub(super) fn is_loop(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(test)]
#[path = "paths_tests.rs"]
mod tests;
