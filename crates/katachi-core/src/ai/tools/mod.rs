//! The model's tools: `list_dir`, `read_file`, `search`, `write_file`, `apply_patch`,
//! `run_command`, `git_status`, `git_diff`, each one or two in-process requests to the agent API's
//! router (the one the tunnel serves, audit layer included).
//!
//! # Guarantees
//! - A tool reaches the filesystem and the sandbox only through the API router
//!   (`tower::ServiceExt::oneshot`), so the path rules, protected paths, sandbox, denial feed and
//!   audit are exactly the browser's. Each request is marked with [`AiCaller`], so the audit chain
//!   records it as the AI's ([`crate::store::Actor::Ai`]).
//! - The routes used are fixed by the tool (the workspace id is the [`ToolBox`]'s; the model's
//!   arguments go into query parameters, percent-encoded, or JSON bodies). No tool changes the
//!   sandbox policy or the allowed workspaces: no such route is ever requested.
//! - A refusal comes back as a [`ToolResult`] with `is_error: true` whose content is the API's
//!   JSON error as it was sent (`{"error":{"code":"sandbox.denied","message",…,"denied":{…}}}`,
//!   `path.protected`, `file.conflict`, …), so the model can act on it. Tool-level problems use
//!   the same shape with `tool.*` codes: `tool.unknown`, `tool.invalid_arguments` (the message
//!   gives the expected arguments), `tool.timeout`, `tool.too_large`, `tool.failed`.
//! - Every call is bounded: a wall-clock limit per request ([`ToolOptions`]), response bodies read
//!   with a cap, file and command output cut for the model (command output keeps its head and tail).
//!   Never a panic, never a hang.
//!
//! # Approvals
//! [`ToolBox::needs_approval`] names the tools that change something (`write_file`,
//! `apply_patch`, `run_command`). For those the engine first asks [`ToolBox::preview`]: the real
//! diff of the files as they are now against the proposed content (a patch is first checked by the
//! API, `check: true`), or the exact command line; a call that cannot succeed (bad arguments, a
//! stale hash, a patch that does not apply, a command not on the allowlist) is answered at once
//! with its error, without asking the user.
//!
//! # Layout
//! - `specs`: the tools' names, descriptions, JSON Schemas, and their argument types.
//! - `http`: the in-process request to the router, its bounds, and the error shapes.
//! - `files`: the file, search and git tools.
//! - `preview`: the approval previews of writes and patches (real diffs).
//! - `run`: `run_command`, its streamed output and the head + tail cut.

mod files;
mod http;
mod preview;
mod run;
mod specs;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::model::{ToolCall, ToolSpec};
use crate::api::AiCaller;

pub use specs::{tool_specs, TOOL_NAMES};

/// Bounds of the tools' calls.
#[derive(Debug, Clone)]
pub struct ToolOptions {
    /// Wall-clock limit of one API request (all tools but `run_command`).
    pub request_timeout: Duration,
    /// Wall-clock limit of a `run_command` (the sandbox's own wall time applies first).
    pub run_timeout: Duration,
    /// Largest file `read_file` reads (and the largest current file a write preview diffs).
    pub max_file_bytes: usize,
    /// Most bytes of text a result gives the model (file text, diff, listing).
    pub max_result_bytes: usize,
    /// Bytes of command output kept from the start of each stream, and as many from its end.
    pub run_output_head_tail_bytes: usize,
}

impl Default for ToolOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            run_timeout: Duration::from_secs(15 * 60),
            max_file_bytes: 4 << 20,
            max_result_bytes: 64 << 10,
            run_output_head_tail_bytes: 8 << 10,
        }
    }
}

/// What a tool call gives back to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The result (or the error, `{"error":{"code","message",…}}`) as JSON.
    pub content: serde_json::Value,
    /// The call failed or was refused; `content` says why.
    pub is_error: bool,
}

impl ToolResult {
    /// A successful result.
    pub fn ok(content: serde_json::Value) -> Self {
        Self {
            content,
            is_error: false,
        }
    }

    /// A tool-level error: `{"error":{"code","message"}}`.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            content: serde_json::json!({"error": {"code": code, "message": message.into()}}),
            is_error: true,
        }
    }

    /// The error code, for an error result.
    pub fn error_code(&self) -> Option<&str> {
        self.content["error"]["code"].as_str()
    }

    /// The content as the text of a [`super::ModelMessage::ToolResult`].
    pub fn to_text(&self) -> String {
        self.content.to_string()
    }
}

/// What the user is asked to approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApprovalPreview {
    /// Files would change: the unified diff of their current content against the new one.
    Diff {
        /// The files, workspace-relative.
        paths: Vec<String>,
        /// `--- a/…` / `+++ b/…` unified diff (`/dev/null` for created or deleted files).
        unified_diff: String,
    },
    /// A command would run in the sandbox.
    Command {
        /// The allowlisted command.
        command: String,
        /// Its arguments, as they will be passed (no shell).
        args: Vec<String>,
        /// The folder, workspace-relative (`""`: the root).
        cwd: String,
    },
}

/// Something a running tool reports before its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolProgress {
    /// Output of `run_command`, as it comes (not cut; the result holds the cut version).
    Output {
        /// `stdout` or `stderr`.
        stream: String,
        /// The text (lossy UTF-8).
        text: String,
    },
}

/// The model's tools over one workspace, through an API router.
#[derive(Clone)]
pub struct ToolBox {
    /// The agent API router (the tunnel's, with its audit layer).
    router: axum::Router,
    /// The workspace the tools act in.
    workspace: i64,
    /// Who the calls are recorded as.
    caller: AiCaller,
    /// Bounds.
    options: ToolOptions,
}

impl std::fmt::Debug for ToolBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolBox")
            .field("workspace", &self.workspace)
            .field("caller", &self.caller)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ToolBox {
    /// Tools over workspace `workspace` through `router`, recorded in the audit as the AI of chat
    /// session `session` acting for the relay's user `user`.
    pub fn new(router: axum::Router, workspace: i64, user: &str, session: &str) -> Self {
        Self {
            router,
            workspace,
            caller: AiCaller {
                user: user.to_owned(),
                session: session.to_owned(),
            },
            options: ToolOptions::default(),
        }
    }

    /// The same tools with other bounds.
    #[must_use]
    pub fn with_options(mut self, options: ToolOptions) -> Self {
        self.options = options;
        self
    }

    /// The tools offered to the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        tool_specs()
    }

    /// Whether a call of `name` waits for the user's approval (tools that change something).
    pub fn needs_approval(name: &str) -> bool {
        matches!(name, "write_file" | "apply_patch" | "run_command")
    }

    /// What to show the user before a call that needs approval. `Err` is the call's answer when
    /// it cannot succeed (bad arguments, stale hash, patch that does not apply, command not
    /// allowed, or a tool that needs no approval): send it to the model without asking.
    pub async fn preview(&self, call: &ToolCall) -> Result<ApprovalPreview, ToolResult> {
        let args = &call.arguments;
        match call.name.as_str() {
            "write_file" => preview::preview_write(self, specs::parse(&call.name, args)?).await,
            "apply_patch" => preview::preview_patch(self, specs::parse(&call.name, args)?).await,
            "run_command" => run::preview_run(self, specs::parse(&call.name, args)?).await,
            name if TOOL_NAMES.contains(&name) => Err(ToolResult::error(
                "tool.no_approval",
                format!("`{name}` changes nothing and needs no approval"),
            )),
            name => Err(specs::unknown(name)),
        }
    }

    /// Runs the call and answers it; `progress` receives a command's output as it comes.
    pub async fn call(
        &self,
        call: &ToolCall,
        progress: Option<mpsc::Sender<ToolProgress>>,
    ) -> ToolResult {
        self.dispatch(call, progress)
            .await
            .unwrap_or_else(|refused| refused)
    }

    async fn dispatch(
        &self,
        call: &ToolCall,
        progress: Option<mpsc::Sender<ToolProgress>>,
    ) -> Result<ToolResult, ToolResult> {
        let name = call.name.as_str();
        let args = &call.arguments;
        match name {
            "list_dir" => files::list_dir(self, specs::parse(name, args)?).await,
            "read_file" => files::read_file(self, specs::parse(name, args)?).await,
            "search" => files::search(self, specs::parse(name, args)?).await,
            "write_file" => files::write_file(self, specs::parse(name, args)?).await,
            "apply_patch" => files::apply_patch(self, specs::parse(name, args)?).await,
            "git_status" => files::git_status(self, specs::parse(name, args)?).await,
            "git_diff" => files::git_diff(self, specs::parse(name, args)?).await,
            "run_command" => run::run_command(self, specs::parse(name, args)?, progress).await,
            other => Err(specs::unknown(other)),
        }
    }
}
