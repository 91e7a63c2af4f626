//! AI operations: the model's conversation with the code on this machine.
//!
//! A user's message starts a *turn*: the workspace's chosen provider is called (streamed), the
//! model's tool calls are executed by the agent through the same API router the browser uses (so
//! the same path rules, protected paths, sandbox and audit apply), writes and commands wait for
//! the user's approval, and everything said and done is kept in the SQLCipher store.
//!
//! # Guarantees
//! - The model's hands are the tools of [`tools`], plus the user's MCP tools of [`mcp`] (run by the
//!   relay, never locally, each call approved); none of them can change the sandbox policy or the
//!   allowed workspaces.
//! - API keys come from the vault's API-key store and go only to their provider, in a header; they
//!   are never logged, stored in clear, sent to the relay or shown to the browser.
//! - Bytes sent to a provider are recorded in the audit ledger per session and workspace.
//!
//! # Layout
//! - `backends`: the agent's models (providers from settings and vault) and tools per workspace.
//! - `approvals`: the user's answers to writes, patches and commands, with expiry.
//! - `chat`: sessions and turns: history, system prompt, the streamed events, export.
//! - `fixed_agent`: the API and chat routes over fixed workspaces and one fixed model, without the
//!   agent runtime ([`fixed_agent::FixedAgent`]): for embedders, benchmarks and tests.
//! - `mcp`: the user's MCP tools, listed and called through the relay ([`mcp::WithMcpTools`]).
//! - `model`: the provider-neutral conversation: messages, tool calls and specs, stream events.
//! - `settings`: which provider, model and base URL each workspace uses (checked).
//! - `settings_scope`: the default or a workspace (found by its folder), the overview of what is
//!   set where, and a reset: shared by the CLI and the tray's Settings.
//! - `provider`: the OpenAI-compatible Chat Completions and Anthropic Messages clients (streamed
//!   over SSE, retried, cancelled on drop), [`Provider`] with its [`ModelStream`] and [`ProviderError`].
//! - `tools`: the model's tools over the agent API (`list_dir`, `read_file`, `write_file`, …):
//!   [`ToolBox`] (specs, approval previews, calls), each call an in-process request to the API router.

pub mod approvals;
pub mod backends;
pub mod chat;
pub mod fixed_agent;
pub mod mcp;
pub mod model;
pub mod provider;
pub mod settings;
pub mod settings_scope;
pub mod tools;

pub use model::{ModelEvent, ModelMessage, ModelRequest, StopReason, ToolCall, ToolSpec, Usage};
pub use provider::{
    ModelStream, Provider, ProviderConfig, ProviderError, ProviderKind, ProviderOptions,
};
pub use tools::{ApprovalPreview, ToolBox, ToolOptions, ToolProgress, ToolResult};
