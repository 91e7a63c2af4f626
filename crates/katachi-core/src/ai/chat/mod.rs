//! Chat sessions: a user's conversation with the model about one workspace, kept in the store.
//!
//! # Layout
//! - `turn`: one turn — the model, its tool calls, approvals, cancellation — stored as it goes.
//! - `memory_routes`: the workspace notes the user saves for the model (routes and checks).
//! - `routes`: the chat routes of the agent API (sessions, turns as NDJSON, approvals, export).
//! - `service`: [`ChatService`]: sessions, one running turn each, stop, approvals.
//! - `seams`: what a turn needs from a model and from the tools ([`TurnModel`], [`TurnTools`]).
//! - `history`: stored messages as the model's conversation (and the payload they carry).
//! - `compact`: summaries of the older part of a long conversation.
//! - `prompt`: the system prompt with the workspace memory.
//! - `events`: the lines a turn streams to the browser.
//! - `export`: a session as Markdown.
//! - `chat_store`: the store as turns use it ([`ChatStore`]).
//! - `api_doc`: the chat routes' OpenAPI descriptions.

pub(crate) mod api_doc;
mod chat_store;
mod compact;
pub mod events;
pub mod export;
pub mod history;
pub mod memory_routes;
pub mod prompt;
pub mod routes;
pub mod seams;
pub mod service;
pub mod turn;

pub use chat_store::ChatStore;
pub use events::{ChatEvent, TurnEnd};
pub use seams::{
    ModelCall, ModelDescription, ModelEvents, ToolOutcome, ToolOutputChunk, TurnModel, TurnTools,
};
pub use service::{ChatBackends, ChatError, ChatService, StartedTurn, StopOnDrop};
pub use turn::{Turn, MAX_STEPS};

/// Why something a turn needed failed, as the browser and the model are told: a stable code and
/// a message saying what to do. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    /// Stable code (`ai.rate_limited`, `store.unavailable`, …).
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The store could not be read or written.
    pub fn store() -> Self {
        Self::new(
            "store.unavailable",
            "the chat history cannot be read or written; run `katachi doctor` on the agent's machine",
        )
    }

    /// The audit log could not be appended to.
    pub fn audit() -> Self {
        Self::new(
            "audit.unavailable",
            "the audit log cannot be written, so nothing is sent to the AI provider; run `katachi doctor` on the agent's machine",
        )
    }
}
