//! The notes for the model over the chat routes: saved, listed, put into the system prompt of the
//! next turn, bad keys and values refused with their codes, forgotten.

use katachi_testkit::{FakeAnswer, FakeReply};
use serde_json::{json, Value};

use super::ai_chat_support::Chat;

impl Chat {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let res = request.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_note_is_listed_and_reaches_the_system_prompt_of_the_next_turn() {
    let chat = Chat::start(vec![FakeReply::from(FakeAnswer::text(["Noted."]))]).await;
    let put = reqwest::Method::PUT;
    let (status, body) = chat
        .send(
            put.clone(),
            "/v1/workspaces/1/chat/notes/build.cmd",
            Some(json!({"value": "Build with `make fast`, never plain make."})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key"], "build.cmd");
    let (status, body) = chat
        .send(
            put,
            "/v1/workspaces/1/chat/notes/style",
            Some(json!({"value": "Tabs, not spaces."})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = chat.get("/v1/workspaces/1/chat/notes").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"notes": [
            {"key": "build.cmd", "value": "Build with `make fast`, never plain make."},
            {"key": "style", "value": "Tabs, not spaces."},
        ]})
    );

    let session = chat.new_session().await;
    chat.turn(session, "how do I build?", |_| None).await;
    let requests = chat.fake.requests();
    assert_eq!(requests.len(), 1);
    let sent = requests[0].body.to_string();
    assert!(sent.contains("never plain make."), "{sent}");
    assert!(sent.contains("Tabs, not spaces."), "{sent}");
    chat.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_note_keys_and_values_are_refused_and_a_forgotten_note_is_gone() {
    let chat = Chat::start(Vec::new()).await;
    let put = reqwest::Method::PUT;
    let delete = reqwest::Method::DELETE;
    let long_key = format!("/v1/workspaces/1/chat/notes/{}", "k".repeat(65));
    let refused: Vec<(&str, Option<Value>, u16, &str)> = vec![
        (
            "/v1/workspaces/1/chat/notes/a%20b",
            Some(json!({"value": "x"})),
            400,
            "request.invalid",
        ),
        (
            "/v1/workspaces/1/chat/notes/a%2Fb",
            Some(json!({"value": "x"})),
            400,
            "request.invalid",
        ),
        (
            &long_key,
            Some(json!({"value": "x"})),
            400,
            "request.invalid",
        ),
        (
            "/v1/workspaces/1/chat/notes/ok",
            Some(json!({"value": "a\u{0}b"})),
            400,
            "request.invalid",
        ),
        (
            "/v1/workspaces/1/chat/notes/ok",
            Some(json!({"value": "v".repeat(8 * 1024 + 1)})),
            400,
            "request.invalid",
        ),
        (
            "/v1/workspaces/1/chat/notes/ok",
            Some(json!({"text": "x"})),
            400,
            "request.invalid",
        ),
        (
            "/v1/workspaces/1/chat/notes/ok",
            None,
            400,
            "request.invalid",
        ),
        (
            "/v1/workspaces/99/chat/notes/ok",
            Some(json!({"value": "x"})),
            404,
            "workspace.not_found",
        ),
    ];
    for (path, body, want_status, want_code) in refused {
        let (status, answer) = chat.send(put.clone(), path, body).await;
        assert_eq!(status, want_status, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], want_code, "{path}: {answer}");
    }
    let (status, body) = chat.get("/v1/workspaces/1/chat/notes").await;
    assert_eq!(
        (status, body),
        (200, json!({"notes": []})),
        "nothing was saved"
    );
    let (status, body) = chat.get("/v1/workspaces/99/chat/notes").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "workspace.not_found");

    // a note of exactly 8 KiB is kept, then forgotten; forgetting it again is chat.note_not_found
    let path = "/v1/workspaces/1/chat/notes/big";
    let (status, body) = chat
        .send(put, path, Some(json!({"value": "v".repeat(8 * 1024)})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = chat.send(delete.clone(), path, None).await;
    assert_eq!(status, 204);
    let (status, body) = chat.send(delete, path, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "chat.note_not_found");
    let (_, body) = chat.get("/v1/workspaces/1/chat/notes").await;
    assert_eq!(body, json!({"notes": []}));
    chat.stop();
}
