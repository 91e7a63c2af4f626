//! The agent this process hosts: the tray process runs the user's one agent, and the tray and the
//! control socket drive it through the same [`Agent`] handle.
//!
//! [`AgentHost`] is Tauri-managed state. It holds the handle (absent while signed out, until the
//! core's runtime can start without credentials), the one [`Status`] channel the tray renders, and
//! the relay's address for "Open web UI". It assembles nothing itself beyond what
//! `katachi start` does with the same core types.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use katachi_core::agent::{Agent, AgentEnd, CommandError, RelayLink, Status};
use katachi_core::api::{ApiState, AuditLayer};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::signing::SystemClock;
use katachi_core::tunnel::SystemNetworkChanges;
use katachi_core::{AgentCredentials, AgentHome, KatachiDirs, SessionOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Heartbeat period of the hosted agent (the same default as `katachi start`).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

/// Why the hosted agent could not be started or commanded.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The agent's folders or secrets cannot be opened (permissions, keychain locked…).
    #[error("cannot open the agent's home: {0}")]
    Home(String),
    /// The command needs a signed-in agent; sign in first ("Sign in…").
    #[error("not signed in: sign in first")]
    NotSignedIn,
    /// The agent refused the command (see [`CommandError`]).
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// The hosted agent and its status. See the module docs.
pub struct AgentHost {
    /// The running agent, once signed in.
    agent: Option<Agent>,
    /// The agent's task, joined when the app quits.
    task: Mutex<Option<JoinHandle<AgentEnd>>>,
    /// The status: the agent's, or a constant "signed out" while none runs.
    status: watch::Receiver<Status>,
    /// Keeps the "signed out" channel open while no agent runs.
    _signed_out: Option<watch::Sender<Status>>,
    /// The relay's URL, for "Open web UI".
    relay: Arc<Mutex<Option<String>>>,
}

impl AgentHost {
    /// Opens the agent's home in `dirs` and starts the agent when credentials are saved there;
    /// without credentials the host reports [`Status::SignedOut`]. Must run inside a tokio
    /// runtime (the agent's task is spawned on it).
    ///
    /// # Errors
    /// [`HostError::Home`] when the home or its credentials cannot be read.
    pub fn launch(dirs: KatachiDirs) -> Result<Self, HostError> {
        let home = Arc::new(
            AgentHome::open(dirs, &SystemFingerprint)
                .map_err(|e| HostError::Home(e.to_string()))?,
        );
        let Some(credentials) =
            AgentCredentials::load(&home).map_err(|e| HostError::Home(e.to_string()))?
        else {
            return Ok(Self::signed_out());
        };
        let relay = Some(credentials.relay_url().to_string());
        // Opened (and migrated) once here, before the session and the API open it concurrently.
        drop(home.store().map_err(|e| HostError::Home(e.to_string()))?);
        let router = katachi_core::api::router(ApiState::new(home.clone()))
            .layer(AuditLayer::start(home.clone()));
        let options = SessionOptions {
            heartbeat_every: HEARTBEAT_EVERY,
        };
        let link = RelayLink::new(
            home,
            credentials,
            true,
            options,
            Arc::new(SystemClock),
            router,
        );
        let (agent, task) = Agent::start(link, Box::new(SystemNetworkChanges::new()));
        Ok(Self {
            status: agent.status(),
            agent: Some(agent),
            task: Mutex::new(Some(task)),
            _signed_out: None,
            relay: Arc::new(Mutex::new(relay)),
        })
    }

    /// A host with no agent: signed out.
    pub fn signed_out() -> Self {
        let (sender, status) = watch::channel(Status::SignedOut { reason: None });
        Self {
            agent: None,
            task: Mutex::new(None),
            status,
            _signed_out: Some(sender),
            relay: Arc::new(Mutex::new(None)),
        }
    }

    /// The status: the current value, then every change.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The relay's URL, once known (from the credentials or a "connected" status).
    pub fn relay_url(&self) -> Option<String> {
        self.relay.lock().ok().and_then(|relay| relay.clone())
    }

    /// Remembers the relay a "connected" status names (for "Open web UI").
    pub fn note_status(&self, status: &Status) {
        if let (Status::Connected { relay, .. }, Ok(mut known)) = (status, self.relay.lock()) {
            *known = Some(relay.clone());
        }
    }

    /// Pauses remote access for `duration`.
    ///
    /// # Errors
    /// [`HostError::NotSignedIn`], or the agent's refusal.
    pub async fn pause(&self, duration: Duration) -> Result<(), HostError> {
        Ok(self.agent()?.pause(duration).await?)
    }

    /// Ends a pause.
    ///
    /// # Errors
    /// [`HostError::NotSignedIn`], or the agent's refusal.
    pub async fn resume(&self) -> Result<(), HostError> {
        Ok(self.agent()?.resume().await?)
    }

    /// Signs out. Needs the core's sign-out (not there yet): until then, refused.
    ///
    /// # Errors
    /// [`HostError::NotSignedIn`] while no agent runs.
    pub async fn sign_out(&self) -> Result<(), HostError> {
        self.agent()?;
        Err(HostError::NotSignedIn)
    }

    /// Stops the agent cleanly (its session says "stopped", pending events stay in the outbox) and
    /// waits for its task to end. Nothing to do when none runs or it already ended.
    pub async fn stop(&self) {
        let Some(agent) = &self.agent else { return };
        // Already ended by itself when this fails: its task's result says how.
        let _ = agent.stop().await;
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The running agent.
    fn agent(&self) -> Result<&Agent, HostError> {
        self.agent.as_ref().ok_or(HostError::NotSignedIn)
    }
}
