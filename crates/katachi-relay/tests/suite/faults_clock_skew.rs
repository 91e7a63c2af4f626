//! The agent's clock 5 minutes ahead and 5 minutes behind the relay's (issue 14, "Faults"): the
//! real agent runtime with a skewed clock seam (`SkewedClock`) against an in-process relay whose
//! metrics listener counts every refused signed call by its code.
//!
//! The agent learns the offset from the relay's `Date` header once — at most one refused call for
//! its session and one for its tunnel, which dial at the same moment; the agent's relay link keeps
//! the offset for every later connection and online period. From then on heartbeats are accepted,
//! the tunnel serves the browser, fresh online periods (pause, resume) work at once, and no call
//! is ever refused as a replay, as a bad signature or in any way that would make the agent sign in
//! again.
//!
//! Online periods after the first: `KATACHI_CLOCK_SKEW_ROUNDS` (default 1).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_core::signing::SkewedClock;
use katachi_core::store::{Actor, AddOutcome};
use katachi_core::tunnel::NoNetworkChanges;
use katachi_core::workspace_admin;
use prometheus_parse::{Scrape, Value as Sample};
use reqwest::Client;

use super::fault_agent;
use super::support::{registered_agent, Backend, TestRelay};

/// Longest wait for anything the test waits on.
const WITHIN: Duration = Duration::from_secs(30);
/// The skew the issue names.
const SKEW_SECS: i64 = 5 * 60;
/// Refusal codes that correct the clock (the call is retried with the learnt offset).
const CLOCK_CODES: [&str; 2] = ["signature.stale_timestamp", "signature.future_timestamp"];
/// Refusals a skewed clock must never cause: a false replay, or one that makes the agent sign in
/// again.
const FALSE_REFUSALS: [&str; 4] = [
    "signature.replayed_nonce",
    "signature.bad_signature",
    "agent.unknown",
    "agent.revoked",
];

/// Refused signed calls by code, and accepted heartbeats, from the relay's `/metrics`.
async fn scrape(relay: &TestRelay) -> (BTreeMap<String, f64>, f64) {
    let addr = relay.metrics.expect("a metrics listener");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |s: &prometheus_parse::Sample| match s.value {
        Sample::Counter(v) | Sample::Untyped(v) | Sample::Gauge(v) => v,
        _ => panic!("{} is not a counter", s.metric),
    };
    let mut refused = BTreeMap::new();
    let mut beats = 0.0;
    for s in &scrape.samples {
        match s.metric.as_str() {
            "katachi_relay_signed_calls_rejected_total" => {
                let code = s.labels.get("code").unwrap_or("?").to_owned();
                *refused.entry(code).or_insert(0.0) += value(s);
            }
            "katachi_relay_heartbeats_total" => beats += value(s),
            _ => {}
        }
    }
    (refused, beats)
}

/// Polls `url` until it answers `200`.
async fn wait_for_200(client: &Client, url: &str) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(5), client.get(url).send()).await;
        if matches!(answer, Ok(Ok(ref r)) if r.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One run with the agent's clock `skew` seconds off.
async fn run_with_skew(skew: i64) {
    let relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let (browser, agent) = registered_agent(&relay, &format!("skew{skew}@example.com")).await;
    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("project");
    std::fs::create_dir(&workspace).unwrap();
    std::fs::write(workspace.join("hello.txt"), b"on time").unwrap();
    let home = fault_agent::open_home(tmp.path());
    let AddOutcome::Added { workspace: ws, .. } =
        workspace_admin::add_workspace(&home, Actor::Cli, &workspace).unwrap()
    else {
        panic!("not added")
    };
    fault_agent::save_credentials(&home, &relay.url, &relay.ca, &agent);
    let (runtime, task) = fault_agent::launch(
        &home,
        Arc::new(SkewedClock::new(skew)),
        Box::new(NoNetworkChanges),
    );
    let file = relay.at(&format!(
        "/agents/{}/api/v1/workspaces/{}/file?path=hello.txt",
        agent.id, ws.id
    ));

    // The tunnel serves the browser, and the session learnt the offset.
    wait_for_200(&browser, &file).await;
    let mut session = runtime.session_status();
    let learnt = tokio::time::timeout(
        WITHIN,
        session
            .wait_for(|s| s.last_heartbeat_at.is_some() && (s.clock_offset_secs + skew).abs() <= 2),
    )
    .await
    .unwrap_or_else(|_| panic!("skew {skew}: no heartbeat with the offset corrected"))
    .unwrap()
    .clock_offset_secs;

    // Heartbeats go on being accepted.
    let (_, beats_before) = scrape(&relay).await;
    tokio::time::sleep(fault_agent::HEARTBEAT * 8).await;
    let (_, beats_after) = scrape(&relay).await;
    assert!(
        beats_after >= beats_before + 4.0,
        "skew {skew}: heartbeats stalled ({beats_before} → {beats_after})"
    );

    // Fresh online periods (new session, new tunnel, the same offset) work each time.
    let periods = fault_agent::rounds("KATACHI_CLOCK_SKEW_ROUNDS", 1);
    let mut beats_resumed = beats_after;
    for _ in 0..periods {
        runtime.pause(Duration::from_secs(600)).await.unwrap();
        runtime.resume().await.unwrap();
        wait_for_200(&browser, &file).await;
        beats_resumed = scrape(&relay).await.1;
        tokio::time::sleep(fault_agent::HEARTBEAT * 4).await;
    }
    let (refused, beats_end) = scrape(&relay).await;
    assert!(
        beats_end > beats_resumed,
        "skew {skew}: no heartbeat after resuming"
    );

    // Clock refusals only while the offset was unknown (session and tunnel, once); never a replay,
    // never a refusal that would make the agent sign in again. (A transient server-side refusal,
    // such as a busy database, would be printed below; it is not the clock's doing.)
    let clock: f64 = CLOCK_CODES
        .iter()
        .map(|c| refused.get(*c).copied().unwrap_or(0.0))
        .sum();
    assert!(
        clock <= 2.0,
        "skew {skew}: {clock} clock refusals over {} online periods: {refused:?}",
        periods + 1
    );
    for wrong in FALSE_REFUSALS {
        assert_eq!(
            refused.get(wrong).copied().unwrap_or(0.0),
            0.0,
            "skew {skew}: refused as {wrong}: {refused:?}"
        );
    }
    let agents: serde_json::Value = browser
        .get(relay.at("/api/me/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents[0]["status"], "online", "skew {skew}");
    eprintln!(
        "clock skew {skew:+} s: {} online periods, offset learnt {learnt:+} s, {beats_end} heartbeats accepted, refusals: {refused:?} (0 replays)",
        periods + 1
    );
    runtime.stop().await.unwrap();
    tokio::time::timeout(WITHIN, task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_clock_five_minutes_ahead_is_corrected_and_no_call_is_refused_as_a_replay() {
    run_with_skew(SKEW_SECS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_clock_five_minutes_behind_is_corrected_and_no_call_is_refused_as_a_replay() {
    run_with_skew(-SKEW_SECS).await;
}
