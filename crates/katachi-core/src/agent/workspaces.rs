//! Workspace and sandbox-policy commands on the [`Agent`] handle: the same changes as
//! [`crate::workspace_admin`] (store, audit, activity), run on a blocking thread. They need no
//! help from the agent's task: the API reads the store on every call, so they apply at once.

use std::path::PathBuf;
use std::sync::Arc;

use super::Agent;
use crate::store::{Actor, AddOutcome, Workspace};
use crate::workspace_admin::{
    self, AdminError, ListedWorkspace, PolicyChange, PolicyReset, PolicySet,
};
use crate::AgentHome;

/// Why a workspace command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceCommandError {
    /// The change was refused or failed (see [`AdminError`]).
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// This handle has no agent home (a scripted test agent), or the blocking task died.
    #[error("the agent is not running")]
    NotRunning,
}

impl WorkspaceCommandError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Admin(e) => e.code(),
            Self::NotRunning => "agent.not_running",
        }
    }
}

impl Agent {
    /// Allows a folder (see [`workspace_admin::add_workspace`]), as `actor`.
    ///
    /// # Errors
    /// [`WorkspaceCommandError`].
    pub async fn add_workspace(
        &self,
        actor: Actor,
        path: PathBuf,
    ) -> Result<AddOutcome, WorkspaceCommandError> {
        self.with_home(move |home| workspace_admin::add_workspace(home, actor, &path))
            .await
    }

    /// Stops allowing a folder, as `actor`.
    ///
    /// # Errors
    /// [`WorkspaceCommandError`].
    pub async fn remove_workspace(
        &self,
        actor: Actor,
        path: PathBuf,
    ) -> Result<Workspace, WorkspaceCommandError> {
        self.with_home(move |home| workspace_admin::remove_workspace(home, actor, &path))
            .await
    }

    /// The allowed folders, each with whether it still exists.
    ///
    /// # Errors
    /// [`WorkspaceCommandError`].
    pub async fn list_workspaces(&self) -> Result<Vec<ListedWorkspace>, WorkspaceCommandError> {
        self.with_home(workspace_admin::list_workspaces).await
    }

    /// Adds to a workspace's sandbox policy, as `actor`.
    ///
    /// # Errors
    /// [`WorkspaceCommandError`].
    pub async fn set_policy(
        &self,
        actor: Actor,
        change: PolicyChange,
    ) -> Result<PolicySet, WorkspaceCommandError> {
        self.with_home(move |home| workspace_admin::set_policy(home, actor, &change))
            .await
    }

    /// Resets a workspace's sandbox policy to the defaults, as `actor`.
    ///
    /// # Errors
    /// [`WorkspaceCommandError`].
    pub async fn reset_policy(
        &self,
        actor: Actor,
        path: PathBuf,
    ) -> Result<PolicyReset, WorkspaceCommandError> {
        self.with_home(move |home| workspace_admin::reset_policy(home, actor, &path))
            .await
    }

    /// Runs a blocking change on the agent's home.
    async fn with_home<T: Send + 'static>(
        &self,
        change: impl FnOnce(&AgentHome) -> Result<T, AdminError> + Send + 'static,
    ) -> Result<T, WorkspaceCommandError> {
        let home: Arc<AgentHome> = self
            .home()
            .cloned()
            .ok_or(WorkspaceCommandError::NotRunning)?;
        tokio::task::spawn_blocking(move || change(&home))
            .await
            .map_err(|_| WorkspaceCommandError::NotRunning)?
            .map_err(WorkspaceCommandError::from)
    }
}
