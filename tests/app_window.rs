//! The window process end to end: the real `katachi-app --window` under Xvfb, driven over
//! WebDriver (`WebKitWebDriver` launching it, as `tauri-driver` does), with its own HOME.
//!
//! - Each view opens from the navigation and renders what `katachi-core` reports (the sandbox
//!   layers); a screenshot of every view is saved (`KATACHI_UPDATE_SCREENSHOTS=1` writes them to
//!   `docs/screenshots`).
//! - The Connect view checks the relay before any sign-in and says clearly when it is unreachable.
//! - With no agent running, the window says so instead of showing a state it does not know.
//! - The time from process start to the first rendered view is printed (window open → interactive).
//!
//! Run: `scripts/with-session.sh scripts/with-postgres.sh cargo test -p katachi-e2e --test app_window`
//! after `cargo build -p katachi-app`.

#![cfg(target_os = "linux")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use katachi_core::sandbox::Sandbox;
use katachi_e2e::app_webdriver::AppDriver;
use katachi_e2e::process::wait_until;
use katachi_e2e::{screenshot_path, workspace_binary};
use serde_json::Value;

/// Start-up budget: a debug build on a loaded 2-core machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Budget for a view to load its data.
const VIEW_TIMEOUT: Duration = Duration::from_secs(30);
/// Budget for the app to exit once asked to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The views, in navigation order.
const VIEWS: [&str; 6] = [
    "connect",
    "status",
    "workspaces",
    "sandbox",
    "activity",
    "settings",
];

/// The window with its own HOME, launched by the driver on `view`.
struct Window {
    driver: AppDriver,
    _home: tempfile::TempDir,
}

impl Window {
    fn open(view: &str) -> Result<Self, String> {
        for name in ["DISPLAY", "DBUS_SESSION_BUS_ADDRESS"] {
            if std::env::var_os(name).is_none_or(|v| v.is_empty()) {
                return Err(format!(
                    "{name} unset: run under scripts/with-session.sh (Xvfb + D-Bus + keyring)"
                ));
            }
        }
        let binary = app_binary()?;
        let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let mut driver = AppDriver::start(|command| {
            isolate_user_dirs(command, home.path())?;
            command
                .env("GDK_BACKEND", "x11")
                .env_remove("WAYLAND_DISPLAY");
            Ok(())
        })?;
        let pending = driver.request_session_with_args(&binary, &["--window", "--view", view]);
        driver.wait_for_session(pending, STARTUP_TIMEOUT)?;
        let mut window = Self {
            driver,
            _home: home,
        };
        window.wait_for(
            "the page to be ready",
            "return document.body.dataset.ready === 'true';",
        )?;
        Ok(window)
    }

    /// Waits until `script` returns `true`.
    fn wait_for(&mut self, what: &str, script: &str) -> Result<(), String> {
        let driver = &self.driver;
        if wait_until(VIEW_TIMEOUT, || {
            (driver.execute(script).ok()? == true).then_some(())
        })
        .is_some()
        {
            return Ok(());
        }
        Err(self
            .driver
            .describe(&format!("timed out waiting for {what}")))
    }

    fn run(&mut self, script: &str) -> Result<Value, String> {
        self.driver.execute(script)
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

#[test]
fn every_view_opens_from_the_navigation_and_the_window_is_interactive_quickly() -> Result<(), String>
{
    let mut window = Window::open("status")?;
    let ready_ms = window.run("return Number(document.body.dataset.readyMs || -1);")?;
    println!("window open -> interactive: {ready_ms} ms (process start to first view rendered)");
    if ready_ms.as_i64().is_none_or(|ms| ms < 0) {
        return Err(window
            .driver
            .describe(&format!("no interactive time recorded: {ready_ms}")));
    }
    for view in VIEWS {
        window.run(&format!(
            "document.getElementById('tab-{view}').click(); return true;"
        ))?;
        window.wait_for(
            &format!("the {view} view"),
            &format!(
                "return document.body.dataset.view === '{view}' && \
                 !document.getElementById('view-{view}').hidden && \
                 document.getElementById('tab-{view}').getAttribute('aria-selected') === 'true';"
            ),
        )?;
        let others_hidden = window.run(&format!(
            "return Array.from(document.querySelectorAll('.view')).filter(v => !v.hidden).map(v => v.id);"
        ))?;
        if others_hidden != Value::from(vec![format!("view-{view}")]) {
            return Err(window
                .driver
                .describe(&format!("visible views: {others_hidden}")));
        }
        if view == "sandbox" {
            window.wait_for(
                "the sandbox layers",
                "return document.querySelectorAll('#sandbox-layers li').length > 0;",
            )?;
        }
        if view == "settings" {
            window.wait_for("the API key rows", "return document.querySelectorAll('#api-keys li').length === 3 || document.getElementById('settings-message').textContent !== '';")?;
        }
        window.screenshot(&format!("window-{view}.png"));
    }
    window.close();
    Ok(())
}

#[test]
fn the_sandbox_view_lists_the_layers_katachi_core_reports() -> Result<(), String> {
    let mut window = Window::open("sandbox")?;
    window.wait_for(
        "the sandbox layers",
        "return document.querySelectorAll('#sandbox-layers li').length > 0;",
    )?;
    let shown = window.run(
        "return Array.from(document.querySelectorAll('#sandbox-layers li strong')).map(s => s.textContent);",
    )?;
    let expected: Vec<String> = Sandbox::probe()
        .status()
        .layers
        .into_iter()
        .map(|l| l.name)
        .collect();
    if shown != Value::from(expected.clone()) {
        return Err(window
            .driver
            .describe(&format!("layers {shown}, expected {expected:?}")));
    }
    window.close();
    Ok(())
}

#[test]
fn connect_says_clearly_when_the_relay_is_unreachable_and_starts_no_sign_in() -> Result<(), String>
{
    let mut window = Window::open("connect")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    window.run(&format!(
        "document.getElementById('relay').value = 'https://127.0.0.1:{port}'; \
         document.getElementById('connect').click(); return true;"
    ))?;
    window.wait_for(
        "the unreachable message",
        "return document.getElementById('connect-message').textContent.includes('cannot reach the relay');",
    )?;
    let code_hidden = window.run("return document.getElementById('code-panel').hidden;")?;
    if code_hidden != true {
        return Err(window
            .driver
            .describe("a code panel appeared for an unreachable relay"));
    }
    window.run("document.getElementById('relay').value = 'http://relay.example'; document.getElementById('check').click(); return true;")?;
    window.wait_for(
        "the https message",
        "return document.getElementById('connect-message').textContent.includes('https');",
    )?;
    window.screenshot("window-connect-unreachable.png");
    window.close();
    Ok(())
}

#[test]
fn a_katachi_link_fills_in_the_relay_only_after_the_user_agrees() -> Result<(), String> {
    let mut window = Window::open_with_link("katachi://connect?relay=https://relay.example:8443")?;
    window.wait_for(
        "the question",
        "return !document.getElementById('link-ask').hidden;",
    )?;
    let before = window.run("return document.getElementById('relay').value;")?;
    if before != "" {
        return Err(window
            .driver
            .describe(&format!("the relay was filled in before asking: {before}")));
    }
    window.screenshot("window-connect-link.png");
    window.run("document.getElementById('link-accept').click(); return true;")?;
    let after = window.run("return document.getElementById('relay').value;")?;
    let panel = window.run("return document.getElementById('code-panel').hidden;")?;
    if after != "https://relay.example:8443" || panel != true {
        return Err(window.driver.describe(&format!(
            "after yes: relay {after}, code panel hidden {panel}"
        )));
    }
    window.close();
    Ok(())
}

#[test]
fn without_a_running_agent_the_status_view_says_the_agent_is_not_running() -> Result<(), String> {
    let mut window = Window::open("status")?;
    window.wait_for(
        "the agent-not-running state",
        "return document.getElementById('st-state').textContent === 'Agent not running';",
    )?;
    let reason = window.run("return document.getElementById('st-error').textContent;")?;
    if !reason
        .as_str()
        .is_some_and(|r| r.contains("cannot reach the Katachi agent"))
    {
        return Err(window.driver.describe(&format!("reason shown: {reason}")));
    }
    window.close();
    Ok(())
}

impl Window {
    fn open_with_link(link: &str) -> Result<Self, String> {
        let binary = app_binary()?;
        let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let mut driver = AppDriver::start(|command| {
            isolate_user_dirs(command, home.path())?;
            command
                .env("GDK_BACKEND", "x11")
                .env_remove("WAYLAND_DISPLAY");
            Ok(())
        })?;
        let pending = driver.request_session_with_args(&binary, &[link]);
        driver.wait_for_session(pending, STARTUP_TIMEOUT)?;
        let mut window = Self {
            driver,
            _home: home,
        };
        window.wait_for(
            "the page to be ready",
            "return document.body.dataset.ready === 'true';",
        )?;
        Ok(window)
    }
}

fn app_binary() -> Result<PathBuf, String> {
    let binary = workspace_binary("katachi-app");
    if binary.is_file() {
        return Ok(binary);
    }
    Err(format!(
        "{} is missing: run `cargo build -p katachi-app` first",
        binary.display()
    ))
}

/// Points HOME and the XDG base directories at fresh folders under `home`.
fn isolate_user_dirs(command: &mut Command, home: &Path) -> Result<(), String> {
    command.env("HOME", home);
    for (variable, dir) in [
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ] {
        let path = home.join(dir);
        std::fs::create_dir(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)))
            .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
        command.env(variable, path);
    }
    Ok(())
}
