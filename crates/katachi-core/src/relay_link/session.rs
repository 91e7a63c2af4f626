//! [`RelaySession`]: keeps a registered agent online with its relay until told to stop.
//!
//! Every `heartbeat_every` it sends a heartbeat; when the relay acknowledges it, the agent is
//! online and the activity outbox is flushed. It publishes an [`AgentStatus`] on a watch channel
//! (for the CLI and the tray) and into the status file (for `katachi status`).
//!
//! # Guarantees
//! - The relay being down is never fatal: the state goes to `reconnecting` and heartbeats go on;
//!   queued events stay queued and go out as soon as the relay answers again.
//! - A revoked or forgotten agent stops the session and its local credentials are wiped: they can
//!   never work again, and keeping them would only hide that a new sign-in is needed.
//! - Credentials that could not be saved after sign-in are kept in memory and the save is retried
//!   on every tick until it succeeds.
//!
//! The session borrows a SQLite connection and is not `Send`: run it on a current-thread runtime
//! or a local task.

use std::future::Future;
use std::time::Duration;

use katachi_proto::agent::Heartbeat;
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use crate::activity::{flush_outbox, ActivityError};
use crate::agent_home::AgentHome;
use crate::agent_status::{AgentStatus, ConnectionState, StatusFile};
use crate::auth::AgentCredentials;
use crate::relay_link::calls::{RelayClient, RelayError};
use crate::store::{Store, StoreError};

/// Default time between heartbeats.
pub const DEFAULT_HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// How a session is run.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Time between heartbeats (and outbox flushes).
    pub heartbeat_every: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            heartbeat_every: DEFAULT_HEARTBEAT_EVERY,
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The shutdown future completed (SIGINT, SIGTERM, quit).
    Stopped,
    /// The relay says the agent was revoked; local credentials were wiped (`credentials_wiped`
    /// is false when removing the file failed).
    Revoked {
        /// Whether the sealed credentials file is gone.
        credentials_wiped: bool,
    },
    /// The relay no longer knows the agent (unregistered, or reset); local credentials were wiped.
    Forgotten {
        /// Whether the sealed credentials file is gone.
        credentials_wiped: bool,
    },
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store (outbox, workspaces) could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A registered agent's session with its relay.
pub struct RelaySession<'h> {
    /// The agent home (to save or wipe credentials).
    home: &'h AgentHome,
    /// Signed calls to the relay.
    client: RelayClient,
    /// Outbox and workspace count.
    store: Store,
    /// Where `katachi status` reads the state.
    status_file: StatusFile,
    /// Heartbeat period.
    options: SessionOptions,
    /// The latest status, for live subscribers.
    status: watch::Sender<AgentStatus>,
    /// Fired to send the next heartbeat at once (the tunnel was refused: confirm with the relay).
    wake: Arc<Notify>,
    /// False while freshly obtained credentials are only in memory.
    credentials_saved: bool,
    /// What the status file says now (its times left out) and when it was written: a heartbeat
    /// that changes nothing else refreshes the file at most every [`STATUS_FILE_REFRESH`].
    file_written: std::sync::Mutex<Option<(AgentStatus, std::time::Instant)>>,
}

/// How stale the status file's heartbeat time may get while nothing else changes. The file is for
/// readers without the control socket; a write is a file, an fsync and a rename on the user's
/// disk, so an idle agent does not write one every heartbeat.
pub const STATUS_FILE_REFRESH: Duration = Duration::from_secs(60);

impl std::fmt::Debug for RelaySession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySession")
            .field("client", &self.client)
            .field("options", &self.options)
            .field("credentials_saved", &self.credentials_saved)
            .finish_non_exhaustive()
    }
}

impl<'h> RelaySession<'h> {
    /// A session for `client` in `home`; `credentials_saved` is false when the credentials it
    /// holds could not be sealed yet (the session retries).
    ///
    /// # Errors
    /// [`SessionError::Store`] when the store does not open.
    pub fn new(
        home: &'h AgentHome,
        client: RelayClient,
        credentials_saved: bool,
        options: SessionOptions,
    ) -> Result<Self, SessionError> {
        let store = home.store()?;
        let mut first = AgentStatus::new(ConnectionState::Connecting);
        first.relay_url = Some(client.credentials().relay_url().as_str().to_owned());
        first.agent_id = Some(client.credentials().agent_id().to_owned());
        first.pending_events = store.outbox().pending_count().unwrap_or(0);
        let (status, _) = watch::channel(first);
        let session = Self {
            home,
            client,
            store,
            status_file: StatusFile::new(home.dirs().agent_status_path()),
            options,
            status,
            credentials_saved,
            wake: Arc::new(Notify::new()),
            file_written: std::sync::Mutex::new(None),
        };
        session.write_status_file();
        Ok(session)
    }

    /// Live status updates (the current value first).
    pub fn subscribe(&self) -> watch::Receiver<AgentStatus> {
        self.status.subscribe()
    }

    /// Makes `wake` send the next heartbeat at once (it keeps one permit when fired early), so a
    /// refusal seen elsewhere (the tunnel) is confirmed with the relay without waiting a period.
    pub fn wake_on(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// The relay client (its credentials and clock offset).
    pub fn client(&self) -> &RelayClient {
        &self.client
    }

    /// Runs until `shutdown` completes or the relay refuses the agent for good.
    ///
    /// # Errors
    /// None today; the result type leaves room for fatal local failures.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SessionEnd, SessionError> {
        let mut ticker = tokio::time::interval(self.options.heartbeat_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let step = async {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = self.wake.notified() => {}
                }
                self.tick().await
            };
            let outcome = tokio::select! {
                () = &mut shutdown => Some(SessionEnd::Stopped),
                end = step => end,
            };
            match outcome {
                None => continue,
                Some(SessionEnd::Stopped) => {
                    self.publish(ConnectionState::Stopped, None);
                    return Ok(SessionEnd::Stopped);
                }
                Some(end) => return Ok(end),
            }
        }
    }

    /// One heartbeat (and flush when it is acknowledged); `Some` when the session must end.
    async fn tick(&mut self) -> Option<SessionEnd> {
        self.retry_saving_credentials();
        let workspaces = self
            .store
            .workspaces()
            .list()
            .map(|w| u32::try_from(w.len()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let beat = Heartbeat {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            workspaces,
        };
        match self.client.heartbeat(&beat).await {
            Ok(_) => {
                if self.status.borrow().state != ConnectionState::Online {
                    // The relay answers again: send what waited, without sitting out the backoff.
                    if let Err(e) = self.store.outbox().retry_all_now() {
                        tracing::warn!(error = %e, "cannot reschedule queued events");
                    }
                }
                let now = crate::store::now_unix();
                self.status.send_modify(|s| s.last_heartbeat_at = Some(now));
                self.publish(ConnectionState::Online, None);
                self.flush().await
            }
            Err(e) => self.on_relay_error(&e),
        }
    }

    /// Flushes the outbox after an acknowledged heartbeat.
    async fn flush(&mut self) -> Option<SessionEnd> {
        match flush_outbox(&self.store, &self.client).await {
            Ok(report) if report.delivered > 0 || report.deferred > 0 => {
                tracing::debug!(?report, "outbox flushed");
            }
            Ok(_) => {}
            Err(ActivityError::Relay(e)) => return self.on_relay_error(&e),
            Err(e) => tracing::warn!(error = %e, "cannot flush the activity outbox"),
        }
        self.publish_unchanged();
        None
    }

    /// Maps a failed call to a state; `Some` when the session must end.
    fn on_relay_error(&mut self, e: &RelayError) -> Option<SessionEnd> {
        if e.needs_sign_in() {
            let credentials_wiped = self.wipe_credentials();
            self.publish(ConnectionState::NeedsSignIn, Some(e.to_string()));
            return Some(match e {
                RelayError::Revoked => SessionEnd::Revoked { credentials_wiped },
                _ => SessionEnd::Forgotten { credentials_wiped },
            });
        }
        let state = if !e.is_transient() {
            ConnectionState::Error
        } else if self.status.borrow().last_heartbeat_at.is_some() {
            ConnectionState::Reconnecting
        } else {
            ConnectionState::Connecting
        };
        tracing::warn!(error = %e, "relay call failed");
        self.publish(state, Some(e.to_string()));
        None
    }

    /// Removes the sealed credentials; false (logged) when that failed.
    fn wipe_credentials(&mut self) -> bool {
        self.credentials_saved = true; // nothing left worth saving
        match AgentCredentials::wipe(self.home) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot remove the revoked agent's credentials");
                false
            }
        }
    }

    /// Seals credentials that only live in memory; logged and retried next tick on failure.
    fn retry_saving_credentials(&mut self) {
        if self.credentials_saved {
            return;
        }
        match self.client.credentials().save(self.home) {
            Ok(()) => {
                tracing::info!("agent credentials saved");
                self.credentials_saved = true;
            }
            Err(e) => tracing::warn!(error = %e, "agent credentials still not saved; retrying"),
        }
    }

    /// Sets the state and reason, refreshes the derived fields, and writes the status file.
    fn publish(&mut self, state: ConnectionState, reason: Option<String>) {
        self.status.send_if_modified(|s| {
            let changed = s.state != state || s.reason != reason;
            s.state = state;
            s.reason = reason;
            changed
        });
        self.publish_unchanged();
    }

    /// Refreshes offset, queue length and time, notifying subscribers only of real changes.
    fn publish_unchanged(&mut self) {
        let offset = self.client.clock_offset_secs();
        let pending = self.store.outbox().pending_count().unwrap_or(0);
        self.status.send_if_modified(|s| {
            let changed = s.clock_offset_secs != offset || s.pending_events != pending;
            s.clock_offset_secs = offset;
            s.pending_events = pending;
            s.updated_at = crate::store::now_unix();
            changed
        });
        self.write_status_file();
    }

    /// Writes the current status when it changed, or when only its times changed and the file is
    /// older than [`STATUS_FILE_REFRESH`]; a failure is logged (the agent keeps running) and
    /// retried at the next publish.
    fn write_status_file(&self) {
        let snapshot = self.status.borrow().clone();
        let timeless = AgentStatus {
            last_heartbeat_at: None,
            updated_at: 0,
            ..snapshot.clone()
        };
        let mut written = self
            .file_written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = written
            .as_ref()
            .is_some_and(|(said, at)| *said == timeless && at.elapsed() < STATUS_FILE_REFRESH);
        if fresh {
            return;
        }
        match self.status_file.write(&snapshot) {
            Ok(()) => *written = Some((timeless, std::time::Instant::now())),
            Err(e) => tracing::warn!(error = %e, "cannot write the status file"),
        }
    }
}
