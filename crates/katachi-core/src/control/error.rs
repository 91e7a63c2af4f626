//! [`ControlError`]: why the control socket could not be served or used.

use std::path::PathBuf;

use super::protocol::Failure;
use crate::dirs::DirsError;

/// Why the control socket could not be served, reached or understood.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The runtime dir could not be created.
    #[error(transparent)]
    Dirs(#[from] DirsError),
    /// The runtime dir is not this user's private folder (another owner, or readable by others):
    /// the socket is not served there. Remove the folder, or fix its owner and mode (`chmod 700`).
    #[error("{path} is not private to this user ({detail}); fix it with `chmod 700 {path}` or remove it")]
    RuntimeDirNotPrivate {
        /// The runtime dir.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The socket's path is longer than a Unix socket address allows (about 100 bytes): use a
    /// shorter `KATACHI_HOME`.
    #[error(
        "the control socket path {0} is too long for a Unix socket; use a shorter KATACHI_HOME"
    )]
    PathTooLong(PathBuf),
    /// Another live agent already answers on the control socket.
    #[error("another agent already serves the control socket {0}")]
    AlreadyServing(PathBuf),
    /// The server must start inside a tokio runtime.
    #[error("the control socket needs a tokio runtime")]
    NoRuntime,
    /// The socket (or pipe) could not be created or made private.
    #[error("cannot serve the control socket {path}: {source}")]
    Serve {
        /// The socket or pipe.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The running agent's socket could not be reached (permissions; not "no agent", which is
    /// `Ok(None)` from [`super::Client::connect`]).
    #[error("cannot reach the running agent at {path}: {source}")]
    Connect {
        /// The socket or pipe.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The connection failed mid-request.
    #[error("the connection to the running agent failed: {0}")]
    Transport(#[source] std::io::Error),
    /// The agent did not answer in time.
    #[error("the running agent did not answer within {0} s")]
    Timeout(u64),
    /// The agent closed the connection without answering (it stopped).
    #[error("the running agent closed the connection")]
    Closed,
    /// The agent's answer is not what this client understands (another katachi version?).
    #[error("the running agent's answer is not understood: {0}")]
    BadReply(String),
    /// The agent refused or failed the request; [`Failure::code`] says why.
    #[error("{}", .0.message)]
    Refused(Failure),
}

impl ControlError {
    /// The stable code of a refusal by the agent, if this is one.
    pub fn refusal_code(&self) -> Option<&str> {
        match self {
            ControlError::Refused(f) => Some(&f.code),
            _ => None,
        }
    }
}
