//! Nothing a signed-in page or a token answer holds is kept by a browser or a proxy cache:
//! `Cache-Control: no-store` (RFC 6749 §5.1 for `/oauth/token`, with `Pragma: no-cache`).

use reqwest::Response;

use super::support::{decide, registered_agent, request_device_code, TestRelay};

fn cache_control(r: &Response) -> String {
    r.headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn token_answer(relay: &TestRelay, device_code: &str) -> Response {
    relay
        .client()
        .post(relay.at("/oauth/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", "katachi-agent"),
            ("device_code", device_code),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_answers_and_every_signed_in_page_are_marked_no_store() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "cache@example.com").await;

    // The token endpoint: a refusal, a pending grant, and the answer that carries the credentials.
    let refused = token_answer(&relay, "no-such-code").await;
    assert_eq!(refused.status(), 400);
    let device = request_device_code(&relay, &relay.client()).await;
    let device_code = device["device_code"].as_str().unwrap();
    let pending = token_answer(&relay, device_code).await;
    let user_code = device["user_code"].as_str().unwrap();
    assert_eq!(
        decide(&relay, &browser, user_code, "approve")
            .await
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let granted = token_answer(&relay, device_code).await;
    assert_eq!(granted.status(), 200);
    for r in [&refused, &pending, &granted] {
        assert_eq!(cache_control(r), "no-store", "{}", r.url());
        assert_eq!(r.headers()["pragma"], "no-cache");
    }

    // Every page of a signed-in user.
    for path in [
        "/".to_owned(),
        "/agents".to_owned(),
        format!("/agents/{}", agent.id),
        "/api/me/agents".to_owned(),
        "/settings/mcp".to_owned(),
        "/device".to_owned(),
        format!("/device?user_code={user_code}"),
        "/login".to_owned(),
    ] {
        let r = browser.get(relay.at(&path)).send().await.unwrap();
        assert!(r.status().as_u16() < 500, "{path}: {}", r.status());
        assert_eq!(cache_control(&r), "no-store", "{path}");
    }
    // Static assets hold nothing personal and stay cacheable.
    let css = browser
        .get(relay.at("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(cache_control(&css), "public, max-age=3600");
}
