//! [`Agent`]: the handle every front end drives.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::command::{Command, CommandError};
use super::network::RedialSignal;
use super::online::{Online, RelayLink};
use super::status::Status;
use super::supervisor::{AgentEnd, Supervisor};
use crate::agent_status::{AgentStatus, ConnectionState};
use crate::tunnel::{NetworkChanges, TunnelStatus};

/// Commands waiting for the supervisor at most; senders wait beyond that.
const COMMAND_QUEUE: usize = 16;

/// A running agent. Cheap to clone; every clone drives the same supervisor.
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
}

impl Agent {
    /// Starts the supervisor for `link` on the current tokio runtime; `network` says when the
    /// network changed (so the tunnel redials at once). The task's result says how it ended.
    pub fn start(
        link: RelayLink,
        network: Box<dyn NetworkChanges>,
    ) -> (Self, JoinHandle<AgentEnd>) {
        Self::start_with(link, network)
    }

    /// [`Self::start`] over any relay link (tests script theirs).
    pub(crate) fn start_with<O: Online>(
        online: O,
        network: Box<dyn NetworkChanges>,
    ) -> (Self, JoinHandle<AgentEnd>) {
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (status, status_rx) = watch::channel(Status::Connecting);
        let (session_status, session_rx) =
            watch::channel(AgentStatus::new(ConnectionState::Connecting));
        let (tunnel_status, tunnel_rx) = watch::channel(TunnelStatus::Connecting);
        let supervisor = Supervisor {
            online: Arc::new(online),
            commands: commands_rx,
            status,
            session_status,
            tunnel_status,
            redial: RedialSignal::new(network),
        };
        let task = tokio::spawn(supervisor.run());
        let agent = Self {
            commands,
            status: status_rx,
            session: session_rx,
            tunnel: tunnel_rx,
        };
        (agent, task)
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

    /// The tunnel's own status of the current period.
    pub fn tunnel_status(&self) -> watch::Receiver<TunnelStatus> {
        self.tunnel.clone()
    }

    /// Takes the tunnel down and stops heartbeats for `duration` (or until [`Self::resume`]).
    ///
    /// # Errors
    /// [`CommandError::NotRunning`].
    pub async fn pause(&self, duration: Duration) -> Result<(), CommandError> {
        self.ask(|reply| Command::Pause { duration, reply }).await
    }

    /// Ends a pause now.
    ///
    /// # Errors
    /// [`CommandError::NotNow`] when not paused, [`CommandError::NotRunning`].
    pub async fn resume(&self) -> Result<(), CommandError> {
        self.ask(|reply| Command::Resume { reply }).await
    }

    /// Redials the relay now instead of waiting for the backoff.
    ///
    /// # Errors
    /// [`CommandError::NotNow`] while paused, [`CommandError::NotRunning`].
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
    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), CommandError>>) -> Command,
    ) -> Result<(), CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| CommandError::NotRunning)?;
        answer.await.map_err(|_| CommandError::NotRunning)?
    }
}
