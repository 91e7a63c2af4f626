//! `POST /v1/workspaces/{id}/run`: one allowlisted command, run in the sandbox inside a workspace,
//! its output streamed as it is produced; and `GET /v1/workspaces/{id}/run/commands`, the allowlist.
//!
//! The request names a command (a plain name on the workspace's allowlist, never a path or a shell
//! line), its arguments (passed as they are: no shell ever parses them), a folder inside the
//! workspace (checked with the API's path rules) and an optional time limit. The answer is
//! `application/x-ndjson`: one JSON object per line, output chunks as they come, then one final
//! object with the exit status, the structured denial that ended the run (if any), the duration and
//! the sandbox layers that were active (see [`events`]).
//!
//! # Guarantees
//! - What is known before spawning is refused as a JSON error, nothing run: a command not on the
//!   list (`403 sandbox.denied` with the structured [`SandboxDenied`]), a bad folder (`path.*`), a
//!   missing sandbox layer (`503 sandbox.unavailable`), too many runs at once (`429 run.busy`).
//! - A client that goes away (closed tab, Stop button, relay stream reset) cancels the run: the
//!   whole process tree is killed, and the run's slot is freed only once it is dead.
//! - Limits hit during the run (wall time, output, CPU) end it and are named in the final line.
//! - Every denial (up front, or what ended the run, or a host the proxy refused) is also published
//!   on the API's [`DenialFeed`](super::DenialFeed), for the agent's host to tell the user.
//!
//! # Policy
//! A workspace's policy is the one the sandbox builds from its stored overrides
//! ([`SandboxPolicy::for_workspace`]: extra commands, hosts, limits, `.env*` access; the agent's
//! own folders hidden), plus [`DEFAULT_RUN_COMMANDS`] so that a new workspace can list and read
//! its files; the request can only shorten the wall time.

mod error;
mod events;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

use super::audit_layer::AuditNote;
use super::error::{ApiError, ErrorCode};
use super::paths::{RelPath, WorkspaceRoot};
use super::{ApiState, WorkspaceId};
use crate::sandbox::policy::is_trusted_command;
use crate::sandbox::{policy_set_command, Limits, RunRequest, Sandbox, SandboxPolicy};

pub use error::RunErrorBody;
pub use events::{RunExit, RunFinalEvent, RunOutputEvent};
pub use report::{SandboxLayer, SandboxReport};

pub(crate) use error::RunError;
pub(crate) use report::sandbox_report;

/// Commands a workspace allows until per-workspace lists exist: ones that read and compare files.
/// Those missing on this machine are left out.
pub const DEFAULT_RUN_COMMANDS: &[&str] =
    &["cat", "diff", "git", "grep", "head", "ls", "tail", "wc"];

/// Runs at once per agent; more answer `429 run.busy`.
pub const MAX_CONCURRENT_RUNS: usize = 4;

/// Largest run request body: a command line, not a payload.
const MAX_RUN_BODY_BYTES: usize = 64 * 1024;

/// Most arguments one run takes.
const MAX_ARGS: usize = 1024;

/// The routes of this module; the slots that cap concurrent runs are shared by them.
pub(crate) fn routes() -> Router<ApiState> {
    let slots = RunSlots(Arc::new(Semaphore::new(MAX_CONCURRENT_RUNS)));
    Router::new()
        .route("/workspaces/{id}/run", post(run_command))
        .route("/workspaces/{id}/run/commands", get(list_commands))
        .layer(Extension(slots))
}

/// The per-agent cap on concurrent runs (one per router).
#[derive(Debug, Clone)]
pub(crate) struct RunSlots(Arc<Semaphore>);

/// What to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// An allowlisted command name (`git`), not a path.
    pub command: String,
    /// Its arguments, passed as they are (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// The folder to run in, relative to the workspace root (default: the root).
    #[serde(default)]
    pub cwd: String,
    /// Wall-time limit in seconds (default and maximum: the policy's limit).
    pub timeout_secs: Option<u64>,
}

/// An allowlisted command.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunCommand {
    /// The name to send as `command`.
    pub name: String,
    /// The absolute binary it runs (resolved through a fixed, trusted `PATH`).
    pub path: String,
}

/// The commands a workspace allows, and the limits of each run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunCommandList {
    /// The allowed commands, by name.
    pub commands: Vec<RunCommand>,
    /// Default and largest `timeout_secs`.
    pub max_timeout_secs: u64,
    /// Bytes of output (both streams) after which a run is killed.
    pub max_output_bytes: u64,
    /// Runs the agent accepts at once.
    pub max_concurrent_runs: usize,
    /// The sandbox runs happen in.
    pub sandbox: SandboxReport,
}

/// The sandbox policy of a run in `ws`: the workspace's own policy (stored overrides, agent's
/// folders hidden; see [`WorkspaceSource::sandbox_policy`](super::WorkspaceSource::sandbox_policy)),
/// plus [`DEFAULT_RUN_COMMANDS`], its wall time capped at `timeout`.
fn policy_for(
    state: &ApiState,
    ws: &WorkspaceRoot,
    timeout: Option<Duration>,
) -> Result<SandboxPolicy, RunError> {
    let mut builder = state
        .inner
        .source
        .sandbox_policy(&ws.root)
        .map_err(|e| error::override_error(ws, &e))?
        // the caller may shorten the wall time, never lengthen it
        .map_limits(|l| Limits {
            wall_time: timeout.map_or(l.wall_time, |t| t.min(l.wall_time)),
            ..l
        });
    for name in DEFAULT_RUN_COMMANDS
        .iter()
        .filter(|n| is_on_trusted_path(n))
    {
        builder = builder.allow_command(*name);
    }
    Ok(builder.build()?)
}

/// Whether `name` is a program in the trusted folders (missing defaults are skipped); on Windows
/// `cat`, `grep`… come from Git for Windows when it is installed.
fn is_on_trusted_path(name: &str) -> bool {
    is_trusted_command(name)
}

/// Lists the commands a workspace allows.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/run/commands",
    tag = "run",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The allowlist and limits", body = RunCommandList),
        (status = 404, description = "`workspace.not_found`", body = super::ErrorBody),
        (status = 409, description = "`sandbox.policy_invalid`: the workspace's stored overrides are unusable (the message says how to reset them)", body = RunErrorBody),
        (status = 500, description = "`sandbox.failed`: the policy cannot be built", body = RunErrorBody),
        (status = 503, description = "`store.unavailable`", body = super::ErrorBody),
    )
)]
pub(crate) async fn list_commands(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
) -> Result<Json<RunCommandList>, RunError> {
    let (policy, sandbox) = run_blocking(&state, move |s| {
        let ws = s.workspace(id)?;
        Ok((
            policy_for(&s, &ws, None)?,
            sandbox_report(&Sandbox::probe()),
        ))
    })
    .await?;
    let limits = policy.limits();
    Ok(Json(RunCommandList {
        commands: policy
            .commands()
            .map(|c| RunCommand {
                name: c.name.clone(),
                path: c.path.display().to_string(),
            })
            .collect(),
        max_timeout_secs: limits.wall_time.as_secs(),
        max_output_bytes: limits.output_bytes,
        max_concurrent_runs: MAX_CONCURRENT_RUNS,
        sandbox,
    }))
}

/// Runs an allowlisted command in the sandbox and streams its output.
#[utoipa::path(
    post,
    path = "/v1/workspaces/{id}/run",
    tag = "run",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body(content = RunBody, content_type = "application/json"),
    responses(
        (status = 200, description = "`application/x-ndjson`: `RunOutputEvent` lines as output comes, then one `RunFinalEvent`", content_type = "application/x-ndjson", body = RunFinalEvent),
        (status = 400, description = "`request.invalid`, `path.*` lexical refusals, `path.not_a_directory`", body = super::ErrorBody),
        (status = 403, description = "`sandbox.denied` (with `denied`), `sandbox.unenforced` (with `how_to_allow`: the sandbox is not enforced on this machine and its local user has not allowed runs in this workspace), `path.outside_workspace`", body = RunErrorBody),
        (status = 404, description = "`workspace.not_found`, `path.not_found`", body = super::ErrorBody),
        (status = 409, description = "`sandbox.policy_invalid`: the workspace's stored overrides are unusable", body = RunErrorBody),
        (status = 429, description = "`run.busy`, with `Retry-After`", body = RunErrorBody),
        (status = 501, description = "`sandbox.unsupported`: no sandbox on this OS", body = RunErrorBody),
        (status = 503, description = "`sandbox.unavailable`: a layer the policy needs is missing; `store.unavailable`", body = RunErrorBody),
    )
)]
pub(crate) async fn run_command(
    State(state): State<ApiState>,
    Extension(slots): Extension<RunSlots>,
    WorkspaceId(id): WorkspaceId,
    body: Body,
) -> Response {
    let request = match read_body(body).await {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    // the audit record names the command line, whether it ran or was refused
    let note = AuditNote::command_line(&request.command, &request.args);
    let mut response = run_parsed(state, slots, id, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(note);
    response
}

/// [`run_command`] once its body is parsed.
async fn run_parsed(
    state: ApiState,
    slots: RunSlots,
    id: i64,
    request: RunBody,
) -> Result<Response, RunError> {
    let timeout = check_request(&request)?;
    // reject beyond the cap before any work; the slot is held until the process tree is dead
    let permit: OwnedSemaphorePermit = slots.0.try_acquire_owned().map_err(|_| RunError::Busy)?;
    // kept for the denial feed: the request itself goes to the blocking pool
    let asked = Asked {
        command: request.command.clone(),
        args: request.args.clone(),
    };
    let (child, report, workspace) = {
        let asked = asked.clone();
        run_blocking(&state, move |s| {
            let ws = s.workspace(id)?;
            let spawned = spawn_in(&s, &ws, request, timeout);
            if let Err(RunError::Denied(denied)) = &spawned {
                s.denials()
                    .publish(&ws.root, &asked.command, &asked.args, denied);
            }
            spawned.map(|(child, report)| (child, report, ws.root))
        })
        .await?
    };
    let layers = report
        .layers
        .into_iter()
        .filter(|l| l.active)
        .map(|l| l.name)
        .collect();
    let denials = events::DenialReport {
        feed: state.denials().clone(),
        workspace,
        command: asked.command,
        args: asked.args,
    };
    let body = events::stream_run(child, permit, layers, denials);
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// The command line a run asked for.
#[derive(Clone)]
struct Asked {
    /// The command's name.
    command: String,
    /// Its arguments.
    args: Vec<String>,
}

/// Checks and spawns `request` in `ws` (blocking): its folder, policy, the consent where the
/// sandbox is not enforced, the allowlist; then the sandboxed child and the sandbox's report.
fn spawn_in(
    s: &ApiState,
    ws: &WorkspaceRoot,
    request: RunBody,
    timeout: Option<Duration>,
) -> Result<(crate::sandbox::SandboxChild, SandboxReport), RunError> {
    let cwd = resolve_cwd(ws, &request.cwd)?;
    let policy = policy_for(s, ws, timeout)?;
    let sandbox = Sandbox::probe();
    // a browser must not run commands unconfined (Windows, where `git -c alias.x='!…'` runs
    // anything) unless the machine's local user said so for this workspace
    check_unenforced_consent(s, &sandbox, ws, &policy)?;
    // refused up front, as a 403 before anything runs
    policy.command(&request.command).map_err(RunError::Denied)?;
    let run = RunRequest {
        command: request.command,
        args: request.args.into_iter().map(Into::into).collect(),
        cwd,
    };
    Ok((sandbox.spawn(&policy, &run)?, sandbox_report(&sandbox)))
}

/// Refuses a run where the sandbox is not enforced, unless the workspace's overrides carry the
/// local user's consent; the refusal names the command that gives it.
fn check_unenforced_consent(
    state: &ApiState,
    sandbox: &Sandbox,
    ws: &WorkspaceRoot,
    policy: &SandboxPolicy,
) -> Result<(), RunError> {
    let status = sandbox.status();
    let enforced = status.enforced && !state.inner.sandbox_forced_unenforced;
    if enforced || policy.allows_unsandboxed() {
        return Ok(());
    }
    let notice = status
        .notice()
        .unwrap_or_else(|| "commands are not confined by an OS sandbox here".to_owned());
    Err(RunError::Unenforced {
        notice,
        how_to_allow: policy_set_command(&ws.root, "--allow-unsandboxed"),
    })
}

/// Reads and parses the JSON body (capped).
async fn read_body(body: Body) -> Result<RunBody, RunError> {
    let bytes = axum::body::to_bytes(body, MAX_RUN_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::invalid(format!(
                "the run request is unreadable or larger than {MAX_RUN_BODY_BYTES} bytes"
            ))
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(format!(
            "the run request is not valid JSON of the form {{\"command\",\"args\",\"cwd\",\"timeout_secs\"}}: {e}"
        ))
        .into()
    })
}

/// Checks the parts the sandbox does not: argument count and NUL bytes, the time limit.
fn check_request(r: &RunBody) -> Result<Option<Duration>, RunError> {
    if r.command.is_empty() {
        return Err(ApiError::invalid("`command` is empty; name an allowed command").into());
    }
    if r.args.len() > MAX_ARGS {
        return Err(ApiError::invalid(format!("more than {MAX_ARGS} arguments")).into());
    }
    // reject NUL: the OS would cut the argument short at it
    if r.command.contains('\0') || r.args.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::invalid("an argument contains a NUL byte").into());
    }
    match r.timeout_secs {
        Some(0) => Err(ApiError::invalid("`timeout_secs` must be at least 1").into()),
        t => Ok(t.map(Duration::from_secs)),
    }
}

/// The run's folder: an existing folder inside the workspace, by the API's path rules.
fn resolve_cwd(ws: &WorkspaceRoot, raw: &str) -> Result<PathBuf, RunError> {
    let rel = RelPath::parse(raw.as_bytes())?;
    let resolved = ws.resolve(&rel)?;
    if !resolved.meta.is_dir() {
        return Err(ApiError::new(
            ErrorCode::PathNotADirectory,
            format!("{:?} is not a folder; `cwd` names a folder", rel.as_str()),
        )
        .into());
    }
    Ok(resolved.abs)
}

/// Runs `work` on the blocking pool (paths, policy and spawning touch the filesystem).
async fn run_blocking<T, F>(state: &ApiState, work: F) -> Result<T, RunError>
where
    T: Send + 'static,
    F: FnOnce(ApiState) -> Result<T, RunError> + Send + 'static,
{
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(state))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "api: blocking run task failed");
            RunError::Failed("the run was interrupted".to_owned())
        })?
}

#[cfg(test)]
#[path = "run/run_tests.rs"]
mod tests;
