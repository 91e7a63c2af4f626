//! The relay behind Debian's nginx terminating TLS 1.3 with a certificate of its own and proxying
//! to the relay over TLS 1.3 (`docs/deploy/nginx-katachi-relay.conf`, the config DEPLOY.md gives):
//! sign-up, device approval and the agent's tunnel all pass through it, and the relay believes
//! nginx's `X-Forwarded-For` only when nginx's address is a `--trusted-proxy`.
//!
//! Clients leave from distinct loopback addresses (127.0.0.3, .4, ...) so each has an address of
//! its own; nginx reaches the relay from 127.0.0.1.

use std::net::IpAddr;
use std::sync::Arc;

use katachi_core::api::{router, ApiState, FixedWorkspaces};
use katachi_relay::address_limit::AddressQuota;
use katachi_relay::client_ip::{parse_trusted_proxy, ForwardedHeader, TrustedProxies};
use katachi_relay::RelayConfig;

use super::nginx::{render, Nginx, Site, TEMPLATE};
use super::relay_child::free_port;
use super::support::{
    client_from, decide, poll_token, request_device_code, sign_up, Agent, Backend, TestRelay,
};
use super::tunnel::{dialer, get_when_online};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A relay whose public URL is nginx's, and nginx in front of it (`websocket_only`: as Cloudflare
/// passes upgrades). The returned relay's `url` and `ca` are nginx's, so every helper of the suite
/// (clients, sign-up, device flow, the agent's dialer) goes through nginx.
pub(super) async fn relay_behind_nginx(
    trust_nginx: bool,
    websocket_only: bool,
    tweak: impl FnOnce(&mut RelayConfig),
) -> (TestRelay, Nginx) {
    let port = free_port();
    let mut relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.public_url = Some(format!("https://localhost:{port}"));
        if trust_nginx {
            c.trusted_proxies = TrustedProxies::new(
                vec![parse_trusted_proxy("127.0.0.1").unwrap()],
                ForwardedHeader::XForwardedFor,
            );
        }
        tweak(c);
    })
    .await;
    let nginx = Nginx::start(Site {
        listen_port: port,
        relay: relay.addr,
        relay_ca: relay.ca.clone(),
        websocket_only,
    })
    .await;
    relay.ca = nginx.ca.clone();
    (relay, nginx)
}

/// The device page of `user_code` as `browser` sees it.
async fn device_page(relay: &TestRelay, browser: &reqwest::Client, user_code: &str) -> String {
    browser
        .get(relay.at(&format!("/device?user_code={user_code}")))
        // A browser's own claim: nginx appends to it, the relay never believes it.
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn through_nginx_a_browser_signs_up_approves_a_device_and_reads_files_over_the_tunnel() {
    let (relay, nginx) = relay_behind_nginx(true, false, |_| {}).await;
    let browser = client_from(&relay, ip("127.0.0.3"));
    sign_up(&relay, &browser, "ann@example.com").await;

    // The approval page names the device's address and the approver's as nginx forwarded them;
    // the browser's own X-Forwarded-For changes nothing.
    let device = client_from(&relay, ip("127.0.0.4"));
    let dc = request_device_code(&relay, &device).await;
    let user_code = dc["user_code"].as_str().unwrap();
    let page = device_page(&relay, &browser, user_code).await;
    assert!(page.contains(r#"id="device-ip">127.0.0.4<"#), "{page}");
    assert!(page.contains("you are connecting from 127.0.0.3"), "{page}");
    assert!(!page.contains("203.0.113.9"), "{page}");
    let r = decide(&relay, &browser, user_code, "approve").await;
    assert_eq!(r.status(), 200);
    let (status, tok) = poll_token(&relay, &device, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{tok}");
    let agent = Agent {
        id: tok["agent_id"].as_str().unwrap().to_owned(),
        token: tok["access_token"].as_str().unwrap().to_owned(),
        secret: tok["signing_secret"].as_str().unwrap().to_owned(),
    };

    // The agent opens its tunnel through nginx (the signed upgrade crosses it), and the browser
    // reads a small and a 4 MiB file through nginx and the tunnel.
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("hello.txt"), b"hello through nginx\n").unwrap();
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(workspace.path().join("big.bin"), &big).unwrap();
    let api = router(ApiState::new(Arc::new(
        FixedWorkspaces::new([workspace.path()]).unwrap(),
    )));
    let dialer = dialer(&relay, &agent);
    let tunnel = tokio::spawn(async move { dialer.dial_and_serve(api).await });
    let file = |name: &str| {
        relay.at(&format!(
            "/agents/{}/api/v1/workspaces/1/file?path={name}",
            agent.id
        ))
    };
    let (status, body) = get_when_online(&browser, &file("hello.txt")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "hello through nginx\n");
    let r = browser.get(file("big.bin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.unwrap() == big,
        "the download arrived changed"
    );
    // It was nginx that carried the upgrade: its log has the 101 once the tunnel has closed.
    tunnel.abort();
    let mut log = String::new();
    for _ in 0..100 {
        log = nginx.access_log();
        if log.contains("GET /api/agent/tunnel HTTP/1.1\" 101") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no upgrade in nginx's log:\n{log}");
}

#[tokio::test]
async fn behind_an_untrusted_nginx_every_client_has_nginxs_address() {
    let (relay, _nginx) = relay_behind_nginx(false, false, |_| {}).await;
    let browser = client_from(&relay, ip("127.0.0.3"));
    sign_up(&relay, &browser, "ben@example.com").await;
    let device = client_from(&relay, ip("127.0.0.4"));
    let dc = request_device_code(&relay, &device).await;
    let page = device_page(&relay, &browser, dc["user_code"].as_str().unwrap()).await;
    // nginx's own address for both: no warning, and nothing any header said.
    assert!(page.contains(r#"id="device-ip">127.0.0.1<"#), "{page}");
    assert!(!page.contains("ip-warning"), "{page}");
    assert!(!page.contains("203.0.113.9"), "{page}");
}

#[tokio::test]
async fn through_nginx_the_address_limit_counts_each_client_only_when_nginx_is_trusted() {
    for trusted in [true, false] {
        let (relay, _nginx) = relay_behind_nginx(trusted, false, |c| {
            c.address_quota = AddressQuota {
                burst: 3,
                per_minute: 1,
            }
        })
        .await;
        let post_login = |client: reqwest::Client| {
            let url = relay.at("/login");
            async move { client.post(url).send().await.unwrap().status().as_u16() }
        };
        let first = client_from(&relay, ip("127.0.0.5"));
        for _ in 0..3 {
            assert_ne!(post_login(first.clone()).await, 429);
        }
        assert_eq!(post_login(first.clone()).await, 429);
        // Another client behind the same nginx: its own bucket only when nginx is trusted.
        let second = client_from(&relay, ip("127.0.0.6"));
        let status = post_login(second).await;
        if trusted {
            assert_ne!(status, 429, "trusted nginx: 127.0.0.6 has its own bucket");
        } else {
            assert_eq!(status, 429, "untrusted nginx: everyone is 127.0.0.1");
        }
    }
}

/// DEPLOY.md gives the config these tests run: the template from its first map on, with the
/// documented values.
#[test]
fn deploy_md_shows_the_nginx_config_the_tests_run() {
    let deploy = include_str!("../../../../docs/DEPLOY.md");
    let from_first_map = &TEMPLATE[TEMPLATE.find("# The upgrades passed").unwrap()..];
    let documented = render(
        from_first_map,
        &[
            ("LISTEN", "443"),
            ("SERVER_NAME", "relay.example.com"),
            (
                "CERTIFICATE",
                "/etc/letsencrypt/live/relay.example.com/fullchain.pem",
            ),
            (
                "CERTIFICATE_KEY",
                "/etc/letsencrypt/live/relay.example.com/privkey.pem",
            ),
            ("RELAY_ADDRESS", "127.0.0.1:8443"),
            ("RELAY_TLS_NAME", "relay.example.com"),
            ("RELAY_CA", "/var/lib/katachi-relay/tls/ca.pem"),
        ],
    );
    assert!(
        deploy.contains(&format!("```nginx\n{documented}```")),
        "docs/DEPLOY.md's nginx config differs from docs/deploy/nginx-katachi-relay.conf; paste:\n{documented}"
    );
}
