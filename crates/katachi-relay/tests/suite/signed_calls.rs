//! Signed agent calls: each bad request is refused with its own code and the relay keeps serving.

use super::support::*;

const HB: &str = "/api/agent/heartbeat";
const BEAT: &[u8] = br#"{"version":"0.1.0","workspaces":1}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_signed_request_gets_its_own_error_and_the_relay_keeps_serving() {
    let relay = TestRelay::start().await;
    let (_browser, agent) = registered_agent(&relay, "sig@example.com").await;
    let http = relay.client();

    // A good call, then the very same request again: replay.
    let good = Signed::new(HB, BEAT);
    let (status, _, date) = send_signed(&relay, &http, &agent, &good).await;
    assert_eq!(status, 200);
    assert!(
        date.is_some(),
        "every response carries Date (agents learn their clock offset from it)"
    );
    let (status, v, _) = send_signed(&relay, &http, &agent, &good).await;
    assert_eq!((status, code(&v)), (401, "signature.replayed_nonce"));

    let mut stale = Signed::new(HB, BEAT);
    stale.timestamp -= 31;
    let (status, v, _) = send_signed(&relay, &http, &agent, &stale).await;
    assert_eq!((status, code(&v)), (401, "signature.stale_timestamp"));

    let mut future = Signed::new(HB, BEAT);
    future.timestamp += 31;
    assert_eq!(
        code(&send_signed(&relay, &http, &agent, &future).await.1),
        "signature.future_timestamp"
    );

    let mut within = Signed::new(HB, BEAT);
    within.timestamp -= 25;
    assert_eq!(
        send_signed(&relay, &http, &agent, &within).await.0,
        200,
        "±30 s is accepted"
    );

    let mut wrong_key = Signed::new(HB, BEAT);
    wrong_key.secret = Some("00".repeat(32));
    assert_eq!(
        code(&send_signed(&relay, &http, &agent, &wrong_key).await.1),
        "signature.bad_signature"
    );

    let mut altered = Signed::new(HB, BEAT);
    altered.sent_body = Some(br#"{"version":"6.6.6","workspaces":1}"#.to_vec());
    assert_eq!(
        code(&send_signed(&relay, &http, &agent, &altered).await.1),
        "signature.bad_signature"
    );

    let mut bad_nonce = Signed::new(HB, BEAT);
    bad_nonce.nonce = "short".into();
    let (status, v, _) = send_signed(&relay, &http, &agent, &bad_nonce).await;
    assert_eq!((status, code(&v)), (400, "signature.malformed_header"));

    let unknown = Agent {
        id: agent.id.clone(),
        token: "ff".repeat(32),
        secret: agent.secret.clone(),
    };
    assert_eq!(
        code(
            &send_signed(&relay, &http, &unknown, &Signed::new(HB, BEAT))
                .await
                .1
        ),
        "agent.unknown"
    );
    let other_id = Agent {
        id: "agt_000000000000000000000000".into(),
        ..agent.clone()
    };
    assert_eq!(
        code(
            &send_signed(&relay, &http, &other_id, &Signed::new(HB, BEAT))
                .await
                .1
        ),
        "agent.unknown"
    );

    let (status, v, _) = send_signed(&relay, &http, &agent, &Signed::new(HB, b"{not json")).await;
    assert_eq!((status, code(&v)), (400, "request.malformed_json"));
    let (status, v, _) = send_signed(
        &relay,
        &http,
        &agent,
        &Signed::new(HB, br#"{"version":"1","workspaces":1,"extra":true}"#),
    )
    .await;
    assert_eq!((status, code(&v)), (400, "request.malformed_json"));

    let big = vec![b' '; 300 * 1024];
    let (status, v, _) = send_signed(&relay, &http, &agent, &Signed::new(HB, &big)).await;
    assert_eq!((status, code(&v)), (413, "request.too_large"));

    let unsigned = http.post(relay.at(HB)).body(BEAT).send().await.unwrap();
    assert_eq!(unsigned.status(), 400);
    let v: serde_json::Value = unsigned.json().await.unwrap();
    assert_eq!(code(&v), "signature.missing_header");

    // After all of that, a good call still works.
    assert_eq!(heartbeat(&relay, &http, &agent).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_agent_is_refused_even_with_a_valid_signature() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "rev@example.com").await;
    let http = relay.client();
    assert_eq!(heartbeat(&relay, &http, &agent).await.0, 200);
    let page = page_text(&browser, relay.at("/agents")).await;
    assert!(page.contains("build-box"));
    let r = browser
        .post(relay.at(&format!("/agents/{}/revoke", agent.id)))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (status, v) = heartbeat(&relay, &http, &agent).await;
    assert_eq!((status, code(&v)), (403, "agent.revoked"));
    let mine: serde_json::Value = browser
        .get(relay.at("/api/me/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine[0]["status"], "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_events_are_idempotent_and_unregister_removes_the_agent() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "ev@example.com").await;
    let http = relay.client();
    let batch = br#"{"events":[{"event_id":"e-1","kind":"workspace.added","at":1764000000,"payload":"{}"},{"event_id":"e-2","kind":"agent.started","at":1764000001,"payload":"{}"}]}"#;
    for _ in 0..2 {
        let (status, v, _) = send_signed(
            &relay,
            &http,
            &agent,
            &Signed::new("/api/agent/events", batch),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["acknowledged"], serde_json::json!(["e-1", "e-2"]));
    }
    let too_many = format!(
        "{{\"events\":[{}]}}",
        (0..101)
            .map(|i| format!("{{\"event_id\":\"x{i}\",\"kind\":\"k\",\"at\":0,\"payload\":\"\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let (status, v, _) = send_signed(
        &relay,
        &http,
        &agent,
        &Signed::new("/api/agent/events", too_many.as_bytes()),
    )
    .await;
    assert_eq!((status, code(&v)), (400, "request.too_many_events"));

    let (status, _, _) = send_signed(
        &relay,
        &http,
        &agent,
        &Signed::new("/api/agent/unregister", b""),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        code(&heartbeat(&relay, &http, &agent).await.1),
        "agent.unknown"
    );
    let mine: serde_json::Value = browser
        .get(relay.at("/api/me/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_go_offline_after_the_missed_window() {
    let relay = TestRelay::start_with(Backend::Sqlite, |c| c.offline_after = 1).await;
    let (browser, agent) = registered_agent(&relay, "off@example.com").await;
    let http = relay.client();
    let mine = |b: reqwest::Client| {
        let url = relay.at("/api/me/agents");
        async move {
            b.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(mine(browser.clone()).await[0]["status"], "never connected");
    assert_eq!(heartbeat(&relay, &http, &agent).await.0, 200);
    assert_eq!(mine(browser.clone()).await[0]["status"], "online");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(mine(browser.clone()).await[0]["status"], "offline");
}
