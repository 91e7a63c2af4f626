//! The sandbox as the browser sees it: the platform, each isolation layer, and whether commands run
//! confined at all — shown by `GET /v1/status` and with the command list.

use serde::Serialize;
use utoipa::ToSchema;

use crate::sandbox::Sandbox;

/// What the sandbox does on the agent's machine.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SandboxReport {
    /// The agent's OS (`linux`, `macos`, `windows`).
    pub platform: String,
    /// The backend (`linux`, or `none` where there is no sandbox).
    pub backend: String,
    /// Whether commands run confined by every layer the policy needs. `false` on Windows, where
    /// commands are not sandboxed, and wherever a needed layer is missing.
    pub enforced: bool,
    /// One sentence for people, e.g. "commands run unsandboxed on Windows".
    pub message: String,
    /// Each layer and whether it is active.
    pub layers: Vec<SandboxLayer>,
}

/// One isolation layer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SandboxLayer {
    /// Short name: `landlock abi 7`, `seccomp`, `userns`, `netns`, `pidns`, `mountns`, `pids cgroup`, `proxy`.
    pub name: String,
    /// Whether runs use it.
    pub active: bool,
    /// What it does, or why it is missing.
    pub detail: String,
}

/// Layers that only a policy allowing network hosts needs; their absence leaves runs confined.
const OPTIONAL_LAYERS: &[&str] = &["proxy"];

/// The report of `sandbox` on this machine.
pub(crate) fn sandbox_report(sandbox: &Sandbox) -> SandboxReport {
    let status = sandbox.status();
    let layers: Vec<SandboxLayer> = status
        .layers
        .into_iter()
        .map(|l| SandboxLayer {
            name: l.name,
            active: l.active,
            detail: l.detail,
        })
        .collect();
    let missing: Vec<&str> = layers
        .iter()
        .filter(|l| !l.active && !OPTIONAL_LAYERS.contains(&l.name.as_str()))
        .map(|l| l.name.as_str())
        .collect();
    let has_backend = status.backend != "none";
    let enforced = status.enforced && has_backend && missing.is_empty();
    let message = if let Some(message) = status.message.filter(|_| !status.enforced) {
        // the backend's own words (Windows: commands run unsandboxed), shown as they are
        message
    } else if !has_backend {
        format!(
            "no sandbox on {} yet: commands are refused",
            std::env::consts::OS
        )
    } else if enforced {
        "commands run in the sandbox with every layer active".to_owned()
    } else {
        format!(
            "sandbox layers missing on this machine ({}): commands are refused",
            missing.join(", ")
        )
    };
    SandboxReport {
        platform: std::env::consts::OS.to_owned(),
        backend: status.backend.to_owned(),
        enforced,
        message,
        layers,
    }
}
