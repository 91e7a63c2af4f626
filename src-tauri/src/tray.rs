//! The tray icon: its look per agent state, its menu, and what each menu item does.
//!
//! The tray is the app's only always-present surface. Its menu is, top to bottom: a disabled
//! status line, a disabled sandbox line (katachi-core's one-line summary: which layers confine
//! commands, or plainly that they run unsandboxed), "Open Katachi" (the status window) and "Quit".
//! Menu ids are `const`s so handlers and tests cannot drift apart. The tray only renders a
//! [`TrayState`] and the sandbox summary; it never decides either.

use std::io::Write;

use tauri::image::Image;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Runtime};

use crate::{sandbox, window};

/// Id of the tray icon, to find it again with `AppHandle::tray_by_id` when the state changes.
pub const TRAY_ID: &str = "katachi";
/// Id of the disabled first menu line that states the agent's status.
pub const MENU_STATUS: &str = "status";
/// Id of the disabled second menu line that states the sandbox (see
/// `katachi_core::sandbox::SandboxStatus::summary`).
pub const MENU_SANDBOX: &str = "sandbox";
/// Id of the menu item that opens (or brings forward) the status window.
pub const MENU_OPEN: &str = "open";
/// Id of the menu item that ends the app.
pub const MENU_QUIT: &str = "quit";

/// Tooltip of the tray icon.
pub const TOOLTIP: &str = "Katachi";
/// Label of the "open the status window" menu item.
pub const LABEL_OPEN: &str = "Open Katachi";
/// Label of the "end the app" menu item.
pub const LABEL_QUIT: &str = "Quit";

/// Line printed on stdout once the tray exists, so scripts and tests can wait for start-up.
pub const READY_LINE: &str = "katachi-app: tray ready";

/// What the tray shows about the agent's link to the relay: each state has its own icon and status
/// line, so a glance at the tray tells whether the agent is reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrayState {
    /// Registered and connected to the relay: the browser can reach this machine.
    Connected,
    /// Trying to reach the relay (start-up or reconnecting after a drop).
    Connecting,
    /// Not connected and not trying: not signed in yet, or stopped.
    Offline,
    /// The agent hit an error it cannot recover from by itself; the window says what to do.
    Error,
}

impl TrayState {
    /// Every state, for callers (and tests) that need to go through all of them.
    pub const ALL: [Self; 4] = [
        Self::Connected,
        Self::Connecting,
        Self::Offline,
        Self::Error,
    ];

    /// The tray icon for this state (RGBA pixels embedded at compile time from `icons/tray-*.png`).
    pub fn icon(self) -> Image<'static> {
        match self {
            Self::Connected => tauri::include_image!("../icons/tray-connected.png"),
            Self::Connecting => tauri::include_image!("../icons/tray-connecting.png"),
            Self::Offline => tauri::include_image!("../icons/tray-offline.png"),
            Self::Error => tauri::include_image!("../icons/tray-error.png"),
        }
    }

    /// The disabled status line at the top of the tray menu.
    pub fn status_line(self) -> &'static str {
        match self {
            Self::Connected => "Katachi — connected",
            Self::Connecting => "Katachi — connecting…",
            Self::Offline => "Katachi — not connected",
            Self::Error => "Katachi — error, open Katachi for details",
        }
    }
}

/// Creates the tray icon in the [`TrayState::Offline`] state, with its menu (the sandbox line
/// probed on this machine) and menu handlers.
///
/// # Errors
/// Returns Tauri's error if the menu or the tray icon cannot be created (e.g. no GTK on Linux).
pub fn create_tray<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<TrayIcon<R>> {
    let state = TrayState::Offline;
    let menu = build_tray_menu(app, state, &sandbox::this_machine().summary())?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(state.icon())
        .tooltip(TOOLTIP)
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(handle_menu_event)
        .build(app)
}

/// Builds the tray menu for `state`: status line and `sandbox_line` (both disabled), separator,
/// "Open Katachi", "Quit".
///
/// # Errors
/// Returns Tauri's error if a menu item cannot be created on the main thread.
pub fn build_tray_menu<R: Runtime>(
    app: &AppHandle<R>,
    state: TrayState,
    sandbox_line: &str,
) -> tauri::Result<Menu<R>> {
    let status = MenuItem::with_id(app, MENU_STATUS, state.status_line(), false, None::<&str>)?;
    let sandbox = MenuItem::with_id(app, MENU_SANDBOX, sandbox_line, false, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let open = MenuItem::with_id(app, MENU_OPEN, LABEL_OPEN, true, None::<&str>)?;
    let quit = MenuItem::with_id(app, MENU_QUIT, LABEL_QUIT, true, None::<&str>)?;
    Menu::with_items(app, &[&status, &sandbox, &separator, &open, &quit])
}

/// Prints [`READY_LINE`] on stdout and flushes it, so a parent process reading the pipe sees it now.
pub(crate) fn announce_tray_ready() {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (parent gone) must not stop the app: the line is only a courtesy.
    let _ = writeln!(stdout, "{READY_LINE}").and_then(|()| stdout.flush());
}

/// Runs the action of a clicked tray menu item. Errors cannot be returned from a menu callback, so
/// they are reported on stderr and the app keeps running.
fn handle_menu_event<R: Runtime>(app: &AppHandle<R>, event: MenuEvent) {
    match event.id().as_ref() {
        MENU_OPEN => {
            if let Err(err) = window::show_status_window(app) {
                eprintln!("katachi-app: cannot open the status window: {err}");
            }
        }
        // An explicit exit code: the run loop lets this exit request through.
        MENU_QUIT => app.exit(0),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use tauri::menu::MenuItemKind;
    use tauri::Manager;

    use super::*;

    #[test]
    fn each_tray_state_has_its_own_icon_and_status_line() {
        let icons: HashSet<Vec<u8>> = TrayState::ALL
            .iter()
            .map(|state| state.icon().rgba().to_vec())
            .collect();
        let lines: HashSet<&str> = TrayState::ALL.iter().map(|s| s.status_line()).collect();
        assert_eq!(icons.len(), TrayState::ALL.len());
        assert_eq!(lines.len(), TrayState::ALL.len());
    }

    #[test]
    fn tray_icons_are_square_and_small() {
        for state in TrayState::ALL {
            let icon = state.icon();
            assert_eq!(icon.width(), icon.height(), "{state:?}");
            assert!(
                icon.width() <= 64,
                "{state:?} icon is {} px wide",
                icon.width()
            );
        }
    }

    /// The labels of `menu`'s items: (id, text, enabled); a separator is `("-", "", false)`.
    fn labels<R: Runtime>(menu: &Menu<R>) -> tauri::Result<Vec<(String, String, bool)>> {
        let mut labelled = Vec::new();
        for item in &menu.items()? {
            match item {
                MenuItemKind::MenuItem(item) => {
                    labelled.push((item.id().0.clone(), item.text()?, item.is_enabled()?));
                }
                MenuItemKind::Predefined(_) => labelled.push(("-".into(), String::new(), false)),
                other => panic!("unexpected menu item {:?}", other.id()),
            }
        }
        Ok(labelled)
    }

    #[test]
    fn tray_menu_is_disabled_status_and_sandbox_lines_then_open_and_quit() -> tauri::Result<()> {
        let app = tauri::test::mock_app();
        let sandbox_line = "Sandbox: on — landlock abi 7, seccomp";
        let menu = build_tray_menu(app.app_handle(), TrayState::Offline, sandbox_line)?;
        assert_eq!(
            labels(&menu)?,
            [
                (MENU_STATUS.into(), "Katachi — not connected".into(), false),
                (MENU_SANDBOX.into(), sandbox_line.into(), false),
                ("-".into(), String::new(), false),
                (MENU_OPEN.into(), LABEL_OPEN.into(), true),
                (MENU_QUIT.into(), LABEL_QUIT.into(), true),
            ]
        );
        Ok(())
    }

    #[test]
    fn tray_menu_sandbox_line_is_katachi_cores_summary_of_this_machine() -> tauri::Result<()> {
        let app = tauri::test::mock_app();
        let summary = sandbox::this_machine().summary();
        let menu = build_tray_menu(app.app_handle(), TrayState::Offline, &summary)?;
        let line = labels(&menu)?
            .into_iter()
            .find(|(id, _, _)| id == MENU_SANDBOX)
            .map(|(_, text, enabled)| (text, enabled));
        assert_eq!(line, Some((summary, false)));
        Ok(())
    }

    #[test]
    fn tray_menu_on_an_unsandboxed_system_says_so_in_the_sandbox_line() -> tauri::Result<()> {
        let app = tauri::test::mock_app();
        let windows = katachi_core::sandbox::SandboxStatus {
            backend: "windows",
            enforced: false,
            message: Some(
                "commands run unsandboxed on Windows: katachi cannot confine them".to_owned(),
            ),
            layers: Vec::new(),
        };
        let menu = build_tray_menu(app.app_handle(), TrayState::Offline, &windows.summary())?;
        let text = labels(&menu)?
            .into_iter()
            .find(|(id, _, _)| id == MENU_SANDBOX)
            .map(|(_, text, _)| text)
            .unwrap_or_default();
        assert!(text.starts_with("Sandbox: OFF — "), "{text}");
        assert!(text.contains("unsandboxed"), "{text}");
        Ok(())
    }
}
