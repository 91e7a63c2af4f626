//! The provider-neutral conversation: what is sent to a model and what streams back.
//!
//! Each provider client maps these to its own wire format and back; nothing here knows a
//! provider. Tool arguments are JSON values as the model wrote them (checked by the tool).

use serde::{Deserialize, Serialize};

/// One call to a model: the whole conversation so far, the tools it may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The provider's model name (e.g. `gpt-4.1`, `claude-sonnet-4-5`, `qwen2.5-coder`).
    pub model: String,
    /// Instructions: katachi's own, then the workspace memory (`AGENTS.md`, notes).
    pub system: String,
    /// The conversation, oldest first.
    pub messages: Vec<ModelMessage>,
    /// The tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Most tokens of the answer.
    pub max_tokens: u32,
}

/// One message of the conversation as a model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ModelMessage {
    /// What the user wrote.
    User {
        /// The text.
        text: String,
    },
    /// What the model answered: text and the tools it called, in that order.
    Assistant {
        /// The text (may be empty when the model only called tools).
        text: String,
        /// The tools it called.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, answering [`ToolCall::id`].
    ToolResult {
        /// The call it answers.
        call_id: String,
        /// The tool's name (some providers want it again).
        name: String,
        /// The result as the model reads it (JSON text).
        content: String,
        /// The call failed or was denied: the content says why.
        is_error: bool,
    },
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call, echoed in the result.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Its arguments, as the model wrote them. Not trusted: each tool checks them.
    pub arguments: serde_json::Value,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Its name (`read_file`).
    pub name: String,
    /// What it does and when to use it, for the model.
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    pub parameters: serde_json::Value,
}

/// Token counts of one model call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens read (the prompt).
    pub input_tokens: u64,
    /// Tokens written (the answer).
    pub output_tokens: u64,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It wants the results of its tool calls.
    ToolUse,
    /// It hit `max_tokens`.
    MaxTokens,
    /// The provider refused to go on (content filter, refusal).
    Refused,
}

/// One event of a streamed answer, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelEvent {
    /// More answer text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// A complete tool call (streamed argument pieces already joined and parsed).
    ToolCall(ToolCall),
    /// Token counts (may come more than once; the last one holds).
    Usage(Usage),
    /// The answer is complete.
    Finished {
        /// Why it stopped.
        reason: StopReason,
    },
}
