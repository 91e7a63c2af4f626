//! PostgreSQL restarted under load (issue 14, "Faults"): two relay instances on a PostgreSQL server
//! of the test's own (`pg_server.rs`), an agent's tunnel on the first, and a bounded load of signed
//! heartbeats and browser reads through the tunnel while the server is stopped and started again
//! (`-m fast`, `-m immediate`) or restarted in one step (`pg_ctl restart -m fast`).
//!
//! The relays are never restarted. While the database is gone every request ends within its
//! bound with a `503` and a code saying why (never a hang, never another error); `/readyz` says
//! not ready; once it is back requests succeed again, `/readyz` says ready, and each instance's
//! LISTEN connection (revocations, sign-outs, take-overs) is back — a revocation made on the second
//! instance after the last restart ends the first instance's held download and tunnel.
//!
//! Rounds: `KATACHI_PG_RESTART_ROUNDS` (default 3: one of each kind; longer runs in
//! docs/PERFORMANCE.md).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use katachi_core::tunnel::{status_channel, NoNetworkChanges, ReconnectOptions};
use reqwest::Client;

use super::fault_agent::{self, Timings};
use super::pg_server::{PgServer, StopMode};
use super::support::{
    code, csrf_of, page_text, registered_agent, send_signed, Agent, Backend, Signed, TestRelay,
};
use super::tunnel::dialer;
use super::tunnel_limits::TestAgent;

/// Longest wait for anything the test waits on.
const WITHIN: Duration = Duration::from_secs(30);
/// Longest a request may take, whatever the database does: the pool's acquire timeout
/// (`katachi_relay::store::ACQUIRE_TIMEOUT`, 3 s) and slack. A request past it counts as hung.
const REQUEST_BOUND: Duration = Duration::from_secs(15);
/// How long the database stays down in a stop-and-start round.
const DOWN_FOR: Duration = Duration::from_secs(3);
/// Pause between two requests of one load loop.
const PACE: Duration = Duration::from_millis(50);

/// One request of the load: what it got and how long it took.
#[derive(Debug, Clone)]
struct Outcome {
    /// `heartbeat` or `read`.
    kind: &'static str,
    /// When it was sent.
    at: Instant,
    /// How long the answer took (`None`: no answer within [`REQUEST_BOUND`]).
    took: Option<Duration>,
    /// The status (0 when there was no answer).
    status: u16,
    /// The error code of a refusal.
    code: String,
}

/// The round kinds, in turn.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// `pg_ctl stop -m MODE`, [`DOWN_FOR`], `pg_ctl start`.
    StopAndStart(StopMode),
    /// `pg_ctl restart -m fast`.
    Restart,
}

fn outage_of(round: u32) -> Outage {
    match round % 3 {
        1 => Outage::StopAndStart(StopMode::Fast),
        2 => Outage::StopAndStart(StopMode::Immediate),
        _ => Outage::Restart,
    }
}

/// Runs `call` every [`PACE`] until `stop`, recording each outcome in `log`.
fn load<F, Fut>(
    kind: &'static str,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Outcome>>>,
    call: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (u16, String)> + Send,
{
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let at = Instant::now();
            let outcome = match tokio::time::timeout(REQUEST_BOUND, call()).await {
                Ok((status, code)) => Outcome {
                    kind,
                    at,
                    took: Some(at.elapsed()),
                    status,
                    code,
                },
                Err(_) => Outcome {
                    kind,
                    at,
                    took: None,
                    status: 0,
                    code: "hung".into(),
                },
            };
            log.lock().unwrap().push(outcome);
            tokio::time::sleep(PACE).await;
        }
    })
}

/// A signed heartbeat: status and error code.
async fn heartbeat(relay: &TestRelay, client: &Client, agent: &Agent) -> (u16, String) {
    let (status, body, _) = send_signed(
        relay,
        client,
        agent,
        &Signed::new(
            "/api/agent/heartbeat",
            br#"{"version":"0.1.0","workspaces":1}"#,
        ),
    )
    .await;
    (status, code(&body).to_owned())
}

/// A browser read through the tunnel: status and error code.
async fn read(client: &Client, url: &str) -> (u16, String) {
    match client.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            (status, code(&v).to_owned())
        }
        Err(e) => (0, format!("transport: {e}")),
    }
}

/// `/readyz`'s status.
async fn readyz(relay: &TestRelay, client: &Client) -> u16 {
    match tokio::time::timeout(
        Duration::from_secs(5),
        client.get(relay.at("/readyz")).send(),
    )
    .await
    {
        Ok(Ok(r)) => r.status().as_u16(),
        _ => 0,
    }
}

/// Polls until `check` holds; when it did.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) -> Instant {
    let deadline = Instant::now() + WITHIN;
    loop {
        if check().await {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn listening(relay: &TestRelay) -> bool {
    relay.state.as_ref().unwrap().cluster.is_listening()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_the_relays_answer_503_meanwhile_and_recover_without_a_restart(
) {
    let rounds = fault_agent::rounds("KATACHI_PG_RESTART_ROUNDS", 3);
    let pg = PgServer::start();
    let url = pg.url();
    let first =
        TestRelay::start_with(Backend::Sqlite, |c| c.database_url = Some(url.clone())).await;
    let second = first.second_instance().await;
    let (browser, agent) = registered_agent(&first, "pg-restart@example.com").await;
    let test_agent = TestAgent::default();
    let (status, _updates) = status_channel();
    let tunnel = {
        let (dialer, router) = (dialer(&first, &agent), test_agent.router());
        tokio::spawn(async move {
            let options = ReconnectOptions {
                status,
                network: Box::new(NoNetworkChanges),
            };
            dialer.serve_with_reconnect(router, options).await
        })
    };
    let quick = first.at(&format!("/agents/{}/api/quick", agent.id));
    until("the agent is online", async || {
        read(&browser, &quick).await.0 == 200
    })
    .await;
    let probe = first.client();
    until("both instances listen", async || {
        listening(&first) && listening(&second)
    })
    .await;

    // The load: heartbeats and reads, each pacing itself, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let first = Arc::new(first);
    let heartbeats = {
        let (relay, client, agent) = (Arc::clone(&first), first.client(), agent.clone());
        load("heartbeat", stop.clone(), log.clone(), move || {
            let (relay, client, agent) = (relay.clone(), client.clone(), agent.clone());
            async move { heartbeat(&relay, &client, &agent).await }
        })
    };
    let reads = {
        let (client, url) = (browser.clone(), quick.clone());
        load("read", stop.clone(), log.clone(), move || {
            let (client, url) = (client.clone(), url.clone());
            async move { read(&client, &url).await }
        })
    };

    let started = Instant::now();
    let (mut not_ready, mut ready_again, mut serving_again, mut listening_again) = (
        Timings::default(),
        Timings::default(),
        Timings::default(),
        Timings::default(),
    );
    for round in 1..=rounds {
        let outage = outage_of(round);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let down = Instant::now();
        match outage {
            Outage::StopAndStart(mode) => {
                tokio::task::block_in_place(|| pg.stop(mode));
                let refused = until("/readyz says not ready", async || {
                    readyz(&first, &probe).await == 503
                })
                .await;
                not_ready.0.push(refused - down);
                until("the LISTEN connection notices", async || !listening(&first)).await;
                tokio::time::sleep(DOWN_FOR).await;
                tokio::task::block_in_place(|| pg.start_again());
            }
            Outage::Restart => tokio::task::block_in_place(|| pg.restart(StopMode::Fast)),
        }
        let up = Instant::now();
        let ready = until("/readyz says ready again", async || {
            readyz(&first, &probe).await == 200
        })
        .await;
        let serving = until("heartbeats and reads succeed again", async || {
            let log = log.lock().unwrap();
            ["heartbeat", "read"].iter().all(|kind| {
                log.iter()
                    .any(|o| o.kind == *kind && o.at > up && o.status == 200)
            })
        })
        .await;
        let back = until("both instances listen again", async || {
            listening(&first) && listening(&second)
        })
        .await;
        eprintln!(
            "round {round} ({outage:?}): database up again; /readyz ready after {} ms, load served after {} ms, LISTEN back after {} ms",
            (ready - up).as_millis(),
            (serving - up).as_millis(),
            (back - up).as_millis()
        );
        ready_again.0.push(ready - up);
        serving_again.0.push(serving - up);
        listening_again.0.push(back - up);
    }
    let per_round = started.elapsed() / rounds;
    stop.store(true, Ordering::SeqCst);
    heartbeats.await.unwrap();
    reads.await.unwrap();

    // Every request ended within its bound; every failure was a 503 saying why.
    let log = log.lock().unwrap().clone();
    let mut by_answer: BTreeMap<(&str, u16, String), usize> = BTreeMap::new();
    for o in &log {
        *by_answer
            .entry((o.kind, o.status, o.code.clone()))
            .or_default() += 1;
    }
    eprintln!("answers during the test: {by_answer:?}");
    let hung: Vec<_> = log.iter().filter(|o| o.took.is_none()).collect();
    assert!(
        hung.is_empty(),
        "requests without an answer within {REQUEST_BOUND:?}: {hung:?}"
    );
    let slowest = log.iter().filter_map(|o| o.took).max().unwrap_or_default();
    let unclean: Vec<_> = log
        .iter()
        .filter(|o| o.status != 200 && !(o.status == 503 && o.code == "relay.database_unavailable"))
        .collect();
    assert!(
        unclean.is_empty(),
        "failures other than 503 relay.database_unavailable: {unclean:?}"
    );

    // A revocation on the second instance still reaches the first at once (LISTEN is back).
    let held = browser
        .get(first.at(&format!("/agents/{}/api/hold", agent.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    test_agent.wait_for_holds(1).await;
    let page = page_text(&browser, second.at("/agents")).await;
    let revoked_at = Instant::now();
    let r = browser
        .post(second.at(&format!("/agents/{}/revoke", agent.id)))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let body = tokio::time::timeout(WITHIN, held.bytes())
        .await
        .expect("the held download outlived the revocation");
    assert!(body.is_err(), "the download ended cleanly: {body:?}");
    let ended_after = revoked_at.elapsed();
    tokio::time::timeout(WITHIN, tunnel)
        .await
        .expect("the revoked agent's tunnel stayed open")
        .unwrap();
    test_agent.release_all();
    eprintln!(
        "postgres restarted under load: {rounds} rounds, 0 failures, {} ms per round, {} requests ({} refused with 503 relay.database_unavailable, slowest {} ms, 0 hung); /readyz not ready after {}; ready again after {}; load served again after {}; LISTEN back after {}; a revocation on the other instance ended the stream in {} ms",
        per_round.as_millis(),
        log.len(),
        log.iter().filter(|o| o.status == 503).count(),
        slowest.as_millis(),
        not_ready.summary(),
        ready_again.summary(),
        serving_again.summary(),
        listening_again.summary(),
        ended_after.as_millis()
    );
}
