//! State shared by every handler.

use std::sync::Arc;

use crate::config::RelayConfig;
use crate::crypto::MasterKey;
use crate::store::Store;

/// Cheap-to-clone handle on the relay's shared state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What the handlers share.
pub struct Inner {
    /// The database.
    pub store: Store,
    /// Seals secrets at rest.
    pub master: MasterKey,
    /// The configuration.
    pub config: RelayConfig,
    /// `https://host:port` without a trailing slash.
    pub public_url: String,
    /// Password hashing with a bounded number of argon2 computations at once.
    pub passwords: crate::password::PasswordHashing,
    /// In-memory limiter per client address in front of sign-in, sign-up and device codes.
    pub address_limiter: crate::address_limit::AddressLimiter,
    /// Sends e-mail verification links (or logs them in local mode).
    pub mailer: crate::mail::Mailer,
    /// HTTP client for OAuth providers.
    pub http: reqwest::Client,
    /// Verification material of agents seen recently.
    pub agent_cache: crate::agent_cache::AgentCache,
    /// Open agent tunnels.
    pub tunnels: crate::tunnel::TunnelRegistry,
    /// Forwarded requests in flight, ended by sign-out and revocation.
    pub streams: crate::tunnel::LiveStreams,
    /// Connects to users' remote MCP servers for their agents.
    pub mcp: crate::mcp::McpBroker,
    /// This instance among the others on the same database (routes, internal link).
    pub cluster: crate::cluster::Cluster,
    /// Prometheus metrics, served on the metrics listener only.
    pub metrics: crate::metrics::Metrics,
    /// Set when a graceful shutdown begins: `/readyz` answers `503` from then on.
    pub draining: crate::health::Draining,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// The public origin (`scheme://host[:port]`), for Origin checks.
    pub fn public_origin(&self) -> String {
        url::Url::parse(&self.public_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| self.public_url.clone())
    }
}
