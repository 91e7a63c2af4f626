//! The workbench page `GET /agents/{id}` and its bundled assets: only the agent's owner sees it,
//! signed-out visitors are sent to sign in, and the page runs under the unchanged strict CSP.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_gets_the_workbench_of_their_agent_linked_from_my_agents() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "owner@example.com").await;
    let list = page_text(&browser, relay.at("/agents")).await;
    assert!(
        list.contains(&format!("href=\"/agents/{}\"", agent.id)),
        "My agents does not link the workbench: {list}"
    );
    let r = browser
        .get(relay.at(&format!("/agents/{}", agent.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self';") && csp.contains("style-src 'self';"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    for needle in [
        format!("data-agent-id=\"{}\"", agent.id).as_str(),
        "id=\"workspace-picker\"",
        "id=\"file-tree\"",
        "id=\"git-status\"",
        "src=\"/static/workbench.js\"",
        "href=\"/static/workbench.css\"",
        "build-box",
    ] {
        assert!(html.contains(needle), "no {needle} in {html}");
    }
    // No inline script or style: the CSP would block it.
    assert!(!html.contains("<style"), "{html}");
    assert!(!html.contains(" style="), "{html}");
    assert!(!html.contains("<script>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_agent_and_unknown_or_revoked_ids_answer_the_same_404() {
    let relay = TestRelay::start().await;
    let (alice, agent) = registered_agent(&relay, "alice-wb@example.com").await;
    let bob = relay.client();
    sign_up(&relay, &bob, "bob-wb@example.com").await;
    let page = format!("/agents/{}", agent.id);

    let r = bob.get(relay.at(&page)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let other = r.text().await.unwrap();
    assert!(!other.contains(&agent.id), "{other}");
    assert!(!other.contains("build-box"), "{other}");
    let r = bob
        .get(relay.at("/agents/agt_no_such_agent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        other,
        "a foreign id must look unknown"
    );

    // Revoked: gone for its owner too.
    let list = page_text(&alice, relay.at("/agents")).await;
    let r = alice
        .post(relay.at(&format!("/agents/{}/revoke", agent.id)))
        .form(&[("csrf", csrf_of(&list))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = alice.get(relay.at(&page)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let list = page_text(&alice, relay.at("/agents")).await;
    assert!(
        !list.contains(&format!("href=\"{page}\"")),
        "a revoked agent is still linked: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_visitor_is_sent_to_sign_in_and_back() {
    let relay = TestRelay::start().await;
    let (_alice, agent) = registered_agent(&relay, "carol-wb@example.com").await;
    let r = relay
        .client()
        .get(relay.at(&format!("/agents/{}", agent.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!("/login?next=%2Fagents%2F{}", agent.id),
        "{location}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workbench_bundle_is_served_from_the_binary() {
    let relay = TestRelay::start().await;
    let client = relay.client();
    let r = client
        .get(relay.at("/static/workbench.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let js = r.text().await.unwrap();
    // CodeMirror is in the bundle (its editor class names), and so is the page's own code.
    assert!(js.contains("cm-editor"), "CodeMirror is not bundled");
    assert!(
        js.contains("workspace-picker"),
        "the workbench code is not bundled"
    );
    assert!(
        js.len() > 100_000,
        "suspiciously small bundle: {} bytes",
        js.len()
    );
    let r = client
        .get(relay.at("/static/workbench.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert!(r.text().await.unwrap().contains(".wb-line.add"));
}
