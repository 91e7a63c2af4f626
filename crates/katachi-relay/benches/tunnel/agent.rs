//! The agent side and the two client paths: the agent's API router over a temporary workspace,
//! tunnels dialled to the relay, the direct loopback server (the baseline), and the HTTP clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::service::TowerToHyperService;
use katachi_core::api::{router, ApiState, AuditLayer, AuditOptions, FixedWorkspaces};
use katachi_core::fingerprint::Fingerprint;
use katachi_core::signing::{RequestSigner, SystemClock};
use katachi_core::store::{AuditKey, Store};
use katachi_core::tunnel::TunnelDialer;
use katachi_core::vault::{DerivedKey, Purpose};
use katachi_core::MachineKey;
use katachi_core::{AgentCredentials, RelayClient, RelayUrl, SecretBytes};
use katachi_relay::web::session::SESSION_COOKIE;

use crate::relay_process::SeededAgent;

/// A temporary workspace folder and the agent's API router over it (workspace id 1).
pub fn workspace() -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.txt"), b"hello from the bench\n").unwrap();
    let api = router(ApiState::new(Arc::new(
        FixedWorkspaces::new([dir.path()]).unwrap(),
    )));
    (dir, api)
}

/// The agent's API router over the existing workspace `dir` (workspace id 1).
pub fn workspace_router(dir: &std::path::Path) -> Router {
    router(ApiState::new(Arc::new(
        FixedWorkspaces::new([dir]).unwrap(),
    )))
}

/// `api` with the audit layer `katachi start` puts on the tunnel: every call appended to the
/// chained audit log of a SQLCipher store in `dir` (the production path of a tunnelled call).
pub fn audited(api: Router, dir: &std::path::Path, workspace: &std::path::Path) -> Router {
    let db = dir.join("store.db");
    let store_key = || DerivedKey::from_bytes([7; 32], Purpose::STORE);
    drop(Store::open(&db, &store_key()).unwrap());
    let fp = Fingerprint::from_components([("machine_id", vec![7])]).unwrap();
    let key = AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![7; 32]), &fp));
    let layer = AuditLayer::start_with(
        move || Store::open(&db, &store_key()),
        key,
        Some(Arc::new(FixedWorkspaces::new([workspace]).unwrap())),
        AuditOptions::default(),
    );
    api.layer(layer)
}

/// A dialer for `agent` to the relay at `url`, pinning `ca_pem`, as `katachi start` builds it.
pub fn dialer(url: &str, ca_pem: &str, agent: &SeededAgent) -> TunnelDialer {
    let credentials = credentials(url, ca_pem, agent);
    let signer = RequestSigner::new(
        agent.id.clone(),
        SecretBytes::new(agent.secret.as_bytes().to_vec()),
        Arc::new(SystemClock),
        0,
    );
    TunnelDialer::new(&credentials, signer).unwrap()
}

/// What a registered agent holds for `agent` at the relay at `url` (pinning `ca_pem`), as `katachi
/// start` builds it: the client of its signed calls (heartbeats) and a tunnel dialer signing with
/// the same clock offset.
pub fn relay_link(url: &str, ca_pem: &str, agent: &SeededAgent) -> (RelayClient, TunnelDialer) {
    let client = RelayClient::new(credentials(url, ca_pem, agent), Arc::new(SystemClock)).unwrap();
    let dialer =
        TunnelDialer::new(&credentials(url, ca_pem, agent), client.tunnel_signer()).unwrap();
    (client, dialer)
}

/// `agent`'s credentials for the relay at `url`, as the token endpoint issued them.
fn credentials(url: &str, ca_pem: &str, agent: &SeededAgent) -> AgentCredentials {
    AgentCredentials::new(
        RelayUrl::parse(url).unwrap(),
        agent.id.clone(),
        SecretBytes::new(agent.token.as_bytes().to_vec()),
        SecretBytes::new(agent.secret.as_bytes().to_vec()),
        Some(ca_pem.to_owned()),
    )
}

/// The agent on a thread with a single-threaded runtime, as `katachi start` runs it: `api` served
/// directly (the baseline, address returned) and `tunnelled` over a tunnel from `dialer`. The
/// receiver resolves if the tunnel ends.
pub async fn start_agent_thread(
    api: Router,
    dialer: TunnelDialer,
    tunnelled: Router,
) -> (SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (end_tx, end_rx) = tokio::sync::oneshot::channel();
    crate::load::runtime_thread("agent", move |rt| {
        rt.block_on(async move {
            let _ = addr_tx.send(serve_direct(api).await);
            let ended = dialer.dial_and_serve(tunnelled).await;
            let _ = end_tx.send(format!("{ended:?}"));
            std::future::pending::<()>().await;
        });
    });
    (addr_rx.await.unwrap(), end_rx)
}

/// The baseline: `api` served over plain HTTP (HTTP/1.1, or h2c on prior knowledge) on a
/// loopback port of this process, with hyper as the relay uses it. Returns the address.
pub async fn serve_direct(api: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let service = TowerToHyperService::new(api.clone());
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A client of the direct server: plain HTTP/1.1 with keep-alive (the connection pool reuses
/// connections; several open when requests overlap).
pub fn direct_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The `Cookie` header of a signed-in browser with this session.
pub fn session_cookie(session: &str) -> String {
    format!("{SESSION_COOKIE}={session}")
}

/// The browser's path: TLS 1.3 to the relay with only its CA trusted, HTTP/2 by ALPN, and the
/// user's session cookie on every request when `session` is given.
pub fn browser_client(ca_pem: &str, session: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(session) = session {
        headers.insert(
            reqwest::header::COOKIE,
            session_cookie(session).parse().unwrap(),
        );
    }
    let mut builder = reqwest::Client::builder();
    // What-if only: browsers (Chrome) accept 16 KiB DATA frames, reqwest's default too.
    if let Some(size) = std::env::var("KATACHI_BENCH_BROWSER_FRAME")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.http2_max_frame_size(Some(size));
    }
    builder
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .default_headers(headers)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}
