//! Helpers shared by the end-to-end tests: locating the built binaries and bounded waits.
//!
//! # Layout
//! - [`app_webdriver`]: the tray app's status window over WebDriver (`WebKitWebDriver`, Linux).
//! - [`workspace_binary`]: path of a binary built by this workspace (target/debug/NAME).
//! - [`process`]: a spawned binary with captured output, bounded waits, killed on drop.
//! - [`tray_dbus`]: a process's tray icon and menu as a panel sees them over D-Bus (Linux).
//! - [`system_tray`]: a private X display with a real XEmbed system tray (trayer): click the icon, picture the menu.
//! - [`x11_windows`]: a process's top-level X11 windows, found and closed as a window manager would.
//! - [`agent_tunnel`]: an agent's tunnel dialled from the test process, serving the test's router.
//! - [`approval`]: signing up and approving a device in the browser (the code typed, as users must).
//! - [`relay`]: a relay served inside the test process, and the agent's HTTP calls (device flow, signed calls).
//! - [`oauth_provider`]: a local OAuth 2.0 provider speaking GitHub's and Google's protocol (PKCE checked).
//! - [`smtp`]: a real SMTP server (aiosmtpd) whose mailbox the test reads.
//! - [`chromium`]: Debian's headless Chromium over WebDriver (chromedriver), every wait bounded.
//! - [`screenshot_path!`]: where a test's screenshot goes (`docs/screenshots` when updating them).

pub mod agent_tunnel;
#[cfg(target_os = "linux")]
pub mod app_webdriver;
pub mod approval;
pub mod chromium;
pub mod oauth_provider;
pub mod process;
pub mod relay;
pub mod smtp;
#[cfg(target_os = "linux")]
pub mod system_tray;
#[cfg(target_os = "linux")]
pub mod tray_dbus;
#[cfg(target_os = "linux")]
pub mod x11_windows;

use std::path::PathBuf;

/// Path of a binary built in this workspace's target dir (debug profile), for tests that spawn it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("..").join("target"));
    target.join("debug").join(name)
}

/// Where a test saves the screenshot `name`: `docs/screenshots` when `KATACHI_UPDATE_SCREENSHOTS=1`,
/// else `screenshots/` under the test target's own temporary folder. A macro because that folder
/// (`CARGO_TARGET_TMPDIR`) is known only when compiling a test target, not this library.
#[macro_export]
macro_rules! screenshot_path {
    ($name:expr) => {
        $crate::screenshot_in(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), $name)
    };
}

/// [`screenshot_path!`] with the test target's temporary folder given.
pub fn screenshot_in(target_tmpdir: &std::path::Path, name: &str) -> PathBuf {
    let update = std::env::var_os("KATACHI_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1");
    let dir = if update {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
    } else {
        target_tmpdir.join("screenshots")
    };
    dir.join(name)
}
