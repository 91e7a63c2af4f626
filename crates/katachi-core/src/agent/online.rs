//! The seam between the supervisor and the relay: a relay session (heartbeats, outbox) and a
//! tunnel (dial + reconnect), each started fresh for every online period (after a pause too).
//! [`RelayLink`] is the real one; the supervisor's tests script their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use tokio::sync::{oneshot, watch, Notify};

use crate::agent_status::AgentStatus;
use crate::signing::{Clock, ClockOffset};
use crate::tunnel::{NetworkChanges, ReconnectOptions, TunnelDialer, TunnelError, TunnelStatus};
use crate::{AgentCredentials, AgentHome, RelayClient, RelaySession, SessionEnd, SessionOptions};

/// A boxed future the supervisor can select on.
pub(crate) type Running<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How a relay session ended, or why it could not start.
pub(crate) type SessionOutcome = Result<SessionEnd, String>;

/// What the supervisor starts for each online period.
pub(crate) trait Online: Send + Sync + 'static {
    /// The relay's URL, for [`super::Status::Connected`].
    fn relay(&self) -> String;
    /// What to call the agent on screen: the device name it registered under, else its id.
    fn agent_name(&self) -> String;
    /// Heartbeats and outbox until `stop` fires or the relay refuses the agent; each session
    /// status goes to `status`; `wake` sends the next heartbeat at once.
    fn session(
        &self,
        stop: oneshot::Receiver<()>,
        status: watch::Sender<AgentStatus>,
        wake: Arc<Notify>,
    ) -> Running<SessionOutcome>;
    /// The tunnel, kept up until it stops for good (then its error); statuses go to `status`.
    fn tunnel(
        &self,
        status: watch::Sender<TunnelStatus>,
        network: Box<dyn NetworkChanges>,
    ) -> Running<TunnelError>;
}

/// The real relay link of one registered agent: its home, its credentials, the API it serves.
pub struct RelayLink {
    /// Store, status file, credentials.
    home: Arc<AgentHome>,
    /// The agent's credentials (secrets duplicated per online period, never cloned out).
    credentials: AgentCredentials,
    /// False while the credentials are only in memory (the session retries saving them).
    credentials_saved: bool,
    /// Heartbeat period.
    options: SessionOptions,
    /// The local clock.
    clock: Arc<dyn Clock>,
    /// Relay clock minus local clock, shared by the session's and the tunnel's clients of every
    /// online period (and the agent's other signed calls): learnt once from the relay's `Date`
    /// header, not once per connection.
    offset: Arc<ClockOffset>,
    /// The API served over the tunnel.
    router: Router,
}

impl std::fmt::Debug for RelayLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLink")
            .field("relay", &self.credentials.relay_url())
            .field("agent_id", &self.credentials.agent_id())
            .finish_non_exhaustive()
    }
}

impl RelayLink {
    /// The link of the agent `credentials` name, in `home`, serving `router` over the tunnel.
    pub fn new(
        home: Arc<AgentHome>,
        credentials: AgentCredentials,
        credentials_saved: bool,
        options: SessionOptions,
        clock: Arc<dyn Clock>,
        offset: Arc<ClockOffset>,
        router: Router,
    ) -> Self {
        Self {
            home,
            credentials,
            credentials_saved,
            options,
            clock,
            offset,
            router,
        }
    }

    /// A relay client for one online period: a fresh copy of the credentials, the link's offset.
    fn client(&self) -> Result<RelayClient, String> {
        let copy = self.credentials.duplicate();
        RelayClient::with_shared_offset(copy, Arc::clone(&self.clock), Arc::clone(&self.offset))
            .map_err(|e| e.to_string())
    }
}

impl Online for RelayLink {
    fn relay(&self) -> String {
        self.credentials.relay_url().to_string()
    }

    fn agent_name(&self) -> String {
        self.credentials.display_name().to_owned()
    }

    fn session(
        &self,
        stop: oneshot::Receiver<()>,
        status: watch::Sender<AgentStatus>,
        wake: Arc<Notify>,
    ) -> Running<SessionOutcome> {
        let home = Arc::clone(&self.home);
        let client = self.client();
        let saved = self.credentials_saved;
        let options = self.options.clone();
        // The session holds the SQLCipher store (not `Sync`) across awaits, so its future is not
        // `Send`: it runs on a blocking-pool thread that drives it on this runtime's handle.
        let runtime = tokio::runtime::Handle::current();
        let running = tokio::task::spawn_blocking(move || {
            runtime.block_on(async move {
                let session = RelaySession::new(&home, client?, saved, options)
                    .map_err(|e| e.to_string())?
                    .wake_on(wake);
                let mut updates = session.subscribe();
                let forward = async {
                    loop {
                        status.send_replace(updates.borrow_and_update().clone());
                        if updates.changed().await.is_err() {
                            return;
                        }
                    }
                };
                let stopped = async {
                    // A dropped sender (the supervisor gone) also stops the session.
                    let _ = stop.await;
                };
                let (end, ()) = tokio::join!(session.run(stopped), forward);
                end.map_err(|e| e.to_string())
            })
        });
        Box::pin(async move {
            running
                .await
                .map_err(|e| format!("the relay session task failed: {e}"))?
        })
    }

    fn tunnel(
        &self,
        status: watch::Sender<TunnelStatus>,
        network: Box<dyn NetworkChanges>,
    ) -> Running<TunnelError> {
        let router = self.router.clone();
        // An unusable set-up (CA, URL) is fatal: `TunnelError::Tls` is never retried.
        let setup = self.client().map_err(TunnelError::Tls).and_then(|client| {
            // The tunnel signs with the link's clock offset, as the session does: one idea of the
            // relay's time.
            TunnelDialer::new(client.credentials(), client.tunnel_signer())
        });
        Box::pin(async move {
            let dialer = match setup {
                Ok(d) => d,
                Err(e) => {
                    status.send_replace(TunnelStatus::Error {
                        reason: e.to_string(),
                    });
                    return e;
                }
            };
            dialer
                .serve_with_reconnect(router, ReconnectOptions { status, network })
                .await
        })
    }
}
