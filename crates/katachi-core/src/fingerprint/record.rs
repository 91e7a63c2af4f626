//! The fingerprint record: which components were used, as names plus salted hashes.
//!
//! Written beside the store (`fingerprint.json`, `0600`) by katachi versions before the hardware
//! binding; now only read, so `katachi doctor` and a refused migration can say *which* component of
//! an older installation changed, without keeping the values themselves. The binding record
//! (`vault::binding`) does this job for bound installations.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Fingerprint;
use crate::atomic_file::{write_private_atomically, AtomicWriteError};

/// Current record format.
const RECORD_VERSION: u32 = 1;

/// Errors loading or saving the record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record file could not be read.
    #[error("cannot read fingerprint record {path}: {source}")]
    Read {
        /// The record file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The record file is not valid JSON of the expected shape (edited or damaged).
    #[error("fingerprint record {path} is damaged ({reason}); delete it and `katachi doctor` will record the current machine again")]
    Malformed {
        /// The record file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The record could not be written.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// One component as recorded: its name and a salted hash of its value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordedComponent {
    /// Component name (`machine_id`, `nic:eth0`, `cpu`…).
    pub name: String,
    /// Hex SHA-256 of salt ‖ name ‖ 0 ‖ value.
    pub hash: String,
}

/// The names and salted hashes of the components a fingerprint was made of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FingerprintRecord {
    /// Format version.
    pub version: u32,
    /// Hex random salt, so the hashes cannot be matched against other machines' records.
    pub salt: String,
    /// The components, sorted by name.
    pub components: Vec<RecordedComponent>,
}

/// How the current fingerprint differs from the recorded one, by component name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FingerprintDiff {
    /// Present in both, value changed.
    pub changed: Vec<String>,
    /// Recorded, no longer present.
    pub missing: Vec<String>,
    /// Present now, not recorded.
    pub added: Vec<String>,
}

impl FingerprintDiff {
    /// True when the machine looks exactly as recorded.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.added.is_empty()
    }

    /// One line for humans: "changed: nic:eth0; missing: board_serial".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (label, list) in [
            ("changed", &self.changed),
            ("missing", &self.missing),
            ("new", &self.added),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}: {}", list.join(", ")));
            }
        }
        if parts.is_empty() {
            "no change".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

impl FingerprintRecord {
    /// Records `fp` with a fresh random salt.
    pub fn of(fp: &Fingerprint) -> Self {
        let salt: [u8; 16] = rand::random();
        let components = fp
            .components()
            .iter()
            .map(|(name, value)| RecordedComponent {
                name: name.clone(),
                hash: hex::encode(salted_hash(&salt, name, value)),
            })
            .collect();
        Self {
            version: RECORD_VERSION,
            salt: hex::encode(salt),
            components,
        }
    }

    /// Compares the current fingerprint with this record, naming each component that differs.
    pub fn compare(&self, fp: &Fingerprint) -> FingerprintDiff {
        let salt = hex::decode(&self.salt).unwrap_or_default();
        let mut diff = FingerprintDiff::default();
        // Records written before the threshold binding counted removable NICs too.
        let now = fp.all_components();
        for rec in &self.components {
            match now.get(&rec.name) {
                None => diff.missing.push(rec.name.clone()),
                Some(value) => {
                    let now = hex::encode(salted_hash(&salt, &rec.name, value));
                    if !bool::from(now.as_bytes().ct_eq(rec.hash.as_bytes())) {
                        diff.changed.push(rec.name.clone());
                    }
                }
            }
        }
        for name in now.keys() {
            if !self.components.iter().any(|c| &c.name == name) {
                diff.added.push(name.clone());
            }
        }
        diff
    }

    /// Loads the record; `Ok(None)` when there is none yet.
    ///
    /// # Errors
    /// [`RecordError::Read`] or [`RecordError::Malformed`].
    pub fn load(path: &Path) -> Result<Option<Self>, RecordError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RecordError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let malformed = |reason: String| RecordError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let rec: Self = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if rec.version != RECORD_VERSION {
            return Err(malformed(format!("unknown version {}", rec.version)));
        }
        if hex::decode(&rec.salt).map(|s| s.len()) != Ok(16) {
            return Err(malformed("salt is not 16 hex bytes".to_owned()));
        }
        Ok(Some(rec))
    }

    /// Saves the record atomically (`0600`).
    ///
    /// # Errors
    /// [`RecordError::Write`].
    pub fn save(&self, path: &Path) -> Result<(), RecordError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| RecordError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_private_atomically(path, &json)?;
        Ok(())
    }
}

fn salted_hash(salt: &[u8], name: &str, value: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(name.as_bytes());
    h.update([0u8]);
    h.update(value);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(items: &[(&str, &str)]) -> Fingerprint {
        Fingerprint::from_components(
            items
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
        )
        .unwrap()
    }

    #[test]
    fn record_names_the_component_that_changed() {
        let rec =
            FingerprintRecord::of(&fp(&[("cpu", "a"), ("machine_id", "b"), ("nic:eth0", "c")]));
        let now = fp(&[("cpu", "a"), ("machine_id", "CHANGED"), ("nic:eth1", "d")]);
        let diff = rec.compare(&now);
        assert_eq!(diff.changed, vec!["machine_id"]);
        assert_eq!(diff.missing, vec!["nic:eth0"]);
        assert_eq!(diff.added, vec!["nic:eth1"]);
        assert!(rec
            .compare(&fp(&[("cpu", "a"), ("machine_id", "b"), ("nic:eth0", "c")]))
            .is_empty());
    }

    #[test]
    fn record_keeps_no_component_value() {
        let rec = FingerprintRecord::of(&fp(&[("machine_id", "3d1219c7c4c5404aaa1f6d2a48adfda4")]));
        let json = serde_json::to_string(&rec).unwrap();
        assert!(!json.contains("3d1219c7"));
    }

    #[test]
    fn record_round_trips_and_damaged_record_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("fingerprint.json");
        assert!(FingerprintRecord::load(&p).unwrap().is_none());
        let rec = FingerprintRecord::of(&fp(&[("cpu", "a")]));
        rec.save(&p).unwrap();
        assert_eq!(FingerprintRecord::load(&p).unwrap(), Some(rec));
        std::fs::write(&p, b"{\"version\": 1, \"salt\": 3}").unwrap();
        let err = FingerprintRecord::load(&p).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
