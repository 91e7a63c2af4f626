//! The status window: a small window showing `ui/index.html`, created when the user asks for it.
//!
//! There is at most one: asking again brings the existing one forward. Closing it destroys the
//! webview (freeing its memory) but not the app, which lives on in the tray.

use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

/// Label of the status window, unique within the app.
pub(crate) const STATUS_WINDOW: &str = "status";
/// Title of the status window, as window managers and `xdotool search --name` see it.
pub(crate) const STATUS_WINDOW_TITLE: &str = "Katachi";

/// Shows the status window: creates it from `ui/index.html` if absent, else brings it forward.
///
/// # Errors
/// Returns Tauri's error if the window or its webview cannot be created or focused.
pub(crate) fn show_status_window<R: Runtime>(
    app: &AppHandle<R>,
) -> tauri::Result<WebviewWindow<R>> {
    if let Some(window) = app.get_webview_window(STATUS_WINDOW) {
        window.unminimize()?;
        window.show()?;
        window.set_focus()?;
        return Ok(window);
    }
    WebviewWindowBuilder::new(app, STATUS_WINDOW, WebviewUrl::App("index.html".into()))
        .title(STATUS_WINDOW_TITLE)
        .inner_size(480.0, 560.0)
        .min_inner_size(360.0, 320.0)
        .center()
        .focused(true)
        .build()
}
