//! One provider call over HTTP, with its retries: the request sent until the answer starts
//! streaming, or until the error is final.
//!
//! An error answer's body is read (at most [`MAX_ERROR_BODY`] bytes), the provider's message is
//! taken from its JSON envelope and scrubbed before it goes into a [`ProviderError`].

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};

use super::retry::{is_retryable_status, parse_retry_after};
use super::stream::excerpt;
use super::{anthropic, openai, Provider, ProviderError, ProviderKind};
use crate::relay_link::https::error_chain;

/// The most bytes of an error answer read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A call whose answer started: the response, and the bytes of every attempt's body.
pub(crate) struct Sent {
    pub(crate) response: reqwest::Response,
    pub(crate) request_bytes: u64,
}

/// Sends `body` to `url`, retrying as [`super::RetryPolicy`] says, until a `2xx` answer.
pub(crate) async fn send_with_retries(
    provider: &Provider,
    url: &str,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Result<Sent, ProviderError> {
    let kind = provider.config().kind;
    let policy = &provider.options().retry;
    let max_attempts = policy.max_attempts.max(1);
    let mut request_bytes = 0u64;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let size = body.len() as u64;
        request_bytes += size;
        provider.count_sent(size);
        let sent = provider
            .client()
            .post(url)
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await;
        let (error, wait) = match sent {
            Ok(response) if response.status().is_success() => {
                check_event_stream(kind, &response)?;
                return Ok(Sent {
                    response,
                    request_bytes,
                });
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, SystemTime::now()));
                let message = read_error_message(kind, response, provider.key_bytes()).await;
                let error = status_error(kind, status, attempt, retry_after, message);
                let too_long = retry_after.is_some_and(|wait| wait > policy.max_retry_after);
                if !is_retryable_status(status) || too_long || attempt >= max_attempts {
                    return Err(error);
                }
                (
                    error,
                    retry_after.unwrap_or_else(|| policy.backoff(attempt)),
                )
            }
            Err(e) => {
                let error = ProviderError::Unreachable {
                    provider: kind,
                    host: provider
                        .config()
                        .base_url
                        .host_str()
                        .unwrap_or_default()
                        .to_owned(),
                    attempts: attempt,
                    reason: error_chain(&e),
                };
                if attempt >= max_attempts {
                    return Err(error);
                }
                (error, policy.backoff(attempt))
            }
        };
        tracing::warn!(
            provider = %kind,
            attempt,
            max_attempts,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            code = error.code(),
            "provider call failed; trying again: {error}"
        );
        tokio::time::sleep(wait).await;
    }
}

/// A `2xx` that is not an event stream is a server that ignored `stream: true`.
fn check_event_stream(
    kind: ProviderKind,
    response: &reqwest::Response,
) -> Result<(), ProviderError> {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("text/event-stream") {
        Ok(())
    } else {
        Err(ProviderError::StreamBroken {
            provider: kind,
            reason: format!(
                "the answer is {}, not an event stream (the server does not stream)",
                if content_type.is_empty() {
                    "untyped"
                } else {
                    content_type
                }
            ),
        })
    }
}

/// The final error for an answer with this status (if it is not retried).
fn status_error(
    kind: ProviderKind,
    status: u16,
    attempts: u32,
    retry_after: Option<Duration>,
    message: String,
) -> ProviderError {
    match status {
        401 | 403 => ProviderError::Auth {
            provider: kind,
            status,
            message,
        },
        429 => ProviderError::RateLimited {
            provider: kind,
            status,
            retry_after,
            message,
        },
        _ if status >= 500 => ProviderError::Failed {
            provider: kind,
            status,
            attempts,
            retry_after,
            message,
        },
        _ => ProviderError::BadRequest {
            provider: kind,
            status,
            message,
        },
    }
}

/// The provider's message from an error answer, scrubbed of the key and cut.
async fn read_error_message(
    kind: ProviderKind,
    mut response: reqwest::Response,
    key: Option<&[u8]>,
) -> String {
    let mut body = Vec::new();
    // a broken or endless error body is not worth more than its first bytes
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let text = String::from_utf8_lossy(&body);
    let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let message = parsed.as_ref().and_then(|json| match kind {
        ProviderKind::OpenAi => openai::error_message(json),
        ProviderKind::Anthropic => anthropic::error_message(json),
    });
    let message = match message {
        Some(message) => message.to_owned(),
        None if text.trim().is_empty() => "no message".to_owned(),
        None => excerpt(text.trim()),
    };
    super::error::scrub_provider_message(&message, key)
}
