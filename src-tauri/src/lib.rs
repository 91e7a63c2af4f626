//! Katachi's tray app: a thin Tauri shell that hosts the user's agent and shows it in the tray.
//!
//! The tray process runs the agent (`katachi-core`'s runtime) and a tray icon whose menu states
//! the agent's status and drives it; it never creates a webview. The window is a separate,
//! short-lived process of the same executable (`--window`). Everything the agent does lives in
//! `katachi-core`; this crate only renders it and forwards the user's choices.
//!
//! # Layout
//! - `app`: which process this is, building the app and running its event loop ([`run`],
//!   [`run_app`], [`build_app`]).
//! - `agent_host`: the hosted agent, its status and its commands ([`AgentHost`]).
//! - [`tray`]: the icon per state, the menu, and what each item does.
//! - `logging`: the app's log, a daily-rotated file in katachi's state dir ([`init_logging`]).
//! - `tray_host`: whether the desktop shows tray icons (else the window opens at start).
//! - `approval_notices`: which AI approval gets which notification, and what Approve/Deny
//!   decide (a pure state machine); `approval_desktop`: showing them and taking the clicks.
//! - `notices`: desktop notifications (connected, disconnected, sign-in needed, code expired,
//!   a command denied by the sandbox).
//! - `window_launcher`: starts the window process on a view.
//! - [`window`]: the window process (`katachi-app --window`, `ui/app.html`): its views, commands
//!   and the port to the running agent.
//! - `sandbox`: katachi-core's sandbox status for the tray line and the window's `sandbox_status`
//!   command.

#![forbid(unsafe_code)]

mod agent_host;
mod app;
mod approval_desktop;
mod approval_notices;
mod logging;
mod notices;
mod sandbox;
pub mod tray;
mod tray_host;
pub mod window;
mod window_launcher;

pub use agent_host::AgentHost;
pub use agent_host::HostError;
pub use app::build_app;
pub use app::prepare_process;
pub use app::run;
pub use app::run_app;
pub use logging::init_logging;
pub use logging::LoggingError;
pub use tray::TrayIcon;
pub use tray::TrayView;
