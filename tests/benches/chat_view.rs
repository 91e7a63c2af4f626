//! How long a 10,000-message chat session takes to open in the workbench's Chat view (issue 13:
//! ≤ 200 ms), in Debian's headless Chromium through a real relay and the agent's tunnel, against a
//! 10-message session opened in the same run (the baseline: what the page costs whatever the size).
//!
//! The agent is in this process: the API and the chat routes under the audit layer over a store
//! seeded with both sessions, served over the tunnel it dials. In the page, the time runs from the
//! click on the session in the list to the first animation frame that shows its latest message
//! (the view loads the latest page, 50 messages, and "Load older" for the rest); the page's own
//! resource timing gives the fetch's share.
//!
//! Run: `make bench-chat` (needs the session of `scripts/with-session.sh`: no keychain is
//! used, but Chromium wants a D-Bus session). `KATACHI_BENCH_CHAT_VIEW_ROUNDS` (10),
//! `KATACHI_BENCH_CHAT_VIEW_MESSAGES` (10000).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_core::ai::approvals::Approvals;
use katachi_core::ai::backends::FixedBackends;
use katachi_core::ai::fixed_agent::FixedAgent;
use katachi_core::ai::{ProviderConfig, ProviderKind, ProviderOptions};
use katachi_core::api::FixedWorkspaces;
use katachi_core::fingerprint::Fingerprint;
use katachi_core::store::{AuditKey, NewMessage, Role, Store};
use katachi_core::vault::{DerivedKey, Purpose};
use katachi_core::{MachineKey, SecretBytes};
use katachi_e2e::agent_tunnel;
use katachi_e2e::approval::{approve_device, sign_up_verified};
use katachi_e2e::chromium::Browser;
use katachi_e2e::relay::InProcessRelay;
use serde_json::Value;

const PAGE: Duration = Duration::from_secs(30);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn store_key() -> DerivedKey {
    DerivedKey::from_bytes([9; 32], Purpose::STORE)
}

fn audit_key() -> AuditKey {
    let fp = Fingerprint::from_components([("machine_id", vec![9])]).unwrap();
    AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![9; 32]), &fp))
}

/// A session of `count` messages (user, assistant with a tool call, the tool's result, …) ending
/// with an assistant's answer; its id and the last message's id.
fn seed(store: &Store, title: &str, count: usize) -> (i64, i64) {
    let chat = store.chat();
    let session = chat.create_session(Some(1), title).unwrap().id;
    let question = "Why does the parser reject an empty line at the end of the file? ".repeat(2);
    let answer = "It reads one more token than it checks; the fix is in `parse_line`. ".repeat(3);
    let call =
        r#"{"tool_calls":[{"id":"c1","name":"read_file","arguments":{"path":"src/parser.rs"}}]}"#;
    let result = format!(
        "{{\"path\":\"src/parser.rs\",\"content\":\"{}\"}}",
        "fn parse_line(l: &str) -> Option<Token> { l.split_whitespace().next().map(Token::new) }\\n".repeat(8)
    );
    let result_payload = r#"{"call_id":"c1","name":"read_file","is_error":false}"#;
    let mut last = 0;
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        let ids = chat
            .append_messages(
                session,
                (0..n).map(|i| {
                    let k = count - left + i;
                    if k + 1 == count || k % 4 == 3 {
                        NewMessage {
                            role: Role::Assistant,
                            content: &answer,
                            payload: None,
                        }
                    } else {
                        match k % 4 {
                            0 => NewMessage {
                                role: Role::User,
                                content: &question,
                                payload: None,
                            },
                            1 => NewMessage {
                                role: Role::Assistant,
                                content: "Let me read the parser.",
                                payload: Some(call),
                            },
                            _ => NewMessage {
                                role: Role::Tool,
                                content: &result,
                                payload: Some(result_payload),
                            },
                        }
                    }
                }),
            )
            .unwrap();
        last = *ids.last().unwrap();
        left -= n;
    }
    (session, last)
}

/// Clicks session `sid` in the list and waits for the frame that shows message `last`; the
/// page's figures: `[click → shown ms, fetch ms, messages in the log]`.
async fn open(browser: &Browser, sid: i64, last: i64) -> Value {
    let start = format!(
        "window.__shown = null; performance.clearResourceTimings(); \
         const t0 = performance.now(); \
         const frame = () => {{ \
           if (document.querySelector('#chat-log [data-id=\"{last}\"]')) {{ \
             window.__shown = [performance.now() - t0, \
               (performance.getEntriesByType('resource').find(e => e.name.includes('/chat/sessions/{sid}?')) || {{duration: -1}}).duration, \
               document.querySelectorAll('#chat-log .wb-msg').length]; \
           }} else {{ requestAnimationFrame(frame); }} \
         }}; \
         document.querySelector('.wb-chat-session[data-session-id=\"{sid}\"]').click(); \
         requestAnimationFrame(frame); return true;"
    );
    browser.execute(&start).await.unwrap();
    let deadline = Instant::now() + PAGE;
    loop {
        let shown = browser.execute("return window.__shown;").await.unwrap();
        if !shown.is_null() {
            return shown;
        }
        assert!(Instant::now() < deadline, "session {sid} never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = env_or("KATACHI_BENCH_CHAT_VIEW_ROUNDS", 10);
    let count = env_or("KATACHI_BENCH_CHAT_VIEW_MESSAGES", 10_000);
    let tmp = tempfile::tempdir().unwrap();
    let ws = std::fs::canonicalize(tmp.path()).unwrap().join("project");
    std::fs::create_dir(&ws).unwrap();
    let db = tmp.path().join("agent.db");
    let store = Store::open(&db, &store_key()).unwrap();
    store.workspaces().add(&ws, &[]).unwrap();
    let seeding = Instant::now();
    let small = seed(&store, "small", 10);
    let large = seed(&store, "large", count);
    println!(
        "seeded sessions of 10 and {count} messages in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    drop(store);

    let relay = InProcessRelay::start(|_| {}).await.unwrap();
    let browser = Browser::launch().await.unwrap();
    sign_up_verified(
        &browser,
        &relay,
        "bench@example.com",
        "correct horse battery staple",
        PAGE,
    )
    .await
    .unwrap();
    let agent = approve_device(&browser, &relay, "bench-box", PAGE)
        .await
        .unwrap();

    let open_db = db.clone();
    let served = FixedAgent::start(
        move || Store::open(&open_db, &store_key()),
        &audit_key,
        Arc::new(FixedWorkspaces::new([&ws]).unwrap()),
        Approvals::default(),
        |tools| {
            FixedBackends::new(
                ProviderConfig::default_for(ProviderKind::OpenAi),
                None,
                ProviderOptions::default(),
                tools,
            )
        },
    )
    .router;
    let _tunnel = agent_tunnel::dial_and_serve(&relay, &agent, served).unwrap();
    let deadline = Instant::now() + PAGE;
    while !relay.state().tunnels.is_online(&agent.agent_id) {
        assert!(Instant::now() < deadline, "the tunnel never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    browser
        .goto(&relay.at(&format!("/agents/{}", agent.agent_id)))
        .await
        .unwrap();
    let deadline = Instant::now() + PAGE;
    while browser
        .execute("return document.getElementById('workspace-picker').disabled;")
        .await
        .unwrap()
        != false
    {
        assert!(Instant::now() < deadline, "the workspace list never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.click("#tab-chat").await.unwrap();
    browser
        .wait_for(
            &format!(".wb-chat-session[data-session-id=\"{}\"]", large.0),
            PAGE,
        )
        .await
        .unwrap();

    println!(
        "\n== opening a chat session in the Chat view (Chromium, relay + tunnel), {rounds} alternating rounds =="
    );
    let (mut small_ms, mut large_ms, mut large_fetch) = (Vec::new(), Vec::new(), Vec::new());
    let mut shown = 0;
    for round in 0..=rounds {
        // round 0 warms the page, the connection and the agent's store
        let s = open(&browser, small.0, small.1).await;
        let l = open(&browser, large.0, large.1).await;
        if round > 0 {
            small_ms.push(s[0].as_f64().unwrap());
            large_ms.push(l[0].as_f64().unwrap());
            large_fetch.push(l[1].as_f64().unwrap());
            shown = l[2].as_u64().unwrap();
        }
    }
    let small_p50 = median(&mut small_ms);
    let large_p50 = median(&mut large_ms);
    println!(
        "10 messages:        click → shown p50 {small_p50:.1} ms (max {:.1})",
        small_ms.last().unwrap()
    );
    println!(
        "{count} messages: click → shown p50 {large_p50:.1} ms (max {:.1}), of which the fetch p50 {:.1} ms; {shown} messages in the log",
        large_ms.last().unwrap(),
        median(&mut large_fetch)
    );
    println!(
        "a {count}-message session opens in {large_p50:.1} ms ({:.2}× a 10-message one); target ≤ 200 ms: {}",
        large_p50 / small_p50.max(0.001),
        if large_p50 <= 200.0 { "met" } else { "NOT met" }
    );
    browser.close().await.unwrap();
}
