//! The tray app end to end: the real `katachi-app` binary under an X display and a D-Bus session,
//! driven the way a desktop panel and a window manager drive it.
//!
//! - The tray and its menu are read over D-Bus (StatusNotifierItem + dbusmenu), as a panel does.
//! - Menu items are clicked over D-Bus (`com.canonical.dbusmenu.Event`), as a panel does.
//! - Windows are found and closed over X11 (`_NET_WM_PID`, `WM_DELETE_WINDOW`), as a WM does: the
//!   tray process itself never has one; "Open Katachi" starts a window process.
//! - A connected agent is a real one: `katachi start` signs in at an in-process relay (the user
//!   approves the code in headless Chromium), then the tray app hosts that agent home.
//!
//! Needs `target/debug/katachi-app` and `target/debug/katachi`
//! (`cargo build -p katachi-app -p katachi-cli`) and a display plus a session bus:
//! `xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- cargo test -p katachi-e2e --test tray_app`
//! (`make test` does this). Without them the tests fail rather than pass silently.

#![cfg(target_os = "linux")]

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use katachi_core::sandbox::Sandbox;
use katachi_e2e::approval::sign_up_verified;
use katachi_e2e::chromium::Browser;
use katachi_e2e::process::{isolate_user_dirs, pids_where, wait_until, RuntimeDir, SpawnedProcess};
use katachi_e2e::relay::InProcessRelay;
use katachi_e2e::tray_dbus::{self, MenuEntry, TrayItem};
use katachi_e2e::workspace_binary;
use katachi_e2e::x11_windows::X11Display;
use tempfile::TempDir;

mod menu_pictures;

/// Printed by the app once its tray exists.
const READY_LINE: &str = "katachi-app: tray ready";
/// Start-up budget: a debug build on a loaded 2-core CI machine, GTK and D-Bus activation included.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Budget for the tray to appear on the bus after the ready line.
const TRAY_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Budget for the agent to reach a state (connected, paused) and the tray to show it.
const AGENT_REACTS: Duration = Duration::from_secs(30);
/// Budget for a relay page in Chromium.
const PAGE: Duration = Duration::from_secs(30);
/// Budget for the status window (a WebKit view) to appear or disappear.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the app must keep running, unprompted, to count as "stays running".
const STAYS_ALIVE_FOR: Duration = Duration::from_secs(2);
/// Budget for the app to exit once asked to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The menu of a fresh home, top to bottom: (label, enabled, separator). The sandbox line is
/// katachi-core's summary of this machine (the app probes the same kernel).
fn signed_out_menu() -> Vec<(String, bool, bool)> {
    let line = |label: &str, enabled: bool| (label.to_owned(), enabled, false);
    let separator = (String::new(), true, true);
    vec![
        line("Sign-in needed", false),
        separator.clone(),
        line("Sign in…", true),
        line("Open web UI", false),
        line("Workspaces…", true),
        separator.clone(),
        line(&Sandbox::probe().status().summary(), false),
        line("Pause remote access for 1 hour", false),
        line("Stop all remote access now", false),
        separator,
        line("Open Katachi", true),
        line("Quit", true),
    ]
}

#[test]
fn tray_app_starts_and_stays_running_without_a_window_or_opengl() -> Result<(), Failure> {
    let mut app = TrayApp::start(None)?;
    let pid = app.pid()?;

    // Nothing should end the app by itself: no window, no exit.
    if app.process.wait_for_exit(STAYS_ALIVE_FOR).is_some() {
        return Err(app.fail("exited by itself after start-up"));
    }
    let windows = X11Display::connect()?.visible_windows_of(pid)?;
    if !windows.is_empty() {
        return Err(app.fail(&format!("opened windows at start-up: {windows:?}")));
    }
    // The tray never draws with OpenGL: GTK must not have mapped Mesa (and its LLVM) to pick a
    // visual, about 30 MB of the idle tray's PSS.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|err| app.fail(&format!("cannot read its memory map: {err}")))?;
    let gl: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| {
            path.contains("libLLVM") || path.contains("_dri.so") || path.contains("libGLX_mesa")
        })
        .collect();
    if !gl.is_empty() {
        return Err(app.fail(&format!("mapped OpenGL libraries: {gl:?}")));
    }
    app.stop()
}

#[test]
fn tray_of_a_fresh_home_says_sign_in_needed_with_the_signed_out_icon() -> Result<(), Failure> {
    let mut app = TrayApp::start(None)?;
    let tray = app.tray_item()?;
    if tray.status != "Active" {
        return Err(app.fail(&format!("tray item is not active: {tray:?}")));
    }
    let shown = app.icon_pixels(&tray)?;
    let signed_out = png_pixels(&repo_file("icons/tray-signed-out.png"))?;
    if shown != signed_out {
        return Err(app.fail("the tray icon is not the signed-out icon"));
    }

    let seen = app.menu_lines(&tray)?;
    let expected = signed_out_menu();
    if seen != expected {
        return Err(app.fail(&format!("tray menu is {seen:?}, expected {expected:?}")));
    }
    // this machine confines commands: the line must say so, not just be there
    let sandbox_line = &expected[6].0;
    if !sandbox_line.starts_with("Sandbox: on — landlock abi ") {
        return Err(app.fail(&format!("sandbox line reads {sandbox_line:?}")));
    }
    app.stop()
}

#[test]
fn open_katachi_starts_a_window_process_and_the_tray_process_stays_windowless(
) -> Result<(), Failure> {
    let mut app = TrayApp::start(None)?;
    let tray = app.tray_item()?;
    let open = app.menu_entry(&tray, "Open Katachi")?;
    app.click(&tray, &open)?;

    let tray_pid = app.pid()?;
    let window_pid = wait_until(WINDOW_TIMEOUT, || children_of(tray_pid).into_iter().next())
        .ok_or_else(|| app.fail("started no window process"))?;
    let display = X11Display::connect()?;
    let windows = wait_until(WINDOW_TIMEOUT, || {
        display
            .visible_windows_of(window_pid)
            .ok()
            .filter(|w| !w.is_empty())
    })
    .ok_or_else(|| app.fail("the window process showed no window"))?;
    if windows.first().map(|w| w.title.as_str()) != Some("Katachi") {
        return Err(app.fail(&format!(
            "window is {windows:?}, expected title \"Katachi\""
        )));
    }
    // The webview lives in the window process only.
    let own = display.visible_windows_of(tray_pid)?;
    if !own.is_empty() {
        return Err(app.fail(&format!("the tray process has windows: {own:?}")));
    }

    // Closing the window ends its process; the tray runs on.
    for window in &windows {
        display.request_close(window.id)?;
    }
    if wait_until(WINDOW_TIMEOUT, || {
        (!children_of(tray_pid).contains(&window_pid)).then_some(())
    })
    .is_none()
    {
        return Err(app.fail("the window process outlived its closed window"));
    }
    if app.process.wait_for_exit(STAYS_ALIVE_FOR).is_some() {
        return Err(app.fail("exited when the window was closed"));
    }
    app.stop()
}

#[test]
fn without_a_tray_host_the_app_opens_its_window_and_says_why() -> Result<(), Failure> {
    require_desktop_session()?;
    let binary = app_binary()?;
    let home = tempfile::tempdir().map_err(|err| Failure(format!("no temp dir: {err}")))?;
    // A session bus of its own, where no panel owns the watcher name (and no keyring runs: the
    // agent home keeps its secret in the opt-in file keystore).
    let katachi_home = file_keystore_home(home.path())?;
    let mut command = Command::new("dbus-run-session");
    command.arg("--").arg(&binary);
    isolate_user_dirs(&mut command, home.path(), RuntimeDir::Isolated)?;
    command.env("KATACHI_HOME", &katachi_home);
    command
        .env("GDK_BACKEND", "x11")
        .env_remove("WAYLAND_DISPLAY");
    let mut app = SpawnedProcess::spawn(command)
        .map_err(|err| Failure(format!("cannot start {}: {err}", binary.display())))?;
    app.wait_for_stdout_line(READY_LINE, STARTUP_TIMEOUT)
        .map_err(Failure)?;

    let display = X11Display::connect()?;
    let session = app
        .id()
        .ok_or_else(|| Failure(app.describe("has no pid")))?;
    let window = wait_until(WINDOW_TIMEOUT, || {
        descendants_of(session).into_iter().find_map(|pid| {
            display
                .visible_windows_of(pid)
                .ok()
                .filter(|w| !w.is_empty())
        })
    });
    let Some(window) = window else {
        return Err(Failure(
            app.describe("opened no window without a tray host"),
        ));
    };
    if window.first().map(|w| w.title.as_str()) != Some("Katachi") {
        return Err(Failure(app.describe(&format!("window is {window:?}"))));
    }
    if !app.stderr().contains("no tray host on this desktop") {
        return Err(Failure(
            app.describe("did not say why it opened its window"),
        ));
    }
    app.terminate(EXIT_TIMEOUT)
        .map(|_| ())
        .map_err(|err| Failure(format!("could not be stopped: {err}")))
}

#[test]
fn quit_menu_item_ends_the_app_with_exit_status_zero() -> Result<(), Failure> {
    let mut app = TrayApp::start(None)?;
    let tray = app.tray_item()?;
    app.quit(&tray)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_connected_agent_from_the_tray_shows_paused_then_quit_stops_it(
) -> Result<(), Failure> {
    require_desktop_session()?;
    let relay = InProcessRelay::start(|_| {})
        .await
        .map_err(fail("cannot start the relay"))?;
    let agent_dir = tempfile::tempdir().map_err(|err| Failure(format!("no temp dir: {err}")))?;
    let home = agent_dir.path().join("katachi");

    // `katachi start` signs in; the user approves its code in the browser; then it is stopped.
    let mut command = Command::new(workspace_binary("katachi"));
    command.env("KATACHI_HOME", &home).args([
        "start",
        "--relay",
        relay.url(),
        "--ca",
        &relay.ca_file().display().to_string(),
        "--no-browser",
        "--device-name",
        "tray-e2e",
    ]);
    let mut agent = SpawnedProcess::spawn(command)
        .map_err(|err| Failure(format!("cannot start katachi: {err}")))?;
    let (open_url, code) = tokio::task::block_in_place(|| {
        let open = agent.wait_for_stdout_value("open:", AGENT_REACTS)?;
        let code = agent.wait_for_stdout_value("code:", AGENT_REACTS)?;
        Ok::<_, String>((open, code))
    })?;
    let browser = Browser::launch().await.map_err(fail("no browser"))?;
    sign_up_verified(
        &browser,
        &relay,
        "tray-e2e@example.com",
        "correct horse battery",
        PAGE,
    )
    .await
    .map_err(fail("sign-up"))?;
    browser.goto(&open_url).await.map_err(fail("device page"))?;
    browser
        .fill("#confirm-code", &code)
        .await
        .map_err(fail("code"))?;
    browser.click("#approve").await.map_err(fail("approve"))?;
    browser
        .wait_for_text("#result", "Device connected", PAGE)
        .await
        .map_err(fail("approval"))?;
    tokio::task::block_in_place(|| {
        agent.wait_for_stdout_line("online", AGENT_REACTS)?;
        agent
            .terminate(EXIT_TIMEOUT)
            .map_err(|err| format!("`katachi start` did not stop: {err}"))
    })?;

    // The tray app hosts that agent: connected, then paused from the menu, then quit.
    tokio::task::block_in_place(|| {
        let mut app = TrayApp::start(Some(&home))?;
        let tray = app.tray_item()?;
        let host = relay.url().trim_start_matches("https://").to_owned();
        app.wait_for_status(&tray, &format!("Connected to {host} as tray-e2e"))?;
        let pause = app.menu_entry(&tray, "Pause remote access for 1 hour")?;
        app.click(&tray, &pause)?;
        app.wait_for_status(&tray, "Paused until ")?;
        let paused = png_pixels(&repo_file("icons/tray-paused.png"))?;
        if app.icon_pixels(&tray)? != paused {
            return Err(app.fail("the tray icon is not the paused icon"));
        }
        app.menu_entry(&tray, "Resume remote access")?;
        app.quit(&tray)
    })
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
    /// Starts `target/debug/katachi-app` (on the agent home `katachi_home`, else a fresh one) and
    /// waits for its tray-ready line.
    fn start(katachi_home: Option<&Path>) -> Result<Self, Failure> {
        require_desktop_session()?;
        tray_dbus::serve_status_notifier_watcher()?;
        let binary = app_binary()?;
        let home = tempfile::tempdir().map_err(|err| Failure(format!("no temp dir: {err}")))?;
        let mut command = Command::new(&binary);
        isolate_user_dirs(&mut command, home.path(), RuntimeDir::Isolated)?;
        if let Some(katachi_home) = katachi_home {
            command.env("KATACHI_HOME", katachi_home);
        }
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

    /// The menu as (label, enabled, separator) lines.
    fn menu_lines(&mut self, tray: &TrayItem) -> Result<Vec<(String, bool, bool)>, Failure> {
        Ok(self
            .menu(tray)?
            .iter()
            .map(|entry| (entry.label.clone(), entry.enabled, entry.separator))
            .collect())
    }

    /// Waits until the status line (the menu's first line) starts with `prefix`.
    fn wait_for_status(&mut self, tray: &TrayItem, prefix: &str) -> Result<String, Failure> {
        let mut last = String::new();
        let found = wait_until(AGENT_REACTS, || {
            let line = tray_dbus::read_menu(&self.bus, tray)
                .ok()?
                .first()
                .map(|entry| entry.label.clone())?;
            last.clone_from(&line);
            line.starts_with(prefix).then_some(line)
        });
        found.ok_or_else(|| {
            self.fail(&format!(
                "the status line did not start with {prefix:?} within {AGENT_REACTS:?}; last: {last:?}"
            ))
        })
    }

    /// The RGBA pixels of the icon the tray exports now (appindicator writes it as a PNG file).
    fn icon_pixels(&mut self, tray: &TrayItem) -> Result<Vec<u8>, Failure> {
        let pid = self.pid()?;
        // re-read: the icon file changes with the state
        let item = tray_dbus::find_tray_item(&self.bus, pid)?
            .ok_or_else(|| self.fail("the tray item is gone"))?;
        let _ = tray;
        png_pixels(Path::new(&item.icon_name)).map_err(|Failure(err)| self.fail(&err))
    }

    /// Clicks Quit and checks the app ends with exit status 0.
    fn quit(mut self, tray: &TrayItem) -> Result<(), Failure> {
        let quit = self.menu_entry(tray, "Quit")?;
        // The app may exit before it answers the click ("recipient disconnected without
        // replying"), so the click's own result only explains a failure.
        let clicked = tray_dbus::click_menu_entry(&self.bus, tray, quit.id);
        match self.process.wait_for_exit(EXIT_TIMEOUT) {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(self.fail(&format!(
                "Quit ended the app with {status} (click: {clicked:?})"
            ))),
            None => Err(self.fail(&format!(
                "still running {EXIT_TIMEOUT:?} after Quit (click: {clicked:?})"
            ))),
        }
    }

    /// Clicks `entry` in the tray menu.
    fn click(&mut self, tray: &TrayItem, entry: &MenuEntry) -> Result<(), Failure> {
        tray_dbus::click_menu_entry(&self.bus, tray, entry.id).map_err(|err| self.fail(&err))
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

/// Turns an error of the shared kit into a failure saying what was being done.
fn fail(what: &'static str) -> impl Fn(anyhow::Error) -> Failure {
    move |err| Failure(format!("{what}: {err:#}"))
}

/// A file of the repository.
fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The RGBA pixels of the PNG at `path`.
fn png_pixels(path: &Path) -> Result<Vec<u8>, Failure> {
    let file = std::fs::File::open(path)
        .map_err(|err| Failure(format!("cannot open {}: {err}", path.display())))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|err| Failure(format!("{} is not a PNG: {err}", path.display())))?;
    let mut pixels = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader
        .next_frame(&mut pixels)
        .map_err(|err| Failure(format!("cannot decode {}: {err}", path.display())))?;
    if info.color_type != png::ColorType::Rgba {
        return Err(Failure(format!(
            "{} is {:?}, not RGBA",
            path.display(),
            info.color_type
        )));
    }
    pixels.truncate(info.buffer_size());
    Ok(pixels)
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    pids_where(|child| {
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .ok()
            .and_then(|stat| {
                // the fields after the command's closing parenthesis: state, then the parent pid
                let rest = stat.rsplit_once(')')?.1;
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
            == Some(pid)
    })
}

/// The processes under `pid`, children first.
fn descendants_of(pid: u32) -> Vec<u32> {
    let mut found = children_of(pid);
    let mut next = 0;
    while next < found.len() {
        let more = children_of(found[next]);
        found.extend(more);
        next += 1;
    }
    found
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

/// An agent home under `dir` that keeps its secret in the opt-in file keystore, for an app on a
/// session bus of its own (no keyring there).
fn file_keystore_home(dir: &Path) -> Result<std::path::PathBuf, Failure> {
    let katachi_home = dir.join("katachi");
    let config = katachi_home.join("config");
    std::fs::create_dir_all(&config)
        .and_then(|()| {
            std::fs::write(
                config.join("config.toml"),
                "[keystore]\nbackend = \"file\"\n",
            )
        })
        .map_err(|err| Failure(format!("cannot write the agent's config: {err}")))?;
    Ok(katachi_home)
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
