//! Build script: compiles the Tauri config at the workspace root (`../tauri.conf.json`) into the app.
//!
//! Plain `tauri_build::build()` would look for `src-tauri/tauri.conf.json`; the config lives at the
//! root so that `frontendDist` (`ui/`) and the icons (`icons/`) resolve from there.

use std::process::ExitCode;

/// Every Tauri command of the app (the window's, see `src/window/commands.rs`, and
/// `sandbox_status`).
const APP_COMMANDS: &[&str] = &[
    "window_start",
    "window_ready",
    "agent_status",
    "check_relay",
    "sign_in",
    "open_approval_page",
    "qr_code",
    "read_link",
    "cancel_sign_in",
    "sign_out",
    "list_workspaces",
    "add_workspace",
    "pick_workspace",
    "remove_workspace",
    "set_workspace_policy",
    "sandbox_status",
    "sandbox_self_test",
    "activity",
    "settings",
    "set_autostart",
    "set_notifications",
    "api_keys",
    "set_api_key",
    "clear_api_key",
    "ai_settings",
    "set_ai_provider",
    "reset_ai_provider",
];

fn main() -> ExitCode {
    // `generate_context!` and `include_image!` embed these files at compile time but do not tell
    // cargo about them: without these lines an edited page or icon would need a `cargo clean`.
    println!("cargo:rerun-if-changed=../ui");
    println!("cargo:rerun-if-changed=../icons");
    println!("cargo:rerun-if-changed=capabilities");
    // Declaring the app's commands makes each one a permission (`allow-<name>`) that a capability in
    // `capabilities/` must grant: a command no capability names cannot be called from any window.
    let manifest = tauri_build::AppManifest::new().commands(APP_COMMANDS);
    let attributes = tauri_build::Attributes::new()
        .config_path("../tauri.conf.json")
        .app_manifest(manifest);
    match tauri_build::try_build(attributes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{err:#}` keeps anyhow's chain of causes, e.g. which icon file is missing or not RGBA.
            eprintln!("katachi-app build script: cannot prepare the Tauri app from ../tauri.conf.json: {err:#}");
            ExitCode::FAILURE
        }
    }
}
