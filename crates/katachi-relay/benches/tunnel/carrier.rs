//! Part `carrier`: what the WebSocket carrier costs. The same file downloaded through relay + tunnel
//! with the tunnel on the direct upgrade and on the WebSocket carrier, alternating, in one run: one
//! relay process, two agents (one per carrier, both on the agent thread as `katachi start` runs
//! them), each downloaded by its user's browser (`browser.rs`) on a client thread of its own.

use std::sync::Arc;
use std::time::Duration;

use katachi_core::tunnel::Carrier;

use crate::load::{median, runtime_thread, write_big_file, ClientThread};
use crate::{agent, browser, relay_process};

/// Runs the comparison for a `mib` MiB file, `rounds` alternating pairs.
pub async fn run(mib: usize, rounds: usize) {
    println!("\n== streaming a {mib} MiB file through relay + tunnel: direct upgrade vs WebSocket carrier, medians of {rounds} alternating downloads ==");
    let tmp = tempfile::tempdir().unwrap();
    let seeded = relay_process::seed(&tmp.path().join("relay"), 2).await;
    let relay = relay_process::RelayProcess::start(&seeded).await;
    let (workspace, api) = agent::workspace();
    write_big_file(&workspace.path().join("big.bin"), mib);
    let size = (mib as u64) << 20;

    let (on_direct, on_websocket) = (&seeded.users[0], &seeded.users[1]);
    let direct = Arc::new(agent::dialer(&relay.url, &seeded.ca_pem, &on_direct.agent));
    let websocket = Arc::new(agent::dialer(
        &relay.url,
        &seeded.ca_pem,
        &on_websocket.agent,
    ));
    websocket.set_preferred_carrier(Carrier::WebSocket);
    let (d, w) = (direct.clone(), websocket.clone());
    runtime_thread("agent", move |rt| {
        rt.block_on(async move {
            // Both end when the relay stops; a tunnel lost earlier fails the downloads.
            let _ = tokio::join!(d.dial_and_serve(api.clone()), w.dial_and_serve(api));
        });
    });
    relay.wait_for_tunnels(2, Duration::from_secs(30)).await;
    // Neither fell back: each runs on the carrier it was given.
    assert_eq!(direct.preferred_carrier(), Carrier::Direct);
    assert_eq!(websocket.preferred_carrier(), Carrier::WebSocket);

    let url = |id: &str| {
        format!(
            "{}/agents/{id}/api/v1/workspaces/1/file?path=big.bin",
            relay.url
        )
    };
    let (d_url, w_url) = (url(&on_direct.agent.id), url(&on_websocket.agent.id));
    let client = |session: &str| {
        ClientThread::start(
            agent::direct_client(),
            browser::H2Browser::new(&relay.url, &seeded.ca_pem, agent::session_cookie(session)),
        )
    };
    let (d_client, w_client) = (client(&on_direct.session), client(&on_websocket.session));
    // Warm: the page cache, both connections, both tunnels.
    let _ = d_client.download(true, &d_url, size).await;
    let _ = w_client.download(true, &w_url, size).await;

    let cpu = || (relay.cpu_seconds(), relay_process::cpu_seconds("self"));
    let (mut d, mut w) = (Vec::new(), Vec::new());
    let (mut d_cpu, mut w_cpu) = ((0.0, 0.0), (0.0, 0.0));
    for _ in 0..rounds {
        let c0 = cpu();
        d.push(d_client.download(true, &d_url, size).await);
        let c1 = cpu();
        w.push(w_client.download(true, &w_url, size).await);
        let c2 = cpu();
        d_cpu = (d_cpu.0 + c1.0 - c0.0, d_cpu.1 + c1.1 - c0.1);
        w_cpu = (w_cpu.0 + c2.0 - c1.0, w_cpu.1 + c2.1 - c1.1);
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("direct upgrade      {} MiB/s", show(&d));
    println!("WebSocket carrier   {} MiB/s", show(&w));
    let gib = rounds as f64 * size as f64 / f64::from(1u32 << 30);
    println!(
        "CPU seconds per GiB: direct upgrade {:.2} = relay {:.2} + agent and client {:.2}; WebSocket carrier {:.2} = relay {:.2} + agent and client {:.2}",
        (d_cpu.0 + d_cpu.1) / gib,
        d_cpu.0 / gib,
        d_cpu.1 / gib,
        (w_cpu.0 + w_cpu.1) / gib,
        w_cpu.0 / gib,
        w_cpu.1 / gib
    );
    let mut ratios: Vec<f64> = w.iter().zip(&d).map(|(w, d)| w / d).collect();
    let (dm, wm) = (median(&mut d), median(&mut w));
    println!(
        "median: direct upgrade {dm:.0} MiB/s, WebSocket carrier {wm:.0} MiB/s = {:.2} × direct; median of the pairs' ratios {:.2} ×",
        wm / dm,
        median(&mut ratios)
    );
    relay.stop().await;
}
