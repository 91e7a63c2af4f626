//! What a turn needs from a model and from the tools, as two small traits: the provider clients
//! (`ai::provider`) and the tool box (`ai::tools`) implement them, and the turn knows neither.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use super::Failure;
use crate::ai::model::{ModelEvent, ModelRequest, ToolCall, ToolSpec};

/// Which model answers, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDescription {
    /// The provider kind (`openai`, `anthropic`).
    pub provider: String,
    /// The model name.
    pub model: String,
    /// Most tokens of one answer.
    pub max_tokens: u32,
    /// The model's context window, in tokens.
    pub context_tokens: u32,
}

/// A streamed answer's events, in order; dropping it cancels the call.
pub type ModelEvents = BoxStream<'static, Result<ModelEvent, Failure>>;

/// A model call: its answer (or why it did not start), and what it sent.
pub struct ModelCall {
    /// Bytes of request sent to the provider (every attempt, failed ones too): the egress
    /// ledger's figure.
    pub request_bytes: u64,
    /// The streamed answer, or why none started.
    pub reply: Result<ModelEvents, Failure>,
}

/// A model a turn talks to.
pub trait TurnModel: Send + Sync {
    /// Which model, and its limits.
    fn describe(&self) -> ModelDescription;
    /// Starts a streamed answer to `request`.
    fn stream(&self, request: ModelRequest) -> BoxFuture<'_, ModelCall>;
}

/// What a tool call gave the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The result as the model reads it (JSON).
    pub content: serde_json::Value,
    /// It failed or was refused: `content` says why.
    pub is_error: bool,
}

impl ToolOutcome {
    /// A refusal or failure with a stable code and a message for the model.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            content: serde_json::json!({"error": {"code": code, "message": message.into()}}),
            is_error: true,
        }
    }
}

/// Output of a running tool, as it comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutputChunk {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text (lossy UTF-8).
    pub text: String,
}

/// The tools a turn offers the model.
pub trait TurnTools: Send + Sync {
    /// The tools, for the model.
    fn specs(&self) -> Vec<ToolSpec>;
    /// What a session grant of this call would cover (the command for runs, `*` for writes);
    /// `None` when the call runs without asking (read-only tools, unknown tools).
    fn approval_subject(&self, call: &ToolCall) -> Option<String>;
    /// What the user is shown before approving (the real diff, the exact command line); an
    /// invalid call is answered at once, without asking.
    fn preview<'a>(
        &'a self,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Result<serde_json::Value, ToolOutcome>>;
    /// Runs the call, sending output as it comes. Dropping the future stops it (a running
    /// command is killed).
    fn call<'a>(
        &'a self,
        call: &'a ToolCall,
        output: mpsc::Sender<ToolOutputChunk>,
    ) -> BoxFuture<'a, ToolOutcome>;
}
