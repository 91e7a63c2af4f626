//! Starting the window as its own process (`katachi-app --window --view VIEW`): the tray process
//! never creates a webview, so closing the window gives all of its memory back (issue 12 §5).
//!
//! The window process talks to the agent over the control socket and exits when its window
//! closes. This module is the one place that starts it.

use std::process::{Command, Stdio};

/// The argument that starts the window process instead of the tray.
pub const WINDOW_ARG: &str = "--window";
/// The argument naming the view the window opens on.
pub const VIEW_ARG: &str = "--view";
/// The argument carrying a sentence the window shows on top (why it opened by itself).
pub const REASON_ARG: &str = "--reason";

/// A view of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowView {
    /// The agent's status.
    Status,
    /// Sign in at a relay.
    Connect,
    /// The allowed workspace folders.
    Workspaces,
}

impl WindowView {
    /// The view's name on the command line.
    pub fn arg(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Connect => "connect",
            Self::Workspaces => "workspaces",
        }
    }
}

/// The arguments that start the window on `view`, with `reason` shown on top when given.
pub fn window_args(view: WindowView, reason: Option<&str>) -> Vec<String> {
    let mut args = vec![
        WINDOW_ARG.to_owned(),
        VIEW_ARG.to_owned(),
        view.arg().to_owned(),
    ];
    if let Some(reason) = reason {
        args.extend([REASON_ARG.to_owned(), reason.to_owned()]);
    }
    args
}

/// Starts the window process on `view` (this same executable) and reaps it in the background.
///
/// # Errors
/// The executable cannot be found or started.
pub fn open_window(view: WindowView, reason: Option<&str>) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.args(window_args(view, reason)).stdin(Stdio::null());
    if crate::app::gl_disabled_here() {
        command.env_remove("GDK_GL"); // the tray's setting, not the user's: WebKit draws with GL
    }
    let mut child = command.spawn()?;
    // Reaped when it exits, so no zombie stays behind while the tray runs on.
    std::thread::Builder::new()
        .name("katachi-window-reaper".to_owned())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{window_args, WindowView};

    #[test]
    fn window_process_arguments_name_the_view_and_the_reason() {
        assert_eq!(
            window_args(WindowView::Connect, None),
            ["--window", "--view", "connect"]
        );
        assert_eq!(
            window_args(WindowView::Status, Some("no tray host")),
            ["--window", "--view", "status", "--reason", "no tray host"]
        );
    }
}
