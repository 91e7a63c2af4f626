//! The tray app end to end: the real `katachi-app` binary under an X display and a D-Bus session,
//! driven the way a desktop panel and a window manager drive it.
//!
//! - The tray and its menu are read over D-Bus (StatusNotifierItem + dbusmenu), as a panel does.
//! - Menu items are clicked over D-Bus (`com.canonical.dbusmenu.Event`), as a panel does.
//! - Windows are found and closed over X11 (`_NET_WM_PID`, `WM_DELETE_WINDOW`), as a WM does.
//! - The status window's page is read over WebDriver (`WebKitWebDriver` launching the app, as
//!   `tauri-driver` does).
//!
//! Needs `target/debug/katachi-app` (`cargo build -p katachi-app`) and a display plus a session bus:
//! `xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- cargo test -p katachi-e2e --test tray_app`
//! (`make test` does this). Without them the tests fail rather than pass silently.

#![cfg(target_os = "linux")]

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use katachi_core::sandbox::Sandbox;
use katachi_e2e::app_webdriver::AppDriver;
use katachi_e2e::process::{wait_until, SpawnedProcess};
use katachi_e2e::tray_dbus::{self, MenuEntry, TrayItem};
use katachi_e2e::x11_windows::X11Display;
use katachi_e2e::{screenshot_path, workspace_binary};
use serde_json::Value;
use tempfile::TempDir;

/// Printed by the app once its tray exists.
const READY_LINE: &str = "katachi-app: tray ready";
/// Start-up budget: a debug build on a loaded 2-core CI machine, GTK and D-Bus activation included.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Budget for the tray to appear on the bus after the ready line.
const TRAY_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Budget for the status window (a WebKit view) to appear or disappear.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the app must keep running, unprompted, to count as "stays running".
const STAYS_ALIVE_FOR: Duration = Duration::from_secs(2);
/// Budget for the app to exit once asked to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The menu a user sees, top to bottom: (label, enabled, separator). The second line is
/// katachi-core's summary of this machine's sandbox (the app probes the same kernel).
fn expected_menu() -> Vec<(String, bool, bool)> {
    vec![
        ("Katachi — not connected".to_owned(), false, false),
        (Sandbox::probe().status().summary(), false, false),
        (String::new(), true, true),
        ("Open Katachi".to_owned(), true, false),
        ("Quit".to_owned(), true, false),
    ]
}

/// Reads the status window's "Sandbox" section: whether it is still loading, the on/OFF badge, the
/// notice (and whether it is hidden), and each layer as `[name, state, detail]`.
const READ_SANDBOX_SECTION: &str = r##"
const section = document.getElementById("sandbox");
if (!section) { return null; }
const notice = document.getElementById("sandbox-notice");
return {
  busy: section.getAttribute("aria-busy"),
  heading: document.getElementById("sandbox-title").textContent.replace(/\s+/g, " ").trim(),
  state: document.getElementById("sandbox-state").textContent.trim(),
  noticeHidden: notice.hidden,
  notice: notice.textContent.replace(/\s+/g, " ").trim(),
  layers: Array.from(section.querySelectorAll("#sandbox-layers li")).map((li) => [
    li.querySelector(".layer-name").textContent,
    li.querySelector(".layer-state").textContent,
    li.querySelector(".layer-detail").textContent,
  ]),
};
"##;

#[test]
fn tray_app_starts_and_stays_running_without_a_window() -> Result<(), Failure> {
    let mut app = TrayApp::start()?;
    let pid = app.pid()?;

    // Nothing should end the app by itself: no window, no exit.
    if app.process.wait_for_exit(STAYS_ALIVE_FOR).is_some() {
        return Err(app.fail("exited by itself after start-up"));
    }
    let windows = X11Display::connect()?.visible_windows_of(pid)?;
    if !windows.is_empty() {
        return Err(app.fail(&format!("opened windows at start-up: {windows:?}")));
    }
    app.stop()
}

#[test]
fn tray_menu_shows_disabled_status_line_then_open_katachi_and_quit() -> Result<(), Failure> {
    let mut app = TrayApp::start()?;
    let tray = app.tray_item()?;
    if tray.status != "Active" {
        return Err(app.fail(&format!("tray item is not active: {tray:?}")));
    }
    // appindicator exports the icon as a PNG file it wrote from our RGBA pixels.
    let icon = std::fs::read(&tray.icon_name).unwrap_or_default();
    if !icon.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(app.fail(&format!("tray icon is not a readable PNG: {tray:?}")));
    }

    let menu = app.menu(&tray)?;
    let seen: Vec<(String, bool, bool)> = menu
        .iter()
        .map(|entry| (entry.label.clone(), entry.enabled, entry.separator))
        .collect();
    let expected = expected_menu();
    if seen != expected {
        return Err(app.fail(&format!("tray menu is {seen:?}, expected {expected:?}")));
    }
    // this machine confines commands: the line must say so, not just be there
    let sandbox_line = &expected[1].0;
    if !sandbox_line.starts_with("Sandbox: on — landlock abi ") {
        return Err(app.fail(&format!("sandbox line reads {sandbox_line:?}")));
    }
    app.stop()
}

#[test]
fn status_window_lists_this_machines_sandbox_layers_with_their_state() -> Result<(), Failure> {
    require_desktop_session()?;
    let binary = app_binary()?;
    let home = tempfile::tempdir().map_err(|err| Failure(format!("no temp dir: {err}")))?;
    let mut driver = AppDriver::start(|command| {
        isolate_user_dirs(command, home.path()).map_err(|Failure(message)| message)?;
        command
            .env("GDK_BACKEND", "x11")
            .env_remove("WAYLAND_DISPLAY");
        Ok(())
    })?;

    // The driver launches the app; its session attaches once the user opens the window.
    let pending = driver.request_session(&binary);
    let pid = driver
        .app_pid(STARTUP_TIMEOUT)
        .ok_or_else(|| driver.describe("launched no katachi-app"))?;
    let bus = tray_dbus::session_bus()?;
    let tray = wait_until(STARTUP_TIMEOUT, || {
        tray_dbus::find_tray_item(&bus, pid).ok().flatten()
    })
    .ok_or_else(|| driver.describe("the app exported no tray item"))?;
    let menu = tray_dbus::read_menu(&bus, &tray)?;
    let open = menu
        .iter()
        .find(|entry| entry.label == "Open Katachi")
        .ok_or_else(|| driver.describe(&format!("no \"Open Katachi\" in {menu:?}")))?;
    tray_dbus::click_menu_entry(&bus, &tray, open.id)?;
    driver.wait_for_session(pending, WINDOW_TIMEOUT)?;

    let mut last = Value::Null;
    let section = wait_until(WINDOW_TIMEOUT, || {
        last = driver.execute(READ_SANDBOX_SECTION).ok()?;
        (last["busy"] == "false").then(|| last.clone())
    })
    .ok_or_else(|| driver.describe(&format!("sandbox section still loading: {last}")))?;
    // a courtesy for reviewers: the window as rendered (a failed shot does not fail the test)
    if driver.wait_for_paint().is_ok() {
        let _ = driver.screenshot_to(&screenshot_path!("tray-status-window.png"));
    }

    let status = Sandbox::probe().status();
    let expected: Vec<Value> = status
        .layers
        .iter()
        .map(|l| {
            let state = if l.active { "active" } else { "inactive" };
            Value::from(vec![l.name.as_str(), state, l.detail.as_str()])
        })
        .collect();
    let shown = section["layers"].as_array().cloned().unwrap_or_default();
    let has_active = |prefix: &str| {
        shown
            .iter()
            .any(|l| l[0].as_str().is_some_and(|n| n.starts_with(prefix)) && l[1] == "active")
    };
    let checks = [
        ("layers as katachi-core reports them", shown == expected),
        ("an active landlock layer", has_active("landlock abi ")),
        ("an active seccomp layer", has_active("seccomp")),
        (
            "the heading \"Sandbox on\"",
            section["heading"] == "Sandbox on",
        ),
        (
            "no notice (commands are confined)",
            section["noticeHidden"] == true,
        ),
    ];
    if let Some((what, _)) = checks.iter().find(|(_, ok)| !ok) {
        return Err(driver
            .describe(&format!(
                "status window lacks {what}: shows {section:#}, expected layers {expected:?}"
            ))
            .into());
    }
    driver.stop(EXIT_TIMEOUT);
    Ok(())
}

#[test]
fn open_katachi_shows_a_single_status_window_titled_katachi() -> Result<(), Failure> {
    let mut app = TrayApp::start()?;
    let tray = app.tray_item()?;
    let open = app.menu_entry(&tray, "Open Katachi")?;

    app.click(&tray, &open)?;
    let window = app.wait_for_window_count(1)?;
    if window.first().map(|w| w.title.as_str()) != Some("Katachi") {
        return Err(app.fail(&format!(
            "status window is {window:?}, expected title \"Katachi\""
        )));
    }

    // Asking again brings the same window forward instead of opening a second one.
    app.click(&tray, &open)?;
    std::thread::sleep(Duration::from_secs(1));
    let windows = app.visible_windows()?;
    if windows != window {
        return Err(app.fail(&format!("second click changed the windows to {windows:?}")));
    }
    app.stop()
}

#[test]
fn closing_the_status_window_leaves_the_app_running_in_the_tray() -> Result<(), Failure> {
    let mut app = TrayApp::start()?;
    let tray = app.tray_item()?;
    let open = app.menu_entry(&tray, "Open Katachi")?;
    app.click(&tray, &open)?;
    let windows = app.wait_for_window_count(1)?;

    let display = X11Display::connect()?;
    for window in &windows {
        display.request_close(window.id)?;
    }
    app.wait_for_window_count(0)?;

    if app.process.wait_for_exit(STAYS_ALIVE_FOR).is_some() {
        return Err(app.fail("exited when its last window was closed"));
    }
    // The tray still answers, and can open the window again.
    let tray = app.tray_item()?;
    app.click(&tray, &open)?;
    app.wait_for_window_count(1)?;
    app.stop()
}

#[test]
fn quit_menu_item_ends_the_app_with_exit_status_zero() -> Result<(), Failure> {
    let mut app = TrayApp::start()?;
    let tray = app.tray_item()?;
    let quit = app.menu_entry(&tray, "Quit")?;

    // The app may exit before it answers the click ("recipient disconnected without replying"),
    // so the click's own result only explains a failure; the exit status is what counts.
    let clicked = tray_dbus::click_menu_entry(&app.bus, &tray, quit.id);
    match app.process.wait_for_exit(EXIT_TIMEOUT) {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(app.fail(&format!(
            "Quit ended the app with {status} (click: {clicked:?})"
        ))),
        None => Err(app.fail(&format!(
            "still running {EXIT_TIMEOUT:?} after Quit (click: {clicked:?})"
        ))),
    }
}

/// A running `katachi-app` with its own HOME and XDG directories, ready (tray created).
struct TrayApp {
    /// The app process; killed on drop if a test fails half-way.
    process: SpawnedProcess,
    /// Session bus connection used to read and click the tray.
    bus: dbus::blocking::Connection,
    /// HOME and XDG dirs of the app; removed after the process is gone (fields drop in order).
    _home: TempDir,
}

impl TrayApp {
    /// Starts `target/debug/katachi-app` and waits for its tray-ready line.
    fn start() -> Result<Self, Failure> {
        require_desktop_session()?;
        let binary = app_binary()?;
        let home = tempfile::tempdir().map_err(|err| Failure(format!("no temp dir: {err}")))?;
        let mut command = Command::new(&binary);
        isolate_user_dirs(&mut command, home.path())?;
        // The checks below talk X11 to the display xvfb-run made; never let GTK pick Wayland.
        command
            .env("GDK_BACKEND", "x11")
            .env_remove("WAYLAND_DISPLAY");

        let mut process = SpawnedProcess::spawn(command)
            .map_err(|err| Failure(format!("cannot start {}: {err}", binary.display())))?;
        process
            .wait_for_stdout_line(READY_LINE, STARTUP_TIMEOUT)
            .map_err(Failure)?;
        let bus = tray_dbus::session_bus()?;
        Ok(Self {
            process,
            bus,
            _home: home,
        })
    }

    /// The app's pid.
    fn pid(&mut self) -> Result<u32, Failure> {
        self.process
            .id()
            .ok_or_else(|| self.fail("has no process id"))
    }

    /// Waits for the app's tray icon to be exported on the session bus.
    fn tray_item(&mut self) -> Result<TrayItem, Failure> {
        let pid = self.pid()?;
        let mut last_error = None;
        let found = wait_until(TRAY_EXPORT_TIMEOUT, || {
            match tray_dbus::find_tray_item(&self.bus, pid) {
                Ok(item) => item,
                Err(err) => {
                    last_error = Some(err);
                    None
                }
            }
        });
        found.ok_or_else(|| {
            self.fail(&format!(
                "exported no StatusNotifierItem within {TRAY_EXPORT_TIMEOUT:?} ({last_error:?})"
            ))
        })
    }

    /// Reads the tray menu.
    fn menu(&mut self, tray: &TrayItem) -> Result<Vec<MenuEntry>, Failure> {
        tray_dbus::read_menu(&self.bus, tray).map_err(|err| self.fail(&err))
    }

    /// The menu entry labelled `label`.
    fn menu_entry(&mut self, tray: &TrayItem, label: &str) -> Result<MenuEntry, Failure> {
        let menu = self.menu(tray)?;
        menu.iter()
            .find(|entry| entry.label == label)
            .cloned()
            .ok_or_else(|| self.fail(&format!("tray menu has no \"{label}\": {menu:?}")))
    }

    /// Clicks `entry` in the tray menu.
    fn click(&mut self, tray: &TrayItem, entry: &MenuEntry) -> Result<(), Failure> {
        tray_dbus::click_menu_entry(&self.bus, tray, entry.id).map_err(|err| self.fail(&err))
    }

    /// The app's visible top-level windows.
    fn visible_windows(
        &mut self,
    ) -> Result<Vec<katachi_e2e::x11_windows::TopLevelWindow>, Failure> {
        let pid = self.pid()?;
        X11Display::connect()
            .and_then(|display| display.visible_windows_of(pid))
            .map_err(|err| self.fail(&err))
    }

    /// Waits until the app shows exactly `count` visible windows, and returns them.
    fn wait_for_window_count(
        &mut self,
        count: usize,
    ) -> Result<Vec<katachi_e2e::x11_windows::TopLevelWindow>, Failure> {
        let pid = self.pid()?;
        let display = X11Display::connect()?;
        let mut last = Vec::new();
        let found = wait_until(WINDOW_TIMEOUT, || match display.visible_windows_of(pid) {
            Ok(windows) if windows.len() == count => Some(windows),
            Ok(windows) => {
                last = windows;
                None
            }
            Err(_) => None,
        });
        found.ok_or_else(|| {
            self.fail(&format!(
                "did not show {count} window(s) within {WINDOW_TIMEOUT:?}; last seen: {last:?}"
            ))
        })
    }

    /// Stops the app with SIGTERM (SIGKILL after a bounded wait) and checks it was still running.
    fn stop(mut self) -> Result<(), Failure> {
        if !self.process.is_running() {
            return Err(self.fail("had exited before the test stopped it"));
        }
        self.process
            .terminate(EXIT_TIMEOUT)
            .map(|_| ())
            .map_err(|err| self.fail(&format!("could not be stopped: {err}")))
    }

    /// A failure message about the app, with its output so far.
    fn fail(&mut self, what: &str) -> Failure {
        Failure(self.process.describe(what))
    }
}

/// `target/debug/katachi-app`, or how to build it.
fn app_binary() -> Result<std::path::PathBuf, Failure> {
    let binary = workspace_binary("katachi-app");
    if !binary.is_file() {
        return Err(Failure(format!(
            "{} is missing: build it before the end-to-end tests with `cargo build -p katachi-app` \
             (`make test` does)",
            binary.display()
        )));
    }
    Ok(binary)
}

/// Fails with a how-to unless a display and a session bus are there: skipping silently would let
/// a CI without Xvfb report the tray as tested.
fn require_desktop_session() -> Result<(), Failure> {
    let missing: Vec<&str> = ["DISPLAY", "DBUS_SESSION_BUS_ADDRESS"]
        .into_iter()
        .filter(|name| std::env::var_os(name).is_none_or(|value| value.is_empty()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure(format!(
        "{} unset: the tray app needs a display and a D-Bus session; run under xvfb-run / make test: \
         xvfb-run -a -s \"-screen 0 1280x800x24\" dbus-run-session -- cargo test -p katachi-e2e --test tray_app",
        missing.join(" and ")
    )))
}

/// Points HOME and the XDG base directories of `command` at fresh dirs under `home`, so the app
/// (GTK, WebKit, appindicator's icon files) never reads or writes the real user's files.
fn isolate_user_dirs(command: &mut Command, home: &Path) -> Result<(), Failure> {
    command.env("HOME", home);
    for (variable, dir) in [
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_RUNTIME_DIR", "runtime"),
    ] {
        let path = home.join(dir);
        std::fs::create_dir(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)))
            .map_err(|err| Failure(format!("cannot create {}: {err}", path.display())))?;
        command.env(variable, path);
    }
    Ok(())
}

/// A test failure whose message prints as is (the default `Debug` of a `String` would escape the
/// app's multi-line output into one unreadable line).
struct Failure(String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self(message)
    }
}
