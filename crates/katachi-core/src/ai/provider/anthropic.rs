//! Anthropic Messages (`POST {base}/v1/messages`, `stream: true`, `anthropic-version: 2023-06-01`).
//!
//! Request: the system prompt in `system`, tools with `input_schema`, the assistant's tool calls
//! as `tool_use` blocks, tool results as `tool_result` blocks of a user message; consecutive
//! user-side messages are merged into one (the API wants user and assistant turns to alternate).
//! Answer: `message_start` (input tokens), `content_block_start/delta/stop` per block (text pieces
//! are emitted as they come; a `tool_use` block's `input_json_delta` pieces are joined and the call
//! emitted at its `content_block_stop`), `message_delta` (stop reason, output tokens),
//! `message_stop`. `ping` and unknown events are skipped; `event: error` breaks the stream.

use std::collections::{BTreeMap, VecDeque};

use eventsource_stream::Event;
use serde_json::{json, Value};

use super::stream::{excerpt, parse_tool_arguments, WireDecoder};
use super::{ProviderError, ProviderKind};
use crate::ai::model::{ModelEvent, ModelMessage, ModelRequest, StopReason, ToolCall, Usage};

/// The `anthropic-version` header sent with every request.
pub(crate) const API_VERSION: &str = "2023-06-01";

/// The JSON body of a streamed Messages request.
pub(crate) fn request_body(request: &ModelRequest) -> Value {
    let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        let (role, blocks) = match message {
            // the API refuses empty text blocks
            ModelMessage::User { text } if text.is_empty() => ("user", Vec::new()),
            ModelMessage::User { text } => ("user", vec![json!({"type": "text", "text": text})]),
            ModelMessage::Assistant { text, tool_calls } => {
                let mut blocks = Vec::with_capacity(tool_calls.len() + 1);
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name,
                        "input": tool_input(&call.arguments)}));
                }
                ("assistant", blocks)
            }
            ModelMessage::ToolResult {
                call_id,
                content,
                is_error,
                ..
            } => (
                "user",
                vec![json!({"type": "tool_result", "tool_use_id": call_id,
                    "content": content, "is_error": is_error})],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if !request.system.is_empty() {
        body["system"] = json!(request.system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({"name": tool.name, "description": tool.description,
                    "input_schema": tool.parameters})
            })
            .collect();
    }
    body
}

/// A `tool_use` block's input must be an object: arguments the model wrote badly (kept by
/// [`parse_tool_arguments`] as `_invalid_json`) are already one; anything else is wrapped.
fn tool_input(arguments: &Value) -> Value {
    if arguments.is_object() {
        arguments.clone()
    } else {
        json!({ "_value": arguments })
    }
}

/// The provider's message in an error body (`{"type":"error","error":{"message":…}}`).
pub(crate) fn error_message(body: &Value) -> Option<&str> {
    body.pointer("/error/message").and_then(Value::as_str)
}

/// A content block being streamed.
enum Block {
    Text,
    /// A tool call: its streamed input pieces, and the input sent with its start (normally
    /// `{}`; used when no piece follows).
    Tool {
        id: String,
        name: String,
        json: String,
        initial: Option<Value>,
    },
    /// Thinking and server-tool blocks: not part of the conversation here.
    Other,
}

/// Messages events to model events.
#[derive(Default)]
pub(crate) struct AnthropicDecoder {
    blocks: BTreeMap<u64, Block>,
    usage: Usage,
    stop: Option<StopReason>,
    done: bool,
}

fn broken(reason: String) -> ProviderError {
    ProviderError::StreamBroken {
        provider: ProviderKind::Anthropic,
        reason,
    }
}

fn tokens(usage: &Value, key: &str) -> u64 {
    usage.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Prompt tokens in all: the uncached ones plus those written to and read from the cache.
fn input_tokens(usage: &Value) -> u64 {
    tokens(usage, "input_tokens")
        + tokens(usage, "cache_creation_input_tokens")
        + tokens(usage, "cache_read_input_tokens")
}

impl AnthropicDecoder {
    fn block_index(data: &Value) -> Result<u64, ProviderError> {
        data.get("index").and_then(Value::as_u64).ok_or_else(|| {
            broken(format!(
                "a content block event without index: {}",
                excerpt(&data.to_string())
            ))
        })
    }
}

impl WireDecoder for AnthropicDecoder {
    fn decode(
        &mut self,
        event: &Event,
        out: &mut VecDeque<ModelEvent>,
    ) -> Result<(), ProviderError> {
        if event.event == "ping" {
            return Ok(());
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            broken(format!(
                "an event is not JSON ({e}): {}",
                excerpt(&event.data)
            ))
        })?;
        // the data's own `type` names the event (the SSE `event:` line repeats it)
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(&event.event);
        match kind {
            "message_start" => {
                if let Some(usage) = data.pointer("/message/usage") {
                    self.usage.input_tokens = input_tokens(usage);
                    self.usage.output_tokens = tokens(usage, "output_tokens");
                }
            }
            "content_block_start" => {
                let index = Self::block_index(&data)?;
                let block = data.get("content_block").unwrap_or(&Value::Null);
                let block = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = block.get("text").and_then(Value::as_str) {
                            if !text.is_empty() {
                                out.push_back(ModelEvent::TextDelta {
                                    text: text.to_owned(),
                                });
                            }
                        }
                        Block::Text
                    }
                    Some("tool_use") => Block::Tool {
                        id: block
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        name: block
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        json: String::new(),
                        initial: block.get("input").cloned(),
                    },
                    // thinking, redacted_thinking, server tools: not part of the conversation here
                    _ => Block::Other,
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let index = Self::block_index(&data)?;
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match (
                    self.blocks.get_mut(&index),
                    delta.get("type").and_then(Value::as_str),
                ) {
                    (Some(Block::Text), Some("text_delta")) => {
                        if let Some(text) = delta.get("text").and_then(Value::as_str) {
                            out.push_back(ModelEvent::TextDelta {
                                text: text.to_owned(),
                            });
                        }
                    }
                    (Some(Block::Tool { json, .. }), Some("input_json_delta")) => {
                        if let Some(piece) = delta.get("partial_json").and_then(Value::as_str) {
                            json.push_str(piece);
                        }
                    }
                    (None, _) => {
                        return Err(broken(format!(
                            "a delta for block {index}, which was never started"
                        )));
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = Self::block_index(&data)?;
                if let Some(Block::Tool {
                    id,
                    name,
                    json,
                    initial,
                }) = self.blocks.remove(&index)
                {
                    if name.is_empty() || id.is_empty() {
                        return Err(broken(format!("tool call block {index} has no id or name")));
                    }
                    out.push_back(ModelEvent::ToolCall(ToolCall {
                        id,
                        name,
                        arguments: match initial {
                            Some(input) if json.trim().is_empty() => input,
                            _ => parse_tool_arguments(&json),
                        },
                    }));
                }
            }
            "message_delta" => {
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(match reason {
                        "tool_use" => StopReason::ToolUse,
                        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
                        "refusal" => StopReason::Refused,
                        _ => StopReason::EndTurn,
                    });
                }
                if let Some(usage) = data.get("usage").filter(|u| u.is_object()) {
                    // output tokens are cumulative; input tokens appear here only on newer APIs
                    self.usage.output_tokens = tokens(usage, "output_tokens");
                    if usage.get("input_tokens").is_some() {
                        self.usage.input_tokens = input_tokens(usage);
                    }
                    out.push_back(ModelEvent::Usage(self.usage));
                }
            }
            "message_stop" => {
                out.push_back(ModelEvent::Finished {
                    reason: self.stop.clone().unwrap_or(StopReason::EndTurn),
                });
                self.done = true;
            }
            "error" => {
                let kind = data
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                let message = error_message(&data).unwrap_or("no message");
                return Err(broken(format!(
                    "the provider reported {kind}: {}",
                    super::error::scrub_provider_message(message, None)
                )));
            }
            // new event types are skipped, as the API's versioning policy asks
            _ => {}
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn end_of_body(&mut self, _out: &mut VecDeque<ModelEvent>) -> Result<(), ProviderError> {
        if self.done {
            Ok(())
        } else {
            Err(broken(
                "the connection ended before message_stop".to_owned(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_and_user_text_merge_into_one_user_turn() {
        let request = ModelRequest {
            model: "m".into(),
            system: "sys".into(),
            messages: vec![
                ModelMessage::User { text: "hi".into() },
                ModelMessage::Assistant {
                    text: "let me look".into(),
                    tool_calls: vec![
                        ToolCall {
                            id: "a".into(),
                            name: "list_dir".into(),
                            arguments: json!({}),
                        },
                        ToolCall {
                            id: "b".into(),
                            name: "read_file".into(),
                            arguments: json!({"path": "x"}),
                        },
                    ],
                },
                ModelMessage::ToolResult {
                    call_id: "a".into(),
                    name: "list_dir".into(),
                    content: "[]".into(),
                    is_error: false,
                },
                ModelMessage::ToolResult {
                    call_id: "b".into(),
                    name: "read_file".into(),
                    content: "no".into(),
                    is_error: true,
                },
            ],
            tools: vec![],
            max_tokens: 10,
        };
        let body = request_body(&request);
        assert_eq!(body["system"], "sys");
        assert!(body.get("tools").is_none());
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"][2]["input"], json!({"path": "x"}));
        assert_eq!(messages[2]["content"].as_array().unwrap().len(), 2);
        assert_eq!(messages[2]["content"][1]["is_error"], true);
    }

    fn event(name: &str, data: Value) -> Event {
        Event {
            event: name.to_owned(),
            data: data.to_string(),
            id: String::new(),
            retry: None,
        }
    }

    #[test]
    fn thinking_blocks_are_skipped_and_a_whole_tool_input_is_kept() {
        let mut decoder = AnthropicDecoder::default();
        let mut out = VecDeque::new();
        let events = [
            event(
                "message_start",
                json!({"type": "message_start", "message": {"usage":
                {"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1}}}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            ),
            event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "t1", "name": "git_status",
                    "input": {"verbose": true}}}),
            ),
            event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            event(
                "message_delta",
                json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            ),
            event("some_future_event", json!({"type": "some_future_event"})),
            event("message_stop", json!({"type": "message_stop"})),
        ];
        for e in &events {
            decoder.decode(e, &mut out).unwrap();
        }
        assert!(decoder.is_done());
        assert_eq!(
            Vec::from(out),
            vec![
                ModelEvent::ToolCall(ToolCall {
                    id: "t1".into(),
                    name: "git_status".into(),
                    arguments: json!({"verbose": true}),
                }),
                ModelEvent::Usage(Usage {
                    input_tokens: 105,
                    output_tokens: 9
                }),
                ModelEvent::Finished {
                    reason: StopReason::ToolUse
                },
            ]
        );
    }
}
