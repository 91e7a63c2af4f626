//! The agents' side of the `fleet` part: many registered agents in this process, each holding a
//! real tunnel (`TunnelDialer`, serving the agent's router) and sending real signed heartbeats
//! (`RelayClient::heartbeat`, its own HTTPS connection) at the agent runtime's period, phases spread
//! at random over the period as agents started at different times would be.
//!
//! The tunnels run on one thread with a single-threaded runtime ("agents"), the heartbeats on
//! another ("heartbeats"): a modest share of this 2-core machine, and a heartbeat's latency is not
//! also the time a busy tunnel thread takes to get to it. Every heartbeat loop stops when its agent
//! is disconnected, after `MAX_BEATS`, or at the fleet's deadline, whichever comes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use katachi_proto::agent::Heartbeat;
use tokio::task::JoinHandle;

use crate::agent;
use crate::load::{Latencies, RuntimeThread};
use crate::relay_process::{RelayProcess, SeededUser};

/// Tunnels dialled at once before waiting for the relay to register them.
const DIAL_BATCH: usize = 50;
/// Most heartbeats one agent sends (a bound on every loop, far above a run's length).
const MAX_BEATS: u32 = 10_000;

/// One heartbeat as the agent saw it.
pub struct Beat {
    /// When it was sent.
    pub at: Instant,
    /// From sending to the relay's acknowledgement (or the failure).
    pub latency: Duration,
    /// The failure: the agent's error code and message.
    pub error: Option<String>,
}

/// The tasks of one connected agent.
struct Held {
    tunnel: JoinHandle<()>,
    beats: JoinHandle<()>,
}

/// The agents of the run, connected or not.
pub struct Fleet {
    tunnels: RuntimeThread,
    beats: RuntimeThread,
    /// What every agent serves over its tunnel.
    api: Router,
    period: Duration,
    /// No heartbeat is sent after this.
    deadline: Instant,
    held: HashMap<String, Held>,
    /// Every heartbeat of the run.
    log: Arc<Mutex<Vec<Beat>>>,
    /// Tunnels that ended while held (the relay or the network dropped them).
    ended: Arc<std::sync::atomic::AtomicUsize>,
}

impl Fleet {
    /// A fleet serving `api`, heartbeating every `period`, sending nothing after `deadline`.
    pub fn new(api: Router, period: Duration, deadline: Instant) -> Self {
        Self {
            tunnels: RuntimeThread::start("agents"),
            beats: RuntimeThread::start("heartbeats"),
            api,
            period,
            deadline,
            held: HashMap::new(),
            log: Arc::new(Mutex::new(Vec::new())),
            ended: Arc::default(),
        }
    }

    /// Agents connected now.
    pub fn connected(&self) -> usize {
        self.held.len()
    }

    /// Tunnels that ended on their own so far (should stay 0).
    pub fn tunnels_ended(&self) -> usize {
        self.ended.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connects `users`' agents to `relay` (tunnel + heartbeats each), `DIAL_BATCH` at a time,
    /// waiting until the relay has registered every tunnel. Returns the time it took.
    pub async fn connect(
        &mut self,
        relay: &RelayProcess,
        ca_pem: &str,
        users: &[SeededUser],
    ) -> Duration {
        let start = Instant::now();
        // the relay's count is of every tunnel it ever registered
        let (opened_before, mut dialled) = (relay.tunnels_opened(), 0);
        for batch in users.chunks(DIAL_BATCH) {
            for user in batch {
                let (client, dialer) = agent::relay_link(&relay.url, ca_pem, &user.agent);
                let api = self.api.clone();
                let ended = self.ended.clone();
                let tunnel = self.tunnels.handle().spawn(async move {
                    let _ = dialer.dial_and_serve(api).await;
                    ended.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
                let phase = self.period.mul_f64(rand::random::<f64>());
                let beats = self.beats.handle().spawn(heartbeat_loop(
                    client,
                    phase,
                    self.period,
                    self.deadline,
                    self.log.clone(),
                ));
                self.held
                    .insert(user.agent.id.clone(), Held { tunnel, beats });
            }
            dialled += batch.len();
            relay
                .wait_for_tunnels(opened_before + dialled, Duration::from_secs(120))
                .await;
        }
        start.elapsed()
    }

    /// Disconnects `users`' agents: their tunnels and heartbeat connections close (a process gone).
    pub fn disconnect(&mut self, users: &[SeededUser]) {
        for user in users {
            if let Some(held) = self.held.remove(&user.agent.id) {
                held.tunnel.abort();
                held.beats.abort();
            }
        }
    }

    /// The heartbeats sent between `from` and `to`, as latencies (failures counted apart).
    pub fn beats_between(&self, from: Instant, to: Instant) -> Latencies {
        let log = self.log.lock().unwrap();
        let mut samples = Vec::new();
        let (mut errors, mut first_error) = (0, None);
        for beat in log.iter().filter(|b| b.at >= from && b.at < to) {
            match &beat.error {
                None => samples.push(beat.latency),
                Some(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| e.clone());
                }
            }
        }
        samples.sort();
        Latencies {
            sent: samples.len() + errors,
            errors,
            first_error,
            elapsed: to.saturating_duration_since(from),
            samples,
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for held in self.held.values() {
            held.tunnel.abort();
            held.beats.abort();
        }
    }
}

/// One agent's heartbeats, as its relay session sends them: the first after `phase`, then every
/// `period` (a late one delays the next, as `MissedTickBehavior::Delay` in the session does).
async fn heartbeat_loop(
    client: katachi_core::RelayClient,
    phase: Duration,
    period: Duration,
    deadline: Instant,
    log: Arc<Mutex<Vec<Beat>>>,
) {
    tokio::time::sleep(phase).await;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = Heartbeat {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        workspaces: 1,
    };
    for _ in 0..MAX_BEATS {
        ticker.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let at = Instant::now();
        let result = client.heartbeat(&beat).await;
        let latency = at.elapsed();
        let error = result.err().map(|e| format!("{}: {e}", e.code()));
        log.lock().unwrap().push(Beat { at, latency, error });
    }
}
