//! What the `fleet` part measured, summed up and printed: the idle memory per agent and its
//! extrapolation, each streaming phase's latencies, throughput, memory and CPU side by side with
//! the ratio fleet ÷ baseline, and the relay's memory along the run.

use std::time::Duration;

use crate::fleet_browsers::{Download, Streamed};
use crate::fleet_cpu::Cpu;
use crate::load::Latencies;
use crate::relay_metrics::RouteHistogram;
use crate::relay_process::Memory;

/// A thread of this process busier than this share of a core bounds what it measures.
const SATURATED: f64 = 0.9;

/// One streaming phase (or several of the same setting, added up).
pub struct Phase {
    pub downloads: Vec<Download>,
    /// Bytes of each download.
    pub size: u64,
    pub elapsed: Duration,
    /// Heartbeats sent during the phase (one entry per part).
    pub beats: Vec<Latencies>,
    /// The relay's memory, once a second.
    pub memory: Vec<Memory>,
    pub cpu: Cpu,
    /// The machine line (load average) at the end of each part.
    pub load: String,
    /// The relay's own latency histograms over the phase (`fleet::RELAY_ROUTES`).
    pub relay_seen: Vec<RouteHistogram>,
}

impl Phase {
    /// Adds a later part of the same setting.
    pub fn add(&mut self, other: Phase) {
        self.downloads.extend(other.downloads);
        self.elapsed += other.elapsed;
        self.beats.extend(other.beats);
        self.memory.extend(other.memory);
        self.cpu.add(other.cpu);
        self.load = format!("{}; then {}", self.load, other.load);
        self.relay_seen = self
            .relay_seen
            .iter()
            .zip(&other.relay_seen)
            .map(|(a, b)| a.plus(b))
            .collect();
    }
}

/// A phase summed up.
struct Summary {
    beats: Latencies,
    streamed: Streamed,
    rss_mean: f64,
    rss_max: u64,
    pss_max: u64,
    dirty_max: u64,
    /// Cores busy on average: the relay, this process, and this process's threads by name.
    relay_cores: f64,
    relay_waiting: f64,
    database_cores: f64,
    bench_cores: f64,
    bench_waiting: f64,
    /// The whole machine's cores busy, stolen, and used by niced processes.
    machine: (f64, f64, f64),
    threads: Vec<(String, f64)>,
}

impl Summary {
    fn of(p: &Phase) -> Self {
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        let mut threads: Vec<(String, f64)> = p
            .cpu
            .threads
            .iter()
            .map(|(n, s)| (n.clone(), s / secs))
            .filter(|(_, c)| *c >= 0.005)
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        let n = p.memory.len().max(1) as f64;
        Self {
            beats: Latencies::merge(p.beats.clone()),
            streamed: Streamed::of(&p.downloads, p.size, p.elapsed),
            rss_mean: p.memory.iter().map(|m| m.rss_kib as f64).sum::<f64>() / n,
            rss_max: p.memory.iter().map(|m| m.rss_kib).max().unwrap_or(0),
            pss_max: p.memory.iter().map(|m| m.pss_kib).max().unwrap_or(0),
            dirty_max: p
                .memory
                .iter()
                .map(|m| m.private_dirty_kib)
                .max()
                .unwrap_or(0),
            relay_cores: p.cpu.relay / secs,
            relay_waiting: p.cpu.relay_waiting / secs,
            database_cores: p.cpu.database / secs,
            bench_cores: p.cpu.bench / secs,
            bench_waiting: p.cpu.bench_waiting / secs,
            machine: (
                p.cpu.machine.0 / secs,
                p.cpu.machine.1 / secs,
                p.cpu.machine.2 / secs,
            ),
            threads,
        }
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// The relay's memory with `few` and then `all` agents connected and idle, per agent, and the
/// extrapolation to 10,000 agents; the heartbeats of both idle periods.
pub fn print_idle(
    started: &Memory,
    few: (usize, &(Memory, Latencies)),
    all: (usize, &(Memory, Latencies)),
) {
    let ((nf, (mf, bf)), (na, (ma, ba))) = (few, all);
    let show = |name: &str, m: &Memory| {
        println!(
            "{name:<34} RSS {:>8} KiB  PSS {:>8} KiB  private dirty {:>8} KiB",
            m.rss_kib, m.pss_kib, m.private_dirty_kib
        );
    };
    show("relay started, no agent", started);
    show(&format!("{nf} agents connected, idle"), mf);
    show(&format!("{na} agents connected, idle"), ma);
    let per = |then: u64, now: u64| (now as f64 - then as f64) / (na - nf).max(1) as f64;
    let rss = per(mf.rss_kib, ma.rss_kib);
    println!(
        "marginal per idle agent ({nf} → {na}; its tunnel and its heartbeat connection): RSS {rss:.1} KiB, PSS {:.1} KiB, private dirty {:.1} KiB",
        per(mf.pss_kib, ma.pss_kib),
        per(mf.private_dirty_kib, ma.private_dirty_kib),
    );
    println!(
        "extrapolated to 10,000 idle agents: {:.0} MiB RSS (the relay started, {:.0} MiB, + 10,000 × {rss:.1} KiB)",
        mib(started.rss_kib as f64 + 10_000.0 * rss),
        mib(started.rss_kib as f64),
    );
    println!("heartbeats while idle:");
    println!("  {}", bf.line(&format!("{nf} agents")));
    println!("  {}", ba.line(&format!("{na} agents")));
    for (n, l) in [(nf, bf), (na, ba)] {
        if let Some(e) = &l.first_error {
            println!("  {n} agents: {} failed, first: {e}", l.errors);
        }
    }
}

/// The two settings side by side, with fleet ÷ baseline.
pub fn print_phases(fleet: (usize, &Phase), baseline: (usize, &Phase), browsers: usize, size: u64) {
    let (f, b) = (Summary::of(fleet.1), Summary::of(baseline.1));
    println!(
        "\n{browsers} browsers downloading {} MiB back to back; fleet: {} agents connected ({:.0} s in two halves), baseline: {} agents ({:.0} s)",
        size >> 20,
        fleet.0,
        fleet.1.elapsed.as_secs_f64(),
        baseline.0,
        baseline.1.elapsed.as_secs_f64()
    );
    println!(
        "{:<40} {:>14} {:>14} {:>10}",
        "", "fleet", "baseline", "ratio"
    );
    let row = |name: &str, x: f64, y: f64, digits: usize| {
        let ratio = if y == 0.0 {
            "—".to_owned()
        } else {
            format!("{:.2}", x / y)
        };
        println!("{name:<40} {x:>14.digits$} {y:>14.digits$} {ratio:>10}");
    };
    row(
        "heartbeats sent",
        f.beats.sent as f64,
        b.beats.sent as f64,
        0,
    );
    row(
        "heartbeats failed",
        f.beats.errors as f64,
        b.beats.errors as f64,
        0,
    );
    row(
        "heartbeat p50 (ms)",
        f.beats.quantile_ms(0.5),
        b.beats.quantile_ms(0.5),
        2,
    );
    row(
        "heartbeat p99 (ms)",
        f.beats.quantile_ms(0.99),
        b.beats.quantile_ms(0.99),
        2,
    );
    row(
        "heartbeat max (ms)",
        f.beats.quantile_ms(1.0),
        b.beats.quantile_ms(1.0),
        2,
    );
    let (fs, bs) = (&f.streamed, &b.streamed);
    row(
        "downloads completed",
        fs.total.samples.len() as f64,
        bs.total.samples.len() as f64,
        0,
    );
    row(
        "downloads failed",
        fs.total.errors as f64,
        bs.total.errors as f64,
        0,
    );
    let (fr, br) = (&fleet.1.relay_seen, &baseline.1.relay_seen);
    for (i, what) in [(0, "heartbeat"), (1, "download headers")].iter() {
        if let (Some(x), Some(y)) = (fr.get(*i), br.get(*i)) {
            for p in [0.5, 0.99] {
                row(
                    &format!("{what} p{:.0}, relay's own (≤ ms)", p * 100.0),
                    x.quantile_bound_ms(p),
                    y.quantile_bound_ms(p),
                    1,
                );
            }
        }
    }
    row(
        "download headers p50 (ms)",
        fs.headers.quantile_ms(0.5),
        bs.headers.quantile_ms(0.5),
        2,
    );
    row(
        "download headers p99 (ms)",
        fs.headers.quantile_ms(0.99),
        bs.headers.quantile_ms(0.99),
        2,
    );
    row(
        "download first byte p50 (ms)",
        fs.first_byte.quantile_ms(0.5),
        bs.first_byte.quantile_ms(0.5),
        2,
    );
    row(
        "download first byte p99 (ms)",
        fs.first_byte.quantile_ms(0.99),
        bs.first_byte.quantile_ms(0.99),
        2,
    );
    row(
        "download end p50 (ms)",
        fs.total.quantile_ms(0.5),
        bs.total.quantile_ms(0.5),
        2,
    );
    row(
        "download end p99 (ms)",
        fs.total.quantile_ms(0.99),
        bs.total.quantile_ms(0.99),
        2,
    );
    row(
        "throughput, all browsers (MiB/s)",
        fs.mib_per_s(),
        bs.mib_per_s(),
        1,
    );
    row("relay RSS mean (MiB)", mib(f.rss_mean), mib(b.rss_mean), 1);
    row(
        "relay RSS max (MiB)",
        mib(f.rss_max as f64),
        mib(b.rss_max as f64),
        1,
    );
    row(
        "relay PSS max (MiB)",
        mib(f.pss_max as f64),
        mib(b.pss_max as f64),
        1,
    );
    row(
        "relay private dirty max (MiB)",
        mib(f.dirty_max as f64),
        mib(b.dirty_max as f64),
        1,
    );
    row("relay CPU (cores busy)", f.relay_cores, b.relay_cores, 2);
    row(
        "relay threads waiting for a CPU (per s)",
        f.relay_waiting,
        b.relay_waiting,
        2,
    );
    row(
        "PostgreSQL CPU (cores busy)",
        f.database_cores,
        b.database_cores,
        2,
    );
    row(
        "this process's CPU (cores busy)",
        f.bench_cores,
        b.bench_cores,
        2,
    );
    row(
        "its threads waiting for a CPU (per s)",
        f.bench_waiting,
        b.bench_waiting,
        2,
    );
    row(
        "the machine's CPU, all processes (cores)",
        f.machine.0,
        b.machine.0,
        2,
    );
    row(
        "… stolen by the hypervisor (cores)",
        f.machine.1,
        b.machine.1,
        2,
    );
    for (name, s, l) in [
        ("fleet", &f, &fleet.1.load),
        ("baseline", &b, &baseline.1.load),
    ] {
        let threads: Vec<String> = s
            .threads
            .iter()
            .map(|(n, c)| format!("{n} {c:.2}"))
            .collect();
        println!(
            "{name}: this process's threads (cores busy): {}",
            threads.join(", ")
        );
        for (thread, cores) in s.threads.iter().filter(|(_, c)| *c >= SATURATED) {
            println!("{name}: the bench's {thread} thread was busy {:.0} % of the time: the client side bounds these figures too", cores * 100.0);
        }
        println!(
            "{name}: relay + PostgreSQL + this process used {:.2} of the machine's cores, everything else {:.2} (niced processes {:.2}); {l}",
            s.relay_cores + s.database_cores + s.bench_cores,
            (s.machine.0 - s.relay_cores - s.database_cores - s.bench_cores).max(0.0),
            s.machine.2
        );
        for (what, lat) in [("heartbeat", &s.beats), ("download", &s.streamed.total)] {
            if let Some(e) = &lat.first_error {
                println!("{name}: {} {what}s failed, first: {e}", lat.errors);
            }
        }
    }
}

/// The relay's memory at each step of the run.
pub fn print_timeline(timeline: &[(String, Memory)]) {
    println!("\nrelay memory along the run:");
    for (name, m) in timeline {
        println!(
            "  {name:<44} RSS {:>7.1} MiB  PSS {:>7.1} MiB  private dirty {:>7.1} MiB",
            mib(m.rss_kib as f64),
            mib(m.pss_kib as f64),
            mib(m.private_dirty_kib as f64)
        );
    }
}

/// The churn rounds: `n` agents gone (and whether the relay let go of every tunnel), then back.
pub fn print_churn(n: usize, rounds: &[(bool, Memory, Memory)]) {
    if rounds.is_empty() {
        return;
    }
    println!(
        "\nchurn: {n} agents disconnected and connected again, {} rounds (RSS):",
        rounds.len()
    );
    for (i, (let_go, gone, back)) in rounds.iter().enumerate() {
        println!(
            "  round {}: gone {:>7.1} MiB{}   back {:>7.1} MiB",
            i + 1,
            mib(gone.rss_kib as f64),
            if *let_go {
                ""
            } else {
                " (NOT all let go of by the relay)"
            },
            mib(back.rss_kib as f64)
        );
    }
    if let (Some(first), Some(last)) = (rounds.first(), rounds.last()) {
        let per_round = |a: u64, b: u64| (b as f64 - a as f64) / (rounds.len() - 1).max(1) as f64;
        let grown = per_round(first.2.rss_kib, last.2.rss_kib);
        println!(
            "  growth per round, round 1 → {}: gone {:+.1} KiB, back {grown:+.1} KiB ({:+.2} KiB per agent that came back)",
            rounds.len(),
            per_round(first.1.rss_kib, last.1.rss_kib),
            grown / n.max(1) as f64
        );
    }
}
