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
    /// The file could not be written.
    #[error("cannot write config {path}: {source}")]
    Write {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
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

impl Config {
    /// Turns the tray app's desktop notifications on or off in the config file at `path`: only
    /// `[notifications] enabled` changes; the user's other keys, comments and layout are kept.
    /// The file is checked as a whole first (an invalid one is refused, never overwritten) and
    /// replaced atomically.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a file that does not parse as a config, [`ConfigError::Read`],
    /// [`ConfigError::TooLarge`], [`ConfigError::Write`].
    pub fn set_notifications(path: &Path, enabled: bool) -> Result<(), ConfigError> {
        Self::load(path)?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| invalid(e.to_string().trim().replace('\n', " ")))?;
        let table = doc
            .entry("notifications")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        let Some(table) = table.as_table_like_mut() else {
            return Err(invalid("`notifications` is not a table".to_owned()));
        };
        table.insert("enabled", toml_edit::value(enabled));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ConfigError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        }
        crate::atomic_file::write_private_atomically(path, doc.to_string().as_bytes()).map_err(
            |e| ConfigError::Write {
                path: path.to_path_buf(),
                source: e.source,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_switched_keeping_the_users_comments_and_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("config.toml");
        Config::set_notifications(&p, false).unwrap();
        assert!(!Config::load(&p).unwrap().notifications.enabled);
        std::fs::write(
            &p,
            "# mine\n[keystore]\nbackend = \"file\" # weaker\n\n[notifications]\nenabled = false\n",
        )
        .unwrap();
        Config::set_notifications(&p, true).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("# mine") && text.contains("# weaker"),
            "{text}"
        );
        let config = Config::load(&p).unwrap();
        assert!(config.notifications.enabled);
        assert_eq!(config.keystore.backend, KeystoreBackend::File);
        // An invalid file is refused and left as it was.
        std::fs::write(&p, "[keystore]\nbackend = 3\n").unwrap();
        assert!(matches!(
            Config::set_notifications(&p, false),
            Err(ConfigError::Invalid { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "[keystore]\nbackend = 3\n"
        );
    }

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
