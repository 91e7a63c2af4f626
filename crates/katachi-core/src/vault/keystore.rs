//! Where secrets live: the OS keychain (Secret Service on Linux, Keychain on macOS, Credential
//! Manager on Windows), the opt-in file keystore, or memory (other crates' tests).
//!
//! A keystore maps an account name to a string value. Errors say which layer failed and how to fix
//! it; they never contain the value.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

/// Which kind of keystore holds the secrets; status surfaces report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeystoreKind {
    /// The OS keychain: the secret is protected by the user's login.
    OsKeychain,
    /// A file sealed with a fingerprint-only key: weaker, anyone with a copy of the disk *and* this
    /// machine's hardware identity can open it.
    File,
    /// Process memory only (tests).
    Memory,
}

impl KeystoreKind {
    /// True for keystores weaker than the OS keychain; `doctor` and every status surface warn.
    pub fn is_weaker(self) -> bool {
        !matches!(self, KeystoreKind::OsKeychain)
    }
}

/// Errors reaching or using a keystore.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// No D-Bus session bus: typical over SSH or in a bare container.
    #[error("no D-Bus session bus, so the OS keychain cannot be reached; run katachi inside a desktop session (or `dbus-run-session`), or opt in to the weaker file keystore with `[keystore] backend = \"file\"` in config.toml")]
    NoSessionBus,
    /// A session bus exists but no Secret Service answers on it (gnome-keyring or KWallet not running).
    #[error("no Secret Service on the session bus; install and start gnome-keyring (`gnome-keyring-daemon --start --components=secrets`) or KWallet, or opt in to the weaker file keystore with `[keystore] backend = \"file\"` in config.toml")]
    NoSecretService,
    /// The keychain is locked, or the user dismissed the unlock prompt.
    #[error("the keychain is locked or the unlock prompt was dismissed; unlock your login keyring (e.g. `gnome-keyring-daemon --unlock`) and try again")]
    Locked,
    /// An entry holds something that is not what katachi wrote (edited, or written by another program).
    #[error("keychain entry {account:?} is corrupted ({reason}); it was left as is. If you never stored anything important with katachi, delete the entry in your keychain app and run again")]
    Corrupted {
        /// The account name of the entry.
        account: String,
        /// What is wrong with it (never the value).
        reason: String,
    },
    /// The keychain saved a value but reading it back gave something else.
    #[error("the keychain did not keep the value written to {account:?}; check that your keyring is persistent (not a session-only collection)")]
    NotPersisted {
        /// The account name of the entry.
        account: String,
    },
    /// The platform keychain failed in a way not listed above.
    #[error("the OS keychain failed: {detail}")]
    Platform {
        /// The platform's description (never contains the value).
        detail: String,
    },
    /// The file keystore could not be read, opened or written.
    #[error("file keystore {path}: {reason}")]
    File {
        /// The keystore file.
        path: std::path::PathBuf,
        /// What went wrong (never a value).
        reason: String,
    },
}

/// A place to keep secrets: account name → string value.
pub trait Keystore: Send + Sync {
    /// Which kind this is.
    fn kind(&self) -> KeystoreKind;

    /// The value for `account`, `None` when there is none.
    ///
    /// # Errors
    /// [`KeystoreError`] when the keystore cannot be reached or the entry is unreadable.
    fn get(&self, account: &str) -> Result<Option<String>, KeystoreError>;

    /// Stores `value` for `account`, replacing any previous value.
    ///
    /// # Errors
    /// [`KeystoreError`] when the keystore cannot be reached or refuses the write.
    fn set(&self, account: &str, value: &str) -> Result<(), KeystoreError>;

    /// Deletes `account`; `Ok(false)` when there was nothing to delete.
    ///
    /// # Errors
    /// [`KeystoreError`] when the keystore cannot be reached.
    fn delete(&self, account: &str) -> Result<bool, KeystoreError>;
}

/// The OS keychain through the `keyring` crate, entries named `service`/`account`.
#[derive(Debug, Clone)]
pub struct OsKeychain {
    /// The service name all of this agent home's entries share.
    service: String,
}

impl OsKeychain {
    /// The OS keychain, with entries under `service`.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }

    fn entry(&self, account: &str) -> Result<keyring::Entry, KeystoreError> {
        keyring::Entry::new(&self.service, account).map_err(|e| map_keyring_error(account, e))
    }
}

impl Keystore for OsKeychain {
    fn kind(&self) -> KeystoreKind {
        KeystoreKind::OsKeychain
    }

    fn get(&self, account: &str) -> Result<Option<String>, KeystoreError> {
        match self.entry(account)?.get_password() {
            Ok(v) => Ok(Some(v)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring_error(account, e)),
        }
    }

    fn set(&self, account: &str, value: &str) -> Result<(), KeystoreError> {
        self.entry(account)?
            .set_password(value)
            .map_err(|e| map_keyring_error(account, e))
    }

    fn delete(&self, account: &str) -> Result<bool, KeystoreError> {
        match self.entry(account)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(map_keyring_error(account, e)),
        }
    }
}

/// Turns the keyring crate's errors into ones that name the fix.
fn map_keyring_error(account: &str, err: keyring::Error) -> KeystoreError {
    match err {
        keyring::Error::NoStorageAccess(_) => KeystoreError::Locked,
        keyring::Error::BadEncoding(_) => KeystoreError::Corrupted {
            account: account.to_owned(),
            reason: "not valid UTF-8".to_owned(),
        },
        keyring::Error::Ambiguous(_) => KeystoreError::Corrupted {
            account: account.to_owned(),
            reason: "several entries match".to_owned(),
        },
        other => classify_platform_failure(&other.to_string()),
    }
}

/// The keyring crate reports D-Bus failures as text; pick out the cases with a known fix.
fn classify_platform_failure(detail: &str) -> KeystoreError {
    let lower = detail.to_ascii_lowercase();
    if lower.contains("serviceunknown") || lower.contains("was not provided by any .service files")
    {
        KeystoreError::NoSecretService
    } else if lower.contains("dbus_session_bus_address")
        || lower.contains("unable to autolaunch")
        || lower.contains("failed to connect to socket")
        || lower.contains("no such file or directory")
        || lower.contains("connection refused")
        || lower.contains("noserver")
    {
        KeystoreError::NoSessionBus
    } else if lower.contains("locked") || lower.contains("dismissed") {
        KeystoreError::Locked
    } else {
        KeystoreError::Platform {
            detail: detail.to_owned(),
        }
    }
}

/// Secrets in process memory: for other crates' tests, never for users.
#[derive(Debug, Default)]
pub struct MemoryKeystore {
    /// account → value.
    entries: Mutex<HashMap<String, String>>,
}

impl Keystore for MemoryKeystore {
    fn kind(&self) -> KeystoreKind {
        KeystoreKind::Memory
    }

    fn get(&self, account: &str) -> Result<Option<String>, KeystoreError> {
        Ok(self.lock().get(account).cloned())
    }

    fn set(&self, account: &str, value: &str) -> Result<(), KeystoreError> {
        self.lock().insert(account.to_owned(), value.to_owned());
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<bool, KeystoreError> {
        Ok(self.lock().remove(account).is_some())
    }
}

impl MemoryKeystore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A poisoned map is still a valid map: a panic elsewhere must not lock the secrets away.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbus_failures_are_classified_with_their_fix() {
        assert!(matches!(
            classify_platform_failure("org.freedesktop.DBus.Error.ServiceUnknown: The name org.freedesktop.secrets was not provided by any .service files"),
            KeystoreError::NoSecretService
        ));
        assert!(matches!(
            classify_platform_failure(
                "D-Bus error: Failed to connect to socket /nonexistent: No such file or directory"
            ),
            KeystoreError::NoSessionBus
        ));
        assert!(matches!(
            classify_platform_failure("something odd"),
            KeystoreError::Platform { .. }
        ));
    }

    #[test]
    fn error_messages_name_the_fix() {
        assert!(KeystoreError::NoSecretService
            .to_string()
            .contains("gnome-keyring"));
        assert!(KeystoreError::NoSessionBus
            .to_string()
            .contains("backend = \"file\""));
        assert!(KeystoreError::Locked.to_string().contains("unlock"));
    }

    #[test]
    fn memory_keystore_round_trips() {
        let k = MemoryKeystore::default();
        assert_eq!(k.get("a").unwrap(), None);
        k.set("a", "1").unwrap();
        assert_eq!(k.get("a").unwrap().as_deref(), Some("1"));
        assert!(k.delete("a").unwrap());
        assert!(!k.delete("a").unwrap());
        assert!(KeystoreKind::Memory.is_weaker() && !KeystoreKind::OsKeychain.is_weaker());
    }
}
