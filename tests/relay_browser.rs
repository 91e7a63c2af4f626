//! The relay's web UI in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver), against a relay served in this process over TLS 1.3 with its own local CA.
//!
//! - A user signs up, approves an agent's device code (seeing its name, OS and address), watches
//!   the agent turn "online" without reloading, and revokes it; the agent is then refused.
//! - A new account gets its verification link through a real SMTP server (aiosmtpd); it cannot
//!   approve a device before opening it, and can after.
//! - A user signs in with GitHub through a local OAuth provider (PKCE verified by the provider).
//! - An MCP server's secret environment value never reaches the browser, nor the database in clear.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install chromium chromium-driver`);
//! without them the tests fail rather than pass silently. Screenshots go to
//! `$CARGO_TARGET_TMPDIR/screenshots`, or to `docs/screenshots` when `KATACHI_UPDATE_SCREENSHOTS=1`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use katachi_e2e::chromium::Browser;
use katachi_e2e::oauth_provider::LocalOAuthProvider;
use katachi_e2e::relay::{
    poll_for_credentials, request_device_code, send_heartbeat, InProcessRelay,
};
use katachi_e2e::smtp::{first_link, LocalSmtpServer};
use tokio::sync::Semaphore;

/// Whole-test budget: Chromium start-up on a loaded 2-core machine included.
const TEST_BUDGET: Duration = Duration::from_secs(180);
/// Budget for a page to show what it should.
const PAGE: Duration = Duration::from_secs(15);
/// The agents page polls every 3 s: a few polls' worth.
const LIVE_REFRESH: Duration = Duration::from_secs(15);
const PASSWORD: &str = "correct horse battery staple";

/// One Chromium at a time: the machine has two cores, and the timings stay honest.
static ONE_BROWSER: Semaphore = Semaphore::const_new(1);

/// One token poll of the agent: status and the `error` field.
async fn agent_token_status(
    relay: &InProcessRelay,
    http: &reqwest::Client,
    dc: &serde_json::Value,
) -> (u16, String) {
    let response = http
        .post(relay.at(katachi_proto::device::TOKEN_PATH))
        .form(&[
            ("grant_type", katachi_proto::device::DEVICE_CODE_GRANT),
            ("device_code", dc["device_code"].as_str().unwrap()),
            ("client_id", "katachi-agent"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Signs up in the browser; the address counts as verified (as after opening the mailed link).
async fn sign_up(browser: &Browser, relay: &InProcessRelay, email: &str) {
    browser
        .sign_up(relay.url(), email, PASSWORD, PAGE)
        .await
        .unwrap();
    relay.verify_email(email).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_approves_a_device_sees_it_online_live_and_revokes_it() {
    let _one = ONE_BROWSER.acquire().await.unwrap();
    tokio::time::timeout(TEST_BUDGET, async {
        let relay = InProcessRelay::start(|_| {}).await.unwrap();
        let browser = Browser::launch().await.unwrap();

        sign_up(&browser, &relay, "ana@example.com").await;
        assert!(browser
            .text("#no-agents")
            .await
            .unwrap()
            .contains("No agents yet"));

        // The agent asks for a code; the user opens the link the agent would open.
        let agent_http = relay.client().unwrap();
        let dc = request_device_code(&relay, &agent_http, "build-box", "Debian 12")
            .await
            .unwrap();
        let user_code = dc["user_code"].as_str().unwrap();
        browser
            .goto(dc["verification_uri_complete"].as_str().unwrap())
            .await
            .unwrap();
        browser
            .wait_for_text("#device-name", "build-box", PAGE)
            .await
            .unwrap();
        assert_eq!(browser.text("#device-os").await.unwrap(), "Debian 12");
        assert_eq!(browser.text("#device-ip").await.unwrap(), "127.0.0.1");
        // The device asked from the approver's own address: no warning. The link's code is not
        // shown: the user compares with the device by typing what it shows.
        let source = browser.source().await.unwrap();
        assert!(!source.contains("ip-warning"), "{source}");
        assert!(!source.contains("<strong class=\"code\">"), "{source}");

        // RFC 8628 §5.4: one click on "Approve" from the link does not connect the device.
        browser.click("#approve").await.unwrap();
        browser
            .wait_for_text(
                "p.notice.error",
                "Type the code your device shows to approve it.",
                PAGE,
            )
            .await
            .unwrap();
        let (status, pending) = agent_token_status(&relay, &agent_http, &dc).await;
        assert_eq!((status, pending.as_str()), (400, "authorization_pending"));

        // Typing the code the device shows does.
        browser.fill("#confirm-code", user_code).await.unwrap();
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("relay-device-approval.png"))
            .await
            .unwrap();
        browser.click("#approve").await.unwrap();
        browser
            .wait_for_text("#result", "Device connected", PAGE)
            .await
            .unwrap();

        // The agent's next poll gets its credentials.
        let agent = poll_for_credentials(
            &relay,
            &agent_http,
            dc["device_code"].as_str().unwrap(),
            Duration::from_millis(1100),
            Duration::from_secs(30),
        )
        .await
        .unwrap();

        browser.goto(&relay.at("/agents")).await.unwrap();
        let status = format!(
            "tr[data-agent-id=\"{}\"] [data-field=status]",
            agent.agent_id
        );
        browser
            .wait_for_text(&status, "never connected", PAGE)
            .await
            .unwrap();
        // Proves the page is not reloaded: a reload would drop this.
        browser
            .execute("window.katachiSamePage = 'yes'; return true;")
            .await
            .unwrap();

        let (code, body) = send_heartbeat(&relay, &agent_http, &agent).await.unwrap();
        assert_eq!(code, 200, "{body}");
        browser
            .wait_for_text(&status, "online", LIVE_REFRESH)
            .await
            .unwrap();
        assert_eq!(
            browser
                .execute("return window.katachiSamePage;")
                .await
                .unwrap(),
            "yes",
            "the agents page reloaded instead of refreshing live"
        );
        assert_eq!(
            browser
                .text(&format!("tr[data-agent-id=\"{}\"] td.name", agent.agent_id))
                .await
                .unwrap(),
            "build-box"
        );
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("relay-agents.png"))
            .await
            .unwrap();

        // Revoke: the page says so, and the agent's next signed call is refused.
        browser
            .click(&format!(
                "tr[data-agent-id=\"{}\"] button.danger",
                agent.agent_id
            ))
            .await
            .unwrap();
        browser
            .wait_for_text(&status, "revoked", PAGE)
            .await
            .unwrap();
        let (code, body) = send_heartbeat(&relay, &agent_http, &agent).await.unwrap();
        assert_eq!(code, 403, "{body}");
        assert_eq!(body["error"]["code"], "agent.revoked", "{body}");

        browser.close().await.unwrap();
        relay.stop().await.unwrap();
    })
    .await
    .expect("the test ran over its time budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_with_github_through_the_local_provider() {
    let _one = ONE_BROWSER.acquire().await.unwrap();
    tokio::time::timeout(TEST_BUDGET, async {
        let provider = LocalOAuthProvider::start("katachi-browser-client", "browser-secret-42")
            .await
            .unwrap();
        let github = provider.relay_config();
        let relay = InProcessRelay::start(|c| c.github = Some(github))
            .await
            .unwrap();
        let browser = Browser::launch().await.unwrap();

        browser.goto(&relay.at("/login")).await.unwrap();
        browser
            .click("a[href^=\"/auth/github/start\"]")
            .await
            .unwrap();
        // GitHub's consent page (the local provider).
        browser
            .wait_for_text("h1", "Authorize katachi", PAGE)
            .await
            .unwrap();
        assert!(browser
            .current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(provider.base_url()));
        browser.click("#authorize").await.unwrap();

        browser
            .wait_for_text("main h1", "My agents", PAGE)
            .await
            .unwrap();
        assert_eq!(browser.text(".who").await.unwrap(), "octo@example.com");
        assert!(browser
            .current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(&relay.at("/agents")));
        assert_eq!(provider.successful_exchanges(), 1);
        assert_eq!(provider.pkce_failures(), 0);
        // The sign-in binding cookie is spent; the session cookie is there.
        let cookies = browser.cookie_names().await.unwrap();
        assert!(
            cookies.iter().any(|c| c == "__Host-katachi_session"),
            "{cookies:?}"
        );
        assert!(
            !cookies.iter().any(|c| c == "__Host-katachi_oauth"),
            "{cookies:?}"
        );

        // Signing out removes the session cookie from the browser, not only the session row.
        browser
            .click("form[action=\"/logout\"] button")
            .await
            .unwrap();
        browser
            .wait_for_text("main h1", "Sign in", PAGE)
            .await
            .unwrap();
        let cookies = browser.cookie_names().await.unwrap();
        assert!(
            !cookies.iter().any(|c| c == "__Host-katachi_session"),
            "{cookies:?}"
        );

        browser.close().await.unwrap();
        relay.stop().await.unwrap();
    })
    .await
    .expect("the test ran over its time budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_secret_value_never_reaches_the_browser() {
    const SECRET: &str = "ghp_Zx81SuperSecretValue0042";
    const OTHER_SECRET: &str = "sk-live-NeverEchoMe-7731";
    let _one = ONE_BROWSER.acquire().await.unwrap();
    tokio::time::timeout(TEST_BUDGET, async {
        let relay = InProcessRelay::start(|_| {}).await.unwrap();
        let browser = Browser::launch().await.unwrap();
        sign_up(&browser, &relay, "mcp@example.com").await;

        browser
            .click("nav a[href=\"/settings/mcp\"]")
            .await
            .unwrap();
        browser
            .wait_for_text("main h1", "MCP servers", PAGE)
            .await
            .unwrap();
        browser.wait_for("#no-mcp-servers", PAGE).await.unwrap();

        browser
            .fill("input[name=name]", "github tools")
            .await
            .unwrap();
        browser
            .fill(
                "input[name=command]",
                "npx -y @modelcontextprotocol/server-github",
            )
            .await
            .unwrap();
        browser
            .fill(
                "textarea[name=env]",
                &format!("GITHUB_TOKEN={SECRET}\nLOG_LEVEL=debug"),
            )
            .await
            .unwrap();
        browser.click("#add-mcp button[type=submit]").await.unwrap();
        browser.wait_for("#mcp-servers", PAGE).await.unwrap();

        let html = browser.source().await.unwrap();
        assert!(
            !html.contains(SECRET),
            "the secret came back to the browser"
        );
        let env = browser.text("#mcp-servers td.env").await.unwrap();
        assert!(
            env.contains("GITHUB_TOKEN=") && env.contains("LOG_LEVEL="),
            "{env}"
        );
        assert!(env.contains("••••••••"), "{env}");
        assert!(
            !env.contains("debug"),
            "values are masked, even harmless ones: {env}"
        );
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("relay-mcp.png"))
            .await
            .unwrap();

        // A refused form comes back with the names only.
        browser.fill("input[name=name]", "bad/name").await.unwrap();
        browser.fill("input[name=command]", "x").await.unwrap();
        browser
            .fill("textarea[name=env]", &format!("API_KEY={OTHER_SECRET}"))
            .await
            .unwrap();
        browser.click("#add-mcp button[type=submit]").await.unwrap();
        browser.wait_for(".notice.error", PAGE).await.unwrap();
        let html = browser.source().await.unwrap();
        assert!(
            !html.contains(OTHER_SECRET),
            "a refused form echoed a secret"
        );
        assert_eq!(
            browser
                .execute("return document.querySelector('textarea[name=env]').value;")
                .await
                .unwrap(),
            "API_KEY=\n"
        );

        // A fresh load, too, and the database holds only the sealed value.
        browser.goto(&relay.at("/settings/mcp")).await.unwrap();
        assert!(!browser.source().await.unwrap().contains(SECRET));
        for file in ["relay.db", "relay.db-wal"] {
            if let Ok(bytes) = std::fs::read(relay.data_dir().join(file)) {
                assert!(
                    !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                    "{file} holds the secret in clear"
                );
            }
        }

        // Delete.
        browser.click("#mcp-servers button.danger").await.unwrap();
        browser.wait_for("#no-mcp-servers", PAGE).await.unwrap();

        browser.close().await.unwrap();
        relay.stop().await.unwrap();
    })
    .await
    .expect("the test ran over its time budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_account_approves_devices_only_after_opening_the_link_mailed_to_it() {
    let _one = ONE_BROWSER.acquire().await.unwrap();
    tokio::time::timeout(TEST_BUDGET, async {
        let mut smtp = LocalSmtpServer::start().unwrap();
        let smtp_url = smtp.url();
        let relay = InProcessRelay::start(move |c| c.smtp_url = Some(smtp_url))
            .await
            .unwrap();
        let browser = Browser::launch().await.unwrap();
        browser
            .sign_up(relay.url(), "mailed@example.com", PASSWORD, PAGE)
            .await
            .unwrap();

        // The mail arrives at the SMTP server, with the link.
        let mail = smtp
            .wait_for_mail_to("mailed@example.com", PAGE)
            .await
            .unwrap();
        assert!(
            mail.contains("Subject: Confirm your e-mail address"),
            "{mail}"
        );
        let link = first_link(&mail).unwrap_or_else(|| panic!("no link in {mail}"));
        assert!(link.starts_with(&relay.at("/verify-email/")), "{link}");

        // Before opening it: no approval, the page says where the link went and offers another.
        let agent_http = relay.client().unwrap();
        let dc = request_device_code(&relay, &agent_http, "mail-box", "Debian 12")
            .await
            .unwrap();
        let complete = dc["verification_uri_complete"].as_str().unwrap();
        browser.goto(complete).await.unwrap();
        browser
            .wait_for_text("#verify-needed", "Verify your e-mail address first", PAGE)
            .await
            .unwrap();
        assert!(browser
            .text("#verify-where")
            .await
            .unwrap()
            .contains("We sent a verification link to mailed@example.com"));
        assert!(browser.source().await.unwrap().contains("id=\"resend\""));

        // The link from the mail verifies the address; now the device is approved.
        browser.goto(&link).await.unwrap();
        // Opening the link asks to confirm (a prefetching mail scanner uses nothing up).
        browser.click("#confirm-verify").await.unwrap();
        browser
            .wait_for_text("#verified", "E-mail address verified", PAGE)
            .await
            .unwrap();
        browser.goto(complete).await.unwrap();
        browser
            .fill("#confirm-code", dc["user_code"].as_str().unwrap())
            .await
            .unwrap();
        browser.click("#approve").await.unwrap();
        browser
            .wait_for_text("#result", "Device connected", PAGE)
            .await
            .unwrap();
        poll_for_credentials(
            &relay,
            &agent_http,
            dc["device_code"].as_str().unwrap(),
            Duration::from_millis(1100),
            Duration::from_secs(30),
        )
        .await
        .unwrap();

        // The link worked once.
        browser.goto(&link).await.unwrap();
        browser
            .wait_for_text("main h1", "This link does not work", PAGE)
            .await
            .unwrap();
        browser.close().await.unwrap();
        relay.stop().await.unwrap();
    })
    .await
    .expect("the test took longer than its budget");
}
