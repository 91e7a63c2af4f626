//! The API key goes only into its header: never into Debug output, errors or log lines.

use katachi_core::ai::{
    ModelStream, Provider, ProviderConfig, ProviderError, ProviderKind, ProviderOptions,
};
use katachi_core::secret::SecretBytes;
use katachi_testkit::{Ending, FakeAnswer, FakeError};

use super::*;

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

#[tokio::test]
async fn a_local_server_without_a_key_gets_no_credentials() {
    let fake = fake(vec![FakeAnswer::text(["local"]).into()]).await;
    let config = ProviderConfig {
        base_url: fake.openai_base_url(),
        model: "qwen2.5-coder".into(),
        ..ProviderConfig::default_for(ProviderKind::OpenAi)
    };
    let provider = Provider::new(config, None, ProviderOptions::default()).unwrap();
    let (events, error) = drain(call(&provider).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text_of(&events), "local");
    let sent = &fake.requests()[0];
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("x-api-key"), None);
    assert_eq!(sent.body["model"], "qwen2.5-coder");
}
