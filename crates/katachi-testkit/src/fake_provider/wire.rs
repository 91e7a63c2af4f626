//! The two wire protocols as the real providers send them: a scripted answer turned into SSE
//! frames (OpenAI Chat Completions chunks, Anthropic Messages events) and errors into bodies.

use serde_json::{json, Value};

use super::script::{FakeAnswer, FakeStop};

/// Which provider protocol a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
}

/// One SSE frame and whether it carries content (counted by [`super::Ending`]).
pub(crate) struct Frame {
    pub(crate) bytes: String,
    pub(crate) content: bool,
}

fn frame(event: Option<&str>, data: &str, content: bool) -> Frame {
    let bytes = match event {
        Some(event) => format!("event: {event}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    };
    Frame { bytes, content }
}

/// The frames of a complete answer, in order, end frames included.
pub(crate) fn answer_frames(wire: Wire, answer: &FakeAnswer, request: &Value) -> Vec<Frame> {
    match wire {
        Wire::OpenAi => openai_frames(answer, request),
        Wire::Anthropic => anthropic_frames(answer, request),
    }
}

/// The frame a provider sends to report an error mid-stream.
pub(crate) fn stream_error_frame(wire: Wire) -> Frame {
    match wire {
        Wire::OpenAi => frame(
            None,
            &json!({"error": {"message": "The server had an error while processing your request.",
                "type": "server_error", "param": null, "code": null}})
            .to_string(),
            false,
        ),
        Wire::Anthropic => frame(
            Some("error"),
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                .to_string(),
            false,
        ),
    }
}

/// An HTTP error body in the wire's envelope.
pub(crate) fn error_body(wire: Wire, status: u16, message: &str) -> Value {
    match wire {
        Wire::OpenAi => json!({"error": {"message": message, "type": openai_error_type(status),
            "param": null, "code": null}}),
        Wire::Anthropic => json!({"type": "error", "error": {"type": anthropic_error_type(status),
            "message": message}}),
    }
}

fn openai_error_type(status: u16) -> &'static str {
    match status {
        401 | 403 => "invalid_request_error",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn model_of(request: &Value) -> Value {
    request.get("model").cloned().unwrap_or(Value::Null)
}

fn openai_frames(answer: &FakeAnswer, request: &Value) -> Vec<Frame> {
    let model = model_of(request);
    // the real API sends a usage chunk only when asked, and then `"usage": null` in every other chunk
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        let mut chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk.to_string()
    };
    let mut frames = vec![frame(
        None,
        &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        false,
    )];
    for piece in &answer.text {
        frames.push(frame(
            None,
            &chunk(json!({"content": piece}), Value::Null),
            true,
        ));
    }
    for (index, call) in answer.tool_calls.iter().enumerate() {
        let opening = json!({"tool_calls": [{"index": index, "id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": ""}}]});
        frames.push(frame(None, &chunk(opening, Value::Null), false));
        for piece in &call.argument_pieces {
            let delta = json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
            frames.push(frame(None, &chunk(delta, Value::Null), true));
        }
    }
    let finish = match answer.stop_reason() {
        FakeStop::EndTurn => "stop",
        FakeStop::ToolUse => "tool_calls",
        FakeStop::MaxTokens => "length",
        FakeStop::Refused => "content_filter",
    };
    frames.push(frame(None, &chunk(json!({}), json!(finish)), false));
    if include_usage {
        let usage = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model, "choices": [],
            "usage": {"prompt_tokens": answer.input_tokens,
                "completion_tokens": answer.output_tokens,
                "total_tokens": answer.input_tokens + answer.output_tokens}});
        frames.push(frame(None, &usage.to_string(), false));
    }
    frames.push(frame(None, "[DONE]", false));
    frames
}

fn anthropic_frames(answer: &FakeAnswer, request: &Value) -> Vec<Frame> {
    let event =
        |name: &str, data: Value, content: bool| frame(Some(name), &data.to_string(), content);
    let mut frames = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
                "role": "assistant", "model": model_of(request), "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1}}}),
            false,
        ),
        event("ping", json!({"type": "ping"}), false),
    ];
    let mut index = 0;
    if !answer.text.is_empty() {
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}}),
            false,
        ));
        for piece in &answer.text {
            frames.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": piece}}),
                true,
            ));
        }
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
            false,
        ));
        index += 1;
    }
    for call in &answer.tool_calls {
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
            false,
        ));
        for piece in &call.argument_pieces {
            frames.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                true,
            ));
        }
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
            false,
        ));
        index += 1;
    }
    let stop = match answer.stop_reason() {
        FakeStop::EndTurn => "end_turn",
        FakeStop::ToolUse => "tool_use",
        FakeStop::MaxTokens => "max_tokens",
        FakeStop::Refused => "refusal",
    };
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": answer.output_tokens}}),
        false,
    ));
    frames.push(event(
        "message_stop",
        json!({"type": "message_stop"}),
        false,
    ));
    frames
}
