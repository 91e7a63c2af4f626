//! Katachi's tray app: a thin Tauri shell that shows the agent's state in the system tray.
//!
//! The app starts with no window: a tray icon whose menu shows the agent's status, opens the small
//! status window ("Open Katachi") and quits. Closing the window leaves the app running in the tray;
//! only "Quit" ends it. Everything the agent does lives in `katachi-core`; this crate only renders it.
//!
//! # Layout
//! - `app`: builds the app on a given Tauri builder and runs its event loop ([`run`], [`run_app`],
//!   [`build_app`]).
//! - [`tray`]: the tray icon (one per [`TrayState`]), its menu ids and what each menu item does.
//! - `logging`: the app's log, a daily-rotated file in katachi's state dir ([`init_logging`]).
//! - `window`: the status window, created on demand from `ui/index.html`.
//! - `sandbox`: katachi-core's sandbox status for the tray line and the window's `sandbox_status`
//!   command.

#![forbid(unsafe_code)]

mod app;
mod logging;
mod sandbox;
pub mod tray;
mod window;

pub use app::build_app;
pub use app::run;
pub use app::run_app;
pub use logging::init_logging;
pub use logging::LoggingError;
pub use tray::TrayState;
