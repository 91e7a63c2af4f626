//! The supervisor task: runs the relay session and the tunnel of each online period as one unit,
//! carries out commands, and publishes [`Status`].
//!
//! # Invariants
//! - The session and the tunnel run together or not at all: when the tunnel stops for good, the
//!   session is stopped (no heartbeat says "online" for an agent nobody can reach); when the
//!   session ends, the tunnel future is dropped (the connection closes).
//! - Every end of the task is published in [`Status`] first, and returned as [`AgentEnd`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::command::{Command, CommandError};
use super::network::RedialSignal;
use super::online::{Online, Running, SessionOutcome};
use super::status::Status;
use crate::agent_status::AgentStatus;
use crate::tunnel::{TunnelError, TunnelStatus};
use crate::SessionEnd;

/// How long the session may take to confirm a refusal the tunnel saw (one heartbeat, within the
/// HTTPS client's request timeout) before it is stopped anyway.
const CONFIRM_REFUSAL: Duration = Duration::from_secs(35);

/// How the agent's task ended.
#[derive(Debug)]
pub enum AgentEnd {
    /// [`super::Agent::stop`] (or every handle dropped): stopped cleanly.
    Stopped,
    /// The relay session ended the agent: revoked or forgotten by the relay (credentials wiped).
    Session(SessionEnd),
    /// The session could not start (the store does not open…).
    SessionFailed(String),
    /// The tunnel stopped for good: the relay refused the agent ([`TunnelError::needs_sign_in`])
    /// or the set-up cannot work. The session was stopped with it.
    TunnelStopped(TunnelError),
}

/// What one online period ended with.
enum Period {
    /// The task ends.
    Ended(AgentEnd),
    /// Paused until then.
    Paused(Instant),
}

/// The task's state.
pub(crate) struct Supervisor<O: Online> {
    /// The relay link.
    pub(crate) online: Arc<O>,
    /// The command queue.
    pub(crate) commands: mpsc::Receiver<Command>,
    /// The one published status.
    pub(crate) status: watch::Sender<Status>,
    /// The current session's own status (heartbeats, pending events), for details.
    pub(crate) session_status: watch::Sender<AgentStatus>,
    /// The current tunnel's own status, for details and the status file.
    pub(crate) tunnel_status: watch::Sender<TunnelStatus>,
    /// "Redial now": network changes and [`Command::ReconnectNow`].
    pub(crate) redial: RedialSignal,
}

impl<O: Online> Supervisor<O> {
    /// Runs until stopped or until the relay link ends for good.
    pub(crate) async fn run(mut self) -> AgentEnd {
        loop {
            match self.online_period().await {
                Period::Ended(end) => return end,
                Period::Paused(until) => {
                    if let Some(end) = self.paused(until).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Session and tunnel up, until a command or either of them ends the period.
    async fn online_period(&mut self) -> Period {
        let (stop, stop_rx) = oneshot::channel();
        self.tunnel_status.send_replace(TunnelStatus::Connecting);
        self.status.send_replace(Status::Connecting);
        let wake = Arc::new(Notify::new());
        let mut session =
            self.online
                .session(stop_rx, self.session_status.clone(), Arc::clone(&wake));
        let mut tunnel = self
            .online
            .tunnel(self.tunnel_status.clone(), Box::new(self.redial.clone()));
        let mut tunnel_updates = self.tunnel_status.subscribe();
        tunnel_updates.mark_unchanged();
        let mut stop = Some(stop);
        loop {
            tokio::select! {
                end = &mut session => return Period::Ended(self.session_ended(end)),
                err = &mut tunnel => {
                    if err.needs_sign_in() {
                        // The relay refused the agent: let the session confirm it with a
                        // heartbeat now, so it ends as it would by itself (credentials wiped,
                        // status file written) — within a bounded time.
                        wake.notify_one();
                        tokio::select! {
                            end = &mut session => return Period::Ended(self.session_ended(end)),
                            () = tokio::time::sleep(CONFIRM_REFUSAL) => {}
                        }
                    }
                    // Nobody can reach the agent any more: stop saying it is online.
                    let _ = stop_session(&mut stop, &mut session).await;
                    return Period::Ended(self.tunnel_stopped(err));
                }
                Ok(()) = tunnel_updates.changed() => {
                    let tunnel = tunnel_updates.borrow_and_update().clone();
                    self.publish_tunnel(tunnel);
                }
                command = self.commands.recv() => match command {
                    None => {
                        let _ = stop_session(&mut stop, &mut session).await;
                        return Period::Ended(AgentEnd::Stopped);
                    }
                    Some(Command::Stop { reply }) => {
                        let _ = stop_session(&mut stop, &mut session).await;
                        let _ = reply.send(Ok(()));
                        return Period::Ended(AgentEnd::Stopped);
                    }
                    Some(Command::Pause { duration, reply }) => {
                        let end = stop_session(&mut stop, &mut session).await;
                        let period = match end {
                            Ok(SessionEnd::Stopped) => {
                                let until = Instant::now() + duration;
                                // Published before the answer: "paused" is true once it is acked.
                                self.status.send_replace(Status::Paused { until: unix_at(until) });
                                Period::Paused(until)
                            }
                            other => Period::Ended(self.session_ended(other)),
                        };
                        let _ = reply.send(Ok(()));
                        return period;
                    }
                    Some(Command::Resume { reply }) => {
                        let _ = reply.send(Err(self.not_now("resume")));
                    }
                    Some(Command::ReconnectNow { reply }) => {
                        self.redial.redial_now();
                        let _ = reply.send(Ok(()));
                    }
                },
            }
        }
    }

    /// Paused: nothing runs until `until`, a resume or a stop; `Some` when the task ends.
    async fn paused(&mut self, mut until: Instant) -> Option<AgentEnd> {
        loop {
            self.status.send_replace(Status::Paused {
                until: unix_at(until),
            });
            tokio::select! {
                () = tokio::time::sleep_until(until) => return None,
                command = self.commands.recv() => match command {
                    None => return Some(AgentEnd::Stopped),
                    Some(Command::Stop { reply }) => {
                        let _ = reply.send(Ok(()));
                        return Some(AgentEnd::Stopped);
                    }
                    Some(Command::Resume { reply }) => {
                        let _ = reply.send(Ok(()));
                        return None;
                    }
                    Some(Command::Pause { duration, reply }) => {
                        until = Instant::now() + duration;
                        let _ = reply.send(Ok(()));
                    }
                    Some(Command::ReconnectNow { reply }) => {
                        let _ = reply.send(Err(self.not_now("reconnect")));
                    }
                },
            }
        }
    }

    /// The status for a tunnel status while the period runs (its final states are published
    /// when its future ends).
    fn publish_tunnel(&self, tunnel: TunnelStatus) {
        let status = match tunnel {
            TunnelStatus::Connecting => Status::Connecting,
            TunnelStatus::Connected { since } => Status::Connected {
                since,
                relay: self.online.relay(),
                agent_name: self.online.agent_name(),
            },
            TunnelStatus::Reconnecting {
                at,
                in_secs,
                reason,
            } => Status::Reconnecting {
                at,
                in_secs,
                reason,
            },
            TunnelStatus::NeedsSignIn { .. } | TunnelStatus::Error { .. } => return,
        };
        self.status.send_replace(status);
    }

    /// Publishes and returns how the session ended by itself.
    fn session_ended(&self, end: SessionOutcome) -> AgentEnd {
        match end {
            Ok(SessionEnd::Stopped) => AgentEnd::Stopped,
            Ok(end @ SessionEnd::Revoked { .. }) => {
                self.status.send_replace(Status::SignedOut {
                    reason: Some("this agent was revoked at the relay".to_owned()),
                });
                AgentEnd::Session(end)
            }
            Ok(end @ SessionEnd::Forgotten { .. }) => {
                self.status.send_replace(Status::SignedOut {
                    reason: Some("the relay no longer knows this agent".to_owned()),
                });
                AgentEnd::Session(end)
            }
            Err(message) => {
                self.status.send_replace(Status::Error {
                    message: format!("the relay session could not run: {message}"),
                    fix: "run `katachi doctor`".to_owned(),
                });
                AgentEnd::SessionFailed(message)
            }
        }
    }

    /// Publishes and returns a tunnel that stopped for good.
    fn tunnel_stopped(&self, err: TunnelError) -> AgentEnd {
        let status = if err.needs_sign_in() {
            Status::SignedOut {
                reason: Some(err.to_string()),
            }
        } else {
            Status::Error {
                message: err.to_string(),
                fix: "check the relay URL and its CA, then start the agent again".to_owned(),
            }
        };
        tracing::warn!(error = %err, "tunnel stopped for good; relay session stopped with it");
        self.status.send_replace(status);
        AgentEnd::TunnelStopped(err)
    }

    /// A [`CommandError::NotNow`] for `command` in the current state.
    fn not_now(&self, command: &'static str) -> CommandError {
        CommandError::NotNow {
            command,
            state: self.status.borrow().state_word(),
        }
    }
}

/// Asks the session to stop and waits for it.
async fn stop_session(
    stop: &mut Option<oneshot::Sender<()>>,
    session: &mut Running<SessionOutcome>,
) -> SessionOutcome {
    if let Some(stop) = stop.take() {
        let _ = stop.send(());
    }
    session.await
}

/// The unix time of `at`.
fn unix_at(at: Instant) -> i64 {
    let left = at.saturating_duration_since(Instant::now());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from((now + left).as_secs()).unwrap_or(i64::MAX)
}
