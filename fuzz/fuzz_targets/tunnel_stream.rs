//! The agent's half of the tunnel: arbitrary bytes "from the relay" into
//! `serve_router_over_stream`, over an in-memory duplex, with the real (audited) API router behind
//! it. Whatever the relay sends must never panic the agent or hang it (`common.rs` runs each input
//! under a time limit and drains the agent's replies).
//!
//! Seeds (`corpus/tunnel_stream/seed-*`, made by `fuzz/make_seeds.py`) are valid HTTP/2 client
//! openings with requests, so mutation starts past the preface.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::serve_tunnel_input(data, |agent| async move { agent });
});
