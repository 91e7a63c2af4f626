//! The tunnel: the agent dials the relay and serves its API over that connection, so the agent
//! never listens on a socket.
//!
//! # Protocol
//! 1. TCP + TLS 1.3 to the relay (the pinned CA as the only root when there is one, else the
//!    system roots; ALPN `http/1.1`).
//! 2. `GET /api/agent/tunnel` over HTTP/1.1, signed like every agent call (bearer token + the four
//!    signing headers, empty body), with `Connection: Upgrade` and `Upgrade: katachi-tunnel/1`;
//!    where a hop on the way refuses that upgrade, the same request as a WebSocket upgrade
//!    (subprotocol `katachi-tunnel.v1`), whose binary messages then carry the bytes
//!    ([`Carrier`]; the one that worked is dialled first from then on).
//! 3. On `101 Switching Protocols` the roles flip: the relay is the HTTP/2 *client* over the
//!    upgraded stream and the agent serves [`crate::api::router`] as the HTTP/2 *server*, at most
//!    [`MAX_CONCURRENT_STREAMS`] requests at once. HTTP/2 PINGs both ways notice a dead peer.
//!
//! [`TunnelDialer::dial_and_serve`] runs one such connection until it ends;
//! [`TunnelDialer::serve_with_reconnect`] keeps one up, redialing after the [`backoff`] policy
//! (fast right after a drop, so a restarted relay sees the agent back within ~1.5 s; exponential
//! up to 60 s for long outages), retrying at once when [`NetworkChanges`] reports a change, and
//! publishing a [`TunnelStatus`] on a `watch` channel, until the relay refuses the agent for good.
//!
//! # Layout
//! - `dial`: TLS set-up, the signed upgrade, and serving the router over the upgraded stream.
//! - `carrier`: the direct upgrade or the WebSocket carrier, and when to fall back to the other.
//! - [`backoff`]: when to redial (fast phase, exponential slow phase, thundering-herd reasoning).
//! - `reconnect`: the redial loop.
//! - `network`: the "network changed" seam (netlink on Linux, a manual trigger for tests).
//! - `status`: the published [`TunnelStatus`].
//!
//! # Security
//! The relay authenticates the agent by the signed upgrade request (same checks as a heartbeat);
//! the agent authenticates the relay by its certificate. The access token leaves its newtype only
//! for the `Authorization` header, marked sensitive. Statuses carry error texts, never a secret.

pub mod backoff;
mod carrier;
mod dial;
mod network;
mod reconnect;
mod status;

pub use backoff::Backoff;
pub use carrier::Carrier;
pub use dial::{serve_router_over_stream, TunnelDialer, TunnelError, MAX_CONCURRENT_STREAMS};
pub use network::{
    ChangeFuture, ManualNetworkChanges, NetworkChangeTrigger, NetworkChanges, NoNetworkChanges,
    SystemNetworkChanges,
};
pub use reconnect::ReconnectOptions;
pub use status::{status_channel, TunnelStatus};
