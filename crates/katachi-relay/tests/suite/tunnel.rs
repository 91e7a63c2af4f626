//! The tunnel end to end: a real agent tunnel (katachi-core) dials the in-process relay, and a
//! signed-in browser reads a workspace file through `/agents/{id}/api/...`.

use std::sync::Arc;
use std::time::Duration;

use katachi_core::api::{router, ApiState, FixedWorkspaces};
use katachi_core::signing::{RequestSigner, SystemClock};
use katachi_core::tunnel::{TunnelDialer, TunnelError};
use katachi_core::{AgentCredentials, RelayUrl, SecretBytes};
use reqwest::Client;
use serde_json::Value;

use super::support::{code, registered_agent, sign_up, Agent, TestRelay};

pub(super) fn dialer(relay: &TestRelay, agent: &Agent) -> TunnelDialer {
    let credentials = AgentCredentials::new(
        RelayUrl::parse(&relay.url).unwrap(),
        agent.id.clone(),
        SecretBytes::new(agent.token.as_bytes().to_vec()),
        SecretBytes::new(agent.secret.as_bytes().to_vec()),
        Some(std::fs::read_to_string(&relay.ca).unwrap()),
    );
    let signer = RequestSigner::new(
        agent.id.clone(),
        SecretBytes::new(agent.secret.as_bytes().to_vec()),
        Arc::new(SystemClock),
        0,
    );
    TunnelDialer::new(&credentials, signer).unwrap()
}

pub(super) async fn get(client: &Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls `url` until it answers something other than 503 (the tunnel registers just after `101`).
pub(super) async fn get_when_online(client: &Client, url: &str) -> (u16, String) {
    for _ in 0..100 {
        let (status, body) = get(client, url).await;
        if status != 503 {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the agent never came online");
}

#[tokio::test]
async fn a_browser_reads_a_file_through_the_agents_tunnel() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "alice@example.com").await;

    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(
        workspace.path().join("hello.txt"),
        b"hello through the tunnel\n",
    )
    .unwrap();
    let api = router(ApiState::new(Arc::new(
        FixedWorkspaces::new([workspace.path()]).unwrap(),
    )));

    let file_url = relay.at(&format!(
        "/agents/{}/api/v1/workspaces/1/file?path=hello.txt",
        agent.id
    ));

    // Not connected yet: offline.
    let (status, body) = get(&browser, &file_url).await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code(&v), "agent.offline");

    let dialer = dialer(&relay, &agent);
    let tunnel = tokio::spawn(async move { dialer.dial_and_serve(api).await });

    let (status, body) = get_when_online(&browser, &file_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "hello through the tunnel\n");

    // A Range read: the header crosses the tunnel, and so does the 206.
    let r = browser
        .get(&file_url)
        .header("range", "bytes=0-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.unwrap(), "hello");

    // A 2 MiB write streams through (over the relay's own 1 MiB cap for its forms and agent calls).
    let big = vec![b'k'; 2 << 20];
    let put_url = relay.at(&format!(
        "/agents/{}/api/v1/workspaces/1/file?path=big.bin&expected=absent",
        agent.id
    ));
    // Without our Origin (a cross-site request riding on the cookie): refused at the relay.
    let r = browser.put(&put_url).body("x").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = browser
        .put(&put_url)
        .header("origin", relay.url.as_str())
        .header("content-type", "application/octet-stream")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(
        (200..300).contains(&status),
        "{status}: {}",
        r.text().await.unwrap()
    );
    assert_eq!(
        std::fs::read(workspace.path().join("big.bin")).unwrap(),
        big
    );

    // The agent's own API errors come back as they are.
    let (status, body) = get(
        &browser,
        &relay.at(&format!("/agents/{}/api/v1/nope", agent.id)),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // Another user: the same answer as for an unknown agent.
    let bob = relay.client();
    sign_up(&relay, &bob, "bob@example.com").await;
    let (status, body) = get(&bob, &file_url).await;
    assert_eq!(status, 404, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code(&v), "agent.not_found");
    let (status, _) = get(&bob, &relay.at("/agents/no-such-agent/api/v1/status")).await;
    assert_eq!(status, 404);

    // No session: refused.
    let (status, _) = get(&relay.client(), &file_url).await;
    assert_eq!(status, 401);

    // The agent goes away: offline again.
    tunnel.abort();
    let _ = tunnel.await;
    let mut offline = false;
    for _ in 0..100 {
        let (status, body) = get(&browser, &file_url).await;
        if status == 503 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(code(&v), "agent.offline");
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offline, "the relay still routes to an aborted agent");
}

#[tokio::test]
async fn a_tunnel_with_a_wrong_secret_is_refused() {
    let relay = TestRelay::start().await;
    let (_browser, mut agent) = registered_agent(&relay, "carol@example.com").await;
    agent.secret = "x".repeat(agent.secret.len());
    let workspace = tempfile::tempdir().unwrap();
    let api = router(ApiState::new(Arc::new(
        FixedWorkspaces::new([workspace.path()]).unwrap(),
    )));
    let err = dialer(&relay, &agent)
        .dial_and_serve(api)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TunnelError::Refused { status: 401, code: Some(code) } if code.as_str() == "signature.bad_signature"),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

/// The agent's side of the tunnel with TLS 1.2 only: refused before any HTTP (and so before any
/// signed upgrade) is exchanged; the same agent over TLS 1.3 gets its tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_tunnel_upgrade_is_refused_at_the_handshake() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};

    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "hal@example.com").await;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&relay.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // As the agent's dialer asks: HTTP/1.1 for the upgrade.
    tls12.alpn_protocols = vec![b"http/1.1".to_vec()];
    let port = url::Url::parse(&relay.url).unwrap().port().unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let err = tokio_rustls::TlsConnector::from(Arc::new(tls12))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect_err("a TLS 1.2 handshake must not succeed");
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("protocol") || text.contains("alert") || text.contains("version"),
        "{err}"
    );

    // Same agent, the real (TLS 1.3) dialer: the tunnel opens.
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("a.txt"), b"tls 1.3 only").unwrap();
    let api = router(ApiState::new(Arc::new(
        FixedWorkspaces::new([workspace.path()]).unwrap(),
    )));
    let dialer = dialer(&relay, &agent);
    let tunnel = tokio::spawn(async move { dialer.dial_and_serve(api).await });
    let url = relay.at(&format!(
        "/agents/{}/api/v1/workspaces/1/file?path=a.txt",
        agent.id
    ));
    assert_eq!(
        get_when_online(&browser, &url).await,
        (200, "tls 1.3 only".to_owned())
    );
    tunnel.abort();
}
