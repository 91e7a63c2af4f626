//! The OS sandbox every command of the agent runs in: a policy, and a platform backend that turns
//! it into kernel rules.
//!
//! # Guarantees (Linux)
//! - Files: the allowed workspaces are read-write (except `.git/hooks`, `.git/config`, which are
//!   read-only, and `.env*` files and the agent's own folders, which are hidden); a fixed set of system
//!   folders is read-only; everything else is invisible (Landlock).
//! - Exec: only the allowlisted binaries (resolved at policy time) and the dynamic loader may be
//!   executed (Landlock `EXECUTE`); the workspaces are mounted `noexec` so the loader cannot map a
//!   planted binary either.
//! - Network: a fresh network namespace, TCP bind/connect denied (Landlock), no UDP/raw/packet/
//!   netlink/UNIX sockets (seccomp). When the policy allows hosts, the agent's egress proxy is
//!   the one way out: a listening socket inside the namespace, served by the agent, which lets
//!   through the allowed hosts and logs each attempt (see `proxy`).
//! - Processes: own user, PID and mount namespaces; zero capabilities; `no_new_privs`; no ptrace,
//!   mount, keyctl, bpf, namespace or personality tricks (seccomp); rlimits and a pids cgroup;
//!   the whole tree is killed on timeout, cancel or output overflow.
//!
//! The sandbox fails closed: when a layer the policy needs is missing on this machine, [`Sandbox::spawn`]
//! refuses unless the policy says [`Strictness::AllowWeaker`]. [`Sandbox::status`] lists the layers.
//!
//! # Other systems
//! macOS: a Seatbelt profile generated from the same policy, run with `sandbox-exec` (see
//! `macos.rs`; it cannot run on the Linux machine this is developed on). Windows: commands run
//! **unsandboxed** (no file, network or exec isolation) — [`Sandbox::status`] says so
//! (`enforced: false`), and so does every surface; each run's process tree is held in a Job Object
//! with limits and killed as a whole (see `windows.rs`).
//!
//! # Not covered
//! Denials inside the kernel (a `cat` of a hidden file) reach the command as `EACCES`; the
//! structured [`SandboxDenied`] is returned for what the agent decides itself: commands not on the
//! allowlist, folders outside the workspaces, hosts, and limits.

mod child;
mod command_hint;
mod command_path;
mod denied;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod git_guard;
// the egress proxy is wired by the Linux backend only so far
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod hosts;
mod overrides;
pub mod policy;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod proxy;
mod self_test;
mod status;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux;
// the profile generator is platform-independent: its tests run on Linux too
#[cfg(any(target_os = "macos", test))]
mod macos;
// the Windows layers and job limits are plain code: their tests run on Linux too
#[cfg(any(windows, test))]
#[cfg_attr(not(windows), allow(dead_code))]
mod windows;

pub use child::{CancelHandle, ExitKind, OutputStream, RunEvent, RunOutcome, SandboxChild};
pub use denied::{policy_set_command, shell_word, DenialKind, SandboxDenied};
pub use hosts::HostPattern;
pub use overrides::{LimitOverrides, OverrideError, WorkspaceOverrides};
pub use policy::{Limits, PolicyError, SandboxPolicy, Strictness};
pub use proxy::EgressAttempt;
pub use self_test::{self_test, EscapeResult, SelfTestReport};

use std::ffi::OsString;
use std::path::PathBuf;

/// Errors starting a sandboxed command.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The policy itself is invalid (see [`PolicyError`]).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The request asks for something the policy does not allow; the denial says how to allow it.
    #[error(transparent)]
    Denied(#[from] SandboxDenied),
    /// A layer the policy needs is missing on this machine and the policy does not accept a weaker
    /// sandbox. Fix the machine (see `reason`) or allow a weaker mode explicitly.
    #[error("sandbox layer {layer} is unavailable ({reason}); refusing to run without it (allow a weaker sandbox explicitly to run anyway)")]
    LayerUnavailable {
        /// The missing layer.
        layer: String,
        /// Why it is missing.
        reason: String,
    },
    /// This OS has no sandbox backend yet; commands are refused rather than run unsandboxed.
    #[error("no sandbox on this operating system yet: commands are not run")]
    Unsupported,
    /// Preparing the sandbox failed before the command started (ruleset, filter, scratch folder).
    #[error("cannot prepare the sandbox ({step}): {source}")]
    Setup {
        /// The preparation step.
        step: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The command could not be started inside the sandbox.
    #[error("cannot start {program} in the sandbox: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// What the OS said (a refused namespace or Landlock call shows here).
        source: std::io::Error,
    },
}

/// A result of this module.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// One command to run under a policy.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The allowlisted command name (`git`), not a path.
    pub command: String,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The working folder: inside an allowed workspace.
    pub cwd: PathBuf,
}

/// One isolation layer and whether this machine provides it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerStatus {
    /// Short name: `landlock abi 7`, `seccomp`, `userns`, `netns`, `pidns`, `mountns`, `pids cgroup`, `proxy`.
    pub name: String,
    /// Whether it is active for sandboxed runs.
    pub active: bool,
    /// What it does, or why it is missing.
    pub detail: String,
}

/// What the sandbox can do on this machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SandboxStatus {
    /// The backend (`linux`, `macos`, `windows`, or `none` where commands are refused).
    pub backend: &'static str,
    /// Whether commands run confined by an OS sandbox at all (`false` on Windows, where they run
    /// unsandboxed, and where the backend is missing).
    pub enforced: bool,
    /// What every surface must show when `enforced` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each layer.
    pub layers: Vec<LayerStatus>,
}

/// The sandbox of this machine: probes the kernel once, then spawns commands under policies.
#[derive(Debug, Clone)]
pub struct Sandbox {
    #[cfg(target_os = "linux")]
    caps: linux::KernelCaps,
}

impl Sandbox {
    /// Probes this machine's kernel (Landlock ABI, namespaces, cgroups). Cheap after the first call.
    pub fn probe() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            caps: linux::KernelCaps::probe(),
        }
    }

    /// The layers available here.
    pub fn status(&self) -> SandboxStatus {
        #[cfg(target_os = "linux")]
        {
            SandboxStatus {
                backend: "linux",
                enforced: true,
                message: None,
                layers: self.caps.layers(),
            }
        }
        #[cfg(target_os = "macos")]
        {
            let layers = macos::layers();
            let enforced = layers.first().is_some_and(|l| l.active);
            SandboxStatus {
                backend: "macos",
                enforced,
                message: (!enforced)
                    .then(|| "sandbox-exec is missing: commands are refused".to_owned()),
                layers,
            }
        }
        #[cfg(windows)]
        {
            SandboxStatus {
                backend: "windows",
                enforced: false,
                message: Some(windows::UNSANDBOXED_MESSAGE.to_owned()),
                layers: windows::layers(),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
        {
            SandboxStatus {
                backend: "none",
                enforced: false,
                message: Some(
                    "no sandbox on this operating system: commands are refused".to_owned(),
                ),
                layers: Vec::new(),
            }
        }
    }

    /// Starts `request` under `policy`; output streams from the returned child.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`SandboxError::Denied`] when the command or folder is not allowed,
    /// [`SandboxError::LayerUnavailable`] when the machine lacks a needed layer, setup and spawn errors.
    ///
    /// # Security
    /// The command runs with the policy's environment only, in its own namespaces, under Landlock
    /// and seccomp; see the module docs for what each layer stops.
    pub fn spawn(&self, policy: &SandboxPolicy, request: &RunRequest) -> Result<SandboxChild> {
        let command = policy.command(&request.command)?.clone();
        let cwd = std::fs::canonicalize(&request.cwd).map_err(|_| SandboxDenied {
            kind: DenialKind::File,
            target: request.cwd.display().to_string(),
            how_to_allow: "use an existing folder inside an allowed workspace".to_owned(),
        })?;
        policy.workspace_of(&cwd)?;
        #[cfg(target_os = "linux")]
        {
            linux::spawn(&self.caps, policy, &command, &request.args, &cwd)
        }
        #[cfg(target_os = "macos")]
        {
            macos::spawn(policy, &command, &request.args, &cwd)
        }
        #[cfg(windows)]
        {
            windows::spawn(policy, &command, &request.args, &cwd)
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
        {
            let _ = (command, cwd);
            Err(SandboxError::Unsupported)
        }
    }
}
