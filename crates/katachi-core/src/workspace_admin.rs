//! The local user's workspace and sandbox-policy changes, one implementation for every front end:
//! `katachi workspace add|rm|ls` and `katachi sandbox policy set|reset` when no agent runs, the
//! control socket ([`crate::control`]) and the app when one does.
//!
//! # Contract
//! - Each change is written to the store, recorded in the audit log (by the [`Actor`] the caller
//!   names) and queued as an activity event for the relay, in that order. The change itself is
//!   done once the store has it: failing to queue the event is logged as a warning, not an error.
//! - The running agent's API reads the store on every request, so a change made here takes effect
//!   at once, with no restart.
//! - The functions are blocking (SQLite, filesystem): async callers run them on a blocking thread.
//!
//! # Not here
//! Reading a workspace's effective policy (`katachi sandbox policy show`) stays with its caller:
//! it changes nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::activity::enqueue_activity;
use crate::agent_home::AgentHome;
use crate::sandbox::{LimitOverrides, OverrideError, WorkspaceOverrides};
use crate::store::{
    Actor, AddOutcome, AuditEntry, AuditError, AuditKey, Store, StoreError, Workspace,
    WorkspaceError,
};

/// Why a workspace or policy change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The folder cannot be allowed or removed (missing, not a folder, protected, not allowed…);
    /// the message says what to do.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The folder is in no allowed workspace, or its stored or new overrides are not valid.
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// The store could not be opened or written (locked, damaged, another machine's).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change was made but could not be recorded in the audit log (its sealed end was
    /// tampered with, or the store fails): run `katachi audit verify`.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl AdminError {
    /// A stable dotted code for clients that branch on the error (the control socket sends it).
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Workspace(e) => workspace_code(e),
            AdminError::Override(OverrideError::NotAWorkspace(_)) => "workspace.not_allowed",
            AdminError::Override(OverrideError::Workspace(e)) => workspace_code(e),
            AdminError::Override(OverrideError::Store(_)) | AdminError::Store(_) => {
                "store.unavailable"
            }
            AdminError::Override(OverrideError::Corrupt { .. } | OverrideError::Invalid { .. }) => {
                "sandbox.policy_invalid"
            }
            AdminError::Audit(_) => "audit.unavailable",
        }
    }
}

/// The stable code of a [`WorkspaceError`] (the same words `katachi --json` prints).
pub fn workspace_code(e: &WorkspaceError) -> &'static str {
    match e {
        WorkspaceError::NotFound(_) => "workspace.not_found",
        WorkspaceError::NotADirectory(_) => "workspace.not_a_directory",
        WorkspaceError::Inaccessible { .. } => "workspace.inaccessible",
        WorkspaceError::NotUtf8(_) => "workspace.not_utf8",
        WorkspaceError::FilesystemRoot(_) => "workspace.filesystem_root",
        WorkspaceError::Protected { .. } => "workspace.protected",
        WorkspaceError::NotAllowed(_) => "workspace.not_allowed",
        WorkspaceError::Relative(_) => "workspace.relative",
        WorkspaceError::Store(_) => "store.unavailable",
    }
}

/// An allowed workspace as listed, with whether its folder is still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedWorkspace {
    /// Stable id.
    pub id: i64,
    /// Canonical absolute path.
    pub path: String,
    /// When it was added (unix seconds).
    pub added_at: i64,
    /// Whether the folder still exists (`false`: shown as "missing"; the API refuses it).
    pub exists: bool,
}

/// A change to one workspace's sandbox overrides: what `katachi sandbox policy set` takes.
/// Commands and hosts are added to the stored ones; set limits replace stored ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// The allowed workspace, or a folder inside it.
    pub workspace: PathBuf,
    /// Commands to allow (plain names, resolved through the trusted PATH).
    #[serde(default)]
    pub allow_commands: Vec<String>,
    /// Hosts to allow (`host[:port]`, `*.suffix`, an IP literal).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// `Some(true)` lets commands read the `.env*` files, `Some(false)` hides them again,
    /// `None` keeps the stored choice.
    #[serde(default)]
    pub env_files: Option<bool>,
    /// Consent to runs requested from the browser where the sandbox is not enforced (Windows);
    /// only ever added here, [`reset_policy`] removes it.
    #[serde(default)]
    pub allow_unsandboxed: bool,
    /// Limits to change.
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// What [`set_policy`] stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    /// The workspace's path.
    pub workspace: String,
    /// Its overrides now.
    pub overrides: WorkspaceOverrides,
}

/// What [`reset_policy`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReset {
    /// The workspace's path.
    pub workspace: String,
    /// Whether it had overrides (now removed).
    pub removed: bool,
}

/// Allows the folder `path` (made absolute, symlinks resolved); absorbs allowed folders inside it.
///
/// # Errors
/// [`AdminError::Workspace`] naming what is wrong with the folder; store and audit failures.
pub fn add_workspace(
    home: &AgentHome,
    actor: Actor,
    path: &Path,
) -> Result<AddOutcome, AdminError> {
    let store = home.store()?;
    let outcome = store.workspaces().add(path, &home.protected_dirs())?;
    if let AddOutcome::Added {
        workspace,
        absorbed,
    } = &outcome
    {
        // the folders it replaces are no longer separate workspaces
        let entry = AuditEntry::new(actor, "workspace.add")
            .in_workspace(workspace)
            .with_paths(absorbed.iter().map(|w| w.path.clone()));
        store
            .audit(&AuditKey::derive(home.machine_key()))
            .append(&entry)?;
        queue_activity(&store, "workspace.added", &workspace.path);
    }
    Ok(outcome)
}

/// Stops allowing the workspace at `path` (as listed; it may be gone from disk).
///
/// # Errors
/// [`WorkspaceError::NotAllowed`] (in [`AdminError::Workspace`]) when it is not an allowed
/// workspace; store and audit failures.
pub fn remove_workspace(
    home: &AgentHome,
    actor: Actor,
    path: &Path,
) -> Result<Workspace, AdminError> {
    let store = home.store()?;
    let removed = store.workspaces().remove(path)?;
    store
        .audit(&AuditKey::derive(home.machine_key()))
        .append(&AuditEntry::new(actor, "workspace.remove").in_workspace(&removed))?;
    queue_activity(&store, "workspace.removed", &removed.path);
    Ok(removed)
}

/// The allowed workspaces, oldest first, each with whether its folder still exists.
///
/// # Errors
/// Store failures.
pub fn list_workspaces(home: &AgentHome) -> Result<Vec<ListedWorkspace>, AdminError> {
    let store = home.store()?;
    let listed = store
        .workspaces()
        .list()?
        .into_iter()
        .map(|w| ListedWorkspace {
            exists: Path::new(&w.path).is_dir(),
            id: w.id,
            path: w.path,
            added_at: w.added_at,
        })
        .collect();
    Ok(listed)
}

/// Adds `change` to the stored overrides of the workspace holding `change.workspace`.
///
/// # Errors
/// [`OverrideError::NotAWorkspace`] when the folder is in no allowed workspace;
/// [`OverrideError::Invalid`] for a command that does not resolve or a bad host (nothing is
/// stored); store and audit failures.
pub fn set_policy(
    home: &AgentHome,
    actor: Actor,
    change: &PolicyChange,
) -> Result<PolicySet, AdminError> {
    let store = home.store()?;
    let ws = workspace_of(&store, &change.workspace)?;
    let mut overrides = WorkspaceOverrides::load(&store, &ws)?;
    let newer = WorkspaceOverrides {
        allow_commands: change.allow_commands.clone(),
        allow_hosts: change.allow_hosts.clone(),
        allow_env_files: false,
        limits: change.limits,
        allow_unsandboxed: change.allow_unsandboxed,
    };
    overrides.merge(&newer, change.env_files);
    overrides.save(&store, &ws)?;
    audit_policy(home, &store, actor, &ws, "sandbox.policy.set", &overrides)?;
    Ok(PolicySet {
        workspace: ws.path,
        overrides,
    })
}

/// Removes every override of the workspace holding `dir` (back to the default policy). A stored
/// value that no longer reads can still be reset.
///
/// # Errors
/// [`OverrideError::NotAWorkspace`]; store and audit failures.
pub fn reset_policy(home: &AgentHome, actor: Actor, dir: &Path) -> Result<PolicyReset, AdminError> {
    let store = home.store()?;
    let ws = workspace_of(&store, dir)?;
    let removed = store.sandbox_overrides().reset(ws.id)?;
    audit_policy(
        home,
        &store,
        actor,
        &ws,
        "sandbox.policy.reset",
        &WorkspaceOverrides::default(),
    )?;
    Ok(PolicyReset {
        workspace: ws.path,
        removed,
    })
}

/// The allowed workspace holding `dir`.
///
/// # Errors
/// [`OverrideError::NotAWorkspace`]; store failures.
pub fn workspace_of(store: &Store, dir: &Path) -> Result<Workspace, AdminError> {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    store
        .workspaces()
        .containing(&canonical)?
        .ok_or_else(|| OverrideError::NotAWorkspace(dir.to_path_buf()).into())
}

fn audit_policy(
    home: &AgentHome,
    store: &Store,
    actor: Actor,
    ws: &Workspace,
    action: &str,
    overrides: &WorkspaceOverrides,
) -> Result<(), AdminError> {
    let detail = serde_json::to_string(overrides).unwrap_or_default();
    store.audit(&AuditKey::derive(home.machine_key())).append(
        &AuditEntry::new(actor, action)
            .in_workspace(ws)
            .with_detail(detail),
    )?;
    Ok(())
}

/// Queues an activity event for the relay (sent by the running agent, kept until acknowledged).
/// The change itself is done: failing to queue is a warning, not an error.
fn queue_activity(store: &Store, kind: &str, path: &str) {
    let payload = serde_json::json!({ "path": path });
    if let Err(e) = enqueue_activity(&store.outbox(), kind, &payload) {
        tracing::warn!("cannot queue the {kind} event for the relay: {e}");
    }
}
