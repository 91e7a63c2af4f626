//! The Workspaces view's changes, made through `katachi_core::workspace_admin` (store + audit by
//! the tray's actor + activity event) — the one way every front end changes workspaces. The
//! running agent reads the store on every request, so each change applies to it at once.
//!
//! These functions block (SQLite, keychain): callers run them on a blocking thread.

#[cfg(test)]
#[path = "workspaces_tests.rs"]
mod tests;

use std::path::Path;

use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::sandbox::WorkspaceOverrides;
use katachi_core::store::Actor;
use katachi_core::workspace_admin::{self, AdminError, PolicyChange};
use katachi_core::{AgentHome, KatachiDirs};

use super::ipc_error::{IpcCode, IpcError};
use super::port::{WorkspaceItem, WorkspacePolicy};

/// The allowed folders, each with its allowed commands and hosts.
///
/// # Errors
/// [`IpcCode::Keychain`] or [`IpcCode::Store`].
pub fn list(home: &AgentHome) -> Result<Vec<WorkspaceItem>, IpcError> {
    let store = home
        .store()
        .map_err(|e| IpcError::new(IpcCode::Store, e.to_string()))?;
    workspace_admin::list_workspaces(home)
        .map_err(admin_error)?
        .into_iter()
        .map(|listed| {
            let overrides = workspace_admin::workspace_of(&store, Path::new(&listed.path))
                .and_then(|ws| WorkspaceOverrides::load(&store, &ws).map_err(AdminError::from))
                .map_err(admin_error)?;
            Ok(WorkspaceItem {
                path: listed.path,
                exists: listed.exists,
                allowed_commands: overrides.allow_commands,
                allowed_hosts: overrides.allow_hosts,
            })
        })
        .collect()
}

/// Allows `path`; the list after the change.
///
/// # Errors
/// [`IpcCode::InvalidInput`] for a folder that cannot be allowed (missing, protected…), with the
/// reason; [`IpcCode::Keychain`] or [`IpcCode::Store`].
pub fn add(home: &AgentHome, path: &str) -> Result<Vec<WorkspaceItem>, IpcError> {
    // already allowed (itself or a folder around it) is no error: the list shows it
    workspace_admin::add_workspace(home, Actor::Tray, Path::new(path)).map_err(admin_error)?;
    list(home)
}

/// Stops allowing `path`; the list after the change.
///
/// # Errors
/// As [`add`].
pub fn remove(home: &AgentHome, path: &str) -> Result<Vec<WorkspaceItem>, IpcError> {
    workspace_admin::remove_workspace(home, Actor::Tray, Path::new(path)).map_err(admin_error)?;
    list(home)
}

/// Replaces the allowed commands and hosts of a workspace, keeping its other overrides (`.env`
/// files, limits, the unsandboxed consent); the list after the change.
///
/// # Errors
/// As [`add`]; an invalid command or host is [`IpcCode::InvalidInput`].
pub fn set_policy(
    home: &AgentHome,
    policy: &WorkspacePolicy,
) -> Result<Vec<WorkspaceItem>, IpcError> {
    let dir = Path::new(&policy.path);
    let store = home
        .store()
        .map_err(|e| IpcError::new(IpcCode::Store, e.to_string()))?;
    let ws = workspace_admin::workspace_of(&store, dir).map_err(admin_error)?;
    let kept =
        WorkspaceOverrides::load(&store, &ws).map_err(|e| admin_error(AdminError::from(e)))?;
    // `set` adds to what is stored: start from none so the lists are replaced, then put back the rest
    workspace_admin::reset_policy(home, Actor::Tray, dir).map_err(admin_error)?;
    let change = PolicyChange {
        workspace: dir.to_path_buf(),
        allow_commands: policy.allowed_commands.clone(),
        allow_hosts: policy.allowed_hosts.clone(),
        env_files: Some(kept.allow_env_files),
        allow_unsandboxed: kept.allow_unsandboxed,
        limits: kept.limits,
    };
    if let Err(err) = workspace_admin::set_policy(home, Actor::Tray, &change) {
        // an invalid entry: put the previous overrides back so nothing is lost
        let _ = kept.save(&store, &ws);
        return Err(admin_error(err));
    }
    list(home)
}

/// Opens this user's agent home (its keychain entry and store).
///
/// # Errors
/// [`IpcCode::Keychain`].
pub fn open_home(dirs: &KatachiDirs) -> Result<AgentHome, IpcError> {
    AgentHome::open(dirs.clone(), &SystemFingerprint).map_err(|err| {
        IpcError::new(
            IpcCode::Keychain,
            format!("cannot open the agent's secrets: {err}"),
        )
    })
}

/// A workspace error the user can fix is invalid input; the store's are store errors.
fn admin_error(err: AdminError) -> IpcError {
    let code = match err.code() {
        "store.unavailable" | "audit.unavailable" => IpcCode::Store,
        _ => IpcCode::InvalidInput,
    };
    IpcError::new(code, format!("{err} ({})", err.code()))
}
