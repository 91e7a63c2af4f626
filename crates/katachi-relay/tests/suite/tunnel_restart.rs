//! The relay killed (SIGKILL) mid-download and restarted, round after round (issue 14, "Faults"): a
//! real `katachi-relay` child process on the same port and data dir, and the real agent runtime
//! (`katachi_core::agent::Agent`, as `katachi start` runs it) on an agent home.
//!
//! Each round: the browser's download is cut and ends in an error (never a hang, never a "complete"
//! short body); the agent's tunnel is back by itself soon after the relay answers again (the time
//! is printed each round: the issue asks for 2 s; the test fails only past [`FAIL_AFTER`]); the
//! agent keeps producing activity events (workspace changes, through the store's outbox) before,
//! during and after the outage. At the end every event it produced is in the relay's database
//! exactly once and its outbox is empty: none lost.
//!
//! Rounds: `KATACHI_RELAY_KILL_ROUNDS` (default 2; the 20 are recorded in
//! docs/PERFORMANCE.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use katachi_core::agent::Agent as AgentRuntime;
use katachi_core::signing::SystemClock;
use katachi_core::store::{Actor, AddOutcome};
use katachi_core::tunnel::{backoff::STABLE_AFTER, NoNetworkChanges, TunnelStatus};
use reqwest::Client;
use sha2::Digest;

use super::fault_agent::{self, Timings};
use super::relay_child::{free_port, relay_command, Child};
use super::support::{registered_agent, TestRelay};

/// Size of the file downloaded while the relay dies (far above both hops' flow-control windows).
const BIG_FILE_BYTES: usize = 48 << 20;
/// What the issue asks for: back within 2 s of the relay coming back.
const REQUIRED: Duration = Duration::from_secs(2);
/// Where the test fails (slack for a loaded CI machine); the measured time is printed.
const FAIL_AFTER: Duration = Duration::from_secs(5);
/// Longest wait for anything else (a relay start, the agent noticing, events arriving).
const WITHIN: Duration = Duration::from_secs(30);

/// A `katachi-relay` process on `port` with its data in `data_dir`, killed when dropped.
fn spawn_relay(port: u16, data_dir: &Path) -> Child {
    Child::spawn(&mut relay_command(&format!("127.0.0.1:{port}"), data_dir))
}

/// Polls `url` until it answers `200`; when it did.
async fn wait_for_200(client: &Client, url: &str, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let answer = tokio::time::timeout(Duration::from_secs(2), client.get(url).send()).await;
        if let Ok(Ok(r)) = answer {
            if r.status() == 200 {
                return Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Names and contents' hashes of the files in `dir`.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let hash = hex::encode(sha2::Sha256::digest(std::fs::read(e.path()).unwrap()));
            (e.file_name().to_string_lossy().into_owned(), hash)
        })
        .collect();
    files.sort();
    files
}

/// Produces activity events the way a user does: allowing and removing folders through the
/// agent (store, audit record, outbox event), remembering each `(kind, path)` it caused.
struct EventMaker {
    agent: AgentRuntime,
    dir: PathBuf,
    next: usize,
    allowed: Vec<String>,
    made: Vec<(String, String)>,
}

impl EventMaker {
    /// Allows a fresh folder: one `workspace.added` event.
    async fn allow_new(&mut self) {
        let folder = self.dir.join(format!("folder-{}", self.next));
        self.next += 1;
        std::fs::create_dir(&folder).unwrap();
        let outcome = self.agent.add_workspace(Actor::Cli, folder).await.unwrap();
        let AddOutcome::Added { workspace, .. } = outcome else {
            panic!("not added: {outcome:?}");
        };
        self.made
            .push(("workspace.added".to_owned(), workspace.path.clone()));
        self.allowed.push(workspace.path);
    }

    /// Removes the oldest folder it allowed: one `workspace.removed` event.
    async fn remove_oldest(&mut self) {
        let path = self.allowed.remove(0);
        self.agent
            .remove_workspace(Actor::Cli, PathBuf::from(&path))
            .await
            .unwrap();
        self.made.push(("workspace.removed".to_owned(), path));
    }
}

/// The relay's stored events of `agent_id`: `(event_id, kind, path)`, read from its SQLite file.
async fn stored_events(data_dir: &Path, agent_id: &str) -> Vec<(String, String, String)> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=ro", data_dir.join("relay.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT event_id, kind, payload FROM events WHERE agent_id = $1")
        .bind(agent_id)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| {
            use sqlx::Row;
            let payload: serde_json::Value =
                serde_json::from_str(&r.get::<String, _>("payload")).unwrap();
            (
                r.get("event_id"),
                r.get("kind"),
                payload["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Starts the relay process and waits until it accepts connections; when it did.
async fn start_relay(port: u16, data_dir: &Path) -> (Child, Instant) {
    let process = spawn_relay(port, data_dir);
    let ca = data_dir.join("tls").join("ca.pem");
    let deadline = Instant::now() + WITHIN;
    while !(ca.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) {
        assert!(Instant::now() < deadline, "the relay never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (process, Instant::now())
}

/// Reads the download until it ends: an error or a short body, never a hang or a full body.
async fn assert_download_cut(mut download: reqwest::Response, mut received: u64, round: u32) {
    let announced = BIG_FILE_BYTES as u64;
    let outcome = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match download.chunk().await {
                Ok(Some(chunk)) => received += chunk.len() as u64,
                Ok(None) => return Ok(received),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("round {round}: the download hung after the relay died"));
    match outcome {
        Err(e) => eprintln!("round {round}: download broke as expected: {e}"),
        Ok(total) => assert!(
            total < announced,
            "round {round}: a full body from a dead relay?"
        ),
    }
    assert!(
        received < announced,
        "round {round}: the whole file arrived before the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_download_each_round_the_browser_gets_an_error_the_agent_is_back_and_no_event_is_lost(
) {
    let rounds = fault_agent::rounds("KATACHI_RELAY_KILL_ROUNDS", 2);
    let data = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = data.path().join("relay");
    let port = free_port();
    let url = format!("https://localhost:{port}");
    let mut relay_process = Some(start_relay(port, &data_dir).await.0);
    let relay = TestRelay::external(
        url.clone(),
        data_dir.join("tls").join("ca.pem"),
        data_dir.clone(),
    );
    assert!(
        wait_for_200(&relay.client(), &relay.at("/login"), WITHIN)
            .await
            .is_some(),
        "the relay never answered"
    );
    let (browser, agent) = registered_agent(&relay, "ivy@example.com").await;

    // The agent: a workspace with one big file, its home registered at the relay.
    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("project");
    std::fs::create_dir(&workspace).unwrap();
    let big: Vec<u8> = (0..BIG_FILE_BYTES).map(|i| (i % 251) as u8).collect();
    std::fs::write(workspace.join("big.bin"), &big).unwrap();
    std::fs::write(workspace.join("small.txt"), b"still here").unwrap();
    let before = snapshot(&workspace);
    let home = fault_agent::open_home(tmp.path());
    fault_agent::save_credentials(&home, &url, &relay.ca, &agent);
    let (runtime, task) = fault_agent::launch(
        &home,
        std::sync::Arc::new(SystemClock),
        Box::new(NoNetworkChanges),
    );
    let mut events = EventMaker {
        agent: runtime.clone(),
        dir: tmp.path().join("folders"),
        next: 0,
        allowed: Vec::new(),
        made: Vec::new(),
    };
    std::fs::create_dir(&events.dir).unwrap();
    let added = runtime
        .add_workspace(Actor::Cli, workspace.clone())
        .await
        .unwrap();
    let AddOutcome::Added { workspace: ws, .. } = added else {
        panic!("{added:?}")
    };
    events
        .made
        .push(("workspace.added".to_owned(), ws.path.clone()));
    let file = |name: &str| {
        relay.at(&format!(
            "/agents/{}/api/v1/workspaces/{}/file?path={name}",
            agent.id, ws.id
        ))
    };
    let mut connected_at = wait_for_200(&browser, &file("small.txt"), WITHIN)
        .await
        .expect("the agent never came online");
    let mut tunnel = runtime.tunnel_status();
    let started = Instant::now();
    let mut back = Timings::default();
    let mut back_after_listening = Timings::default();

    for round in 1..=rounds {
        // Events while the relay is up.
        events.allow_new().await;
        events.allow_new().await;
        // A drop counts as an outage (fast redials) only after a stable tunnel: the agent's
        // policy against a relay that accepts and closes at once. Real restarts are that rare.
        let up = connected_at.elapsed();
        if up < STABLE_AFTER {
            tokio::time::sleep(STABLE_AFTER - up + Duration::from_millis(200)).await;
        }

        // A large download, read slowly: most of it is still to come when the relay dies.
        let mut download = browser.get(file("big.bin")).send().await.unwrap();
        assert_eq!(download.status(), 200, "round {round}");
        assert_eq!(download.content_length(), Some(BIG_FILE_BYTES as u64));
        let received = download.chunk().await.unwrap().unwrap().len() as u64;
        relay_process.take().unwrap().kill();
        assert_download_cut(download, received, round).await;

        // The agent notices and keeps redialing; events made now wait in its outbox.
        tokio::time::timeout(
            WITHIN,
            tunnel.wait_for(|s| matches!(s, TunnelStatus::Reconnecting { .. })),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: the agent did not notice the relay was gone"))
        .unwrap();
        events.remove_oldest().await;
        events.allow_new().await;

        // Down for a moment, then back on the same port with the same data.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (process, listening) = start_relay(port, &data_dir).await;
        relay_process = Some(process);
        let answering = wait_for_200(&relay.client(), &relay.at("/login"), WITHIN)
            .await
            .unwrap_or_else(|| panic!("round {round}: the restarted relay never answered"));
        let agent_back = wait_for_200(&browser, &file("small.txt"), FAIL_AFTER + WITHIN)
            .await
            .unwrap_or_else(|| panic!("round {round}: the agent never came back"));
        // The relay binds its port before it sets up (database, TLS): a redial that lands in
        // between waits in the listen queue and is served the moment the relay is. Its return is
        // when it answers; the time from binding is printed too.
        let measured = agent_back.saturating_duration_since(answering);
        let from_listening = agent_back.saturating_duration_since(listening);
        eprintln!(
            "round {round}: tunnel back {} ms after the relay answered again ({} ms after it listened; required: {} ms)",
            measured.as_millis(),
            from_listening.as_millis(),
            REQUIRED.as_millis()
        );
        assert!(
            measured <= FAIL_AFTER,
            "round {round}: the agent took {measured:?} to reconnect"
        );
        back_after_listening.0.push(from_listening);
        back.0.push(measured);
        connected_at = agent_back;
        // And an event once it is back.
        events.remove_oldest().await;
    }
    let per_round = started.elapsed() / rounds;

    // Nothing lost: every event the agent made is stored once, its outbox is empty.
    let mut expected = events.made.clone();
    expected.sort();
    let deadline = Instant::now() + WITHIN;
    let stored = loop {
        let stored = stored_events(&data_dir, &agent.id).await;
        let pending = home.store().unwrap().outbox().pending_count().unwrap();
        if stored.len() >= expected.len() && pending == 0 {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "events still missing: {} of {} stored, {pending} pending",
            stored.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut ids: Vec<&str> = stored.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), stored.len(), "an event id stored twice");
    let mut got: Vec<(String, String)> = stored
        .into_iter()
        .map(|(_, kind, path)| (kind, path))
        .collect();
    got.sort();
    assert_eq!(
        got, expected,
        "the relay's events are not exactly the agent's"
    );

    // The browser session, the agent row and the workspace survived every kill.
    let agents: serde_json::Value = browser
        .get(relay.at("/api/me/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents[0]["id"], agent.id.as_str());
    assert_eq!(agents[0]["status"], "online");
    assert_eq!(snapshot(&workspace), before);
    let full = browser.get(file("big.bin")).send().await.unwrap();
    assert_eq!(full.bytes().await.unwrap().as_ref(), big.as_slice());
    eprintln!(
        "relay kill -9 mid-download: {rounds} rounds, 0 failures, {} ms per round, tunnel back after the relay answered again: {} (after it listened again: {}), {} events, 0 lost, 0 duplicated",
        per_round.as_millis(),
        back.summary(),
        back_after_listening.summary(),
        expected.len()
    );
    runtime.stop().await.unwrap();
    tokio::time::timeout(WITHIN, task).await.unwrap().unwrap();
}
