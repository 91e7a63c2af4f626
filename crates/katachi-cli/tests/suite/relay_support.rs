//! The real relay, in this process on 127.0.0.1:0 (its own runtime, its own data dir that survives
//! restarts), and a `katachi start` child process whose output lines the tests wait for.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use katachi_relay::store::AgentRow;
use katachi_relay::{AppState, Relay, RelayConfig};

use super::support::Home;

/// How long any single wait in these tests may take before it fails with the output seen so far.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A relay served from a background runtime.
///
/// Fields drop in order: the relay's state and tasks before the runtime, the data dir last.
pub struct LocalRelay {
    state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    url: String,
    ca: PathBuf,
    addr: SocketAddr,
    tweak: fn(&mut RelayConfig),
    runtime: tokio::runtime::Runtime,
    tmp: tempfile::TempDir,
}

impl LocalRelay {
    /// A relay with a one-second device poll interval.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A relay whose config `tweak` adjusts (kept for restarts).
    pub fn start_with(tweak: fn(&mut RelayConfig)) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (relay, shutdown, served) = serve(&runtime, listener, tmp.path(), tweak);
        Self {
            url: relay.0,
            ca: relay.1,
            state: relay.2,
            runtime,
            tmp,
            addr,
            tweak,
            shutdown: Some(shutdown),
            served: Some(served),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn ca(&self) -> &Path {
        &self.ca
    }

    pub fn ca_arg(&self) -> &str {
        self.ca.to_str().unwrap()
    }

    /// Stops serving (in-flight requests drain); the data dir stays.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            self.runtime.block_on(served).unwrap().unwrap();
        }
    }

    /// Serves again on the same address with the same data (database, CA, certificate).
    pub fn restart(&mut self) {
        self.stop();
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind(self.addr))
            .unwrap();
        let (relay, shutdown, served) = serve(&self.runtime, listener, self.tmp.path(), self.tweak);
        assert_eq!(relay.0, self.url);
        self.state = relay.2;
        self.shutdown = Some(shutdown);
        self.served = Some(served);
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// A user account (as if signed up), by id.
    pub fn create_user(&self) -> String {
        let email = format!("user-{}@example.test", rand_suffix());
        self.block_on(self.state.store.create_user(&email, None, now()))
            .unwrap()
            .unwrap()
            .id
    }

    /// The user approves (or denies) the code the agent printed.
    pub fn decide(&self, user_code: &str, user_id: &str, approve: bool) {
        let code = katachi_proto::device::normalise_user_code(user_code)
            .unwrap_or_else(|| panic!("not a user code: {user_code:?}"));
        let done = self
            .block_on(
                self.state
                    .store
                    .decide_device(&code, user_id, approve, now()),
            )
            .unwrap();
        assert!(done, "code {user_code} was not pending");
    }

    pub fn revoke(&self, agent_id: &str, user_id: &str) {
        assert!(self
            .block_on(self.state.store.revoke_agent(agent_id, user_id, now()))
            .unwrap());
    }

    /// Cuts the agent's open tunnel, as revocation does (the agent redials).
    pub fn close_tunnel(&self, agent_id: &str) -> bool {
        self.state.tunnels.close(agent_id)
    }

    /// Whether the relay holds a tunnel from the agent now.
    pub fn tunnel_is_up(&self, agent_id: &str) -> bool {
        self.state.tunnels.is_online(agent_id)
    }

    /// A signed-in browser session of `user_id`, as the `Cookie` header a browser sends.
    pub fn browser_cookie(&self, user_id: &str) -> String {
        let jar = self
            .block_on(katachi_relay::web::session::start_session(
                &self.state,
                Default::default(),
                user_id,
            ))
            .unwrap();
        let cookie = jar
            .get(katachi_relay::web::session::SESSION_COOKIE)
            .unwrap();
        format!("{}={}", cookie.name(), cookie.value())
    }

    pub fn agents_of(&self, user_id: &str) -> Vec<AgentRow> {
        self.block_on(self.state.store.agents_of(user_id)).unwrap()
    }

    pub fn event_count(&self, agent_id: &str) -> i64 {
        self.block_on(self.state.store.event_count(agent_id))
            .unwrap()
    }
}

impl Drop for LocalRelay {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Let it finish (bounded) before its runtime goes away.
        if let Some(served) = self.served.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(15), served).await });
        }
    }
}

type Served = (
    (String, PathBuf, AppState),
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

fn serve(
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    dir: &Path,
    tweak: fn(&mut RelayConfig),
) -> Served {
    let mut config = RelayConfig::local(dir.join("relay"));
    config.device_poll_interval = 1;
    tweak(&mut config);
    let relay = runtime
        .block_on(Relay::with_listener(listener, config))
        .unwrap();
    let url = relay.url().to_owned();
    let ca = relay.ca_file().unwrap().clone();
    let state = relay.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = runtime.spawn(relay.serve_until(async {
        let _ = rx.await;
    }));
    ((url, ca, state), tx, served)
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A running `katachi start` (or any long-running katachi command).
pub struct AgentProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl AgentProcess {
    pub fn spawn(home: &Home, args: &[&str]) -> Self {
        super::support::require_session_bus();
        let mut child = home
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for the next stdout line matching `pred`; fails with everything seen on timeout.
    pub fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line {what} within {PATIENCE:?}\nstdout:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// The value after `prefix` on the next line that starts with it.
    pub fn wait_for_value(&mut self, prefix: &str) -> String {
        let line = self.wait_for_line(prefix, |l| l.starts_with(prefix));
        line[prefix.len()..].trim().to_owned()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Sends SIGTERM (as a service manager would) and returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit()
    }

    /// Waits for the process to end by itself; its exit code.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Collect what is left on stdout.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "katachi did not exit within {PATIENCE:?}\nstdout:\n{}\nstderr:\n{}",
                self.seen.join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A registered agent: `katachi start` signed in (code approved by a fresh user) and online.
pub struct Registered {
    pub agent: AgentProcess,
    pub agent_id: String,
    pub user_id: String,
}

/// Runs `katachi start` against `relay` in `home`, approves its code, and waits until it is online.
pub fn start_and_register(relay: &LocalRelay, home: &Home) -> Registered {
    let mut agent = AgentProcess::spawn(
        home,
        &[
            "start",
            "--relay",
            relay.url(),
            "--ca",
            relay.ca_arg(),
            "--no-browser",
            "--device-name",
            "test-box",
            "--heartbeat-secs",
            "1",
        ],
    );
    let code = agent.wait_for_value("code:");
    let user_id = relay.create_user();
    relay.decide(&code, &user_id, true);
    let agent_id = agent.wait_for_value("registered as agent");
    agent.wait_for_line("online", |l| l == "online");
    Registered {
        agent,
        agent_id,
        user_id,
    }
}

/// `katachi start` for an agent already registered in `home`.
pub fn start_registered(home: &Home) -> AgentProcess {
    AgentProcess::spawn(home, &["start", "--heartbeat-secs", "1"])
}
