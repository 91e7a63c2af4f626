//! Why a run was refused before it started, and the JSON body that says so.
//!
//! API refusals (workspace, path, request) keep their usual `ErrorBody`; the run's own codes
//! (`sandbox.*`, `run.busy`) use the same shape, plus the structured [`SandboxDenied`] for
//! `sandbox.denied`, so a client shows what was refused and how to allow it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::MAX_CONCURRENT_RUNS;
use crate::api::error::{ApiError, ErrorCode};
use crate::api::paths::WorkspaceRoot;
use crate::sandbox::{OverrideError, PolicyError, SandboxDenied, SandboxError};

/// Seconds a client is told to wait after `429 run.busy`.
const BUSY_RETRY_AFTER_SECS: u32 = 2;

/// The body of a refused run: the usual error, plus the structured denial for `sandbox.denied`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunErrorBody {
    /// The error.
    pub error: RunErrorDetail,
}

/// Code, message and (for `sandbox.denied`) what was denied and how to allow it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunErrorDetail {
    /// `sandbox.denied`, `sandbox.unenforced`, `sandbox.unavailable`, `sandbox.unsupported`, `sandbox.policy_invalid`,
    /// `sandbox.failed` or `run.busy` (other codes come as the usual `ErrorBody`).
    pub code: String,
    /// Explanation for people.
    pub message: String,
    /// What was refused, for `sandbox.denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub denied: Option<SandboxDenied>,
    /// For `sandbox.unenforced`: the command the machine's local user runs to allow runs in
    /// this workspace anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how_to_allow: Option<String>,
}

/// Why a run was not started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// A refusal of the API itself (workspace, path, request).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The policy does not allow it: the command is not on the list, the folder is not allowed.
    #[error(transparent)]
    Denied(SandboxDenied),
    /// Every run slot is taken.
    #[error(
        "{MAX_CONCURRENT_RUNS} commands are already running on this agent; try again when one ends"
    )]
    Busy,
    /// The sandbox is not enforced on this machine (Windows) and its local user has not allowed
    /// runs in this workspace: `how_to_allow` is the command that does.
    #[error("{notice}; katachi does not run commands from the browser here until the local user of this machine allows it for this workspace: on that machine run `{how_to_allow}`")]
    Unenforced {
        /// Why commands are not confined here.
        notice: String,
        /// The command that gives consent.
        how_to_allow: String,
    },
    /// A sandbox layer the policy needs is missing here; the command is refused, not run weaker.
    #[error("{0}")]
    Unavailable(String),
    /// This OS has no sandbox backend: commands are refused.
    #[error("{0}")]
    Unsupported(String),
    /// The workspace's stored sandbox overrides are unreadable or invalid; the message says how
    /// to reset them.
    #[error("{0}")]
    PolicyInvalid(String),
    /// Preparing or starting the sandbox failed (logged in full on the agent).
    #[error("{0}")]
    Failed(String),
}

impl RunError {
    fn code(&self) -> (&'static str, StatusCode) {
        match self {
            RunError::Api(e) => (e.code().as_str(), e.code().status()),
            RunError::Denied(_) => ("sandbox.denied", StatusCode::FORBIDDEN),
            RunError::Unenforced { .. } => ("sandbox.unenforced", StatusCode::FORBIDDEN),
            RunError::Busy => ("run.busy", StatusCode::TOO_MANY_REQUESTS),
            RunError::Unavailable(_) => ("sandbox.unavailable", StatusCode::SERVICE_UNAVAILABLE),
            RunError::Unsupported(_) => ("sandbox.unsupported", StatusCode::NOT_IMPLEMENTED),
            RunError::PolicyInvalid(_) => ("sandbox.policy_invalid", StatusCode::CONFLICT),
            RunError::Failed(_) => ("sandbox.failed", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl From<SandboxError> for RunError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::Denied(d) => RunError::Denied(d),
            SandboxError::LayerUnavailable { .. } => RunError::Unavailable(e.to_string()),
            SandboxError::Unsupported => RunError::Unsupported(e.to_string()),
            SandboxError::Policy(p) => p.into(),
            SandboxError::Setup { .. } | SandboxError::Spawn { .. } => {
                // the OS error can name paths of the agent's machine: logged, not sent
                tracing::warn!(error = %e, "api: cannot start a sandboxed run");
                RunError::Failed(
                    "the sandbox could not start the command; see the agent's log".into(),
                )
            }
        }
    }
}

impl From<PolicyError> for RunError {
    fn from(e: PolicyError) -> Self {
        tracing::warn!(error = %e, "api: the run policy cannot be built");
        RunError::Failed(format!(
            "the sandbox policy of this workspace is invalid: {e}"
        ))
    }
}

impl IntoResponse for RunError {
    fn into_response(self) -> Response {
        if let RunError::Api(e) = self {
            return e.into_response();
        }
        let (code, status) = self.code();
        let message = self.to_string();
        let busy = matches!(self, RunError::Busy);
        let (denied, how_to_allow) = match self {
            RunError::Denied(d) => (Some(d), None),
            RunError::Unenforced { how_to_allow, .. } => (None, Some(how_to_allow)),
            _ => (None, None),
        };
        let body = RunErrorBody {
            error: RunErrorDetail {
                code: code.to_owned(),
                message,
                denied,
                how_to_allow,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if busy {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(BUSY_RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// A workspace whose stored policy cannot be used: the store's state, or the fix to run.
pub(super) fn override_error(ws: &WorkspaceRoot, e: &OverrideError) -> RunError {
    tracing::warn!(workspace = ws.id, error = %e, "api: the workspace's sandbox policy cannot be read");
    match e {
        OverrideError::Store(_) | OverrideError::Workspace(_) => ApiError::new(
            ErrorCode::StoreUnavailable,
            "the sandbox policy of this workspace cannot be read; run `katachi doctor`",
        )
        .into(),
        OverrideError::NotAWorkspace(_) => ApiError::new(
            ErrorCode::WorkspaceNotFound,
            format!(
                "workspace {} is not allowed; GET /v1/workspaces lists them",
                ws.id
            ),
        )
        .into(),
        OverrideError::Corrupt { .. } | OverrideError::Invalid { .. } => {
            RunError::PolicyInvalid(e.to_string())
        }
    }
}
