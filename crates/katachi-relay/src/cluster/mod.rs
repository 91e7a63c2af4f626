//! Several relay instances on one PostgreSQL: tunnel routing, forwarding between instances, and
//! broadcasts.
//!
//! # Contract
//! - Each start is a new instance with a random id. With `--internal-listen` it serves an internal
//!   listener (mutual TLS 1.3, HTTP/2; `peer_tls.rs`, `internal.rs`) and records itself in
//!   `relay_instances` every [`TOUCH_INTERVAL`]; an instance not seen for
//!   [`crate::store::INSTANCE_TTL_SECS`] is dead, and its routes are never used again.
//! - The instance that opens an agent's tunnel records the route (agent → instance, generation) and
//!   announces the take-over ([`broadcast`]); the instance that loses the tunnel removes the route
//!   only if it is still its own.
//! - A browser request for an agent whose tunnel is elsewhere goes to that instance over the
//!   internal link (`peers.rs`) and is answered there through the tunnel, with the same limits,
//!   screening and liveness as a local one. The receiving instance never forwards again (no loops).
//!   The route is remembered for a few seconds while take-over notices arrive (`route_cache.rs`),
//!   so a forwarded request does not wait for the routing table each time.
//! - Without `--internal-listen` the instance neither records routes nor forwards: it serves the
//!   tunnels it holds, as a single relay does.
//! - Stopping cleanly ([`Cluster::leave`]) removes the instance and its routes at once, and tells
//!   the other instances, which forget the routes they remembered.

pub mod broadcast;
mod internal;
pub mod peer_tls;
mod peers;
mod route_cache;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::InternalConfig;
use crate::state::AppState;
use crate::store::{InstanceRow, TunnelRoute};

pub(crate) use self::internal::serve_internal;
use self::peer_tls::PeerIdentity;
pub(crate) use self::peers::forward_to_peer;
use self::peers::PeerLinks;
use self::route_cache::RouteCache;
pub use self::route_cache::ROUTE_CACHE_TTL;

/// How often an instance says it is alive (and purges dead ones).
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(3);

/// This instance's place among the relay instances (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    /// Its id.
    id: String,
    /// Set when it takes part in routing (`--internal-listen`).
    node: Option<Arc<Node>>,
    /// True while a LISTEN connection is up.
    listening: Arc<AtomicBool>,
}

/// What an instance with an internal listener has.
struct Node {
    /// Its row in `relay_instances`.
    row: InstanceRow,
    /// When it started (unix s).
    started_at: i64,
    /// Its internal TLS identity.
    identity: PeerIdentity,
    /// Where the internal listener is bound.
    bound: std::net::SocketAddr,
    /// The bound internal listener, until [`serve_internal`] takes it.
    listener: std::sync::Mutex<Option<TcpListener>>,
    /// Connections to the other instances.
    peers: PeerLinks,
    /// Remote routes read recently (`route_cache.rs`).
    routes: RouteCache,
}

impl Cluster {
    /// An instance without an internal listener.
    pub fn alone() -> Self {
        Self {
            id: crate::random_hex(8),
            node: None,
            listening: Arc::default(),
        }
    }

    /// Binds the internal listener and makes this instance's identity.
    ///
    /// # Errors
    /// Bind or key generation failures, with context.
    pub async fn bind(config: &InternalConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on --internal-listen {}", config.listen))?;
        let bound = listener.local_addr()?;
        let internal_url = config
            .advertise
            .clone()
            .unwrap_or_else(|| bound.to_string());
        let identity =
            PeerIdentity::generate().context("cannot make the internal TLS certificate")?;
        let id = crate::random_hex(8);
        let row = InstanceRow {
            id: id.clone(),
            internal_url,
            cert_sha256: identity.fingerprint(),
        };
        Ok(Self {
            id,
            node: Some(Arc::new(Node {
                row,
                started_at: crate::now_unix(),
                identity,
                bound,
                listener: std::sync::Mutex::new(Some(listener)),
                peers: PeerLinks::default(),
                routes: RouteCache::default(),
            })),
            listening: Arc::default(),
        })
    }

    /// This instance's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True for this instance's id.
    pub fn is_me(&self, instance_id: &str) -> bool {
        self.id == instance_id
    }

    /// True when it takes part in routing.
    pub fn is_routing(&self) -> bool {
        self.node.is_some()
    }

    /// Where the internal listener is bound, if any.
    pub fn internal_addr(&self) -> Option<std::net::SocketAddr> {
        self.node.as_ref().map(|n| n.bound)
    }

    /// True while notices from the other instances arrive (PostgreSQL `LISTEN` is up).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Records whether `LISTEN` is up. Either way notices may have been missed: every remembered
    /// route is forgotten.
    pub(crate) fn set_listening(&self, up: bool) {
        self.listening.store(up, Ordering::Relaxed);
        if let Some(node) = &self.node {
            node.routes.clear();
        }
    }

    /// Forgets every remembered route (an instance left).
    pub(crate) fn forget_routes(&self) {
        if let Some(node) = &self.node {
            node.routes.clear();
        }
    }

    /// Forgets the remembered route of `agent_id` (it moved, was revoked, or did not answer).
    pub(crate) fn forget_route(&self, agent_id: &str) {
        if let Some(node) = &self.node {
            node.routes.forget(agent_id);
        }
    }

    /// Records this instance as alive; purges dead ones.
    ///
    /// # Errors
    /// [`crate::store::StoreError`].
    pub async fn touch(&self, state: &AppState) -> Result<(), crate::store::StoreError> {
        let Some(node) = &self.node else {
            return Ok(());
        };
        let now = crate::now_unix();
        state
            .store
            .touch_instance(&node.row, node.started_at, now)
            .await?;
        let gone = state.store.purge_dead_instances(now).await?;
        if gone > 0 {
            tracing::info!(gone, "relay instances that stopped answering were removed");
        }
        Ok(())
    }

    /// Refreshes this instance's row every [`TOUCH_INTERVAL`] until the relay stops.
    pub(crate) async fn keep_alive(self, state: AppState) {
        if self.node.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(TOUCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.touch(&state).await {
                tracing::warn!(error = %e, "recording this relay instance as alive failed");
            }
        }
    }

    /// The agent's tunnel opened here as `generation`: the route points here, and whichever
    /// instance held it before lets go.
    pub(crate) async fn tunnel_opened(&self, state: &AppState, agent_id: &str, generation: u64) {
        if self.node.is_none() {
            return;
        }
        let generation = i64::try_from(generation).unwrap_or(i64::MAX);
        if let Err(e) = state
            .store
            .set_route(agent_id, &self.id, generation, crate::now_unix())
            .await
        {
            tracing::warn!(agent = %agent_id, error = %e, "recording the tunnel's route failed");
            return;
        }
        broadcast::publish(
            state,
            broadcast::Notice::TakenOver {
                agent_id: agent_id.to_owned(),
                instance_id: self.id.clone(),
            },
        )
        .await;
    }

    /// The agent's tunnel of `generation` here ended: its route goes unless a newer one replaced it.
    pub(crate) async fn tunnel_closed(&self, state: &AppState, agent_id: &str, generation: u64) {
        if self.node.is_none() {
            return;
        }
        let generation = i64::try_from(generation).unwrap_or(i64::MAX);
        if let Err(e) = state
            .store
            .clear_route(agent_id, &self.id, generation)
            .await
        {
            tracing::warn!(agent = %agent_id, error = %e, "removing the tunnel's route failed");
        }
    }

    /// The instance that holds the agent's tunnel, when it is another alive one: remembered for up
    /// to [`ROUTE_CACHE_TTL`] while `LISTEN` is up (`route_cache.rs`), read from the routing table
    /// otherwise.
    pub(crate) async fn remote_route(
        &self,
        state: &AppState,
        agent_id: &str,
    ) -> Result<Option<TunnelRoute>, crate::store::StoreError> {
        let Some(node) = &self.node else {
            return Ok(None);
        };
        // remembered routes are believed only while take-over notices arrive
        let listening = self.is_listening();
        if listening {
            if let Some(route) = node.routes.get(agent_id, std::time::Instant::now()) {
                return Ok(Some(route));
            }
        }
        let epoch = node.routes.epoch();
        let read_at = std::time::Instant::now();
        let route = state.store.route_of(agent_id, crate::now_unix()).await?;
        let route = route.filter(|r| !self.is_me(&r.instance.id));
        if let (true, Some(r)) = (listening, &route) {
            node.routes.put(agent_id, r.clone(), epoch, read_at);
        }
        Ok(route)
    }

    /// Leaves the cluster: this instance's row and routes go at once.
    pub async fn leave(&self, state: &AppState) {
        if self.node.is_none() {
            return;
        }
        if let Err(e) = state.store.remove_instance(&self.id).await {
            tracing::warn!(error = %e, "removing this relay instance's routes failed");
        }
        broadcast::publish(
            state,
            broadcast::Notice::Left {
                instance_id: self.id.clone(),
            },
        )
        .await;
    }

    fn node(&self) -> Option<&Node> {
        self.node.as_deref()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .field("routing", &self.is_routing())
            .finish_non_exhaustive()
    }
}
