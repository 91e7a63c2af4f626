//! Everything the agent says to its relay, grouped by what it does. The tunnel (the relay's
//! browser requests served by this agent) is [`crate::tunnel`]; signing in is [`crate::auth`].
//!
//! - [`tls`]: the one TLS client configuration of every agent connection (TLS 1.3 only, pinned CA).
//! - [`https`]: the relay's validated URL and the HTTPS client over that configuration.
//! - [`calls`]: the signed calls — heartbeat, activity events, unregister — and the relay's
//!   refusals sorted by what to do next (retry, sign in again, give up).
//! - [`mcp_calls`]: the signed MCP calls — list the user's MCP tools, call one (run by the relay).
//! - [`session`]: keeps a registered agent online: heartbeats, outbox flushes, status.
//! - [`reach`]: "is the relay there?" before a sign-in starts (the window's Connect view).
//!
//! Every caller classifies a relay refusal the same way
//! ([`katachi_proto::relay_error::classify_refusal`]) and every signed call and the tunnel share
//! one clock offset ([`crate::signing::RequestSigner::sharing_offset`]).

pub mod calls;
pub mod https;
pub mod mcp_calls;
pub mod reach;
pub mod session;
pub mod tls;
