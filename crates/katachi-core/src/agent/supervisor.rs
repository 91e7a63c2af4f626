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

use super::command::{Command, CommandError, Reply};
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
    /// Signed out with no sign-in possible ([`super::WhenSignedOut::End`]): the device flow
    /// failed (denied, relay unreachable…); a [`CommandError::SignIn`].
    SignInFailed(CommandError),
    /// The saved credentials cannot be read (tampered, another machine's…), with why.
    Credentials(String),
}

impl AgentEnd {
    /// Whether the agent ended because a (new) sign-in is needed: the relay refused, revoked or
    /// forgot it, or a sign-in did not complete.
    pub fn needs_sign_in(&self) -> bool {
        match self {
            Self::Session(SessionEnd::Revoked { .. } | SessionEnd::Forgotten { .. })
            | Self::SignInFailed(_) => true,
            Self::TunnelStopped(err) => err.needs_sign_in(),
            _ => false,
        }
    }
}

/// What one online period ended with.
enum Period {
    /// The registration's online part ends.
    Ended(OnlineEnd),
    /// Paused until then.
    Paused(Instant),
}

/// What the agent's task keeps across registrations and online periods: the command queue, the
/// published statuses and the "redial now" signal.
pub(crate) struct Channels {
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
    /// Which relay the agent is registered with, as whom (`None`: signed out).
    pub(crate) registered: watch::Sender<Option<Registered>>,
}

/// Which relay an agent is registered with, and its id there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Registered {
    /// The relay's URL.
    pub relay: String,
    /// The agent's id at the relay.
    pub agent_id: String,
}

impl Channels {
    /// A [`CommandError::NotNow`] for `command` in the current state.
    pub(crate) fn not_now(&self, command: &'static str) -> CommandError {
        CommandError::NotNow {
            command,
            state: self.status.borrow().state_word(),
        }
    }
}

/// How the online part of a registration ended.
pub(crate) enum OnlineEnd {
    /// For good: the task ends, or (when the relay refused the agent) a sign-in is needed.
    Ended(AgentEnd),
    /// The user asked to sign out; the session is stopped, the tunnel dropped.
    SignOut {
        /// Wipe the credentials without telling the relay.
        local_only: bool,
        /// The answer, once signed out.
        reply: Reply,
    },
}

/// The online part of one registration: the relay link and the task's channels.
pub(crate) struct Supervisor<'c, O: Online> {
    /// The relay link.
    pub(crate) online: Arc<O>,
    /// The task's channels.
    pub(crate) ch: &'c mut Channels,
}

impl<O: Online> Supervisor<'_, O> {
    /// Runs until stopped, signed out, or until the relay link ends for good.
    pub(crate) async fn run(mut self) -> OnlineEnd {
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
        self.ch.tunnel_status.send_replace(TunnelStatus::Connecting);
        self.ch.status.send_replace(Status::Connecting);
        let wake = Arc::new(Notify::new());
        let mut session =
            self.online
                .session(stop_rx, self.ch.session_status.clone(), Arc::clone(&wake));
        let mut tunnel = self.online.tunnel(
            self.ch.tunnel_status.clone(),
            Box::new(self.ch.redial.clone()),
        );
        let mut tunnel_updates = self.ch.tunnel_status.subscribe();
        tunnel_updates.mark_unchanged();
        let mut stop = Some(stop);
        loop {
            tokio::select! {
                end = &mut session => return Period::Ended(OnlineEnd::Ended(self.session_ended(end))),
                err = &mut tunnel => {
                    if err.needs_sign_in() {
                        // The relay refused the agent: let the session confirm it with a
                        // heartbeat now, so it ends as it would by itself (credentials wiped,
                        // status file written) — within a bounded time.
                        wake.notify_one();
                        tokio::select! {
                            end = &mut session => return Period::Ended(OnlineEnd::Ended(self.session_ended(end))),
                            () = tokio::time::sleep(CONFIRM_REFUSAL) => {}
                        }
                    }
                    // Nobody can reach the agent any more: stop saying it is online.
                    let _ = stop_session(&mut stop, &mut session).await;
                    return Period::Ended(OnlineEnd::Ended(self.tunnel_stopped(err)));
                }
                Ok(()) = tunnel_updates.changed() => {
                    let tunnel = tunnel_updates.borrow_and_update().clone();
                    self.publish_tunnel(tunnel);
                }
                command = self.ch.commands.recv() => match command {
                    None => {
                        let _ = stop_session(&mut stop, &mut session).await;
                        return Period::Ended(OnlineEnd::Ended(AgentEnd::Stopped));
                    }
                    Some(Command::Stop { reply }) => {
                        let _ = stop_session(&mut stop, &mut session).await;
                        let _ = reply.send(Ok(()));
                        return Period::Ended(OnlineEnd::Ended(AgentEnd::Stopped));
                    }
                    Some(Command::SignOut { local_only, reply }) => {
                        let end = stop_session(&mut stop, &mut session).await;
                        return Period::Ended(match end {
                            Ok(SessionEnd::Stopped) => OnlineEnd::SignOut { local_only, reply },
                            other => {
                                // The relay ended the registration first: nothing left to sign out of.
                                let ended = self.session_ended(other);
                                let _ = reply.send(Ok(()));
                                OnlineEnd::Ended(ended)
                            }
                        });
                    }
                    Some(Command::Pause { duration, reply }) => {
                        let end = stop_session(&mut stop, &mut session).await;
                        let period = match end {
                            Ok(SessionEnd::Stopped) => {
                                let until = Instant::now() + duration;
                                // Published before the answer: "paused" is true once it is acked.
                                self.ch.status.send_replace(Status::Paused { until: unix_at(until) });
                                Period::Paused(until)
                            }
                            other => Period::Ended(OnlineEnd::Ended(self.session_ended(other))),
                        };
                        let _ = reply.send(Ok(()));
                        return period;
                    }
                    Some(Command::ReconnectNow { reply }) => {
                        self.ch.redial.redial_now();
                        let _ = reply.send(Ok(()));
                    }
                    Some(other) => self.refuse(other),
                },
            }
        }
    }

    /// Paused: nothing runs until `until`, a resume or a stop; `Some` when the online part ends.
    async fn paused(&mut self, mut until: Instant) -> Option<OnlineEnd> {
        loop {
            self.ch.status.send_replace(Status::Paused {
                until: unix_at(until),
            });
            tokio::select! {
                () = tokio::time::sleep_until(until) => return None,
                command = self.ch.commands.recv() => match command {
                    None => return Some(OnlineEnd::Ended(AgentEnd::Stopped)),
                    Some(Command::Stop { reply }) => {
                        let _ = reply.send(Ok(()));
                        return Some(OnlineEnd::Ended(AgentEnd::Stopped));
                    }
                    Some(Command::SignOut { local_only, reply }) => {
                        return Some(OnlineEnd::SignOut { local_only, reply });
                    }
                    Some(Command::Resume { reply }) => {
                        let _ = reply.send(Ok(()));
                        return None;
                    }
                    Some(Command::Pause { duration, reply }) => {
                        until = Instant::now() + duration;
                        let _ = reply.send(Ok(()));
                    }
                    Some(other) => self.refuse(other),
                },
            }
        }
    }

    /// Answers a command that does not apply while registered.
    fn refuse(&self, command: Command) {
        let err = match &command {
            Command::SignIn { .. } => CommandError::AlreadySignedIn {
                relay: self.online.relay(),
            },
            other => self.ch.not_now(other.name()),
        };
        command.refuse(err);
    }

    /// The status for a tunnel status while the period runs (its final states are published
    /// when its future ends).
    fn publish_tunnel(&self, tunnel: TunnelStatus) {
        let status = match tunnel {
            TunnelStatus::Connecting => Status::Connecting,
            TunnelStatus::Connected { since, .. } => Status::Connected {
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
        self.ch.status.send_replace(status);
    }

    /// Publishes and returns how the session ended by itself.
    fn session_ended(&self, end: SessionOutcome) -> AgentEnd {
        match end {
            Ok(SessionEnd::Stopped) => AgentEnd::Stopped,
            Ok(end @ SessionEnd::Revoked { .. }) => {
                self.ch.registered.send_replace(None);
                self.ch.status.send_replace(Status::SignedOut {
                    reason: Some("this agent was revoked at the relay".to_owned()),
                });
                AgentEnd::Session(end)
            }
            Ok(end @ SessionEnd::Forgotten { .. }) => {
                self.ch.registered.send_replace(None);
                self.ch.status.send_replace(Status::SignedOut {
                    reason: Some("the relay no longer knows this agent".to_owned()),
                });
                AgentEnd::Session(end)
            }
            Err(message) => {
                self.ch.status.send_replace(Status::Error {
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
            self.ch.registered.send_replace(None);
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
        self.ch.status.send_replace(status);
        AgentEnd::TunnelStopped(err)
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
