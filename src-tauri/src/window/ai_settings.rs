//! The Settings view's "AI provider": the default provider, model, base URL and key name, and
//! each workspace's own choice or reset to the default — checked and saved by the same
//! `katachi-core` functions as `katachi ai use|show|reset` (`AiSettings::check`,
//! `ai::settings_scope`), in the agent's store, so the running agent uses a change from its next
//! turn.
//!
//! Nothing here reads an API key: the view names the key each choice uses, and the keys' "set" or
//! "not set" comes from `local::api_key_states`.

use std::path::Path;

use katachi_core::ai::settings::{AiSettings, SettingsError, PROVIDER_KINDS};
use katachi_core::ai::settings_scope::{self, SettingsOverview, SettingsScope};
use katachi_core::store::Store;
use katachi_core::KatachiDirs;
use serde::{Deserialize, Serialize};

use super::ipc_error::{IpcCode, IpcError};
use super::local::open_home;

/// What the AI provider section shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AiSettingsView {
    /// The provider kinds to choose from.
    pub providers: [&'static str; 2],
    /// The default and each workspace's own choice.
    #[serde(flatten)]
    pub overview: SettingsOverview,
}

/// A provider choice as the page sends it (blank optional fields count as not given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AiChoice {
    /// The workspace folder it is for; `None` (or blank) for the default.
    #[serde(default)]
    pub workspace: Option<String>,
    /// `openai` or `anthropic`.
    pub provider: String,
    /// The model name.
    pub model: String,
    /// Another endpoint: `https://…`, or `http://` to this machine only.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The keychain entry of the key, when not the provider's name.
    #[serde(default)]
    pub key_name: Option<String>,
}

/// The AI provider settings now.
///
/// # Errors
/// [`IpcCode::Keychain`] when the agent's secrets cannot be opened, [`IpcCode::Store`] otherwise.
pub fn ai_settings(dirs: &KatachiDirs) -> Result<AiSettingsView, IpcError> {
    view(&open_store(dirs)?)
}

/// Checks and saves `choice` for the default or its workspace.
///
/// # Errors
/// [`IpcCode::InvalidInput`] naming what is wrong (an unknown provider, a plain-http base URL to
/// another machine, a folder that is not an allowed workspace…); [`IpcCode::Store`].
pub fn set_ai_provider(dirs: &KatachiDirs, choice: AiChoice) -> Result<AiSettingsView, IpcError> {
    let settings = AiSettings::check(
        &choice.provider,
        &choice.model,
        non_blank(&choice.base_url),
        non_blank(&choice.key_name),
    )
    .map_err(settings_error)?;
    let store = open_store(dirs)?;
    let scope = match non_blank(&choice.workspace) {
        Some(path) => SettingsScope::Workspace(workspace_id(&store, path)?),
        None => SettingsScope::Default,
    };
    settings_scope::set(&store, scope, &settings).map_err(settings_error)?;
    view(&store)
}

/// Makes the workspace at `workspace` use the default provider again.
///
/// # Errors
/// [`IpcCode::InvalidInput`] for a folder that is not an allowed workspace; [`IpcCode::Store`].
pub fn reset_ai_provider(dirs: &KatachiDirs, workspace: &str) -> Result<AiSettingsView, IpcError> {
    let store = open_store(dirs)?;
    let id = workspace_id(&store, workspace)?;
    settings_scope::reset(&store, id).map_err(settings_error)?;
    view(&store)
}

fn view(store: &Store) -> Result<AiSettingsView, IpcError> {
    Ok(AiSettingsView {
        providers: PROVIDER_KINDS,
        overview: settings_scope::overview(store).map_err(settings_error)?,
    })
}

fn workspace_id(store: &Store, path: &str) -> Result<i64, IpcError> {
    settings_scope::workspace_at(store, Path::new(path))
        .map(|ws| ws.id)
        .map_err(settings_error)
}

fn open_store(dirs: &KatachiDirs) -> Result<Store, IpcError> {
    open_home(dirs)?
        .store()
        .map_err(|err| IpcError::new(IpcCode::Store, format!("cannot open the store: {err}")))
}

/// The settings' refusal as the page shows it: the sentence of the core, the code by kind.
fn settings_error(err: SettingsError) -> IpcError {
    let code = match err {
        SettingsError::Store(_) => IpcCode::Store,
        _ => IpcCode::InvalidInput,
    };
    IpcError::new(code, err.to_string())
}

fn non_blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}
