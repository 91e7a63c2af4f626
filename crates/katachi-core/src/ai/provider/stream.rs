//! A streamed answer: SSE events (framed by `eventsource-stream`, never by hand) decoded by a
//! provider's [`WireDecoder`] into [`ModelEvent`]s.
//!
//! # Contract
//! - Events come in the provider's order; the stream ends after [`ModelEvent::Finished`] or
//!   after its first error (it is fused: nothing follows an error).
//! - A body that ends before the provider's end frame is [`ProviderError::StreamBroken`].
//! - Dropping the stream drops the HTTP response: the connection is closed at once (the call is
//!   cancelled at the provider, which stops generating and billing).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};

use super::{ProviderError, ProviderKind};
use crate::ai::model::ModelEvent;

/// A provider's streamed answer: `Result<ModelEvent, ProviderError>` items, `Send + Unpin`.
pub struct ModelStream {
    events: Pin<Box<dyn Stream<Item = Result<ModelEvent, ProviderError>> + Send>>,
    request_bytes: u64,
}

impl ModelStream {
    /// Bytes of HTTP request bodies sent for this answer, every attempt counted (retries sent
    /// the conversation again): what left the machine, for the egress ledger.
    pub fn request_bytes(&self) -> u64 {
        self.request_bytes
    }
}

impl std::fmt::Debug for ModelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelStream")
            .field("request_bytes", &self.request_bytes)
            .finish_non_exhaustive()
    }
}

impl Stream for ModelStream {
    type Item = Result<ModelEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.as_mut().poll_next(cx)
    }
}

/// A provider's wire protocol, from SSE events to model events.
pub(crate) trait WireDecoder: Send + 'static {
    /// Decodes one SSE event into `out`.
    fn decode(
        &mut self,
        event: &Event,
        out: &mut VecDeque<ModelEvent>,
    ) -> Result<(), ProviderError>;
    /// True once the provider's end frame was decoded (nothing more is read).
    fn is_done(&self) -> bool;
    /// The body ended: completes `out`, or says the stream broke.
    fn end_of_body(&mut self, out: &mut VecDeque<ModelEvent>) -> Result<(), ProviderError>;
}

struct DecodeState<D> {
    sse: Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>,
    decoder: D,
    queue: VecDeque<ModelEvent>,
    provider: ProviderKind,
    finished: bool,
}

/// The answer stream of a `200` event-stream response.
pub(crate) fn decode_response<D: WireDecoder>(
    response: reqwest::Response,
    decoder: D,
    provider: ProviderKind,
    request_bytes: u64,
) -> ModelStream {
    let sse = response
        .bytes_stream()
        .eventsource()
        .map(|item| item.map_err(|e| crate::relay_link::https::error_chain(&e)));
    let state = DecodeState {
        sse: Box::pin(sse),
        decoder,
        queue: VecDeque::new(),
        provider,
        finished: false,
    };
    let events = futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.queue.pop_front() {
                return Some((Ok(event), state));
            }
            if state.finished {
                return None;
            }
            let step = match state.sse.next().await {
                Some(Ok(event)) => {
                    let step = state.decoder.decode(&event, &mut state.queue);
                    state.finished = state.decoder.is_done();
                    step
                }
                Some(Err(reason)) => Err(ProviderError::StreamBroken {
                    provider: state.provider,
                    reason,
                }),
                None => {
                    state.finished = true;
                    state.decoder.end_of_body(&mut state.queue)
                }
            };
            if let Err(error) = step {
                // fused: the events decoded before the error are dropped with it
                state.finished = true;
                state.queue.clear();
                return Some((Err(error), state));
            }
        }
    });
    ModelStream {
        events: Box::pin(events),
        request_bytes,
    }
}

/// Tool arguments as the model streamed them, joined, parsed.
///
/// Empty text is `{}` (a call without arguments). Text that is not JSON is kept, not fatal:
/// `{"_invalid_json": "<the text>"}`, so the call stays in the conversation and the tool answers
/// the model with an argument error it can correct, instead of the turn dying.
pub(crate) fn parse_tool_arguments(raw: &str) -> serde_json::Value {
    if raw.trim().is_empty() {
        return serde_json::Value::Object(serde_json::Map::new());
    }
    match serde_json::from_str(raw) {
        Ok(value) => value,
        Err(_) => serde_json::json!({ "_invalid_json": raw }),
    }
}

/// A piece of a provider frame for an error message (frames may be large or hostile).
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_arguments_parse_or_are_kept_as_invalid_json() {
        assert_eq!(parse_tool_arguments(""), serde_json::json!({}));
        assert_eq!(
            parse_tool_arguments(r#"{"path":"a.rs"}"#),
            serde_json::json!({"path": "a.rs"})
        );
        assert_eq!(
            parse_tool_arguments(r#"{"path":"a."#),
            serde_json::json!({"_invalid_json": r#"{"path":"a."#})
        );
    }
}
