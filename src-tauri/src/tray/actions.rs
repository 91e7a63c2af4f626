//! What each tray menu item does. Every action is a call on the hosted [`Agent`] handle, a window
//! process started with a view, or the browser opened at the relay; no agent logic lives here.
//!
//! A menu callback cannot return an error, so a failed action is reported on stderr and the tray
//! goes on; the status line shows the agent's state either way.

use std::time::Duration;

use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_opener::OpenerExt;

use super::menu::{
    MENU_OPEN, MENU_PAUSE, MENU_QUIT, MENU_RESUME, MENU_SIGN_IN, MENU_SIGN_OUT, MENU_STOP_ALL,
    MENU_WEB_UI, MENU_WORKSPACES,
};
use crate::agent_host::AgentHost;
use crate::window_launcher::{self, WindowView};

/// "Pause remote access for 1 hour".
pub(crate) const PAUSE_FOR: Duration = Duration::from_secs(3600);
/// "Stop all remote access now": a pause that lasts until the user resumes (ten years). The
/// tunnel is taken down, which resets its streams, and a reset stream cancels its run: the
/// command's whole process tree is killed (`katachi_core::api::run`).
pub(crate) const STOP_ALL_FOR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What a clicked menu item asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MenuAction {
    /// Open the window's Connect view.
    SignIn,
    /// Forget this machine at the relay and locally.
    SignOut,
    /// Open the relay's web UI in the default browser.
    OpenWebUi,
    /// Open the window's Workspaces view.
    Workspaces,
    /// Pause remote access for [`PAUSE_FOR`].
    Pause,
    /// End a pause or a stop.
    Resume,
    /// Take remote access down until resumed ([`STOP_ALL_FOR`]).
    StopAll,
    /// Open the window.
    Open,
    /// Stop the agent cleanly and exit.
    Quit,
}

impl MenuAction {
    /// The action of the menu item `id`; `None` for the disabled lines.
    pub fn of_menu_id(id: &str) -> Option<Self> {
        Some(match id {
            MENU_SIGN_IN => Self::SignIn,
            MENU_SIGN_OUT => Self::SignOut,
            MENU_WEB_UI => Self::OpenWebUi,
            MENU_WORKSPACES => Self::Workspaces,
            MENU_PAUSE => Self::Pause,
            MENU_RESUME => Self::Resume,
            MENU_STOP_ALL => Self::StopAll,
            MENU_OPEN => Self::Open,
            MENU_QUIT => Self::Quit,
            _ => return None,
        })
    }
}

/// Runs `action`. Agent commands run on Tauri's async runtime; the menu callback returns at once.
pub(crate) fn perform<R: Runtime>(app: &AppHandle<R>, action: MenuAction) {
    let window = |view| {
        if let Err(err) = window_launcher::open_window(view, None) {
            report(action, &err);
        }
    };
    match action {
        MenuAction::SignIn => window(WindowView::Connect),
        MenuAction::Workspaces => window(WindowView::Workspaces),
        MenuAction::Open => window(WindowView::Status),
        MenuAction::OpenWebUi => open_web_ui(app),
        MenuAction::SignOut
        | MenuAction::Pause
        | MenuAction::Resume
        | MenuAction::StopAll
        | MenuAction::Quit => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move { command_agent(&app, action).await });
        }
    }
}

/// Sends `action` to the hosted agent; Quit then ends the app (exit code 0).
async fn command_agent<R: Runtime>(app: &AppHandle<R>, action: MenuAction) {
    let host = app.state::<AgentHost>();
    let outcome = match action {
        MenuAction::Pause => host.pause(PAUSE_FOR).await,
        MenuAction::StopAll => host.pause(STOP_ALL_FOR).await,
        MenuAction::Resume => host.resume().await,
        MenuAction::SignOut => host.sign_out().await,
        MenuAction::Quit => {
            host.stop().await;
            // An explicit exit code: the run loop lets this exit request through.
            app.exit(0);
            Ok(())
        }
        _ => Ok(()),
    };
    if let Err(err) = outcome {
        report(action, &err);
    }
}

/// Opens the relay the agent is registered with in the default browser.
fn open_web_ui<R: Runtime>(app: &AppHandle<R>) {
    let Some(relay) = app.state::<AgentHost>().relay_url() else {
        report(MenuAction::OpenWebUi, &"no relay yet: sign in first");
        return;
    };
    if let Err(err) = app.opener().open_url(relay, None::<&str>) {
        report(MenuAction::OpenWebUi, &err);
    }
}

/// Reports a failed action on stderr.
fn report(action: MenuAction, err: &dyn std::fmt::Display) {
    eprintln!("katachi-app: {action:?} failed: {err}");
}

#[cfg(test)]
mod tests {
    use super::MenuAction;
    use crate::tray::menu::{MENU_SANDBOX, MENU_STATUS};

    #[test]
    fn disabled_lines_have_no_action() {
        assert_eq!(MenuAction::of_menu_id(MENU_STATUS), None);
        assert_eq!(MenuAction::of_menu_id(MENU_SANDBOX), None);
        assert_eq!(MenuAction::of_menu_id("unknown"), None);
    }
}
