//! The agent's half of the tunnel over the WebSocket carrier: arbitrary bytes "from the relay" are
//! read as WebSocket frames (`katachi_proto::transport::WebSocketBytes`, the agent being the client)
//! and what the binary messages carry goes to `serve_router_over_stream` with the real (audited)
//! API router behind it. Whatever the relay (or a hop in front of it) sends must never panic or hang
//! the agent: each input runs on its own current-thread runtime under a time limit, and the agent's
//! replies are drained.
//!
//! Seeds (`corpus/websocket_carrier/seed-*`, made by `fuzz/make_seeds.py`) are the `tunnel_stream`
//! openings cut into binary messages, with pings and a close among them.

#![no_main]

#[path = "common.rs"]
mod common;

use std::time::Duration;

use hyper_util::rt::TokioIo;
use katachi_core::tunnel::serve_router_over_stream;
use katachi_proto::transport::{WebSocketBytes, WebSocketRole};
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
        let serve = tokio::spawn(async move {
            let carried = WebSocketBytes::new(agent, WebSocketRole::Client).await;
            serve_router_over_stream(TokioIo::new(carried), router).await
        });
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
        let _ = tokio::time::timeout(BUDGET, exchange).await;
        drain.abort();
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
});
