//! The messages of the command queue and why a command was not carried out.

use std::time::Duration;

use serde::ser::SerializeStruct;
use tokio::sync::oneshot;

use super::sign_in::{SignInRequest, SignInStarted};

/// Why a command was not carried out. Serialised as `{"code": …, "message": …}` with a stable
/// code (see [`Self::code`]) for the control socket and the window.
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
    /// A sign-in was asked while this agent is registered.
    #[error("this agent is already registered with {relay}; sign out first to connect it to another relay")]
    AlreadySignedIn {
        /// The relay it is registered with.
        relay: String,
    },
    /// A sign-out was asked while no agent is registered here.
    #[error("this agent is not signed in")]
    NotSignedIn,
    /// The device flow did not complete: it could not start (relay unreachable, CA refused,
    /// relay refused…), or the code was denied.
    #[error("cannot sign in: {reason}")]
    SignIn {
        /// The device flow's stable code (`relay.unreachable`, `auth.denied`…).
        code: &'static str,
        /// What went wrong, with what to check.
        reason: String,
    },
    /// The relay could not be told to forget the agent; the credentials were kept and the agent
    /// went back online.
    #[error("cannot sign out: {reason}")]
    SignOut {
        /// What went wrong, with what to do.
        reason: String,
    },
}

impl CommandError {
    /// The stable code of this error (`agent.not_running`, `agent.not_now`…).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotRunning => "agent.not_running",
            Self::NotNow { .. } => "agent.not_now",
            Self::AlreadySignedIn { .. } => "agent.already_signed_in",
            Self::NotSignedIn => "agent.not_signed_in",
            Self::SignIn { code, .. } => code,
            Self::SignOut { .. } => "agent.sign_out_failed",
        }
    }
}

impl serde::Serialize for CommandError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("CommandError", 2)?;
        out.serialize_field("code", self.code())?;
        out.serialize_field("message", &self.to_string())?;
        out.end()
    }
}

/// Where a command's answer goes.
pub(crate) type Reply<T = ()> = oneshot::Sender<Result<T, CommandError>>;

/// A command to the agent's task, with where to answer.
#[derive(Debug)]
pub(crate) enum Command {
    /// Tunnel down and heartbeats stopped for `duration`.
    Pause {
        /// How long.
        duration: Duration,
        /// The answer.
        reply: Reply,
    },
    /// End a pause now.
    Resume {
        /// The answer.
        reply: Reply,
    },
    /// Redial now instead of waiting for the backoff.
    ReconnectNow {
        /// The answer.
        reply: Reply,
    },
    /// Start the device flow (signed out only).
    SignIn {
        /// Where and how.
        request: SignInRequest,
        /// The answer: the code to show, once the relay gave one.
        reply: Reply<SignInStarted>,
    },
    /// Abandon a sign-in that waits for approval.
    CancelSignIn {
        /// The answer.
        reply: Reply,
    },
    /// Tell the relay to forget this agent (unless `local_only`) and wipe its credentials.
    SignOut {
        /// Wipe the credentials without telling the relay.
        local_only: bool,
        /// The answer, once signed out.
        reply: Reply,
    },
    /// Stop cleanly and end the task.
    Stop {
        /// The answer, sent once the session has stopped.
        reply: Reply,
    },
}

impl Command {
    /// The command's name, for [`CommandError::NotNow`].
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Pause { .. } => "pause",
            Self::Resume { .. } => "resume",
            Self::ReconnectNow { .. } => "reconnect",
            Self::SignIn { .. } => "sign in",
            Self::CancelSignIn { .. } => "cancel a sign-in",
            Self::SignOut { .. } => "sign out",
            Self::Stop { .. } => "stop",
        }
    }

    /// Answers the command with `err` (for a command that does not apply).
    pub(crate) fn refuse(self, err: CommandError) {
        match self {
            Self::Pause { reply, .. }
            | Self::Resume { reply }
            | Self::ReconnectNow { reply }
            | Self::CancelSignIn { reply }
            | Self::SignOut { reply, .. }
            | Self::Stop { reply } => {
                let _ = reply.send(Err(err));
            }
            Self::SignIn { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
}
