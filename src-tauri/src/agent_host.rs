//! The agent this process hosts: the tray process runs the user's one agent, and the tray (and
//! the control socket) drive it through the same [`Agent`] handle.
//!
//! [`AgentHost`] is Tauri-managed state: the handle, its task (joined at Quit), and the relay's
//! address for "Open web UI". The agent is `katachi-core`'s runtime, launched to stay up while
//! signed out ([`WhenSignedOut::Stay`]); this module only starts, forwards and stops it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use katachi_core::agent::{Agent, AgentConfig, AgentEnd, CommandError, Status, WhenSignedOut};
use katachi_core::ai::approvals::Approvals;
use katachi_core::api::RunDenied;
use katachi_core::control::{AgentLock, ControlServer, FrontEnd, LockError};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::signing::SystemClock;
use katachi_core::tunnel::SystemNetworkChanges;
use katachi_core::{AgentHome, Config, KatachiDirs, SessionOptions};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::approval_desktop::ApprovalDesk;

/// Heartbeat period of the hosted agent (the same default as `katachi start`).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

/// Why the hosted agent could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The agent's folders or secrets cannot be opened (permissions, keychain locked…); the
    /// message names the layer, `katachi doctor` says more.
    #[error("cannot open the agent's home: {0}")]
    Home(String),
    /// Another agent already runs for this user (another app, or `katachi start`); it keeps
    /// running and this process does not start a second one.
    #[error("{0}")]
    AlreadyRunning(LockError),
    /// The one-agent lock could not be taken (runtime folder, a filesystem without locks).
    #[error("cannot take the one-agent lock: {0}")]
    Lock(LockError),
}

/// The hosted agent. See the module docs.
pub struct AgentHost {
    /// The running agent.
    agent: Agent,
    /// The agent's task, joined when the app quits.
    task: Mutex<Option<JoinHandle<AgentEnd>>>,
    /// The agent's config file, read again for each notification (the window may change it).
    config_file: PathBuf,
    /// The one-agent lock, held while this process runs (`None` in tests).
    _lock: Option<AgentLock>,
    /// The control socket the window process and the `katachi` CLI drive this agent through
    /// (`None` in tests, or when it could not be served: then the tray still works).
    _control: Option<ControlServer>,
}

impl AgentHost {
    /// Opens the agent's home in `dirs` and launches the agent: online when credentials are
    /// saved, else signed out and waiting for a sign-in. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`HostError::Home`] when the home cannot be opened.
    /// Takes the one-agent lock first (a second app, or an app while `katachi start` runs, gets
    /// [`HostError::AlreadyRunning`] and starts nothing), and serves the control socket next to
    /// the agent.
    pub fn launch(dirs: KatachiDirs) -> Result<Self, HostError> {
        let lock = AgentLock::acquire(&dirs, FrontEnd::App).map_err(|e| match e {
            e @ (LockError::AlreadyRunning { .. } | LockError::HeldByUnknown(_)) => {
                HostError::AlreadyRunning(e)
            }
            other => HostError::Lock(other),
        })?;
        let home = Arc::new(
            AgentHome::open(dirs.clone(), &SystemFingerprint)
                .map_err(|e| HostError::Home(e.to_string()))?,
        );
        let mut host = Self::launch_in(Arc::clone(&home))?;
        host._lock = Some(lock);
        host._control = match ControlServer::start(&dirs, host.agent.clone(), home) {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!(error = %e, "the control socket is not served; the window and `katachi` cannot reach this agent");
                eprintln!("katachi-app: the control socket is not served: {e}");
                None
            }
        };
        Ok(host)
    }

    /// [`Self::launch`] in an opened home (tests pass one with an in-memory keystore).
    ///
    /// # Errors
    /// [`HostError::Home`] when the store cannot be opened.
    pub fn launch_in(home: Arc<AgentHome>) -> Result<Self, HostError> {
        let config_file = home.dirs().config_file();
        // Opened (and migrated) once here, before the session and the API open it concurrently.
        drop(home.store().map_err(|e| HostError::Home(e.to_string()))?);
        let (agent, task) = Agent::launch(AgentConfig {
            home,
            options: SessionOptions {
                heartbeat_every: HEARTBEAT_EVERY,
            },
            clock: Arc::new(SystemClock),
            network: Box::new(SystemNetworkChanges::new()),
            when_signed_out: WhenSignedOut::Stay,
        });
        Ok(Self {
            agent,
            task: Mutex::new(Some(task)),
            config_file,
            _lock: None,
            _control: None,
        })
    }

    /// The agent handle (for the control socket, which serves the same agent).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The status: the current value, then every change.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.agent.status()
    }

    /// The commands the sandbox denies from now on, as they happen (for the notification).
    pub fn denials(&self) -> broadcast::Receiver<RunDenied> {
        self.agent.denials()
    }

    /// The AI's approvals hub (the tray notifies each approval; a click answers it).
    pub fn approvals(&self) -> Approvals {
        self.agent.approvals().clone()
    }

    /// What the approval notifications need from this host: whether notifications are on (read
    /// before each) and each workspace's folder (read from the store).
    pub(crate) fn approval_desk(&self) -> ApprovalDesk {
        let config_file = self.config_file.clone();
        let home = self.agent.home().cloned();
        ApprovalDesk {
            enabled: Box::new(move || {
                Config::load(&config_file).map_or(true, |config| config.notifications.enabled)
            }),
            workspace_path: Box::new(move |id| {
                let store = home.as_ref()?.store().ok()?;
                let list = store.workspaces().list().ok()?;
                list.into_iter().find(|w| w.id == id).map(|w| w.path)
            }),
        }
    }

    /// The relay the agent is registered with, while it is.
    pub fn relay_url(&self) -> Option<String> {
        self.agent
            .registered()
            .borrow()
            .as_ref()
            .map(|registered| registered.relay.clone())
    }

    /// Whether the user wants desktop notifications (`[notifications] enabled`, default on; an
    /// unreadable config counts as the default).
    pub fn notifications_enabled(&self) -> bool {
        Config::load(&self.config_file).map_or(true, |config| config.notifications.enabled)
    }

    /// Pauses remote access for `duration`.
    ///
    /// # Errors
    /// The agent's refusal ([`CommandError`]).
    pub async fn pause(&self, duration: Duration) -> Result<(), CommandError> {
        self.agent.pause(duration).await
    }

    /// Ends a pause.
    ///
    /// # Errors
    /// The agent's refusal ([`CommandError`]).
    pub async fn resume(&self) -> Result<(), CommandError> {
        self.agent.resume().await
    }

    /// Signs out: the relay forgets this machine, the credentials are wiped.
    ///
    /// # Errors
    /// The agent's refusal ([`CommandError`]).
    pub async fn sign_out(&self) -> Result<(), CommandError> {
        self.agent.sign_out(false).await
    }

    /// Stops the agent cleanly (its session says "stopped", pending events stay in the outbox)
    /// and waits for its task to end.
    pub async fn stop(&self) {
        // Already ended by itself when this fails: its task's result says how.
        let _ = self.agent.stop().await;
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
