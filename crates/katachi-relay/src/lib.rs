//! The katachi relay: the only server the browser talks to, and the one agents dial out to.
//!
//! One HTTPS listener (TLS 1.3 only) serves the web pages, the OAuth device flow and the signed
//! agent API. State lives in SQLite (default, embedded) or PostgreSQL.
//!
//! # Layout
//! - [`config`]: command-line and embedded defaults ([`RelayConfig`]).
//! - [`tls`]: TLS 1.3-only rustls config; a local CA and certificate generated on first run.
//! - [`server`]: the accept loop ([`run`]) serving the router over TLS with graceful shutdown.
//! - [`state`]: shared state handed to every handler ([`AppState`]).
//! - [`crypto`]: the master key and AES-256-GCM for secrets at rest (signing secrets, MCP secrets).
//! - [`store`]: the database (SQLite or PostgreSQL through sqlx), one file per table family.
//! - [`device_flow`]: RFC 8628 device authorization and token endpoints.
//! - [`address_limit`]: in-memory limiter per client address in front of sign-in, sign-up, device codes.
//! - [`mail`]: e-mail verification links over SMTP (lettre), or to the log in local mode.
//! - [`password`]: argon2id hashing, at most one computation per core at a time.
//! - [`agent_cache`]: id and signing secret by token hash (revocation is never cached).
//! - [`cluster`]: several instances on one PostgreSQL: tunnel routes, the internal link between
//!   instances (mutual TLS, HTTP/2), LISTEN/NOTIFY broadcasts of revocations and take-overs.
//! - [`client_addr`]: client addresses grouped for limits (IPv4 address, IPv6 /64).
//! - [`client_ip`]: the client's address ([`client_ip::ClientIp`]): the TCP peer, or the forwarding
//!   header of a `--trusted-proxy`.
//! - [`agent_api`]: signed agent calls (heartbeat, events, unregister, MCP tools) behind [`agent_api::VerifiedAgent`].
//! - [`mcp`]: the users' remote MCP servers, connected to for their agents (rmcp, SSRF guard).
//! - [`tunnel`]: agent tunnels (signed HTTP/1.1 upgrade, then HTTP/2 to the agent) and the browser
//!   route forwarded through them.
//! - [`web`]: pages for people: sign-up/in (password, GitHub, Google), device approval, my agents, MCP.
//! - [`error`]: the JSON error shape and HTML error pages.
//! - [`health`]: `/healthz` (the process serves) and `/readyz` (database answers, not draining).
//! - [`metrics`]: the Prometheus metrics the code counts ([`metrics::Metrics`]).
//! - [`metrics_listener`]: the separate plain-HTTP listener serving `/metrics` (`--metrics-listen`).
//! - [`heap`]: handing the heap's free pages back to the system while the relay runs.
//! - [`logging`]: the log output, human-readable text or JSON lines (`--log-format`).
//! - [`rotate_key`]: `katachi-relay rotate-master-key`, re-sealing every stored secret with a new key.

// one exception, with its SAFETY argument: `heap.rs` (glibc's `malloc_trim`)
#![deny(unsafe_code)]
// Handlers short-circuit with a ready `Response` as the error; it is built once per request.
#![allow(clippy::result_large_err)]

pub mod address_limit;
pub mod agent_api;
pub mod agent_cache;
pub mod client_addr;
pub mod client_ip;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod device_flow;
pub mod error;
pub mod health;
pub mod heap;
pub mod logging;
pub mod mail;
pub mod mcp;
pub mod metrics;
pub mod metrics_listener;
pub mod password;
pub mod rotate_key;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod tunnel;
pub mod web;

pub use config::RelayConfig;
pub use server::{run, Relay};
pub use state::AppState;

/// The agent protocol version this relay speaks.
pub const PROTOCOL: katachi_proto::ProtocolVersion = katachi_proto::ProtocolVersion::CURRENT;

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Hex SHA-256: how tokens, session ids and device codes are stored (never in clear).
pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}
