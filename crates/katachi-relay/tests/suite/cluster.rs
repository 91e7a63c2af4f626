//! Several relay instances on one PostgreSQL with internal listeners (issue 14): a browser on one
//! instance reaches an agent whose tunnel ends on another, through the internal link; revocation,
//! take-over and a clean stop act on every instance; the internal listener admits only instances
//! published in the database.

use std::sync::Arc;
use std::time::Duration;

use katachi_relay::config::InternalConfig;
use reqwest::Client;
use sha2::Digest;

use super::operations::Metrics;
use super::support::{code, csrf_of, page_text, registered_agent, Agent, Backend, TestRelay};
use super::tunnel::{dialer, get, get_when_online};
use super::tunnel_limits::TestAgent;

/// Longest wait for anything the test waits on (a loaded 2-core machine).
const WITHIN: Duration = Duration::from_secs(20);

fn internal() -> Option<InternalConfig> {
    Some(InternalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
    })
}

fn api(relay: &TestRelay, agent_id: &str, rest: &str) -> String {
    relay.at(&format!("/agents/{agent_id}/api{rest}"))
}

/// Two routing instances on one PostgreSQL, a user, and their agent's tunnel on the first.
struct Pair {
    first: TestRelay,
    second: TestRelay,
    browser: Client,
    agent: Agent,
    test_agent: TestAgent,
    tunnel: tokio::task::JoinHandle<()>,
}

async fn pair(email: &str) -> Pair {
    let first = TestRelay::start_with(Backend::Postgres, |c| c.internal = internal()).await;
    let second = first
        .second_instance_with(|c| c.internal = internal())
        .await;
    let (browser, agent) = registered_agent(&first, email).await;
    let test_agent = TestAgent::default();
    let router = test_agent.router();
    let dialer = dialer(&first, &agent);
    let tunnel = tokio::spawn(async move {
        let _ = dialer.dial_and_serve(router).await;
    });
    let (status, body) = get_when_online(&browser, &api(&first, &agent.id, "/quick")).await;
    assert_eq!(status, 200, "{body}");
    Pair {
        first,
        second,
        browser,
        agent,
        test_agent,
        tunnel,
    }
}

/// Waits until `url` answers `status`.
async fn wait_for_status(client: &Client, url: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let (now, body) = get(client, url).await;
        if now == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} still answers {now}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_another_instance_reads_and_writes_through_the_instance_holding_the_tunnel() {
    let with_metrics = |c: &mut katachi_relay::RelayConfig| {
        c.internal = internal();
        c.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    };
    let first = TestRelay::start_with(Backend::Postgres, with_metrics).await;
    let second = first.second_instance_with(with_metrics).await;
    let (browser, agent) = registered_agent(&first, "across@example.com").await;
    let workspace = tempfile::tempdir().unwrap();
    // Far above the windows of every hop: the download streams through tunnel and internal link.
    let big: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(workspace.path().join("big.bin"), &big).unwrap();
    let api_router = katachi_core::api::router(katachi_core::api::ApiState::new(Arc::new(
        katachi_core::api::FixedWorkspaces::new([workspace.path()]).unwrap(),
    )));
    let dialer = dialer(&first, &agent);
    let tunnel = tokio::spawn(async move {
        let _ = dialer.dial_and_serve(api_router).await;
    });
    let read = |relay: &TestRelay| api(relay, &agent.id, "/v1/workspaces/1/file?path=big.bin");
    let (status, _) = get_when_online(&browser, &read(&first)).await;
    assert_eq!(status, 200);

    // The second instance has no tunnel of the agent: it forwards to the first.
    let before = (
        Metrics::scrape(&first).await,
        Metrics::scrape(&second).await,
    );
    let r = browser.get(read(&second)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), big.len());
    assert_eq!(
        sha2::Sha256::digest(&got),
        sha2::Sha256::digest(&big),
        "the download through two instances is intact"
    );
    // The tunnel's bytes count once, at the instance holding the tunnel.
    let after = (
        Metrics::scrape(&first).await,
        Metrics::scrape(&second).await,
    );
    let from_agent = |m: &Metrics| {
        m.value(
            "katachi_relay_tunnel_bytes_total",
            &[("direction", "from_agent")],
        )
    };
    assert_eq!(
        from_agent(&after.0) - from_agent(&before.0),
        big.len() as f64
    );
    assert_eq!(from_agent(&after.1) - from_agent(&before.1), 0.0);

    // A write through the second instance lands in the workspace (its own Origin).
    let r = browser
        .put(api(
            &second,
            &agent.id,
            "/v1/workspaces/1/file?path=new.txt&expected=absent",
        ))
        .header("origin", second.url.as_str())
        .header("content-type", "application/octet-stream")
        .body("written via the other instance")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("new.txt")).unwrap(),
        "written via the other instance"
    );

    // The agent's answer is screened on the way (a range read keeps its 206 and range header).
    let r = browser
        .get(read(&second))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &big[..10]);

    // Once the agent is gone, both instances say offline (the route went with the tunnel).
    tunnel.abort();
    let body = wait_for_status(&browser, &read(&second), 503).await;
    assert!(body.contains("agent.offline"), "{body}");
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_on_the_forwarding_instance_ends_the_download_and_the_tunnel_on_the_other() {
    let p = pair("revoke-across@example.com").await;
    // A download held open by the agent, entering at the second instance.
    let held = p
        .browser
        .get(api(&p.second, &p.agent.id, "/hold"))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    p.test_agent.wait_for_holds(1).await;
    let page = page_text(&p.browser, p.second.at("/agents")).await;
    let r = p
        .browser
        .post(p.second.at(&format!("/agents/{}/revoke", p.agent.id)))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let body = tokio::time::timeout(WITHIN, held.bytes())
        .await
        .expect("the forwarded download was not ended");
    assert!(body.is_err(), "the download ended cleanly: {body:?}");
    tokio::time::timeout(WITHIN, p.tunnel)
        .await
        .expect("the revoked agent's tunnel stayed open on the instance holding it")
        .unwrap();
    p.test_agent.release_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_reconnects_to_another_instance_takes_its_route_and_the_old_tunnel_closes() {
    let p = pair("takeover@example.com").await;
    let second_tunnel_router = p.test_agent.router();
    let dialer = dialer(&p.second, &p.agent);
    let moved = tokio::spawn(async move {
        let _ = dialer.dial_and_serve(second_tunnel_router).await;
    });
    // The first instance lets go of its (older) tunnel when the second announces the take-over.
    tokio::time::timeout(WITHIN, p.tunnel)
        .await
        .expect("the older tunnel stayed open after the take-over")
        .unwrap();
    // Both instances reach the agent through the second.
    for relay in [&p.first, &p.second] {
        let body = wait_for_status(&p.browser, &api(relay, &p.agent.id, "/quick"), 200).await;
        assert_eq!(body, "ok");
    }
    moved.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_instance_follows_a_take_over_at_once_though_it_remembers_routes() {
    let p = pair("remembered@example.com").await;
    let third = p
        .first
        .second_instance_with(|c| c.internal = internal())
        .await;
    // The second instance forwards to the first, and remembers where the tunnel is.
    let url = api(&p.second, &p.agent.id, "/quick");
    for _ in 0..3 {
        let (status, body) = get(&p.browser, &url).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    // The agent moves to the third instance; the first lets go of its tunnel on the notice.
    let router = p.test_agent.router();
    let dialer = dialer(&third, &p.agent);
    let moved = tokio::spawn(async move {
        let _ = dialer.dial_and_serve(router).await;
    });
    tokio::time::timeout(WITHIN, p.tunnel)
        .await
        .expect("the older tunnel stayed open after the take-over")
        .unwrap();
    // the same notice reached the second instance (give it a moment on a loaded machine)
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The very next request through the second instance reaches the agent on the third: the
    // remembered route to the first was forgotten on the take-over notice, not after a failure.
    let (status, body) = get(&p.browser, &url).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    moved.abort();
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_instance_closes_its_tunnels_and_removes_its_routes() {
    let p = pair("drain@example.com").await;
    let url = api(&p.second, &p.agent.id, "/quick");
    assert_eq!(get(&p.browser, &url).await.0, 200);
    p.first.stop().await;
    tokio::time::timeout(WITHIN, p.tunnel)
        .await
        .expect("a stopped instance left the agent's tunnel open")
        .unwrap();
    // The route went with the instance, and the second forgot the route it remembered (the
    // instance said it left): the second answers offline at once, not after a timeout.
    let (status, body) = get(&p.browser, &url).await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code(&v), "agent.offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_listener_admits_only_instances_published_in_the_database() {
    let relay = TestRelay::start_with(Backend::Postgres, |c| c.internal = internal()).await;
    let addr = relay
        .state
        .as_ref()
        .unwrap()
        .cluster
        .internal_addr()
        .unwrap();
    // A stranger with its own certificate: TLS may complete, but no request is served.
    let stranger = katachi_relay::cluster::peer_tls::PeerIdentity::generate().unwrap();
    let config = katachi_relay::cluster::peer_tls::client_config(
        &stranger,
        &stranger.fingerprint(), // whatever it expects, the listener's certificate is another
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            katachi_relay::cluster::peer_tls::server_name().unwrap(),
            tcp,
        )
        .await;
    assert!(
        refused.is_err(),
        "a caller pinning another certificate got through"
    );

    // A caller that trusts the listener but is not published: closed before any request.
    let published = published_fingerprint(&relay).await;
    let config = katachi_relay::cluster::peer_tls::client_config(&stranger, &published).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let served = async {
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                katachi_relay::cluster::peer_tls::server_name().unwrap(),
                tcp,
            )
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = hyper::Request::get("/internal/v1/agents/agt_x/v1/status")
            .header("x-katachi-internal-session", "abcd")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap();
        sender
            .send_request(request)
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    };
    let outcome = tokio::time::timeout(WITHIN, served).await.unwrap();
    assert!(
        outcome.is_err(),
        "an unpublished caller was served: {outcome:?}"
    );

    // Plain TCP garbage: closed, nothing served.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WITHIN, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).contains("HTTP/1.1 200"),
        "plain HTTP got an answer"
    );
    relay.stop().await;
}

/// The internal certificate fingerprint the relay published.
async fn published_fingerprint(relay: &TestRelay) -> String {
    let url = relay.database_url.clone().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let print: String = sqlx::query_scalar("SELECT cert_sha256 FROM relay_instances LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    print
}
