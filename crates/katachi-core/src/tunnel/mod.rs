//! The tunnel: the agent dials the relay and serves its API over that connection, so the agent
//! never listens on a socket.
//!
//! # Protocol
//! 1. TCP + TLS 1.3 to the relay (the pinned CA as the only root when there is one, else the
//!    system roots; ALPN `http/1.1`).
//! 2. `GET /api/agent/tunnel` over HTTP/1.1, signed like every agent call (bearer token + the four
//!    signing headers, empty body), with `Connection: Upgrade` and `Upgrade: katachi-tunnel/1`.
//! 3. On `101 Switching Protocols` the roles flip: the relay is the HTTP/2 *client* over the
//!    upgraded stream and the agent serves [`crate::api::router`] as the HTTP/2 *server*.
//!
//! [`TunnelDialer::dial_and_serve`] runs one such connection until it ends;
//! [`TunnelDialer::serve_with_reconnect`] keeps one up, redialing with jittered backoff, until the
//! relay refuses the agent for good.
//!
//! # Layout
//! - `dial`: TLS set-up, the signed upgrade, and serving the router over the upgraded stream.
//! - `reconnect`: the redial loop and its [`backoff`].
//!
//! # Security
//! The relay authenticates the agent by the signed upgrade request (same checks as a heartbeat);
//! the agent authenticates the relay by its certificate. The access token leaves its newtype only
//! for the `Authorization` header, marked sensitive.

mod dial;
mod reconnect;

pub use dial::{serve_router_over_stream, TunnelDialer, TunnelError};
pub use reconnect::backoff;
