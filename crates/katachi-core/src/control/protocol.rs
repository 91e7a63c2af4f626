//! The control socket's wire format: JSON lines.
//!
//! # Shape
//! - The client sends one [`RequestLine`] per line: `{"cmd":"workspace_add","path":"/code","by":"cli"}`.
//!   `by` names the front end asking (`cli`, `app`), so the audit log records who changed what.
//! - The agent answers each request with one [`Reply`] line: `{"ok": …}` or
//!   `{"error":{"code":"workspace.not_found","message":"…"}}`. Codes are stable dotted strings that
//!   clients branch on; messages are for people.
//! - `watch` is answered by a stream of `{"ok": StatusReport}` lines (the current status, then one
//!   per change) that ends when the client closes the connection.
//! - A line is at most [`MAX_LINE`] bytes; a longer one is refused (`control.line_too_long`) and
//!   the connection closed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::lock::FrontEnd;
use crate::agent::Status;
use crate::agent_status::AgentStatus;
use crate::workspace_admin::PolicyChange;

/// The longest line either side sends or accepts (bytes, newline included).
pub const MAX_LINE: usize = 64 * 1024;

/// One request: the command and who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLine {
    /// The front end asking (recorded in the audit log); `cli` when absent.
    #[serde(default = "default_caller")]
    pub by: FrontEnd,
    /// The command.
    #[serde(flatten)]
    pub request: Request,
}

fn default_caller() -> FrontEnd {
    FrontEnd::Cli
}

/// A command to the running agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The agent's status now ([`StatusReport`]).
    Status,
    /// The status now, then every change, until the client closes.
    Watch,
    /// Allow a folder ([`crate::store::AddOutcome`]).
    WorkspaceAdd {
        /// The folder (absolute; the agent's working folder is not the client's).
        path: PathBuf,
    },
    /// Stop allowing a workspace ([`crate::store::Workspace`]).
    WorkspaceRemove {
        /// The workspace as listed.
        path: PathBuf,
    },
    /// The allowed workspaces (`[ListedWorkspace]`).
    WorkspaceList,
    /// Add to a workspace's sandbox overrides ([`crate::workspace_admin::PolicySet`]).
    PolicySet(PolicyChange),
    /// Remove a workspace's sandbox overrides: the default policy applies again
    /// ([`crate::workspace_admin::PolicyReset`]).
    PolicyReset {
        /// The allowed workspace, or a folder inside it (absolute).
        workspace: PathBuf,
    },
    /// Take remote access down for `secs` seconds (or until `resume`).
    Pause {
        /// How long, in seconds (at least 1).
        secs: u64,
    },
    /// End a pause now.
    Resume,
    /// Redial the relay now instead of waiting for the backoff.
    ReconnectNow,
    /// Start signing in at a relay ([`crate::agent::SignInStarted`]: the code to approve).
    SignIn {
        /// The relay, `https://host[:port]`.
        relay: String,
        /// The only CA to trust for it (PEM), for self-hosted relays.
        #[serde(default)]
        ca_pem: Option<String>,
        /// The name the relay shows for this machine (default: the host name).
        #[serde(default)]
        device_name: Option<String>,
    },
    /// Abandon a sign-in that waits for approval.
    CancelSignIn,
    /// Sign out: the relay forgets this agent (unless `local_only`), credentials are wiped.
    #[serde(alias = "unregister")]
    SignOut {
        /// Wipe the local credentials without telling the relay (it cannot be reached).
        #[serde(default)]
        local_only: bool,
    },
    /// Stop the agent cleanly (its process exits with [`crate::exit_codes::STOPPED`]).
    Stop,
}

impl Request {
    /// The command's wire name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Watch => "watch",
            Request::WorkspaceAdd { .. } => "workspace_add",
            Request::WorkspaceRemove { .. } => "workspace_remove",
            Request::WorkspaceList => "workspace_list",
            Request::PolicySet(_) => "policy_set",
            Request::PolicyReset { .. } => "policy_reset",
            Request::Pause { .. } => "pause",
            Request::Resume => "resume",
            Request::ReconnectNow => "reconnect_now",
            Request::SignIn { .. } => "sign_in",
            Request::CancelSignIn => "cancel_sign_in",
            Request::SignOut { .. } => "sign_out",
            Request::Stop => "stop",
        }
    }
}

/// One answer line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Done; the value depends on the request.
    Ok(serde_json::Value),
    /// Not done, and why.
    Error(Failure),
}

/// Why a request was not carried out: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct Failure {
    /// Stable dotted code (`control.forbidden`, `workspace.not_found`, `agent.not_now`…).
    pub code: String,
    /// For people; never a secret.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The codes of the control socket itself (the others come from the agent and the store).
pub mod codes {
    /// The connecting process runs as another user: refused, connection closed.
    pub const FORBIDDEN: &str = "control.forbidden";
    /// The line is not a request this agent knows (malformed JSON, unknown `cmd`).
    pub const BAD_REQUEST: &str = "control.bad_request";
    /// The line is longer than [`super::MAX_LINE`]; the connection is closed.
    pub const LINE_TOO_LONG: &str = "control.line_too_long";
    /// Too many clients are connected; try again.
    pub const BUSY: &str = "control.busy";
    /// The request took too long and was abandoned.
    pub const TIMEOUT: &str = "control.timeout";
    /// The agent failed internally (a task ended); see its log.
    pub const INTERNAL: &str = "control.internal";
}

/// What `status` and each `watch` line carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The one status (connected, paused, reconnecting…).
    pub status: Status,
    /// The relay session's detail: last heartbeat, pending events, clock offset.
    pub session: AgentStatus,
    /// The agent's process id.
    pub pid: u32,
    /// When its control socket started (unix seconds).
    pub started_at: i64,
    /// Which front end runs it, when its lock says so.
    pub by: Option<FrontEnd>,
}
