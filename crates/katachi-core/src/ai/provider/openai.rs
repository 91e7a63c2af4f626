//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`, `stream: true`): OpenAI
//! itself and local servers (Ollama, llama.cpp, vLLM) through another base URL.
//!
//! Request: the system prompt as the first `system` message, tool results as `tool` messages,
//! the assistant's tool calls with their arguments as JSON text, `stream_options.include_usage`
//! so the last chunk carries the token counts. Answer: `delta.content` pieces are text; tool calls
//! arrive as pieces keyed by `index` (id and name in the first, argument text in the others) and
//! are emitted whole, in index order, when the `finish_reason` arrives; `data: [DONE]` ends it.
//! A server that sends `finish_reason: "stop"` with tool calls (some local ones) is read as
//! `tool_use`: the calls are what the engine must act on.

use std::collections::{BTreeMap, VecDeque};

use eventsource_stream::Event;
use serde_json::{json, Value};

use super::stream::{excerpt, parse_tool_arguments, WireDecoder};
use super::{ProviderError, ProviderKind};
use crate::ai::model::{ModelEvent, ModelMessage, ModelRequest, StopReason, ToolCall, Usage};

/// How the answer's length limit is named: OpenAI's own API wants `max_completion_tokens` (its
/// reasoning models refuse `max_tokens`); compatible servers know `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenLimitField {
    /// `max_completion_tokens` (api.openai.com).
    MaxCompletionTokens,
    /// `max_tokens` (Ollama, llama.cpp, vLLM, other compatible servers).
    MaxTokens,
}

impl TokenLimitField {
    /// The field for a server at `base_url`.
    pub(crate) fn for_base_url(base_url: &url::Url) -> Self {
        if base_url.host_str() == Some("api.openai.com") {
            Self::MaxCompletionTokens
        } else {
            Self::MaxTokens
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::MaxCompletionTokens => "max_completion_tokens",
            Self::MaxTokens => "max_tokens",
        }
    }
}

/// The JSON body of a streamed Chat Completions request.
pub(crate) fn request_body(request: &ModelRequest, limit: TokenLimitField) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        messages.push(match message {
            ModelMessage::User { text } => json!({"role": "user", "content": text}),
            ModelMessage::Assistant { text, tool_calls } => {
                // content may be null only beside tool calls
                let content = if text.is_empty() && !tool_calls.is_empty() {
                    Value::Null
                } else {
                    json!(text)
                };
                let mut message = json!({"role": "assistant", "content": content});
                if !tool_calls.is_empty() {
                    message["tool_calls"] = tool_calls
                        .iter()
                        .map(|call| {
                            json!({"id": call.id, "type": "function",
                                "function": {"name": call.name,
                                    "arguments": call.arguments.to_string()}})
                        })
                        .collect();
                }
                message
            }
            ModelMessage::ToolResult {
                call_id, content, ..
            } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        });
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    body[limit.name()] = json!(request.max_tokens);
    // an empty `tools` array is refused by some servers
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {"name": tool.name,
                    "description": tool.description, "parameters": tool.parameters}})
            })
            .collect();
    }
    body
}

/// The provider's message in an error body (`{"error": {"message": …}}`).
pub(crate) fn error_message(body: &Value) -> Option<&str> {
    body.pointer("/error/message")
        .and_then(Value::as_str)
        .or_else(|| body.get("error").and_then(Value::as_str))
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Chat Completions chunks to model events.
#[derive(Default)]
pub(crate) struct OpenAiDecoder {
    calls: BTreeMap<u64, PartialCall>,
    stop: Option<StopReason>,
    done: bool,
}

impl OpenAiDecoder {
    fn broken(reason: String) -> ProviderError {
        ProviderError::StreamBroken {
            provider: ProviderKind::OpenAi,
            reason,
        }
    }

    fn flush_calls(&mut self, out: &mut VecDeque<ModelEvent>) -> Result<(), ProviderError> {
        for (index, call) in std::mem::take(&mut self.calls) {
            if call.name.is_empty() {
                return Err(Self::broken(format!("tool call {index} has no name")));
            }
            let id = if call.id.is_empty() {
                format!("call_{index}")
            } else {
                call.id
            };
            out.push_back(ModelEvent::ToolCall(ToolCall {
                id,
                name: call.name,
                arguments: parse_tool_arguments(&call.arguments),
            }));
            // calls with `finish_reason: "stop"` still need their results
            if self.stop == Some(StopReason::EndTurn) {
                self.stop = Some(StopReason::ToolUse);
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut VecDeque<ModelEvent>) -> Result<(), ProviderError> {
        self.flush_calls(out)?;
        out.push_back(ModelEvent::Finished {
            reason: self.stop.clone().unwrap_or(StopReason::EndTurn),
        });
        self.done = true;
        Ok(())
    }

    fn decode_choice(
        &mut self,
        choice: &Value,
        out: &mut VecDeque<ModelEvent>,
    ) -> Result<(), ProviderError> {
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for key in ["content", "refusal"] {
            if let Some(text) = delta.get(key).and_then(Value::as_str) {
                if !text.is_empty() {
                    out.push_back(ModelEvent::TextDelta {
                        text: text.to_owned(),
                    });
                }
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (position, piece) in calls.iter().enumerate() {
                let index = piece
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                let call = self.calls.entry(index).or_default();
                if let Some(id) = piece.get("id").and_then(Value::as_str) {
                    if !id.is_empty() {
                        call.id = id.to_owned();
                    }
                }
                let function = piece.get("function").unwrap_or(&Value::Null);
                if let Some(name) = function.get("name").and_then(Value::as_str) {
                    if !name.is_empty() {
                        call.name = name.to_owned();
                    }
                }
                if let Some(arguments) = function.get("arguments").and_then(Value::as_str) {
                    call.arguments.push_str(arguments);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(match reason {
                "tool_calls" | "function_call" => StopReason::ToolUse,
                "length" => StopReason::MaxTokens,
                "content_filter" => StopReason::Refused,
                _ => StopReason::EndTurn,
            });
            self.flush_calls(out)?;
        }
        Ok(())
    }
}

impl WireDecoder for OpenAiDecoder {
    fn decode(
        &mut self,
        event: &Event,
        out: &mut VecDeque<ModelEvent>,
    ) -> Result<(), ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return self.finish(out);
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| Self::broken(format!("a chunk is not JSON ({e}): {}", excerpt(data))))?;
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error_message(&chunk)
                .map(str::to_owned)
                .unwrap_or_else(|| excerpt(&error.to_string()));
            return Err(Self::broken(format!(
                "the provider reported an error: {}",
                super::error::scrub_provider_message(&message, None)
            )));
        }
        if let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| choices.first())
        {
            self.decode_choice(choice, out)?;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            out.push_back(ModelEvent::Usage(Usage {
                input_tokens: usage
                    .get("prompt_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                output_tokens: usage
                    .get("completion_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            }));
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn end_of_body(&mut self, out: &mut VecDeque<ModelEvent>) -> Result<(), ProviderError> {
        if self.done {
            return Ok(());
        }
        // some compatible servers end after the finish_reason chunk without `[DONE]`
        if self.stop.is_some() {
            return self.finish(out);
        }
        Err(Self::broken(
            "the connection ended before the answer was complete".to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::model::ToolSpec;

    #[test]
    fn the_conversation_maps_to_chat_completions_messages() {
        let request = ModelRequest {
            model: "m".into(),
            system: "be brief".into(),
            messages: vec![
                ModelMessage::User { text: "hi".into() },
                ModelMessage::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "read_file".into(),
                        arguments: json!({"path": "a"}),
                    }],
                },
                ModelMessage::ToolResult {
                    call_id: "c1".into(),
                    name: "read_file".into(),
                    content: "{}".into(),
                    is_error: false,
                },
            ],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "reads".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
        };
        let body = request_body(&request, TokenLimitField::MaxTokens);
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            json!(r#"{"path":"a"}"#)
        );
        assert_eq!(body["messages"][3]["role"], "tool");
        assert_eq!(body["tools"][0]["function"]["name"], "read_file");
        assert_eq!(body["stream_options"]["include_usage"], true);
        let official = url::Url::parse("https://api.openai.com/v1").unwrap();
        let body = request_body(&request, TokenLimitField::for_base_url(&official));
        assert_eq!(body["max_completion_tokens"], 100);
        assert!(body.get("max_tokens").is_none());
    }
}
