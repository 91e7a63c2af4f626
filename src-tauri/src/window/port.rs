//! [`AgentPort`]: everything the window asks of the *running* agent, as one small trait.
//!
//! The window process never runs agent logic: sign-in, status and workspace changes go to the
//! agent that runs in the tray (or `katachi start`), so a change applies to that agent at once.
//! The real implementation is [`ControlPort`]; tests use a fake. Calls that
//! need no running agent (the sandbox self-test, the audit ledger, API keys) are not here: they go
//! straight to `katachi-core` (see `local`).

use std::future::Future;
use std::pin::Pin;

use katachi_core::agent::Status;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use katachi_core::control::{Client, ControlError, FrontEnd, StatusReport};
use katachi_core::{AgentHome, KatachiDirs};

use super::ipc_error::{IpcCode, IpcError};
use super::workspaces;

/// The future every port call returns.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, IpcError>> + Send + 'a>>;

/// The running agent as the Status view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentView {
    /// The one status (connected, waiting for approval…).
    pub status: Status,
    /// When the relay last acknowledged a heartbeat (unix seconds).
    pub last_heartbeat_at: Option<i64>,
}

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
    fn status(&self) -> PortFuture<'_, AgentView>;
    /// Every status change from now on (the current one first); ends when the agent goes away.
    fn watch(&self) -> PortFuture<'_, mpsc::Receiver<AgentView>>;
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

/// The port to the agent that runs on this machine.
///
/// Status, its changes and sign-in/out go over the agent's control socket
/// ([`katachi_core::control::Client`], as the app's front end); with no agent running they answer
/// [`IpcCode::AgentUnreachable`]. Workspace and policy changes go through
/// `katachi_core::workspace_admin` on this user's store, which the running agent reads on every
/// request (see `workspaces`): they apply at once, and work with no agent running too.
#[derive(Debug)]
pub struct ControlPort {
    /// This user's folders (or why they cannot be found).
    dirs: Result<KatachiDirs, String>,
}

impl ControlPort {
    /// The port for the agent of the user whose folders are `dirs`.
    pub fn new(dirs: Result<KatachiDirs, String>) -> Self {
        Self { dirs }
    }

    /// Runs a workspace change on a blocking thread.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&AgentHome) -> Result<T, IpcError> + Send + 'static,
    ) -> PortFuture<'static, T> {
        let dirs = self.dirs.clone();
        Box::pin(async move {
            let dirs = dirs.map_err(|reason| IpcError::new(IpcCode::Window, reason))?;
            tokio::task::spawn_blocking(move || work(&workspaces::open_home(&dirs)?))
                .await
                .map_err(|err| IpcError::new(IpcCode::Window, err.to_string()))?
        })
    }
}

impl AgentPort for ControlPort {
    fn status(&self) -> PortFuture<'_, AgentView> {
        let dirs = self.dirs.clone();
        Box::pin(async move {
            let mut client = connect(dirs).await?;
            let report = client.status().await.map_err(control_error)?;
            Ok(view_of(report))
        })
    }
    fn watch(&self) -> PortFuture<'_, mpsc::Receiver<AgentView>> {
        let dirs = self.dirs.clone();
        Box::pin(async move {
            let client = connect(dirs).await?;
            let mut stream = client.watch().await.map_err(control_error)?;
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(async move {
                // ends when the agent goes away or the window stops listening
                while let Ok(Some(report)) = stream.next().await {
                    if tx.send(view_of(report)).await.is_err() {
                        break;
                    }
                }
            });
            Ok(rx)
        })
    }
    fn sign_in(&self, request: SignInRequest) -> PortFuture<'_, SignInStarted> {
        let dirs = self.dirs.clone();
        Box::pin(async move {
            let mut client = connect(dirs).await?;
            let started = client
                .sign_in(&request.relay, request.ca_pem, None)
                .await
                .map_err(control_error)?;
            Ok(SignInStarted {
                user_code: started.user_code,
                verification_uri: started.verification_uri,
                verification_uri_complete: started.verification_uri_complete,
                expires_at: started.expires_at,
            })
        })
    }
    fn cancel_sign_in(&self) -> PortFuture<'_, ()> {
        let dirs = self.dirs.clone();
        Box::pin(async move {
            let mut client = connect(dirs).await?;
            client.cancel_sign_in().await.map_err(control_error)
        })
    }
    fn sign_out(&self) -> PortFuture<'_, ()> {
        let dirs = self.dirs.clone();
        Box::pin(async move {
            let mut client = connect(dirs).await?;
            client.sign_out(false).await.map_err(control_error)
        })
    }
    fn workspaces(&self) -> PortFuture<'_, Vec<WorkspaceItem>> {
        self.blocking(workspaces::list)
    }
    fn add_workspace(&self, path: String) -> PortFuture<'_, Vec<WorkspaceItem>> {
        self.blocking(move |home| workspaces::add(home, &path))
    }
    fn remove_workspace(&self, path: String) -> PortFuture<'_, Vec<WorkspaceItem>> {
        self.blocking(move |home| workspaces::remove(home, &path))
    }
    fn set_policy(&self, policy: WorkspacePolicy) -> PortFuture<'_, Vec<WorkspaceItem>> {
        self.blocking(move |home| workspaces::set_policy(home, &policy))
    }
}

/// A control client to the running agent, as the app.
async fn connect(dirs: Result<KatachiDirs, String>) -> Result<Client, IpcError> {
    let dirs = dirs.map_err(|reason| IpcError::new(IpcCode::Window, reason))?;
    match Client::connect(&dirs).await {
        Ok(Some(client)) => Ok(client.as_front_end(FrontEnd::App)),
        Ok(None) => Err(IpcError::new(
            IpcCode::AgentUnreachable,
            "cannot reach the Katachi agent: it is not running; start Katachi from the tray or \
             run `katachi start`",
        )),
        Err(err) => Err(IpcError::new(
            IpcCode::AgentUnreachable,
            format!("cannot reach the Katachi agent: {err}"),
        )),
    }
}

/// The agent's refusals keep their code in the message; the rest means it cannot be reached.
fn control_error(err: ControlError) -> IpcError {
    match err {
        ControlError::Refused(failure) => IpcError::new(
            IpcCode::AgentRefused,
            format!("{} ({})", failure.message, failure.code),
        ),
        other => IpcError::new(
            IpcCode::AgentUnreachable,
            format!("cannot reach the Katachi agent: {other}"),
        ),
    }
}

/// What the window shows of a status report.
fn view_of(report: StatusReport) -> AgentView {
    AgentView {
        status: report.status,
        last_heartbeat_at: report.session.last_heartbeat_at,
    }
}
