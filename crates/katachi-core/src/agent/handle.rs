//! [`Agent`]: the handle every front end drives.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::command::{Command, CommandError};
use super::lifecycle::{Lifecycle, Registration, WhenSignedOut};
use super::network::RedialSignal;
use super::sign_in::{SignInRequest, SignInStarted};
use super::status::Status;
use super::supervisor::{AgentEnd, Channels, Registered};
use crate::agent_status::{AgentStatus, ConnectionState};
use crate::ai::approvals::Approvals;
use crate::ai::backends::AgentBackends;
use crate::ai::chat::{ChatService, ChatStore};
use crate::ai::provider::ProviderOptions;
use crate::api::{ApiState, AuditLayer, DenialFeed, RunDenied};
use crate::signing::{Clock, ClockOffset};
use crate::store::AuditKey;
use crate::tunnel::{NetworkChanges, TunnelStatus};
use crate::{AgentCredentials, AgentHome, SessionOptions};

/// Commands waiting for the agent's task at most; senders wait beyond that.
const COMMAND_QUEUE: usize = 16;

/// What [`Agent::launch`] needs.
pub struct AgentConfig {
    /// The agent's secrets and store.
    pub home: Arc<AgentHome>,
    /// Heartbeat period.
    pub options: SessionOptions,
    /// The local clock (signatures, expiry times).
    pub clock: Arc<dyn Clock>,
    /// Says when the network changed, so the tunnel redials at once.
    pub network: Box<dyn NetworkChanges>,
    /// Stay up or end the task when signed out.
    pub when_signed_out: WhenSignedOut,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("options", &self.options)
            .field("when_signed_out", &self.when_signed_out)
            .finish_non_exhaustive()
    }
}

/// A running agent. Cheap to clone; every clone drives the same task.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The command queue.
    commands: mpsc::Sender<Command>,
    /// The one status.
    status: watch::Receiver<Status>,
    /// The relay session's detail (last heartbeat, pending events, clock offset).
    session: watch::Receiver<AgentStatus>,
    /// The tunnel's detail.
    tunnel: watch::Receiver<TunnelStatus>,
    /// The registration.
    registered: watch::Receiver<Option<Registered>>,
    /// The agent's home (`None` for the supervisor's scripted tests).
    home: Option<Arc<AgentHome>>,
    /// The runs its API's sandbox denies (a feed nobody feeds in the supervisor's tests).
    denials: DenialFeed,
    /// The AI's pending approvals (asked in the browser, and by the tray).
    approvals: Approvals,
}

impl Agent {
    /// Starts the agent's task on the current tokio runtime: online when credentials are saved,
    /// else signed out ([`Status::SignedOut`]) waiting for [`Self::sign_in`]. The API is served
    /// over the tunnel only, audited. The task's result says how it ended.
    pub fn launch(config: AgentConfig) -> (Self, JoinHandle<AgentEnd>) {
        let AgentConfig {
            home,
            options,
            clock,
            network,
            when_signed_out,
        } = config;
        let (mut agent, ch) = Self::channels(network);
        agent.home = Some(Arc::clone(&home));
        // one idea of the relay's clock for every signed call of this agent: session, tunnel,
        // sign-out and the AI's MCP calls
        let offset = Arc::new(ClockOffset::default());
        let api = ApiState::new(home.clone());
        agent.denials = api.denials().clone();
        let audit = AuditLayer::start(Arc::clone(&home));
        let router = crate::api::router(api.clone())
            .merge(crate::ai::chat::routes::routes(chat_service(
                &home,
                &agent.approvals,
                &clock,
                &offset,
                // the model's tools call the same audited API (without the chat routes)
                crate::api::router(api).layer(audit.clone()),
            )))
            .layer(audit);
        let saved = AgentCredentials::load(&home);
        let lifecycle = Lifecycle {
            home,
            options,
            clock,
            offset,
            router,
            when_signed_out,
            ch,
        };
        let task = tokio::spawn(async move {
            let registered = match saved {
                Ok(Some(credentials)) => Some(Registration {
                    credentials,
                    saved: true,
                }),
                Ok(None) => {
                    lifecycle
                        .ch
                        .status
                        .send_replace(Status::SignedOut { reason: None });
                    None
                }
                Err(e) => {
                    let message = format!("the saved credentials cannot be read: {e}");
                    lifecycle.ch.status.send_replace(Status::Error {
                        message: message.clone(),
                        fix: "run `katachi doctor`; if they cannot be recovered, run `katachi unregister --local-only` and sign in again".to_owned(),
                    });
                    return AgentEnd::Credentials(message);
                }
            };
            lifecycle.run(registered).await
        });
        (agent, task)
    }

    /// The handle and the task's channels.
    fn channels(network: Box<dyn NetworkChanges>) -> (Self, Channels) {
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (status, status_rx) = watch::channel(Status::Connecting);
        let (session_status, session_rx) =
            watch::channel(AgentStatus::new(ConnectionState::Connecting));
        let (tunnel_status, tunnel_rx) = watch::channel(TunnelStatus::Connecting);
        let (registered, registered_rx) = watch::channel(None);
        let ch = Channels {
            registered,
            commands: commands_rx,
            status,
            session_status,
            tunnel_status,
            redial: RedialSignal::new(network),
        };
        let agent = Self {
            commands,
            status: status_rx,
            session: session_rx,
            tunnel: tunnel_rx,
            registered: registered_rx,
            home: None,
            denials: DenialFeed::new(),
            approvals: Approvals::default(),
        };
        (agent, ch)
    }

    /// The supervisor alone over a scripted relay link (the supervisor's tests).
    #[cfg(test)]
    pub(crate) fn start_with<O: super::online::Online>(
        online: O,
        network: Box<dyn NetworkChanges>,
    ) -> (Self, JoinHandle<AgentEnd>) {
        use super::supervisor::{OnlineEnd, Supervisor};
        let (agent, mut ch) = Self::channels(network);
        let online = Arc::new(online);
        let task = tokio::spawn(async move {
            match (Supervisor {
                online,
                ch: &mut ch,
            })
            .run()
            .await
            {
                OnlineEnd::Ended(end) => end,
                OnlineEnd::SignOut { reply, .. } => {
                    let _ = reply.send(Err(CommandError::NotSignedIn));
                    AgentEnd::Stopped
                }
            }
        });
        (agent, task)
    }

    /// The agent's home: its secrets and store.
    pub fn home(&self) -> Option<&Arc<AgentHome>> {
        self.home.as_ref()
    }

    /// The agent's status: the current value, then every change. The channel closes when the
    /// agent's task has ended (its last value says why).
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The relay session's own status (last heartbeat, pending events) of the current period.
    pub fn session_status(&self) -> watch::Receiver<AgentStatus> {
        self.session.clone()
    }

    /// Which relay the agent is registered with and as whom; `None` while signed out.
    pub fn registered(&self) -> watch::Receiver<Option<Registered>> {
        self.registered.clone()
    }

    /// The AI's approvals: what waits for the user now, and every question and answer from now
    /// on (the tray notifies them; any front end may answer).
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    /// The runs the sandbox denies from now on, as they happen (what, where, how to allow it):
    /// the tray notifies the user. A receiver that falls far behind skips the oldest.
    pub fn denials(&self) -> broadcast::Receiver<RunDenied> {
        self.denials.subscribe()
    }

    /// The tunnel's own status of the current period.
    pub fn tunnel_status(&self) -> watch::Receiver<TunnelStatus> {
        self.tunnel.clone()
    }

    /// Starts signing in at a relay (signed out only); answers once the relay gave a code, which
    /// is also published as [`Status::WaitingForApproval`]. After approval the agent goes online
    /// by itself.
    ///
    /// # Errors
    /// [`CommandError::SignIn`] (relay unreachable, CA refused…), [`CommandError::AlreadySignedIn`],
    /// [`CommandError::NotRunning`].
    pub async fn sign_in(&self, request: SignInRequest) -> Result<SignInStarted, CommandError> {
        self.ask(|reply| Command::SignIn { request, reply }).await
    }

    /// Abandons a sign-in that waits for approval; the agent is signed out.
    ///
    /// # Errors
    /// [`CommandError::NotNow`] when no sign-in waits, [`CommandError::NotRunning`].
    pub async fn cancel_sign_in(&self) -> Result<(), CommandError> {
        self.ask(|reply| Command::CancelSignIn { reply }).await
    }

    /// Signs out: tunnel and heartbeats stop, the relay is told to forget this agent (unless
    /// `local_only`), and the credentials are wiped.
    ///
    /// # Errors
    /// [`CommandError::SignOut`] when the relay could not be told (the agent goes back online,
    /// credentials kept), [`CommandError::NotSignedIn`], [`CommandError::NotRunning`].
    pub async fn sign_out(&self, local_only: bool) -> Result<(), CommandError> {
        self.ask(|reply| Command::SignOut { local_only, reply })
            .await
    }

    /// Takes the tunnel down and stops heartbeats for `duration` (or until [`Self::resume`]).
    ///
    /// # Errors
    /// [`CommandError::NotNow`] when not online, [`CommandError::NotRunning`].
    pub async fn pause(&self, duration: Duration) -> Result<(), CommandError> {
        self.ask(|reply| Command::Pause { duration, reply }).await
    }

    /// Ends a pause now (or retries a stalled link).
    ///
    /// # Errors
    /// [`CommandError::NotNow`] when not paused, [`CommandError::NotRunning`].
    pub async fn resume(&self) -> Result<(), CommandError> {
        self.ask(|reply| Command::Resume { reply }).await
    }

    /// Redials the relay now instead of waiting for the backoff.
    ///
    /// # Errors
    /// [`CommandError::NotNow`] while paused or signed out, [`CommandError::NotRunning`].
    pub async fn reconnect_now(&self) -> Result<(), CommandError> {
        self.ask(|reply| Command::ReconnectNow { reply }).await
    }

    /// Stops the session cleanly and ends the agent's task; returns once the session stopped.
    ///
    /// # Errors
    /// [`CommandError::NotRunning`] when it had already ended.
    pub async fn stop(&self) -> Result<(), CommandError> {
        self.ask(|reply| Command::Stop { reply }).await
    }

    /// Sends a command and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, CommandError>>) -> Command,
    ) -> Result<T, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| CommandError::NotRunning)?;
        answer.await.map_err(|_| CommandError::NotRunning)?
    }
}

/// The agent's chat service: its store, approvals, and each workspace's model and tools.
fn chat_service(
    home: &Arc<AgentHome>,
    approvals: &Approvals,
    clock: &Arc<dyn Clock>,
    offset: &Arc<ClockOffset>,
    tools_router: axum::Router,
) -> ChatService {
    let opener = Arc::clone(home);
    ChatService::new(
        ChatStore::new(move || opener.store(), AuditKey::derive(home.machine_key())),
        approvals.clone(),
        Arc::new(AgentBackends::new(
            Arc::clone(home),
            tools_router,
            ProviderOptions::default(),
            Arc::clone(clock),
            Arc::clone(offset),
        )),
    )
}
