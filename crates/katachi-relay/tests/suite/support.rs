//! A relay on 127.0.0.1:0 in this process, a pinned HTTPS client, and helpers that play the browser
//! (sign-up) and the agent (device flow, signed calls).

use std::path::PathBuf;

use katachi_proto::signing::{
    sign, SignedParts, HEADER_AGENT_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use katachi_relay::{Relay, RelayConfig};
use reqwest::{Client, Response};
use serde_json::Value;
use tokio::net::TcpListener;

pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestRelay {
    pub url: String,
    /// Where it listens (the URL may name a proxy in front of it).
    pub addr: std::net::SocketAddr,
    pub ca: PathBuf,
    /// The metrics listener's address, when the config asked for one (`metrics_listen`).
    pub metrics: Option<std::net::SocketAddr>,
    /// The database it uses when not its own SQLite file (a second instance shares it).
    pub database_url: Option<String>,
    /// The relay's shared state (None for an external relay).
    pub state: Option<katachi_relay::AppState>,
    /// An external relay's data dir (its SQLite database).
    external_data: Option<PathBuf>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _tmp: tempfile::TempDir,
}

/// The PostgreSQL URL `make test` provides; a fresh database per caller.
pub async fn fresh_postgres_database() -> String {
    let base = std::env::var("KATACHI_TEST_POSTGRES_URL")
        .expect("KATACHI_TEST_POSTGRES_URL is not set: run the tests with `make test` or `scripts/with-postgres.sh cargo test`");
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    let name = format!("katachi_test_{}", hex::encode(rand::random::<[u8; 6]>()));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

impl TestRelay {
    pub async fn start() -> Self {
        Self::start_with(Backend::Sqlite, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut RelayConfig)) -> Self {
        Self::start_on(([127, 0, 0, 1], 0).into(), backend, tweak).await
    }

    /// [`Self::start_with`] listening on `addr` (a namespace's veth address in the fault tests).
    pub async fn start_on(
        addr: std::net::SocketAddr,
        backend: Backend,
        tweak: impl FnOnce(&mut RelayConfig),
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("relay");
        let mut config = RelayConfig::local(data_dir.clone());
        config.device_poll_interval = 1;
        if let Backend::Postgres = backend {
            config.database_url = Some(fresh_postgres_database().await);
        }
        tweak(&mut config);
        let database_url = config.database_url.clone();
        let listener = TcpListener::bind(addr).await.unwrap();
        let relay = Relay::with_listener(listener, config).await.unwrap();
        let url = relay.url().to_owned();
        let metrics = relay.metrics_addr();
        let addr = relay.local_addr();
        // A relay given certificate files generates no CA: the caller's CA is the one to trust.
        let ca = match relay.ca_file() {
            Some(ca) => ca.clone(),
            None => data_dir.join("tls").join("ca.pem"),
        };
        let state = Some(relay.state().clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(relay.serve_until(async {
            let _ = rx.await;
        }));
        Self {
            url,
            addr,
            ca,
            metrics,
            database_url,
            state,
            external_data: None,
            shutdown: Some(tx),
            handle: Some(handle),
            _tmp: tmp,
        }
    }

    /// A second relay instance beside this one (which must run on PostgreSQL): the same database,
    /// master key and certificate, its own listener and memory, as behind a load balancer.
    pub async fn second_instance(&self) -> Self {
        self.second_instance_with(|_| {}).await
    }

    /// [`Self::second_instance`] with `tweak` applied to its configuration.
    pub async fn second_instance_with(&self, tweak: impl FnOnce(&mut RelayConfig)) -> Self {
        let tls = self.ca.parent().unwrap().to_owned();
        let first_data_dir = tls.parent().unwrap().to_owned();
        let database_url = self.database_url.clone();
        assert!(database_url.is_some(), "a second instance needs PostgreSQL");
        let mut second = Self::start_with(Backend::Sqlite, |c| {
            c.database_url = database_url;
            c.master_key_file = Some(first_data_dir.join("master.key"));
            c.tls_files = Some((tls.join("cert.pem"), tls.join("key.pem")));
            tweak(c);
        })
        .await;
        second.ca = self.ca.clone();
        second
    }

    /// A handle on a relay that runs elsewhere (a child process the test manages): the client and
    /// helpers work; stopping and dropping leave it alone.
    pub fn external(url: String, ca: PathBuf, data_dir: PathBuf) -> Self {
        let parsed = url::Url::parse(&url).unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], parsed.port().unwrap()));
        Self {
            url,
            addr,
            ca,
            metrics: None,
            database_url: None,
            state: None,
            external_data: Some(data_dir),
            shutdown: None,
            handle: None,
            _tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// A browser-like client: trusts only the relay's CA, TLS 1.3, keeps cookies, no redirects.
    pub fn client(&self) -> Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .min_tls_version(reqwest::tls::Version::TLS_1_3)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The port the relay listens on.
    pub fn port(&self) -> u16 {
        url::Url::parse(&self.url).unwrap().port().unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The hidden CSRF field of a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in: {html}"))
        + marker.len();
    html[start..start + 64].to_owned()
}

/// The body of `GET url` as text (pages, for their CSRF field and content).
pub async fn page_text(client: &Client, url: impl reqwest::IntoUrl) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Signs up a new user with `client` (keeps the session cookie) and verifies the address as the
/// mailed link would (the link itself is tested in `email_verification`).
pub async fn sign_up(relay: &TestRelay, client: &Client, email: &str) {
    sign_up_unverified(relay, client, email).await;
    verify_email(relay, email).await;
}

/// Marks `email`'s account verified through the store call the verification link makes.
pub async fn verify_email(relay: &TestRelay, email: &str) {
    let opened;
    let store = match (&relay.state, &relay.external_data) {
        (Some(state), _) => &state.store,
        (None, Some(dir)) => {
            opened = katachi_relay::store::Store::connect(relay.database_url.as_deref(), dir)
                .await
                .unwrap();
            &opened
        }
        (None, None) => unreachable!("a relay is in-process or external"),
    };
    let user = store
        .user_by_email(email)
        .await
        .unwrap()
        .expect("signed up");
    store.mark_email_verified(&user.id, now()).await.unwrap();
}

/// Signs up a new user with `client`, leaving the address unverified.
pub async fn sign_up_unverified(relay: &TestRelay, client: &Client, email: &str) {
    let page = page_text(client, relay.at("/signup")).await;
    let csrf = csrf_of(&page);
    let r = client
        .post(relay.at("/signup"))
        .form(&[
            ("email", email),
            ("password", "correct horse battery staple"),
            ("csrf", &csrf),
            ("next", "/agents"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        303,
        "sign-up failed: {}",
        r.text().await.unwrap()
    );
}

/// A client like [`TestRelay::client`] whose connections leave from `source` (another loopback
/// address: a device elsewhere).
pub fn client_from(relay: &TestRelay, source: std::net::IpAddr) -> Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&relay.ca).unwrap()).unwrap();
    Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .local_address(source)
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], relay.port())),
        )
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn request_device_code(relay: &TestRelay, client: &Client) -> Value {
    let r = client
        .post(relay.at("/oauth/device/code"))
        .form(&[
            ("client_id", "katachi-agent"),
            ("device_name", "build-box"),
            ("device_os", "Debian 12"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Opens the agent's link and approves or denies, typing the code as the device shows it.
pub async fn decide(
    relay: &TestRelay,
    browser: &Client,
    user_code: &str,
    action: &str,
) -> Response {
    decide_typing(relay, browser, user_code, action, Some(user_code)).await
}

/// Opens the agent's link and posts `action` with `typed` in the confirmation field (`None`: the
/// field left out, as a one-click post would).
pub async fn decide_typing(
    relay: &TestRelay,
    browser: &Client,
    user_code: &str,
    action: &str,
    typed: Option<&str>,
) -> Response {
    let page = page_text(browser, relay.at(&format!("/device?user_code={user_code}"))).await;
    let csrf = csrf_of(&page);
    let mut form = vec![
        ("user_code", user_code),
        ("action", action),
        ("csrf", &csrf),
    ];
    if let Some(t) = typed {
        form.push(("confirm_code", t));
    }
    browser
        .post(relay.at("/device"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

pub async fn poll_token(relay: &TestRelay, client: &Client, device_code: &str) -> (u16, Value) {
    let r = client
        .post(relay.at("/oauth/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "katachi-agent"),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// An agent's credentials as the token endpoint returns them.
#[derive(Clone)]
pub struct Agent {
    pub id: String,
    pub token: String,
    pub secret: String,
}

/// A signed-up user (browser client) with one approved, registered agent.
pub async fn registered_agent(relay: &TestRelay, email: &str) -> (Client, Agent) {
    let browser = relay.client();
    sign_up(relay, &browser, email).await;
    let agent_http = relay.client();
    let dc = request_device_code(relay, &agent_http).await;
    let r = decide(
        relay,
        &browser,
        dc["user_code"].as_str().unwrap(),
        "approve",
    )
    .await;
    assert_eq!(r.status(), 200);
    let (status, tok) = poll_token(relay, &agent_http, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{tok}");
    let agent = Agent {
        id: tok["agent_id"].as_str().unwrap().to_owned(),
        token: tok["access_token"].as_str().unwrap().to_owned(),
        secret: tok["signing_secret"].as_str().unwrap().to_owned(),
    };
    (browser, agent)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// What a signed call carries; tests bend one field at a time.
pub struct Signed<'a> {
    pub path: &'a str,
    pub body: Vec<u8>,
    pub timestamp: i64,
    pub nonce: String,
    /// Body actually sent (differs from `body` to simulate tampering).
    pub sent_body: Option<Vec<u8>>,
    pub secret: Option<String>,
}

impl<'a> Signed<'a> {
    pub fn new(path: &'a str, body: &[u8]) -> Self {
        Self {
            path,
            body: body.to_vec(),
            timestamp: now(),
            nonce: nonce(),
            sent_body: None,
            secret: None,
        }
    }
}

pub async fn send_signed(
    relay: &TestRelay,
    client: &Client,
    agent: &Agent,
    s: &Signed<'_>,
) -> (u16, Value, Option<String>) {
    let secret = s.secret.clone().unwrap_or_else(|| agent.secret.clone());
    let sig = sign(
        secret.as_bytes(),
        &SignedParts {
            method: "POST",
            path_and_query: s.path,
            timestamp: s.timestamp,
            nonce: &s.nonce,
            body: &s.body,
        },
    );
    let r = client
        .post(relay.at(s.path))
        .header("authorization", format!("Bearer {}", agent.token))
        .header(HEADER_AGENT_ID, &agent.id)
        .header(HEADER_TIMESTAMP, s.timestamp.to_string())
        .header(HEADER_NONCE, &s.nonce)
        .header(HEADER_SIGNATURE, sig)
        .header("content-type", "application/json")
        .body(s.sent_body.clone().unwrap_or_else(|| s.body.clone()))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let date = r
        .headers()
        .get("date")
        .map(|d| d.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        date,
    )
}

pub async fn heartbeat(relay: &TestRelay, client: &Client, agent: &Agent) -> (u16, Value) {
    let (s, v, _) = send_signed(
        relay,
        client,
        agent,
        &Signed::new(
            "/api/agent/heartbeat",
            br#"{"version":"0.1.0","workspaces":2}"#,
        ),
    )
    .await;
    (s, v)
}

pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}
