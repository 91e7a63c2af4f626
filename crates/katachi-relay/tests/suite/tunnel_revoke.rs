//! Revoking an agent ends its open tunnel at once, and its redial is refused for good.

use std::time::Duration;

use katachi_core::tunnel::{status_channel, NoNetworkChanges, ReconnectOptions, TunnelStatus};

use super::support::{csrf_of, page_text, registered_agent, TestRelay};
use super::tunnel::{dialer, get, get_when_online};
use super::tunnel_limits::TestAgent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_agent_closes_its_tunnel_and_its_redial_needs_sign_in() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "gus@example.com").await;
    let test_agent = TestAgent::default();
    let router = test_agent.router();
    let dialer = dialer(&relay, &agent);
    let (status, mut updates) = status_channel();
    let reconnecting = tokio::spawn(async move {
        let options = ReconnectOptions {
            status,
            network: Box::new(NoNetworkChanges),
        };
        dialer.serve_with_reconnect(router, options).await
    });
    let quick = relay.at(&format!("/agents/{}/api/quick", agent.id));
    assert_eq!(get_when_online(&browser, &quick).await.0, 200);
    assert!(matches!(
        *updates.borrow_and_update(),
        TunnelStatus::Connected { .. }
    ));

    // A download in progress when the agent is revoked.
    let held = browser
        .get(relay.at(&format!("/agents/{}/api/hold", agent.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    test_agent.wait_for_holds(1).await;

    let page = page_text(&browser, relay.at("/agents")).await;
    let r = browser
        .post(relay.at(&format!("/agents/{}/revoke", agent.id)))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // The open stream ends at once with an error (not a hang, not a clean end).
    let body = tokio::time::timeout(Duration::from_secs(5), held.bytes())
        .await
        .expect("the stream of a revoked agent kept hanging");
    assert!(body.is_err(), "the stream ended cleanly: {body:?}");

    // The agent redials, is refused `agent.revoked`, and stops: needs sign-in.
    let err = tokio::time::timeout(Duration::from_secs(10), reconnecting)
        .await
        .expect("the agent kept redialing after revocation")
        .unwrap();
    assert!(err.needs_sign_in(), "{err:?}");
    match &*updates.borrow() {
        TunnelStatus::NeedsSignIn { reason } => {
            assert!(reason.contains("agent.revoked"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The route is gone for the owner too.
    assert_eq!(get(&browser, &quick).await.0, 404);
}
