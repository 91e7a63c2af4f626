//! [`AgentPort`]: everything the window asks of the *running* agent, as one small trait.
//!
//! The window process never runs agent logic: sign-in, status and workspace changes go to the
//! agent that runs in the tray (or `katachi start`) over its control socket, so a change applies
//! to that agent at once. The real implementation is [`ControlPort`]; tests use a fake. Calls that
//! need no running agent (the sandbox self-test, the audit ledger, API keys) are not here: they go
//! straight to `katachi-core` (see `local`).

use std::future::Future;
use std::pin::Pin;

use katachi_core::agent::Status;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::ipc_error::{IpcCode, IpcError};

/// The future every port call returns.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, IpcError>> + Send + 'a>>;

/// A sign-in request as the Connect view makes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SignInRequest {
    /// The relay's base URL (validated by the caller).
    pub relay: String,
    /// The relay's CA (PEM) for a self-hosted relay, pinned as the only root.
    pub ca_pem: Option<String>,
}

/// A started sign-in: what the Connect view shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInStarted {
    /// The code the user confirms on the approval page.
    pub user_code: String,
    /// The approval page.
    pub verification_uri: String,
    /// The approval page with the code filled in, when the relay gives one.
    pub verification_uri_complete: Option<String>,
    /// When the code expires (unix seconds).
    pub expires_at: i64,
}

/// An allowed folder as the Workspaces view lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceItem {
    /// The folder.
    pub path: String,
    /// `false` when the folder is gone ("missing").
    pub exists: bool,
    /// Commands allowed on top of the default policy.
    pub allowed_commands: Vec<String>,
    /// Hosts allowed on top of the default policy.
    pub allowed_hosts: Vec<String>,
}

/// A workspace's policy as the Workspaces view edits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePolicy {
    /// The allowed folder.
    pub path: String,
    /// Commands allowed there (replaces the stored list).
    pub allowed_commands: Vec<String>,
    /// Hosts allowed there (replaces the stored list).
    pub allowed_hosts: Vec<String>,
}

/// What the window asks of the running agent.
pub trait AgentPort: Send + Sync + 'static {
    /// The agent's status now.
    fn status(&self) -> PortFuture<'_, Status>;
    /// Every status change from now on (the current one first); ends when the agent goes away.
    fn watch(&self) -> PortFuture<'_, mpsc::Receiver<Status>>;
    /// Starts the device flow at the relay; the agent publishes the code in its status.
    fn sign_in(&self, request: SignInRequest) -> PortFuture<'_, SignInStarted>;
    /// Abandons a started sign-in.
    fn cancel_sign_in(&self) -> PortFuture<'_, ()>;
    /// Signs out (the relay forgets this agent).
    fn sign_out(&self) -> PortFuture<'_, ()>;
    /// The allowed folders.
    fn workspaces(&self) -> PortFuture<'_, Vec<WorkspaceItem>>;
    /// Allows `path`; returns the list after the change.
    fn add_workspace(&self, path: String) -> PortFuture<'_, Vec<WorkspaceItem>>;
    /// Stops allowing `path`; returns the list after the change.
    fn remove_workspace(&self, path: String) -> PortFuture<'_, Vec<WorkspaceItem>>;
    /// Replaces the allowed commands and hosts of a workspace; returns the list after the change.
    fn set_policy(&self, policy: WorkspacePolicy) -> PortFuture<'_, Vec<WorkspaceItem>>;
}

/// The port to the agent that runs on this machine, over its control socket.
#[derive(Debug, Default)]
pub struct ControlPort;

impl ControlPort {
    /// The error of every call while no control socket can be reached.
    fn unreachable<T>() -> PortFuture<'static, T> {
        Box::pin(async {
            Err(IpcError::new(
                IpcCode::AgentUnreachable,
                "cannot reach the Katachi agent: it is not running, or this build has no control \
                 socket yet; start Katachi from the tray or run `katachi start`",
            ))
        })
    }
}

impl AgentPort for ControlPort {
    fn status(&self) -> PortFuture<'_, Status> {
        Self::unreachable()
    }
    fn watch(&self) -> PortFuture<'_, mpsc::Receiver<Status>> {
        Self::unreachable()
    }
    fn sign_in(&self, _request: SignInRequest) -> PortFuture<'_, SignInStarted> {
        Self::unreachable()
    }
    fn cancel_sign_in(&self) -> PortFuture<'_, ()> {
        Self::unreachable()
    }
    fn sign_out(&self) -> PortFuture<'_, ()> {
        Self::unreachable()
    }
    fn workspaces(&self) -> PortFuture<'_, Vec<WorkspaceItem>> {
        Self::unreachable()
    }
    fn add_workspace(&self, _path: String) -> PortFuture<'_, Vec<WorkspaceItem>> {
        Self::unreachable()
    }
    fn remove_workspace(&self, _path: String) -> PortFuture<'_, Vec<WorkspaceItem>> {
        Self::unreachable()
    }
    fn set_policy(&self, _policy: WorkspacePolicy) -> PortFuture<'_, Vec<WorkspaceItem>> {
        Self::unreachable()
    }
}
