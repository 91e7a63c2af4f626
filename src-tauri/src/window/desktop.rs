//! The desktop services the window uses from Rust (never from the page): the browser, the native
//! folder picker and the login item. Each works only when its plugin is registered (the real
//! window); without it (unit tests on the mock runtime) the call reports that it is unavailable.

use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_autostart::AutoLaunchManager;
use tauri_plugin_dialog::{Dialog, DialogExt};
use tauri_plugin_opener::{Opener, OpenerExt};
use tokio::sync::oneshot;

use super::ipc_error::{IpcCode, IpcError};

/// Opens `url` in the user's browser; `false` when it could not be opened (the page shows the
/// link instead).
pub fn open_browser<R: Runtime>(app: &AppHandle<R>, url: &str) -> bool {
    if app.try_state::<Opener<R>>().is_none() {
        return false;
    }
    match app.opener().open_url(url, None::<&str>) {
        Ok(()) => true,
        Err(err) => {
            eprintln!("katachi-app: cannot open the browser: {err}");
            false
        }
    }
}

/// Shows the native folder picker; the chosen folder, or `None` when the user cancelled.
///
/// # Errors
/// [`IpcCode::Window`] when there is no picker or the choice is not a local path.
pub async fn pick_folder<R: Runtime>(app: &AppHandle<R>) -> Result<Option<String>, IpcError> {
    if app.try_state::<Dialog<R>>().is_none() {
        return Err(unavailable("the folder picker"));
    }
    let (tx, rx) = oneshot::channel();
    app.dialog()
        .file()
        .set_title("Allow a folder")
        .pick_folder(move |choice| {
            // the window may be gone by now: nobody to tell
            let _ = tx.send(choice);
        });
    let choice = rx.await.map_err(|_| {
        IpcError::new(
            IpcCode::Window,
            "the folder picker closed without answering",
        )
    })?;
    choice
        .map(|path| {
            path.into_path()
                .map(|p| p.to_string_lossy().into_owned())
                .map_err(|err| IpcError::new(IpcCode::Window, format!("not a local folder: {err}")))
        })
        .transpose()
}

/// Whether the app starts at login.
///
/// # Errors
/// [`IpcCode::Window`] when the login item cannot be read.
pub fn autostart_enabled<R: Runtime>(app: &AppHandle<R>) -> Result<bool, IpcError> {
    let manager = app
        .try_state::<AutoLaunchManager>()
        .ok_or_else(|| unavailable("start at login"))?;
    manager.is_enabled().map_err(|err| {
        IpcError::new(
            IpcCode::Window,
            format!("cannot read the login item: {err}"),
        )
    })
}

/// Turns start at login on or off.
///
/// # Errors
/// [`IpcCode::Window`] when the login item cannot be written.
pub fn set_autostart<R: Runtime>(app: &AppHandle<R>, enabled: bool) -> Result<(), IpcError> {
    let manager = app
        .try_state::<AutoLaunchManager>()
        .ok_or_else(|| unavailable("start at login"))?;
    let result = if enabled {
        manager.enable()
    } else {
        manager.disable()
    };
    result.map_err(|err| {
        IpcError::new(
            IpcCode::Window,
            format!("cannot change the login item: {err}"),
        )
    })
}

fn unavailable(what: &str) -> IpcError {
    IpcError::new(
        IpcCode::Window,
        format!("{what} is not available in this window"),
    )
}
