//! Windows: katachi cannot confine commands here, so they run **unsandboxed**, and every surface
//! says so ([`UNSANDBOXED_MESSAGE`] in [`Sandbox::status`](super::Sandbox::status), the CLI and
//! the API).
//!
//! What still holds: only allowlisted commands (resolved binaries) start, in a folder inside an
//! allowed workspace (not one of the agent's hidden folders); the environment is scrubbed to the
//! allowlist; wall time and output size are limited; on timeout, cancel or overflow the command's
//! process tree is killed (`taskkill /T /F`). What does not: any file, network or exec isolation,
//! CPU/memory/process-count limits, and processes the command left running after it exited
//! (there is no Job Object yet).

use std::ffi::OsString;
use std::os::windows::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::child::{supervise, ProcessTree};
use super::denied::{DenialKind, SandboxDenied};
use super::policy::{AllowedCommand, SandboxPolicy};
use super::{LayerStatus, SandboxChild, SandboxError};

/// What every surface shows on Windows.
pub(crate) const UNSANDBOXED_MESSAGE: &str =
    "commands run unsandboxed on Windows: katachi cannot confine them";

/// No console window for the command (it runs in the background of the agent).
const CREATE_NO_WINDOW: u32 = 0x0800_0000;

/// The layers on Windows: no sandbox, only limits.
pub(crate) fn layers() -> Vec<LayerStatus> {
    vec![
        LayerStatus {
            name: "sandbox".to_owned(),
            active: false,
            detail: UNSANDBOXED_MESSAGE.to_owned(),
        },
        LayerStatus {
            name: "limits".to_owned(),
            active: true,
            detail: "wall time and output size; environment scrubbed to the allowlist".to_owned(),
        },
        LayerStatus {
            name: "tree kill".to_owned(),
            active: true,
            detail: "taskkill /T on timeout, cancel or output overflow".to_owned(),
        },
    ]
}

/// Starts `command` as a plain (unconfined) process with the limits that Windows allows here.
pub(crate) fn spawn(
    policy: &SandboxPolicy,
    command: &AllowedCommand,
    args: &[OsString],
    cwd: &Path,
) -> Result<SandboxChild, SandboxError> {
    // nothing stops the command from reading them, but katachi does not start it there
    if let Some(hidden) = policy.hidden.iter().find(|h| cwd.starts_with(h)) {
        return Err(SandboxDenied {
            kind: DenialKind::File,
            target: hidden.display().to_string(),
            how_to_allow: "run in a workspace folder outside the agent's own folders".to_owned(),
        }
        .into());
    }
    let setup_err = |step: &'static str| move |source| SandboxError::Setup { step, source };
    let scratch = tempfile::Builder::new()
        .prefix("katachi-run-")
        .tempdir()
        .map_err(setup_err("scratch folder"))?;
    let system_root =
        std::env::var_os("SystemRoot").map_or_else(|| PathBuf::from(r"C:\Windows"), PathBuf::from);
    let path = std::env::join_paths([system_root.join("System32"), system_root.clone()]).map_err(
        |_| SandboxError::Setup {
            step: "PATH",
            source: std::io::ErrorKind::InvalidInput.into(),
        },
    )?;

    let mut cmd = tokio::process::Command::new(&command.path);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(policy.env.iter().map(|(k, v)| (k, v)))
        // Windows programs fail to start without SystemRoot; it is no secret
        .env("SystemRoot", &system_root)
        .env("PATH", path)
        .env("TEMP", scratch.path())
        .env("TMP", scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .creation_flags(CREATE_NO_WINDOW);
    let child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        program: command.path.clone(),
        source,
    })?;
    let tree = TaskkillTree {
        pid: child.id(),
        taskkill: system_root.join("System32").join("taskkill.exe"),
        scratch: Some(scratch),
    };
    Ok(supervise(child, Box::new(tree), policy.limits()))
}

/// The command's process tree, killed with `taskkill /T /F` (by parent process id).
struct TaskkillTree {
    pid: Option<u32>,
    taskkill: PathBuf,
    scratch: Option<tempfile::TempDir>,
}

impl ProcessTree for TaskkillTree {
    fn kill_all(&mut self) {
        let Some(pid) = self.pid else { return };
        // not waited for: the supervisor sees the command end; a failed taskkill leaves the
        // wall-time denial in place and the command to its own end
        let _ = std::process::Command::new(&self.taskkill)
            .args(["/T", "/F", "/PID", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .creation_flags(CREATE_NO_WINDOW)
            .spawn();
    }

    fn kill_remaining(&mut self) {
        // the command is gone: its children can no longer be found by parent id (no Job Object)
    }

    fn release(&mut self) {
        drop(self.scratch.take());
    }
}
