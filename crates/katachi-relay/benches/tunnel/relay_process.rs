//! The relay under test as its own process (the real `katachi-relay` binary), its data seeded
//! beforehand through the relay's own store API, and its memory read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_relay::crypto::SealedRow;
use katachi_relay::store::NewAgent;
use katachi_relay::{Relay, RelayConfig};
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// An agent's credentials as the token endpoint would have issued them.
#[derive(Clone)]
pub struct SeededAgent {
    pub id: String,
    pub token: String,
    pub secret: String,
}

/// A user with one agent; `session` is a live browser session id (the cookie value).
#[derive(Clone)]
pub struct SeededUser {
    pub session: String,
    pub agent: SeededAgent,
}

/// What seeding produced: the data dir, the CA agents pin, and the users.
pub struct Seeded {
    pub data_dir: PathBuf,
    pub ca_pem: String,
    pub users: Vec<SeededUser>,
}

fn hex_sha256(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn random_hex(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    hex::encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Creates `users` users, each with a browser session and one registered agent, in a fresh relay
/// data dir (SQLite), using the relay's store and master key exactly as the device flow does.
pub async fn seed(data_dir: &Path, users: usize) -> Seeded {
    seed_on(data_dir, users, None).await
}

/// [`seed`] into the database at `database_url` (PostgreSQL) when given.
pub async fn seed_on(data_dir: &Path, users: usize, database_url: Option<&str>) -> Seeded {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = RelayConfig::local(data_dir.to_path_buf());
    config.database_url = database_url.map(str::to_owned);
    let relay = Relay::with_listener(listener, config).await.unwrap();
    let ca_pem = std::fs::read_to_string(relay.ca_file().unwrap()).unwrap();
    let state = relay.state().clone();
    let now = now();
    let mut out = Vec::with_capacity(users);
    for i in 0..users {
        let user = state
            .store
            .create_user(&format!("bench{i}@example.com"), None, now)
            .await
            .unwrap()
            .unwrap();
        let session = random_hex(32);
        state
            .store
            .create_session(&hex_sha256(&session), &user.id, now, now + 24 * 3600)
            .await
            .unwrap();
        let agent = SeededAgent {
            id: format!("agt_{}", random_hex(12)),
            token: random_hex(32),
            secret: random_hex(32),
        };
        let sealed = state.master.seal(
            &SealedRow::agent_signing_secret(&agent.id, &user.id),
            agent.secret.as_bytes(),
        );
        let row = NewAgent {
            id: &agent.id,
            user_id: &user.id,
            name: "bench",
            os: "linux",
            token_hash: &hex_sha256(&agent.token),
            signing_secret_enc: &sealed,
        };
        state.store.create_agent(&row, now).await.unwrap();
        out.push(SeededUser { session, agent });
    }
    drop(state);
    drop(relay);
    Seeded {
        data_dir: data_dir.to_path_buf(),
        ca_pem,
        users: out,
    }
}

/// Memory of a process, in KiB, from `/proc/PID/status` and `/proc/PID/smaps_rollup`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub private_dirty_kib: u64,
}

fn field_kib(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system, all threads) of process `pid` (`self` for this one), in seconds.
pub fn cpu_seconds(pid: &str) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU time of every thread of process `pid` (`self` for this one): "label/tid name" → seconds.
pub fn thread_cpu_seconds(pid: &str, label: &str) -> std::collections::HashMap<String, f64> {
    let mut threads = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let key = format!(
            "{label}/{} {}",
            task.file_name().to_string_lossy(),
            name.trim()
        );
        // schedstat's run time is in nanoseconds; stat's clock ticks (10 ms) are too coarse for
        // the direct path's short downloads
        let seconds = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            .map_or_else(
                || stat_cpu_seconds(&dir.join("stat").to_string_lossy()),
                |ns| ns as f64 / 1e9,
            );
        threads.insert(key, seconds);
    }
    threads
}

/// utime + stime from a `stat` file of `/proc`, in seconds (clock ticks, 100 per second on Linux).
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. indexes 11 and 12 after the command name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The relay binary, started on a free loopback port over a seeded data dir.
pub struct RelayProcess {
    child: Child,
    pid: u32,
    pub url: String,
    /// Count of "tunnel open" lines the relay logged (every tunnel registered).
    opened: Arc<AtomicUsize>,
    /// Count of "tunnel closed" lines (every tunnel the relay let go of).
    closed: Arc<AtomicUsize>,
}

impl RelayProcess {
    /// Starts `katachi-relay --listen 127.0.0.1:PORT --data-dir DIR` and waits for its banner.
    pub async fn start(seeded: &Seeded) -> Self {
        Self::start_with(&seeded.data_dir, &[]).await
    }

    /// Starts the relay over `data_dir` with `extra` arguments (database, shared TLS files…).
    pub async fn start_with(data_dir: &Path, extra: &[String]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // another build of the relay when asked (comparing two versions on the same bench)
        let binary = std::env::var_os("KATACHI_BENCH_RELAY_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_katachi-relay").into());
        let mut child = Command::new(binary)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env_remove("KATACHI_RELAY_DATABASE_URL")
            // no metrics listener unless `extra` asks for one
            .args(if extra.iter().any(|a| a == "--metrics-listen") {
                &[][..]
            } else {
                &["--metrics-listen", "off"][..]
            })
            .env("KATACHI_LOG", "warn,katachi_relay=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        // Its log goes to stdout, after the banner; stderr only carries failures.
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("relay: {line}");
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("katachi-relay: listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("the relay exited before listening");
        })
        .await
        .expect("the relay did not start within 30 s");
        let opened = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (count, count_closed) = (opened.clone(), closed.clone());
        // Keep reading so the relay never blocks on a full pipe; count registered tunnels.
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if line.contains("tunnel open") {
                    count.fetch_add(1, Ordering::Relaxed);
                } else if line.contains("tunnel closed") {
                    count_closed.fetch_add(1, Ordering::Relaxed);
                } else if !line.contains("local CA for agents") {
                    println!("relay: {line}");
                }
            }
        });
        Self {
            child,
            pid,
            url,
            opened,
            closed,
        }
    }

    /// How many tunnels the relay has let go of so far.
    pub fn tunnels_closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }

    /// Waits until the relay has let go of `n` tunnels in all; false if that takes over `limit`.
    pub async fn wait_for_closed(&self, n: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while self.tunnels_closed() < n {
            if start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// How many tunnels the relay has registered so far.
    pub fn tunnels_opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// Waits until the relay has registered `n` tunnels; panics after `limit`.
    pub async fn wait_for_tunnels(&self, n: usize, limit: Duration) {
        let start = Instant::now();
        while self.tunnels_opened() < n {
            assert!(
                start.elapsed() < limit,
                "only {} of {n} tunnels opened within {limit:?}",
                self.tunnels_opened()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The relay's CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.pid.to_string())
    }

    /// Time the relay's threads waited for a CPU so far (see [`run_queue_seconds`]).
    pub fn run_queue_seconds(&self) -> f64 {
        run_queue_seconds(&self.pid.to_string())
    }

    /// The relay's CPU time per thread (see [`thread_cpu_seconds`]).
    pub fn thread_cpu_seconds(&self) -> std::collections::HashMap<String, f64> {
        thread_cpu_seconds(&self.pid.to_string(), "relay")
    }

    /// The relay's memory now.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let rollup =
            std::fs::read_to_string(format!("/proc/{}/smaps_rollup", self.pid)).unwrap_or_default();
        Memory {
            rss_kib: field_kib(&status, "VmRSS:"),
            pss_kib: field_kib(&rollup, "Pss:"),
            private_dirty_kib: field_kib(&rollup, "Private_Dirty:"),
        }
    }

    /// Stops the relay (SIGKILL: nothing of it is needed afterwards).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The PostgreSQL server listening on `port` of this machine (its postmaster's pid), found by its
/// command line (`-c port=PORT`, as `scripts/with-postgres.sh` starts it).
pub fn postgres_on_port(port: u16) -> Option<u32> {
    let wanted = format!("port={port}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("postgres") && cmdline.split('\0').any(|a| a.ends_with(&wanted))
        })
        .min()
}

/// CPU time of process `root` and its children (a PostgreSQL server and its backends), in seconds.
/// Children that already exited are not counted.
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = cpu_seconds(&root.to_string());
    for pid in procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // the parent pid is the 2nd field after the command name
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if parent == Some(root) {
            total += cpu_seconds(&pid.to_string());
        }
    }
    total
}

/// Time the threads of process `pid` (`self` for this one) spent ready to run but waiting for a
/// CPU (the run queue), in seconds, from `schedstat`: what a busy machine takes from a process.
pub fn run_queue_seconds(pid: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            text.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|ns| ns as f64 / 1e9)
        .sum()
}

/// The whole machine's CPU time so far from `/proc/stat`, in seconds summed over CPUs: (busy, of
/// which stolen by the hypervisor, of which niced processes). Busy is everything but idle and I/O
/// wait.
pub fn machine_cpu_seconds() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0) as f64 / 100.0;
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    (busy, at(7), at(1))
}
