//! A chat service served over real loopback HTTP: the agent API and its chat routes behind the
//! audit layer, real tools (real sandbox), a real provider client talking to the fake provider,
//! and a real SQLCipher store. Only the settings/keychain lookup of the agent's own backends is
//! replaced ([`FixedBackends`]: a fixed provider config and key).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use katachi_core::ai::approvals::Approvals;
use katachi_core::ai::backends::FixedBackends;
use katachi_core::ai::chat::ChatService;
use katachi_core::ai::fixed_agent::FixedAgent;
use katachi_core::ai::provider::RetryPolicy;
use katachi_core::ai::{ProviderConfig, ProviderKind, ProviderOptions};
use katachi_core::api::FixedWorkspaces;
use katachi_core::store::{AuditKey, Store};
use katachi_core::vault::{DerivedKey, MachineKey, Purpose};
use katachi_core::{Fingerprint, SecretBytes};
use katachi_testkit::{FakeProvider, FakeReply};
use serde_json::{json, Value};

/// The API key the tests' provider client sends.
pub const TEST_KEY: &str = "sk-katachi-test-7d3e91f0a2c4";

pub fn store_key() -> DerivedKey {
    DerivedKey::from_bytes([11; 32], Purpose::STORE)
}

pub fn audit_key() -> AuditKey {
    let fp = Fingerprint::from_components([("machine_id", vec![11])]).unwrap();
    AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![11; 32]), &fp))
}

/// One workspace (id 1) with a store, the fake provider, and the served API + chat routes.
pub struct Chat {
    pub tmp: tempfile::TempDir,
    pub ws: PathBuf,
    pub db: PathBuf,
    pub fake: FakeProvider,
    pub base: String,
    pub client: reqwest::Client,
    pub service: ChatService,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Chat {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Chat {
    pub async fn start(script: Vec<FakeReply>) -> Self {
        Self::start_with(script, Approvals::default(), ProviderKind::OpenAi, None).await
    }

    /// A chat whose model has a context window of `context_tokens`.
    pub async fn with_window(script: Vec<FakeReply>, context_tokens: u32) -> Self {
        Self::start_full(
            script,
            Approvals::default(),
            ProviderKind::OpenAi,
            None,
            context_tokens,
        )
        .await
    }

    /// A chat over the store and workspace of `reuse` (a restarted agent), or new ones.
    pub async fn start_with(
        script: Vec<FakeReply>,
        approvals: Approvals,
        kind: ProviderKind,
        reuse: Option<tempfile::TempDir>,
    ) -> Self {
        Self::start_full(script, approvals, kind, reuse, 100_000).await
    }

    async fn start_full(
        script: Vec<FakeReply>,
        approvals: Approvals,
        kind: ProviderKind,
        reuse: Option<tempfile::TempDir>,
        context_tokens: u32,
    ) -> Self {
        let tmp = reuse.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let base_dir = std::fs::canonicalize(tmp.path()).unwrap();
        let ws = base_dir.join("ws");
        let db = base_dir.join("store.db");
        std::fs::create_dir_all(&ws).unwrap();
        {
            let store = Store::open(&db, &store_key()).unwrap();
            if store.workspaces().list().unwrap().is_empty() {
                store.workspaces().add(&ws, &[]).unwrap();
            }
        }
        let fake = FakeProvider::start(script).await.unwrap();
        let mut provider = ProviderConfig::default_for(kind);
        provider.base_url = match kind {
            ProviderKind::OpenAi => fake.openai_base_url(),
            ProviderKind::Anthropic => fake.anthropic_base_url(),
        };
        provider.model = "test-model".to_owned();
        provider.max_tokens = 1024;
        provider.context_tokens = context_tokens;
        let options = ProviderOptions {
            retry: RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
                max_retry_after: Duration::from_secs(2),
            },
            ..ProviderOptions::default()
        };
        let open_db = db.clone();
        let agent = FixedAgent::start(
            move || Store::open(&open_db, &store_key()),
            &audit_key,
            Arc::new(FixedWorkspaces::new([&ws]).unwrap()),
            approvals,
            |tools| {
                FixedBackends::new(
                    provider,
                    Some(SecretBytes::new(TEST_KEY.as_bytes().to_vec())),
                    options,
                    tools,
                )
            },
        );
        let (app, service) = (agent.router, agent.chat);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            tmp,
            ws,
            db,
            fake,
            base,
            client: reqwest::Client::new(),
            service,
            server,
        }
    }

    /// Stops serving and hands back the folder (store, workspace) for a restarted agent.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.server.abort();
        let tmp = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.tmp, tmp)
    }

    pub fn put(&self, rel: &str, text: &str) {
        let p = self.ws.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.ws.join(rel)).unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn new_session(&self) -> i64 {
        let (status, body) = self
            .post(
                "/v1/workspaces/1/chat/sessions",
                json!({"title": "fix the answer"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Runs a turn to its end (60 s at most), answering each approval with `answer(event)`
    /// (`None`: leave it unanswered); returns every line.
    pub async fn turn(
        &self,
        session: i64,
        text: &str,
        mut answer: impl FnMut(&Value) -> Option<&'static str>,
    ) -> Vec<Value> {
        let mut res = self
            .client
            .post(format!("{}/v1/chat/sessions/{session}/turn", self.base))
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{:?}", res.text().await);
        assert_eq!(res.headers()["content-type"], "application/x-ndjson");
        let mut lines = Vec::new();
        let mut pending = Vec::new();
        let read = async {
            while let Some(chunk) = res.chunk().await.unwrap() {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let event: Value = serde_json::from_slice(&line).unwrap();
                    if event["type"] == "approval" {
                        if let Some(decision) = answer(&event) {
                            let id = event["approval"]["id"].as_str().unwrap();
                            let (status, body) = self
                                .post(
                                    &format!("/v1/chat/approvals/{id}"),
                                    json!({"decision": decision}),
                                )
                                .await;
                            assert_eq!(status, 200, "{body}");
                        }
                    }
                    lines.push(event);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("a turn ends within 60 s");
        assert_eq!(
            lines.last().map(|l| l["type"].clone()),
            Some(json!("done")),
            "{lines:#?}"
        );
        lines
    }

    /// The stored messages of a session.
    pub fn messages(&self, session: i64) -> Vec<katachi_core::store::ChatMessage> {
        Store::open(&self.db, &store_key())
            .unwrap()
            .chat()
            .messages(session, 0, 10_000)
            .unwrap()
    }
}

/// The lines of `kind`.
pub fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// The turn's end.
pub fn end_of(lines: &[Value]) -> String {
    lines.last().unwrap()["end"].as_str().unwrap().to_owned()
}
