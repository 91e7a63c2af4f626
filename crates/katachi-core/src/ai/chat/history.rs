//! A session's stored messages as the model's conversation, and back.
//!
//! The store keeps each message's text and a JSON payload ([`Payload`]); this module is the one
//! place that reads and writes that payload.
//!
//! # Guarantees
//! - What the model is sent is always a well-formed conversation, whatever the store holds: a
//!   tool call whose result was never stored (the agent stopped mid-turn) gets a result saying so;
//!   a result without its call, a payload that does not parse and a system row are left out.
//! - The latest summary (see `compact`) stands for everything before it: the model is sent the
//!   summary and the messages after it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::ai::model::{ModelMessage, ToolCall};
use crate::store::{ChatMessage, Decision, Role};

/// The structured part of a stored message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// An assistant message's tool calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A tool result: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// A tool result: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A tool result: it failed or was refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// A tool result: what the user decided, when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Decision>,
    /// A summary: the last message id it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_through: Option<i64>,
    /// An assistant message cut short by the user's stop or an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

impl Payload {
    /// Reads a stored payload; a damaged one reads as none.
    pub fn of(message: &ChatMessage) -> Payload {
        message
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default()
    }

    /// The payload as stored, `None` when it holds nothing.
    pub fn to_stored(&self) -> Option<String> {
        if *self == Payload::default() {
            return None;
        }
        serde_json::to_string(self).ok()
    }
}

/// What a tool call that never got a result is answered with.
pub const INTERRUPTED_RESULT: &str = r#"{"error":{"code":"tool.interrupted","message":"this call did not run: the turn ended before it (stopped, or the agent restarted)"}}"#;

/// The conversation to send: the latest summary (as a user message the model can read, since
/// providers keep system text apart) and every message after the last one it stands for.
pub fn to_model_messages(stored: &[ChatMessage]) -> Vec<ModelMessage> {
    let summary = stored
        .iter()
        .filter_map(|m| Some((m, Payload::of(m).summary_through?)))
        .filter(|(m, _)| m.role == Role::System)
        .max_by_key(|(m, _)| m.id);
    let mut out = Vec::with_capacity(stored.len() + 2);
    let through = match summary {
        Some((message, through)) => {
            out.push(ModelMessage::User {
                text: format!(
                    "Summary of the earlier conversation:\n\n{}",
                    message.content
                ),
            });
            out.push(ModelMessage::Assistant {
                text: "Understood.".to_owned(),
                tool_calls: Vec::new(),
            });
            through
        }
        None => i64::MIN,
    };
    // the calls of the last assistant message still waiting for their results
    let mut open: Vec<ToolCall> = Vec::new();
    let mut answered: HashSet<String> = HashSet::new();
    for message in stored.iter().filter(|m| m.id > through) {
        let payload = Payload::of(message);
        match message.role {
            // summaries are sent above; other system rows are notes for people
            Role::System => {}
            Role::User => {
                close_open_calls(&mut out, &mut open, &answered);
                out.push(ModelMessage::User {
                    text: message.content.clone(),
                });
            }
            Role::Assistant => {
                close_open_calls(&mut out, &mut open, &answered);
                answered.clear();
                open.clone_from(&payload.tool_calls);
                if message.content.is_empty() && payload.tool_calls.is_empty() {
                    continue;
                }
                out.push(ModelMessage::Assistant {
                    text: message.content.clone(),
                    tool_calls: payload.tool_calls,
                });
            }
            Role::Tool => {
                let Some(call_id) = payload.call_id else {
                    continue;
                };
                // a result must answer a call of the assistant message just before
                if !open.iter().any(|c| c.id == call_id) || !answered.insert(call_id.clone()) {
                    continue;
                }
                out.push(ModelMessage::ToolResult {
                    call_id,
                    name: payload.name.unwrap_or_default(),
                    content: message.content.clone(),
                    is_error: payload.is_error,
                });
            }
        }
    }
    close_open_calls(&mut out, &mut open, &answered);
    out
}

/// Answers every call of `open` that has no result yet with [`INTERRUPTED_RESULT`].
fn close_open_calls(
    out: &mut Vec<ModelMessage>,
    open: &mut Vec<ToolCall>,
    answered: &HashSet<String>,
) {
    for call in open.drain(..) {
        if !answered.contains(&call.id) {
            out.push(ModelMessage::ToolResult {
                call_id: call.id,
                name: call.name,
                content: INTERRUPTED_RESULT.to_owned(),
                is_error: true,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, role: Role, content: &str, payload: Payload) -> ChatMessage {
        ChatMessage {
            id,
            role,
            content: content.to_owned(),
            payload: payload.to_stored(),
            created_at: 0,
        }
    }

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.to_owned(),
            name: "read_file".to_owned(),
            arguments: serde_json::json!({"path": "a"}),
        }
    }

    fn result(id: i64, call_id: &str) -> ChatMessage {
        message(
            id,
            Role::Tool,
            "{}",
            Payload {
                call_id: Some(call_id.to_owned()),
                name: Some("read_file".to_owned()),
                ..Payload::default()
            },
        )
    }

    #[test]
    fn a_call_without_its_result_is_answered_as_interrupted() {
        let stored = vec![
            message(1, Role::User, "read a and b", Payload::default()),
            message(
                2,
                Role::Assistant,
                "",
                Payload {
                    tool_calls: vec![call("c1"), call("c2")],
                    ..Payload::default()
                },
            ),
            result(3, "c1"),
            message(4, Role::User, "go on", Payload::default()),
        ];
        let messages = to_model_messages(&stored);
        assert_eq!(messages.len(), 5);
        assert!(
            matches!(&messages[2], ModelMessage::ToolResult { call_id, is_error: false, .. } if call_id == "c1")
        );
        assert!(
            matches!(&messages[3], ModelMessage::ToolResult { call_id, is_error: true, content, .. } if call_id == "c2" && content.contains("tool.interrupted"))
        );
        assert!(matches!(&messages[4], ModelMessage::User { text } if text == "go on"));
    }

    #[test]
    fn stray_results_damaged_payloads_and_repeats_are_left_out() {
        let mut damaged = result(4, "c1");
        damaged.payload = Some("{not json".to_owned());
        let stored = vec![
            message(1, Role::User, "hi", Payload::default()),
            result(2, "nobody-called"),
            message(
                3,
                Role::Assistant,
                "",
                Payload {
                    tool_calls: vec![call("c1")],
                    ..Payload::default()
                },
            ),
            damaged,
            result(5, "c1"),
            result(6, "c1"),
        ];
        let messages = to_model_messages(&stored);
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            matches!(&messages[2], ModelMessage::ToolResult { call_id, is_error: false, .. } if call_id == "c1")
        );
    }

    #[test]
    fn the_latest_summary_stands_for_everything_before_it() {
        let stored = vec![
            message(1, Role::User, "old question", Payload::default()),
            message(2, Role::Assistant, "old answer", Payload::default()),
            message(3, Role::User, "kept question", Payload::default()),
            // written after the turns it keeps verbatim
            message(
                4,
                Role::System,
                "they asked X, we did Y",
                Payload {
                    summary_through: Some(2),
                    ..Payload::default()
                },
            ),
            message(5, Role::User, "new question", Payload::default()),
        ];
        let messages = to_model_messages(&stored);
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(
            matches!(&messages[0], ModelMessage::User { text } if text.contains("they asked X"))
        );
        assert!(matches!(&messages[2], ModelMessage::User { text } if text == "kept question"));
        assert!(matches!(&messages[3], ModelMessage::User { text } if text == "new question"));
    }
}
