//! Bundles the agent workbench's front end (`webui/`: CodeMirror 6 and the page's scripts) with
//! esbuild into `OUT_DIR`, where `src/web/assets.rs` includes it into the binary.
//!
//! The npm packages are installed with `npm ci` from the committed `webui/package-lock.json` (exact
//! versions, integrity hashes) into `OUT_DIR/webui-deps`, never into the source tree: concurrent
//! builds with different target dirs cannot race, and `cargo` sees a build script that writes only
//! its own output. `npm ci` runs again only when `package.json` or `package-lock.json` changed (or the
//! install is missing); it runs no package install scripts (`--ignore-scripts`). Needs Node.js ≥ 18
//! and npm: `scripts/install-deps.sh` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Oldest Node.js the pinned esbuild supports.
const MIN_NODE_MAJOR: u32 = 18;
/// Files whose copies in the install dir say which lock file it was installed from.
const MANIFESTS: [&str; 2] = ["package.json", "package-lock.json"];
/// Written last by a finished install, so an interrupted one is redone.
const INSTALL_DONE: &str = ".katachi-install-complete";

fn main() {
    if let Err(message) = run() {
        // A build script reports failure by its exit status; the text is what `cargo` shows.
        eprintln!("error: cannot bundle the relay's web UI: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let webui = manifest_dir.join("webui");
    println!("cargo:rerun-if-changed=webui/src");
    for name in MANIFESTS {
        println!("cargo:rerun-if-changed=webui/{name}");
    }
    check_node()?;
    let deps = out_dir.join("webui-deps");
    install_packages(&webui, &deps)?;
    bundle(&webui, &deps, &out_dir)
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run through cargo)"))
}

/// The command that runs npm (`npm.cmd` on Windows).
fn npm() -> Command {
    Command::new(if cfg!(windows) { "npm.cmd" } else { "npm" })
}

/// Fails clearly when Node.js or npm is missing or too old.
fn check_node() -> Result<(), String> {
    let missing = |what: &str, e: std::io::Error| {
        format!(
            "{what} was not found ({e}): the workbench is bundled from npm packages at build time; \
             run scripts/install-deps.sh (or install Node.js >= {MIN_NODE_MAJOR} and npm)"
        )
    };
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| missing("node", e))?;
    let version = String::from_utf8_lossy(&node.stdout).trim().to_owned();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("`node --version` printed {version:?}, not a version"))?;
    if major < MIN_NODE_MAJOR {
        return Err(format!(
            "Node.js {version} is too old: the pinned esbuild needs Node.js >= {MIN_NODE_MAJOR}; \
             run scripts/install-deps.sh"
        ));
    }
    npm()
        .arg("--version")
        .output()
        .map_err(|e| missing("npm", e))?;
    Ok(())
}

/// `npm ci` into `deps` unless it already holds an install from the same manifests.
fn install_packages(webui: &Path, deps: &Path) -> Result<(), String> {
    let up_to_date = deps.join(INSTALL_DONE).is_file()
        && deps.join("node_modules").is_dir()
        && MANIFESTS
            .iter()
            .all(|name| same_content(&webui.join(name), &deps.join(name)));
    if up_to_date {
        return Ok(());
    }
    std::fs::create_dir_all(deps).map_err(|e| format!("cannot create {}: {e}", deps.display()))?;
    let _ = std::fs::remove_file(deps.join(INSTALL_DONE));
    for name in MANIFESTS {
        std::fs::copy(webui.join(name), deps.join(name))
            .map_err(|e| format!("cannot copy webui/{name}: {e}"))?;
    }
    let output = npm()
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(deps)
        .output()
        .map_err(|e| format!("cannot run npm ci: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`npm ci` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::write(deps.join(INSTALL_DONE), b"")
        .map_err(|e| format!("cannot mark the install complete: {e}"))
}

fn same_content(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// esbuild: `webui/src/main.js` → `OUT_DIR/workbench.js` and `OUT_DIR/workbench.css`.
fn bundle(webui: &Path, deps: &Path, out_dir: &Path) -> Result<(), String> {
    let esbuild = deps.join("node_modules/esbuild/bin/esbuild");
    let output = Command::new("node")
        .arg(&esbuild)
        .arg("src/main.js")
        .args([
            "--bundle",
            "--minify",
            "--format=iife",
            "--target=es2020",
            "--charset=utf8",
            "--log-level=warning",
        ])
        .arg(format!(
            "--outfile={}",
            out_dir.join("workbench.js").display()
        ))
        .current_dir(webui)
        // packages resolve from the install in OUT_DIR (the source tree has no node_modules)
        .env("NODE_PATH", deps.join("node_modules"))
        .output()
        .map_err(|e| format!("cannot run esbuild: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "esbuild failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    for name in ["workbench.js", "workbench.css"] {
        if !out_dir.join(name).is_file() {
            return Err(format!("esbuild produced no {name}"));
        }
    }
    Ok(())
}
