//! Signing out, or revoking an agent, ends the requests already running through the tunnel (a
//! download, a run's output): at once on the relay instance that did it, and within the recheck
//! interval on every other instance sharing the database (here: two instances on one PostgreSQL,
//! as behind a load balancer).

use std::time::Duration;

use reqwest::{Client, Response};

use super::support::{csrf_of, page_text, registered_agent, Agent, Backend, TestRelay};
use super::tunnel::{dialer, get, get_when_online};
use super::tunnel_limits::TestAgent;

/// Longest wait for a cut stream: the recheck interval (2 s) and generous slack for a busy machine.
const ENDS_WITHIN: Duration = Duration::from_secs(15);

fn api(relay: &TestRelay, agent_id: &str, rest: &str) -> String {
    relay.at(&format!("/agents/{agent_id}/api{rest}"))
}

/// Two instances on one PostgreSQL; a user whose agent's tunnel ends on the first, with a download
/// in progress through it.
struct Scene {
    first: TestRelay,
    second: TestRelay,
    browser: Client,
    agent: Agent,
    test_agent: TestAgent,
    tunnel: tokio::task::JoinHandle<()>,
    held: Response,
}

async fn scene(email: &str) -> Scene {
    let first = TestRelay::start_with(Backend::Postgres, |_| {}).await;
    let second = first.second_instance().await;
    let (browser, agent) = registered_agent(&first, email).await;
    let test_agent = TestAgent::default();
    let router = test_agent.router();
    let dialer = dialer(&first, &agent);
    let tunnel = tokio::spawn(async move {
        let _ = dialer.dial_and_serve(router).await;
    });
    let (status, _) = get_when_online(&browser, &api(&first, &agent.id, "/quick")).await;
    assert_eq!(status, 200);
    let held = browser
        .get(api(&first, &agent.id, "/hold"))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    test_agent.wait_for_holds(1).await;
    Scene {
        first,
        second,
        browser,
        agent,
        test_agent,
        tunnel,
        held,
    }
}

/// The held download ends with an error (not a clean end, not a hang).
async fn assert_cut(held: Response) {
    let body = tokio::time::timeout(ENDS_WITHIN, held.bytes())
        .await
        .expect("the running download was not ended");
    assert!(body.is_err(), "the download ended cleanly: {body:?}");
}

async fn sign_out(relay: &TestRelay, browser: &Client) {
    let page = page_text(browser, relay.at("/agents")).await;
    let r = browser
        .post(relay.at("/logout"))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_sessions_running_download_on_the_same_instance() {
    let s = scene("out-here@example.com").await;
    sign_out(&s.first, &s.browser).await;
    assert_cut(s.held).await;
    // The agent is still there for other sessions; this one is signed out.
    assert_eq!(
        get(&s.browser, &api(&s.first, &s.agent.id, "/quick"))
            .await
            .0,
        401
    );
    s.test_agent.release_all();
    s.tunnel.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_on_another_instance_ends_the_running_download() {
    let s = scene("out-there@example.com").await;
    // The session cookie works on both instances (one database).
    let agents = page_text(&s.browser, s.second.at("/api/me/agents")).await;
    assert!(agents.contains(&s.agent.id), "{agents}");
    sign_out(&s.second, &s.browser).await;
    assert_cut(s.held).await;
    s.test_agent.release_all();
    s.tunnel.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_on_another_instance_ends_the_running_download_and_the_tunnel() {
    let s = scene("revoke-there@example.com").await;
    let page = page_text(&s.browser, s.second.at("/agents")).await;
    let r = s
        .browser
        .post(s.second.at(&format!("/agents/{}/revoke", s.agent.id)))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_cut(s.held).await;
    // The first instance closed the agent's tunnel too: the agent's serving loop ends.
    tokio::time::timeout(ENDS_WITHIN, s.tunnel)
        .await
        .expect("the revoked agent's tunnel stayed open on the other instance")
        .unwrap();
}
