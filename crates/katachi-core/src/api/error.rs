//! The API's one error type and its wire form: `{"error": {"code": "path.not_found", "message": "…"}}`.
//!
//! Codes are stable dotted strings ([`ErrorCode`]) that clients branch on; messages are for people
//! and may change. A message names the workspace-relative path the client sent, never an absolute
//! path outside the workspace, an OS error string or where a refused symlink points.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The stable machine-readable code of an [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorCode {
    /// No allowed workspace has this id (never was, or was removed).
    #[serde(rename = "workspace.not_found")]
    WorkspaceNotFound,
    /// The workspace folder is gone or was replaced (e.g. by a symlink) since it was allowed.
    #[serde(rename = "workspace.unavailable")]
    WorkspaceUnavailable,
    /// The path, once symlinks are resolved, is outside the workspace.
    #[serde(rename = "path.outside_workspace")]
    PathOutsideWorkspace,
    /// The path is absolute; paths are relative to the workspace root.
    #[serde(rename = "path.absolute")]
    PathAbsolute,
    /// The path has a `..` component.
    #[serde(rename = "path.parent_dir")]
    PathParentDir,
    /// The path has a NUL byte.
    #[serde(rename = "path.nul_byte")]
    PathNulByte,
    /// The path is longer than 4096 bytes, or a component longer than 255 bytes.
    #[serde(rename = "path.too_long")]
    PathTooLong,
    /// The path (as sent, or as found on disk) is not valid UTF-8.
    #[serde(rename = "path.not_utf8")]
    PathNotUtf8,
    /// Nothing exists at the path.
    #[serde(rename = "path.not_found")]
    PathNotFound,
    /// A file was expected but the path is a directory.
    #[serde(rename = "path.not_a_file")]
    PathNotAFile,
    /// A directory was expected but the path is not one.
    #[serde(rename = "path.not_a_directory")]
    PathNotADirectory,
    /// The path is a FIFO, socket or device: reading it could block or leak.
    #[serde(rename = "path.special_file")]
    PathSpecialFile,
    /// The file has more than one hard link: another name may be outside the workspace.
    #[serde(rename = "path.hard_link")]
    PathHardLink,
    /// The path is a symlink that points nowhere (writes through it are refused).
    #[serde(rename = "path.dangling_symlink")]
    PathDanglingSymlink,
    /// Symlinks on the path loop.
    #[serde(rename = "path.symlink_loop")]
    PathSymlinkLoop,
    /// The path is protected ([`crate::protected`]): `.git/config`, `.git/hooks`, a `.git` file or
    /// folder, a `.env*` file, or katachi's own folders; the message names the rule.
    #[serde(rename = "path.protected")]
    PathProtected,
    /// The path changed between its check and its use (a symlink swapped in): retry.
    #[serde(rename = "path.changed")]
    PathChanged,
    /// The file, or the requested range, is larger than the cap.
    #[serde(rename = "file.too_large")]
    FileTooLarge,
    /// The file's current content does not match the expected hash: someone changed it.
    #[serde(rename = "file.conflict")]
    FileConflict,
    /// The `Range` header is malformed or asks for several ranges.
    #[serde(rename = "range.invalid")]
    RangeInvalid,
    /// The patch cannot be used: unparsable, binary, a rename or copy, or one file twice.
    #[serde(rename = "patch.invalid")]
    PatchInvalid,
    /// A hunk of the patch does not match the file's current content (the message names the
    /// file and the hunk), or the file to create already exists; nothing was written.
    #[serde(rename = "patch.does_not_apply")]
    PatchDoesNotApply,
    /// The range starts beyond the end of the file.
    #[serde(rename = "range.not_satisfiable")]
    RangeNotSatisfiable,
    /// A query parameter is missing or malformed.
    #[serde(rename = "request.invalid")]
    RequestInvalid,
    /// No such route.
    #[serde(rename = "request.not_found")]
    RequestNotFound,
    /// The route exists but not with this method.
    #[serde(rename = "request.method_not_allowed")]
    RequestMethodNotAllowed,
    /// The search pattern is empty, too long or not a valid regex.
    #[serde(rename = "search.invalid_pattern")]
    SearchInvalidPattern,
    /// The path is not inside a git repository.
    #[serde(rename = "git.not_a_repository")]
    GitNotARepository,
    /// The repository would make git read outside the allowed workspaces (a `.git` file, a
    /// `commondir`, alternates, a symlinked object store or index, `core.worktree`); the message
    /// names the route. Keep repositories whole inside a workspace.
    #[serde(rename = "git.outside_workspace")]
    GitOutsideWorkspace,
    /// libgit2 failed (corrupt repository, unsupported extension).
    #[serde(rename = "git.failed")]
    GitFailed,
    /// The workspace's stored sandbox overrides are unreadable or invalid, so neither its runs nor
    /// its protected paths can be known; the message names the command that resets them.
    #[serde(rename = "sandbox.policy_invalid")]
    SandboxPolicyInvalid,
    /// The list of allowed workspaces could not be read (the store is locked or broken).
    #[serde(rename = "store.unavailable")]
    StoreUnavailable,
    /// The OS refused an operation (permissions, disk full).
    #[serde(rename = "io.failed")]
    IoFailed,
    /// The audit log cannot be written (its sealed end was tampered with, or the store fails), so
    /// calls through the tunnel are refused rather than left unrecorded; run `katachi audit verify`.
    #[serde(rename = "audit.unavailable")]
    AuditUnavailable,
}

impl ErrorCode {
    /// The dotted code, as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::WorkspaceNotFound => "workspace.not_found",
            ErrorCode::WorkspaceUnavailable => "workspace.unavailable",
            ErrorCode::PathOutsideWorkspace => "path.outside_workspace",
            ErrorCode::PathAbsolute => "path.absolute",
            ErrorCode::PathParentDir => "path.parent_dir",
            ErrorCode::PathNulByte => "path.nul_byte",
            ErrorCode::PathTooLong => "path.too_long",
            ErrorCode::PathNotUtf8 => "path.not_utf8",
            ErrorCode::PathNotFound => "path.not_found",
            ErrorCode::PathNotAFile => "path.not_a_file",
            ErrorCode::PathNotADirectory => "path.not_a_directory",
            ErrorCode::PathSpecialFile => "path.special_file",
            ErrorCode::PathHardLink => "path.hard_link",
            ErrorCode::PathDanglingSymlink => "path.dangling_symlink",
            ErrorCode::PathSymlinkLoop => "path.symlink_loop",
            ErrorCode::PathProtected => "path.protected",
            ErrorCode::PathChanged => "path.changed",
            ErrorCode::FileTooLarge => "file.too_large",
            ErrorCode::FileConflict => "file.conflict",
            ErrorCode::PatchInvalid => "patch.invalid",
            ErrorCode::PatchDoesNotApply => "patch.does_not_apply",
            ErrorCode::RangeInvalid => "range.invalid",
            ErrorCode::RangeNotSatisfiable => "range.not_satisfiable",
            ErrorCode::RequestInvalid => "request.invalid",
            ErrorCode::RequestNotFound => "request.not_found",
            ErrorCode::RequestMethodNotAllowed => "request.method_not_allowed",
            ErrorCode::SearchInvalidPattern => "search.invalid_pattern",
            ErrorCode::GitNotARepository => "git.not_a_repository",
            ErrorCode::GitOutsideWorkspace => "git.outside_workspace",
            ErrorCode::GitFailed => "git.failed",
            ErrorCode::SandboxPolicyInvalid => "sandbox.policy_invalid",
            ErrorCode::StoreUnavailable => "store.unavailable",
            ErrorCode::IoFailed => "io.failed",
            ErrorCode::AuditUnavailable => "audit.unavailable",
        }
    }

    /// The HTTP status sent with this code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::WorkspaceNotFound
            | ErrorCode::PathNotFound
            | ErrorCode::RequestNotFound
            | ErrorCode::GitNotARepository => StatusCode::NOT_FOUND,
            ErrorCode::PathOutsideWorkspace
            | ErrorCode::PathHardLink
            | ErrorCode::PathDanglingSymlink
            | ErrorCode::PathSpecialFile
            | ErrorCode::PathProtected
            | ErrorCode::GitOutsideWorkspace => StatusCode::FORBIDDEN,
            ErrorCode::WorkspaceUnavailable
            | ErrorCode::FileConflict
            | ErrorCode::PatchDoesNotApply
            | ErrorCode::PathChanged
            | ErrorCode::SandboxPolicyInvalid => StatusCode::CONFLICT,
            ErrorCode::FileTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestMethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::StoreUnavailable | ErrorCode::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::GitFailed | ErrorCode::IoFailed => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::PathAbsolute
            | ErrorCode::PathParentDir
            | ErrorCode::PathNulByte
            | ErrorCode::PathTooLong
            | ErrorCode::PathNotUtf8
            | ErrorCode::PathNotAFile
            | ErrorCode::PathNotADirectory
            | ErrorCode::PathSymlinkLoop
            | ErrorCode::RangeInvalid
            | ErrorCode::PatchInvalid
            | ErrorCode::RequestInvalid
            | ErrorCode::SearchInvalidPattern => StatusCode::BAD_REQUEST,
        }
    }
}

/// A refused or failed API call: a stable [`ErrorCode`] and a message for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong, for clients to branch on.
    code: ErrorCode,
    /// What went wrong and what to do, for people; no secrets, no paths outside the workspace.
    message: String,
    /// For `range.not_satisfiable`: the file's size, sent as `Content-Range: bytes */size`.
    file_size: Option<u64>,
}

impl ApiError {
    /// An error with `code` and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            file_size: None,
        }
    }

    /// `range.not_satisfiable` for a file of `size` bytes.
    pub(crate) fn range_not_satisfiable(size: u64) -> Self {
        Self {
            file_size: Some(size),
            ..Self::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the range starts beyond the end of the file ({size} bytes)"),
            )
        }
    }

    /// An OS failure while doing `what`; the OS error is logged, not sent (it can name outside paths).
    pub(crate) fn io(what: &str, err: &std::io::Error) -> Self {
        tracing::warn!(error = %err, "api: {what} failed");
        Self::new(
            ErrorCode::IoFailed,
            format!("{what} failed: {}", err.kind()),
        )
    }

    /// `request.invalid` with a message naming the bad parameter.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RequestInvalid, message)
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The code and message of an error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable dotted code, e.g. `path.outside_workspace`.
    pub code: ErrorCode,
    /// Explanation for people; may change between versions.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let file_size = self.file_size;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        // the audit layer records the code without parsing the body
        response.extensions_mut().insert(self.code);
        if let Some(size) = file_size {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        response
    }
}

/// Result of API operations.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_pinned() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::PathOutsideWorkspace,
                message: "m".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"path.outside_workspace","message":"m"}}"#
        );
    }

    #[test]
    fn as_str_matches_the_serialised_code() {
        use ErrorCode::*;
        for code in [
            WorkspaceNotFound,
            WorkspaceUnavailable,
            PathOutsideWorkspace,
            PathAbsolute,
            PathParentDir,
            PathNulByte,
            PathTooLong,
            PathNotUtf8,
            PathNotFound,
            PathNotAFile,
            PathNotADirectory,
            PathSpecialFile,
            PathHardLink,
            PathDanglingSymlink,
            PathSymlinkLoop,
            PathProtected,
            PathChanged,
            FileTooLarge,
            FileConflict,
            PatchInvalid,
            PatchDoesNotApply,
            RangeInvalid,
            RangeNotSatisfiable,
            RequestInvalid,
            RequestNotFound,
            RequestMethodNotAllowed,
            SearchInvalidPattern,
            GitNotARepository,
            GitOutsideWorkspace,
            GitFailed,
            SandboxPolicyInvalid,
            StoreUnavailable,
            IoFailed,
            AuditUnavailable,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().to_owned())
            );
        }
    }

    #[test]
    fn conflict_is_409_and_too_large_is_413() {
        assert_eq!(ErrorCode::FileConflict.status(), StatusCode::CONFLICT);
        assert_eq!(
            ErrorCode::FileTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn unsatisfiable_range_carries_the_file_size() {
        let r = ApiError::range_not_satisfiable(10).into_response();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
    }

    #[test]
    fn an_error_response_carries_its_code_for_middleware() {
        let r = ApiError::new(ErrorCode::PathNotFound, "m").into_response();
        assert_eq!(
            r.extensions().get::<ErrorCode>(),
            Some(&ErrorCode::PathNotFound)
        );
    }
}
