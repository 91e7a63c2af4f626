//! The tray: an icon and a menu that render the hosted agent's [`Status`] and drive it.
//!
//! # Contract
//! - The icon shows every state by shape as well as colour ([`TrayIcon`]); the first, disabled
//!   menu line states the status in words; both are redrawn at start and on every change of the
//!   status (a task watches the status and applies each new [`TrayView`] on the main thread).
//! - A Linux panel delivers no click on the icon itself, so everything is in the menu
//!   ([`menu`] lists it); each item calls the hosted agent, starts the window process, or opens the
//!   relay in the browser ([`actions`]).
//! - The tray decides nothing about the agent: [`TrayView::of`] is a pure function of the status.
//! - The tray process never creates a webview: windows are separate processes.
//!
//! # Layout
//! - `icon`: one picture per state ([`TrayIcon`]).
//! - `view`: [`TrayView::of`], the status in words and which items can be used.
//! - `menu`: the menu's ids, labels and [`build_tray_menu`].
//! - `actions`: what each item does ([`MenuAction`]).
//! - `render`: applying a view to the live tray, and the task that follows the status.

pub mod actions;
pub mod icon;
pub mod menu;
mod render;
pub mod view;

use std::io::Write;

use tauri::tray::{TrayIcon as TauriTrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Runtime};

pub use actions::MenuAction;
pub use icon::TrayIcon;
pub use menu::{build_tray_menu, MenuContext};
pub(crate) use render::{follow_denials, follow_status, TrayRenderer};
pub use view::{TrayView, ViewClock};

/// Id of the tray icon, to find it again with `AppHandle::tray_by_id` when the state changes.
pub const TRAY_ID: &str = "katachi";

/// Line printed on stdout once the tray exists, so scripts and tests can wait for start-up.
pub const READY_LINE: &str = "katachi-app: tray ready";

/// Creates the tray icon showing `view`, with its menu and menu handlers.
///
/// # Errors
/// Returns Tauri's error if the menu or the tray icon cannot be created (e.g. no GTK on Linux).
pub fn create_tray<R: Runtime>(
    app: &AppHandle<R>,
    view: &TrayView,
    context: &MenuContext,
) -> tauri::Result<TauriTrayIcon<R>> {
    let menu = build_tray_menu(app, view, context)?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(view.icon.image())
        .tooltip(view.tooltip())
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| {
            if let Some(action) = MenuAction::of_menu_id(event.id().as_ref()) {
                actions::perform(app, action);
            }
        })
        .build(app)
}

/// Prints [`READY_LINE`] on stdout and flushes it, so a parent process reading the pipe sees it now.
pub(crate) fn announce_tray_ready() {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (parent gone) must not stop the app: the line is only a courtesy.
    let _ = writeln!(stdout, "{READY_LINE}").and_then(|()| stdout.flush());
}

#[cfg(test)]
#[path = "menu_tests.rs"]
mod menu_tests;
