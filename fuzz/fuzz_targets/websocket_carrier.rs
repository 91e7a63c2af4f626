//! The agent's half of the tunnel over the WebSocket carrier: arbitrary bytes "from the relay" are
//! read as WebSocket frames (`katachi_proto::transport::WebSocketBytes`, the agent being the client)
//! and what the binary messages carry goes to `serve_router_over_stream` with the real (audited)
//! API router behind it. Whatever the relay (or a hop in front of it) sends must never panic or hang
//! the agent (`common.rs` runs each input under a time limit and drains the agent's replies).
//!
//! Seeds (`corpus/websocket_carrier/seed-*`, made by `fuzz/make_seeds.py`) are the `tunnel_stream`
//! openings cut into binary messages, with pings and a close among them.

#![no_main]

#[path = "common.rs"]
mod common;

use katachi_proto::transport::{WebSocketBytes, WebSocketRole};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::serve_tunnel_input(data, |agent| {
        WebSocketBytes::new(agent, WebSocketRole::Client)
    });
});
