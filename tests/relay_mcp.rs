//! MCP server settings (`/settings/mcp`) over HTTPS, as a browser posts them: values sealed at rest
//! and never sent back, input validated with a reason, CSRF required, other users' servers out of
//! reach. The store-backed cases run on SQLite and on PostgreSQL.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use katachi_e2e::relay::{Backend, InProcessRelay};
use katachi_relay::crypto::SealedRow;
use reqwest::{Client, StatusCode};

const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "ghp_HttpLevelSecret0042";

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in: {html}"))
        + marker.len();
    html[start..start + 64].to_owned()
}

async fn signed_up(relay: &InProcessRelay, email: &str) -> Client {
    let browser = relay.client().unwrap();
    let page = browser
        .get(relay.at("/signup"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = browser
        .post(relay.at("/signup"))
        .form(&[
            ("email", email),
            ("password", PASSWORD),
            ("csrf", &csrf_of(&page)),
            ("next", "/settings/mcp"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    browser
}

async fn mcp_page(relay: &InProcessRelay, browser: &Client) -> String {
    let r = browser.get(relay.at("/settings/mcp")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Posts the add form with this page's CSRF token.
async fn add(
    relay: &InProcessRelay,
    browser: &Client,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let csrf = csrf_of(&mcp_page(relay, browser).await);
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf", &csrf));
    let r = browser
        .post(relay.at("/settings/mcp"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

fn server_ids(html: &str) -> Vec<String> {
    html.match_indices("data-mcp-id=\"")
        .map(|(i, m)| html[i + m.len()..].split('"').next().unwrap().to_owned())
        .collect()
}

async fn servers_are_added_sealed_masked_and_deleted(backend: Backend) {
    let relay = InProcessRelay::start_on(backend, |_| {}).await.unwrap();
    let browser = signed_up(&relay, "mcp@example.com").await;
    assert!(mcp_page(&relay, &browser)
        .await
        .contains("No MCP servers yet"));

    let env = format!("GITHUB_TOKEN={SECRET}\nLOG_LEVEL=debug\n");
    let (status, _) = add(
        &relay,
        &browser,
        &[
            ("name", "github"),
            ("command", "npx -y @modelcontextprotocol/server-github"),
            ("url", ""),
            ("env", &env),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "post/redirect/get");
    let (status, _) = add(
        &relay,
        &browser,
        &[("name", "remote"), ("url", "https://mcp.example.com/sse")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let html = mcp_page(&relay, &browser).await;
    assert!(!html.contains(SECRET), "the secret came back");
    assert!(!html.contains("debug"), "values are masked, all of them");
    assert!(html.contains("GITHUB_TOKEN=") && html.contains("LOG_LEVEL="));
    assert!(html.contains("https://mcp.example.com/sse"));
    assert_eq!(server_ids(&html).len(), 2);

    // At rest: sealed under the master key with purpose `mcp-env`, nothing in clear.
    let state = relay.state();
    let user = state
        .store
        .user_by_email("mcp@example.com")
        .await
        .unwrap()
        .unwrap();
    let stored = state.store.mcp_servers_of(&user.id).await.unwrap();
    let github = stored.iter().find(|s| s.name == "github").unwrap();
    assert!(!github.env_enc.contains(SECRET));
    let row = SealedRow::mcp_env(&github.id, &user.id);
    let opened: serde_json::Value =
        serde_json::from_slice(&state.master.open(&row, &github.env_enc).unwrap()).unwrap();
    assert_eq!(opened["GITHUB_TOKEN"], SECRET);
    let as_signing_secret = SealedRow::agent_signing_secret(&github.id, &user.id);
    assert!(state
        .master
        .open(&as_signing_secret, &github.env_enc)
        .is_err());

    // The same name again is refused; the value is not echoed.
    let (status, html) = add(
        &relay,
        &browser,
        &[("name", "github"), ("command", "x"), ("env", &env)],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("already have a server named"), "{html}");
    assert!(!html.contains(SECRET));

    // Delete both.
    for id in server_ids(&mcp_page(&relay, &browser).await) {
        let csrf = csrf_of(&mcp_page(&relay, &browser).await);
        let r = browser
            .post(relay.at(&format!("/settings/mcp/{id}/delete")))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    assert!(mcp_page(&relay, &browser)
        .await
        .contains("No MCP servers yet"));
    relay.stop().await.unwrap();
}

#[tokio::test]
async fn mcp_servers_are_added_sealed_masked_and_deleted() {
    servers_are_added_sealed_masked_and_deleted(Backend::Sqlite).await;
}

#[tokio::test]
async fn mcp_servers_are_added_sealed_masked_and_deleted_on_postgres() {
    servers_are_added_sealed_masked_and_deleted(Backend::Postgres).await;
}

#[tokio::test]
async fn invalid_mcp_forms_are_refused_with_a_reason_and_no_value_echoed() {
    let relay = InProcessRelay::start(|_| {}).await.unwrap();
    let browser = signed_up(&relay, "v@example.com").await;
    let secret_env = format!("API_KEY={SECRET}");
    let long_value = format!("BIG={}", "v".repeat(4097));
    let many: String = (0..33).map(|i| format!("K{i}=v\n")).collect();
    let cases: [(&[(&str, &str)], &str); 9] = [
        (&[("name", ""), ("command", "x")], "Use a name of 1 to 64"),
        (
            &[("name", "a/b"), ("command", "x")],
            "Use a name of 1 to 64",
        ),
        (
            &[("name", "both"), ("command", "x"), ("url", "https://e.com")],
            "not both",
        ),
        (&[("name", "neither")], "not both"),
        (
            &[("name", "plain"), ("url", "http://example.com/mcp")],
            "must start with https://",
        ),
        (
            &[("name", "badkey"), ("command", "x"), ("env", "lower=1")],
            "names use A-Z",
        ),
        (
            &[("name", "big"), ("command", "x"), ("env", &long_value)],
            "4 KiB",
        ),
        (
            &[("name", "many"), ("command", "x"), ("env", &many)],
            "At most 32",
        ),
        (
            &[
                ("name", "bad/again"),
                ("command", "x"),
                ("env", &secret_env),
            ],
            "Use a name",
        ),
    ];
    for (fields, reason) in cases {
        let (status, html) = add(&relay, &browser, fields).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{fields:?}");
        assert!(html.contains(reason), "{fields:?}: {html}");
        assert!(!html.contains(SECRET), "a refused form echoed a secret");
    }
    assert!(mcp_page(&relay, &browser)
        .await
        .contains("No MCP servers yet"));
}

#[tokio::test]
async fn an_mcp_form_without_csrf_token_is_refused() {
    let relay = InProcessRelay::start(|_| {}).await.unwrap();
    let browser = signed_up(&relay, "c@example.com").await;
    let zeros = "0".repeat(64);
    for form in [
        vec![("name", "x"), ("command", "y")],
        vec![("name", "x"), ("command", "y"), ("csrf", zeros.as_str())],
    ] {
        let r = browser
            .post(relay.at("/settings/mcp"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    // A page from another site, with a valid token, is refused by its Origin.
    let csrf = csrf_of(&mcp_page(&relay, &browser).await);
    let r = browser
        .post(relay.at("/settings/mcp"))
        .header("origin", "https://evil.example")
        .form(&[("name", "x"), ("command", "y"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(mcp_page(&relay, &browser)
        .await
        .contains("No MCP servers yet"));
}

#[tokio::test]
async fn another_users_mcp_server_is_out_of_reach() {
    let relay = InProcessRelay::start(|_| {}).await.unwrap();
    let owner = signed_up(&relay, "owner@example.com").await;
    let (status, _) = add(
        &relay,
        &owner,
        &[
            ("name", "mine"),
            ("command", "x"),
            ("env", "TOKEN=t0ps3cret"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let id = server_ids(&mcp_page(&relay, &owner).await).remove(0);

    let other = signed_up(&relay, "other@example.com").await;
    let html = mcp_page(&relay, &other).await;
    assert!(!html.contains("mine") && !html.contains(&id));
    let csrf = csrf_of(&html);
    let r = other
        .post(relay.at(&format!("/settings/mcp/{id}/delete")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    // Same answer as for a missing id; the owner's server is untouched.
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(server_ids(&mcp_page(&relay, &owner).await), vec![id]);
}

#[tokio::test]
async fn mcp_settings_need_a_signed_in_user() {
    let relay = InProcessRelay::start(|_| {}).await.unwrap();
    let anonymous = relay.client().unwrap();
    let r = anonymous
        .get(relay.at("/settings/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "/login?next=%2Fsettings%2Fmcp"
    );
}
