//! Commands a browser runs through the relay on the runtime's agent: denials reach the host as
//! they happen.

use katachi_core::agent::{Status, WhenSignedOut};
use katachi_core::sandbox::DenialKind;
use katachi_core::store::{Actor, AddOutcome};

use super::agent_runtime::{eventually, start_agent, Running};
use super::relay_support::{LocalRelay, PATIENCE};

/// A signed-in browser of the agent's owner, calling the agent's API through the relay.
struct Browser {
    client: reqwest::Client,
    cookie: String,
    /// `https://relay/agents/{id}/api/v1`.
    api: String,
    /// The relay's origin (state-changing calls must carry it).
    origin: String,
}

impl Browser {
    fn of(relay: &LocalRelay, agent: &Running) -> Self {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(relay.ca()).unwrap()).unwrap();
        Self {
            client: reqwest::Client::builder()
                .add_root_certificate(ca)
                .build()
                .unwrap(),
            cookie: relay.browser_cookie(&agent.user_id),
            api: format!("{}/agents/{}/api/v1", relay.url(), agent.agent_id),
            origin: relay.url().to_owned(),
        }
    }

    /// `POST /workspaces/{ws}/run` with `command args…`, as the workbench's Run panel sends it.
    async fn run(&self, ws: i64, command: &str, args: &[&str]) -> reqwest::Response {
        self.client
            .post(format!("{}/workspaces/{ws}/run", self.api))
            .header("cookie", &self.cookie)
            .header("origin", &self.origin)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "command": command, "args": args }).to_string())
            .send()
            .await
            .unwrap()
    }
}

#[test]
fn a_command_the_sandbox_denies_through_the_relay_reaches_the_hosts_denial_feed() {
    let relay = LocalRelay::start();
    let agent = start_agent(&relay, WhenSignedOut::End);
    agent.status_until("connected", |s| matches!(s, Status::Connected { .. }));
    let dir = tempfile::tempdir().unwrap();
    let handle = agent.agent.clone();
    let added = agent
        .rt
        .block_on(handle.add_workspace(Actor::Tray, dir.path().to_path_buf()))
        .unwrap();
    let AddOutcome::Added { workspace, .. } = added else {
        panic!("{added:?}")
    };
    let browser = Browser::of(&relay, &agent);
    eventually("the relay sees the tunnel", || {
        relay.tunnel_is_up(&agent.agent_id)
    });
    let mut denials = agent.agent.denials();

    let response = agent
        .rt
        .block_on(browser.run(workspace.id, "curl", &["-s", "example"]));
    assert_eq!(response.status(), 403);
    let denied = agent
        .rt
        .block_on(async { tokio::time::timeout(PATIENCE, denials.recv()).await })
        .expect("the denial is published")
        .unwrap();
    assert_eq!(denied.workspace, dir.path().canonicalize().unwrap());
    assert_eq!(denied.command, "curl -s example");
    assert_eq!(denied.denied.kind, DenialKind::Exec);
    assert_eq!(denied.denied.target, "curl");
    assert!(
        denied
            .denied
            .how_to_allow
            .contains("katachi sandbox policy set"),
        "{}",
        denied.denied.how_to_allow
    );
}
