//! The relay behind Debian's HAProxy in HTTP mode terminating TLS, with the config DEPLOY.md gives
//! ("Behind HAProxy" under "Behind a reverse proxy or a CDN", filled with test values): the
//! agent's direct upgrade passes, the browser reads through the tunnel, and the relay sees each
//! client's address in HAProxy's `X-Forwarded-For`.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_core::api::{router, ApiState, FixedWorkspaces};
use katachi_core::tunnel::{
    status_channel, Carrier, NoNetworkChanges, ReconnectOptions, TunnelStatus,
};
use katachi_relay::client_ip::{parse_trusted_proxy, ForwardedHeader, TrustedProxies};

use super::relay_child::free_port;
use super::support::{client_from, registered_agent, request_device_code, Backend, TestRelay};
use super::tunnel::{dialer, get_when_online};

/// DEPLOY.md's HTTP-mode HAProxy config.
fn documented_config() -> String {
    let deploy = include_str!("../../../../docs/DEPLOY.md");
    deploy
        .split("```haproxy\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("mode http"))
        .expect("DEPLOY.md has no HTTP-mode HAProxy config")
        .to_owned()
}

/// HAProxy in the foreground; killed on drop.
struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_haproxy(
    port: u16,
    relay: &TestRelay,
    relay_ca: &std::path::Path,
) -> (Haproxy, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    // HAProxy's own certificate (chain and key in one file), from a CA of its own.
    katachi_relay::tls::load_or_generate(dir.path(), None, Some("localhost")).unwrap();
    let tls = dir.path().join("tls");
    let bundle = dir.path().join("bundle.pem");
    let mut pem = std::fs::read(tls.join("cert.pem")).unwrap();
    pem.extend(std::fs::read(tls.join("key.pem")).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let config = documented_config()
        .replace("bind :443", &format!("bind 127.0.0.1:{port}"))
        .replace(
            "/etc/haproxy/certs/relay.example.com.pem",
            &bundle.display().to_string(),
        )
        .replace(
            "/var/lib/katachi-relay/tls/ca.pem",
            &relay_ca.display().to_string(),
        )
        .replace("127.0.0.1:8443", &relay.addr.to_string())
        .replace("sni str(relay.example.com)", "sni str(localhost)");
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, config).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run haproxy ({e}): install it (scripts/install-deps.sh does)")
        });
    let mut haproxy = Haproxy { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = haproxy.child.try_wait() {
            panic!("haproxy exited ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "haproxy did not listen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (haproxy, tls.join("ca.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_haproxy_terminating_tls_the_tunnel_upgrades_directly_and_clients_keep_their_addresses(
) {
    let port = free_port();
    let mut relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.public_url = Some(format!("https://localhost:{port}"));
        c.trusted_proxies = TrustedProxies::new(
            vec![parse_trusted_proxy("127.0.0.1").unwrap()],
            ForwardedHeader::XForwardedFor,
        );
    })
    .await;
    let (_haproxy, haproxy_ca) = start_haproxy(port, &relay, &relay.ca.clone()).await;
    relay.ca = haproxy_ca;

    // The recorded address of a device is its own, as HAProxy forwarded it.
    let (browser, agent) = registered_agent(&relay, "hap@example.com").await;
    let device = client_from(&relay, "127.0.0.4".parse::<IpAddr>().unwrap());
    let dc = request_device_code(&relay, &device).await;
    let page = browser
        .get(relay.at(&format!(
            "/device?user_code={}",
            dc["user_code"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"id="device-ip">127.0.0.4<"#), "{page}");

    // The agent's tunnel: HAProxy passes the direct upgrade.
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("a.txt"), b"through haproxy\n").unwrap();
    let api = router(ApiState::new(Arc::new(
        FixedWorkspaces::new([workspace.path()]).unwrap(),
    )));
    let dialer = dialer(&relay, &agent);
    let (status, mut updates) = status_channel();
    let tunnel = tokio::spawn(async move {
        let options = ReconnectOptions {
            status,
            network: Box::new(NoNetworkChanges),
        };
        dialer.serve_with_reconnect(api, options).await
    });
    let url = relay.at(&format!(
        "/agents/{}/api/v1/workspaces/1/file?path=a.txt",
        agent.id
    ));
    assert_eq!(
        get_when_online(&browser, &url).await,
        (200, "through haproxy\n".to_owned())
    );
    let up = updates.borrow_and_update().clone();
    assert!(
        matches!(
            up,
            TunnelStatus::Connected {
                carrier: Carrier::Direct,
                ..
            }
        ),
        "{up:?}"
    );
    tunnel.abort();
}
