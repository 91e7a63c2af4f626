//! Commands a browser runs through the relay on the runtime's agent: "Stop all remote access now"
//! (a pause) and a stop kill a running command, denials reach the host as they happen, and an
//! agent that gave back its idle pages (`katachi_core::memory`) still serves.

use std::path::Path;
use std::time::{Duration, Instant};

use katachi_core::agent::{Status, WhenSignedOut};
use katachi_core::sandbox::DenialKind;
use katachi_core::store::{Actor, AddOutcome, Workspace};

use super::agent_runtime::{eventually, start_agent, Running};
use super::relay_support::{LocalRelay, PATIENCE};

/// How long a killed command may take to be gone.
const KILLED_WITHIN: Duration = Duration::from_secs(10);

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

    /// `GET /status`'s HTTP status.
    async fn status_code(&self) -> u16 {
        self.client
            .get(format!("{}/status", self.api))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Pids of processes whose command line contains `marker` (the sandbox's PID namespace is
/// visible from here), this test process excluded.
fn pids_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

/// Starts `tail -f {marker}.log` through the relay and returns its response once its first
/// line arrived (the command runs).
fn start_follow(
    agent: &Running,
    browser: &Browser,
    ws: i64,
    dir: &Path,
    marker: &str,
) -> reqwest::Response {
    let log = format!("{marker}.log");
    std::fs::write(dir.join(&log), "first line\n").unwrap();
    let mut response = agent.rt.block_on(async {
        let response = browser.run(ws, "tail", &["-f", &log]).await;
        assert_eq!(response.status(), 200);
        response
    });
    let first = agent
        .rt
        .block_on(async { tokio::time::timeout(PATIENCE, response.chunk()).await })
        .expect("the run's first line")
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("first line"),
        "{first:?}"
    );
    assert!(!pids_with(marker).is_empty(), "tail is not running");
    // it does not end by itself: only what the test does next can end it
    std::thread::sleep(Duration::from_millis(500));
    assert!(!pids_with(marker).is_empty(), "tail ended by itself");
    response
}

/// Waits (up to [`KILLED_WITHIN`]) until no process carries `marker`, and until the browser's
/// response has ended (cut or finished: it never hangs).
fn assert_killed(agent: &Running, mut response: reqwest::Response, marker: &str) {
    let started = Instant::now();
    while !pids_with(marker).is_empty() {
        assert!(
            started.elapsed() < KILLED_WITHIN,
            "still running after {KILLED_WITHIN:?}: {:?}",
            pids_with(marker)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.rt.block_on(async {
        let ended = tokio::time::timeout(KILLED_WITHIN, async {
            while let Ok(Some(_)) = response.chunk().await {}
        })
        .await;
        assert!(ended.is_ok(), "the browser's response never ended");
    });
}

/// Waits until `agent` is connected, allows a fresh folder through its handle (as the tray does)
/// and until the relay holds its tunnel; the folder, its workspace and a signed-in browser.
fn online_with_a_workspace(
    relay: &LocalRelay,
    agent: &Running,
) -> (tempfile::TempDir, Workspace, Browser) {
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
    let browser = Browser::of(relay, agent);
    eventually("the relay sees the tunnel", || {
        relay.tunnel_is_up(&agent.agent_id)
    });
    (dir, workspace, browser)
}

#[test]
fn stop_all_remote_access_kills_a_running_command_and_keeps_the_agent_down_until_resumed() {
    let relay = LocalRelay::start();
    let mut agent = start_agent(&relay, WhenSignedOut::End);
    let (dir, workspace, browser) = online_with_a_workspace(&relay, &agent);
    let handle = agent.agent.clone();

    // A run that lasts until it is stopped; then "Stop all remote access now" (the tray's
    // pause with no end): the command is killed, the browser's stream ends.
    let marker = format!("katachi-stop-all-{}", std::process::id());
    let running = start_follow(&agent, &browser, workspace.id, dir.path(), &marker);
    agent
        .rt
        .block_on(handle.pause(Duration::from_secs(10 * 365 * 24 * 3600)))
        .unwrap();
    assert_killed(&agent, running, &marker);

    // It stays down: no tunnel, the browser is told the agent is offline, still paused later.
    std::thread::sleep(Duration::from_secs(2));
    assert!(matches!(
        *agent.agent.status().borrow(),
        Status::Paused { .. }
    ));
    assert!(!relay.tunnel_is_up(&agent.agent_id));
    assert_eq!(agent.rt.block_on(browser.status_code()), 503);

    // Until resumed: then runs work again, and stopping the agent kills a running one too.
    agent.rt.block_on(handle.resume()).unwrap();
    agent.status_until("connected again", |s| matches!(s, Status::Connected { .. }));
    eventually("the relay sees the tunnel again", || {
        relay.tunnel_is_up(&agent.agent_id)
    });
    let marker = format!("katachi-stop-{}", std::process::id());
    let running = start_follow(&agent, &browser, workspace.id, dir.path(), &marker);
    agent.rt.block_on(handle.stop()).unwrap();
    assert_killed(&agent, running, &marker);
    agent.end();
}

#[test]
fn a_command_the_sandbox_denies_through_the_relay_reaches_the_hosts_denial_feed() {
    let relay = LocalRelay::start();
    let agent = start_agent(&relay, WhenSignedOut::End);
    let (dir, workspace, browser) = online_with_a_workspace(&relay, &agent);
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

#[test]
fn an_agent_whose_idle_pages_were_released_keeps_heartbeating_and_serving_the_browser() {
    let relay = LocalRelay::start();
    let agent = start_agent(&relay, WhenSignedOut::End);
    agent.status_until("connected", |s| matches!(s, Status::Connected { .. }));
    let browser = Browser::of(&relay, &agent);
    assert_eq!(agent.rt.block_on(browser.status_code()), 200);

    // what `katachi start` and the tray do 20 s after the connection came up, here at once (the
    // agent runs in this process, as in theirs)
    let released = katachi_core::memory::release_idle_pages();
    assert!(released.skipped.is_none(), "{released:?}");
    assert!(
        released.mappings > 0 && released.file_kib > 0,
        "{released:?}"
    );

    // the code it gave back runs again: the API answers and heartbeats go on
    assert_eq!(agent.rt.block_on(browser.status_code()), 200);
    let beat = agent.agent.session_status().borrow().last_heartbeat_at;
    eventually("a heartbeat after the release", || {
        agent.agent.session_status().borrow().last_heartbeat_at > beat
    });
    assert!(matches!(
        *agent.agent.status().borrow(),
        Status::Connected { .. }
    ));
}
