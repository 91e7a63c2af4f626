//! What a turn streams to the browser: one JSON object per line (`application/x-ndjson`), in the
//! order things happen, ending with exactly one [`ChatEvent::Done`].

use serde::Serialize;

use crate::ai::approvals::PendingApproval;
use crate::ai::model::Usage;
use crate::store::Decision;

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnEnd {
    /// The model finished its answer.
    Finished,
    /// The model hit its answer length limit.
    MaxTokens,
    /// The model stopped calling tools only because the turn's step limit was reached.
    StepLimit,
    /// The user stopped it.
    Stopped,
    /// An error ended it (the preceding [`ChatEvent::Error`] says which).
    Failed,
}

/// One line of a turn's stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    /// The turn began; the user's message is stored with this id.
    Started {
        /// The session.
        session_id: i64,
        /// The stored user message.
        message_id: i64,
    },
    /// More of the model's answer.
    Text {
        /// The new text.
        text: String,
    },
    /// The model called a tool.
    ToolCall {
        /// The call's id.
        id: String,
        /// The tool.
        name: String,
        /// Its arguments as the model wrote them.
        arguments: serde_json::Value,
    },
    /// The user is asked to approve the call (see the approvals routes).
    Approval {
        /// What is asked, with its id and expiry.
        approval: PendingApproval,
    },
    /// The approval was answered or expired.
    ApprovalSettled {
        /// The approval.
        id: String,
        /// The answer (`expired` when none came in time).
        decision: Decision,
    },
    /// Output of a running command, as it comes.
    ToolOutput {
        /// The call it belongs to.
        call_id: String,
        /// `stdout` or `stderr`.
        stream: String,
        /// The text (lossy UTF-8).
        text: String,
    },
    /// A tool call's result, as the model will read it.
    ToolResult {
        /// The call.
        call_id: String,
        /// The tool.
        name: String,
        /// It failed or was refused.
        is_error: bool,
        /// The result.
        content: serde_json::Value,
    },
    /// Token counts of one model call.
    Usage(Usage),
    /// The conversation neared the model's context window: the messages up to `through` are
    /// now sent as a summary (kept as message `summary_id`); the latest turns stay verbatim.
    Summarised {
        /// The stored summary.
        summary_id: i64,
        /// The last message it stands for.
        through: i64,
    },
    /// An error (the provider's, a tool's infrastructure, the store's).
    Error {
        /// Stable code (`ai.rate_limited`, `store.unavailable`, …).
        code: String,
        /// What happened and what to do.
        message: String,
    },
    /// The turn is over: the last line.
    Done {
        /// How it ended.
        end: TurnEnd,
    },
}
