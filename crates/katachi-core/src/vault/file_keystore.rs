//! The opt-in file keystore, for headless machines with no OS keychain.
//!
//! Entries live in one sealed file whose key is derived from the hardware fingerprint *only*.
//!
//! # Security
//! Weaker than the OS keychain: anyone who can read the file and knows (or can read) this machine's
//! hardware identity can open it. It is used only when `config.toml` says `backend = "file"`, and
//! [`KeystoreKind::File`] makes `doctor` and every status surface say so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keystore::{Keystore, KeystoreError, KeystoreKind};
use super::machine_key::{DerivedKey, Purpose};
use super::sealed::{seal, unseal};
use crate::atomic_file::write_private_atomically;
use crate::fingerprint::Fingerprint;

/// The decoded entries; values are wiped from memory when dropped.
#[derive(Default)]
struct Entries(BTreeMap<String, String>);

impl Drop for Entries {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for value in self.0.values_mut() {
            value.zeroize();
        }
    }
}

const PURPOSE: Purpose = Purpose::custom("file-keystore");

/// Secrets in a file sealed with a fingerprint-only key.
pub struct FileKeystore {
    /// The sealed file.
    path: PathBuf,
    /// Key derived from the fingerprint alone.
    key: DerivedKey,
    /// Serialises read-modify-write cycles inside this process.
    lock: Mutex<()>,
}

impl std::fmt::Debug for FileKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeystore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileKeystore {
    /// The file keystore at `path`, keyed by `fingerprint`.
    pub fn new(path: impl Into<PathBuf>, fingerprint: &Fingerprint) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"katachi file keystore v1"), &fingerprint.digest());
        let mut key = [0u8; 32];
        // 32 bytes is within HKDF-SHA256's output limit.
        let _ = hk.expand(b"katachi/v1/file-keystore", &mut key);
        Self {
            path: path.into(),
            key: DerivedKey::from_bytes(key, PURPOSE),
            lock: Mutex::new(()),
        }
    }

    fn file_error(&self, reason: impl std::fmt::Display) -> KeystoreError {
        KeystoreError::File {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    fn load(&self) -> Result<Entries, KeystoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Entries::default()),
            Err(e) => return Err(self.file_error(e)),
        };
        let plain = unseal(&self.key, &bytes, &self.path.display().to_string())
            .map_err(|e| self.file_error(e))?;
        serde_json::from_slice(plain.expose())
            .map(Entries)
            .map_err(|e| self.file_error(format!("damaged content: {e}")))
    }

    fn save(&self, entries: &BTreeMap<String, String>) -> Result<(), KeystoreError> {
        let json = Zeroizing::new(serde_json::to_vec(entries).map_err(|e| self.file_error(e))?);
        let sealed = seal(&self.key, &json).map_err(|e| self.file_error(e))?;
        write_private_atomically(&self.path, &sealed).map_err(|e| self.file_error(e))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Keystore for FileKeystore {
    fn kind(&self) -> KeystoreKind {
        KeystoreKind::File
    }

    fn get(&self, account: &str) -> Result<Option<String>, KeystoreError> {
        let _g = self.guard();
        Ok(self.load()?.0.get(account).cloned())
    }

    fn set(&self, account: &str, value: &str) -> Result<(), KeystoreError> {
        let _g = self.guard();
        let mut entries = self.load()?;
        entries.0.insert(account.to_owned(), value.to_owned());
        self.save(&entries.0)
    }

    fn delete(&self, account: &str) -> Result<bool, KeystoreError> {
        let _g = self.guard();
        let mut entries = self.load()?;
        let existed = entries.0.remove(account).is_some();
        if existed {
            self.save(&entries.0)?;
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(v: &str) -> Fingerprint {
        Fingerprint::from_components([("machine_id", v.as_bytes().to_vec())]).unwrap()
    }

    #[test]
    fn file_keystore_round_trips_and_holds_no_plaintext() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("keystore.sealed");
        let ks = FileKeystore::new(&p, &fp("a"));
        ks.set("machine-secret", "PLAINTEXT-MARKER").unwrap();
        assert_eq!(
            ks.get("machine-secret").unwrap().as_deref(),
            Some("PLAINTEXT-MARKER")
        );
        let raw = std::fs::read(&p).unwrap();
        assert!(!raw.windows(16).any(|w| w == b"PLAINTEXT-MARKER"));
        assert_eq!(ks.kind(), KeystoreKind::File);
        assert!(ks.delete("machine-secret").unwrap());
        assert_eq!(ks.get("machine-secret").unwrap(), None);
    }

    #[test]
    fn file_keystore_does_not_open_on_another_machine() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("keystore.sealed");
        FileKeystore::new(&p, &fp("a")).set("k", "v").unwrap();
        let before = std::fs::read(&p).unwrap();
        let err = FileKeystore::new(&p, &fp("b")).get("k").unwrap_err();
        assert!(err.to_string().contains("another machine"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }
}
