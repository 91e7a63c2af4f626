//! The agent's half of the tunnel: arbitrary bytes "from the relay" into
//! `serve_router_over_stream`, over an in-memory duplex, with the real (audited) API router behind
//! it. Whatever the relay sends must never panic the agent or hang it: each input runs on its own
//! current-thread runtime under a time limit, and the agent's replies are drained.
//!
//! Seeds (`corpus/tunnel_stream/seed-*`, made by `fuzz/make_seeds.py`) are valid HTTP/2 client
//! openings with requests, so mutation starts past the preface.

#![no_main]

#[path = "common.rs"]
mod common;

use std::time::Duration;

use hyper_util::rt::TokioIo;
use katachi_core::tunnel::serve_router_over_stream;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Wall-clock budget of one input.
const BUDGET: Duration = Duration::from_millis(500);

fuzz_target!(|data: &[u8]| {
    let router = common::audited_router();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let (relay, agent) = tokio::io::duplex(64 * 1024);
        let serve = tokio::spawn(serve_router_over_stream(TokioIo::new(agent), router));
        let (mut from_agent, mut to_agent) = tokio::io::split(relay);
        let drain = tokio::spawn(async move {
            let mut sink = vec![0_u8; 16 * 1024];
            while matches!(from_agent.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let exchange = async {
            let _ = to_agent.write_all(data).await;
            // give the agent time to answer what it parsed before the relay hangs up
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = to_agent.shutdown().await;
            let _ = serve.await;
        };
        // a connection the agent keeps open past the budget is not a finding by itself (HTTP/2
        // allows idle streams); a panic inside it is, and aborts the run
        let _ = tokio::time::timeout(BUDGET, exchange).await;
        drain.abort();
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
});
