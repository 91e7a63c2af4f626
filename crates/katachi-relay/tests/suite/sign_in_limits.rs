//! Sign-in under attack: per-account delay that spares the owner's browser, one answer for every
//! refusal, the in-memory per-address limiter and the bound on argon2 work.

use katachi_relay::address_limit::AddressQuota;

use super::support::*;

const PASSWORD: &str = "correct horse battery staple";

/// A sign-in attempt with `client` (its own CSRF cookie); status and page.
async fn try_login(
    relay: &TestRelay,
    client: &reqwest::Client,
    email: &str,
    password: &str,
) -> (u16, String) {
    let csrf = csrf_of(&page_text(client, relay.at("/login")).await);
    let r = client
        .post(relay.at("/login"))
        .form(&[("email", email), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn sign_out(relay: &TestRelay, client: &reqwest::Client) {
    let csrf = csrf_of(&page_text(client, relay.at("/agents")).await);
    let r = client
        .post(relay.at("/logout"))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_failures_do_not_lock_the_owner_out_of_a_browser_they_signed_in_on() {
    let relay = TestRelay::start().await;
    let owner = relay.client();
    sign_up(&relay, &owner, "owner@example.com").await;
    sign_out(&relay, &owner).await;

    let stranger = relay.client();
    for _ in 0..12 {
        let (status, _) = try_login(&relay, &stranger, "owner@example.com", "guess").await;
        assert_eq!(status, 401);
    }
    // The account is in its delay: even the right password from the stranger's browser is refused.
    let (status, _) = try_login(&relay, &stranger, "owner@example.com", PASSWORD).await;
    assert_eq!(status, 401);

    // The owner, from the browser they signed up on, signs in.
    let (status, body) = try_login(&relay, &owner, "owner@example.com", PASSWORD).await;
    assert_eq!(
        status, 303,
        "the owner was locked out by a stranger: {body}"
    );
    assert!(page_text(&owner, relay.at("/agents"))
        .await
        .contains("My agents"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_unknown_and_wrong_password_sign_ins_get_the_same_answer() {
    let relay = TestRelay::start().await;
    sign_up(&relay, &relay.client(), "target@example.com").await;
    let attacker = relay.client();
    let unknown = try_login(&relay, &attacker, "nobody@example.com", "whatever").await;
    let wrong = try_login(&relay, &attacker, "target@example.com", "wrong").await;
    for _ in 0..5 {
        try_login(&relay, &attacker, "target@example.com", "wrong").await;
    }
    let locked = try_login(&relay, &attacker, "target@example.com", PASSWORD).await;
    let locked_wrong = try_login(&relay, &attacker, "target@example.com", "wrong").await;
    assert_eq!(unknown.0, 401);
    assert!(
        unknown.1.contains("Wrong e-mail or password"),
        "{}",
        unknown.1
    );
    for (what, answer) in [
        ("wrong password", &wrong),
        ("locked, right password", &locked),
        ("locked, wrong password", &locked_wrong),
    ] {
        assert_eq!(
            answer.0, unknown.0,
            "{what}: status differs from an unknown e-mail"
        );
        assert_eq!(
            answer.1, unknown.1,
            "{what}: page differs from an unknown e-mail"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_gets_429_with_retry_after_before_any_work() {
    let relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.address_quota = AddressQuota {
            burst: 2,
            per_minute: 1,
        }
    })
    .await;
    let client = relay.client();
    for _ in 0..2 {
        assert_eq!(
            try_login(&relay, &client, "a@example.com", "x").await.0,
            401
        );
    }
    let csrf = csrf_of(&page_text(&client, relay.at("/login")).await);
    let r = client
        .post(relay.at("/login"))
        .form(&[
            ("email", "a@example.com"),
            ("password", "x"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.text().await.unwrap().contains("Too many requests"));

    // Sign-up and the device endpoint share the address's budget; the device endpoint answers in
    // OAuth's JSON shape.
    let r = client
        .post(relay.at("/signup"))
        .form(&[
            ("email", "b@example.com"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let r = client
        .post(relay.at("/oauth/device/code"))
        .form(&[("client_id", "katachi-agent")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "slow_down", "{body}");
    // Pages still load.
    assert_eq!(
        client
            .get(relay.at("/login"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ins_never_run_more_argon2_hashes_than_permits() {
    let relay = TestRelay::start_with(Backend::Sqlite, |c| c.password_hash_permits = Some(1)).await;
    let client = relay.client();
    let csrf = csrf_of(&page_text(&client, relay.at("/login")).await);
    let attempts: Vec<_> = (0..6)
        .map(|i| {
            let (c, url, csrf) = (client.clone(), relay.at("/login"), csrf.clone());
            tokio::spawn(async move {
                c.post(url)
                    .form(&[
                        ("email", format!("n{i}@example.com")),
                        ("password", "x".into()),
                        ("csrf", csrf),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for a in attempts {
        assert_eq!(a.await.unwrap(), 401);
    }
    let state = relay.state.as_ref().unwrap();
    assert_eq!(state.passwords.peak_concurrent(), 1);
}
