//! The provider clients against the fake provider of katachi-testkit, which speaks each real wire
//! protocol (OpenAI Chat Completions chunks, Anthropic Messages events) over real HTTP on
//! loopback: every test runs for both kinds, through the production code path.
//!
//! - `streams`: text, tool-call deltas, usage, first piece early, cancellation on drop.
//! - `failures`: retries (Retry-After, backoff), final errors, broken streams.
//! - `secrecy`: the key only in its header: never in Debug, errors or log lines.

mod failures;
mod secrecy;
mod streams;

use std::time::Duration;

use futures::StreamExt;
use katachi_core::ai::provider::RetryPolicy;
use katachi_core::ai::{
    ModelEvent, ModelMessage, ModelRequest, ModelStream, Provider, ProviderConfig, ProviderError,
    ProviderKind, ProviderOptions, ToolSpec,
};
use katachi_core::secret::SecretBytes;
use katachi_testkit::{FakeProvider, FakeReply};
use serde_json::json;

pub const KINDS: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Anthropic];
pub const KEY: &str = "sk-test-K3Y-never-shown-4242";
/// No test may wait longer than this for an answer: a hang is a failure.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(60),
    }
}

pub fn provider_with(fake: &FakeProvider, kind: ProviderKind, retry: RetryPolicy) -> Provider {
    let base_url = match kind {
        ProviderKind::OpenAi => fake.openai_base_url(),
        ProviderKind::Anthropic => fake.anthropic_base_url(),
    };
    let config = ProviderConfig {
        base_url,
        model: "fake-model".into(),
        ..ProviderConfig::default_for(kind)
    };
    let options = ProviderOptions {
        retry,
        ..ProviderOptions::default()
    };
    Provider::new(
        config,
        Some(SecretBytes::new(KEY.as_bytes().to_vec())),
        options,
    )
    .unwrap()
}

pub fn provider(fake: &FakeProvider, kind: ProviderKind) -> Provider {
    provider_with(fake, kind, fast_retries(4))
}

pub fn request() -> ModelRequest {
    ModelRequest {
        model: String::new(),
        system: "You are katachi's test model.".into(),
        messages: vec![ModelMessage::User {
            text: "read src/main.rs".into(),
        }],
        tools: vec![ToolSpec {
            name: "read_file".into(),
            description: "Reads a text file of the workspace.".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}},
                "required": ["path"]}),
        }],
        max_tokens: 256,
    }
}

pub async fn fake(replies: Vec<FakeReply>) -> FakeProvider {
    FakeProvider::start(replies).await.unwrap()
}

/// Every event until the end or the first error.
pub async fn drain(mut stream: ModelStream) -> (Vec<ModelEvent>, Option<ProviderError>) {
    let mut events = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => events.push(event),
                Err(error) => return Some(error),
            }
        }
        None
    });
    let error = read
        .await
        .expect("the stream neither ended nor failed in time");
    (events, error)
}

pub async fn call(provider: &Provider) -> Result<ModelStream, ProviderError> {
    tokio::time::timeout(PATIENCE, provider.stream(&request()))
        .await
        .expect("the call neither started nor failed in time")
}

pub fn text_of(events: &[ModelEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            ModelEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

pub fn assert_key_absent(what: &str, text: &str) {
    assert!(!text.contains(KEY), "{what} holds the API key: {text}");
    assert!(
        !text.contains("K3Y-never"),
        "{what} holds part of the API key: {text}"
    );
}
