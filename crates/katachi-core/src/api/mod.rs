//! The agent's structured API: one axum [`Router`] that the tunnel (and tests, over loopback) serve.
//!
//! Structured calls only: there is no raw shell and no arbitrary path. Every path names a file in
//! an allowed workspace and goes through `paths` (lexical rules, canonicalisation, prefix check,
//! descriptor re-check) before any filesystem call. Errors are `{"error":{"code","message"}}` with
//! stable dotted codes ([`ErrorCode`]). The OpenAPI description is `docs/openapi.json` ([`openapi`]).
//!
//! # Routes (all under `/v1`)
//! - `GET  /status` — the agent's version and number of workspaces (`status`).
//! - `GET  /workspaces` — the allowed workspaces (`workspaces`).
//! - `GET  /workspaces/{id}/tree?path&depth&limit&cursor` — a paged, `.gitignore`-aware listing (`tree`).
//! - `GET  /workspaces/{id}/file?path` (+ `Range`) — a file's bytes, streamed (`read`).
//! - `GET  /workspaces/{id}/stat?path` — kind, size, and SHA-256 of a file (`stat`).
//! - `PUT  /workspaces/{id}/file?path&expected` — atomic write guarded by the content hash (`write`).
//! - `POST /workspaces/{id}/patch` — a multi-file unified diff, applied all or nothing (`patch`).
//! - `GET  /workspaces/{id}/search?query&regex&…` — bounded text search (`search`).
//! - `GET  /workspaces/{id}/git/status`, `/git/diff` — via libgit2, which runs no hooks or filters (`git`).
//! - `POST /workspaces/{id}/run`, `GET …/run/commands` — an allowlisted command in the sandbox, output streamed (`run`).
//!
//! # Layout
//! - `audit_layer`: [`AuditLayer`], recording every call through the tunnel in the audit chain.
//! - `denials`: [`DenialFeed`], the runs the sandbox denies, live, for the agent's host.
//! - `error`: [`ApiError`], [`ErrorCode`] and the JSON error body.
//! - `source`: [`WorkspaceSource`] (where the allowed list comes from) and [`FixedWorkspaces`].
//! - `paths`: the path rules, and resolution of a client's path inside a workspace.
//! - `checked_open`: opening a resolved path, re-checked against what was resolved (TOCTOU).
//! - `status`, `workspaces`, `tree`, `read`, `stat`, `write`, `patch`, `search`, `git`, `run`: one handler group each.
//! - `git_change`: libgit2 statuses and deltas as [`GitChange`].
//! - `git_confine`: the check that a repository reads nothing outside the allowed workspaces.
//! - `openapi`: the OpenAPI document and the test that keeps `docs/openapi.json` current.
//!
//! AI chat is added on this router by its issue.

mod audit_layer;
mod checked_open;
mod denials;
mod error;
mod git;
mod git_change;
mod git_confine;
pub mod openapi;
mod patch;
mod paths;
mod read;
mod run;
mod search;
mod source;
mod stat;
mod status;
mod tree;
mod workspaces;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

pub use audit_layer::{AiCaller, AuditHealth, AuditLayer, AuditOptions, AuditService, CallDetail};
pub use denials::{DenialFeed, RunDenied};
pub use error::{ApiError, ApiResult, ErrorBody, ErrorCode, ErrorDetail};
pub use git::{DiffFile, GitChange, GitDiff, GitStatus, GitStatusEntry};
pub use patch::{FileChange, PatchBody, PatchResult, PatchedFile};
pub use paths::{RelPath, MAX_COMPONENT_BYTES, MAX_PATH_BYTES};
pub use read::READ_CHUNK_BYTES;
pub use run::{
    RunBody, RunCommandList, RunExit, RunFinalEvent, RunOutputEvent, SandboxLayer, SandboxReport,
};
pub use search::{SearchMatch, SearchResults};
pub use source::{FixedWorkspaces, WorkspaceSource};
pub use stat::{FileKind, FileStat};
pub use status::ApiStatus;
pub use tree::{TreeEntry, TreePage};
pub use workspaces::{WorkspaceInfo, WorkspaceList};
pub use write::WriteResult;

use paths::WorkspaceRoot;

/// Bounds on what one call may cost; the defaults suit an interactive web UI.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest file (or range) a read returns; larger ones get `file.too_large` (read in ranges).
    pub max_read_bytes: u64,
    /// Largest body a write accepts; it is buffered, so keep it modest.
    pub max_write_bytes: usize,
    /// Whole-file reads up to this size are hashed and carry `x-katachi-sha256` (the `expected`
    /// value for a later write); larger files stream in chunks without it (use `stat`).
    pub hash_inline_max_bytes: u64,
    /// Most entries one tree page returns (the `limit` parameter is capped to it).
    pub tree_max_entries: usize,
    /// Most entries read from one folder; a larger folder is listed partially and reported.
    pub tree_max_dir_entries: usize,
    /// Deepest recursion of a tree listing.
    pub tree_max_depth: usize,
    /// Wall-clock budget of one tree page; when spent the page ends early with a cursor.
    pub tree_time_budget: Duration,
    /// Most matches one search returns (the `max_results` parameter is capped to it).
    pub search_max_results: usize,
    /// Files larger than this are not searched.
    pub search_max_file_bytes: u64,
    /// Wall-clock budget of one search; when spent the results are marked truncated.
    pub search_time_budget: Duration,
    /// Most entries one git status returns.
    pub git_max_entries: usize,
    /// Most bytes of patch text one git diff returns.
    pub git_max_patch_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_read_bytes: 1 << 30,
            max_write_bytes: 8 << 20,
            hash_inline_max_bytes: 8 << 20,
            tree_max_entries: 1000,
            tree_max_dir_entries: 20_000,
            tree_max_depth: 16,
            tree_time_budget: Duration::from_secs(2),
            search_max_results: 1000,
            search_max_file_bytes: 8 << 20,
            search_time_budget: Duration::from_secs(5),
            git_max_entries: 5000,
            git_max_patch_bytes: 4 << 20,
        }
    }
}

/// What the API's handlers share: where the allowed workspaces come from, and the limits.
#[derive(Clone)]
pub struct ApiState {
    /// Shared by all requests.
    inner: Arc<Inner>,
}

/// The shared part of [`ApiState`].
struct Inner {
    /// The allowed workspaces, asked on every call.
    source: Arc<dyn WorkspaceSource>,
    /// Bounds per call.
    limits: ApiLimits,
    /// Runs act as on a machine whose sandbox is not enforced (a test seam: Windows' behaviour,
    /// exercised on any OS); otherwise the probed [`crate::sandbox::SandboxStatus`] decides.
    sandbox_forced_unenforced: bool,
    /// Serialises writes made through the API, so two API writes to one file cannot both pass the
    /// hash check (writes by other programs are caught by the re-check before the rename).
    write_lock: std::sync::Mutex<()>,
    /// Where denied runs are published as they happen.
    denials: DenialFeed,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over `source` with the default [`ApiLimits`].
    pub fn new(source: Arc<dyn WorkspaceSource>) -> Self {
        Self::with_limits(source, ApiLimits::default())
    }

    /// State over `source` with explicit limits.
    pub fn with_limits(source: Arc<dyn WorkspaceSource>, limits: ApiLimits) -> Self {
        Self::build(source, limits, false)
    }

    /// State whose runs act as on a machine where the sandbox is not enforced (Windows): each
    /// run needs the local user's consent for its workspace (`sandbox.unenforced` without it).
    ///
    /// # Testing
    /// This is the seam that tests Windows' refusal on any OS; the agent never uses it (its
    /// runs follow the probed sandbox status). Consented runs still go through the real sandbox.
    pub fn with_unenforced_sandbox(source: Arc<dyn WorkspaceSource>, limits: ApiLimits) -> Self {
        Self::build(source, limits, true)
    }

    fn build(
        source: Arc<dyn WorkspaceSource>,
        limits: ApiLimits,
        sandbox_forced_unenforced: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                limits,
                sandbox_forced_unenforced,
                write_lock: std::sync::Mutex::new(()),
                denials: DenialFeed::new(),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ApiLimits {
        &self.inner.limits
    }

    /// The runs this API's sandbox denies, as they happen (subscribe before serving).
    pub fn denials(&self) -> &DenialFeed {
        &self.inner.denials
    }

    /// The allowed workspaces now (blocking).
    fn allowed(&self) -> ApiResult<Vec<crate::store::Workspace>> {
        self.inner.source.allowed_workspaces().map_err(|e| {
            tracing::warn!(error = %e, "api: cannot read the allowed workspaces");
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the list of allowed workspaces cannot be read; run `katachi doctor`",
            )
        })
    }

    /// The allowed workspace `id`, its root re-checked (blocking).
    fn workspace(&self, id: i64) -> ApiResult<WorkspaceRoot> {
        let ws = self
            .allowed()?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::WorkspaceNotFound,
                    format!("workspace {id} is not allowed; GET /v1/workspaces lists them"),
                )
            })?;
        let checked = WorkspaceRoot::verify(&ws, crate::protected::ProtectedPaths::default())?;
        // the same rules the sandbox gets for this workspace (katachi's folders, `.env*` choice)
        let protected = self
            .inner
            .source
            .protected_paths(&checked.root)
            .map_err(|e| policy_error(id, &e))?;
        Ok(WorkspaceRoot {
            protected,
            ..checked
        })
    }

    /// The canonical roots of every allowed workspace that is still in place (blocking).
    fn allowed_roots(&self) -> ApiResult<Vec<std::path::PathBuf>> {
        Ok(self
            .allowed()?
            .iter()
            .filter_map(|w| WorkspaceRoot::verify(w, Default::default()).ok())
            .map(|w| w.root)
            .collect())
    }

    /// Runs filesystem work on the blocking pool.
    async fn blocking<T, F>(&self, work: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(ApiState) -> ApiResult<T> + Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || work(state))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "api: blocking task failed");
                ApiError::new(ErrorCode::IoFailed, "the operation was interrupted")
            })?
    }
}

/// A workspace whose sandbox policy (and so its protected paths) cannot be read.
fn policy_error(id: i64, e: &crate::sandbox::OverrideError) -> ApiError {
    use crate::sandbox::OverrideError;
    tracing::warn!(workspace = id, error = %e, "api: the workspace's sandbox policy cannot be read");
    match e {
        OverrideError::Store(_) | OverrideError::Workspace(_) => ApiError::new(
            ErrorCode::StoreUnavailable,
            "the sandbox policy of this workspace cannot be read; run `katachi doctor`",
        ),
        OverrideError::NotAWorkspace(_) => ApiError::new(
            ErrorCode::WorkspaceNotFound,
            format!("workspace {id} is not allowed; GET /v1/workspaces lists them"),
        ),
        // the message names the workspace and the command that resets it
        OverrideError::Corrupt { .. } | OverrideError::Invalid { .. } => {
            ApiError::new(ErrorCode::SandboxPolicyInvalid, e.to_string())
        }
    }
}

/// The API router over `state`. Routes are under `/v1`; unknown routes answer `request.not_found`.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/status", get(status::get_status))
        .route("/workspaces", get(workspaces::list_workspaces))
        .route("/workspaces/{id}/tree", get(tree::list_tree))
        .route(
            "/workspaces/{id}/file",
            get(read::read_file)
                .put(write::write_file)
                // the write handler enforces its own cap (`max_write_bytes`) while reading
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/workspaces/{id}/patch",
            post(patch::patch_files)
                // the handler enforces its own cap (`max_write_bytes`) while reading
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/workspaces/{id}/stat", get(stat::stat_path))
        .route("/workspaces/{id}/search", get(search::search))
        .route("/workspaces/{id}/git/status", get(git::git_status))
        .route("/workspaces/{id}/git/diff", get(git::git_diff))
        .merge(run::routes());
    Router::new()
        .nest("/v1", v1)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn route_not_found() -> ApiError {
    ApiError::new(ErrorCode::RequestNotFound, "no such API route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::RequestMethodNotAllowed,
        "this route does not accept that method",
    )
}

/// The `{id}` of a workspace route; a malformed id is an unknown workspace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkspaceId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for WorkspaceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::invalid("the workspace id is missing"))?;
        raw.parse::<i64>().map(WorkspaceId).map_err(|_| {
            ApiError::new(
                ErrorCode::WorkspaceNotFound,
                format!("{raw:?} is not a workspace id; GET /v1/workspaces lists them"),
            )
        })
    }
}

/// Typed query parameters whose rejection is a JSON `request.invalid` (the `path` parameter is
/// read separately and strictly by `paths::QueryPath`).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::invalid(format!("bad query parameters: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn call(uri: &str) -> (StatusCode, serde_json::Value) {
        let tmp = tempfile::tempdir().unwrap();
        let state = ApiState::new(Arc::new(FixedWorkspaces::new([tmp.path()]).unwrap()));
        let res = router(state)
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn unknown_route_is_a_json_error() {
        let (status, body) = call("/v2/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "request.not_found");
    }

    #[tokio::test]
    async fn malformed_workspace_id_is_an_unknown_workspace() {
        let (status, body) = call("/v1/workspaces/abc/tree").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "workspace.not_found");
        let (_, body) = call("/v1/workspaces/99/tree").await;
        assert_eq!(body["error"]["code"], "workspace.not_found");
    }

    #[tokio::test]
    async fn a_wrong_method_is_405_with_a_json_error() {
        let tmp = tempfile::tempdir().unwrap();
        let state = ApiState::new(Arc::new(FixedWorkspaces::new([tmp.path()]).unwrap()));
        let res = router(state)
            .oneshot(Request::delete("/v1/status").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "request.method_not_allowed");
    }

    #[tokio::test]
    async fn bad_query_parameter_is_request_invalid() {
        let (status, body) = call("/v1/workspaces/1/tree?limit=many").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "request.invalid");
    }
}
