//! What the window reads and writes through `katachi-core` directly, with no running agent: the
//! sandbox self-test, the audit ledger, AI provider API keys, the relay reachability check and the
//! window's own settings.
//!
//! # Secrets
//! An API key travels one way only: from the webview into the keychain ([`set_api_key`]). Reading
//! back gives "set" or "not set" ([`api_key_states`]), never the key.

use std::path::{Path, PathBuf};

use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::relay_link::reach::{check_relay_reachable, RelayReachError};
use katachi_core::sandbox::{self_test, Sandbox, SelfTestReport};
use katachi_core::secret::SecretBytes;
use katachi_core::store::{AuditKey, AuditRecord, WorkspaceEgress};
use katachi_core::{AgentHome, KatachiDirs};
use serde::{Deserialize, Serialize};

use super::connect::relay_url;
use super::ipc_error::{IpcCode, IpcError};

/// The AI providers whose keys the Settings view always lists (more when settings name others).
pub const PROVIDERS: [&str; 3] = ["anthropic", "openai", "google"];
/// Longest API key accepted from the webview.
const MAX_KEY_LEN: usize = 4096;

/// What the relay check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayCheck {
    /// The relay, normalised.
    pub relay: String,
    /// The HTTP status it answered with.
    pub http_status: u16,
}

/// Checks that `relay` answers over HTTPS with `ca_pem` pinned, before a sign-in starts.
///
/// # Errors
/// [`IpcCode::InvalidInput`] for a bad URL or CA, [`IpcCode::RelayUnreachable`] with the reason.
pub async fn check_relay(relay: &str, ca_pem: Option<&str>) -> Result<RelayCheck, IpcError> {
    let relay = relay_url(relay)?;
    match check_relay_reachable(&relay, ca_pem).await {
        Ok(http_status) => Ok(RelayCheck {
            relay: relay.as_str().to_owned(),
            http_status,
        }),
        Err(err @ RelayReachError::Http(_)) => Err(IpcError::invalid(err.to_string())),
        Err(err @ RelayReachError::Unreachable { .. }) => {
            Err(IpcError::new(IpcCode::RelayUnreachable, err.to_string()))
        }
    }
}

/// Runs the sandbox's escape checks on this machine (the same code as `katachi sandbox test`).
///
/// # Errors
/// [`IpcCode::Sandbox`] when the test cannot be set up.
pub async fn sandbox_self_test() -> Result<SelfTestReport, IpcError> {
    self_test(&Sandbox::probe())
        .await
        .map_err(|err| IpcError::new(IpcCode::Sandbox, format!("the self-test cannot run: {err}")))
}

/// The Activity view: bytes out per workspace and the newest records.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    /// Calls and bytes that left the machine, per workspace.
    pub egress: Vec<WorkspaceEgress>,
    /// Sum of `egress[].bytes_out`.
    pub total_bytes_out: i64,
    /// The newest audit records, newest first.
    pub records: Vec<ActivityRecord>,
}

/// One audit record as the Activity view shows it (no user or browser session ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityRecord {
    /// Sequence number.
    pub seq: i64,
    /// When (unix seconds).
    pub at: i64,
    /// `cli`, `tray` or `browser`.
    pub actor: String,
    /// What (`workspace.add`, `file.read`…).
    pub action: String,
    /// The workspace at the time.
    pub workspace_path: Option<String>,
    /// `ok` or the error code.
    pub result: String,
    /// Bytes that left the machine.
    pub bytes_out: i64,
}

impl From<AuditRecord> for ActivityRecord {
    fn from(record: AuditRecord) -> Self {
        Self {
            seq: record.seq,
            at: record.at,
            actor: record.actor,
            action: record.action,
            workspace_path: record.workspace_path,
            result: record.result,
            bytes_out: record.bytes_out,
        }
    }
}

/// Reads the audit ledger from the store.
///
/// # Errors
/// [`IpcCode::Keychain`] when the agent's secrets cannot be opened, [`IpcCode::Store`] otherwise.
pub fn activity(dirs: &KatachiDirs, limit: u32) -> Result<Activity, IpcError> {
    let home = open_home(dirs)?;
    let store = home.store().map_err(store_error)?;
    let key = AuditKey::derive(home.machine_key());
    let log = store.audit(&key);
    let egress = log.egress_by_workspace().map_err(store_error)?;
    Ok(Activity {
        total_bytes_out: egress.iter().map(|e| e.bytes_out).sum(),
        records: log
            .recent(limit.clamp(1, 500))
            .map_err(store_error)?
            .into_iter()
            .map(ActivityRecord::from)
            .collect(),
        egress,
    })
}

/// Whether a key is stored, per key name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyState {
    /// The key's name: a provider's, or one the AI provider settings name (e.g. `ollama`).
    pub provider: String,
    /// `true` when a key is stored (the key itself never leaves the keychain).
    pub set: bool,
}

/// Which keys are stored: the providers' and every key the AI provider settings name.
///
/// # Errors
/// [`IpcCode::Keychain`].
pub fn api_key_states(dirs: &KatachiDirs) -> Result<Vec<ApiKeyState>, IpcError> {
    let home = open_home(dirs)?;
    let mut names: Vec<String> = PROVIDERS.iter().map(|p| (*p).to_owned()).collect();
    // the keys the settings name; settings that cannot be read leave the providers' list
    let used = home
        .store()
        .ok()
        .and_then(|store| katachi_core::ai::settings_scope::overview(&store).ok())
        .map(|overview| overview.key_names())
        .unwrap_or_default();
    for name in used {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let keys = home.api_keys();
    names
        .into_iter()
        .map(|provider| {
            let set = keys.get(&provider).map_err(keychain_error)?.is_some();
            Ok(ApiKeyState { provider, set })
        })
        .collect()
}

/// Stores `key` for `provider` in the keychain.
///
/// # Errors
/// [`IpcCode::InvalidInput`] for an unknown provider or an empty or huge key,
/// [`IpcCode::Keychain`] when it cannot be stored.
pub fn set_api_key(dirs: &KatachiDirs, provider: &str, key: String) -> Result<(), IpcError> {
    let provider = known_provider(provider)?;
    let key = SecretBytes::new(key.trim().as_bytes().to_vec());
    if key.expose().is_empty() || key.expose().len() > MAX_KEY_LEN {
        return Err(IpcError::invalid("an API key is 1 to 4096 characters"));
    }
    open_home(dirs)?
        .api_keys()
        .set(provider, &key)
        .map_err(keychain_error)
}

/// Removes the key of `provider`; `false` when none was stored.
///
/// # Errors
/// [`IpcCode::InvalidInput`] for an unknown provider, [`IpcCode::Keychain`].
pub fn clear_api_key(dirs: &KatachiDirs, provider: &str) -> Result<bool, IpcError> {
    let provider = known_provider(provider)?;
    open_home(dirs)?
        .api_keys()
        .delete(provider)
        .map_err(keychain_error)
}

/// The settings the window shows that the agent keeps in its config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSettings {
    /// Desktop notifications of the tray (connected, disconnected, sign-in needed…):
    /// `[notifications] enabled` in `config.toml`, which the tray reads before each one.
    pub notifications: bool,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            notifications: true,
        }
    }
}

/// Where the settings live: the agent's `config.toml`.
pub fn settings_path(dirs: &KatachiDirs) -> PathBuf {
    dirs.config_file()
}

/// The settings in the config file at `path`; the defaults when there is none.
///
/// # Errors
/// [`IpcCode::Window`] when the file exists but cannot be read or parsed.
pub fn load_settings(path: &Path) -> Result<AppSettings, IpcError> {
    let config = katachi_core::Config::load(path)
        .map_err(|err| IpcError::new(IpcCode::Window, err.to_string()))?;
    Ok(AppSettings {
        notifications: config.notifications.enabled,
    })
}

/// Saves the settings into the config file at `path`, keeping everything else in it.
///
/// # Errors
/// [`IpcCode::Window`] when the file is invalid or cannot be written.
pub fn save_settings(path: &Path, settings: AppSettings) -> Result<(), IpcError> {
    katachi_core::Config::set_notifications(path, settings.notifications)
        .map_err(|err| IpcError::new(IpcCode::Window, err.to_string()))
}

/// A key name: a provider's, or one AI settings use (the keychain's naming rule: `a-z0-9-_`).
fn known_provider(provider: &str) -> Result<&str, IpcError> {
    katachi_core::vault::check_key_name(provider)
        .map(|()| provider)
        .map_err(|err| IpcError::invalid(err.to_string()))
}

/// Opens the agent's secrets and store keys in `dirs`.
///
/// # Errors
/// [`IpcCode::Keychain`] with why they cannot be opened.
pub(crate) fn open_home(dirs: &KatachiDirs) -> Result<AgentHome, IpcError> {
    AgentHome::open(dirs.clone(), &SystemFingerprint).map_err(|err| {
        IpcError::new(
            IpcCode::Keychain,
            format!("cannot open the agent's secrets: {err}"),
        )
    })
}

fn keychain_error(err: impl std::fmt::Display) -> IpcError {
    IpcError::new(IpcCode::Keychain, err.to_string())
}

fn store_error(err: impl std::fmt::Display) -> IpcError {
    IpcError::new(IpcCode::Store, format!("cannot read the store: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_notifications_on_and_round_trip_through_the_config_the_tray_reads(
    ) -> Result<(), IpcError> {
        let dir = tempfile::tempdir().map_err(|e| IpcError::invalid(e.to_string()))?;
        let path = dir.path().join("config").join("config.toml");
        assert_eq!(load_settings(&path)?, AppSettings::default());
        assert!(AppSettings::default().notifications);
        save_settings(
            &path,
            AppSettings {
                notifications: false,
            },
        )?;
        assert_eq!(
            load_settings(&path)?,
            AppSettings {
                notifications: false
            }
        );
        // What the tray reads before each notification.
        let config =
            katachi_core::Config::load(&path).map_err(|e| IpcError::invalid(e.to_string()))?;
        assert!(!config.notifications.enabled);
        Ok(())
    }

    #[test]
    fn a_corrupt_settings_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "{not toml").unwrap();
        let err = load_settings(&path).unwrap_err();
        assert_eq!(err.code, IpcCode::Window);
        assert!(err.message.contains("config.toml"), "{}", err.message);
        assert!(save_settings(&path, AppSettings::default()).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not toml");
    }

    #[test]
    fn only_key_names_the_keychain_accepts_are_used() {
        assert_eq!(known_provider("openai").ok(), Some("openai"));
        let err = known_provider("api-key:../x").unwrap_err();
        assert_eq!(err.code, IpcCode::InvalidInput);
    }

    #[tokio::test]
    async fn a_relay_check_of_a_bad_url_is_invalid_input_and_of_a_closed_port_unreachable() {
        let err = check_relay("http://relay.example", None).await.unwrap_err();
        assert_eq!(err.code, IpcCode::InvalidInput);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let err = check_relay(&format!("https://127.0.0.1:{port}"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, IpcCode::RelayUnreachable, "{}", err.message);
    }
}
