//! AI chat through relay + tunnel (issue 13), each figure against a baseline in the same run:
//!
//! 1. **First token**: the time from the fake provider handing its first content chunk to its
//!    connection to the browser reading the first `text` line of the turn through relay +
//!    tunnel, against the same chunk read directly from the provider (an SSE client on loopback).
//!    Target: ≤ 20 ms after the provider sends it.
//! 2. **A 10,000-message session opening**: `GET /v1/chat/sessions/{sid}` (the latest page of 200,
//!    what the chat view loads first) through relay + tunnel and directly. Target: ≤ 200 ms.
//! 3. **Agent memory while streaming a long answer** (`chat_memory.rs`): the agent's process's
//!    peak RSS rise, the fake provider in a child process of its own.
//!
//! The agent serves the API and the chat routes under the audit layer with the real tools and a
//! real provider client ([`FixedBackends`]) whose provider is the fake one on loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use katachi_core::ai::approvals::Approvals;
use katachi_core::ai::backends::FixedBackends;
use katachi_core::ai::fixed_agent::FixedAgent;
use katachi_core::ai::{ProviderConfig, ProviderKind, ProviderOptions};
use katachi_core::api::FixedWorkspaces;
use katachi_core::fingerprint::Fingerprint;
use katachi_core::store::{AuditKey, NewMessage, Role, Store};
use katachi_core::vault::{DerivedKey, Purpose};
use katachi_core::{MachineKey, SecretBytes};
use katachi_testkit::{FakeAnswer, FakeProvider};

use crate::load::median;
use crate::{agent, relay_process};

fn store_key() -> DerivedKey {
    DerivedKey::from_bytes([5; 32], Purpose::STORE)
}

/// Reads `res` until a chunk holds `marker`; the instant it arrived.
async fn first_with(res: &mut reqwest::Response, marker: &str) -> Instant {
    let mut seen = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        let at = Instant::now();
        seen.extend_from_slice(&chunk);
        if String::from_utf8_lossy(&seen).contains(marker) {
            return at;
        }
    }
    panic!(
        "the stream ended without {marker}: {}",
        String::from_utf8_lossy(&seen)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The agent's routes (API and chat under the audit layer) over workspace `ws` and a store at
/// `db` (keys derived from `seed`), whose one model is `bench-model` at `base_url`.
pub fn bench_agent(ws: &Path, db: &Path, seed: u8, base_url: url::Url) -> Router {
    let key = move || DerivedKey::from_bytes([seed; 32], Purpose::STORE);
    Store::open(db, &key())
        .unwrap()
        .workspaces()
        .add(ws, &[])
        .unwrap();
    let fp = Fingerprint::from_components([("machine_id", vec![seed])]).unwrap();
    let audit_key =
        || AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![seed; 32]), &fp));
    let mut config = ProviderConfig::default_for(ProviderKind::OpenAi);
    config.base_url = base_url;
    config.model = "bench-model".to_owned();
    let open_db = db.to_path_buf();
    FixedAgent::start(
        move || Store::open(&open_db, &key()),
        &audit_key,
        Arc::new(FixedWorkspaces::new([ws]).unwrap()),
        Approvals::default(),
        |tools| FixedBackends::new(config, None, ProviderOptions::default(), tools),
    )
    .router
}

pub async fn run(rounds: usize, history: usize, long_kib: usize) {
    let tmp = tempfile::tempdir().unwrap();
    // user 0 for the first token and the long session, user 1 for the memory runs
    let seeded = relay_process::seed(&tmp.path().join("relay"), 2).await;
    let relay = relay_process::RelayProcess::start(&seeded).await;
    let user = seeded.users[0].clone();
    let ws = std::fs::canonicalize(tmp.path()).unwrap().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("AGENTS.md"), "Answer briefly.\n").unwrap();
    let db = tmp.path().join("agent.db");
    let fake = FakeProvider::start(Vec::<katachi_testkit::FakeReply>::new())
        .await
        .unwrap();
    let served = bench_agent(&ws, &db, 5, fake.openai_base_url());
    let dialer = agent::dialer(&relay.url, &seeded.ca_pem, &user.agent);
    let (direct_addr, mut tunnel) = agent::start_agent_thread(served.clone(), dialer, served).await;
    tokio::select! {
        () = relay.wait_for_tunnels(1, Duration::from_secs(30)) => {}
        ended = &mut tunnel => panic!("the tunnel ended before it opened: {ended:?}"),
    }
    let browser = agent::browser_client(&seeded.ca_pem, Some(&user.session));
    let direct = agent::direct_client();
    let via_relay = |path: &str| format!("{}/agents/{}/api{path}", relay.url, user.agent.id);
    let post_relay = |path: &str, body: serde_json::Value| {
        browser
            .post(via_relay(path))
            .header("origin", &relay.url)
            .json(&body)
            .send()
    };
    let session: serde_json::Value = post_relay(
        "/v1/workspaces/1/chat/sessions",
        serde_json::json!({"title": "bench"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let sid = session["id"].as_i64().expect("a session was created");

    println!("\n== first token: provider → browser, {rounds} alternating turns each way ==");
    let provider_url = format!(
        "{}/chat/completions",
        fake.openai_base_url().as_str().trim_end_matches('/')
    );
    let (mut d, mut t) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        // round 0 warms both paths (connections, the store, the page cache)
        fake.push(FakeAnswer::text(["first-token"]));
        let before = fake.content_sent_times().len();
        let mut res = direct
            .post(&provider_url)
            .json(&serde_json::json!({
                "model": "bench-model", "stream": true,
                "messages": [{"role": "user", "content": "hi"}],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "the fake provider at {provider_url}");
        let got = first_with(&mut res, "first-token").await;
        let sent = fake.content_sent_times()[before];
        while res.chunk().await.unwrap().is_some() {}
        if round > 0 {
            d.push(ms(got.saturating_duration_since(sent)));
        }

        fake.push(FakeAnswer::text(["first-token"]));
        let before = fake.content_sent_times().len();
        let mut res = post_relay(
            &format!("/v1/chat/sessions/{sid}/turn"),
            serde_json::json!({"text": "hi"}),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200);
        let got = first_with(&mut res, "\"type\":\"text\"").await;
        let sent = fake.content_sent_times()[before];
        while res.chunk().await.unwrap().is_some() {}
        if round > 0 {
            t.push(ms(got.saturating_duration_since(sent)));
        }
    }
    let line = |name: &str, v: &mut Vec<f64>| {
        println!(
            "{name:<32} p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
            quantile(v, 0.5),
            quantile(v, 0.9),
            quantile(v, 1.0)
        );
    };
    line("provider → SSE client (direct)", &mut d);
    line("provider → agent → relay → browser", &mut t);
    let p50 = quantile(&mut t, 0.5);
    println!(
        "first token in the browser: p50 {p50:.2} ms after the provider sent it (direct read: {:.2} ms); target ≤ 20 ms: {}",
        quantile(&mut d, 0.5),
        if p50 <= 20.0 { "met" } else { "NOT met" }
    );

    println!(
        "\n== a {history}-message session opening (latest page of 200), 20 alternating loads =="
    );
    let big = Store::open(&db, &store_key())
        .unwrap()
        .chat()
        .create_session(Some(1), "long")
        .unwrap()
        .id;
    {
        let store = Store::open(&db, &store_key()).unwrap();
        let text = "x".repeat(180);
        let tool = format!(
            "{{\"path\":\"src/lib.rs\",\"content\":\"{}\"}}",
            "y".repeat(400)
        );
        let payload = r#"{"call_id":"c","name":"read_file"}"#;
        for chunk in 0..history.div_ceil(1000) {
            let n = (history - chunk * 1000).min(1000);
            store
                .chat()
                .append_messages(
                    big,
                    (0..n).map(|i| match i % 3 {
                        0 => NewMessage {
                            role: Role::User,
                            content: &text,
                            payload: None,
                        },
                        1 => NewMessage {
                            role: Role::Assistant,
                            content: &text,
                            payload: None,
                        },
                        _ => NewMessage {
                            role: Role::Tool,
                            content: &tool,
                            payload: Some(payload),
                        },
                    }),
                )
                .unwrap();
        }
    }
    let page = format!("/v1/chat/sessions/{big}?limit=200");
    let (mut d, mut t) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for round in 0..=20 {
        let start = Instant::now();
        let body = direct
            .get(format!("http://{direct_addr}{page}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let direct_ms = ms(start.elapsed());
        let start = Instant::now();
        let relayed = browser
            .get(via_relay(&page))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let relay_ms = ms(start.elapsed());
        assert_eq!(body.len(), relayed.len());
        bytes = body.len();
        if round > 0 {
            d.push(direct_ms);
            t.push(relay_ms);
        }
    }
    line("direct", &mut d);
    line("relay + tunnel", &mut t);
    let p50 = median(&mut t);
    println!(
        "opening a {history}-message session: {p50:.1} ms for its latest 200 messages ({} KiB) through relay + tunnel; target ≤ 200 ms: {}",
        bytes / 1024,
        if p50 <= 200.0 { "met" } else { "NOT met" }
    );

    crate::chat_memory::run(
        &relay,
        &seeded,
        &seeded.users[1],
        &tmp.path().join("memory"),
        long_kib,
    )
    .await;
}
