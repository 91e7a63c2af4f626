//! Why the hardware binding could not be opened, read or written; each variant says what to do.

use std::path::PathBuf;

use crate::atomic_file::AtomicWriteError;

/// Why the binding could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The keychain secret is not the one the data was bound with: another keychain (another user
    /// account, a restored or replaced keychain).
    #[error("the katachi data in {data} was bound with another keychain secret, so this keychain cannot open it; nothing was changed. Use the keychain (user account) that created it, or restore its entry from a backup")]
    WrongKeychainSecret {
        /// The data folder.
        data: PathBuf,
    },
    /// Fewer than k components match: another machine, or more than one part changed at once.
    #[error("only {matched} of the {total} hardware components the katachi data in {data} is bound to match ({needed} needed; {diff}): this is another machine, or more than one part changed at once. Nothing was changed; put the changed parts back, or run katachi on the machine the data came from")]
    TooFewComponents {
        /// The data folder.
        data: PathBuf,
        /// Components whose share opened.
        matched: usize,
        /// The threshold k.
        needed: usize,
        /// Components bound, n.
        total: usize,
        /// Which components differ, by name.
        diff: String,
    },
    /// The keychain has no katachi secret, but katachi data exists: opening would need a new secret,
    /// which could never open that data.
    #[error("the keychain has no katachi secret (service {service:?}, account \"machine-secret\"), yet katachi data exists in {data} ({found}); no new secret was created and nothing was changed. Without that secret these cannot be recovered: the chat history and workspace memory (katachi.db), the sealed sign-in credentials, API keys saved in katachi. Unaffected: your workspace folders and config.toml; signing in again gives new credentials. Restore the keychain entry from a backup, or move {data} aside to start afresh")]
    KeychainSecretLost {
        /// The data folder.
        data: PathBuf,
        /// The katachi files found there.
        found: String,
        /// The keychain service name of this agent home.
        service: String,
    },
    /// Data of a katachi made before the binding does not open with the key derived from this
    /// keychain and hardware, so it cannot be migrated now.
    #[error("the katachi data in {data} has no binding record (written by an older katachi, or binding.json was removed), and the key derived from this keychain and this hardware does not open {what} ({diff}); nothing was changed. Put back the hardware that changed (a dock or adapter plugged in when the data was created counts), or use the keychain that created it, and run again")]
    LegacyKeyDoesNotOpen {
        /// The data folder.
        data: PathBuf,
        /// Which file did not open.
        what: String,
        /// What the old fingerprint record says changed, by name.
        diff: String,
    },
    /// The record is not what katachi wrote (edited, truncated, or a newer format).
    #[error("binding record {path} is damaged ({reason}); nothing was changed. Restore it from a backup: without it the data key cannot be rebuilt")]
    Damaged {
        /// The record file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// More components than Shamir over GF(256) can share (255).
    #[error("{count} hardware components are more than the binding can hold (255)")]
    TooManyComponents {
        /// Components found.
        count: usize,
    },
    /// The record file could not be read.
    #[error("cannot read binding record {path}: {source}")]
    Read {
        /// The record file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The record could not be written.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}
