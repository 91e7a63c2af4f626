//! The tray app's status window over WebDriver: Debian's `WebKitWebDriver` launches `katachi-app`
//! with `TAURI_WEBVIEW_AUTOMATION=true` (what `tauri-driver` does on Linux, without it), and the
//! test reads the real window's DOM.
//!
//! The app starts with no window, and a WebKitGTK automation session attaches only once a webview
//! exists: so the session is requested in the background ([`AppDriver::request_session`]), the test
//! opens the window from the tray as a user would, then waits for the session
//! ([`AppDriver::wait_for_session`]). Every wait is bounded; dropping an [`AppDriver`] kills the
//! app and the driver.
//!
//! Needs `/usr/bin/WebKitWebDriver` (Debian package `webkit2gtk-driver`), a display and a session bus.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::process::{wait_until, SpawnedProcess};

/// The WebDriver server for WebKitGTK.
pub const WEBKIT_WEBDRIVER: &str = "/usr/bin/WebKitWebDriver";
/// Budget for the driver to answer `/status`.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(20);
/// Budget for one WebDriver command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A session that was asked for and attaches once the app shows a webview.
pub struct PendingSession(JoinHandle<Result<Client, String>>);

/// `WebKitWebDriver` and, once a session is requested, the `katachi-app` it launched.
pub struct AppDriver {
    /// Runs the WebDriver client (the session request runs while the test clicks the tray).
    runtime: Runtime,
    /// The driver; the app's stdout and stderr come out of it too (inherited).
    driver: SpawnedProcess,
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// The session, once attached.
    client: Option<Client>,
}

impl AppDriver {
    /// Starts `WebKitWebDriver` on a free loopback port; `configure` sets the environment the app
    /// will inherit (HOME, XDG dirs, GDK backend).
    ///
    /// # Errors
    /// The driver is missing or does not answer in time (with its output), or `configure` failed.
    pub fn start(
        configure: impl FnOnce(&mut Command) -> Result<(), String>,
    ) -> Result<Self, String> {
        if !Path::new(WEBKIT_WEBDRIVER).exists() {
            return Err(format!(
                "{WEBKIT_WEBDRIVER} is missing: apt-get install webkit2gtk-driver"
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("no tokio runtime: {e}"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut command = Command::new(WEBKIT_WEBDRIVER);
        command
            .arg(format!("--port={port}"))
            // wry allows WebKit automation only with this (tauri-driver sets it too)
            .env("TAURI_WEBVIEW_AUTOMATION", "true");
        configure(&mut command)?;
        let mut driver = SpawnedProcess::spawn(command)
            .map_err(|e| format!("cannot start {WEBKIT_WEBDRIVER}: {e}"))?;
        let url = format!("http://127.0.0.1:{port}");
        let status_url = format!("{url}/status");
        let ready = wait_until(DRIVER_TIMEOUT, || {
            runtime.block_on(async {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .ok()?;
                let status: Value = http.get(&status_url).send().await.ok()?.json().await.ok()?;
                (status["value"]["ready"] == true).then_some(())
            })
        });
        if ready.is_none() {
            return Err(driver.describe(&format!("not ready within {DRIVER_TIMEOUT:?}")));
        }
        Ok(Self {
            runtime,
            driver,
            url,
            client: None,
        })
    }

    /// Asks for a session on `binary`; the driver launches it at once, the session attaches when
    /// it shows a webview.
    pub fn request_session(&self, binary: &Path) -> PendingSession {
        self.request_session_with_args(binary, &[])
    }

    /// [`Self::request_session`] launching `binary` with `args` (e.g. `--window --view status`).
    pub fn request_session_with_args(&self, binary: &Path, args: &[&str]) -> PendingSession {
        let capabilities = json!({
            "webkitgtk:browserOptions": { "binary": binary, "args": args },
        });
        let url = self.url.clone();
        PendingSession(self.runtime.spawn(async move {
            let Value::Object(capabilities) = capabilities else {
                return Err("capabilities are not an object".to_owned());
            };
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities);
            builder.connect(&url).await.map_err(|e| e.to_string())
        }))
    }

    /// The pid of the app the driver launched (its child), once there.
    pub fn app_pid(&self, timeout: Duration) -> Option<u32> {
        let driver = self.driver.id()?;
        wait_until(timeout, || children_of(driver).into_iter().next())
    }

    /// Waits for the requested session to attach.
    ///
    /// # Errors
    /// No session within `timeout`, or the driver refused it (with the driver's and app's output).
    pub fn wait_for_session(
        &mut self,
        pending: PendingSession,
        timeout: Duration,
    ) -> Result<(), String> {
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, pending.0).await });
        match outcome {
            Ok(Ok(Ok(client))) => {
                self.client = Some(client);
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(self.describe(&format!("refused the session: {e}"))),
            Ok(Err(e)) => Err(self.describe(&format!("session task failed: {e}"))),
            Err(_) => Err(self.describe(&format!("no session within {timeout:?}"))),
        }
    }

    /// Runs `script` in the window (`return …` gives its value).
    ///
    /// # Errors
    /// No session yet, a script error, or no answer in time.
    pub fn execute(&self, script: &str) -> Result<Value, String> {
        let client = self.client.as_ref().ok_or("no WebDriver session")?;
        self.runtime.block_on(async {
            match tokio::time::timeout(COMMAND_TIMEOUT, client.execute(script, Vec::new())).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(format!("script failed: {e}")),
                Err(_) => Err(format!("script: no answer within {COMMAND_TIMEOUT:?}")),
            }
        })
    }

    /// Waits until the window has painted its current DOM (two animation frames), so a screenshot
    /// shows what a script just read.
    ///
    /// # Errors
    /// No session, or no frame within the command budget.
    pub fn wait_for_paint(&self) -> Result<(), String> {
        let client = self.client.as_ref().ok_or("no WebDriver session")?;
        let script = "const done = arguments[arguments.length - 1]; \
                      requestAnimationFrame(() => requestAnimationFrame(() => done(true)));";
        self.runtime.block_on(async {
            match tokio::time::timeout(COMMAND_TIMEOUT, client.execute_async(script, Vec::new()))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("paint wait failed: {e}")),
                Err(_) => Err(format!("paint wait: no answer within {COMMAND_TIMEOUT:?}")),
            }
        })
    }

    /// Saves a PNG screenshot of the window to `path` (creating its folder).
    ///
    /// # Errors
    /// No session, WebDriver or file failures.
    pub fn screenshot_to(&self, path: &Path) -> Result<(), String> {
        let client = self.client.as_ref().ok_or("no WebDriver session")?;
        let png = self.runtime.block_on(async {
            match tokio::time::timeout(COMMAND_TIMEOUT, client.screenshot()).await {
                Ok(Ok(png)) => Ok(png),
                Ok(Err(e)) => Err(format!("screenshot failed: {e}")),
                Err(_) => Err(format!("screenshot: no answer within {COMMAND_TIMEOUT:?}")),
            }
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A failure message: `what` went wrong, then the driver's (and the app's) output so far.
    pub fn describe(&mut self, what: &str) -> String {
        self.driver.describe(what)
    }

    /// Ends the session, then stops the app (SIGTERM, SIGKILL after `timeout`) and the driver.
    pub fn stop(mut self, timeout: Duration) {
        self.shut_down(timeout);
    }

    fn shut_down(&mut self, timeout: Duration) {
        if let Some(client) = self.client.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, client.close()).await });
        }
        if let Some(driver) = self.driver.id() {
            for pid in children_of(driver) {
                signal(pid, "-TERM");
                let deadline = Instant::now() + timeout;
                while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                signal(pid, "-KILL");
            }
        }
        let _ = self.driver.terminate(timeout);
    }
}

impl Drop for AppDriver {
    fn drop(&mut self) {
        self.shut_down(Duration::from_secs(2));
    }
}

/// Sends `signal` to `pid` with `kill` (keeps this crate free of unsafe code); failures are moot.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Pids of the live (not zombie) children of `parent`, read from `/proc/PID/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    crate::process::pids_where(|pid| {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        state != Some("Z") && ppid == Some(parent)
    })
}
