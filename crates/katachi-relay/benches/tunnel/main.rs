//! The tunnel's figures (issue 4), each against a baseline measured in the same run:
//!
//! 1. **Round trip** of `GET /v1/status` through relay + tunnel vs the same router served directly
//!    over loopback HTTP, open loop at a fixed rate (default 1,000 req/s, 10 s each, alternating in
//!    two halves). Targets: + ≤ 0.5 ms p50, + ≤ 2 ms p99.
//! 2. **Streaming** a 256 MiB file (`GET /v1/workspaces/1/file`) both ways: MiB/s, medians of 5
//!    alternating downloads (and the median of the 5 pairs' ratios, steadier when the machine's
//!    speed drifts). Target: tunnel ≥ 0.5 × direct.
//!    Then the same file through **nginx as a TLS 1.3 reverse proxy** with both legs encrypted
//!    (`nginx.rs`), alternating with the tunnel. Target: tunnel ≥ nginx.
//! 3. **The floor** under the streaming figure (`floor.rs`): the same file over plain TCP, one TLS 1.3
//!    hop, and a bare TLS 1.3 relay (decrypt, re-encrypt) with no HTTP, threads in this process.
//! 4. **Relay memory per idle connected agent**: 1,000 real tunnels (TLS 1.3, signed upgrade,
//!    HTTP/2) dialled from this process; relay RSS/PSS from `/proc`. Target: ≤ 100 KiB.
//!
//! The relay is the real `katachi-relay` binary (built with this bench, same profile) in its own
//! process, over a SQLite data dir seeded through its store API (users, sessions, agents). The
//! agent of parts 1–2 (`katachi_core::tunnel::TunnelDialer`, serving the audited router as `katachi
//! start` does, and the direct server) runs in this process on a single-threaded runtime of its own;
//! the streaming downloads run on a client thread (`browser.rs`: one HTTP/2 connection with Chrome's
//! settings); the latency clients and the 1,000 agents of part 4 on a 2-thread runtime.
//!
//! 5. **AI chat** (`chat.rs`, part `chat`): first streamed token provider → browser against the
//!    provider read directly, a 10,000-message session opening, agent memory while streaming.
//! 6. **WebSocket carrier** (`carrier.rs`, part `carrier`): the same download through relay +
//!    tunnel on the direct upgrade and on the WebSocket carrier, alternating.
//!
//! 7. **Two instances behind HAProxy** (`cluster.rs`, part `cluster`): the forwarded path (browser
//!    on B, tunnel on A, over the internal link) against the direct one. Target: + ≤ 1 ms p50.
//! 8. **A fleet under load** (`fleet.rs`, part `fleet`): one relay process on PostgreSQL, 1,000
//!    agents with tunnels and signed heartbeats at the agent's period, 100 browsers streaming
//!    through it, against the same browsers with only their 100 agents; relay memory per idle
//!    agent and its ×10k extrapolation.
//!
//! Run: `make bench-tunnel`, or `cargo bench -p katachi-relay --bench tunnel`. Environment:
//! `KATACHI_BENCH_PARTS` (`latency,stream,floor,memory`; `chat`, `carrier`, `cluster` and `fleet`
//! on demand; `fleet`: `KATACHI_BENCH_FLEET_BROWSERS` (100), `KATACHI_BENCH_FLEET_SECONDS` (60),
//! `KATACHI_BENCH_FLEET_FILE_MIB` (16), `KATACHI_BENCH_FLEET_HEARTBEAT_SECS` (the agent's, 10), `KATACHI_BENCH_FLEET_CHURN` (4),
//! `KATACHI_BENCH_FLEET_PACE_MIB` (1: per browser, in the paced comparison)), `KATACHI_BENCH_RELAY_BIN`
//! (another `katachi-relay` binary to run instead of this build's, to compare two versions), `KATACHI_BENCH_RATE` (1000),
//! `KATACHI_BENCH_SECONDS` (10), `KATACHI_BENCH_FILE_MIB` (256), `KATACHI_BENCH_STREAM_ROUNDS` (5),
//! `KATACHI_BENCH_AGENTS` (1000), `KATACHI_BENCH_CHAT_ROUNDS` (50), `KATACHI_BENCH_CHAT_HISTORY`
//! (10000), `KATACHI_BENCH_CHAT_LONG_KIB` (2048), `KATACHI_BENCH_IDLE_SECONDS` (25), `KATACHI_BENCH_BROWSER_FRAME` (unset: the client accepts 16 KiB
//! HTTP/2 DATA frames as Chrome does; a larger value is a what-if for the relay → browser hop).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod browser;
mod carrier;
mod chat;
mod chat_memory;
mod cluster;
mod fleet;
mod fleet_agents;
mod fleet_browsers;
mod fleet_cpu;
mod fleet_report;
mod floor;
mod load;
mod memory;
mod nginx;
mod relay_metrics;
mod relay_process;

use std::collections::HashMap;
use std::time::Duration;

use load::{median, open_loop, write_big_file, Latencies};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The soft limit on open files of this process (the relay child inherits it).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "{cpus} CPUs, {:.0} GiB, kernel {}, load average {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        read("/proc/sys/kernel/osrelease").trim(),
        read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn main() {
    // the chat part's fake provider, run as a child process of this bench
    if let Ok(spec) = std::env::var(chat_memory::CHILD_ENV) {
        chat_memory::child_main(&spec);
        return;
    }
    let parts: String = env_or(
        "KATACHI_BENCH_PARTS",
        "latency,stream,floor,memory".to_owned(),
    );
    let agents: usize = env_or("KATACHI_BENCH_AGENTS", 1000);
    // each agent holds a tunnel (and, in the fleet, a heartbeat connection) in this process
    let per_agent = if parts.contains("fleet") { 2 } else { 1 };
    if parts.contains("memory") || parts.contains("fleet") {
        let needed = (per_agent * agents) as u64 + 256;
        match open_file_limit() {
            Some(limit) if limit < needed => {
                eprintln!(
                    "the open-file limit is {limit}; {agents} agents need about {needed} (run `ulimit -n 4096` first, or set KATACHI_BENCH_AGENTS lower)"
                );
                std::process::exit(2);
            }
            _ => {}
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("machine: {}", machine());
    rt.block_on(async {
        // the direct path's streaming median (MiB/s), for the floor's comparison
        let mut direct_stream = None;
        if parts.contains("latency") || parts.contains("stream") {
            direct_stream = paths(parts.contains("latency"), parts.contains("stream")).await;
        }
        if parts.contains("floor") {
            let mib: usize = env_or("KATACHI_BENCH_FILE_MIB", 256);
            println!("\n== the floor: the same {mib} MiB file over the bare transports, no HTTP (threads in this process) ==");
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("big.bin");
            write_big_file(&file, mib);
            let bare_relay = floor::run(&file, (mib as u64) << 20);
            if let Some(direct) = direct_stream {
                println!(
                    "the bare TLS relay against the direct HTTP path above: {bare_relay:.0} / {direct:.0} MiB/s = {:.2} × (the streaming figure's target is 0.5 ×)",
                    bare_relay / direct
                );
            }
        }
        if parts.contains("carrier") {
            carrier::run(
                env_or("KATACHI_BENCH_FILE_MIB", 256),
                env_or("KATACHI_BENCH_STREAM_ROUNDS", 5).max(1),
            )
            .await;
        }
        if parts.contains("chat") {
            chat::run(
                env_or("KATACHI_BENCH_CHAT_ROUNDS", 50),
                env_or("KATACHI_BENCH_CHAT_HISTORY", 10_000),
                env_or("KATACHI_BENCH_CHAT_LONG_KIB", 2048),
            )
            .await;
        }
        if parts.contains("cluster") {
            cluster::run().await;
        }
        if parts.contains("fleet") {
            fleet::run().await;
        }
        if parts.contains("memory") {
            let idle = Duration::from_secs(env_or("KATACHI_BENCH_IDLE_SECONDS", 25));
            println!("\n== relay memory per connected agent (relay binary in its own process) ==");
            let report = memory::run(agents, idle).await;
            report.print();
            let per = report.marginal_idle_kib();
            println!(
                "target ≤ 100 KiB per idle agent: {}",
                if per <= 100.0 { "met" } else { "NOT met" }
            );
        }
    });
    println!("machine at the end: {}", machine());
}

/// Latency and streaming, direct vs relay + tunnel, on one relay process with one agent.
/// Returns the direct path's streaming median (MiB/s) when `stream`.
async fn paths(latency: bool, stream: bool) -> Option<f64> {
    let tmp = tempfile::tempdir().unwrap();
    let seeded = relay_process::seed(&tmp.path().join("relay"), 1).await;
    let relay = relay_process::RelayProcess::start(&seeded).await;
    let (workspace, api) = agent::workspace();
    let user = seeded.users[0].clone();
    let dialer = agent::dialer(&relay.url, &seeded.ca_pem, &user.agent);
    // the tunnel side serves what `katachi start` serves: the router under the audit layer
    let store_dir = tempfile::tempdir().unwrap();
    let tunnelled = agent::audited(api.clone(), store_dir.path(), workspace.path());
    // the agent runs as `katachi start` runs it: on a single-threaded runtime of its own
    let (direct_addr, mut tunnel) = agent::start_agent_thread(api, dialer, tunnelled).await;
    tokio::select! {
        () = relay.wait_for_tunnels(1, Duration::from_secs(30)) => {}
        ended = &mut tunnel => panic!("the tunnel ended before it opened: {ended:?}"),
    }

    let browser = agent::browser_client(&seeded.ca_pem, Some(&user.session));
    let direct = agent::direct_client();
    let via_tunnel = |path: &str| format!("{}/agents/{}/api{path}", relay.url, user.agent.id);
    let via_direct = |path: &str| format!("http://{direct_addr}{path}");

    // Both paths answer the same thing (and the relay speaks HTTP/2 to the client).
    let status = "/v1/status";
    let a = browser.get(via_tunnel(status)).send().await.unwrap();
    let version = a.version();
    let a = a.text().await.unwrap();
    let b = direct.get(via_direct(status)).send().await.unwrap();
    let b = b.text().await.unwrap();
    assert_eq!(a, b, "the tunnel and the direct call disagree");
    println!("client → relay: {version:?} over TLS 1.3; relay → agent: HTTP/2 over the tunnel; direct: HTTP/1.1 over loopback TCP");

    if latency {
        let rate: u32 = env_or("KATACHI_BENCH_RATE", 1000);
        let seconds: f64 = env_or("KATACHI_BENCH_SECONDS", 10.0);
        println!("\n== round trip of GET /v1/status, open loop at {rate} req/s, {seconds} s each (two alternating halves) ==");
        let (t_url, d_url) = (via_tunnel(status), via_direct(status));
        let warm = Duration::from_secs(1);
        let _ = open_loop(&direct, &d_url, rate, warm).await;
        let _ = open_loop(&browser, &t_url, rate, warm).await;
        let half = Duration::from_secs_f64(seconds / 2.0);
        let (mut d, mut t) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            d.push(open_loop(&direct, &d_url, rate, half).await);
            t.push(open_loop(&browser, &t_url, rate, half).await);
        }
        let (d, t) = (Latencies::merge(d), Latencies::merge(t));
        println!("{}", d.line("direct loopback HTTP"));
        println!("{}", t.line("relay + tunnel"));
        for (name, l) in [("direct", &d), ("tunnel", &t)] {
            if let Some(e) = &l.first_error {
                println!("{name}: {} errors, first: {e}", l.errors);
            }
        }
        let p50 = t.quantile_ms(0.5) - d.quantile_ms(0.5);
        let p99 = t.quantile_ms(0.99) - d.quantile_ms(0.99);
        println!(
            "tunnel − direct: p50 +{p50:.3} ms (target ≤ 0.5: {}), p99 +{p99:.3} ms (target ≤ 2: {})",
            if p50 <= 0.5 { "met" } else { "NOT met" },
            if p99 <= 2.0 { "met" } else { "NOT met" },
        );
    }

    let mut direct_median = None;
    if stream {
        let mib: usize = env_or("KATACHI_BENCH_FILE_MIB", 256);
        let rounds: usize = env_or("KATACHI_BENCH_STREAM_ROUNDS", 5).max(1);
        println!("\n== streaming a {mib} MiB file (GET /v1/workspaces/1/file), medians of {rounds} alternating downloads ==");
        write_big_file(&workspace.path().join("big.bin"), mib);
        let size = (mib as u64) << 20;
        let file = "/v1/workspaces/1/file?path=big.bin";
        let (t_url, d_url) = (via_tunnel(file), via_direct(file));
        // the downloading clients run as a browser's network service does: on a thread of their own
        let clients = load::ClientThread::start(
            agent::direct_client(),
            browser::H2Browser::new(
                &relay.url,
                &seeded.ca_pem,
                agent::session_cookie(&user.session),
            ),
        );
        let (direct_i, browser_i) = (false, true);
        // Warm: the page cache, both connections.
        let _ = clients.download(direct_i, &d_url, size).await;
        let _ = clients.download(browser_i, &t_url, size).await;
        let (mut d, mut t) = (Vec::new(), Vec::new());
        // CPU seconds spent by (relay, this process) per path, to tell CPU-bound from stalled.
        let (mut d_cpu, mut t_cpu) = ((0.0, 0.0), (0.0, 0.0));
        let cpu = || (relay.cpu_seconds(), relay_process::cpu_seconds("self"));
        // and per thread, for the projection to a machine with a core for every thread
        let threads = || {
            let mut all = relay.thread_cpu_seconds();
            all.extend(relay_process::thread_cpu_seconds("self", "bench"));
            all
        };
        let (mut d_threads, mut t_threads) = (HashMap::new(), HashMap::new());
        for _ in 0..rounds {
            let (c0, th0) = (cpu(), threads());
            d.push(clients.download(direct_i, &d_url, size).await);
            let (c1, th1) = (cpu(), threads());
            t.push(clients.download(browser_i, &t_url, size).await);
            let (c2, th2) = (cpu(), threads());
            d_cpu = (d_cpu.0 + c1.0 - c0.0, d_cpu.1 + c1.1 - c0.1);
            t_cpu = (t_cpu.0 + c2.0 - c1.0, t_cpu.1 + c2.1 - c1.1);
            add_deltas(&mut d_threads, &th0, &th1);
            add_deltas(&mut t_threads, &th1, &th2);
        }
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("direct loopback HTTP   {} MiB/s", show(&d));
        println!("relay + tunnel         {} MiB/s", show(&t));
        let gib = rounds as f64 * size as f64 / f64::from(1u32 << 30);
        println!(
            "CPU seconds per GiB: direct {:.2} (agent + client); tunnel {:.2} = relay {:.2} + agent and client {:.2}",
            (d_cpu.0 + d_cpu.1) / gib,
            (t_cpu.0 + t_cpu.1) / gib,
            t_cpu.0 / gib,
            t_cpu.1 / gib
        );
        let mut pair_ratios: Vec<f64> = t.iter().zip(&d).map(|(t, d)| t / d).collect();
        let (dm, tm) = (median(&mut d), median(&mut t));
        println!(
            "median: direct {dm:.0} MiB/s, tunnel {tm:.0} MiB/s = {:.2} × direct (target ≥ 0.5: {})",
            tm / dm,
            if tm / dm >= 0.5 { "met" } else { "NOT met" }
        );
        // With a core for every thread, each path would run at the pace of its busiest thread.
        let (dn, dt) = busiest(&d_threads);
        let (tn, tt) = busiest(&t_threads);
        println!(
            "busiest thread per GiB: direct {:.2} CPU-s ({dn}), tunnel {:.2} CPU-s ({tn}); with a core for every thread (a projection, not measured here) tunnel ≈ {:.2} × direct",
            dt / gib,
            tt / gib,
            dt / tt
        );
        println!(
            "each pair's ratio: {}; median {:.2} ×",
            pair_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            median(&mut pair_ratios)
        );
        direct_median = Some(dm);
        // the peer users would otherwise put in front: nginx, TLS 1.3 on both legs
        let origin_dir = tempfile::tempdir().unwrap();
        let origin_api = agent::audited(
            agent::workspace_router(workspace.path()),
            origin_dir.path(),
            workspace.path(),
        );
        nginx::compare(&clients, &t_url, origin_api, file, size, rounds).await;
    }

    drop(tunnel);
    relay.stop().await;
    direct_median
}

/// Adds each thread's CPU time between `before` and `after` to `into`.
fn add_deltas(
    into: &mut HashMap<String, f64>,
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
) {
    for (thread, end) in after {
        let start = before.get(thread).copied().unwrap_or(0.0);
        *into.entry(thread.clone()).or_insert(0.0) += end - start;
    }
}

/// The thread with the most CPU time: (its name, seconds).
fn busiest(threads: &HashMap<String, f64>) -> (String, f64) {
    threads
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or((String::new(), 0.0), |(name, s)| (name.clone(), *s))
}
