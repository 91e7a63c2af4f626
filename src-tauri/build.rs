//! Build script: compiles the Tauri config at the workspace root (`../tauri.conf.json`) into the app.
//!
//! Plain `tauri_build::build()` would look for `src-tauri/tauri.conf.json`; the config lives at the
//! root so that `frontendDist` (`ui/`) and the icons (`icons/`) resolve from there.

use std::process::ExitCode;

fn main() -> ExitCode {
    // `generate_context!` and `include_image!` embed these files at compile time but do not tell
    // cargo about them: without these lines an edited page or icon would need a `cargo clean`.
    println!("cargo:rerun-if-changed=../ui");
    println!("cargo:rerun-if-changed=../icons");
    let attributes = tauri_build::Attributes::new().config_path("../tauri.conf.json");
    match tauri_build::try_build(attributes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{err:#}` keeps anyhow's chain of causes, e.g. which icon file is missing or not RGBA.
            eprintln!("katachi-app build script: cannot prepare the Tauri app from ../tauri.conf.json: {err:#}");
            ExitCode::FAILURE
        }
    }
}
