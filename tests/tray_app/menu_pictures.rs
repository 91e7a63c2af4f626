//! The tray icon and its menu as a user sees them, in each state of the agent: the real app on a
//! private X display with a real XEmbed system tray (`trayer`), its icon clicked, its GTK menu
//! pictured (`docs/screenshots/tray-menu-*.png` when `KATACHI_UPDATE_SCREENSHOTS=1`).
//!
//! The app runs on a session bus of its own where no panel owns the StatusNotifierWatcher name,
//! so libappindicator shows the icon through XEmbed; with that tray there, the app must not open
//! its window ("no tray host"). The agent is driven over its control socket, as the CLI does, and
//! approved in headless Chromium at a real local relay.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use katachi_core::agent::Status;
use katachi_core::control::Client;
use katachi_core::KatachiDirs;
use katachi_e2e::approval::sign_up_verified;
use katachi_e2e::chromium::Browser;
use katachi_e2e::process::{isolate_user_dirs, wait_until, RuntimeDir, SpawnedProcess};
use katachi_e2e::relay::InProcessRelay;
use katachi_e2e::screenshot_path;
use katachi_e2e::system_tray::TrayDesktop;
use tempfile::TempDir;

use super::{
    app_binary, descendants_of, file_keystore_home, Failure, AGENT_REACTS, EXIT_TIMEOUT, PAGE,
    READY_LINE, STARTUP_TIMEOUT,
};

/// Budget for the icon to sit in the tray, and for a menu to pop up or close.
const TRAY: Duration = Duration::from_secs(15);
/// Time for the tray to redraw after the agent's status changed (icon file and menu rebuilt).
const REDRAW: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_xembed_system_tray_the_icon_opens_the_menu_in_every_state() -> Result<(), Failure> {
    let relay = InProcessRelay::start(|_| {})
        .await
        .map_err(|e| Failure(format!("cannot start the relay: {e:#}")))?;
    let ca_pem = std::fs::read_to_string(relay.ca_file())
        .map_err(|e| Failure(format!("cannot read the relay's CA: {e}")))?;
    let browser = Browser::launch()
        .await
        .map_err(|e| Failure(format!("no browser: {e:#}")))?;
    sign_up_verified(
        &browser,
        &relay,
        "tray-menu@example.com",
        "correct horse battery",
        PAGE,
    )
    .await
    .map_err(|e| Failure(format!("sign-up: {e:#}")))?;

    let mut desktop = TrayDesktop::start()?;
    let user = tempfile::tempdir().map_err(|e| Failure(format!("no temp dir: {e}")))?;
    let katachi_home = file_keystore_home(user.path())?;
    let dirs = KatachiDirs::under(&katachi_home);

    // Signed out: a fresh home.
    let mut app = XembedApp::start(&desktop, &user, &katachi_home, "run-1")?;
    let mut control = app.control(&dirs).await?;
    wait_for(&mut control, "signed_out", |_| true).await?;
    picture(&mut desktop, "tray-menu-signed-out.png")?;

    // Waiting for approval: a sign-in asked over the control socket, as the window does.
    let started = control
        .sign_in(relay.url(), Some(ca_pem), Some("tray-pictures".to_owned()))
        .await
        .map_err(|e| Failure(format!("sign-in over the control socket: {e}")))?;
    wait_for(&mut control, "waiting_for_approval", |_| true).await?;
    picture(&mut desktop, "tray-menu-waiting-for-approval.png")?;

    // Connected: the user approves the code in the browser.
    browser
        .goto(&started.url_to_open)
        .await
        .map_err(|e| Failure(format!("device page: {e:#}")))?;
    browser
        .fill("#confirm-code", &started.user_code)
        .await
        .map_err(|e| Failure(format!("code: {e:#}")))?;
    browser
        .click("#approve")
        .await
        .map_err(|e| Failure(format!("approve: {e:#}")))?;
    wait_for(&mut control, "connected", |_| true).await?;
    picture(&mut desktop, "tray-menu-connected.png")?;

    // Paused, then resumed.
    control
        .pause(Duration::from_secs(3600))
        .await
        .map_err(|e| Failure(format!("pause: {e}")))?;
    wait_for(&mut control, "paused", |_| true).await?;
    picture(&mut desktop, "tray-menu-paused.png")?;

    // Reconnecting: resumed while the relay is gone (a stopped relay keeps the tunnels it already
    // holds, so the tunnel is taken down by the pause first).
    relay
        .stop()
        .await
        .map_err(|e| Failure(format!("the relay did not stop: {e:#}")))?;
    control
        .resume()
        .await
        .map_err(|e| Failure(format!("resume: {e}")))?;
    wait_for(&mut control, "reconnecting", |_| true).await?;
    picture(&mut desktop, "tray-menu-reconnecting.png")?;
    drop(control);
    app.stop()?;

    // Error: the saved credentials cannot be read any more.
    corrupt_credentials(&dirs.credentials_dir())?;
    let mut app = XembedApp::start(&desktop, &user, &katachi_home, "run-2")?;
    let mut control = app.control(&dirs).await?;
    wait_for(
        &mut control,
        "error",
        |status| matches!(status, Status::Error { message, .. } if message.contains("credentials")),
    )
    .await?;
    picture(&mut desktop, "tray-menu-error.png")?;
    drop(control);
    app.stop()
}

/// `katachi-app` on the private desktop, with a session bus of its own (no StatusNotifierWatcher
/// there: the icon goes to the XEmbed tray).
struct XembedApp {
    /// `dbus-run-session -- katachi-app`.
    process: SpawnedProcess,
}

impl XembedApp {
    /// Starts the app on `desktop` for `katachi_home`, with HOME and XDG dirs under
    /// `user/<run>`, and waits for its ready line; fails if it opened its window anyway.
    fn start(
        desktop: &TrayDesktop,
        user: &TempDir,
        katachi_home: &Path,
        run: &str,
    ) -> Result<Self, Failure> {
        let binary = app_binary()?;
        let user_dirs = user.path().join(run);
        std::fs::create_dir(&user_dirs)
            .map_err(|e| Failure(format!("cannot create {}: {e}", user_dirs.display())))?;
        let mut command = Command::new("dbus-run-session");
        command.arg("--").arg(&binary);
        isolate_user_dirs(&mut command, &user_dirs, RuntimeDir::Isolated)?;
        command
            .env("KATACHI_HOME", katachi_home)
            .env("DISPLAY", desktop.display())
            .env("GDK_BACKEND", "x11")
            .env_remove("WAYLAND_DISPLAY");
        let mut process = SpawnedProcess::spawn(command)
            .map_err(|e| Failure(format!("cannot start {}: {e}", binary.display())))?;
        process
            .wait_for_stdout_line(READY_LINE, STARTUP_TIMEOUT)
            .map_err(Failure)?;
        if process.stderr().contains("no tray host") {
            return Err(Failure(process.describe(
                "opened its window although an X11 system tray shows its icon",
            )));
        }
        Ok(Self { process })
    }

    /// The app's agent over its control socket (the socket comes up with the agent).
    async fn control(&mut self, dirs: &KatachiDirs) -> Result<Client, Failure> {
        let deadline = tokio::time::Instant::now() + AGENT_REACTS;
        loop {
            match Client::connect(dirs).await {
                Ok(Some(client)) => return Ok(client),
                Ok(None) | Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => {
                    let what =
                        format!("served no control socket within {AGENT_REACTS:?}: {other:?}");
                    return Err(Failure(self.process.describe(&what)));
                }
            }
        }
    }

    /// Stops the app: SIGTERM to the app (`dbus-run-session` does not pass it on), then the
    /// session ends with it; every wait bounded.
    fn stop(&mut self) -> Result<(), Failure> {
        let session = self
            .process
            .id()
            .ok_or_else(|| Failure(self.process.describe("had already exited")))?;
        for pid in descendants_of(session) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if wait_until(EXIT_TIMEOUT, || {
            descendants_of(session).is_empty().then_some(())
        })
        .is_none()
        {
            return Err(Failure(self.process.describe(&format!(
                "still running {EXIT_TIMEOUT:?} after SIGTERM"
            ))));
        }
        self.process
            .terminate(EXIT_TIMEOUT)
            .map(|_| ())
            .map_err(|e| Failure(self.process.describe(&format!("could not be stopped: {e}"))))
    }
}

/// Waits until the agent's status is `state` and `also` holds for it.
async fn wait_for(
    control: &mut Client,
    state: &str,
    also: impl Fn(&Status) -> bool,
) -> Result<Status, Failure> {
    let deadline = tokio::time::Instant::now() + AGENT_REACTS;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        let report = control
            .status()
            .await
            .map_err(|e| Failure(format!("status over the control socket: {e}")))?;
        if report.status.state_word() == state && also(&report.status) {
            return Ok(report.status);
        }
        last = Some(report.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Failure(format!(
        "the agent did not reach {state} within {AGENT_REACTS:?}; last status: {last:?}"
    )))
}

/// Clicks the tray icon, saves the icon and its menu as `name`, and closes the menu again.
fn picture(desktop: &mut TrayDesktop, name: &str) -> Result<(), Failure> {
    std::thread::sleep(REDRAW);
    let icon = desktop.wait_for_icon(TRAY)?;
    desktop.click(icon)?;
    let menu = desktop.wait_for_menu(TRAY)?;
    // The menu maps before GTK has drawn all of it.
    std::thread::sleep(Duration::from_millis(300));
    let path: PathBuf = screenshot_path!(name);
    desktop.save_picture(icon, menu, &path)?;
    desktop.press_escape()?;
    desktop.wait_for_no_menu(TRAY)?;
    Ok(())
}

/// Overwrites every file in the credentials folder with bytes that open as nothing.
fn corrupt_credentials(dir: &Path) -> Result<(), Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure(format!("cannot list {}: {e}", dir.display())))?;
    let mut corrupted = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            std::fs::write(&path, b"not sealed credentials")
                .map_err(|e| Failure(format!("cannot overwrite {}: {e}", path.display())))?;
            corrupted += 1;
        }
    }
    if corrupted == 0 {
        return Err(Failure(format!("no credentials file in {}", dir.display())));
    }
    Ok(())
}
