//! The supervisor against a scripted relay link, with paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use katachi_proto::relay_error::RelayErrorCode;
use tokio::sync::{oneshot, watch, Notify};

use super::online::{Online, Running, SessionOutcome};
use super::{Agent, AgentEnd, CommandError, Status};
use crate::agent_status::AgentStatus;
use crate::tunnel::{NetworkChanges, NoNetworkChanges, TunnelError, TunnelStatus};
use crate::SessionEnd;

/// What the scripted tunnel does once connected.
#[derive(Clone, Copy)]
enum TunnelScript {
    /// Stays up; redials (counting) on each "network change".
    StayUp,
    /// Refused for good with `agent.revoked` after this long.
    RevokedAfter(Duration),
}

/// Counts what the scripted link did.
#[derive(Default)]
struct Counters {
    /// Heartbeats sent (one per second while a session runs).
    beats: AtomicUsize,
    /// Tunnel futures alive right now.
    tunnels_alive: AtomicUsize,
    /// Tunnel dials (first dial and each redial).
    dials: AtomicUsize,
    /// Sessions stopped by the supervisor.
    sessions_stopped: AtomicUsize,
}

struct Scripted {
    tunnel: TunnelScript,
    /// The session ends by itself with this after that long.
    session_end: Option<(Duration, SessionEnd)>,
    /// Whether a heartbeat sent on a wake hears "revoked" from the relay.
    relay_confirms_revocation: bool,
    counters: Arc<Counters>,
}

/// Decrements the live-tunnel count when the tunnel future is dropped.
struct Alive(Arc<Counters>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.tunnels_alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Online for Scripted {
    fn relay(&self) -> String {
        "https://relay.test".to_owned()
    }

    fn agent_name(&self) -> String {
        "agt_test".to_owned()
    }

    fn session(
        &self,
        mut stop: oneshot::Receiver<()>,
        _status: watch::Sender<AgentStatus>,
        wake: Arc<Notify>,
    ) -> Running<SessionOutcome> {
        let counters = Arc::clone(&self.counters);
        let end = self.session_end;
        let confirms = self.relay_confirms_revocation;
        Box::pin(async move {
            let ends_at = end.map(|(after, _)| tokio::time::Instant::now() + after);
            loop {
                tokio::select! {
                    _ = &mut stop => {
                        counters.sessions_stopped.fetch_add(1, Ordering::SeqCst);
                        return Ok(SessionEnd::Stopped);
                    }
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        counters.beats.fetch_add(1, Ordering::SeqCst);
                    }
                    () = wake.notified() => {
                        counters.beats.fetch_add(1, Ordering::SeqCst);
                        if confirms {
                            return Ok(SessionEnd::Revoked { credentials_wiped: true });
                        }
                    }
                }
                if let (Some(at), Some((_, end))) = (ends_at, end) {
                    if tokio::time::Instant::now() >= at {
                        return Ok(end);
                    }
                }
            }
        })
    }

    fn tunnel(
        &self,
        status: watch::Sender<TunnelStatus>,
        mut network: Box<dyn NetworkChanges>,
    ) -> Running<TunnelError> {
        let counters = Arc::clone(&self.counters);
        counters.tunnels_alive.fetch_add(1, Ordering::SeqCst);
        let script = self.tunnel;
        Box::pin(async move {
            let _alive = Alive(Arc::clone(&counters));
            loop {
                counters.dials.fetch_add(1, Ordering::SeqCst);
                status.send_replace(TunnelStatus::Connected {
                    since: 1,
                    carrier: Default::default(),
                });
                match script {
                    TunnelScript::StayUp => network.changed().await,
                    TunnelScript::RevokedAfter(after) => {
                        tokio::time::sleep(after).await;
                        let err = TunnelError::Refused {
                            status: 403,
                            code: Some(RelayErrorCode::AgentRevoked),
                        };
                        status.send_replace(TunnelStatus::NeedsSignIn {
                            reason: err.to_string(),
                        });
                        return err;
                    }
                }
            }
        })
    }
}

fn start(
    tunnel: TunnelScript,
    session_end: Option<(Duration, SessionEnd)>,
) -> (Agent, tokio::task::JoinHandle<AgentEnd>, Arc<Counters>) {
    start_scripted(tunnel, session_end, false)
}

fn start_scripted(
    tunnel: TunnelScript,
    session_end: Option<(Duration, SessionEnd)>,
    relay_confirms_revocation: bool,
) -> (Agent, tokio::task::JoinHandle<AgentEnd>, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let link = Scripted {
        tunnel,
        session_end,
        relay_confirms_revocation,
        counters: Arc::clone(&counters),
    };
    let (agent, task) = Agent::start_with(link, Box::new(NoNetworkChanges));
    (agent, task, counters)
}

/// Waits until the status satisfies `check`.
async fn status_until(agent: &Agent, check: impl Fn(&Status) -> bool) -> Status {
    let mut status = agent.status();
    let seen = status.wait_for(|s| check(s)).await.unwrap().clone();
    seen
}

#[tokio::test(start_paused = true)]
async fn a_tunnel_refused_for_good_shows_signed_out_and_stops_the_heartbeats() {
    let (agent, task, counters) = start(TunnelScript::RevokedAfter(Duration::from_secs(10)), None);
    let connected = status_until(&agent, |s| matches!(s, Status::Connected { .. })).await;
    assert_eq!(
        connected,
        Status::Connected {
            since: 1,
            relay: "https://relay.test".to_owned(),
            agent_name: "agt_test".to_owned()
        }
    );
    let end = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the agent went on after its tunnel stopped for good")
        .unwrap();
    assert!(
        matches!(&end, AgentEnd::TunnelStopped(e) if e.needs_sign_in()),
        "{end:?}"
    );
    assert!(matches!(
        &*agent.status().borrow(),
        Status::SignedOut { reason: Some(r) } if r.contains("agent.revoked")
    ));
    assert_eq!(counters.sessions_stopped.load(Ordering::SeqCst), 1);
    let beats = counters.beats.load(Ordering::SeqCst);
    assert!(beats >= 9, "{beats}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        counters.beats.load(Ordering::SeqCst),
        beats,
        "heartbeats went on"
    );
    assert_eq!(
        agent.pause(Duration::from_secs(1)).await,
        Err(CommandError::NotRunning)
    );
}

#[tokio::test(start_paused = true)]
async fn a_tunnel_refusal_the_relay_confirms_ends_the_agent_as_revoked_at_once() {
    let (agent, task, _counters) = start_scripted(
        TunnelScript::RevokedAfter(Duration::from_secs(10)),
        None,
        true,
    );
    let started = tokio::time::Instant::now();
    let end = task.await.unwrap();
    assert!(
        matches!(end, AgentEnd::Session(SessionEnd::Revoked { .. })),
        "{end:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(*agent.status().borrow(), Status::SignedOut { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_revoked_session_drops_the_tunnel_and_shows_signed_out() {
    let end = SessionEnd::Revoked {
        credentials_wiped: true,
    };
    let (agent, task, counters) = start(TunnelScript::StayUp, Some((Duration::from_secs(5), end)));
    let ended = task.await.unwrap();
    assert!(
        matches!(ended, AgentEnd::Session(SessionEnd::Revoked { .. })),
        "{ended:?}"
    );
    assert_eq!(counters.tunnels_alive.load(Ordering::SeqCst), 0);
    assert!(matches!(
        &*agent.status().borrow(),
        Status::SignedOut { reason: Some(r) } if r.contains("revoked")
    ));
}

#[tokio::test(start_paused = true)]
async fn pause_takes_the_tunnel_down_and_stops_heartbeats_until_resume_or_its_end() {
    let (agent, task, counters) = start(TunnelScript::StayUp, None);
    status_until(&agent, |s| matches!(s, Status::Connected { .. })).await;
    assert_eq!(
        agent.resume().await,
        Err(CommandError::NotNow {
            command: "resume",
            state: "connected"
        })
    );

    agent.pause(Duration::from_secs(3600)).await.unwrap();
    assert!(matches!(*agent.status().borrow(), Status::Paused { .. }));
    assert_eq!(counters.tunnels_alive.load(Ordering::SeqCst), 0);
    let beats = counters.beats.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        counters.beats.load(Ordering::SeqCst),
        beats,
        "heartbeats while paused"
    );
    assert!(agent.reconnect_now().await.is_err());

    agent.resume().await.unwrap();
    status_until(&agent, |s| matches!(s, Status::Connected { .. })).await;
    assert_eq!(counters.tunnels_alive.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(counters.beats.load(Ordering::SeqCst) > beats);

    // A pause ends by itself.
    agent.pause(Duration::from_secs(30)).await.unwrap();
    status_until(&agent, |s| matches!(s, Status::Paused { .. })).await;
    tokio::time::sleep(Duration::from_secs(31)).await;
    status_until(&agent, |s| matches!(s, Status::Connected { .. })).await;
    assert_eq!(counters.tunnels_alive.load(Ordering::SeqCst), 1);

    agent.stop().await.unwrap();
    assert!(matches!(task.await.unwrap(), AgentEnd::Stopped));
}

#[tokio::test(start_paused = true)]
async fn reconnect_now_redials_the_tunnel_at_once() {
    let (agent, _task, counters) = start(TunnelScript::StayUp, None);
    status_until(&agent, |s| matches!(s, Status::Connected { .. })).await;
    assert_eq!(counters.dials.load(Ordering::SeqCst), 1);
    agent.reconnect_now().await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(counters.dials.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn stop_stops_the_session_cleanly_and_ends_the_task() {
    let (agent, task, counters) = start(TunnelScript::StayUp, None);
    status_until(&agent, |s| matches!(s, Status::Connected { .. })).await;
    agent.stop().await.unwrap();
    assert!(matches!(task.await.unwrap(), AgentEnd::Stopped));
    assert_eq!(counters.sessions_stopped.load(Ordering::SeqCst), 1);
    assert_eq!(counters.tunnels_alive.load(Ordering::SeqCst), 0);
    let mut status = agent.status();
    status.borrow_and_update();
    assert!(status.changed().await.is_err(), "the status channel closes");
    assert_eq!(agent.stop().await, Err(CommandError::NotRunning));
}
