//! The provider clients against the fake provider of katachi-testkit, which speaks each real wire
//! protocol (OpenAI Chat Completions chunks, Anthropic Messages events) over real HTTP on
//! loopback: every test runs for both kinds, through the production code path.

use std::time::{Duration, Instant};

use futures::StreamExt;
use katachi_core::ai::provider::RetryPolicy;
use katachi_core::ai::{
    ModelEvent, ModelMessage, ModelRequest, ModelStream, Provider, ProviderConfig, ProviderError,
    ProviderKind, ProviderOptions, StopReason, ToolCall, ToolSpec, Usage,
};
use katachi_core::secret::SecretBytes;
use katachi_testkit::{Ending, FakeAnswer, FakeError, FakeProvider, FakeReply};
use serde_json::json;

const KINDS: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Anthropic];
const KEY: &str = "sk-test-K3Y-never-shown-4242";
/// No test may wait longer than this for an answer: a hang is a failure.
const PATIENCE: Duration = Duration::from_secs(15);

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(60),
    }
}

fn provider_with(fake: &FakeProvider, kind: ProviderKind, retry: RetryPolicy) -> Provider {
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

fn provider(fake: &FakeProvider, kind: ProviderKind) -> Provider {
    provider_with(fake, kind, fast_retries(4))
}

fn request() -> ModelRequest {
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

async fn fake(replies: Vec<FakeReply>) -> FakeProvider {
    FakeProvider::start(replies).await.unwrap()
}

/// Every event until the end or the first error.
async fn drain(mut stream: ModelStream) -> (Vec<ModelEvent>, Option<ProviderError>) {
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

async fn call(provider: &Provider) -> Result<ModelStream, ProviderError> {
    tokio::time::timeout(PATIENCE, provider.stream(&request()))
        .await
        .expect("the call neither started nor failed in time")
}

fn text_of(events: &[ModelEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            ModelEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn assert_key_absent(what: &str, text: &str) {
    assert!(!text.contains(KEY), "{what} holds the API key: {text}");
    assert!(
        !text.contains("K3Y-never"),
        "{what} holds part of the API key: {text}"
    );
}

#[tokio::test]
async fn text_streams_in_pieces_with_usage_and_the_key_in_the_provider_header() {
    for kind in KINDS {
        let fake = fake(vec![FakeAnswer::text(["Hel", "lo", " there"])
            .usage(12, 3)
            .into()])
        .await;
        let provider = provider(&fake, kind);
        let stream = call(&provider).await.unwrap();
        let request_bytes = stream.request_bytes();
        let (events, error) = drain(stream).await;
        assert!(error.is_none(), "{kind}: {error:?}");
        assert_eq!(
            events,
            vec![
                ModelEvent::TextDelta { text: "Hel".into() },
                ModelEvent::TextDelta { text: "lo".into() },
                ModelEvent::TextDelta {
                    text: " there".into()
                },
                ModelEvent::Usage(Usage {
                    input_tokens: 12,
                    output_tokens: 3
                }),
                ModelEvent::Finished {
                    reason: StopReason::EndTurn
                },
            ],
            "{kind}"
        );
        let sent = fake.requests();
        assert_eq!(sent.len(), 1);
        let body = &sent[0].body;
        assert_eq!(
            body["model"], "fake-model",
            "{kind}: the configured model fills an empty one"
        );
        assert_eq!(body["stream"], true);
        assert_eq!(
            request_bytes,
            serde_json::to_vec(body).unwrap().len() as u64
        );
        assert_eq!(provider.bytes_sent(), request_bytes);
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(sent[0].path, "/v1/chat/completions");
                assert_eq!(
                    sent[0].header("authorization"),
                    Some(format!("Bearer {KEY}").as_str())
                );
                assert_eq!(sent[0].header("x-api-key"), None);
                assert_eq!(body["stream_options"]["include_usage"], true);
                assert_eq!(body["messages"][0]["role"], "system");
            }
            ProviderKind::Anthropic => {
                assert_eq!(sent[0].path, "/v1/messages");
                assert_eq!(sent[0].header("x-api-key"), Some(KEY));
                assert_eq!(sent[0].header("authorization"), None);
                assert_eq!(sent[0].header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(body["system"], "You are katachi's test model.");
            }
        }
    }
}

#[tokio::test]
async fn tool_call_argument_pieces_are_joined_into_whole_calls() {
    for kind in KINDS {
        let answer = FakeAnswer::text(["Let me look."])
            .tool_call(
                "call_a",
                "read_file",
                [r#"{"pa"#, r#"th": "src/"#, r#"main.rs"}"#],
            )
            .tool_call("call_b", "list_dir", [r#"{"path""#, r#":"."}"#])
            .usage(40, 20);
        let fake = fake(vec![answer.into()]).await;
        let (events, error) = drain(call(&provider(&fake, kind)).await.unwrap()).await;
        assert!(error.is_none(), "{kind}: {error:?}");
        let calls: Vec<&ToolCall> = events
            .iter()
            .filter_map(|event| match event {
                ModelEvent::ToolCall(call) => Some(call),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            vec![
                &ToolCall {
                    id: "call_a".into(),
                    name: "read_file".into(),
                    arguments: json!({"path": "src/main.rs"}),
                },
                &ToolCall {
                    id: "call_b".into(),
                    name: "list_dir".into(),
                    arguments: json!({"path": "."}),
                },
            ],
            "{kind}"
        );
        assert_eq!(text_of(&events), "Let me look.");
        assert_eq!(
            events.last(),
            Some(&ModelEvent::Finished {
                reason: StopReason::ToolUse
            }),
            "{kind}"
        );
        let body = &fake.requests()[0].body;
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(body["tools"][0]["type"], "function");
                assert_eq!(body["tools"][0]["function"]["name"], "read_file");
                assert_eq!(
                    body["tools"][0]["function"]["parameters"]["required"][0],
                    "path"
                );
            }
            ProviderKind::Anthropic => {
                assert_eq!(body["tools"][0]["name"], "read_file");
                assert_eq!(body["tools"][0]["input_schema"]["required"][0], "path");
            }
        }
    }
}

#[tokio::test]
async fn tool_arguments_that_are_not_json_are_kept_for_the_tool_to_refuse() {
    for kind in KINDS {
        let answer = FakeAnswer::default().tool_call("call_x", "read_file", [r#"{"path": "#]);
        let fake = fake(vec![answer.into()]).await;
        let (events, error) = drain(call(&provider(&fake, kind)).await.unwrap()).await;
        assert!(error.is_none(), "{kind}: {error:?}");
        assert!(
            events.contains(&ModelEvent::ToolCall(ToolCall {
                id: "call_x".into(),
                name: "read_file".into(),
                arguments: json!({"_invalid_json": r#"{"path": "#}),
            })),
            "{kind}: {events:?}"
        );
    }
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    for kind in KINDS {
        let fake = fake(vec![
            FakeError::status(429).retry_after("1").into(),
            FakeAnswer::text(["ok"]).into(),
        ])
        .await;
        let provider = provider(&fake, kind);
        let started = Instant::now();
        let stream = call(&provider).await.unwrap();
        let waited = started.elapsed();
        // the backoff alone would be 10 ms: only Retry-After explains a second
        assert!(
            waited >= Duration::from_millis(950),
            "{kind}: waited only {waited:?}"
        );
        let body_size = serde_json::to_vec(&fake.requests()[0].body).unwrap().len() as u64;
        assert_eq!(
            stream.request_bytes(),
            2 * body_size,
            "{kind}: each attempt is counted"
        );
        let (events, error) = drain(stream).await;
        assert!(error.is_none(), "{kind}: {error:?}");
        assert_eq!(text_of(&events), "ok");
        assert_eq!(fake.requests().len(), 2);
    }
}

#[tokio::test]
async fn server_failures_are_retried_with_backoff() {
    for kind in KINDS {
        let fake = fake(vec![
            FakeError::status(503).into(),
            FakeError::status(529).message("Overloaded").into(),
            FakeAnswer::text(["fine"]).into(),
        ])
        .await;
        let (events, error) = drain(call(&provider(&fake, kind)).await.unwrap()).await;
        assert!(error.is_none(), "{kind}: {error:?}");
        assert_eq!(text_of(&events), "fine");
        assert_eq!(fake.requests().len(), 3, "{kind}");
    }
}

#[tokio::test]
async fn server_failures_on_every_attempt_end_as_provider_failed() {
    for kind in KINDS {
        let fake = fake(vec![
            FakeError::status(500).into(),
            FakeError::status(502).message("bad gateway today").into(),
            FakeAnswer::text(["never read"]).into(),
        ])
        .await;
        let error = call(&provider_with(&fake, kind, fast_retries(2)))
            .await
            .unwrap_err();
        assert_eq!(error.code(), "ai.provider_failed", "{kind}: {error}");
        let message = error.to_string();
        assert!(
            message.contains("502") && message.contains("bad gateway today"),
            "{message}"
        );
        assert_eq!(fake.requests().len(), 2, "{kind}: max_attempts is honoured");
        assert_eq!(fake.remaining_replies(), 1);
    }
}

#[tokio::test]
async fn refused_key_is_not_retried_and_says_how_to_set_it() {
    for kind in KINDS {
        // providers echo (parts of) the refused key: it must not come back through katachi
        let echo = format!("Incorrect API key provided: {KEY}. You can find your API key at …");
        let fake = fake(vec![
            FakeError::status(401).message(&echo).into(),
            FakeAnswer::text(["never read"]).into(),
        ])
        .await;
        let error = call(&provider(&fake, kind)).await.unwrap_err();
        assert_eq!(error.code(), "ai.provider_auth", "{kind}: {error}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("katachi ai key set {kind}")),
            "{message}"
        );
        assert!(message.contains("Incorrect API key provided"), "{message}");
        assert_key_absent("the error", &message);
        assert_key_absent("the error's Debug", &format!("{error:?}"));
        assert_eq!(
            fake.requests().len(),
            1,
            "{kind}: a refused key is not retried"
        );
    }
}

#[tokio::test]
async fn bad_request_is_not_retried_and_carries_the_provider_message() {
    for kind in KINDS {
        let fake = fake(vec![
            FakeError::status(400)
                .message("max_tokens: must be at most 8192")
                .into(),
            FakeAnswer::text(["never read"]).into(),
        ])
        .await;
        let error = call(&provider(&fake, kind)).await.unwrap_err();
        assert_eq!(error.code(), "ai.bad_request", "{kind}: {error}");
        assert!(
            error
                .to_string()
                .contains("max_tokens: must be at most 8192"),
            "{error}"
        );
        assert_eq!(fake.requests().len(), 1, "{kind}");
    }
}

#[tokio::test]
async fn retry_after_beyond_the_cap_fails_at_once_saying_when_to_try() {
    for kind in KINDS {
        let fake = fake(vec![
            FakeError::status(429).retry_after("3600").into(),
            FakeAnswer::text(["never read"]).into(),
        ])
        .await;
        let started = Instant::now();
        let error = call(&provider(&fake, kind)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(error.code(), "ai.rate_limited", "{kind}: {error}");
        assert!(error.to_string().contains("try again in 1h"), "{error}");
        assert_eq!(fake.requests().len(), 1, "{kind}");
    }
}

#[tokio::test]
async fn unreachable_provider_is_retried_then_reported_unreachable() {
    for kind in KINDS {
        let fake = fake(vec![]).await;
        let provider = provider_with(&fake, kind, fast_retries(2));
        // nothing listens there any more: connection refused on every attempt
        drop(fake);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let error = call(&provider).await.unwrap_err();
        assert_eq!(error.code(), "ai.provider_unreachable", "{kind}: {error}");
        assert!(error.to_string().contains("after 2 attempt(s)"), "{error}");
        assert!(provider.bytes_sent() > 0);
    }
}

#[tokio::test]
async fn a_stream_cut_mid_answer_is_stream_broken_and_not_replayed() {
    for kind in KINDS {
        let fake = fake(vec![
            FakeAnswer::text(["first", "second"])
                .ending(Ending::BreakAfter(1))
                .into(),
            FakeAnswer::text(["never read"]).into(),
        ])
        .await;
        let (events, error) = drain(call(&provider(&fake, kind)).await.unwrap()).await;
        assert_eq!(text_of(&events), "first", "{kind}");
        let error = error.expect("a cut stream must fail");
        assert_eq!(error.code(), "ai.stream_broken", "{kind}: {error}");
        assert_eq!(
            fake.requests().len(),
            1,
            "{kind}: a started answer is never replayed"
        );
    }
}

#[tokio::test]
async fn an_error_the_provider_reports_mid_stream_is_stream_broken() {
    for kind in KINDS {
        let answer = FakeAnswer::text(["partial", "rest"]).ending(Ending::ErrorAfter(1));
        let fake = fake(vec![answer.into()]).await;
        let (events, error) = drain(call(&provider(&fake, kind)).await.unwrap()).await;
        assert_eq!(text_of(&events), "partial", "{kind}");
        assert!(!events
            .iter()
            .any(|e| matches!(e, ModelEvent::Finished { .. })));
        let error = error.expect("the provider's error must fail the stream");
        assert_eq!(error.code(), "ai.stream_broken", "{kind}: {error}");
        assert!(error.to_string().contains("reported"), "{error}");
    }
}

#[tokio::test]
async fn first_piece_arrives_while_the_provider_still_writes() {
    for kind in KINDS {
        let answer = FakeAnswer::text(["early", " late"]).ending(Ending::HoldAfter(1));
        let fake = fake(vec![answer.into()]).await;
        let mut stream = call(&provider(&fake, kind)).await.unwrap();
        let first = tokio::time::timeout(PATIENCE, stream.next()).await.unwrap();
        assert_eq!(
            first.unwrap().unwrap(),
            ModelEvent::TextDelta {
                text: "early".into()
            },
            "{kind}: the first piece is not held back until the answer ends"
        );
        assert!(fake.wait_for_holding(1, PATIENCE).await);
        fake.release();
        let (rest, error) = drain(stream).await;
        assert!(error.is_none(), "{kind}: {error:?}");
        assert_eq!(text_of(&rest), " late");
    }
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    for kind in KINDS {
        let answer = FakeAnswer::text(["one", "two"]).ending(Ending::HoldAfter(1));
        let fake = fake(vec![answer.into()]).await;
        let mut stream = call(&provider(&fake, kind)).await.unwrap();
        let first = tokio::time::timeout(PATIENCE, stream.next()).await.unwrap();
        assert!(matches!(first, Some(Ok(ModelEvent::TextDelta { .. }))));
        assert!(fake.wait_for_holding(1, PATIENCE).await);
        drop(stream);
        assert!(
            fake.wait_for_disconnects(1, Duration::from_secs(5)).await,
            "{kind}: the provider still has the connection after the stream was dropped"
        );
    }
}

#[tokio::test]
async fn the_key_is_in_no_debug_output_or_error() {
    for kind in KINDS {
        let fake = fake(vec![
            FakeAnswer::text(["a"]).ending(Ending::HoldAfter(1)).into(),
            FakeError::status(403)
                .message(&format!("key {KEY} has no access"))
                .into(),
            FakeError::status(400)
                .message(&format!("bad header x-api-key: {KEY}"))
                .into(),
        ])
        .await;
        let provider = provider_with(&fake, kind, fast_retries(1));
        assert_key_absent("Provider's Debug", &format!("{provider:?}"));
        let stream = call(&provider).await.unwrap();
        assert_key_absent("ModelStream's Debug", &format!("{stream:?}"));
        drop(stream);
        for _ in 0..2 {
            let error = call(&provider).await.unwrap_err();
            assert_key_absent("the error", &error.to_string());
            assert_key_absent("the error's Debug", &format!("{error:?}"));
        }
    }
}

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct LogLines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogLines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_key_is_in_no_log_line_even_when_the_provider_echoes_it() {
    let logs = LogLines::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // this thread only: the runtime below is single-threaded, so every log line lands here
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for kind in KINDS {
            let echo = format!("slow down, {KEY}");
            let fake = fake(vec![
                FakeError::status(429).message(&echo).into(),
                FakeError::status(503).message(&echo).into(),
                FakeError::status(401).message(&echo).into(),
            ])
            .await;
            let error = call(&provider(&fake, kind)).await.unwrap_err();
            assert_eq!(error.code(), "ai.provider_auth", "{kind}: {error}");
        }
    });
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("trying again") && logs.contains("ai.rate_limited"),
        "the retries were not logged: {logs}"
    );
    assert_key_absent("the log", &logs);
}

#[test]
fn calls_and_streams_can_move_between_threads() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Provider>();
    assert_send_sync::<ProviderError>();
    let provider = Provider::new(
        ProviderConfig::default_for(ProviderKind::Anthropic),
        Some(SecretBytes::new(KEY.as_bytes().to_vec())),
        ProviderOptions::default(),
    )
    .unwrap();
    let request = request();
    // the engine runs a turn in a spawned task: the call's future must be Send (never polled here)
    let future = provider.stream(&request);
    assert_send(&future);
    fn assert_stream<S: futures::Stream + Send + Unpin>() {}
    assert_stream::<ModelStream>();
}
