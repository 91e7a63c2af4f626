//! Forms and pages: CSRF, open redirects, security headers, cookies, sign-in limits, ownership.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_the_security_headers_and_host_cookies() {
    let relay = TestRelay::start().await;
    let client = relay.client();
    for path in ["/login", "/signup", "/no-such-page", "/static/app.css"] {
        let r = client.get(relay.at(path)).send().await.unwrap();
        let h = r.headers();
        assert!(
            h["strict-transport-security"]
                .to_str()
                .unwrap()
                .contains("max-age="),
            "{path}"
        );
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    let r = relay.client().get(relay.at("/login")).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("__Host-")
            && cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite"),
        "{cookie}"
    );
    let page = page_text(&client, relay.at("/signup")).await;
    let r = client
        .post(relay.at("/signup"))
        .form(&[
            ("email", "c@example.com"),
            ("password", "long enough password"),
            ("csrf", &csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap();
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-katachi_session"))
        .unwrap();
    assert!(
        session.contains("Secure")
            && session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/"),
        "{session}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_posts_without_csrf_or_from_another_origin_are_refused() {
    let relay = TestRelay::start().await;
    let client = relay.client();
    let no_token = client
        .post(relay.at("/login"))
        .form(&[("email", "a@b.co"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 403);
    assert!(no_token.text().await.unwrap().contains("CSRF"));
    let page = page_text(&client, relay.at("/login")).await;
    let wrong = client
        .post(relay.at("/login"))
        .form(&[
            ("email", "a@b.co"),
            ("password", "x"),
            ("csrf", &"0".repeat(64)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let cross = client
        .post(relay.at("/login"))
        .header("origin", "https://evil.example")
        .form(&[
            ("email", "a@b.co"),
            ("password", "x"),
            ("csrf", &csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    // A fresh client (no CSRF cookie) replaying a token from someone else's page is refused too.
    let stranger = relay.client();
    let r = stranger
        .post(relay.at("/login"))
        .form(&[
            ("email", "a@b.co"),
            ("password", "x"),
            ("csrf", &csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirects_are_neutralised() {
    let relay = TestRelay::start().await;
    let client = relay.client();
    for evil in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let page = client
            .get(relay.at(&format!(
                "/signup?next={}",
                url::form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
            )))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("name=\"next\" value=\"/agents\""),
            "{evil}: next not sanitised"
        );
    }
    let page = page_text(&client, relay.at("/signup")).await;
    let r = client
        .post(relay.at("/signup"))
        .form(&[
            ("email", "r@example.com"),
            ("password", "long enough password"),
            ("csrf", &csrf_of(&page)),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/agents");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cannot_see_or_revoke_each_others_agents() {
    let relay = TestRelay::start().await;
    let (_alice, alice_agent) = registered_agent(&relay, "alice@example.com").await;
    let bob = relay.client();
    sign_up(&relay, &bob, "bob@example.com").await;
    let bobs: serde_json::Value = bob
        .get(relay.at("/api/me/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs, serde_json::json!([]));
    let page = page_text(&bob, relay.at("/agents")).await;
    bob.post(relay.at(&format!("/agents/{}/revoke", alice_agent.id)))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(
        heartbeat(&relay, &relay.client(), &alice_agent).await.0,
        200,
        "Alice's agent is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_ends_the_session() {
    let relay = TestRelay::start().await;
    let c = relay.client();
    sign_up(&relay, &c, "out@example.com").await;
    let page = page_text(&c, relay.at("/agents")).await;
    assert!(page.contains("My agents"));
    let r = c
        .post(relay.at("/logout"))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let after = c.get(relay.at("/agents")).send().await.unwrap();
    assert_eq!(after.status(), 303, "back to sign-in");
    assert_eq!(
        c.get(relay.at("/api/me/agents"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}
