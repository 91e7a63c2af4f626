//! Building and running the Tauri app.
//!
//! Two kinds of process share this executable: the tray process (the default), which hosts the
//! agent and shows the tray and never creates a webview; and the window process
//! (`katachi-app --window --view VIEW`), short-lived, which shows the window and exits when it
//! closes. The tray's event loop outlives every window so the agent keeps running.

use std::process::ExitCode;

use katachi_core::KatachiDirs;
use tauri::{App, AppHandle, Builder, Manager, RunEvent, Runtime};

use crate::agent_host::{AgentHost, HostError};
use crate::tray::{self, MenuContext, TrayRenderer};
use crate::window_launcher::WindowView;
use crate::{approval_desktop, sandbox, tray_host, window, window_launcher};

/// Whether this process turned GTK's OpenGL off (see [`prepare_process`]); the window process it
/// starts gets GL back.
static GL_DISABLED_HERE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prepares the process before any other thread runs: the tray process turns GTK's OpenGL off
/// (`GDK_GL=disable`) unless the user set `GDK_GL`. GTK 3 on X11 otherwise opens OpenGL at start
/// only to pick a visual, which maps Mesa and its LLVM (≈ 30 MB PSS here) into a process that
/// never draws with GL: the tray has no webview. The window process keeps GL (WebKit uses it).
pub fn prepare_process() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if window::is_window_mode(&args) || std::env::var_os("GDK_GL").is_some() {
        return;
    }
    std::env::set_var("GDK_GL", "disable");
    GL_DISABLED_HERE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a window process started from here must get `GDK_GL` unset again.
pub(crate) fn gl_disabled_here() -> bool {
    GL_DISABLED_HERE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Starts the app on the real (wry) runtime: the window process when the first argument is
/// `--window`, else the tray process, which blocks until the user quits from the tray.
///
/// Returns the app's exit code; if the app cannot start (no graphical session, ...) it prints why on
/// stderr and returns failure.
pub fn run() -> ExitCode {
    // Read while the process has one thread: `time` refuses to read it once others run.
    let local_offset_secs = time::UtcOffset::current_local_offset()
        .map(time::UtcOffset::whole_seconds)
        .unwrap_or(0);
    if !has_graphical_session() {
        // GTK would otherwise panic with "Failed to initialize gtk backend!".
        eprintln!(
            "katachi-app: no graphical session (DISPLAY and WAYLAND_DISPLAY are unset); \
             on a headless machine use the `katachi` command instead"
        );
        return ExitCode::FAILURE;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if window::is_window_mode(&args) {
        return window::run_window(&args);
    }
    let host = match start_agent() {
        Ok(host) => host,
        Err(StartError::Host(err @ HostError::AlreadyRunning(_))) => {
            // One agent per user: show the running one's window instead of starting another.
            eprintln!("katachi-app: {err}; opening its window");
            if let Err(e) = crate::window_launcher::open_window(WindowView::Status, None) {
                eprintln!("katachi-app: cannot open the window: {e}");
            }
            return ExitCode::from(katachi_core::exit_codes::ALREADY_RUNNING);
        }
        Err(err) => {
            eprintln!("katachi-app: cannot start the agent: {err}");
            return ExitCode::FAILURE;
        }
    };
    exit_code(run_app(tauri::Builder::default(), host, local_offset_secs))
}

/// The process's exit code from the event loop's.
fn exit_code(result: tauri::Result<i32>) -> ExitCode {
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("katachi-app: cannot start: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the agent's home (`KATACHI_HOME` or the user's folders) and starts the agent on Tauri's
/// async runtime.
fn start_agent() -> Result<AgentHost, StartError> {
    let dirs = KatachiDirs::from_env().map_err(|e| StartError::Dirs(e.to_string()))?;
    use_agent_runtime().map_err(StartError::Runtime)?;
    tauri::async_runtime::block_on(async { AgentHost::launch(dirs) }).map_err(StartError::Host)
}

/// The runtime hosting the agent for the whole process (Tauri's async runtime is set to it).
static AGENT_RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();

/// Gives Tauri a runtime whose idle blocking threads outlive a heartbeat period
/// ([`katachi_core::agent::BLOCKING_THREAD_KEEP_ALIVE`]): tokio's default would start and end a
/// thread for every heartbeat. Call once, before anything uses `tauri::async_runtime`.
fn use_agent_runtime() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(katachi_core::agent::BLOCKING_THREAD_KEEP_ALIVE)
        .build()?;
    let handle = runtime.handle().clone();
    if AGENT_RUNTIME.set(runtime).is_ok() {
        tauri::async_runtime::set(handle);
    }
    Ok(())
}

/// Why the tray process could not start its agent.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The agent's folders cannot be found or created.
    #[error("{0}")]
    Dirs(String),
    /// The agent could not be started (or another one runs).
    #[error(transparent)]
    Host(HostError),
    /// The async runtime could not be started (threads, file descriptors).
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Builds the tray app on `builder` (see [`build_app`]) and runs its event loop until the app
/// exits.
///
/// Generic over the runtime so tests can pass `tauri::test::mock_builder()`.
///
/// # Errors
/// Whatever [`build_app`] returns. Once the loop runs, a failure to create the tray panics inside
/// Tauri's setup hook, which ends the process with the error on stderr.
pub fn run_app<R: Runtime>(
    builder: Builder<R>,
    host: AgentHost,
    local_offset_secs: i32,
) -> tauri::Result<i32> {
    let app = build_app(builder, host, local_offset_secs)?;
    Ok(app.run_return(keep_running_without_windows))
}

/// Builds the tray app from the workspace's `tauri.conf.json` (no window, ever): the set-up hook
/// creates the tray showing `host`'s status and starts the task that redraws it on every change.
///
/// # Errors
/// Returns Tauri's error if the app cannot be built, e.g. the runtime cannot open the display.
pub fn build_app<R: Runtime>(
    builder: Builder<R>,
    host: AgentHost,
    local_offset_secs: i32,
) -> tauri::Result<App<R>> {
    builder
        .plugin(tauri_plugin_opener::init())
        .setup(move |app| {
            let status = host.status();
            // an idle tray keeps no start-up pages resident (katachi_core::memory)
            tauri::async_runtime::spawn(katachi_core::memory::release_when_settled(host.status()));
            let denials = host.denials();
            let (approvals, desk) = (host.approvals(), host.approval_desk());
            let renderer = TrayRenderer {
                context: MenuContext {
                    sandbox_line: sandbox::this_machine().summary(),
                    web_ui_known: host.relay_url().is_some(),
                },
                local_offset_secs,
            };
            app.manage(host);
            let first = renderer.view(&status.borrow());
            tray::create_tray(app.handle(), &first, &renderer.context)?;
            tauri::async_runtime::spawn(tray::follow_status(
                app.handle().clone(),
                renderer,
                status,
            ));
            tauri::async_runtime::spawn(tray::follow_denials(app.handle().clone(), denials));
            tauri::async_runtime::spawn(approval_desktop::follow_approvals(approvals, desk));
            tray::announce_tray_ready();
            open_window_without_tray_host();
            Ok(())
        })
        .build(tauri::generate_context!("../tauri.conf.json"))
}

/// Where no panel shows tray icons, opens the window (saying why in it and on stderr), so the
/// user is not left with an invisible app.
fn open_window_without_tray_host() {
    if tray_host::tray_host_present() {
        return;
    }
    eprintln!("katachi-app: {}", tray_host::NO_TRAY_HOST);
    if let Err(err) =
        window_launcher::open_window(WindowView::Status, Some(tray_host::NO_TRAY_HOST))
    {
        eprintln!("katachi-app: cannot open the window either: {err}");
    }
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

/// Event-loop callback: the tray process has no window, and nothing but an explicit `exit(code)`
/// (the tray's "Quit") may end the agent, so any other exit request is refused.
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

    use std::sync::Arc;

    use katachi_core::fingerprint::SystemFingerprint;
    use katachi_core::vault::MemoryKeystore;
    use katachi_core::{AgentHome, KatachiDirs};

    use super::build_app;
    use crate::agent_host::AgentHost;

    #[test]
    fn tray_app_builds_from_the_workspace_config_with_no_window(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let home = tempfile::tempdir()?;
        let home = AgentHome::open_with_keystore(
            KatachiDirs::under(home.path()),
            &SystemFingerprint,
            Box::new(MemoryKeystore::default()),
        )?;
        let host = tauri::async_runtime::block_on(async { AgentHost::launch_in(Arc::new(home)) })?;
        let app = build_app(tauri::test::mock_builder(), host, 0)?;
        assert!(app.webview_windows().is_empty());
        assert_eq!(app.config().product_name.as_deref(), Some("Katachi"));
        assert_eq!(app.config().identifier, "dev.katachi.app");
        Ok(())
    }
}
