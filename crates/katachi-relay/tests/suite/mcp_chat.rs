//! A chat turn whose model calls one of the user's MCP tools: the agent core (real chat service,
//! real provider client against the fake provider, SQLCipher store) lists the tools through this
//! relay's signed call, asks the user's approval, and the relay calls the real MCP server with the
//! stored secret; the result reaches the model, the secret reaches neither the agent nor the
//! provider.

use std::sync::Arc;
use std::time::Duration;

use katachi_core::ai::approvals::Approvals;
use katachi_core::ai::backends::FixedBackends;
use katachi_core::ai::fixed_agent::FixedAgent;
use katachi_core::ai::provider::RetryPolicy;
use katachi_core::ai::{ProviderConfig, ProviderKind, ProviderOptions};
use katachi_core::api::FixedWorkspaces;
use katachi_core::signing::SystemClock;
use katachi_core::store::{AuditKey, Decision, Store};
use katachi_core::vault::{DerivedKey, MachineKey, Purpose};
use katachi_core::{AgentCredentials, Fingerprint, RelayClient, RelayUrl, SecretBytes};
use katachi_testkit::{FakeAnswer, FakeProvider, FakeReply, McpTestServer};
use serde_json::{json, Value};

use super::mcp_calls::add_server;
use super::support::*;

const SECRET: &str = "Bearer sk-chat-mcp-secret-77";

fn store_key() -> DerivedKey {
    DerivedKey::from_bytes([12; 32], Purpose::STORE)
}

fn audit_key() -> AuditKey {
    let fp = Fingerprint::from_components([("machine_id", vec![12])]).unwrap();
    AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![12; 32]), &fp))
}

fn relay_client(relay: &TestRelay, agent: &Agent) -> RelayClient {
    let credentials = AgentCredentials::new(
        RelayUrl::parse(&relay.url).unwrap(),
        agent.id.clone(),
        SecretBytes::new(agent.token.as_bytes().to_vec()),
        SecretBytes::new(agent.secret.as_bytes().to_vec()),
        Some(std::fs::read_to_string(&relay.ca).unwrap()),
    );
    RelayClient::new(credentials, Arc::new(SystemClock)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_calls_an_mcp_tool_through_the_relay_after_approval_and_reads_its_result() {
    let mcp = McpTestServer::start().await.unwrap();
    let relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.mcp.allow_private_addresses = true;
    })
    .await;
    let (browser, agent) = registered_agent(&relay, "chat-mcp@example.com").await;
    add_server(
        &relay,
        &browser,
        "tools",
        "",
        mcp.url(),
        &format!("AUTHORIZATION={SECRET}"),
    )
    .await;

    // the agent's side: one workspace, its store, the audited API, the fake provider
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let ws = base.join("ws");
    let db = base.join("store.db");
    std::fs::create_dir_all(&ws).unwrap();
    let session_id = {
        let store = Store::open(&db, &store_key()).unwrap();
        store.workspaces().add(&ws, &[]).unwrap();
        let workspace = store.workspaces().list().unwrap()[0].id;
        store
            .chat()
            .create_session(Some(workspace), "mcp")
            .unwrap()
            .id
    };
    let fake = FakeProvider::start::<_, FakeReply>(vec![
        FakeAnswer::text(["Asking the server."])
            .tool_call(
                "c1",
                "mcp__tools__echo",
                [json!({"text": "hi from the model"}).to_string()],
            )
            .into(),
        FakeReply::from(FakeAnswer::text(["The server said hi."])),
    ])
    .await
    .unwrap();
    let mut provider = ProviderConfig::default_for(ProviderKind::OpenAi);
    provider.base_url = fake.openai_base_url();
    provider.model = "test-model".to_owned();
    let options = ProviderOptions {
        retry: RetryPolicy {
            max_attempts: 1,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            max_retry_after: Duration::from_secs(1),
        },
        ..ProviderOptions::default()
    };
    let open_db = db.clone();
    let service = FixedAgent::start(
        move || Store::open(&open_db, &store_key()),
        &audit_key,
        Arc::new(FixedWorkspaces::new([&ws]).unwrap()),
        Approvals::default(),
        |tools| {
            FixedBackends::new(
                provider,
                Some(SecretBytes::new(b"sk-provider-key".to_vec())),
                options,
                tools,
            )
            .with_mcp(Arc::new(relay_client(&relay, &agent)))
        },
    )
    .chat;

    let mut turn = service
        .start_turn(
            session_id,
            "Say hi through the MCP server".to_owned(),
            "user-1".to_owned(),
        )
        .await
        .unwrap();
    let mut lines: Vec<Value> = Vec::new();
    let read = async {
        while let Some(event) = turn.events.recv().await {
            let line = serde_json::to_value(&event).unwrap();
            if line["type"] == "approval" {
                let id = line["approval"]["id"].as_str().unwrap().to_owned();
                service.approvals().decide(&id, Decision::Once).unwrap();
            }
            lines.push(line);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the turn ends within 60 s");

    let of = |kind: &str| -> Vec<&Value> { lines.iter().filter(|l| l["type"] == kind).collect() };
    // asked, with the server, the tool and the arguments shown
    let asked = of("approval");
    assert_eq!(asked.len(), 1, "{lines:#?}");
    let approval = &asked[0]["approval"];
    assert_eq!(approval["tool"], "mcp__tools__echo");
    assert_eq!(approval["subject"], "mcp:tools/echo");
    assert_eq!(approval["preview"]["server"], "tools");
    assert_eq!(approval["preview"]["tool"], "echo");
    assert_eq!(
        approval["preview"]["arguments"]["text"],
        "hi from the model"
    );
    // the relay ran the tool with the secret; the result came back to the turn
    let results = of("tool_result");
    assert_eq!(results.len(), 1, "{lines:#?}");
    assert_eq!(results[0]["is_error"], false, "{lines:#?}");
    assert_eq!(
        results[0]["content"]["content"][0]["text"],
        "hi from the model"
    );
    assert_eq!(lines.last().unwrap()["type"], "done", "{lines:#?}");

    // the model was offered the tool, and read its result in the next request
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let offered = requests[0].body["tools"].to_string();
    assert!(offered.contains("mcp__tools__echo"), "{offered}");
    assert!(offered.contains("mcp__tools__whoami"), "{offered}");
    let second = requests[1].body.to_string();
    assert!(second.contains("hi from the model"), "{second}");
    // the secret stayed on the relay: not in what the provider got nor in the turn's lines
    for text in requests
        .iter()
        .map(|r| r.body.to_string())
        .chain(lines.iter().map(Value::to_string))
    {
        assert!(!text.contains("sk-chat-mcp-secret"), "{text}");
    }
}
