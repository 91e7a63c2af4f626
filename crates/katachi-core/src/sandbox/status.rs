//! Plain-words views of a [`SandboxStatus`] for the surfaces that show it in little space: the
//! tray menu's one line ([`SandboxStatus::summary`]) and the status window's notice
//! ([`SandboxStatus::notice`]). Every wording lives here so the tray app only renders it.

use super::SandboxStatus;

/// Said when commands are not confined and the backend gave no message of its own.
const NOT_CONFINED: &str = "commands are not confined by an OS sandbox";

impl SandboxStatus {
    /// One plain line for a tray menu.
    ///
    /// - Enforced, every layer active: `Sandbox: on — landlock abi 7, seccomp, netns, …` (the
    ///   active layers, in order).
    /// - Enforced, some layers inactive: the same, then `; missing: pids cgroup, …`.
    /// - Not enforced: `Sandbox: OFF — ` and the [`notice`](Self::notice), e.g. `Sandbox: OFF —
    ///   commands run unsandboxed on Windows: katachi cannot confine them`.
    pub fn summary(&self) -> String {
        if let Some(notice) = self.notice() {
            return format!("Sandbox: OFF — {notice}");
        }
        let active: Vec<&str> = self
            .layers
            .iter()
            .filter(|l| l.active)
            .map(|l| l.name.as_str())
            .collect();
        let mut line = if active.is_empty() {
            "Sandbox: on — no layer active".to_owned()
        } else {
            format!("Sandbox: on — {}", active.join(", "))
        };
        let missing = self.missing_layers();
        if !missing.is_empty() {
            line.push_str("; missing: ");
            line.push_str(&missing.join(", "));
        }
        line
    }

    /// What must be shown prominently when commands are not confined (`enforced` is false): the
    /// backend's message, or a generic sentence when it gave none. `None` when the sandbox is on.
    pub fn notice(&self) -> Option<String> {
        if self.enforced {
            return None;
        }
        Some(
            self.message
                .clone()
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| NOT_CONFINED.to_owned()),
        )
    }

    /// The names of the layers that are inactive on this machine, in order.
    pub fn missing_layers(&self) -> Vec<&str> {
        self.layers
            .iter()
            .filter(|l| !l.active)
            .map(|l| l.name.as_str())
            .collect()
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
