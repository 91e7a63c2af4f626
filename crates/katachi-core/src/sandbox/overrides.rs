//! Per-workspace sandbox overrides, persisted in the store, and the policy built from them.
//!
//! A workspace may add allowed commands and hosts, allow its `.env*` files, and change limits;
//! [`SandboxPolicy::for_workspace`] is the one place that turns a workspace into a policy, used by
//! the CLI's `sandbox run` and the API's `run`. Overrides only ever apply to the workspace they
//! are stored for.
//!
//! # Guarantees
//! - Values are checked when they are set (commands resolved, hosts parsed, limits non-zero) and
//!   again when they are read: a corrupt document or a command that no longer resolves is an
//!   [`OverrideError`] naming the workspace and the command that fixes it, never a panic and never
//!   a silently weaker or stronger policy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::denied::shell_word;
use super::policy::{Limits, PolicyBuilder, PolicyError, SandboxPolicy};
use crate::store::{Store, StoreError, Workspace, WorkspaceError};

/// Errors reading or writing a workspace's overrides.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// The folder is not an allowed workspace, so it has no overrides to set.
    #[error("{} is not an allowed workspace; allow it first: `katachi workspace add {}`", .0.display(), shell_word(&.0.display().to_string()))]
    NotAWorkspace(PathBuf),
    /// The stored document is not valid JSON of the expected shape (edited by hand, damaged).
    #[error("the sandbox overrides stored for workspace {workspace} are unreadable ({reason}); reset them: `katachi sandbox policy reset --workspace {}`", shell_word(workspace))]
    Corrupt {
        /// The workspace.
        workspace: String,
        /// What is wrong with the document.
        reason: String,
    },
    /// A stored or new value is not valid (a command that does not resolve, a bad host pattern).
    #[error("the sandbox overrides of workspace {workspace} are not valid: {source}; reset them: `katachi sandbox policy reset --workspace {}`", shell_word(workspace))]
    Invalid {
        /// The workspace.
        workspace: String,
        /// The first bad value.
        source: PolicyError,
    },
    /// Looking the workspace up failed.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Limits a workspace changes; unset ones keep the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Wall time in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time_secs: Option<u64>,
    /// CPU time per process in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time_secs: Option<u64>,
    /// Address space per process in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Processes in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// Bytes of output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
}

impl LimitOverrides {
    /// `base` with the set values replaced.
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            wall_time: self
                .wall_time_secs
                .map_or(base.wall_time, Duration::from_secs),
            cpu_time: self
                .cpu_time_secs
                .map_or(base.cpu_time, Duration::from_secs),
            memory_bytes: self
                .memory_mib
                .map_or(base.memory_bytes, |m| m.saturating_mul(1 << 20)),
            processes: self.processes.unwrap_or(base.processes),
            output_bytes: self.output_bytes.unwrap_or(base.output_bytes),
            file_bytes: base.file_bytes,
        }
    }

    /// The values set in `newer` replace these.
    pub fn merge(&mut self, newer: &LimitOverrides) {
        let pick = |old: &mut Option<u64>, new: Option<u64>| *old = new.or(*old);
        pick(&mut self.wall_time_secs, newer.wall_time_secs);
        pick(&mut self.cpu_time_secs, newer.cpu_time_secs);
        pick(&mut self.memory_mib, newer.memory_mib);
        pick(&mut self.processes, newer.processes);
        pick(&mut self.output_bytes, newer.output_bytes);
    }
}

/// What one workspace adds to the default policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceOverrides {
    /// Commands allowed in this workspace (plain names, resolved through the trusted PATH).
    #[serde(default)]
    pub allow_commands: Vec<String>,
    /// Hosts reachable through the egress proxy from this workspace.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Whether `.env*` files of this workspace are readable.
    #[serde(default)]
    pub allow_env_files: bool,
    /// Limits changed for this workspace.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// The local user's consent to runs requested through the API although the sandbox is not
    /// enforced on this machine (Windows). Without it such runs are refused (`sandbox.unenforced`).
    #[serde(default)]
    pub allow_unsandboxed: bool,
}

impl WorkspaceOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Adds `newer`'s commands and hosts (no duplicates), takes its env-file choice when it makes
    /// one, and its set limits.
    pub fn merge(&mut self, newer: &WorkspaceOverrides, env_files: Option<bool>) {
        for c in &newer.allow_commands {
            if !self.allow_commands.contains(c) {
                self.allow_commands.push(c.clone());
            }
        }
        for h in &newer.allow_hosts {
            if !self.allow_hosts.contains(h) {
                self.allow_hosts.push(h.clone());
            }
        }
        if let Some(allow) = env_files {
            self.allow_env_files = allow;
        }
        // consent is only ever added here; `katachi sandbox policy reset` removes it
        self.allow_unsandboxed |= newer.allow_unsandboxed;
        self.limits.merge(&newer.limits);
    }

    /// Adds the workspace `root` with these overrides to `builder`.
    pub fn apply_to(&self, mut builder: PolicyBuilder, root: &Path) -> PolicyBuilder {
        builder = builder
            .workspace(root, self.allow_env_files)
            .allow_unsandboxed(self.allow_unsandboxed);
        for c in &self.allow_commands {
            builder = builder.allow_command(c.clone());
        }
        for h in &self.allow_hosts {
            builder = builder.allow_host(h.clone());
        }
        let limits = self.limits;
        builder.map_limits(|l| limits.apply(l))
    }

    /// Checks every value: commands resolve, hosts parse, limits are non-zero.
    ///
    /// # Errors
    /// [`PolicyError`] naming the first bad value.
    pub fn check(&self) -> Result<(), PolicyError> {
        let mut b = SandboxPolicy::builder().map_limits(|l| self.limits.apply(l));
        for c in &self.allow_commands {
            b = b.allow_command(c.clone());
        }
        for h in &self.allow_hosts {
            b = b.allow_host(h.clone());
        }
        b.build().map(drop)
    }

    /// The overrides of the allowed workspace holding `path`: `None` when `path` is in no allowed
    /// workspace (it then gets none).
    ///
    /// # Errors
    /// [`OverrideError::Corrupt`] or [`OverrideError::Invalid`] naming the workspace, store errors.
    pub fn for_path(
        store: &Store,
        path: &Path,
    ) -> Result<Option<(Workspace, WorkspaceOverrides)>, OverrideError> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let Some(ws) = store.workspaces().containing(&canonical)? else {
            return Ok(None);
        };
        let overrides = Self::load(store, &ws)?;
        Ok(Some((ws, overrides)))
    }

    /// The stored overrides of `ws` (empty when none are stored), checked.
    ///
    /// # Errors
    /// [`OverrideError::Corrupt`] or [`OverrideError::Invalid`] naming the workspace.
    pub fn load(store: &Store, ws: &Workspace) -> Result<Self, OverrideError> {
        let Some(text) = store.sandbox_overrides().get(ws.id)? else {
            return Ok(Self::default());
        };
        let parsed: Self = serde_json::from_str(&text).map_err(|e| OverrideError::Corrupt {
            workspace: ws.path.clone(),
            reason: e.to_string(),
        })?;
        parsed.check().map_err(|source| OverrideError::Invalid {
            workspace: ws.path.clone(),
            source,
        })?;
        Ok(parsed)
    }

    /// Checks and stores these overrides for `ws` (an empty set removes them).
    ///
    /// # Errors
    /// [`OverrideError::Invalid`] for a bad value (nothing is stored), store errors.
    pub fn save(&self, store: &Store, ws: &Workspace) -> Result<(), OverrideError> {
        self.check().map_err(|source| OverrideError::Invalid {
            workspace: ws.path.clone(),
            source,
        })?;
        if self.is_empty() {
            store.sandbox_overrides().reset(ws.id)?;
            return Ok(());
        }
        let json = serde_json::to_string(self).map_err(|e| OverrideError::Corrupt {
            workspace: ws.path.clone(),
            reason: e.to_string(),
        })?;
        store.sandbox_overrides().set(ws.id, &json)?;
        Ok(())
    }
}

impl SandboxPolicy {
    /// The policy builder for a run in `workspace` (a folder in or below an allowed workspace):
    /// the agent's folders hidden, the workspace read-write with its stored overrides applied.
    /// Callers may add more (the CLI's flags) before `build()`.
    ///
    /// # Errors
    /// [`OverrideError::NotAWorkspace`] when `workspace` is in no allowed workspace; a corrupt or
    /// invalid stored override, naming the workspace.
    pub fn for_workspace(
        store: &Store,
        workspace: &Path,
        hidden: &[PathBuf],
    ) -> Result<PolicyBuilder, OverrideError> {
        let (ws, overrides) = WorkspaceOverrides::for_path(store, workspace)?
            .ok_or_else(|| OverrideError::NotAWorkspace(workspace.to_path_buf()))?;
        let mut builder = SandboxPolicy::builder();
        for h in hidden {
            builder = builder.hide(h);
        }
        Ok(overrides.apply_to(builder, Path::new(&ws.path)))
    }
}

#[cfg(test)]
#[path = "overrides_tests.rs"]
mod tests;
