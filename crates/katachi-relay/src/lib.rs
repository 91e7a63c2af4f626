//! The katachi relay: the only server the browser talks to.
//!
//! This crate is a placeholder in the layout until the relay issue builds it (users, device
//! authorization, signed agent calls, tunnel routing, web UI). It holds no code that pretends to work.
//!
//! # Layout
//! - [`PROTOCOL`]: the agent protocol version this relay will speak.

#![forbid(unsafe_code)]

/// The agent protocol version this relay speaks.
pub const PROTOCOL: katachi_proto::ProtocolVersion = katachi_proto::ProtocolVersion::CURRENT;
