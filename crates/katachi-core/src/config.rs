//! The agent's config file, `config.toml` in the config folder. Every key is optional; unknown keys
//! are an error (a typo must not silently change security settings).
//!
//! ```toml
//! [keystore]
//! # "keychain" (default): the OS keychain. "file": a file sealed with a fingerprint-only key, for
//! # headless machines without a keychain; weaker, and reported as such everywhere.
//! backend = "keychain"
//!
//! [notifications]
//! # Desktop notifications from the tray app (connected, disconnected, sign-in needed). Default on.
//! enabled = true
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest config file read; anything bigger is not a hand-written config.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Errors reading the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape; the message includes line and column.
    #[error("config {path} is invalid: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// The file is too large to be a config.
    #[error("config {path} is {size} bytes, over the {MAX_CONFIG_BYTES}-byte limit")]
    TooLarge {
        /// The config file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// Where the keychain secret lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeystoreBackend {
    /// The OS keychain (Secret Service, macOS Keychain, Windows Credential Manager).
    #[default]
    Keychain,
    /// The opt-in file keystore (weaker).
    File,
}

/// `[keystore]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoreConfig {
    /// Which keystore to use.
    #[serde(default)]
    pub backend: KeystoreBackend,
}

/// `[notifications]` section: the tray app's desktop notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Whether the tray app shows desktop notifications (default: yes).
    #[serde(default = "notifications_on")]
    pub enabled: bool,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The default of [`NotificationsConfig::enabled`].
fn notifications_on() -> bool {
    true
}

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Keystore settings.
    #[serde(default)]
    pub keystore: KeystoreConfig,
    /// Desktop notification settings.
    #[serde(default)]
    pub notifications: NotificationsConfig,
}

impl Config {
    /// Reads the config; a missing file gives the defaults.
    ///
    /// # Errors
    /// [`ConfigError`] for an unreadable, oversized or invalid file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(read_err(e)),
        };
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_config_gives_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(&tmp.path().join("none.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn notifications_are_on_unless_the_config_turns_them_off() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "").unwrap();
        assert!(Config::load(&p).unwrap().notifications.enabled);
        std::fs::write(&p, "[notifications]\nenabled = false\n").unwrap();
        assert!(!Config::load(&p).unwrap().notifications.enabled);
    }

    #[test]
    fn file_keystore_is_opt_in() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("config.toml");
        std::fs::write(&p, "[keystore]\nbackend = \"file\"\n").unwrap();
        assert_eq!(
            Config::load(&p).unwrap().keystore.backend,
            KeystoreBackend::File
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors_with_location() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("config.toml");
        for bad in [
            "[keystore]\nbakend = \"file\"\n",
            "[keystore]\nbackend = \"plaintext\"\n",
            "not toml [",
        ] {
            std::fs::write(&p, bad).unwrap();
            let err = Config::load(&p).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{bad}: {err}");
        }
        std::fs::write(&p, "[keystore]\nbakend = 1\n").unwrap();
        assert!(Config::load(&p).unwrap_err().to_string().contains("line"));
    }

    #[test]
    fn oversized_config_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("config.toml");
        std::fs::write(&p, "#".repeat(70_000)).unwrap();
        assert!(matches!(
            Config::load(&p),
            Err(ConfigError::TooLarge { .. })
        ));
    }
}
