//! Operating the relay: `/healthz` and `/readyz`, Prometheus `/metrics` on its own listener (never
//! the public one), what the metrics count, and JSON logs. `/metrics` is read as Prometheus parses
//! it (`prometheus-parse`), by metric name and labels.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing;
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::Value;

use super::relay_child::relay_command;
use super::support::{
    code, fresh_postgres_database, heartbeat, registered_agent, send_signed, Backend, Signed,
    TestRelay,
};
use super::tunnel::{dialer, get_when_online};
use super::tunnel_limits::TestAgent;

/// A relay whose metrics listener is on a free loopback port.
async fn relay_with_metrics(tweak: impl FnOnce(&mut katachi_relay::RelayConfig)) -> TestRelay {
    TestRelay::start_with(Backend::Sqlite, |c| {
        c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        tweak(c);
    })
    .await
}

/// One scrape of `/metrics`, parsed.
pub(super) struct Metrics(Scrape);

impl Metrics {
    pub(super) async fn scrape(relay: &TestRelay) -> Self {
        let addr = relay.metrics.expect("the relay has a metrics listener");
        let r = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = r.text().await.unwrap();
        Self(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap())
    }

    /// The samples named `name` whose labels include `labels`.
    fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.0.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The value of the one counter, gauge or untyped sample named `name` with `labels`; 0 when
    /// the series does not exist yet.
    pub(super) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self.samples(name, labels).collect();
        assert!(found.len() <= 1, "several {name} {labels:?}: {found:?}");
        match found.first().map(|s| &s.value) {
            None => 0.0,
            Some(Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v)) => *v,
            Some(other) => panic!("{name} is not a single value: {other:?}"),
        }
    }

    /// The metric's type as Prometheus reads it (`counter`, `gauge`, `histogram`).
    fn kind(&self, name: &str) -> &'static str {
        let s = self
            .0
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("no {name} in the scrape"));
        match s.value {
            Sample::Counter(_) => "counter",
            Sample::Gauge(_) => "gauge",
            Sample::Histogram(_) => "histogram",
            Sample::Summary(_) => "summary",
            Sample::Untyped(_) => "untyped",
        }
    }

    /// Every value the label takes on the metric.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples(name, &[])
            .filter_map(|s| s.labels.get(label).map(str::to_owned))
            .collect()
    }

    /// The observation count of the latency histogram of `route`.
    fn requests_of(&self, route: &str) -> f64 {
        self.value(
            "katachi_relay_request_duration_seconds_count",
            &[("route", route)],
        )
    }
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_only_on_the_metrics_listener() {
    let relay = relay_with_metrics(|_| {}).await;
    let public = relay
        .client()
        .get(relay.at("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        404,
        "the public port must not serve /metrics"
    );

    let m = Metrics::scrape(&relay).await;
    for (name, kind) in [
        ("katachi_relay_connected_agents", "gauge"),
        ("katachi_relay_tunnels_opened_total", "counter"),
        ("katachi_relay_tunnel_bytes_total", "counter"),
        ("katachi_relay_request_duration_seconds", "histogram"),
        ("katachi_relay_heartbeats_total", "counter"),
        ("katachi_relay_rate_limited_total", "counter"),
    ] {
        assert_eq!(m.kind(name), kind, "{name}");
    }
    assert_eq!(
        m.label_values("katachi_relay_tunnel_bytes_total", "direction"),
        set(&["from_agent", "to_agent"])
    );
    assert_eq!(
        m.label_values("katachi_relay_tunnels_opened_total", "carrier"),
        set(&["direct", "websocket"])
    );
    assert_eq!(
        m.label_values("katachi_relay_rate_limited_total", "limiter"),
        set(&[
            "account_delay",
            "address",
            "device_code",
            "sign_in",
            "sign_up",
            "tunnel_busy",
            "user_code"
        ])
    );
    // The scrape itself is not a request of the public router: nothing counted yet but the 404.
    assert_eq!(m.requests_of("page"), 1.0);

    // Anything else on the metrics listener is 404 too.
    let addr = relay.metrics.unwrap();
    let other = reqwest::get(format!("http://{addr}/agents")).await.unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_on_the_public_and_the_metrics_listener() {
    let relay = relay_with_metrics(|_| {}).await;
    let metrics = relay.metrics.unwrap();
    let client = relay.client();
    for (url, want) in [
        (relay.at("/healthz"), "ok"),
        (relay.at("/readyz"), "ready"),
        (format!("http://{metrics}/healthz"), "ok"),
        (format!("http://{metrics}/readyz"), "ready"),
    ] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], want, "{url}");
    }
}

/// `/readyz` on both listeners: status and the JSON error's code and message.
async fn readiness(relay: &TestRelay) -> Vec<(u16, String, String)> {
    let metrics = relay.metrics.unwrap();
    let client = relay.client();
    let mut answers = Vec::new();
    for url in [relay.at("/readyz"), format!("http://{metrics}/readyz")] {
        let r = client.get(&url).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        answers.push((
            status,
            code(&v).to_owned(),
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_not_ready_while_the_relay_drains_and_healthz_still_answers() {
    let relay = relay_with_metrics(|_| {}).await;
    relay.state.as_ref().unwrap().draining.start();
    for (status, code, message) in readiness(&relay).await {
        assert_eq!((status, code.as_str()), (503, "relay.not_ready"));
        assert!(message.starts_with("draining"), "{message}");
    }
    let r = relay
        .client()
        .get(relay.at("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_not_ready_when_the_database_is_gone() {
    let relay = relay_with_metrics(|_| {}).await;
    assert_eq!(readiness(&relay).await[0].0, 200);
    relay.state.as_ref().unwrap().store.close().await;
    for (status, code, message) in readiness(&relay).await {
        assert_eq!((status, code.as_str()), (503, "relay.not_ready"));
        assert!(message.starts_with("database"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_not_ready_when_the_postgres_database_is_dropped() {
    let url = fresh_postgres_database().await;
    let db_url = url.clone();
    let relay = relay_with_metrics(move |c| c.database_url = Some(db_url)).await;
    assert_eq!(readiness(&relay).await[0].0, 200);
    // The database disappears under the relay (its connections are ended with it).
    let name = url::Url::parse(&url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let admin = sqlx::AnyPool::connect(&std::env::var("KATACHI_TEST_POSTGRES_URL").unwrap())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    for (status, code, message) in readiness(&relay).await {
        assert_eq!((status, code.as_str()), (503, "relay.not_ready"));
        assert!(message.starts_with("database"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_signature_is_counted_by_its_reason() {
    let relay = relay_with_metrics(|_| {}).await;
    let (_browser, agent) = registered_agent(&relay, "ops@example.com").await;
    let client = relay.client();
    let path = "/api/agent/heartbeat";
    let body = br#"{"version":"0.1.0","workspaces":1}"#;

    assert_eq!(heartbeat(&relay, &client, &agent).await.0, 200);
    let mut wrong_secret = Signed::new(path, body);
    wrong_secret.secret = Some("not-the-secret".into());
    let mut stale = Signed::new(path, body);
    stale.timestamp -= 600;
    let replayed = Signed::new(path, body);
    for (signed, want) in [
        (&wrong_secret, 401),
        (&wrong_secret, 401),
        (&stale, 401),
        (&replayed, 200),
        (&replayed, 401),
    ] {
        assert_eq!(send_signed(&relay, &client, &agent, signed).await.0, want);
    }

    let m = Metrics::scrape(&relay).await;
    let rejected = |code| {
        m.value(
            "katachi_relay_signed_calls_rejected_total",
            &[("code", code)],
        )
    };
    assert_eq!(rejected("signature.bad_signature"), 2.0);
    assert_eq!(rejected("signature.stale_timestamp"), 1.0);
    assert_eq!(rejected("signature.replayed_nonce"), 1.0);
    assert_eq!(
        m.label_values("katachi_relay_signed_calls_rejected_total", "code"),
        set(&[
            "signature.bad_signature",
            "signature.replayed_nonce",
            "signature.stale_timestamp"
        ]),
        "only the reasons that happened, each once"
    );
    assert_eq!(m.value("katachi_relay_heartbeats_total", &[]), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_latency_is_observed_by_route_group_never_by_path() {
    let relay = relay_with_metrics(|_| {}).await;
    let (browser, agent) = registered_agent(&relay, "lat@example.com").await;
    let before = Metrics::scrape(&relay).await;
    for path in ["/static/app.css", "/static/agents.js", "/healthz"] {
        assert_eq!(
            browser.get(relay.at(path)).send().await.unwrap().status(),
            200
        );
    }
    for path in ["/agents", "/no/such/page/abc123"] {
        browser.get(relay.at(path)).send().await.unwrap();
    }
    heartbeat(&relay, &relay.client(), &agent).await;

    let after = Metrics::scrape(&relay).await;
    let grew = |route| after.requests_of(route) - before.requests_of(route);
    assert_eq!(grew("static"), 2.0);
    assert_eq!(grew("health"), 1.0);
    assert_eq!(grew("page"), 2.0);
    assert_eq!(grew("agent_api"), 1.0);
    assert_eq!(grew("tunnel_forward"), 0.0);
    // The sign-up, approval and token polls of `registered_agent` were counted by their group.
    assert!(before.requests_of("device_flow") >= 2.0);
    assert_eq!(
        after.label_values("katachi_relay_request_duration_seconds_count", "route"),
        set(&[
            "agent_api",
            "device_flow",
            "health",
            "page",
            "static",
            "tunnel_forward"
        ]),
        "a fixed set of groups: no path ever becomes a label"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_hits_are_counted_by_limiter() {
    let relay = relay_with_metrics(|c| {
        c.address_quota = katachi_relay::address_limit::AddressQuota {
            burst: 1,
            per_minute: 1,
        };
    })
    .await;
    let client = relay.client();
    for _ in 0..3 {
        client
            .post(relay.at("/login"))
            .form(&[("email", "x@example.com"), ("password", "p")])
            .send()
            .await
            .unwrap();
    }
    let m = Metrics::scrape(&relay).await;
    let limited = |limiter| m.value("katachi_relay_rate_limited_total", &[("limiter", limiter)]);
    assert_eq!(limited("address"), 2.0, "the 2nd and 3rd posts");
    assert_eq!(limited("tunnel_busy"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_bytes_connected_agents_and_busy_refusals_are_counted() {
    let relay = relay_with_metrics(|c| c.tunnel_max_in_flight = 1).await;
    let (browser, agent) = registered_agent(&relay, "bytes@example.com").await;
    let test_agent = TestAgent::default();
    let router = test_agent
        .router()
        .route("/echo", routing::post(|body: Bytes| async move { body }));
    let dialer = dialer(&relay, &agent);
    let tunnel = tokio::spawn(async move { dialer.dial_and_serve(router).await });
    let api = |rest: &str| relay.at(&format!("/agents/{}/api{rest}", agent.id));
    get_when_online(&browser, &api("/quick")).await;

    let before = Metrics::scrape(&relay).await;
    assert_eq!(before.value("katachi_relay_connected_agents", &[]), 1.0);
    assert_eq!(
        before.value(
            "katachi_relay_tunnels_opened_total",
            &[("carrier", "direct")]
        ),
        1.0
    );
    let sent = vec![b'k'; 100_000];
    let r = browser
        .post(api("/echo"))
        .header("origin", &relay.url)
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), sent.len());
    let after = Metrics::scrape(&relay).await;
    let bytes = |m: &Metrics, direction| {
        m.value(
            "katachi_relay_tunnel_bytes_total",
            &[("direction", direction)],
        )
    };
    assert_eq!(
        bytes(&after, "to_agent") - bytes(&before, "to_agent"),
        100_000.0
    );
    assert_eq!(
        bytes(&after, "from_agent") - bytes(&before, "from_agent"),
        100_000.0
    );
    assert_eq!(
        after.requests_of("tunnel_forward") - before.requests_of("tunnel_forward"),
        1.0
    );

    // One held response takes the only slot: the next request is refused busy, and counted.
    let held = browser.get(api("/hold")).send().await.unwrap();
    test_agent.wait_for_holds(1).await;
    assert_eq!(
        browser.get(api("/quick")).send().await.unwrap().status(),
        429
    );
    let busy = Metrics::scrape(&relay).await;
    assert_eq!(
        busy.value(
            "katachi_relay_rate_limited_total",
            &[("limiter", "tunnel_busy")]
        ),
        1.0
    );
    test_agent.release_all();
    assert_eq!(held.text().await.unwrap(), "done");

    // The agent goes: the gauge comes back to 0.
    tunnel.abort();
    let _ = tunnel.await;
    let mut connected = 1.0;
    for _ in 0..200 {
        connected = Metrics::scrape(&relay)
            .await
            .value("katachi_relay_connected_agents", &[]);
        if connected == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connected, 0.0, "a closed tunnel still counted as connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_process_logs_json_lines_and_serves_metrics_where_its_banner_says() {
    use tokio::io::AsyncBufReadExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut command = relay_command("127.0.0.1:0", &tmp.path().join("relay"));
    command
        .args(["--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
        .env("KATACHI_LOG", "info")
        .stdout(std::process::Stdio::piped());
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut logged = Vec::new();
    let mut metrics_url = None;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("katachi-relay: metrics on ") {
                metrics_url = Some(url.to_owned());
                break;
            }
            if !line.starts_with("katachi-relay: ") {
                logged.push(line);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the relay printed no metrics banner within 60 s");
    assert!(!logged.is_empty(), "no log line before the banner");
    for line in &logged {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        assert!(v["fields"]["message"].is_string(), "{v}");
    }
    let local_mode = logged.iter().any(|l| l.contains("local mode"));
    assert!(local_mode, "{logged:?}");

    let url = metrics_url.unwrap();
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "katachi_relay_connected_agents"));
    child.kill().await.unwrap();
}
