//! Sign-in with GitHub and Google against a local OAuth 2.0 provider that speaks the real protocol
//! and verifies PKCE, driven over HTTPS like a browser that shows every redirect.
//!
//! Happy paths (GitHub user API, Google id_token) and every refusal: missing, foreign, reused and
//! unknown state, a state of another provider, the user cancelling, the token endpoint failing, a
//! wrong client secret, an injected authorization code (PKCE), an open redirect in `next`, and a
//! provider that is not configured. Each refusal is a page with its own status; the relay keeps serving.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use katachi_e2e::oauth_provider::LocalOAuthProvider;
use katachi_e2e::relay::{Backend, InProcessRelay};
use reqwest::{Client, StatusCode};

const CLIENT_ID: &str = "katachi-test-client";
const CLIENT_SECRET: &str = "katachi-test-secret-0123456789";

struct Setup {
    provider: LocalOAuthProvider,
    relay: InProcessRelay,
    /// Talks to the provider (plain HTTP, no redirects followed).
    plain: Client,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(tweak: impl FnOnce(&mut katachi_relay::RelayConfig)) -> Setup {
    setup_on(Backend::Sqlite, tweak).await
}

async fn setup_on(backend: Backend, tweak: impl FnOnce(&mut katachi_relay::RelayConfig)) -> Setup {
    let provider = LocalOAuthProvider::start(CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    let github = provider.relay_config();
    let relay = InProcessRelay::start_on(backend, |c| {
        c.github = Some(github.clone());
        c.google = Some(github);
        tweak(c);
    })
    .await
    .unwrap();
    let plain = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Setup {
        provider,
        relay,
        plain,
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location in a {} answer", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// `GET /auth/{provider}/start?next=` → the provider's authorization URL.
async fn start_sign_in(s: &Setup, browser: &Client, provider: &str, next: &str) -> String {
    let r = browser
        .get(s.relay.at(&format!(
            "/auth/{provider}/start?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    let to = location(&r);
    assert!(to.starts_with(s.provider.base_url()), "{to}");
    let query: Vec<(String, String)> = url::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let has = |k: &str| query.iter().any(|(key, _)| key == k);
    assert!(
        has("state") && has("code_challenge") && has("redirect_uri"),
        "{to}"
    );
    assert!(query.contains(&("code_challenge_method".into(), "S256".into())));
    to
}

/// Opens the provider's consent page and clicks "Authorize" or "Cancel" → the callback URL.
async fn answer_at_provider(s: &Setup, authorize_url: &str, approve: bool) -> String {
    let page = s.plain.get(authorize_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let id = if approve { "authorize" } else { "cancel" };
    let marker = format!("id=\"{id}\" href=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let href = html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let r = s
        .plain
        .get(format!("{}{href}", s.provider.base_url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    let back = location(&r);
    assert!(back.starts_with(s.relay.url()), "{back}");
    back
}

fn state_of(callback: &str) -> String {
    url::Url::parse(callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

/// Whether `browser` is signed in, and as whom (the header's name).
async fn signed_in_as(s: &Setup, browser: &Client) -> Option<String> {
    let r = browser.get(s.relay.at("/agents")).send().await.unwrap();
    if r.status() != 200 {
        return None;
    }
    let html = r.text().await.unwrap();
    let start = html.find("<span class=\"who\">")? + "<span class=\"who\">".len();
    Some(html[start..].split('<').next()?.to_owned())
}

async fn page(r: reqwest::Response) -> (StatusCode, String) {
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn github_sign_in_with_pkce_lands_on_next_with_the_verified_email() {
    let s = setup().await;
    let browser = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &browser, "github", "/settings/mcp").await;
    let callback = answer_at_provider(&s, &authorize, true).await;
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/settings/mcp");
    assert_eq!(s.provider.successful_exchanges(), 1);
    assert_eq!(
        signed_in_as(&s, &browser).await.as_deref(),
        Some("octo@example.com")
    );
}

#[tokio::test]
async fn github_sign_in_and_single_use_state_hold_on_postgres() {
    let s = setup_on(Backend::Postgres, |_| {}).await;
    let browser = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &browser, "github", "/agents").await;
    let callback = answer_at_provider(&s, &authorize, true).await;
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        signed_in_as(&s, &browser).await.as_deref(),
        Some("octo@example.com")
    );
    let replay = s.relay.cookieless_client().unwrap();
    let r = replay
        .get(&callback)
        .header(
            "cookie",
            format!("__Host-katachi_oauth={}", state_of(&callback)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.provider.successful_exchanges(), 1);
}

#[tokio::test]
async fn google_sign_in_reads_the_id_token() {
    let s = setup().await;
    let browser = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &browser, "google", "/agents").await;
    assert!(authorize.contains("/o/oauth2/v2/auth?"), "{authorize}");
    assert!(authorize.contains("openid"), "{authorize}");
    let callback = answer_at_provider(&s, &authorize, true).await;
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        signed_in_as(&s, &browser).await.as_deref(),
        Some("octo@example.com")
    );
}

#[tokio::test]
async fn the_same_provider_account_signs_in_to_the_same_relay_account() {
    let s = setup().await;
    let mut users = Vec::new();
    for _ in 0..2 {
        let browser = s.relay.client().unwrap();
        let authorize = start_sign_in(&s, &browser, "github", "/agents").await;
        let callback = answer_at_provider(&s, &authorize, true).await;
        assert_eq!(
            browser.get(&callback).send().await.unwrap().status(),
            StatusCode::SEE_OTHER
        );
        users.push(
            s.relay
                .state()
                .store
                .user_by_email("octo@example.com")
                .await
                .unwrap()
                .unwrap()
                .id,
        );
    }
    assert_eq!(users[0], users[1]);
}

#[tokio::test]
async fn a_callback_without_state_is_refused() {
    let s = setup().await;
    let browser = s.relay.client().unwrap();
    let (status, html) = page(
        browser
            .get(s.relay.at("/auth/github/callback?code=abc"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("incomplete"), "{html}");
    assert_eq!(signed_in_as(&s, &browser).await, None);
}

#[tokio::test]
async fn a_callback_started_in_another_browser_is_refused() {
    // Login CSRF: the attacker finishes consent for their own account and sends the link.
    let s = setup().await;
    let attacker = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &attacker, "github", "/agents").await;
    let callback = answer_at_provider(&s, &authorize, true).await;
    let victim = s.relay.client().unwrap();
    let (status, html) = page(victim.get(&callback).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("another browser or tab"), "{html}");
    assert_eq!(signed_in_as(&s, &victim).await, None);
    assert_eq!(s.provider.successful_exchanges(), 0);
}

#[tokio::test]
async fn a_state_is_used_once() {
    let s = setup().await;
    let browser = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &browser, "github", "/agents").await;
    let callback = answer_at_provider(&s, &authorize, true).await;
    assert_eq!(
        browser.get(&callback).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    // Replay the same callback with the binding cookie put back by hand.
    let replay = s.relay.cookieless_client().unwrap();
    let (status, html) = page(
        replay
            .get(&callback)
            .header(
                "cookie",
                format!("__Host-katachi_oauth={}", state_of(&callback)),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("expired or was already used"), "{html}");
    assert_eq!(s.provider.successful_exchanges(), 1);
}

#[tokio::test]
async fn an_unknown_state_is_refused() {
    let s = setup().await;
    let client = s.relay.cookieless_client().unwrap();
    let made_up = "ab".repeat(32);
    let (status, html) = page(
        client
            .get(
                s.relay
                    .at(&format!("/auth/github/callback?code=x&state={made_up}")),
            )
            .header("cookie", format!("__Host-katachi_oauth={made_up}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("expired or was already used"), "{html}");
}

#[tokio::test]
async fn a_state_of_another_provider_is_refused() {
    let s = setup().await;
    let browser = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &browser, "github", "/agents").await;
    let callback = answer_at_provider(&s, &authorize, true).await;
    let google_callback = callback.replace("/auth/github/", "/auth/google/");
    let (status, html) = page(browser.get(&google_callback).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Google"), "{html}");
    assert_eq!(s.provider.successful_exchanges(), 0);
}

#[tokio::test]
async fn cancelling_at_the_provider_shows_a_clear_page() {
    let s = setup().await;
    let browser = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &browser, "github", "/agents").await;
    let callback = answer_at_provider(&s, &authorize, false).await;
    assert!(callback.contains("error=access_denied"));
    let (status, html) = page(browser.get(&callback).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("Sign-in cancelled"), "{html}");
    assert!(html.contains("did not allow katachi to use your GitHub account"));
    // The provider's own description is never echoed.
    assert!(!html.contains("denied your application"), "{html}");
    assert_eq!(signed_in_as(&s, &browser).await, None);
}

#[tokio::test]
async fn a_failing_token_endpoint_shows_a_clear_page_and_the_relay_keeps_serving() {
    let s = setup().await;
    let browser = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &browser, "github", "/agents").await;
    let callback = answer_at_provider(&s, &authorize, true).await;
    s.provider.set_token_endpoint_down(true);
    let (status, html) = page(browser.get(&callback).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(html.contains("token exchange failed"), "{html}");
    assert_eq!(signed_in_as(&s, &browser).await, None);

    // A fresh attempt works once the provider is back.
    s.provider.set_token_endpoint_down(false);
    let authorize = start_sign_in(&s, &browser, "github", "/agents").await;
    let callback = answer_at_provider(&s, &authorize, true).await;
    assert_eq!(
        browser.get(&callback).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert!(signed_in_as(&s, &browser).await.is_some());
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_by_the_provider() {
    let s = setup_with(|c| {
        if let Some(g) = c.github.as_mut() {
            g.client_secret = "not-the-secret".into();
        }
    })
    .await;
    let browser = s.relay.client().unwrap();
    let authorize = start_sign_in(&s, &browser, "github", "/agents").await;
    let callback = answer_at_provider(&s, &authorize, true).await;
    let (status, html) = page(browser.get(&callback).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(html.contains("token exchange failed"), "{html}");
    assert!(!html.contains("not-the-secret"));
    assert_eq!(s.provider.client_auth_failures(), 1);
}

#[tokio::test]
async fn an_injected_authorization_code_fails_pkce() {
    // The attacker obtains a code for their own account and plants it in the victim's callback
    // (with the victim's own state and cookie): the victim's verifier does not match the
    // attacker's challenge, so the provider refuses the exchange.
    let s = setup().await;
    let attacker = s.relay.client().unwrap();
    let attacker_callback =
        answer_at_provider(&s, &start_sign_in(&s, &attacker, "github", "/").await, true).await;
    let attacker_code = url::Url::parse(&attacker_callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let victim = s.relay.client().unwrap();
    let victim_callback =
        answer_at_provider(&s, &start_sign_in(&s, &victim, "github", "/").await, true).await;
    let injected = format!(
        "{}/auth/github/callback?code={attacker_code}&state={}",
        s.relay.url(),
        state_of(&victim_callback)
    );
    let (status, html) = page(victim.get(&injected).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(html.contains("token exchange failed"), "{html}");
    assert_eq!(s.provider.pkce_failures(), 1);
    assert_eq!(s.provider.successful_exchanges(), 0);
    assert_eq!(signed_in_as(&s, &victim).await, None);
}

#[tokio::test]
async fn next_cannot_send_the_user_to_another_site() {
    let s = setup().await;
    for evil in ["https://evil.example/", "//evil.example", "/\\evil.example"] {
        let browser = s.relay.client().unwrap();
        let authorize = start_sign_in(&s, &browser, "github", evil).await;
        let callback = answer_at_provider(&s, &authorize, true).await;
        let r = browser.get(&callback).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/agents", "{evil}");
    }
}

#[tokio::test]
async fn an_unconfigured_or_unknown_provider_is_not_found() {
    let provider = LocalOAuthProvider::start(CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    let github = provider.relay_config();
    let relay = InProcessRelay::start(|c| c.github = Some(github))
        .await
        .unwrap();
    let browser = relay.client().unwrap();
    for path in [
        "/auth/google/start",
        "/auth/gitlab/start?next=/agents",
        "/auth/google/callback?code=x&state=y",
    ] {
        let (status, html) = page(browser.get(relay.at(path)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(html.contains("not set up on this relay"), "{html}");
    }
    // The sign-in page offers only the configured provider.
    let login = browser
        .get(relay.at("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("Sign in with GitHub"));
    assert!(!login.contains("Sign in with Google"));
}
