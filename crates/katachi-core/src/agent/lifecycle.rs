//! The agent's task from launch to stop: signed out → (sign-in) → registered and online
//! (the [`Supervisor`]) → signed out again or stopped.
//!
//! # States
//! - **Signed out**: waits for a sign-in (see `sign_in.rs`) or a stop; other commands are refused
//!   as "not now".
//! - **Registered**: the supervisor runs the session and the tunnel. A sign-out stops them,
//!   tells the relay (unless local only) and wipes the credentials. When the relay tells the
//!   relay link to go away for good (revoked, forgotten, refused), the agent is signed out.
//! - **Stalled** (registered, but the link cannot work: unusable CA, store error): shown as
//!   [`Status::Error`]; "reconnect now" or "resume" tries again, sign-out and stop work.
//!
//! With [`WhenSignedOut::End`] (`katachi start`), every way of becoming signed out or stalled
//! ends the task instead, so a service manager sees the exit code.

use std::sync::Arc;

use axum::Router;

use super::command::{Command, CommandError};
use super::online::RelayLink;
use super::status::Status;
use super::supervisor::{Channels, OnlineEnd, Registered, Supervisor};
use super::AgentEnd;
use crate::agent_status::StatusFile;
use crate::signing::{Clock, ClockOffset};
use crate::{AgentCredentials, AgentHome, RelayClient, SessionOptions};

/// What the agent does when it finds itself signed out (at launch with no credentials, after a
/// revocation, after a failed sign-in) or stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenSignedOut {
    /// Stay up and wait for a sign-in (the tray app).
    Stay,
    /// End the task, so the process exits with a code that says why (`katachi start`). At
    /// launch it still waits for one sign-in command.
    End,
}

/// A registration: credentials and whether they are sealed on disk yet.
pub(crate) struct Registration {
    /// The credentials.
    pub(crate) credentials: AgentCredentials,
    /// False while only in memory (the session retries saving them).
    pub(crate) saved: bool,
}

/// Where the task goes from a state.
pub(crate) enum Next {
    /// Registered: go online.
    Registered(Registration),
    /// The task ends.
    End(AgentEnd),
}

/// The task's state.
pub(crate) struct Lifecycle {
    /// Secrets, store, status file.
    pub(crate) home: Arc<AgentHome>,
    /// Heartbeat period.
    pub(crate) options: SessionOptions,
    /// The local clock.
    pub(crate) clock: Arc<dyn Clock>,
    /// Relay clock minus local clock, for every signed call of the agent (see
    /// [`crate::signing::ClockOffset`]).
    pub(crate) offset: Arc<ClockOffset>,
    /// The API served over the tunnel.
    pub(crate) router: Router,
    /// Stay up or end when signed out.
    pub(crate) when_signed_out: WhenSignedOut,
    /// Commands and statuses.
    pub(crate) ch: Channels,
}

impl Lifecycle {
    /// Runs from `registered` (the saved credentials, if any) until stopped.
    pub(crate) async fn run(mut self, mut registered: Option<Registration>) -> AgentEnd {
        loop {
            registered = match registered.take() {
                None => match self.signed_out().await {
                    Next::Registered(registration) => Some(registration),
                    Next::End(end) => return end,
                },
                Some(registration) => match self.registered(registration).await {
                    Ok(next) => next,
                    Err(end) => return end,
                },
            };
        }
    }

    /// Signed out: waits for a sign-in or a stop.
    async fn signed_out(&mut self) -> Next {
        loop {
            let Some(command) = self.ch.commands.recv().await else {
                return Next::End(AgentEnd::Stopped);
            };
            match command {
                Command::SignIn { request, reply } => {
                    if let Some(next) = self.sign_in(request, reply).await {
                        return next;
                    }
                }
                Command::Stop { reply } => {
                    let _ = reply.send(Ok(()));
                    return Next::End(AgentEnd::Stopped);
                }
                Command::SignOut { reply, .. } => {
                    let _ = reply.send(Err(CommandError::NotSignedIn));
                }
                other => {
                    let err = self.ch.not_now(other.name());
                    other.refuse(err);
                }
            }
        }
    }

    /// Registered: online until signed out (`Ok(None)`), stalled and retried, or the end.
    async fn registered(
        &mut self,
        registration: Registration,
    ) -> Result<Option<Registration>, AgentEnd> {
        let Registration { credentials, saved } = registration;
        self.ch.registered.send_replace(Some(Registered {
            relay: credentials.relay_url().to_string(),
            agent_id: credentials.agent_id().to_owned(),
        }));
        let link = RelayLink::new(
            Arc::clone(&self.home),
            credentials.duplicate(),
            saved,
            self.options.clone(),
            Arc::clone(&self.clock),
            Arc::clone(&self.offset),
            self.router.clone(),
        );
        let end = Supervisor {
            online: Arc::new(link),
            ch: &mut self.ch,
        }
        .run()
        .await;
        let again = Registration {
            credentials,
            saved: true,
        };
        match end {
            OnlineEnd::SignOut { local_only, reply } => {
                match self.sign_out(&again.credentials, local_only).await {
                    Ok(()) => {
                        let _ = reply.send(Ok(()));
                        if self.ends_when_signed_out() {
                            return Err(AgentEnd::Stopped);
                        }
                        Ok(None)
                    }
                    Err(err) => {
                        // Kept: the agent goes back online and the user may try again.
                        let _ = reply.send(Err(err));
                        Ok(Some(again))
                    }
                }
            }
            OnlineEnd::Ended(AgentEnd::Stopped) => Err(AgentEnd::Stopped),
            OnlineEnd::Ended(end) if self.ends_when_signed_out() => Err(end),
            // The status says "signed out" already (revoked, forgotten, refused).
            OnlineEnd::Ended(end) if end.needs_sign_in() => Ok(None),
            OnlineEnd::Ended(_) => self.stalled(again).await,
        }
    }

    /// Stalled: the status says what is wrong; waits for a retry, a sign-out or a stop.
    async fn stalled(
        &mut self,
        registration: Registration,
    ) -> Result<Option<Registration>, AgentEnd> {
        loop {
            let Some(command) = self.ch.commands.recv().await else {
                return Err(AgentEnd::Stopped);
            };
            match command {
                Command::ReconnectNow { reply } | Command::Resume { reply } => {
                    let _ = reply.send(Ok(()));
                    return Ok(Some(registration));
                }
                Command::SignOut { local_only, reply } => {
                    match self.sign_out(&registration.credentials, local_only).await {
                        Ok(()) => {
                            let _ = reply.send(Ok(()));
                            return Ok(None);
                        }
                        Err(err) => {
                            let _ = reply.send(Err(err));
                        }
                    }
                }
                Command::Stop { reply } => {
                    let _ = reply.send(Ok(()));
                    return Err(AgentEnd::Stopped);
                }
                Command::SignIn { reply, .. } => {
                    let _ = reply.send(Err(CommandError::AlreadySignedIn {
                        relay: registration.credentials.relay_url().to_string(),
                    }));
                }
                other => {
                    let err = self.ch.not_now(other.name());
                    other.refuse(err);
                }
            }
        }
    }

    /// Tells the relay to forget the agent (unless `local_only`; a relay that already refuses it
    /// counts as told), then wipes the credentials and publishes "signed out".
    ///
    /// # Errors
    /// [`CommandError::SignOut`] when the relay could not be told or the credentials not wiped;
    /// the credentials are kept then.
    async fn sign_out(
        &mut self,
        credentials: &AgentCredentials,
        local_only: bool,
    ) -> Result<(), CommandError> {
        let relay = credentials.relay_url().to_string();
        if !local_only {
            let told = match RelayClient::with_shared_offset(
                credentials.duplicate(),
                Arc::clone(&self.clock),
                Arc::clone(&self.offset),
            ) {
                Ok(client) => client.unregister().await,
                Err(e) => Err(e),
            };
            match told {
                Ok(()) => {}
                Err(e) if e.needs_sign_in() => {}
                Err(e) => {
                    return Err(CommandError::SignOut {
                        reason: format!(
                            "{relay} could not be told ({e}); the credentials were kept. Try again when the relay is reachable, or sign out locally only (the relay keeps listing the agent until you revoke it there)"
                        ),
                    })
                }
            }
        }
        AgentCredentials::wipe(&self.home).map_err(|e| CommandError::SignOut {
            reason: format!("the local credentials could not be removed: {e}"),
        })?;
        if let Err(e) = StatusFile::new(self.home.dirs().agent_status_path()).remove() {
            tracing::warn!(error = %e, "cannot remove the status file");
        }
        tracing::info!(%relay, local_only, "signed out");
        self.ch.registered.send_replace(None);
        self.ch
            .status
            .send_replace(Status::SignedOut { reason: None });
        Ok(())
    }

    /// Whether being signed out (or stalled) ends the task.
    pub(crate) fn ends_when_signed_out(&self) -> bool {
        self.when_signed_out == WhenSignedOut::End
    }
}
