//! The window process end to end: the real `katachi-app --window` under Xvfb, driven over
//! WebDriver (`WebKitWebDriver` launching it, as `tauri-driver` does), with its own HOME.
//!
//! - Each view opens from the navigation and renders what `katachi-core` reports (the sandbox
//!   layers); a screenshot of every view is saved (`KATACHI_UPDATE_SCREENSHOTS=1` writes them to
//!   `docs/screenshots`).
//! - The Connect view checks the relay before any sign-in and says clearly when it is unreachable;
//!   a real relay answers the check only with its CA pinned.
//! - With no agent running, the window says so instead of showing a state it does not know.
//! - Settings saves an AI provider through the core's checks (plain http to another machine is
//!   refused) and lists the key it names as not stored.
//! - A second `--window` launch hands its view to the first window and exits (single instance).
//! - The time from process start to the first rendered view is printed (window open → interactive).
//!
//! Run: `scripts/with-session.sh scripts/with-postgres.sh cargo test -p katachi-e2e --test app_window`
//! after `cargo build -p katachi-app`.

#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use katachi_core::sandbox::Sandbox;
use katachi_e2e::app_webdriver::AppDriver;
use katachi_e2e::process::{isolate_user_dirs, wait_until, RuntimeDir};
use katachi_e2e::tray_dbus::wait_for_bus_name_released;
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
    /// One window at a time in this binary: ten WebKit processes starting at once on a 2-core
    /// machine miss the driver's start-up budget, and the tests measure nothing about contention.
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The window's single-instance name on the session bus (`src-tauri/src/window/mod.rs`).
const WINDOW_BUS_NAME: &str = "dev.katachi.app.window.SingleInstance";

/// Whose turn it is to have a window (see [`Window::_turn`]).
static ONE_WINDOW: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for this test's turn; a test that failed holding it does not block the others.
fn my_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_WINDOW
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let turn = my_turn();
        // The window of the test before may still be leaving the bus: a window started meanwhile
        // would hand its arguments to that one and exit.
        wait_for_bus_name_released(WINDOW_BUS_NAME, STARTUP_TIMEOUT)?;
        let binary = app_binary()?;
        let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let mut driver = AppDriver::start(|command| {
            isolate_user_dirs(command, home.path(), RuntimeDir::Shared)?;
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
            _turn: turn,
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
        let others_hidden = window.run("return Array.from(document.querySelectorAll('.view')).filter(v => !v.hidden).map(v => v.id);")?;
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
fn an_ai_provider_saved_in_settings_is_checked_and_becomes_the_default() -> Result<(), String> {
    let mut window = Window::open("settings")?;
    window.wait_for(
        "the AI provider form",
        "return document.getElementById('ai-provider').options.length === 2 && document.getElementById('ai-current').textContent !== '';",
    )?;
    let fill = |base_url: &str| {
        format!(
            "document.getElementById('ai-scope').value = ''; \
             document.getElementById('ai-provider').value = 'openai'; \
             document.getElementById('ai-model').value = 'qwen2.5-coder'; \
             document.getElementById('ai-base-url').value = '{base_url}'; \
             document.getElementById('ai-key-name').value = 'ollama'; \
             document.getElementById('ai-save').click(); return true;"
        )
    };
    // plain http to another machine is refused by the core's check, and nothing is saved
    window.run(&fill("http://models.example/v1"))?;
    window.wait_for(
        "the refusal",
        "return document.getElementById('ai-message').textContent.includes('plain http is allowed only to this machine');",
    )?;
    window.run(&fill("http://127.0.0.1:11434/v1"))?;
    window.wait_for(
        "the saved default",
        "return document.getElementById('ai-current').textContent === 'The default is openai qwen2.5-coder at http://127.0.0.1:11434/v1 (key ollama).';",
    )?;
    // the key the choice names is listed as not stored yet (a key is never shown)
    window.wait_for(
        "the ollama key row",
        "return Array.from(document.querySelectorAll('#api-keys li')).some(li => li.textContent.includes('ollama') && li.textContent.includes('not set'));",
    )?;
    window.screenshot("window-settings-ai-provider.png");
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
        let turn = my_turn();
        // The window of the test before may still be leaving the bus: a window started meanwhile
        // would hand its arguments to that one and exit.
        wait_for_bus_name_released(WINDOW_BUS_NAME, STARTUP_TIMEOUT)?;
        let binary = app_binary()?;
        let home = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let mut driver = AppDriver::start(|command| {
            isolate_user_dirs(command, home.path(), RuntimeDir::Shared)?;
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
            _turn: turn,
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

/// Calls a window command from the page as the UI does, and waits for its answer (`[ok, value]`).
fn invoke_script(cmd: &str, args: &str) -> String {
    format!(
        "const done = arguments[arguments.length - 1]; \
         window.__TAURI__.core.invoke('{cmd}', {args}).then(v => done([true, v]), e => done([false, e]));"
    )
}

#[test]
fn a_folder_added_through_the_pickers_command_is_listed_with_its_policy_and_removed(
) -> Result<(), String> {
    let folder = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = folder.path().to_string_lossy().into_owned();
    let mut window = Window::open("workspaces")?;

    let added = window.run_async(&invoke_script(
        "add_workspace",
        &format!("{{path: {path:?}}}"),
    ))?;
    if added[0] != true {
        return Err(window
            .driver
            .describe(&format!("add_workspace failed: {added}")));
    }
    // the view shows what the store now holds
    window.run("document.getElementById('tab-status').click(); document.getElementById('tab-workspaces').click(); return true;")?;
    window.wait_for(
        "the folder in the list",
        &format!("return Array.from(document.querySelectorAll('#workspaces .ws-path')).some(p => p.textContent === {path:?});"),
    )?;
    let policy = format!(
        "{{policy: {{path: {path:?}, allowed_commands: ['git'], allowed_hosts: ['crates.io']}}}}"
    );
    let set = window.run_async(&invoke_script("set_workspace_policy", &policy))?;
    let item = &set[1][0];
    if set[0] != true
        || item["allowed_commands"] != serde_json::json!(["git"])
        || item["allowed_hosts"] != serde_json::json!(["crates.io"])
    {
        return Err(window.driver.describe(&format!("policy not stored: {set}")));
    }
    window.run("document.getElementById('tab-status').click(); document.getElementById('tab-workspaces').click(); return true;")?;
    window.wait_for("the policy in the view", "return Array.from(document.querySelectorAll('#workspaces input')).some(i => i.value === 'git');")?;
    window.screenshot("window-workspaces-listed.png");

    let missing = window.run_async(&invoke_script(
        "add_workspace",
        "{path: '/nonexistent/katachi-e2e'}",
    ))?;
    if missing[0] != false || missing[1]["code"] != "invalid_input" {
        return Err(window.driver.describe(&format!(
            "a missing folder was not refused clearly: {missing}"
        )));
    }
    let removed = window.run_async(&invoke_script(
        "remove_workspace",
        &format!("{{path: {path:?}}}"),
    ))?;
    if removed != serde_json::json!([true, []]) {
        return Err(window
            .driver
            .describe(&format!("remove_workspace answered {removed}")));
    }
    window.close();
    Ok(())
}

#[test]
fn a_second_window_launch_exits_and_switches_the_first_to_its_view() -> Result<(), String> {
    let mut window = Window::open("status")?;
    let mut second = Command::new(app_binary()?);
    second
        .args(["--window", "--view", "activity"])
        .env("GDK_BACKEND", "x11")
        .env_remove("WAYLAND_DISPLAY");
    let second_home = window._home.path().join("second");
    std::fs::create_dir(&second_home).map_err(|e| e.to_string())?;
    isolate_user_dirs(&mut second, &second_home, RuntimeDir::Shared)?;
    let mut second = katachi_e2e::process::SpawnedProcess::spawn(second)
        .map_err(|e| format!("cannot start the second window: {e}"))?;
    let exited = second.wait_for_exit(STARTUP_TIMEOUT);
    if !exited.is_some_and(|status| status.success()) {
        return Err(second.describe(&format!(
            "the second launch did not hand over and exit: {exited:?}"
        )));
    }
    window.wait_for(
        "the first window to show the asked view",
        "return document.body.dataset.view === 'activity';",
    )?;
    window.close();
    Ok(())
}

#[test]
fn the_sandbox_self_test_shows_each_escape_attempt_blocked() -> Result<(), String> {
    let mut window = Window::open("sandbox")?;
    window.run("document.getElementById('self-test').click(); return true;")?;
    window.wait_for(
        "the self-test results",
        "return document.querySelectorAll('#self-test-results li.ok, #self-test-results li.bad').length > 0 \
         && !document.getElementById('self-test').disabled;",
    )?;
    let shown = window.run(
        "return Array.from(document.querySelectorAll('#self-test-results li')).map(li => [li.className, li.querySelector('.badge') ? li.querySelector('.badge').textContent : li.textContent]);",
    )?;
    let rows = shown.as_array().cloned().unwrap_or_default();
    // this machine confines commands (see the sandbox view test): every attempt must be blocked
    let escaped: Vec<&Value> = rows
        .iter()
        .filter(|r| r[0] != "ok" || r[1] != "blocked")
        .collect();
    if rows.len() < 3 || !escaped.is_empty() {
        return Err(window.driver.describe(&format!("self-test rows: {shown}")));
    }
    window.screenshot("window-sandbox-self-test.png");
    window.close();
    Ok(())
}

#[test]
fn a_folder_allowed_from_the_window_shows_in_activity_as_done_by_the_tray() -> Result<(), String> {
    let folder = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = folder.path().to_string_lossy().into_owned();
    let mut window = Window::open("activity")?;
    let added = window.run_async(&invoke_script(
        "add_workspace",
        &format!("{{path: {path:?}}}"),
    ))?;
    if added[0] != true {
        return Err(window
            .driver
            .describe(&format!("add_workspace failed: {added}")));
    }
    window.run("document.getElementById('tab-status').click(); document.getElementById('tab-activity').click(); return true;")?;
    window.wait_for(
        "the workspace.add record",
        &format!(
            "return Array.from(document.querySelectorAll('#records li')).some(li => \
             li.textContent.includes('workspace.add') && li.textContent.includes('tray') && li.textContent.includes({path:?}));"
        ),
    )?;
    window.screenshot("window-activity-record.png");
    window.close();
    Ok(())
}

#[test]
fn a_real_relay_answers_the_check_only_with_its_ca_pinned() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let relay = runtime
        .block_on(katachi_e2e::relay::InProcessRelay::start(|_| {}))
        .map_err(|e| format!("no relay: {e:#}"))?;
    let ca = std::fs::read_to_string(relay.ca_file()).map_err(|e| e.to_string())?;
    let url = relay.url().to_owned();
    let mut window = Window::open("connect")?;

    let pinned = window.run_async(&invoke_script(
        "check_relay",
        &format!("{{relay: {url:?}, caPem: {ca:?}}}"),
    ))?;
    if pinned[0] != true || pinned[1]["relay"] != url.as_str() {
        return Err(window
            .driver
            .describe(&format!("the pinned check failed: {pinned}")));
    }
    // the relay's own CA is not a system root: without it the certificate is refused
    let unpinned = window.run_async(&invoke_script(
        "check_relay",
        &format!("{{relay: {url:?}}}"),
    ))?;
    if unpinned[0] != false || unpinned[1]["code"] != "relay_unreachable" {
        return Err(window
            .driver
            .describe(&format!("the unpinned check answered {unpinned}")));
    }
    // reachable relay, no agent: the sign-in gets past the check and says the agent is not running
    let sign_in = window.run_async(&invoke_script(
        "sign_in",
        &format!("{{relay: {url:?}, caPem: {ca:?}}}"),
    ))?;
    if sign_in[0] != false || sign_in[1]["code"] != "agent_unreachable" {
        return Err(window
            .driver
            .describe(&format!("sign_in without an agent answered {sign_in}")));
    }
    window.close();
    runtime.block_on(relay.stop()).map_err(|e| e.to_string())?;
    Ok(())
}
