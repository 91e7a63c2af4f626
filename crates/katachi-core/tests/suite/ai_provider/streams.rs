//! Answers streamed from both wires: text, tool calls, usage, early pieces, cancellation.

use std::time::Duration;

use futures::StreamExt;
use katachi_core::ai::{ModelEvent, ProviderKind, StopReason, ToolCall, Usage};
use katachi_testkit::{Ending, FakeAnswer};
use serde_json::json;

use super::*;

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
        assert_eq!(
            fake.content_sent_times().len(),
            1,
            "{kind}: only the first piece was sent"
        );
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
