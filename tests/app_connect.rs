//! The app end to end, as a user connects a machine: the real tray process (`katachi-app`) hosts
//! the agent, the real window process (`katachi-app --window`) talks to it over the control
//! socket, a real local relay (PostgreSQL) and headless Chromium play the user's browser.
//!
//! - The tray of a fresh home says "Sign-in needed"; in the window (over WebDriver) the user types
//!   the relay's URL, gives its CA, clicks Connect and reads the code; approving that code in the
//!   browser turns the window and the tray's status line to Connected by themselves.
//! - A folder added through the folder picker's command is listed, and a file in it is readable
//!   from the browser through the relay and the tunnel the tray's agent dialled.
//! - `katachi status --json` on the same home reports the tray's agent live; a second tray launch
//!   starts no second agent (it turns the open window to Status and exits 75); `katachi start`
//!   says "already running" with exit code 75.
//! - "Pause remote access for 1 hour" in the tray menu takes the agent offline at the relay.
//!
//! `KATACHI_UPDATE_SCREENSHOTS=1` saves the Connect view showing a code and its QR, and the
//! Connected status, to `docs/screenshots`.
//!
//! Run: `scripts/with-session.sh scripts/with-postgres.sh cargo test -p katachi-e2e --test app_connect`
//! after `cargo build -p katachi-app -p katachi-cli`.

#![cfg(target_os = "linux")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use katachi_e2e::app_webdriver::AppDriver;
use katachi_e2e::approval::sign_up_verified;
use katachi_e2e::chromium::Browser;
use katachi_e2e::process::{wait_until, SpawnedProcess};
use katachi_e2e::relay::{Backend, InProcessRelay};
use katachi_e2e::tray_dbus::{self, TrayItem};
use katachi_e2e::{screenshot_path, workspace_binary};
use serde_json::Value;

/// Printed by the tray process once its tray exists.
const READY_LINE: &str = "katachi-app: tray ready";
/// Start-up budget: a debug build on a loaded 2-core machine, GTK and D-Bus included.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Budget for the agent to reach a state and the tray or window to show it.
const AGENT_REACTS: Duration = Duration::from_secs(30);
/// Budget for a relay page in Chromium.
const PAGE: Duration = Duration::from_secs(30);
/// The relay's offline window (its smallest allowed value).
const OFFLINE_AFTER_SECS: u64 = 5;
/// The offline window, plus the agents page's 3 s poll, plus slack for a loaded machine.
const SEEN_OFFLINE: Duration = Duration::from_secs(25);
/// Budget for a process to exit once asked to (or once it has nothing to do).
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// What `katachi start` and a second tray exit with when an agent already runs for the home
/// (`EX_TEMPFAIL`).
const ALREADY_RUNNING: i32 = 75;
/// The file the browser reads through the relay.
const NOTE: (&str, &str) = (
    "notes.txt",
    "read through the relay from the tray's agent\n",
);

#[test]
fn a_user_connects_the_app_from_its_window_and_the_tray_runs_the_one_agent() -> Result<(), String> {
    require_desktop_session()?;
    // the relay and Chromium's client run here; the app's processes are driven synchronously
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let relay = rt
        .block_on(InProcessRelay::start_on(Backend::Postgres, |config| {
            config.offline_after = OFFLINE_AFTER_SECS;
        }))
        .map_err(|e| format!("no relay: {e:#}"))?;
    let host = relay.url().trim_start_matches("https://").to_owned();
    let ca = std::fs::read_to_string(relay.ca_file()).map_err(|e| e.to_string())?;
    let user = UserDirs::new()?;
    let browser = rt
        .block_on(Browser::launch())
        .map_err(|e| format!("no browser: {e:#}"))?;
    rt.block_on(sign_up_verified(
        &browser,
        &relay,
        "app-connect@example.com",
        "correct horse battery",
        PAGE,
    ))
    .map_err(|e| format!("sign-up: {e:#}"))?;

    // A fresh home: the tray says so, and the window opens on Connect.
    let (mut tray, item, mut window) = (|| {
        let mut tray = Tray::start(&user)?;
        let item = tray.item()?;
        tray.wait_for_status(&item, "Sign-in needed")?;
        let window = Window::open(&user, "connect")?;
        Ok::<_, String>((tray, item, window))
    })()?;

    // Connect: relay URL, its CA as the file the user picks, then the code the window shows.
    let (code, page) = (|| {
        window.run(&format!(
            "const file = new File([{ca:?}], 'relay-ca.pem', {{type: 'application/x-pem-file'}}); \
             const picked = new DataTransfer(); picked.items.add(file); \
             const input = document.getElementById('ca-file'); input.files = picked.files; \
             input.dispatchEvent(new Event('change')); \
             document.getElementById('relay').value = {url:?}; return true;",
            url = relay.url()
        ))?;
        window.wait_for(
            "the CA to be read",
            "return document.getElementById('ca-state').textContent.includes('relay-ca.pem');",
        )?;
        window.run("document.getElementById('connect').click(); return true;")?;
        window.wait_for(
            "a user code with its QR",
            "return !document.getElementById('code-panel').hidden \
             && document.getElementById('user-code').textContent.trim().length > 0 \
             && (document.getElementById('qr').getAttribute('src') || '').startsWith('data:image/svg+xml');",
        )?;
        window.screenshot("window-connect-code.png");
        let shown = window.run(
            "return [document.getElementById('user-code').textContent.trim(), \
                     document.getElementById('verification-uri').textContent.trim()];",
        )?;
        match (shown[0].as_str(), shown[1].as_str()) {
            (Some(code), Some(page)) if page.starts_with(relay.url()) => {
                Ok::<_, String>((code.to_owned(), page.to_owned()))
            }
            _ => Err(window
                .driver
                .describe(&format!("the code panel shows {shown}"))),
        }
    })()?;

    // The user approves that code in the browser, typing it.
    rt.block_on(async {
        browser.goto(&page).await?;
        browser.fill("#confirm-code", &code).await?;
        browser.click("#approve").await?;
        browser
            .wait_for_text("#result", "Device connected", PAGE)
            .await
    })
    .map_err(|e| format!("approval: {e:#}"))?;

    // Window and tray follow by themselves; a folder is added as the picker adds it.
    let folder = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(folder.path().join(NOTE.0), NOTE.1).map_err(|e| e.to_string())?;
    let folder_path = std::fs::canonicalize(folder.path())
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .into_owned();
    let agent_id = (|| {
        window.wait_for(
            "the window to switch to Connected",
            "return document.body.dataset.view === 'status' \
             && document.getElementById('st-state').textContent === 'Connected';",
        )?;
        window.screenshot("window-status-connected.png");
        // The window sends no name: the relay and the tray know the machine by its host name.
        let name = katachi_core::auth::this_device(None).device_name;
        tray.wait_for_status(&item, &format!("Connected to {host} as {name}"))?;

        let added = window.run_async(&invoke_script(
            "add_workspace",
            &format!("{{path: {folder_path:?}}}"),
        ))?;
        if added[0] != true {
            return Err(window
                .driver
                .describe(&format!("add_workspace failed: {added}")));
        }
        window.run("document.getElementById('tab-workspaces').click(); return true;")?;
        window.wait_for(
            "the folder in the list",
            &format!("return document.body.dataset.view === 'workspaces' && Array.from(document.querySelectorAll('#workspaces .ws-path')).some(p => p.textContent === {folder_path:?});"),
        )?;

        // `katachi status` on the same home reports the tray's agent, live over its socket.
        let status = katachi_json(&user, &["status", "--json"])?;
        let tray_pid = tray.pid()?;
        if status["running"] != true
            || status["live"]["pid"] != tray_pid
            || status["live"]["by"] != "app"
            || status["live"]["status"]["state"] != "connected"
        {
            return Err(tray.fail(&format!(
                "`katachi status --json` does not report the tray's agent (pid {tray_pid}) connected: {status}"
            )));
        }
        status["agent_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`katachi status --json` names no agent: {status}"))
    })()?;

    // The browser reads the file through the relay and the tray agent's tunnel.
    let api = relay.at(&format!("/agents/{agent_id}/api/v1"));
    let listed = rt
        .block_on(browser.execute(&format!(
            "return fetch({:?}).then(r => r.json());",
            format!("{api}/workspaces")
        )))
        .map_err(|e| format!("listing the workspaces through the relay: {e:#}"))?;
    let workspace_id = listed["workspaces"]
        .as_array()
        .and_then(|list| list.iter().find(|w| w["path"] == folder_path.as_str()))
        .and_then(|w| w["id"].as_i64())
        .ok_or_else(|| format!("the folder is not among the agent's workspaces: {listed}"))?;
    let read = rt
        .block_on(browser.execute(&format!(
            "return fetch({:?}).then(r => r.text().then(t => [r.status, t]));",
            format!("{api}/workspaces/{workspace_id}/file?path={}", NOTE.0)
        )))
        .map_err(|e| format!("reading the file through the relay: {e:#}"))?;
    if read != serde_json::json!([200, NOTE.1]) {
        return Err(format!(
            "the browser read {read} instead of {:?} through the relay",
            NOTE.1
        ));
    }

    // One agent per user: a second tray launch starts none, `katachi start` refuses.
    (|| {
        let mut second = SpawnedProcess::spawn(user.command(&app_binary()?))
            .map_err(|e| format!("cannot start a second katachi-app: {e}"))?;
        let exit = second.wait_for_exit(STARTUP_TIMEOUT);
        if exit.and_then(|status| status.code()) != Some(ALREADY_RUNNING) {
            return Err(second.describe(&format!(
                "a second tray launch must hand over and exit {ALREADY_RUNNING}; it ended with {exit:?}"
            )));
        }
        // it shows the running agent's window instead: the open window turns to Status
        window.wait_for(
            "the open window to show the running agent's status",
            "return document.body.dataset.view === 'status';",
        )?;
        let status = katachi_json(&user, &["status", "--json"])?;
        let tray_pid = tray.pid()?;
        if status["live"]["pid"] != tray_pid {
            return Err(tray.fail(&format!(
                "after a second launch the live agent is not the first tray's (pid {tray_pid}): {status}"
            )));
        }
        let mut start = user.command(&workspace_binary("katachi"));
        start.args([
            "start",
            "--relay",
            relay.url(),
            "--ca",
            &relay.ca_file().display().to_string(),
            "--no-browser",
        ]);
        let mut start = SpawnedProcess::spawn(start)
            .map_err(|e| format!("cannot start `katachi start`: {e}"))?;
        let (exit, stdout) = start.wait_for_output(EXIT_TIMEOUT)?;
        let said = format!("{stdout}{}", start.stderr());
        if exit.code() != Some(ALREADY_RUNNING) || !said.contains("already running") {
            return Err(format!(
                "`katachi start` beside the tray ended with {exit} saying: {said}"
            ));
        }
        Ok(())
    })()?;

    // Pause from the tray: the relay sees the agent go offline.
    (|| {
        let pause = tray.menu_entry(&item, "Pause remote access for 1 hour")?;
        tray.click(&item, pause)?;
        tray.wait_for_status(&item, "Paused until ")?;
        Ok::<_, String>(())
    })()?;
    rt.block_on(async {
        browser.goto(&relay.at("/agents")).await?;
        browser
            .wait_for_text(
                &format!("tr[data-agent-id=\"{agent_id}\"] [data-field=status]"),
                "offline",
                SEEN_OFFLINE,
            )
            .await
    })
    .map_err(|e| format!("the agents page after the pause: {e:#}"))?;
    if relay.state().tunnels.is_online(&agent_id) {
        return Err("the paused agent's tunnel is still open at the relay".to_owned());
    }
    (|| {
        let status = katachi_json(&user, &["status", "--json"])?;
        if status["live"]["status"]["state"] != "paused" {
            return Err(format!("`katachi status --json` after the pause: {status}"));
        }
        window.close();
        tray.quit(&item)
    })()?;
    rt.block_on(async {
        browser.close().await?;
        relay.stop().await
    })
    .map_err(|e| format!("{e:#}"))
}

/// One user's HOME, XDG dirs and agent home, shared by the tray, the window and the CLI.
struct UserDirs {
    dir: tempfile::TempDir,
}

impl UserDirs {
    fn new() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        for sub in ["config", "data", "cache", "state", "runtime", "katachi"] {
            let path = dir.path().join(sub);
            std::fs::create_dir(&path)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
        Ok(Self { dir })
    }

    /// Points `command` at these dirs (and X11, never Wayland).
    fn apply(&self, command: &mut Command) {
        let root = self.dir.path();
        command
            .env("HOME", root)
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_CACHE_HOME", root.join("cache"))
            .env("XDG_STATE_HOME", root.join("state"))
            .env("XDG_RUNTIME_DIR", root.join("runtime"))
            .env("KATACHI_HOME", root.join("katachi"))
            .env("GDK_BACKEND", "x11")
            .env_remove("WAYLAND_DISPLAY");
    }

    fn command(&self, binary: &Path) -> Command {
        let mut command = Command::new(binary);
        self.apply(&mut command);
        command
    }
}

/// The tray process, ready, with the session bus to read and click its menu.
struct Tray {
    process: SpawnedProcess,
    bus: dbus::blocking::Connection,
}

impl Tray {
    fn start(user: &UserDirs) -> Result<Self, String> {
        tray_dbus::serve_status_notifier_watcher()?;
        let mut process = SpawnedProcess::spawn(user.command(&app_binary()?))
            .map_err(|e| format!("cannot start katachi-app: {e}"))?;
        process.wait_for_stdout_line(READY_LINE, STARTUP_TIMEOUT)?;
        Ok(Self {
            process,
            bus: tray_dbus::session_bus()?,
        })
    }

    fn pid(&mut self) -> Result<u32, String> {
        self.process
            .id()
            .ok_or_else(|| self.fail("the tray has no process id"))
    }

    fn item(&mut self) -> Result<TrayItem, String> {
        let pid = self.pid()?;
        let bus = &self.bus;
        wait_until(STARTUP_TIMEOUT, || {
            tray_dbus::find_tray_item(bus, pid).ok().flatten()
        })
        .ok_or_else(|| self.fail("exported no tray item"))
    }

    fn menu_entry(&mut self, item: &TrayItem, label: &str) -> Result<i32, String> {
        let menu = tray_dbus::read_menu(&self.bus, item)?;
        menu.iter()
            .find(|entry| entry.label == label && entry.enabled)
            .map(|entry| entry.id)
            .ok_or_else(|| self.fail(&format!("no enabled \"{label}\" in the menu {menu:?}")))
    }

    fn click(&mut self, item: &TrayItem, id: i32) -> Result<(), String> {
        tray_dbus::click_menu_entry(&self.bus, item, id).map_err(|e| self.fail(&e))
    }

    /// Waits until the menu's first line (the status) starts with `prefix`.
    fn wait_for_status(&mut self, item: &TrayItem, prefix: &str) -> Result<String, String> {
        let mut last = String::new();
        let bus = &self.bus;
        let found = wait_until(AGENT_REACTS, || {
            let line = tray_dbus::read_menu(bus, item)
                .ok()?
                .first()
                .map(|entry| entry.label.clone())?;
            last.clone_from(&line);
            line.starts_with(prefix).then_some(line)
        });
        found.ok_or_else(|| {
            self.fail(&format!(
                "the tray's status line did not start with {prefix:?} within {AGENT_REACTS:?}; last: {last:?}"
            ))
        })
    }

    /// Quits from the menu; the tray must end with status 0.
    fn quit(mut self, item: &TrayItem) -> Result<(), String> {
        let quit = self.menu_entry(item, "Quit")?;
        // it may exit before it answers the click: the exit status is what counts
        let clicked = tray_dbus::click_menu_entry(&self.bus, item, quit);
        match self.process.wait_for_exit(EXIT_TIMEOUT) {
            Some(status) if status.success() => Ok(()),
            other => Err(self.fail(&format!(
                "Quit ended the tray with {other:?} (click: {clicked:?})"
            ))),
        }
    }

    fn fail(&mut self, what: &str) -> String {
        self.process.describe(what)
    }
}

/// The window process launched by WebKitWebDriver on a view.
struct Window {
    driver: AppDriver,
}

impl Window {
    fn open(user: &UserDirs, view: &str) -> Result<Self, String> {
        let binary = app_binary()?;
        let mut driver = AppDriver::start(|command| {
            user.apply(command);
            Ok(())
        })?;
        let pending = driver.request_session_with_args(&binary, &["--window", "--view", view]);
        driver.wait_for_session(pending, STARTUP_TIMEOUT)?;
        let mut window = Self { driver };
        window.wait_for(
            "the page to be ready",
            "return document.body.dataset.ready === 'true';",
        )?;
        Ok(window)
    }

    /// Waits until `script` returns `true`.
    fn wait_for(&mut self, what: &str, script: &str) -> Result<(), String> {
        let driver = &self.driver;
        if wait_until(AGENT_REACTS, || {
            (driver.execute(script).ok()? == true).then_some(())
        })
        .is_some()
        {
            return Ok(());
        }
        let page = self
            .driver
            .execute("return document.body.innerText.slice(0, 800);")
            .unwrap_or_default();
        Err(self.driver.describe(&format!(
            "timed out waiting for {what}; the window reads: {page}"
        )))
    }

    fn run(&mut self, script: &str) -> Result<Value, String> {
        self.driver.execute(script)
    }

    fn run_async(&mut self, script: &str) -> Result<Value, String> {
        self.driver.execute_async(script)
    }

    fn screenshot(&mut self, name: &str) {
        // a courtesy for reviewers: a failed shot does not fail the test
        if self.driver.wait_for_paint().is_ok() {
            let _ = self.driver.screenshot_to(&screenshot_path!(name));
        }
    }

    fn close(self) {
        self.driver.stop(EXIT_TIMEOUT);
    }
}

/// Calls a window command from the page as the UI does; its answer as `[ok, value]`.
fn invoke_script(cmd: &str, args: &str) -> String {
    format!(
        "const done = arguments[arguments.length - 1]; \
         window.__TAURI__.core.invoke('{cmd}', {args}).then(v => done([true, v]), e => done([false, e]));"
    )
}

/// Runs the `katachi` CLI on the user's home and parses its JSON output.
fn katachi_json(user: &UserDirs, args: &[&str]) -> Result<Value, String> {
    let mut command = user.command(&workspace_binary("katachi"));
    command.args(args);
    let mut cli =
        SpawnedProcess::spawn(command).map_err(|e| format!("cannot run katachi {args:?}: {e}"))?;
    let (exit, stdout) = cli.wait_for_output(EXIT_TIMEOUT)?;
    if !exit.success() {
        return Err(cli.describe(&format!("katachi {args:?} ended with {exit}")));
    }
    serde_json::from_str(&stdout)
        .map_err(|e| format!("katachi {args:?} printed no JSON ({e}): {stdout}"))
}

fn app_binary() -> Result<PathBuf, String> {
    let binary = workspace_binary("katachi-app");
    if binary.is_file() {
        return Ok(binary);
    }
    Err(format!(
        "{} is missing: run `cargo build -p katachi-app -p katachi-cli` first",
        binary.display()
    ))
}

/// Fails with a how-to without a display and a session bus (never a silent pass).
fn require_desktop_session() -> Result<(), String> {
    for name in ["DISPLAY", "DBUS_SESSION_BUS_ADDRESS"] {
        if std::env::var_os(name).is_none_or(|v| v.is_empty()) {
            return Err(format!(
                "{name} unset: run under scripts/with-session.sh (Xvfb + D-Bus + keyring)"
            ));
        }
    }
    Ok(())
}
