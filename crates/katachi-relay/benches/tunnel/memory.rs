//! Relay memory per connected agent: N real tunnels (TCP, TLS 1.3, signed upgrade, HTTP/2) dialled
//! by `katachi_core::tunnel::TunnelDialer` from this process to the relay binary in its own
//! process, whose memory is read from `/proc` before, during and after.

use std::time::{Duration, Instant};

use crate::agent;
use crate::relay_process::{seed, Memory, RelayProcess};

/// Tunnels dialled at once before waiting for the relay to register them.
const DIAL_BATCH: usize = 50;

/// The relay's memory at each step.
pub struct MemoryReport {
    pub agents: usize,
    pub connect_time: Duration,
    /// Started, no agent connected.
    pub before: Memory,
    /// After the first `checkpoint.0` agents (to separate one-time costs from per-agent ones).
    pub checkpoint: (usize, Memory),
    /// All agents connected, 2 s later.
    pub connected: Memory,
    /// After `idle` more (HTTP/2 PINGs every 20 s on each tunnel).
    pub idle: Memory,
    pub idle_for: Duration,
    /// After one API call through each tunnel (stream state and buffers touched once).
    pub used: Memory,
    /// Tunnels that ended during the run (should be 0).
    pub ended: usize,
}

fn line(name: &str, m: &Memory, base: &Memory, agents: usize) -> String {
    let per = |now: u64, then: u64| (now as f64 - then as f64) / agents.max(1) as f64;
    format!(
        "{name:<36} RSS {:>8} KiB  PSS {:>8} KiB  private dirty {:>8} KiB   per agent: RSS {:>6.1} KiB  PSS {:>6.1} KiB",
        m.rss_kib,
        m.pss_kib,
        m.private_dirty_kib,
        per(m.rss_kib, base.rss_kib),
        per(m.pss_kib, base.pss_kib),
    )
}

impl MemoryReport {
    /// The readings, with per-agent figures against the empty relay.
    pub fn print(&self) {
        let (n, c) = &self.checkpoint;
        println!(
            "{} agents connected in {:.1} s ({} tunnels ended during the run)",
            self.agents,
            self.connect_time.as_secs_f64(),
            self.ended
        );
        println!(
            "{}",
            line("relay started, no agent", &self.before, &self.before, 1)
                .split("   per")
                .next()
                .unwrap_or("")
        );
        println!(
            "{}",
            line(&format!("{n} agents connected"), c, &self.before, *n)
        );
        println!(
            "{}",
            line(
                &format!("{} agents connected", self.agents),
                &self.connected,
                &self.before,
                self.agents
            )
        );
        println!(
            "{}",
            line(
                &format!("… idle {} s more", self.idle_for.as_secs()),
                &self.idle,
                &self.before,
                self.agents
            )
        );
        println!(
            "{}",
            line(
                "… after one API call each",
                &self.used,
                &self.before,
                self.agents
            )
        );
        let marginal =
            (self.idle.rss_kib as f64 - c.rss_kib as f64) / (self.agents - n).max(1) as f64;
        println!(
            "marginal RSS per idle agent ({n} → {}): {marginal:.1} KiB; extrapolated to 10k agents: {:.0} MiB",
            self.agents,
            (self.before.rss_kib as f64 + 10_000.0 * marginal) / 1024.0
        );
    }

    /// Marginal RSS per idle agent (checkpoint → all), in KiB.
    pub fn marginal_idle_kib(&self) -> f64 {
        let (n, c) = &self.checkpoint;
        (self.idle.rss_kib as f64 - c.rss_kib as f64) / (self.agents - n).max(1) as f64
    }
}

/// Runs the memory measurement with `agents` agents, idling `idle_for` once all are connected.
pub async fn run(agents: usize, idle_for: Duration) -> MemoryReport {
    let tmp = tempfile::tempdir().unwrap();
    let seeded = seed(&tmp.path().join("relay"), agents).await;
    let relay = RelayProcess::start(&seeded).await;
    let (_workspace, api) = agent::workspace();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = relay.memory();

    let checkpoint_at = (agents / 10).max(1);
    let mut checkpoint = None;
    let mut tunnels = Vec::with_capacity(agents);
    let start = Instant::now();
    for batch in seeded.users.chunks(DIAL_BATCH) {
        for user in batch {
            let dialer = agent::dialer(&relay.url, &seeded.ca_pem, &user.agent);
            let api = api.clone();
            tunnels.push(tokio::spawn(
                async move { dialer.dial_and_serve(api).await },
            ));
        }
        relay
            .wait_for_tunnels(tunnels.len(), Duration::from_secs(60))
            .await;
        if checkpoint.is_none() && tunnels.len() >= checkpoint_at {
            tokio::time::sleep(Duration::from_secs(1)).await;
            checkpoint = Some((tunnels.len(), relay.memory()));
        }
    }
    let connect_time = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = relay.memory();
    tokio::time::sleep(idle_for).await;
    let idle = relay.memory();

    // One call through every tunnel, each as its own user, 50 at a time.
    let browser = agent::browser_client(&seeded.ca_pem, None);
    let mut failed = Vec::new();
    for batch in seeded.users.chunks(DIAL_BATCH) {
        let mut calls = tokio::task::JoinSet::new();
        for user in batch {
            let request = browser
                .get(format!(
                    "{}/agents/{}/api/v1/status",
                    relay.url, user.agent.id
                ))
                .header(
                    reqwest::header::COOKIE,
                    agent::session_cookie(&user.session),
                );
            calls.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
        }
        while let Some(done) = calls.join_next().await {
            match done {
                Ok(Ok(200)) => {}
                other => failed.push(format!("{other:?}")),
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} calls failed, first: {}",
        failed.len(),
        failed[0]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = relay.memory();

    let ended = tunnels.iter().filter(|t| t.is_finished()).count();
    for t in &tunnels {
        t.abort();
    }
    relay.stop().await;
    MemoryReport {
        agents,
        connect_time,
        before,
        checkpoint: checkpoint.unwrap_or((0, before)),
        connected,
        idle,
        idle_for,
        used,
        ended,
    }
}
