//! Building and running the Tauri app: the tray is created once the event loop is up, and the loop
//! outlives every window so the agent keeps running in the tray.

use std::process::ExitCode;

use tauri::{App, AppHandle, Builder, RunEvent, Runtime};

use crate::{sandbox, tray};

/// Starts the tray app on the real (wry) runtime and blocks until the user quits from the tray.
///
/// Returns the app's exit code; if the app cannot start (no graphical session, ...) it prints why on
/// stderr and returns failure.
pub fn run() -> ExitCode {
    if !has_graphical_session() {
        // GTK would otherwise panic with "Failed to initialize gtk backend!".
        eprintln!(
            "katachi-app: no graphical session (DISPLAY and WAYLAND_DISPLAY are unset); \
             on a headless machine use the `katachi` command instead"
        );
        return ExitCode::FAILURE;
    }
    match run_app(tauri::Builder::default()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("katachi-app: cannot start: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the app on `builder` (see [`build_app`]) and runs its event loop until the app exits.
///
/// Generic over the runtime so tests can pass `tauri::test::mock_builder()`.
///
/// # Errors
/// Whatever [`build_app`] returns. Once the loop runs, a failure to create the tray panics inside
/// Tauri's setup hook, which ends the process with the error on stderr.
pub fn run_app<R: Runtime>(builder: Builder<R>) -> tauri::Result<i32> {
    let app = build_app(builder)?;
    Ok(app.run_return(keep_running_without_windows))
}

/// Builds the app from the workspace's `tauri.conf.json` (no window at start-up), registers the
/// status window's commands (`sandbox_status`) and the set-up hook that creates the tray when the
/// event loop starts.
///
/// # Errors
/// Returns Tauri's error if the app cannot be built, e.g. the runtime cannot open the display.
pub fn build_app<R: Runtime>(builder: Builder<R>) -> tauri::Result<App<R>> {
    builder
        .invoke_handler(tauri::generate_handler![sandbox::sandbox_status])
        .setup(|app| {
            tray::create_tray(app.handle())?;
            tray::announce_tray_ready();
            Ok(())
        })
        .build(tauri::generate_context!("../tauri.conf.json"))
}

/// Whether a display server is there for the tray and window. Only Linux and the BSDs need a
/// variable to find theirs; macOS and Windows always have one for a logged-in user.
fn has_graphical_session() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Event-loop callback: closing the last window must not end the agent, so an exit request that
/// did not come from an explicit `exit(code)` (the tray's "Quit") is refused.
fn keep_running_without_windows<R: Runtime>(_app: &AppHandle<R>, event: RunEvent) {
    if let RunEvent::ExitRequested {
        code: None, api, ..
    } = event
    {
        api.prevent_exit();
    }
}

#[cfg(test)]
mod tests {
    use tauri::Manager;

    use super::build_app;

    #[test]
    fn app_builds_from_the_workspace_config_with_no_window_at_start_up() -> tauri::Result<()> {
        let app = build_app(tauri::test::mock_builder())?;
        assert!(app.webview_windows().is_empty());
        assert_eq!(app.config().product_name.as_deref(), Some("Katachi"));
        assert_eq!(app.config().identifier, "dev.katachi.app");
        Ok(())
    }

    #[test]
    fn status_window_can_ask_for_the_sandbox_status_over_ipc(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let app = build_app(tauri::test::mock_builder())?;
        let window = tauri::WebviewWindowBuilder::new(&app, "status", tauri::WebviewUrl::default())
            .build()?;
        let request = tauri::webview::InvokeRequest {
            cmd: "sandbox_status".into(),
            callback: tauri::ipc::CallbackFn(0),
            error: tauri::ipc::CallbackFn(1),
            url: "tauri://localhost".parse()?,
            body: tauri::ipc::InvokeBody::default(),
            headers: Default::default(),
            invoke_key: tauri::test::INVOKE_KEY.to_owned(),
        };
        let response = tauri::test::get_ipc_response(&window, request)
            .map_err(|err| format!("sandbox_status failed: {err}"))?
            .deserialize::<serde_json::Value>()?;

        let status = crate::sandbox::this_machine();
        assert_eq!(response["enforced"], status.enforced);
        assert_eq!(response["layers"], serde_json::to_value(&status.layers)?);
        assert_eq!(response.get("notice").is_some(), !status.enforced);
        Ok(())
    }
}
