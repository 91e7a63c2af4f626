//! The opt-in file keystore, for headless machines with no OS keychain.
//!
//! Entries live in one file: a hardware binding ([`BindingRecord`], with no keychain secret — a
//! fixed label stands in for it) of a random file key, and the entries sealed under that key. Like
//! the machine key, it survives one changed, added or removed component (and re-binds), never
//! counts USB/Thunderbolt NICs, and opens nothing on another machine.
//!
//! Files written before the binding (a bare sealed blob keyed by the whole fingerprint digest) are
//! still read, and are rewritten in the bound format as soon as they open (their own machine).
//!
//! # Security
//! Weaker than the OS keychain: anyone who can read the file and knows (or can read) k of this
//! machine's hardware components can open it. It is used only when `config.toml` says
//! `backend = "file"`, and [`KeystoreKind::File`] makes `doctor` and every status surface say so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use serde::{Deserialize, Serialize};

use super::binding::BindingRecord;
use super::keystore::{Keystore, KeystoreError, KeystoreKind};
use super::machine_key::{DataKey, DerivedKey, MachineKey, Purpose};
use super::sealed::{seal, unseal};
use crate::atomic_file::write_private_atomically;
use crate::fingerprint::Fingerprint;
use crate::secret::SecretBytes;

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

/// Stands in for the keychain secret in the file keystore's binding: there is none.
const NO_SECRET: &[u8] = b"katachi file keystore: bound to hardware only";

/// The bound file format.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundFile {
    /// The file key split over the hardware components.
    binding: BindingRecord,
    /// Hex of the entries (JSON) sealed under the file key's [`PURPOSE`] key.
    entries: String,
}

/// Secrets in a file bound to this machine's hardware only.
pub struct FileKeystore {
    /// The file.
    path: PathBuf,
    /// The hardware the file key is bound to.
    fingerprint: Fingerprint,
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
    /// The file keystore at `path`, bound to `fingerprint`.
    pub fn new(path: impl Into<PathBuf>, fingerprint: &Fingerprint) -> Self {
        Self {
            path: path.into(),
            fingerprint: fingerprint.clone(),
            lock: Mutex::new(()),
        }
    }

    /// The key of files written before the binding: the whole fingerprint digest alone.
    fn legacy_key(&self) -> DerivedKey {
        let hk = Hkdf::<Sha256>::new(
            Some(b"katachi file keystore v1"),
            &self.fingerprint.digest(),
        );
        let mut key = [0u8; 32];
        // 32 bytes is within HKDF-SHA256's output limit.
        let _ = hk.expand(b"katachi/v1/file-keystore", &mut key);
        DerivedKey::from_bytes(key, PURPOSE)
    }

    fn file_error(&self, reason: impl std::fmt::Display) -> KeystoreError {
        KeystoreError::File {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// The entries and the file key (`None` for a missing file: the next save picks one).
    fn load(&self) -> Result<(Entries, Option<DataKey>), KeystoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Entries::default(), None))
            }
            Err(e) => return Err(self.file_error(e)),
        };
        let what = self.path.display().to_string();
        if bytes.starts_with(b"KTCHSEAL") {
            let plain =
                unseal(&self.legacy_key(), &bytes, &what).map_err(|e| self.file_error(e))?;
            let entries = self.decode(plain.expose())?;
            // it opened, so this is its machine: bind it now, before a dock or a part can change
            let file_key = DataKey::random();
            self.save(&entries.0, &file_key)?;
            return Ok((entries, Some(file_key)));
        }
        let file: BoundFile = serde_json::from_slice(&bytes)
            .map_err(|e| self.file_error(format!("damaged content: {e}")))?;
        let data_dir = self.path.parent().unwrap_or(&self.path);
        let (file_key, diff) = file
            .binding
            .open(data_dir, &self.path, &no_secret(), &self.fingerprint)
            .map_err(|e| self.file_error(e))?;
        let sealed = hex::decode(&file.entries)
            .map_err(|_| self.file_error("damaged content: entries are not hex"))?;
        let plain =
            unseal(&entries_key(&file_key), &sealed, &what).map_err(|e| self.file_error(e))?;
        let entries = self.decode(plain.expose())?;
        if !diff.is_empty() {
            // one component changed: re-bind to the current hardware, as the machine key does
            tracing::warn!(change = %diff.describe(), "hardware changed; the file keystore was re-bound");
            self.save(&entries.0, &file_key)?;
        }
        Ok((entries, Some(file_key)))
    }

    fn decode(&self, plain: &[u8]) -> Result<Entries, KeystoreError> {
        serde_json::from_slice(plain)
            .map(Entries)
            .map_err(|e| self.file_error(format!("damaged content: {e}")))
    }

    fn save(
        &self,
        entries: &BTreeMap<String, String>,
        file_key: &DataKey,
    ) -> Result<(), KeystoreError> {
        let json = Zeroizing::new(serde_json::to_vec(entries).map_err(|e| self.file_error(e))?);
        let sealed = seal(&entries_key(file_key), &json).map_err(|e| self.file_error(e))?;
        let binding = BindingRecord::bind(file_key, &no_secret(), &self.fingerprint)
            .map_err(|e| self.file_error(e))?;
        let file = BoundFile {
            binding,
            entries: hex::encode(sealed),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| self.file_error(e))?;
        write_private_atomically(&self.path, &bytes).map_err(|e| self.file_error(e))
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
        Ok(self.load()?.0 .0.get(account).cloned())
    }

    fn set(&self, account: &str, value: &str) -> Result<(), KeystoreError> {
        let _g = self.guard();
        let (mut entries, key) = self.load()?;
        entries.0.insert(account.to_owned(), value.to_owned());
        self.save(&entries.0, &key.unwrap_or_else(DataKey::random))
    }

    fn delete(&self, account: &str) -> Result<bool, KeystoreError> {
        let _g = self.guard();
        let (mut entries, key) = self.load()?;
        let existed = entries.0.remove(account).is_some();
        if existed {
            self.save(&entries.0, &key.unwrap_or_else(DataKey::random))?;
        }
        Ok(existed)
    }
}

fn no_secret() -> SecretBytes {
    SecretBytes::new(NO_SECRET.to_vec())
}

/// The key the entries are sealed under, expanded from the file key.
fn entries_key(file_key: &DataKey) -> DerivedKey {
    MachineKey::from_data_key(file_key).key_for(PURPOSE)
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

    fn laptop(nic: &str, uuid: &str) -> Fingerprint {
        Fingerprint::from_components([
            ("machine_id", b"m".to_vec()),
            ("nic:wlan0", nic.as_bytes().to_vec()),
            ("product_uuid", uuid.as_bytes().to_vec()),
        ])
        .unwrap()
    }

    #[test]
    fn file_keystore_survives_one_replaced_part_and_rebinds_but_not_two() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("keystore.sealed");
        FileKeystore::new(&p, &laptop("card-1", "u"))
            .set("k", "v")
            .unwrap();
        let before = std::fs::read(&p).unwrap();
        let new_card = FileKeystore::new(&p, &laptop("card-2", "u"));
        assert_eq!(new_card.get("k").unwrap().as_deref(), Some("v"));
        assert_ne!(
            std::fs::read(&p).unwrap(),
            before,
            "re-bound to the new card"
        );
        let rebound = std::fs::read(&p).unwrap();
        let err = FileKeystore::new(&p, &laptop("card-3", "other"))
            .get("k")
            .unwrap_err();
        assert!(err.to_string().contains("another machine"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), rebound, "untouched");
    }

    #[test]
    fn file_keystore_ignores_a_dock_and_reads_files_of_the_older_format() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("keystore.sealed");
        // The older format: the entries sealed under the whole digest, a USB NIC counted in it.
        let docked = laptop("card-1", "u").with_removable([("nic:enx0", b"02:aa".to_vec())]);
        let old = FileKeystore::new(&p, &docked);
        let sealed = seal(&old.legacy_key(), br#"{"k":"v"}"#).unwrap();
        std::fs::write(&p, sealed).unwrap();
        assert_eq!(old.get("k").unwrap().as_deref(), Some("v"));
        assert!(
            !std::fs::read(&p).unwrap().starts_with(b"KTCHSEAL"),
            "rewritten in the bound format at its first open"
        );
        old.set("k2", "v2").unwrap();
        let undocked = FileKeystore::new(&p, &laptop("card-1", "u"));
        assert_eq!(undocked.get("k").unwrap().as_deref(), Some("v"));
        assert_eq!(undocked.get("k2").unwrap().as_deref(), Some("v2"));
    }
}
