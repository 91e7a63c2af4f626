//! A relay running inside the test process on `127.0.0.1:0` (real TLS 1.3 sockets, its own local
//! CA, SQLite in a temp dir), and the agent's side of the protocol over HTTP: device code, token
//! polling and signed calls.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use katachi_proto::signing::{
    sign, SignedParts, HEADER_AGENT_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use katachi_relay::{AppState, Relay, RelayConfig};
use serde_json::Value;
use tokio::net::TcpListener;

/// Which database the relay keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the relay's data dir (the default).
    Sqlite,
    /// A fresh database on the PostgreSQL server named by `KATACHI_TEST_POSTGRES_URL`
    /// (`scripts/with-postgres.sh`, which `make test` uses).
    Postgres,
}

/// A fresh, empty database on the server `KATACHI_TEST_POSTGRES_URL` names; its URL.
///
/// # Errors
/// The variable is unset (run under `scripts/with-postgres.sh`) or the server refuses.
pub async fn fresh_postgres_database() -> anyhow::Result<String> {
    let base = std::env::var("KATACHI_TEST_POSTGRES_URL").context(
        "KATACHI_TEST_POSTGRES_URL is not set: run under scripts/with-postgres.sh (make test does)",
    )?;
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await?;
    let name = format!("katachi_e2e_{}", hex::encode(rand::random::<[u8; 6]>()));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    let mut url = url::Url::parse(&base)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// A relay served on a task of the current tokio runtime; stopped on [`InProcessRelay::stop`] or drop.
pub struct InProcessRelay {
    /// `https://localhost:PORT`.
    url: String,
    /// The local CA the relay generated (what agents pin).
    ca_file: PathBuf,
    /// The relay's data dir (SQLite database, master key, TLS material).
    data_dir: PathBuf,
    /// The relay's shared state, for assertions on the store.
    state: AppState,
    /// Ends `serve_until`.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The serving task.
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Owns the data dir.
    _tmp: tempfile::TempDir,
}

impl InProcessRelay {
    /// Starts a relay with [`RelayConfig::local`] defaults (device poll interval 1 s), adjusted by `tweak`.
    ///
    /// # Errors
    /// Bind, TLS, key or database set-up failures.
    pub async fn start(tweak: impl FnOnce(&mut RelayConfig)) -> anyhow::Result<Self> {
        Self::start_on(Backend::Sqlite, tweak).await
    }

    /// Like [`InProcessRelay::start`], on the given database.
    ///
    /// # Errors
    /// As [`InProcessRelay::start`], and [`fresh_postgres_database`]'s.
    pub async fn start_on(
        backend: Backend,
        tweak: impl FnOnce(&mut RelayConfig),
    ) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("relay");
        let mut config = RelayConfig::local(data_dir.clone());
        config.device_poll_interval = 1;
        if backend == Backend::Postgres {
            config.database_url = Some(fresh_postgres_database().await?);
        }
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let relay = Relay::with_listener(listener, config).await?;
        let url = relay.url().to_owned();
        let ca_file = relay
            .ca_file()
            .context("the relay generated no local CA")?
            .clone();
        let state = relay.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(relay.serve_until(async {
            let _ = rx.await;
        }));
        Ok(Self {
            url,
            ca_file,
            data_dir,
            state,
            shutdown: Some(tx),
            task: Some(task),
            _tmp: tmp,
        })
    }

    /// `https://localhost:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The absolute URL of `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The relay's local CA certificate (PEM).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The relay's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The relay's shared state (store, master key).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Marks the account of `email` verified through the store call its mailed link makes (tests
    /// whose subject is not the mail; the link itself: `relay_browser`'s verification test).
    ///
    /// # Errors
    /// No such account, or store failures.
    pub async fn verify_email(&self, email: &str) -> anyhow::Result<()> {
        let store = &self.state.store;
        let user = store
            .user_by_email(email)
            .await?
            .with_context(|| format!("no account {email}"))?;
        store.mark_email_verified(&user.id, unix_now()).await?;
        Ok(())
    }

    /// A client that trusts only the relay's CA, speaks TLS 1.3, keeps cookies and follows no
    /// redirects (a browser whose every step the test sees).
    ///
    /// # Errors
    /// An unreadable CA file.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        self.client_builder()?
            .cookie_store(true)
            .build()
            .context("building the HTTPS client")
    }

    /// Like [`InProcessRelay::client`], without a cookie store (the test sets cookies by hand).
    ///
    /// # Errors
    /// An unreadable CA file.
    pub fn cookieless_client(&self) -> anyhow::Result<reqwest::Client> {
        self.client_builder()?
            .build()
            .context("building the HTTPS client")
    }

    fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca_file)?)?;
        Ok(reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .min_tls_version(reqwest::tls::Version::TLS_1_3)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30)))
    }

    /// Stops serving and waits (bounded) for in-flight requests.
    ///
    /// # Errors
    /// The relay's own serving error, or a timeout.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .context("the relay did not stop within 20 s")???;
        }
        Ok(())
    }
}

impl Drop for InProcessRelay {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// What the token endpoint hands an approved agent.
#[derive(Debug, Clone)]
pub struct AgentCredentials {
    /// The agent's id.
    pub agent_id: String,
    /// Bearer token.
    pub access_token: String,
    /// HMAC signing secret.
    pub signing_secret: String,
}

/// `POST /oauth/device/code` as the agent does; the JSON answer.
///
/// # Errors
/// A non-200 answer or unreadable JSON.
pub async fn request_device_code(
    relay: &InProcessRelay,
    http: &reqwest::Client,
    device_name: &str,
    device_os: &str,
) -> anyhow::Result<Value> {
    let response = http
        .post(relay.at(katachi_proto::device::DEVICE_CODE_PATH))
        .form(&[
            ("client_id", "katachi-agent"),
            ("device_name", device_name),
            ("device_os", device_os),
        ])
        .send()
        .await?;
    if response.status() != 200 {
        bail!("device code request answered {}", response.status());
    }
    Ok(response.json().await?)
}

/// Polls `POST /oauth/token` every `interval` (as RFC 8628 asks, 5 s longer after each
/// `slow_down`) until the agent gets its credentials, for at most `timeout`.
///
/// # Errors
/// Any answer other than `authorization_pending` or `slow_down` before success, or the timeout.
pub async fn poll_for_credentials(
    relay: &InProcessRelay,
    http: &reqwest::Client,
    device_code: &str,
    interval: Duration,
    timeout: Duration,
) -> anyhow::Result<AgentCredentials> {
    let deadline = Instant::now() + timeout;
    let mut interval = interval;
    loop {
        let response = http
            .post(relay.at(katachi_proto::device::TOKEN_PATH))
            .form(&[
                ("grant_type", katachi_proto::device::DEVICE_CODE_GRANT),
                ("device_code", device_code),
                ("client_id", "katachi-agent"),
            ])
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status == 200 {
            let field = |name: &str| {
                body[name]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("token response without {name}"))
            };
            return Ok(AgentCredentials {
                agent_id: field("agent_id")?,
                access_token: field("access_token")?,
                signing_secret: field("signing_secret")?,
            });
        }
        match body["error"].as_str() {
            Some("authorization_pending") => {}
            // RFC 8628 §3.5: polled too soon (say, right after another poll of the test's own);
            // wait 5 s longer from now on, as an agent must.
            Some("slow_down") => interval += Duration::from_secs(5),
            _ => bail!("token endpoint answered {status}: {body}"),
        }
        if Instant::now() + interval > deadline {
            bail!("no credentials within {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Sends a signed `POST path` with `body` (headers per `katachi_proto::signing`); status and JSON.
///
/// # Errors
/// Transport failures.
pub async fn send_signed(
    relay: &InProcessRelay,
    http: &reqwest::Client,
    agent: &AgentCredentials,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Value)> {
    let timestamp = unix_now();
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let signature = sign(
        agent.signing_secret.as_bytes(),
        &SignedParts {
            method: "POST",
            path_and_query: path,
            timestamp,
            nonce: &nonce,
            body,
        },
    );
    let response = http
        .post(relay.at(path))
        .bearer_auth(&agent.access_token)
        .header(HEADER_AGENT_ID, &agent.agent_id)
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(HEADER_NONCE, nonce)
        .header(HEADER_SIGNATURE, signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A signed heartbeat (version 0.1.0, two workspaces).
///
/// # Errors
/// Transport failures.
pub async fn send_heartbeat(
    relay: &InProcessRelay,
    http: &reqwest::Client,
    agent: &AgentCredentials,
) -> anyhow::Result<(u16, Value)> {
    send_signed(
        relay,
        http,
        agent,
        katachi_proto::agent::HEARTBEAT_PATH,
        br#"{"version":"0.1.0","workspaces":2}"#,
    )
    .await
}
