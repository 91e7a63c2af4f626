//! The one shared test kit of katachi: servers and helpers that several crates' tests use
//! (katachi-core's integration tests and the end-to-end crate `tests/`).
//!
//! Nothing here is shipped: it is a dev-dependency only. Every fake speaks the real protocol over
//! real sockets, so the production client code path is exactly the one used with real services.
//!
//! # Layout
//! - `fake_provider`: a local AI provider (OpenAI Chat Completions and Anthropic Messages, streamed
//!   over SSE) replying from a script of provider-neutral answers and errors, recording requests.
//! - `mcp_server`: a real MCP server (rmcp, Streamable HTTP) on loopback with a few tools.
//! - [`free_port`]: a loopback port for a child process to listen on.

pub mod fake_provider;
pub mod mcp_server;

pub use fake_provider::{
    Ending, FakeAnswer, FakeError, FakeProvider, FakeReply, FakeStop, FakeToolCall, RecordedRequest,
};
pub use mcp_server::McpTestServer;

/// A loopback port nothing listens on right now (free when asked: bind it soon).
///
/// # Panics
/// When no loopback port can be bound (a test kit: the test cannot go on).
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
}
