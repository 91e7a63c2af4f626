//! Managed MCP servers: the relay connects to its users' **remote** MCP servers and offers their
//! tools to the users' agents through two signed calls ([`crate::agent_api::mcp_tools`],
//! [`crate::agent_api::mcp_call`]).
//!
//! # Contract
//! - Only the agent's own user's servers are reachable: a server id of another user is answered
//!   exactly like one that does not exist (`mcp.server_unknown`).
//! - Remote servers (a URL) are spoken to with the official SDK `rmcp` over Streamable HTTP
//!   (reqwest 0.13 + rustls, system roots plus `--provider-ca`). The stored environment is
//!   unsealed only for the connection and sent as HTTP headers, mapped as [`headers`] says
//!   (`AUTHORIZATION=Bearer …` → `Authorization: Bearer …`, `X_API_KEY=…` → `X-Api-Key: …`).
//! - Local servers (a command, stdio) are not run by the relay: they are listed with
//!   `mcp.not_remote` and cannot be called.
//! - SSRF guard ([`address`]): by default a URL leading to a loopback, private, link-local or
//!   otherwise non-public address is refused (`mcp.address_refused`), checked on the addresses the
//!   connection really uses; `--mcp-allow-private-addresses` lifts it. No redirects are followed,
//!   no proxy from the environment is used.
//! - Bounded: connecting (connection and MCP handshake) within [`McpOptions::connect_timeout`],
//!   a list within [`McpOptions::list_timeout`], a call within [`McpOptions::call_timeout`]; a server's JSON answers at most
//!   [`McpOptions::max_response_bytes`]; a tool result passed on at most
//!   [`McpOptions::max_result_bytes`] (`mcp.result_too_large` beyond).
//!
//! # Security
//! The secrets never reach the agent or the browser: nothing the relay answers is built from them,
//! and every string the server sends back (results, error messages) has the secret values
//! redacted before it is passed on ([`headers::SecretHeaders::redact`]), so a server reflecting
//! its credential does not hand it to the model. No log line or error message names a value;
//! errors say what failed in the relay's own words, never an upstream error's text (which could
//! quote a request); rmcp's own debug logging of messages is held at `warn` ([`RMCP_LOG_DIRECTIVE`]).
//! Test: `katachi-relay/tests/suite/mcp_calls.rs`.
//!
//! # Layout
//! - [`address`]: which addresses may be connected to, and the guarded resolver.
//! - [`headers`]: the environment → headers mapping and redaction.
//! - `connect`: one rmcp client session with a server: handshake, list, call.
//! - `broker`: [`McpBroker`]: the user's servers, a short tool-list cache, the wire answers.
//! - `error`: [`McpError`] with its stable codes.

pub mod address;
mod broker;
mod connect;
mod error;
pub mod headers;

pub use broker::McpBroker;
pub use error::McpError;

use std::time::Duration;

/// The log directive the relay always adds: rmcp logs whole MCP messages (results that may echo a
/// secret, users' data) at debug level, so its target stays at `warn` whatever the filter asks.
pub const RMCP_LOG_DIRECTIVE: &str = "rmcp=warn";

/// How the relay talks to MCP servers.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// Connect to servers on loopback, private and link-local addresses (`false`: refused).
    pub allow_private_addresses: bool,
    /// Time to connect and complete the MCP handshake.
    pub connect_timeout: Duration,
    /// Time for one tool call once connected.
    pub call_timeout: Duration,
    /// Time for one server's tool list once connected: short, so that a list of several servers
    /// with a slow one still answers within the agent's wait before a turn (15 s).
    pub list_timeout: Duration,
    /// Largest JSON answer read from a server (and largest SSE event).
    pub max_response_bytes: usize,
    /// Largest tool result passed on to the agent (its JSON content).
    pub max_result_bytes: usize,
    /// How long a server's tool list is reused before asking it again (`0`: never cached).
    pub tool_list_ttl: Duration,
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            allow_private_addresses: false,
            // connect + call stay under the agent's 30 s request timeout
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(20),
            list_timeout: Duration::from_secs(8),
            max_response_bytes: 4 * 1024 * 1024,
            max_result_bytes: 200 * 1024,
            tool_list_ttl: Duration::from_secs(30),
        }
    }
}
