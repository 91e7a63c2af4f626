//! The tunnel's WebSocket carrier: behind an nginx that passes only WebSocket upgrades (as
//! Cloudflare does) the agent's direct upgrade is refused on the way, it falls back to the
//! WebSocket carrier, says so in its status, keeps to it on redial, and large bodies stream
//! intact both ways; and a WebSocket upgrade gets the same signed-request checks as the direct
//! one before any `101`.

use std::sync::Arc;
use std::time::Duration;

use katachi_core::api::{router, ApiState, FixedWorkspaces};
use katachi_core::tunnel::{
    status_channel, Carrier, NoNetworkChanges, ReconnectOptions, TunnelStatus,
};
use katachi_proto::agent::TUNNEL_PATH;
use katachi_proto::signing::{
    sign, SignedParts, HEADER_AGENT_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use serde_json::Value;
use tokio::sync::watch;

use super::behind_nginx::relay_behind_nginx;
use super::operations::Metrics;
use super::support::{code, nonce, now, registered_agent, Agent, TestRelay};
use super::tunnel::{dialer, get_when_online};

/// Waits (at most 15 s) for a status that `want` accepts; returns it.
async fn status_until(
    updates: &mut watch::Receiver<TunnelStatus>,
    want: impl Fn(&TunnelStatus) -> bool,
) -> TunnelStatus {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let current = updates.borrow_and_update().clone();
            if want(&current) {
                return current;
            }
            updates.changed().await.unwrap();
        }
    })
    .await
    .expect("the tunnel status never got there")
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_websocket_only_proxy_the_agent_falls_back_to_the_websocket_carrier_and_keeps_it()
{
    let (relay, nginx) = relay_behind_nginx(true, true, |c| {
        c.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let (browser, agent) = registered_agent(&relay, "wes@example.com").await;
    let workspace = tempfile::tempdir().unwrap();
    // 8 MiB download: many HTTP/2 flow-control windows, many WebSocket messages.
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(workspace.path().join("big.bin"), &big).unwrap();
    std::fs::write(workspace.path().join("hello.txt"), b"over a WebSocket\n").unwrap();
    let api = router(ApiState::new(Arc::new(
        FixedWorkspaces::new([workspace.path()]).unwrap(),
    )));
    let dialer = Arc::new(dialer(&relay, &agent));
    let (status, mut updates) = status_channel();
    let tunnel = tokio::spawn({
        let dialer = dialer.clone();
        async move {
            let options = ReconnectOptions {
                status,
                network: Box::new(NoNetworkChanges),
            };
            dialer.serve_with_reconnect(api, options).await
        }
    });
    let file = |name: &str| {
        relay.at(&format!(
            "/agents/{}/api/v1/workspaces/1/file?path={name}",
            agent.id
        ))
    };

    // Connected, over the WebSocket carrier, and the status says so.
    let up = status_until(&mut updates, |s| {
        matches!(s, TunnelStatus::Connected { .. })
    })
    .await;
    assert!(
        matches!(
            up,
            TunnelStatus::Connected {
                carrier: Carrier::WebSocket,
                ..
            }
        ),
        "{up:?}"
    );
    assert!(
        up.describe(0).ends_with("over the WebSocket carrier"),
        "{up:?}"
    );
    assert_eq!(dialer.preferred_carrier(), Carrier::WebSocket);
    let hello = (200, "over a WebSocket\n".to_owned());
    assert_eq!(get_when_online(&browser, &file("hello.txt")).await, hello);
    let r = browser.get(file("big.bin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.unwrap() == big,
        "the download arrived changed"
    );

    // A 3 MiB upload streams the other way.
    let upload: Vec<u8> = (0..3u32 << 20).map(|i| (i % 241) as u8).collect();
    let put = relay.at(&format!(
        "/agents/{}/api/v1/workspaces/1/file?path=up.bin&expected=absent",
        agent.id
    ));
    let r = browser
        .put(&put)
        .header("origin", relay.url.as_str())
        .header("content-type", "application/octet-stream")
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert!(std::fs::read(workspace.path().join("up.bin")).unwrap() == upload);

    // The relay cuts the tunnel; the agent redials straight over the WebSocket carrier: one
    // refused direct upgrade in nginx's log in all, and the first tunnel's WebSocket 101.
    assert!(relay.state.as_ref().unwrap().tunnels.close(&agent.id));
    status_until(&mut updates, |s| {
        !matches!(s, TunnelStatus::Connected { .. })
    })
    .await;
    let again = status_until(&mut updates, |s| {
        matches!(s, TunnelStatus::Connected { .. })
    })
    .await;
    assert!(
        matches!(
            again,
            TunnelStatus::Connected {
                carrier: Carrier::WebSocket,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(get_when_online(&browser, &file("hello.txt")).await, hello);
    let r = browser.get(file("big.bin")).send().await.unwrap();
    assert!(
        r.bytes().await.unwrap() == big,
        "the download arrived changed"
    );
    let mut log = String::new();
    for _ in 0..100 {
        log = nginx.access_log();
        if count(&log, "\"GET /api/agent/tunnel HTTP/1.1\" 101") >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(&log, "\"GET /api/agent/tunnel HTTP/1.1\" 426"),
        1,
        "{log}"
    );
    assert_eq!(
        count(&log, "\"GET /api/agent/tunnel HTTP/1.1\" 101"),
        1,
        "{log}"
    );
    // The relay's metrics tell the operator which carrier the tunnels came over.
    let m = Metrics::scrape(&relay).await;
    let opened = |carrier| {
        m.value(
            "katachi_relay_tunnels_opened_total",
            &[("carrier", carrier)],
        )
    };
    assert_eq!((opened("websocket"), opened("direct")), (2.0, 0.0));
    tunnel.abort();
}

/// A signed `GET /api/agent/tunnel` asking for the WebSocket carrier, over HTTP/1.1 straight to
/// the relay, signed with `secret`, offering the WebSocket subprotocol `protocol`.
async fn websocket_upgrade(
    relay: &TestRelay,
    agent: &Agent,
    secret: &str,
    protocol: &str,
) -> reqwest::Response {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&relay.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .http1_only()
        .build()
        .unwrap();
    let (timestamp, nonce) = (now(), nonce());
    let signature = sign(
        secret.as_bytes(),
        &SignedParts {
            method: "GET",
            path_and_query: TUNNEL_PATH,
            timestamp,
            nonce: &nonce,
            body: b"",
        },
    );
    let request = client
        .get(relay.at(TUNNEL_PATH))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", protocol)
        .header("authorization", format!("Bearer {}", agent.token))
        .header(HEADER_AGENT_ID, &agent.id)
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(HEADER_NONCE, nonce)
        .header(HEADER_SIGNATURE, signature);
    request.send().await.unwrap()
}

async fn refusal(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
    (status, code(&v).to_owned())
}

#[tokio::test]
async fn a_websocket_upgrade_gets_the_same_signed_checks_before_any_101() {
    let relay = TestRelay::start().await;
    let (_browser, agent) = registered_agent(&relay, "sig@example.com").await;
    let wrong = "x".repeat(agent.secret.len());

    let r = websocket_upgrade(&relay, &agent, &wrong, "katachi-tunnel.v1").await;
    assert_eq!(refusal(r).await, (401, "signature.bad_signature".into()));
    // Unsigned (no signature headers at all).
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&relay.ca).unwrap()).unwrap();
    let plain = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .http1_only()
        .build()
        .unwrap();
    let r = plain
        .get(relay.at(TUNNEL_PATH))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "katachi-tunnel.v1")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(r).await, (400, "signature.missing_header".into()));
    // Without the tunnel's subprotocol: not a tunnel.
    let r = websocket_upgrade(&relay, &agent, &agent.secret, "chat").await;
    assert_eq!(refusal(r).await, (400, "tunnel.websocket_invalid".into()));

    // Correctly signed: 101, the key accepted, the subprotocol picked.
    let r = websocket_upgrade(&relay, &agent, &agent.secret, "katachi-tunnel.v1").await;
    assert_eq!(r.status(), 101);
    assert_eq!(
        r.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(r.headers()["sec-websocket-protocol"], "katachi-tunnel.v1");
}
