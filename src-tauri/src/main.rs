//! `katachi-app`: the Katachi tray app, or with `--window` its window. All logic lives in the
//! `katachi_app` library.

// In release builds on Windows, do not open a console window next to the tray icon.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // First, while this is the only thread: environment for GTK.
    katachi_app::prepare_process();
    // A log that cannot be opened must not keep the tray from starting: say why and go on.
    if let Err(err) = katachi_app::init_logging() {
        eprintln!("katachi-app: no log file: {err}");
    }
    katachi_app::run()
}
