//! Chat turns end to end over loopback HTTP: the real provider client against the fake provider,
//! the real tools and sandbox, approvals answered over the chat routes, the SQLCipher store.

use std::time::Duration;

use katachi_core::ai::approvals::Approvals;
use katachi_core::ai::ProviderKind;
use katachi_core::store::{Role, Store};
use katachi_testkit::{Ending, FakeAnswer, FakeError, FakeReply};
use serde_json::{json, Value};

use super::ai_chat_support::{audit_key, end_of, of_type, store_key, Chat, TEST_KEY};

const LIB: &str = "pub fn answer() -> u32 {\n    41\n}\n";
const PATCH: &str =
    "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn answer() -> u32 {\n-    41\n+    42\n }\n";

/// The JSON arguments of a tool call, streamed in three pieces.
fn pieces(args: &Value) -> Vec<String> {
    let text = args.to_string();
    let (a, rest) = text.split_at(text.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    vec![a.to_owned(), b.to_owned(), c.to_owned()]
}

fn multi_step_script() -> Vec<FakeReply> {
    vec![
        FakeAnswer::text(["Let me ", "look."])
            .tool_call("c1", "read_file", pieces(&json!({"path": "src/lib.rs"})))
            .usage(120, 9)
            .into(),
        FakeAnswer::text(["It returns 41; here is the fix."])
            .tool_call("c2", "apply_patch", pieces(&json!({"patch": PATCH})))
            .into(),
        FakeAnswer::default()
            .tool_call(
                "c3",
                "run_command",
                pieces(&json!({"command": "grep", "args": ["-n", "42", "src/lib.rs"]})),
            )
            .into(),
        FakeAnswer::text([
            "Done: ",
            "`answer()` now returns 42, and grep finds it on line 2.",
        ])
        .into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_step_task_reads_patches_after_approval_runs_a_command_and_reports() {
    let chat = Chat::start(multi_step_script()).await;
    chat.put("src/lib.rs", LIB);
    chat.put("AGENTS.md", "Always run grep after a change.\n");
    let session = chat.new_session().await;
    let mut asked = Vec::new();
    let lines = chat
        .turn(session, "Make answer() return 42", |event| {
            asked.push(event["approval"].clone());
            Some("once")
        })
        .await;
    assert_eq!(end_of(&lines), "finished", "{lines:#?}");
    assert_eq!(chat.read("src/lib.rs"), LIB.replace("41", "42"));

    // the patch and the command were each asked, with the real diff and the exact command line
    assert_eq!(asked.len(), 2, "{asked:#?}");
    assert_eq!(asked[0]["tool"], "apply_patch");
    assert!(asked[0]["preview"]["unified_diff"]
        .as_str()
        .unwrap()
        .contains("+    42"));
    assert_eq!(asked[1]["tool"], "run_command");
    assert_eq!(asked[1]["preview"]["command"], "grep");
    assert_eq!(asked[1]["summary"], "Run `grep -n 42 src/lib.rs` in ws");

    // streamed: text, tool calls, results, usage, in order
    let text: String = of_type(&lines, "text")
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(text.starts_with("Let me look.It returns 41"), "{text}");
    assert!(text.ends_with("grep finds it on line 2."));
    let results = of_type(&lines, "tool_result");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["content"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(results[2]["is_error"], false, "{}", results[2]);
    assert_eq!(of_type(&lines, "usage")[0]["input_tokens"], 120);

    // the provider saw the tools, the system prompt with AGENTS.md, the results, and the key
    let requests = chat.fake.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(
        requests[0].header("authorization"),
        Some(&*format!("Bearer {TEST_KEY}"))
    );
    let first = requests[0].body.to_string();
    assert!(first.contains("Always run grep after a change."), "{first}");
    assert!(first.contains("\"apply_patch\""));
    let last = requests[3].body.to_string();
    assert!(
        last.contains("2:    42"),
        "the run's output reached the model: {last}"
    );

    // everything is in the store: user, 4 assistant messages, 3 results (with their approvals)
    let stored = chat.messages(session);
    let roles: Vec<Role> = stored.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert!(stored[4]
        .payload
        .as_deref()
        .unwrap()
        .contains("\"approval\":\"once\""));
    // and the ledger of what left the machine: one record per provider call, with its bytes
    let store = Store::open(&chat.db, &store_key()).unwrap();
    let records = store.audit(&audit_key()).recent(100).unwrap();
    let egress: Vec<_> = records.iter().filter(|r| r.action == "ai.chat").collect();
    assert_eq!(egress.len(), 4, "{records:#?}");
    assert!(egress.iter().all(|r| r.bytes_out > 100 && r.actor == "ai"));
    assert!(records
        .iter()
        .any(|r| r.action == "file.patch" && r.actor == "ai"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_patch_goes_back_to_the_model_as_denied_and_nothing_changes() {
    let chat = Chat::start(vec![
        FakeAnswer::default()
            .tool_call("c1", "apply_patch", pieces(&json!({"patch": PATCH})))
            .into(),
        FakeAnswer::text(["Understood, I left it alone."]).into(),
    ])
    .await;
    chat.put("src/lib.rs", LIB);
    let session = chat.new_session().await;
    let lines = chat.turn(session, "fix it", |_| Some("deny")).await;
    assert_eq!(end_of(&lines), "finished");
    assert_eq!(chat.read("src/lib.rs"), LIB);
    let result = of_type(&lines, "tool_result")[0];
    assert_eq!(result["is_error"], true);
    assert_eq!(result["content"]["error"]["code"], "approval.denied");
    assert_eq!(of_type(&lines, "approval_settled")[0]["decision"], "deny");
    assert!(chat.fake.requests()[1]
        .body
        .to_string()
        .contains("approval.denied"));
    let (_, ledger) = chat.get("/v1/workspaces/1/chat/grants").await;
    assert_eq!(ledger["approvals"][0]["decision"], "deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_grant_covers_later_runs_of_that_command_until_revoked() {
    let run = |id: &str| {
        FakeAnswer::default()
            .tool_call(id, "run_command", pieces(&json!({"command": "ls"})))
            .into()
    };
    let chat = Chat::start(vec![
        run("c1"),
        FakeAnswer::text(["one"]).into(),
        run("c2"),
        FakeAnswer::text(["two"]).into(),
        run("c3"),
        FakeAnswer::text(["three"]).into(),
    ])
    .await;
    let session = chat.new_session().await;
    let first = chat.turn(session, "list", |_| Some("session")).await;
    assert_eq!(of_type(&first, "approval").len(), 1);
    let second = chat
        .turn(session, "again", |_| {
            panic!("a granted command is not asked again")
        })
        .await;
    assert!(of_type(&second, "approval").is_empty());
    assert_eq!(of_type(&second, "tool_result")[0]["is_error"], false);
    let (_, ledger) = chat.get("/v1/workspaces/1/chat/grants").await;
    let grant = ledger["approvals"][0]["id"].as_i64().unwrap();
    let (status, revoked) = chat
        .post(
            &format!("/v1/workspaces/1/chat/grants/{grant}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!((status, &revoked["revoked"]), (200, &json!(true)));
    let third = chat.turn(session, "and again", |_| Some("once")).await;
    assert_eq!(
        of_type(&third, "approval").len(),
        1,
        "asked again after the revocation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_expires_as_refused() {
    let chat = Chat::start_with(
        vec![
            FakeAnswer::default()
                .tool_call("c1", "run_command", pieces(&json!({"command": "ls"})))
                .into(),
            FakeAnswer::text(["ok, not running it"]).into(),
        ],
        Approvals::new(Duration::from_millis(300)),
        ProviderKind::OpenAi,
        None,
    )
    .await;
    let session = chat.new_session().await;
    let lines = chat.turn(session, "list", |_| None).await;
    assert_eq!(
        of_type(&lines, "approval_settled")[0]["decision"],
        "expired"
    );
    let result = of_type(&lines, "tool_result")[0];
    assert_eq!(result["content"]["error"]["code"], "approval.expired");
    let id = of_type(&lines, "approval")[0]["approval"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, late) = chat
        .post(
            &format!("/v1/chat/approvals/{id}"),
            json!({"decision": "once"}),
        )
        .await;
    assert_eq!(
        (status, late["error"]["code"].as_str()),
        (409, Some("approval.not_pending"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_error_mid_stream_ends_the_turn_with_its_code_and_keeps_what_was_said() {
    let chat = Chat::start_with(
        vec![FakeAnswer::text(["Partial ", "answer ", "never ends"])
            .ending(Ending::ErrorAfter(2))
            .into()],
        Approvals::default(),
        ProviderKind::Anthropic,
        None,
    )
    .await;
    let session = chat.new_session().await;
    let lines = chat.turn(session, "explain", |_| None).await;
    assert_eq!(end_of(&lines), "failed");
    let error = of_type(&lines, "error")[0];
    assert_eq!(error["code"], "ai.stream_broken", "{error}");
    let stored = chat.messages(session);
    assert_eq!(stored[1].content, "Partial answer ");
    assert!(stored[1]
        .payload
        .as_deref()
        .unwrap()
        .contains("ai.stream_broken"));
    // the session goes on: a retry gets a clean answer
    chat.fake.push(FakeAnswer::text(["Complete."]));
    let again = chat.turn(session, "again", |_| None).await;
    assert_eq!(end_of(&again), "finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_mid_stream_closes_the_provider_call_and_stores_what_was_said() {
    let chat = Chat::start(vec![FakeAnswer::text(["Thinking ", "hard", " forever"])
        .ending(Ending::HoldAfter(2))
        .into()])
    .await;
    let session = chat.new_session().await;
    let turn = chat.turn(session, "go", |_| None);
    let stopper = async {
        assert!(chat.fake.wait_for_holding(1, Duration::from_secs(20)).await);
        let (status, body) = chat
            .post(&format!("/v1/chat/sessions/{session}/stop"), json!({}))
            .await;
        assert_eq!((status, &body["stopped"]), (200, &json!(true)));
    };
    let (lines, ()) = tokio::join!(turn, stopper);
    assert_eq!(end_of(&lines), "stopped");
    assert!(
        chat.fake
            .wait_for_disconnects(1, Duration::from_secs(10))
            .await,
        "the provider call was closed"
    );
    // what the browser was shown before the stop is what is kept (the stop may overtake the
    // second piece on its way through the agent)
    let shown: String = of_type(&lines, "text")
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(shown.starts_with("Thinking "), "{lines:?}");
    let stored = chat.messages(session);
    assert_eq!(stored[1].content, shown);
    assert!(stored[1]
        .payload
        .as_deref()
        .unwrap()
        .contains("stopped by the user"));
    assert!(!chat.service.is_running(session));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_its_turn_and_a_second_turn_meanwhile_is_busy() {
    let chat = Chat::start(vec![FakeAnswer::text(["a", "b"])
        .ending(Ending::HoldAfter(1))
        .into()])
    .await;
    let session = chat.new_session().await;
    let res = chat
        .client
        .post(format!("{}/v1/chat/sessions/{session}/turn", chat.base))
        .json(&json!({"text": "go"}))
        .send()
        .await
        .unwrap();
    assert!(chat.fake.wait_for_holding(1, Duration::from_secs(20)).await);
    let (status, busy) = chat
        .post(
            &format!("/v1/chat/sessions/{session}/turn"),
            json!({"text": "too"}),
        )
        .await;
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("chat.busy"))
    );
    drop(res);
    assert!(
        chat.fake
            .wait_for_disconnects(1, Duration::from_secs(10))
            .await
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while chat.service.is_running(session) {
        assert!(tokio::time::Instant::now() < deadline, "the turn ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_from_the_store_after_the_agent_restarts() {
    let chat = Chat::start(vec![FakeAnswer::text([
        "Noted: the password rule is 12 chars.",
    ])
    .into()])
    .await;
    let session = chat.new_session().await;
    chat.turn(session, "remember: passwords need 12 chars", |_| None)
        .await;
    let folder = chat.stop();
    let restarted = Chat::start_with(
        vec![FakeAnswer::text(["12 characters."]).into()],
        Approvals::default(),
        ProviderKind::OpenAi,
        Some(folder),
    )
    .await;
    let (status, shown) = restarted.get(&format!("/v1/chat/sessions/{session}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["messages"].as_array().unwrap().len(), 2);
    let lines = restarted
        .turn(session, "how long must passwords be?", |_| None)
        .await;
    assert_eq!(end_of(&lines), "finished");
    let sent = restarted.fake.requests()[0].body.to_string();
    assert!(
        sent.contains("remember: passwords need 12 chars")
            && sent.contains("Noted: the password rule"),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chat_requests_get_specific_errors() {
    let chat = Chat::start(vec![FakeError::status(401)
        .message("invalid x-api-key")
        .into()])
    .await;
    let session = chat.new_session().await;
    for (path, body, status, code) in [
        (
            "/v1/chat/sessions/999/turn",
            json!({"text": "hi"}),
            404,
            "chat.session_not_found",
        ),
        (
            "/v1/chat/sessions/abc/turn",
            json!({"text": "hi"}),
            404,
            "chat.session_not_found",
        ),
        (
            &*format!("/v1/chat/sessions/{session}/turn"),
            json!({"text": "  "}),
            400,
            "request.invalid",
        ),
        (
            &*format!("/v1/chat/sessions/{session}/turn"),
            json!({"txt": "hi"}),
            400,
            "request.invalid",
        ),
        (
            "/v1/workspaces/7/chat/sessions",
            json!({}),
            404,
            "workspace.not_found",
        ),
        (
            "/v1/workspaces/1/chat/sessions",
            json!({"title": "a\u{1b}[2Jb"}),
            400,
            "request.invalid",
        ),
        (
            "/v1/chat/approvals/nope",
            json!({"decision": "once"}),
            409,
            "approval.not_pending",
        ),
        (
            "/v1/chat/approvals/nope",
            json!({"decision": "expired"}),
            400,
            "request.invalid",
        ),
    ] {
        let (got, answer) = chat.post(path, body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {answer}"
        );
    }
    // a refused key ends the turn with the provider's code and what to do, never the key
    let lines = chat.turn(session, "hi", |_| None).await;
    let error = of_type(&lines, "error")[0];
    assert_eq!(error["code"], "ai.provider_auth", "{error}");
    assert!(!serde_json::to_string(&lines).unwrap().contains(TEST_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_exports_as_markdown_and_the_key_is_in_no_row_line_or_export() {
    let chat = Chat::start(multi_step_script()).await;
    chat.put("src/lib.rs", LIB);
    let session = chat.new_session().await;
    let lines = chat
        .turn(session, "Make answer() return 42", |_| Some("once"))
        .await;
    let (status, export) = chat
        .get(&format!("/v1/chat/sessions/{session}/export"))
        .await;
    assert_eq!(status, 200);
    let md = export["markdown"].as_str().unwrap();
    assert!(md.starts_with("# fix the answer\n"));
    assert!(md.contains("**apply_patch result** (approval: once)"));
    assert_eq!(
        export["filename"],
        format!("katachi-chat-{session}-fix-the-answer.md")
    );
    let rows = chat.messages(session);
    let audit = Store::open(&chat.db, &store_key())
        .unwrap()
        .audit(&audit_key())
        .recent(500)
        .unwrap();
    for text in [
        md.to_owned(),
        format!("{rows:?}"),
        format!("{audit:?}"),
        serde_json::to_string(&lines).unwrap(),
    ] {
        assert!(!text.contains(TEST_KEY));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_near_the_context_window_is_summarised_and_the_latest_turns_stay_verbatim() {
    let chat = Chat::with_window(
        vec![
            FakeAnswer::text(["SUMMARY: ", "they discussed twelve topics."]).into(),
            FakeAnswer::text(["Topic thirteen, then."]).into(),
        ],
        1000,
    )
    .await;
    let session = chat.new_session().await;
    {
        let store = Store::open(&chat.db, &store_key()).unwrap();
        for i in 0..12 {
            store
                .chat()
                .append(
                    session,
                    Role::User,
                    &format!("question {i}: {}", "q".repeat(300)),
                )
                .unwrap();
            store
                .chat()
                .append(
                    session,
                    Role::Assistant,
                    &format!("answer {i}: {}", "a".repeat(300)),
                )
                .unwrap();
        }
    }
    let lines = chat.turn(session, "and topic thirteen?", |_| None).await;
    assert_eq!(end_of(&lines), "finished", "{lines:#?}");
    let summarised = of_type(&lines, "summarised");
    assert_eq!(summarised.len(), 1, "{lines:#?}");
    let requests = chat.fake.requests();
    assert_eq!(requests.len(), 2);
    let summary_request = requests[0].body.to_string();
    // the older part (up to answer 7: eight messages are kept verbatim) is summarised, its
    // end first when it does not all fit the window
    assert!(summary_request.contains("You summarise a conversation"));
    assert!(summary_request.contains("answer 7:") && !summary_request.contains("question 8:"));
    let chat_request = requests[1].body.to_string();
    assert!(chat_request.contains("SUMMARY: they discussed twelve topics."));
    assert!(
        !chat_request.contains("question 0:"),
        "the summarised turns are not sent again"
    );
    assert!(chat_request.contains("question 8:") && chat_request.contains("answer 11:"));
    assert!(chat_request.contains("and topic thirteen?"));
    // the store keeps every message and the summary; the egress ledger has both calls
    let stored = chat.messages(session);
    assert!(stored.iter().any(|m| m.content.starts_with("question 0:")));
    assert!(stored
        .iter()
        .any(|m| m.role == Role::System && m.content.starts_with("SUMMARY:")));
    let audit = Store::open(&chat.db, &store_key())
        .unwrap()
        .audit(&audit_key())
        .recent(50)
        .unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.action == "ai.summarise").count(),
        1
    );
    // the next turn sends the summary again, not the old messages
    chat.fake.push(FakeAnswer::text(["ok"]));
    chat.turn(session, "thanks", |_| None).await;
    let next = chat.fake.requests()[2].body.to_string();
    assert!(next.contains("SUMMARY:") && !next.contains("question 0:"));
}
