//! The messages of the command queue and why a command was not carried out.

use std::time::Duration;

use tokio::sync::oneshot;

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The agent has stopped (after [`super::Agent::stop`], or because the relay refused it for
    /// good): start it again.
    #[error("the agent is not running")]
    NotRunning,
    /// The command does not apply now (resume while not paused…).
    #[error("cannot {command} while {state}")]
    NotNow {
        /// What was asked.
        command: &'static str,
        /// The agent's state word.
        state: &'static str,
    },
}

/// A command to the supervisor, with where to answer.
#[derive(Debug)]
pub(crate) enum Command {
    /// Tunnel down and heartbeats stopped for `duration`.
    Pause {
        /// How long.
        duration: Duration,
        /// The answer.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// End a pause now.
    Resume {
        /// The answer.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Redial now instead of waiting for the backoff.
    ReconnectNow {
        /// The answer.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Stop cleanly and end the task.
    Stop {
        /// The answer, sent once the session has stopped.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
}
