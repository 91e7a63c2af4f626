//! What the fault tests share: the real agent runtime (`katachi_core::agent::Agent`, as `katachi
//! start` runs it) on an agent home registered at a test relay, round counts from the environment,
//! and the timings each fault test prints.
//!
//! The home uses the file keystore and a fixed fingerprint, so another process (a child test in a
//! network namespace) opens the very same home and machine key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use katachi_core::agent::{Agent as AgentRuntime, AgentConfig, AgentEnd, WhenSignedOut};
use katachi_core::fingerprint::FixedFingerprint;
use katachi_core::signing::Clock;
use katachi_core::tunnel::NetworkChanges;
use katachi_core::{
    AgentCredentials, AgentHome, Fingerprint, KatachiDirs, RelayUrl, SecretBytes, SessionOptions,
};
use tokio::task::JoinHandle;

use super::support::Agent;

/// Heartbeat period of the fault tests' agents: short, so outages show within a second.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

/// The number of rounds a fault test runs: `var` from the environment when set (the long runs
/// recorded in docs/PERFORMANCE.md), else `default` (the short form `make test` runs).
pub fn rounds(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Durations measured once per round.
#[derive(Debug, Default)]
pub struct Timings(pub Vec<Duration>);

impl Timings {
    /// The median (the upper one of an even count).
    pub fn p50(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    /// The longest.
    pub fn max(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }

    /// `p50 X ms, max Y ms` for the summary lines.
    pub fn summary(&self) -> String {
        format!(
            "p50 {} ms, max {} ms",
            self.p50().as_millis(),
            self.max().as_millis()
        )
    }
}

/// The folders of the agent home under `dir`, with the file keystore chosen in its config.
pub fn home_dirs(dir: &Path) -> KatachiDirs {
    let dirs = KatachiDirs::under(&dir.join("home"));
    std::fs::create_dir_all(dirs.config()).unwrap();
    std::fs::write(dirs.config_file(), "[keystore]\nbackend = \"file\"\n").unwrap();
    dirs
}

/// Opens (creating on first use) the agent home under `dir`.
pub fn open_home(dir: &Path) -> Arc<AgentHome> {
    let fingerprint =
        Fingerprint::from_components([("machine_id", b"katachi-fault-tests".to_vec())]).unwrap();
    let home = AgentHome::open(home_dirs(dir), &FixedFingerprint(fingerprint)).unwrap();
    // Opened (and migrated) once before the session and the API open it concurrently.
    drop(home.store().unwrap());
    Arc::new(home)
}

/// Seals `agent`'s credentials for `relay_url` (pinned to the CA in `ca`) into `home`, as a
/// finished sign-in does.
pub fn save_credentials(home: &AgentHome, relay_url: &str, ca: &Path, agent: &Agent) {
    AgentCredentials::new(
        RelayUrl::parse(relay_url).unwrap(),
        agent.id.clone(),
        SecretBytes::new(agent.token.as_bytes().to_vec()),
        SecretBytes::new(agent.secret.as_bytes().to_vec()),
        Some(std::fs::read_to_string(ca).unwrap()),
    )
    .save(home)
    .unwrap();
}

/// Launches the agent runtime on `home` (credentials saved: it goes online by itself).
pub fn launch(
    home: &Arc<AgentHome>,
    clock: Arc<dyn Clock>,
    network: Box<dyn NetworkChanges>,
) -> (AgentRuntime, JoinHandle<AgentEnd>) {
    AgentRuntime::launch(AgentConfig {
        home: Arc::clone(home),
        options: SessionOptions {
            heartbeat_every: HEARTBEAT,
        },
        clock,
        network,
        when_signed_out: WhenSignedOut::End,
    })
}
