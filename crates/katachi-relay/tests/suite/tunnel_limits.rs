//! The relay's per-tunnel limits, against a test agent router served over a real tunnel: the
//! in-flight cap (`429 agent.busy`), the time-to-headers timeout (`504 agent.timeout`), and an
//! open tunnel counting as "online".

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::routing;
use axum::Router;
use http_body_util::channel::{Channel, Sender};
use serde_json::Value;

use super::support::{code, registered_agent, Backend, TestRelay};
use super::tunnel::{dialer, get, get_when_online};

/// What the test agent's routes share with the test.
#[derive(Clone, Default)]
pub(super) struct TestAgent {
    /// Bodies of `/hold` responses, open until [`TestAgent::release_all`].
    held: Arc<Mutex<Vec<Sender<Bytes>>>>,
    /// `/hold` requests that reached the agent.
    holds_started: Arc<AtomicUsize>,
    /// Set when a `/slow` handler was dropped before it finished (the relay cancelled it).
    slow_cancelled: Arc<AtomicBool>,
}

/// Sets its flag when dropped before `done`.
struct CancelProbe(Arc<AtomicBool>, bool);

impl Drop for CancelProbe {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

impl TestAgent {
    /// `/quick` answers at once; `/hold` sends headers at once and keeps its body open;
    /// `/slow` answers after 10 s.
    pub(super) fn router(&self) -> Router {
        Router::new()
            .route("/quick", routing::get(|| async { "ok" }))
            .route("/hold", routing::get(hold))
            .route("/slow", routing::get(slow))
            .with_state(self.clone())
    }

    /// Ends every held body with a last chunk.
    pub(super) fn release_all(&self) {
        for mut sender in self.held.lock().unwrap().drain(..) {
            let _ = sender.try_send(hyper::body::Frame::data(Bytes::from_static(b"done")));
        }
    }

    /// Waits until `n` `/hold` requests reached the agent.
    pub(super) async fn wait_for_holds(&self, n: usize) {
        for _ in 0..200 {
            if self.holds_started.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} held requests never reached the agent");
    }
}

async fn hold(State(agent): State<TestAgent>) -> Body {
    let (sender, body) = Channel::<Bytes>::new(4);
    agent.held.lock().unwrap().push(sender);
    agent.holds_started.fetch_add(1, Ordering::SeqCst);
    Body::new(body)
}

async fn slow(State(agent): State<TestAgent>) -> &'static str {
    let mut probe = CancelProbe(agent.slow_cancelled.clone(), false);
    tokio::time::sleep(Duration::from_secs(10)).await;
    probe.1 = true;
    "late"
}

fn api(relay: &TestRelay, agent_id: &str, rest: &str) -> String {
    relay.at(&format!("/agents/{agent_id}/api{rest}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_get_agent_busy_with_retry_after() {
    let relay = TestRelay::start_with(Backend::Sqlite, |c| c.tunnel_max_in_flight = 2).await;
    let (browser, agent) = registered_agent(&relay, "dana@example.com").await;
    let test_agent = TestAgent::default();
    let router = test_agent.router();
    let dialer = dialer(&relay, &agent);
    let tunnel = tokio::spawn(async move { dialer.dial_and_serve(router).await });
    let (status, _) = get_when_online(&browser, &api(&relay, &agent.id, "/quick")).await;
    assert_eq!(status, 200);

    // Two responses whose bodies stay open: both slots taken until the bodies end.
    let first = browser
        .get(api(&relay, &agent.id, "/hold"))
        .send()
        .await
        .unwrap();
    let second = browser
        .get(api(&relay, &agent.id, "/hold"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    test_agent.wait_for_holds(2).await;

    let r = browser
        .get(api(&relay, &agent.id, "/quick"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "agent.busy");

    // The bodies end: the slots free, and the agent is usable again.
    test_agent.release_all();
    assert_eq!(first.text().await.unwrap(), "done");
    assert_eq!(second.text().await.unwrap(), "done");
    let mut answered = 0;
    for _ in 0..100 {
        answered = get(&browser, &api(&relay, &agent.id, "/quick")).await.0;
        if answered == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered, 200, "the slots were not given back");
    tunnel.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_slow_to_answer_gets_agent_timeout_and_its_handler_cancelled() {
    let relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.tunnel_response_timeout = Duration::from_millis(400);
    })
    .await;
    let (browser, agent) = registered_agent(&relay, "erin@example.com").await;
    let test_agent = TestAgent::default();
    let router = test_agent.router();
    let dialer = dialer(&relay, &agent);
    let tunnel = tokio::spawn(async move { dialer.dial_and_serve(router).await });
    get_when_online(&browser, &api(&relay, &agent.id, "/quick")).await;

    let started = Instant::now();
    let (status, body) = get(&browser, &api(&relay, &agent.id, "/slow")).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code(&v), "agent.timeout");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // The relay reset the stream: the agent dropped the work instead of finishing it.
    let mut cancelled = false;
    for _ in 0..100 {
        if test_agent.slow_cancelled.load(Ordering::SeqCst) {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cancelled,
        "the agent kept working on a request the relay gave up on"
    );
    // …and the tunnel itself is fine.
    assert_eq!(
        get(&browser, &api(&relay, &agent.id, "/quick")).await.0,
        200
    );
    tunnel.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tunnel_shows_the_agent_online_without_heartbeats() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "fay@example.com").await;
    let status_of = || async {
        let agents: Value = browser
            .get(relay.at("/api/me/agents"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        agents[0]["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(status_of().await, "never connected");

    let router = TestAgent::default().router();
    let dialer = dialer(&relay, &agent);
    let tunnel = tokio::spawn(async move { dialer.dial_and_serve(router).await });
    get_when_online(&browser, &api(&relay, &agent.id, "/quick")).await;
    assert_eq!(status_of().await, "online");

    tunnel.abort();
    let _ = tunnel.await;
    let mut status = String::new();
    for _ in 0..100 {
        status = status_of().await;
        if status != "online" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "never connected");
}
