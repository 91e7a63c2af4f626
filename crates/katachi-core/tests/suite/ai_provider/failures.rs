//! Failed calls: what is retried and how long it waits, what fails at once, broken streams.

use std::time::{Duration, Instant};

use katachi_core::ai::ModelEvent;
use katachi_testkit::{Ending, FakeAnswer, FakeError};

use super::*;

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
async fn dropping_the_call_while_it_waits_to_retry_sends_nothing_more() {
    for kind in KINDS {
        let fake = fake(vec![
            FakeError::status(503).retry_after("1").into(),
            FakeAnswer::text(["never read"]).into(),
        ])
        .await;
        let provider = provider(&fake, kind);
        let request = request();
        // the stop button drops the turn's future during the provider's Retry-After wait
        let stopped =
            tokio::time::timeout(Duration::from_millis(300), provider.stream(&request)).await;
        assert!(
            stopped.is_err(),
            "{kind}: the call ended before its retry wait"
        );
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(
            fake.requests().len(),
            1,
            "{kind}: a dropped call was retried"
        );
    }
}
