//! [`ControlServer`]: serves the control socket of a running agent until dropped.

use std::path::Path;
use std::sync::Arc;

use super::error::ControlError;
use super::lock::read_own_info;
use super::session::Shared;
use crate::agent::Agent;
use crate::agent_home::AgentHome;
use crate::dirs::KatachiDirs;

#[cfg(unix)]
use super::unix as platform;
#[cfg(windows)]
use super::windows as platform;

/// Clients served at once; more are refused with `control.busy`.
pub const MAX_CONNECTIONS: usize = 32;

/// The control socket of a running agent, served on the tokio runtime it was started on.
/// Dropping it stops accepting, ends every connection and removes the socket.
pub struct ControlServer {
    /// The bound socket (or pipe) and its accept loop.
    listening: platform::Listening,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.listening.path)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Serves the control socket of `dirs` for `agent`; workspace changes go through `home`.
    /// Call it while holding the [`super::AgentLock`]; must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`ControlError::AlreadyServing`] when another live agent answers there;
    /// [`ControlError::RuntimeDirNotPrivate`], [`ControlError::PathTooLong`],
    /// [`ControlError::Serve`], [`ControlError::NoRuntime`].
    pub fn start(
        dirs: &KatachiDirs,
        agent: Agent,
        home: Arc<AgentHome>,
    ) -> Result<Self, ControlError> {
        tokio::runtime::Handle::try_current().map_err(|_| ControlError::NoRuntime)?;
        let shared = Arc::new(Shared {
            agent,
            home,
            pid: std::process::id(),
            started_at: now_unix(),
            by: read_own_info(dirs).map(|i| i.by),
        });
        let listening = platform::listen(dirs, shared, MAX_CONNECTIONS)?;
        Ok(Self { listening })
    }

    /// Where it listens (the socket file, or the pipe's name on Windows).
    pub fn path(&self) -> &Path {
        &self.listening.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.listening.task.abort();
        self.listening.remove_socket();
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
