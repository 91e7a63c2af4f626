//! The window: `katachi-app --window [--view <view>]`, a short-lived process of its own.
//!
//! # Contract
//! - The tray process never creates a webview (a webview keeps ~90 MB after it is closed); "Open
//!   Katachi" starts this process instead, and it **exits when its window closes**.
//! - It talks to the running agent only through an [`AgentPort`] (the control socket); what needs
//!   no agent (sandbox self-test, audit ledger, API keys, relay check) goes to `katachi-core`.
//! - One window process per user: a second `--window` launch focuses the first and switches it to
//!   the asked view (`tauri-plugin-single-instance`); a `katachi://` link (`tauri-plugin-deep-link`)
//!   opens the Connect view, and the page asks before acting on it.
//! - The page calls only the commands of [`commands`] (granted in `capabilities/window.json`),
//!   receives `agent-status` events (every status, as a [`port::AgentView`]), `agent-unreachable`
//!   (an [`IpcError`]), `show-view` and `link` events, and never receives a secret.
//!
//! # Layout
//! - `args`: the command line; `context`: shared state; `port`: the agent port;
//! - `commands`: the Tauri commands; `connect`: links, relay URLs and QR codes;
//! - `ai_settings`: the AI provider per workspace, through the core's settings functions;
//! - `local`: `katachi-core` calls that need no agent; `workspaces`: changes through
//!   `workspace_admin`; `desktop`: browser, folder picker, login item.

pub mod ai_settings;
mod args;
pub mod commands;
pub mod connect;
mod context;
mod desktop;
pub mod ipc_error;
pub mod local;
pub mod port;
mod workspaces;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tauri::webview::PageLoadEvent;
use tauri::{App, AppHandle, Builder, Emitter, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

pub use args::{is_window_mode, parse as parse_args, View, WindowArgs};
pub use context::WindowContext;
pub use ipc_error::{IpcCode, IpcError};
pub use port::{AgentPort, ControlPort};

/// Label of the window.
pub const WINDOW_LABEL: &str = "main";
/// Title of the window, as window managers and `xdotool search --name` see it.
pub const WINDOW_TITLE: &str = "Katachi";
/// The page the window shows.
pub const WINDOW_PAGE: &str = "app.html";
/// Event carrying every status of the agent.
pub const EVENT_STATUS: &str = "agent-status";
/// Event carrying why the agent cannot be reached (an [`IpcError`]).
pub const EVENT_UNREACHABLE: &str = "agent-unreachable";
/// Event asking the page to show a view (a second launch asked for it).
pub const EVENT_SHOW_VIEW: &str = "show-view";
/// Event carrying a validated `katachi://` link (or why it is refused).
pub const EVENT_LINK: &str = "link";
/// D-Bus name suffix of the window's single-instance lock (the tray has its own).
const SINGLE_INSTANCE_ID: &str = "dev.katachi.app.window";
/// Wait before asking an unreachable agent again.
const RETRY_AGENT: Duration = Duration::from_secs(3);

/// Runs the window process with `args` (without the program name) until its window closes.
pub fn run_window(args: &[String]) -> ExitCode {
    if !has_graphical_session() {
        eprintln!("katachi-app: no graphical session (DISPLAY and WAYLAND_DISPLAY are unset) for the window");
        return ExitCode::FAILURE;
    }
    let parsed = parse_args(args);
    for ignored in &parsed.ignored {
        eprintln!("katachi-app: ignoring argument {ignored:?}");
    }
    let dirs = katachi_core::KatachiDirs::from_env().map_err(|err| err.to_string());
    let port = Arc::new(ControlPort::new(dirs.clone()));
    let context = WindowContext::new(port, dirs, parsed);
    let builder = tauri::Builder::default()
        .plugin(
            tauri_plugin_single_instance::Builder::new()
                .dbus_id(SINGLE_INSTANCE_ID)
                .callback(|app, argv, _cwd| on_second_launch(app, &argv))
                .build(),
        )
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ));
    match build_window_app(builder, context) {
        Ok(app) => {
            app.run_return(|_, _| {});
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("katachi-app: cannot open the window: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the window app on `builder` with the commands and the shared `context`, opens the window
/// and starts forwarding the agent's status to it.
///
/// Generic over the runtime so tests can pass `tauri::test::mock_builder()`.
///
/// # Errors
/// Tauri's error if the app cannot be built.
pub fn build_window_app<R: Runtime>(
    builder: Builder<R>,
    context: WindowContext,
) -> tauri::Result<App<R>> {
    let port = Arc::clone(&context.port);
    builder
        .manage(context)
        .invoke_handler(tauri::generate_handler![
            commands::window_start,
            commands::window_ready,
            commands::agent_status,
            commands::check_relay,
            commands::sign_in,
            commands::open_approval_page,
            commands::qr_code,
            commands::read_link,
            commands::cancel_sign_in,
            commands::sign_out,
            commands::list_workspaces,
            commands::add_workspace,
            commands::pick_workspace,
            commands::remove_workspace,
            commands::set_workspace_policy,
            crate::sandbox::sandbox_status,
            commands::sandbox_self_test,
            commands::activity,
            commands::settings,
            commands::set_autostart,
            commands::set_notifications,
            commands::api_keys,
            commands::set_api_key,
            commands::clear_api_key,
            commands::ai_settings,
            commands::set_ai_provider,
            commands::reset_ai_provider,
        ])
        .build(tauri::generate_context!("../tauri.conf.json"))
        .and_then(|app| {
            let context = app.state::<WindowContext>();
            context.mark("app built");
            // Opened once the app (and its plugins: a second instance has exited by now) is built,
            // not in a set-up hook: the hook runs only with the event loop, which tests never start.
            open_window(app.handle())?;
            context.mark("window created");
            forward_status(app.handle().clone(), port);
            Ok(app)
        })
}

/// Whether a display server is there (GTK would panic without one). Only Linux and the BSDs need
/// a variable to find theirs.
fn has_graphical_session() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Creates the window showing [`WINDOW_PAGE`].
fn open_window<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    WebviewWindowBuilder::new(app, WINDOW_LABEL, WebviewUrl::App(WINDOW_PAGE.into()))
        .title(WINDOW_TITLE)
        .inner_size(760.0, 620.0)
        .min_inner_size(420.0, 360.0)
        .center()
        .focused(true)
        .on_page_load(|window, payload| {
            if let Some(context) = window.try_state::<WindowContext>() {
                context.mark(match payload.event() {
                    PageLoadEvent::Started => "page requested",
                    PageLoadEvent::Finished => "page loaded",
                });
            }
        })
        .build()?;
    Ok(())
}

/// Sends every status of the agent to the window as [`EVENT_STATUS`]; while the agent cannot be
/// reached, sends [`EVENT_UNREACHABLE`] and tries again every few seconds.
fn forward_status<R: Runtime>(app: AppHandle<R>, port: Arc<dyn AgentPort>) {
    tauri::async_runtime::spawn(async move {
        loop {
            match port.watch().await {
                Ok(mut statuses) => {
                    while let Some(status) = statuses.recv().await {
                        let _ = app.emit_to(WINDOW_LABEL, EVENT_STATUS, &status);
                    }
                }
                Err(err) => {
                    let _ = app.emit_to(WINDOW_LABEL, EVENT_UNREACHABLE, &err);
                }
            }
            tokio::time::sleep(RETRY_AGENT).await;
        }
    });
}

/// A second `katachi-app --window …` (or a clicked link) ran: focus this window, switch view and
/// hand over the link for the page to ask about.
fn on_second_launch<R: Runtime>(app: &AppHandle<R>, argv: &[String]) {
    let parsed = parse_args(argv.get(1..).unwrap_or_default());
    if let Some(window) = app.get_webview_window(WINDOW_LABEL) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
    let _ = app.emit_to(WINDOW_LABEL, EVENT_SHOW_VIEW, parsed.view);
    if let Some(link) = parsed.link {
        let _ = app.emit_to(WINDOW_LABEL, EVENT_LINK, connect::parse_link(&link));
    }
}

#[cfg(test)]
mod tests;
