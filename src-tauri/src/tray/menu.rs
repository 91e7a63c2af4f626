//! The tray menu: its ids, its labels and how a [`TrayView`] becomes a menu.
//!
//! A Linux panel delivers no click on the icon itself to the app, so everything the tray offers is
//! in this menu. Top to bottom: the status line (disabled), Sign in…/Sign out, Open web UI,
//! Workspaces…, the sandbox line (disabled), Pause remote access for 1 hour/Resume remote access,
//! Stop all remote access now, Open Katachi, Quit. Ids are `const`s so the handlers
//! ([`super::actions`]) and the tests cannot drift apart.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::{AppHandle, Runtime};

use super::view::{menu_line, AccountItem, RemoteItem, TrayView};

/// Id of the disabled first line that states the agent's status.
pub const MENU_STATUS: &str = "status";
/// Id of "Sign in…" (the window's Connect view).
pub const MENU_SIGN_IN: &str = "sign_in";
/// Id of "Sign out".
pub const MENU_SIGN_OUT: &str = "sign_out";
/// Id of "Open web UI" (the relay in the default browser).
pub const MENU_WEB_UI: &str = "web_ui";
/// Id of "Workspaces…" (the window's Workspaces view).
pub const MENU_WORKSPACES: &str = "workspaces";
/// Id of the disabled line that states the sandbox (katachi-core's one-line summary).
pub const MENU_SANDBOX: &str = "sandbox";
/// Id of "Pause remote access for 1 hour".
pub const MENU_PAUSE: &str = "pause";
/// Id of "Resume remote access".
pub const MENU_RESUME: &str = "resume";
/// Id of "Stop all remote access now".
pub const MENU_STOP_ALL: &str = "stop_all";
/// Id of "Open Katachi" (the window).
pub const MENU_OPEN: &str = "open";
/// Id of "Quit".
pub const MENU_QUIT: &str = "quit";

/// Label of [`MENU_SIGN_IN`].
pub const LABEL_SIGN_IN: &str = "Sign in…";
/// Label of [`MENU_SIGN_OUT`].
pub const LABEL_SIGN_OUT: &str = "Sign out";
/// Label of [`MENU_WEB_UI`].
pub const LABEL_WEB_UI: &str = "Open web UI";
/// Label of [`MENU_WORKSPACES`].
pub const LABEL_WORKSPACES: &str = "Workspaces…";
/// Label of [`MENU_PAUSE`].
pub const LABEL_PAUSE: &str = "Pause remote access for 1 hour";
/// Label of [`MENU_RESUME`].
pub const LABEL_RESUME: &str = "Resume remote access";
/// Label of [`MENU_STOP_ALL`].
pub const LABEL_STOP_ALL: &str = "Stop all remote access now";
/// Label of [`MENU_OPEN`].
pub const LABEL_OPEN: &str = "Open Katachi";
/// Label of [`MENU_QUIT`].
pub const LABEL_QUIT: &str = "Quit";

/// What the menu shows besides the view of the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuContext {
    /// The sandbox line (`katachi_core::sandbox::SandboxStatus::summary`).
    pub sandbox_line: String,
    /// Whether the relay's address is known, so "Open web UI" has somewhere to go.
    pub web_ui_known: bool,
}

/// Builds the menu for `view` in `context`.
///
/// # Errors
/// Returns Tauri's error if a menu item cannot be created.
pub fn build_tray_menu<R: Runtime>(
    app: &AppHandle<R>,
    view: &TrayView,
    context: &MenuContext,
) -> tauri::Result<Menu<R>> {
    let item = |id: &str, label: &str, enabled: bool| {
        MenuItem::with_id(app, id, label, enabled, None::<&str>)
    };
    let status = item(MENU_STATUS, &menu_line(&view.status_line), false)?;
    let account = match view.account {
        AccountItem::SignIn => item(MENU_SIGN_IN, LABEL_SIGN_IN, true)?,
        AccountItem::SignOut => item(MENU_SIGN_OUT, LABEL_SIGN_OUT, true)?,
    };
    let web_ui = item(MENU_WEB_UI, LABEL_WEB_UI, context.web_ui_known)?;
    let workspaces = item(MENU_WORKSPACES, LABEL_WORKSPACES, true)?;
    let sandbox = item(MENU_SANDBOX, &context.sandbox_line, false)?;
    let remote = match view.remote {
        RemoteItem::Pause { enabled } => item(MENU_PAUSE, LABEL_PAUSE, enabled)?,
        RemoteItem::Resume => item(MENU_RESUME, LABEL_RESUME, true)?,
    };
    let stop_all = item(MENU_STOP_ALL, LABEL_STOP_ALL, view.stop_all_enabled)?;
    let open = item(MENU_OPEN, LABEL_OPEN, true)?;
    let quit = item(MENU_QUIT, LABEL_QUIT, true)?;
    let (sep1, sep2, sep3) = (
        PredefinedMenuItem::separator(app)?,
        PredefinedMenuItem::separator(app)?,
        PredefinedMenuItem::separator(app)?,
    );
    Menu::with_items(
        app,
        &[
            &status,
            &sep1,
            &account,
            &web_ui,
            &workspaces,
            &sep2,
            &sandbox,
            &remote,
            &stop_all,
            &sep3,
            &open,
            &quit,
        ],
    )
}
