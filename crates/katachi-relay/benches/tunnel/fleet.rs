//! Part `fleet` (issue 14, "Load"): one relay process on PostgreSQL (its production store) with a
//! fleet of registered agents, each holding a real tunnel and sending real signed heartbeats at
//! the agent runtime's period (`fleet_agents.rs`), while signed-in browsers download a file from
//! their own agents through the relay, back to back (`fleet_browsers.rs`).
//!
//! The same browsers stream in two settings of the same run: the **fleet** (every agent connected:
//! 1,000 by default) and the **baseline** (only the agents the browsers use: 100 by default), in
//! the order fleet half, baseline, fleet half, so a drift of the machine falls on both; and that
//! twice: **paced** (each browser reads at most 1 MiB/s, as a person's connection would: the relay
//! is below its capacity) and **unpaced** (each reads as fast as it can: the relay and this
//! 2-core machine at their limit). Figures of each: heartbeat latency and failures (as the agents
//! saw it, and the relay's own from its metrics), the downloads' time to headers, to first byte
//! and to the end, throughput, the relay's memory (sampled every second) and CPU, PostgreSQL's
//! CPU, this process's CPU per thread, the whole machine's CPU.
//! Before any streaming, the relay's memory with only the browsed agents connected and then with
//! all of them, each after an idle period, gives the memory per idle agent (tunnel + heartbeat
//! connection) and its extrapolation to 10,000 agents.
//!
//! Needs PostgreSQL (`KATACHI_TEST_POSTGRES_URL`, as `scripts/with-postgres.sh` sets it); without
//! it the part says so and is skipped. Run: `make bench-fleet`.

use std::time::{Duration, Instant};

use katachi_core::api::ApiLimits;
use katachi_core::relay_link::session::DEFAULT_HEARTBEAT_EVERY;

use crate::fleet_agents::Fleet;
use crate::fleet_browsers::{Browsers, Download};
use crate::fleet_cpu::Cpu;
use crate::fleet_report::{print_churn, print_idle, print_phases, print_timeline, Phase};
use crate::load::write_big_file;
use crate::relay_process::{postgres_on_port, seed_on, Memory, RelayProcess, SeededUser};
use crate::{agent, cluster, env_or, machine, relay_metrics};

/// The relay's route groups whose latency its metrics report: signed agent calls (here the
/// heartbeats), and forwarded browser requests (time until the agent's headers).
pub const RELAY_ROUTES: [&str; 2] = ["agent_api", "tunnel_forward"];
/// Longest the whole part may run: no heartbeat is sent after this.
const RUN_LIMIT: Duration = Duration::from_secs(3600);
/// Longest wait for the relay to let go of disconnected agents' tunnels.
const CLOSE_LIMIT: Duration = Duration::from_secs(60);
/// Most memory samples in one phase (one a second).
const MAX_SAMPLES: usize = 3600;

/// The part's settings, from the environment.
struct Settings {
    agents: usize,
    browsers: usize,
    seconds: f64,
    file_mib: usize,
    idle: Duration,
    period: Duration,
    churn: usize,
    /// Bytes a second each browser reads in the paced comparison.
    pace: f64,
}

impl Settings {
    fn from_env() -> Self {
        let agents: usize = env_or("KATACHI_BENCH_AGENTS", 1000).max(1);
        Self {
            agents,
            browsers: env_or("KATACHI_BENCH_FLEET_BROWSERS", 100).clamp(1, agents),
            seconds: env_or("KATACHI_BENCH_FLEET_SECONDS", 60.0),
            file_mib: env_or("KATACHI_BENCH_FLEET_FILE_MIB", default_file_mib()).max(1),
            idle: Duration::from_secs(env_or("KATACHI_BENCH_IDLE_SECONDS", 25)),
            period: Duration::from_secs(env_or(
                "KATACHI_BENCH_FLEET_HEARTBEAT_SECS",
                DEFAULT_HEARTBEAT_EVERY.as_secs(),
            )),
            churn: env_or("KATACHI_BENCH_FLEET_CHURN", 4),
            pace: env_or("KATACHI_BENCH_FLEET_PACE_MIB", 1.0) * f64::from(1u32 << 20),
        }
    }
}

/// The default file: twice the largest file the agent reads whole and hashes before answering
/// (`ApiLimits::hash_inline_max_bytes`, 8 MiB), so it is streamed from the descriptor in 256 KiB
/// chunks as large files are, and the figures are those of streaming, not of the agent's SHA-256.
fn default_file_mib() -> usize {
    usize::try_from(ApiLimits::default().hash_inline_max_bytes >> 20).unwrap_or(8) * 2
}

/// Named relay memory readings, in the order taken.
pub type Timeline = Vec<(String, Memory)>;

/// What the phases share: the relay, where PostgreSQL and the relay's metrics are, the agents not
/// browsed (disconnected for the baseline), the file's size.
struct Rig<'a> {
    relay: RelayProcess,
    ca_pem: &'a str,
    rest: &'a [SeededUser],
    size: u64,
    postgres: Option<u32>,
    metrics: u16,
}

/// Runs the part.
pub async fn run() {
    let s = Settings::from_env();
    println!(
        "\n== fleet: {} agents heartbeating every {} s, {} browsers streaming a {} MiB file, one relay process on PostgreSQL ==",
        s.agents,
        s.period.as_secs(),
        s.browsers,
        s.file_mib
    );
    if (s.file_mib as u64) << 20 <= ApiLimits::default().hash_inline_max_bytes {
        println!("(a file this small is read whole and hashed by the agent before it answers: not the streamed path)");
    }
    let Ok(base) = std::env::var("KATACHI_TEST_POSTGRES_URL") else {
        println!("skipped: no PostgreSQL (run under scripts/with-postgres.sh, as `make bench-fleet` does)");
        return;
    };
    let database = cluster::fresh_database(&base).await;
    let postgres = url::Url::parse(&base)
        .ok()
        .and_then(|u| u.port())
        .and_then(postgres_on_port);
    if postgres.is_none() {
        println!("PostgreSQL's server process not found: its CPU is not reported");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("relay");
    let start = Instant::now();
    let seeded = seed_on(&data_dir, s.agents, Some(&database)).await;
    println!(
        "seeded {} users, sessions and agents (each its own token and signing secret) in {:.1} s",
        s.agents,
        start.elapsed().as_secs_f64()
    );
    let metrics = cluster::free_port();
    let relay = RelayProcess::start_with(
        &data_dir,
        &[
            "--database-url".to_owned(),
            database,
            "--metrics-listen".to_owned(),
            format!("127.0.0.1:{metrics}"),
        ],
    )
    .await;
    let (workspace, api) = agent::workspace();
    write_big_file(&workspace.path().join("fleet.bin"), s.file_mib);
    let (browsed, rest) = seeded.users.split_at(s.browsers);
    let rig = Rig {
        relay,
        ca_pem: &seeded.ca_pem,
        rest,
        size: (s.file_mib as u64) << 20,
        postgres,
        metrics,
    };
    let relay = &rig.relay;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut timeline: Timeline = vec![("relay started, no agent".to_owned(), relay.memory())];

    let mut fleet = Fleet::new(api, s.period, Instant::now() + RUN_LIMIT);
    let took = fleet.connect(relay, rig.ca_pem, browsed).await;
    println!(
        "{} agents connected in {:.1} s",
        browsed.len(),
        took.as_secs_f64()
    );
    let few = idle(relay, &fleet, s.idle).await;
    timeline.push((
        format!("{} agents, idle {} s", browsed.len(), s.idle.as_secs()),
        few.0,
    ));
    let took = fleet.connect(relay, rig.ca_pem, rest).await;
    println!(
        "{} more agents connected in {:.1} s",
        rest.len(),
        took.as_secs_f64()
    );
    let all = idle(relay, &fleet, s.idle).await;
    timeline.push((
        format!("{} agents, idle {} s", fleet.connected(), s.idle.as_secs()),
        all.0,
    ));
    print_idle(
        &timeline[0].1,
        (browsed.len(), &few),
        (fleet.connected(), &all),
    );

    let mut browsers = Browsers::new(
        &relay.url,
        rig.ca_pem,
        browsed,
        "/v1/workspaces/1/file?path=fleet.bin",
    );
    // warm: every browser's connection opened, the file in the page cache (not counted)
    let _ = browsers
        .stream_until(Instant::now() + Duration::from_secs(3), None)
        .await;
    let mut compared = Vec::new();
    for (mode, pace) in [
        (
            format!(
                "paced ({:.0} MiB/s per browser)",
                s.pace / f64::from(1u32 << 20)
            ),
            Some(s.pace),
        ),
        ("unpaced".to_owned(), None),
    ] {
        let (f, b) = compare(
            &rig,
            &mut fleet,
            &mut browsers,
            s.seconds,
            pace,
            &mut timeline,
        )
        .await;
        compared.push((mode, f, b));
    }

    // Churn: the same agents leave and come back, with a little streaming each time. Memory that
    // is only retained by the allocator is reused from the second round on; a leak grows each round.
    let mut churn = Vec::with_capacity(s.churn);
    for _ in 0..s.churn {
        let let_go = disconnect(relay, &mut fleet, rest).await;
        let gone = relay.memory();
        fleet.connect(relay, rig.ca_pem, rest).await;
        let _ = browsers
            .stream_until(Instant::now() + Duration::from_secs(3), None)
            .await;
        // every agent back has sent a heartbeat
        tokio::time::sleep(s.period).await;
        churn.push((let_go, gone, relay.memory()));
    }

    let ended = fleet.tunnels_ended();
    let closed = relay.tunnels_closed();
    let connected = fleet.connected();
    drop(fleet);
    let all_closed = relay.wait_for_closed(closed + connected, CLOSE_LIMIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    timeline.push((
        format!("all disconnected{}", not_all(all_closed)),
        relay.memory(),
    ));

    for (mode, f, b) in &compared {
        println!("\n-- {mode} --");
        print_phases((s.agents, f), (s.browsers, b), browsers.len(), rig.size);
    }
    print_timeline(&timeline);
    print_churn(rest.len(), &churn);
    println!("tunnels that ended on their own during the run: {ended} (expected 0)");
    drop(browsers);
    rig.relay.stop().await;
}

/// The same browsers streaming (at `pace` each) with the whole fleet connected and with only their
/// own agents: fleet half, baseline, fleet half. Returns (fleet, baseline).
async fn compare(
    rig: &Rig<'_>,
    fleet: &mut Fleet,
    browsers: &mut Browsers,
    seconds: f64,
    pace: Option<f64>,
    timeline: &mut Timeline,
) -> (Phase, Phase) {
    let relay = &rig.relay;
    let mode = if pace.is_some() { "paced" } else { "unpaced" };
    let half = Duration::from_secs_f64(seconds / 2.0);
    println!(
        "{mode} streaming: fleet {:.0} s, baseline {seconds:.0} s, fleet {:.0} s; {}",
        half.as_secs_f64(),
        half.as_secs_f64(),
        machine()
    );
    let mut fleet_phase = phase(rig, fleet, browsers, half, pace).await;
    timeline.push((format!("{mode}: after fleet (1st half)"), relay.memory()));
    let all_closed = disconnect(relay, fleet, rig.rest).await;
    timeline.push((
        format!(
            "{mode}: {} agents disconnected{}",
            rig.rest.len(),
            not_all(all_closed)
        ),
        relay.memory(),
    ));
    let baseline = phase(rig, fleet, browsers, Duration::from_secs_f64(seconds), pace).await;
    timeline.push((format!("{mode}: after baseline"), relay.memory()));
    let took = fleet.connect(relay, rig.ca_pem, rig.rest).await;
    println!(
        "{} agents reconnected in {:.1} s; {}",
        rig.rest.len(),
        took.as_secs_f64(),
        machine()
    );
    fleet_phase.add(phase(rig, fleet, browsers, half, pace).await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    timeline.push((
        format!("{mode}: {} agents, 5 s after", fleet.connected()),
        relay.memory(),
    ));
    (fleet_phase, baseline)
}

fn not_all(all_closed: bool) -> &'static str {
    if all_closed {
        ""
    } else {
        " (NOT all let go of by the relay)"
    }
}

/// Disconnects `users`' agents and waits until the relay let go of their tunnels (false if it did
/// not within `CLOSE_LIMIT`), then 2 s more.
async fn disconnect(relay: &RelayProcess, fleet: &mut Fleet, users: &[SeededUser]) -> bool {
    let closed = relay.tunnels_closed();
    fleet.disconnect(users);
    let all = relay
        .wait_for_closed(closed + users.len(), CLOSE_LIMIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    all
}

/// Waits `idle` with the agents connected; the relay's memory at the end and the heartbeats sent
/// meanwhile.
async fn idle(
    relay: &RelayProcess,
    fleet: &Fleet,
    idle: Duration,
) -> (Memory, crate::load::Latencies) {
    let start = Instant::now();
    tokio::time::sleep(idle).await;
    (relay.memory(), fleet.beats_between(start, Instant::now()))
}

/// The browsers stream for `length` (each at `pace` when given) while the connected agents
/// heartbeat.
async fn phase(
    rig: &Rig<'_>,
    fleet: &Fleet,
    browsers: &mut Browsers,
    length: Duration,
    pace: Option<f64>,
) -> Phase {
    let relay = &rig.relay;
    let start = Instant::now();
    let until = start + length;
    let cpu = Cpu::now(relay, rig.postgres);
    let seen = relay_metrics::scrape(rig.metrics, &RELAY_ROUTES).await;
    let sample = async {
        let mut samples = Vec::new();
        while Instant::now() < until && samples.len() < MAX_SAMPLES {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.push(relay.memory());
        }
        samples
    };
    let (downloads, memory): (Vec<Download>, Vec<Memory>) =
        tokio::join!(browsers.stream_until(until, pace), sample);
    let end = Instant::now();
    let now_seen = relay_metrics::scrape(rig.metrics, &RELAY_ROUTES).await;
    let relay_seen = now_seen
        .iter()
        .zip(&seen)
        .map(|(n, b)| n.minus(b))
        .collect();
    Phase {
        relay_seen,
        downloads,
        size: rig.size,
        elapsed: end - start,
        beats: vec![fleet.beats_between(start, until)],
        memory,
        cpu: Cpu::now(relay, rig.postgres).minus(&cpu),
        load: machine(),
    }
}
