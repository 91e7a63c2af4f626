//! Where AI settings apply and what is set where: the default or one allowed workspace (found by
//! its folder), the overview of every scope, and a workspace's reset to the default. The CLI
//! (`katachi ai use|show|reset`) and the tray window's Settings call these same functions.
//!
//! # Guarantees
//! - Settings are only ever set for the default or an allowed workspace: a folder that is not
//!   one is refused with [`SettingsError::NotAWorkspace`], never silently stored.
//! - Nothing here reads or returns an API key: [`key_stored`] says whether one is stored.

use std::path::Path;

use serde::Serialize;

use super::settings::{AiSettings, SettingsError};
use crate::store::{Store, Workspace, DEFAULT_AI_SETTINGS};
use crate::AgentHome;

/// Where settings apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsScope {
    /// Every workspace without its own settings.
    Default,
    /// One allowed workspace (its id).
    Workspace(i64),
}

impl SettingsScope {
    /// The settings row this scope is kept in.
    fn row(self) -> i64 {
        match self {
            SettingsScope::Default => DEFAULT_AI_SETTINGS,
            SettingsScope::Workspace(id) => id,
        }
    }
}

/// One allowed workspace and its own settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceAiSettings {
    /// The workspace's id.
    pub id: i64,
    /// Its canonical folder.
    pub path: String,
    /// Its own settings; `None` when it uses the default.
    pub own: Option<AiSettings>,
}

/// What is set where: the default and each allowed workspace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsOverview {
    /// The default; `None` when none is set (or the stored one no longer passes the checks).
    pub default: Option<AiSettings>,
    /// Every allowed workspace, with its own settings if it has some.
    pub workspaces: Vec<WorkspaceAiSettings>,
}

impl SettingsOverview {
    /// The key names the settings use, each once, in order of first use.
    pub fn key_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let used = self
            .default
            .iter()
            .chain(self.workspaces.iter().filter_map(|w| w.own.as_ref()));
        for settings in used {
            if !names.contains(&settings.key_name) {
                names.push(settings.key_name.clone());
            }
        }
        names
    }
}

/// The default and each allowed workspace's own settings. A stored row that no longer passes
/// the checks is shown as not set (using it is refused with the reason, see
/// [`AiSettings::for_workspace`]).
///
/// # Errors
/// [`SettingsError::Store`] when the store cannot be read.
pub fn overview(store: &Store) -> Result<SettingsOverview, SettingsError> {
    let workspaces = store
        .workspaces()
        .list()
        .map_err(|e| SettingsError::Store(e.to_string()))?;
    let default = stored(store, DEFAULT_AI_SETTINGS)?;
    let workspaces = workspaces
        .into_iter()
        .map(|ws| {
            Ok(WorkspaceAiSettings {
                own: stored(store, ws.id)?.map(|mut s| {
                    s.own = true;
                    s
                }),
                id: ws.id,
                path: ws.path,
            })
        })
        .collect::<Result<_, SettingsError>>()?;
    Ok(SettingsOverview {
        default,
        workspaces,
    })
}

/// The settings stored in exactly row `row` (no fallback), `None` when unset or no longer valid.
fn stored(store: &Store, row: i64) -> Result<Option<AiSettings>, SettingsError> {
    let Some(r) = store.ai_settings().get(row)? else {
        return Ok(None);
    };
    Ok(AiSettings::check(
        &r.provider,
        &r.model,
        r.base_url.as_deref(),
        r.key_name.as_deref(),
    )
    .ok())
}

/// Stores `settings` for `scope`.
///
/// # Errors
/// [`SettingsError::Store`] when the store fails.
pub fn set(
    store: &Store,
    scope: SettingsScope,
    settings: &AiSettings,
) -> Result<(), SettingsError> {
    settings.save(store, scope.row())
}

/// Makes workspace `workspace_id` use the default again; `false` when it already did.
///
/// # Errors
/// [`SettingsError::Store`] when the store fails.
pub fn reset(store: &Store, workspace_id: i64) -> Result<bool, SettingsError> {
    Ok(store.ai_settings().clear(workspace_id)?)
}

/// The allowed workspace at `path`: the stored folder as given, else the folder `path` resolves
/// to (so a relative path or a symlink works while the folder exists, and a workspace whose
/// folder is gone can still be named by its stored path).
///
/// # Errors
/// [`SettingsError::NotAWorkspace`] when no allowed workspace is there;
/// [`SettingsError::Store`] when the store fails.
pub fn workspace_at(store: &Store, path: &Path) -> Result<Workspace, SettingsError> {
    let list = store
        .workspaces()
        .list()
        .map_err(|e| SettingsError::Store(e.to_string()))?;
    let given = path.to_string_lossy();
    if let Some(ws) = list.iter().find(|w| w.path == given) {
        return Ok(ws.clone());
    }
    let canonical = std::fs::canonicalize(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| given.clone().into_owned());
    list.into_iter()
        .find(|w| w.path == canonical)
        .ok_or(SettingsError::NotAWorkspace(canonical))
}

/// Whether an API key named `name` is stored; `None` when the keychain cannot say (locked,
/// missing, or the entry does not open on this machine). The key itself is dropped at once.
pub fn key_stored(home: &AgentHome, name: &str) -> Option<bool> {
    home.api_keys().get(name).ok().map(|k| k.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &Path) -> Store {
        Store::open(
            &dir.join("s.db"),
            &crate::vault::DerivedKey::from_bytes([4; 32], crate::vault::Purpose::STORE),
        )
        .unwrap()
    }

    #[test]
    fn the_overview_shows_the_default_and_which_workspaces_have_their_own() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_in(tmp.path());
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir(dir).unwrap();
            store.workspaces().add(dir, &[]).unwrap();
        }
        let empty = overview(&store).unwrap();
        assert_eq!(empty.default, None);
        assert!(empty.workspaces.iter().all(|w| w.own.is_none()));
        let default = AiSettings::check("anthropic", "claude-x", None, None).unwrap();
        set(&store, SettingsScope::Default, &default).unwrap();
        let ws_a = workspace_at(&store, &a).unwrap();
        let own = AiSettings::check(
            "openai",
            "qwen",
            Some("http://127.0.0.1:11434/v1"),
            Some("ollama"),
        )
        .unwrap();
        set(&store, SettingsScope::Workspace(ws_a.id), &own).unwrap();
        let shown = overview(&store).unwrap();
        assert_eq!(shown.default, Some(default));
        let own_a = shown.workspaces.iter().find(|w| w.id == ws_a.id).unwrap();
        assert_eq!(
            own_a.own.as_ref().map(|s| (s.model.as_str(), s.own)),
            Some(("qwen", true))
        );
        assert!(shown
            .workspaces
            .iter()
            .filter(|w| w.id != ws_a.id)
            .all(|w| w.own.is_none()));
        assert_eq!(shown.key_names(), ["anthropic", "ollama"]);
        assert!(reset(&store, ws_a.id).unwrap());
        assert!(!reset(&store, ws_a.id).unwrap());
        assert!(overview(&store)
            .unwrap()
            .workspaces
            .iter()
            .all(|w| w.own.is_none()));
    }

    #[test]
    fn a_folder_that_is_not_an_allowed_workspace_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_in(tmp.path());
        let ws = tmp.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        store.workspaces().add(&ws, &[]).unwrap();
        // found by a path that resolves to it, and by its stored path once the folder is gone
        let found = workspace_at(&store, &ws.join("..").join("ws")).unwrap();
        std::fs::remove_dir(&ws).unwrap();
        assert_eq!(workspace_at(&store, Path::new(&found.path)).unwrap(), found);
        let err = workspace_at(&store, tmp.path()).unwrap_err();
        assert!(matches!(err, SettingsError::NotAWorkspace(_)), "{err}");
        assert_eq!(err.code(), "workspace.not_allowed");
    }
}
