//! The hardware binding: the 32-byte data key split k-of-n (Shamir over GF(256), `blahaj`), one
//! share per fingerprint component, each share wrapped (AES-256-GCM) under
//! HKDF(keychain secret ‖ that component's value). Stored as the binding record (`binding.json`
//! in the data folder, `0600`, atomic replace).
//!
//! ```text
//! data key ──split k of n──▶ share_i ──AES-256-GCM under HKDF(salt; secret ‖ name_i ‖ value_i)──▶ record
//! ```
//!
//! # Guarantees
//! - Any single component may change, appear or disappear and the key still opens: `k = n - 1`
//!   for `n >= 3`. With one or two components every one must match (`k = n`): a lone remaining
//!   match could be a value that many machines share (the CPU model), so tolerating a change there
//!   would let the keychain secret alone open the data on a machine of the same model.
//! - Data copied to another machine (fewer than k components match) or opened with another
//!   keychain's secret fails closed with [`BindingError::TooFewComponents`] or
//!   [`BindingError::WrongKeychainSecret`]; nothing is written by these checks.
//! - The record holds no component value: names, an HMAC of each value keyed by the keychain
//!   secret (so `doctor` can name the one that changed, and a copy of the disk alone cannot test
//!   guesses of a MAC address), the wrapped shares, and two 16-byte checks (secret, data key).
//! - The AAD of each share binds the format version, the component name, the purpose and the
//!   record's salt: a share moved to another component or another record does not open.
//!
//! # Layout
//! - `error`: [`BindingError`], one variant per way the binding fails, each with its fix.
//! - `keys`: wrap keys, keyed value hashes, the two checks and the share AAD of one record.
//!
//! # What it does not do
//! - It does not stop someone who has the keychain secret *and* k of the components.
//! - Re-wrapping after a change is the caller's decision ([`BindingRecord::bind`] with the same data
//!   key); see `AgentHome`.

use std::path::Path;

mod error;
mod keys;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use blahaj::{Share, Sharks};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::machine_key::DataKey;
use crate::atomic_file::write_private_atomically;
use crate::fingerprint::{Fingerprint, FingerprintDiff};
use crate::secret::SecretBytes;
use keys::{key_check, share_aad, RecordKeys};

pub use error::BindingError;

/// Format version of the record (also in every share's AAD).
pub const BINDING_VERSION: u32 = 1;
/// What a wrapped share is for (in every share's AAD).
const SHARE_PURPOSE: &str = "data-key-share";
const NONCE_LEN: usize = 12;
const CHECK_LEN: usize = 16;

/// One component's wrapped share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WrappedShare {
    /// Component name (`machine_id`, `nic:eth0`, `cpu`…).
    pub component: String,
    /// Hex HMAC-SHA256 of the value, keyed from the keychain secret and the record's salt.
    pub hash: String,
    /// Hex nonce ‖ AES-256-GCM ciphertext ‖ tag of the share.
    pub wrapped: String,
}

/// The last re-wrap: when, and which components differed (names only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BindingChange {
    /// Unix seconds.
    pub at: u64,
    /// What differed from the previous binding (`migrated` when made from an older katachi's key).
    pub what: String,
}

/// The binding record: everything needed to rebuild the data key from the keychain secret and k
/// components, and nothing that reveals a component value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BindingRecord {
    /// Format version.
    pub version: u32,
    /// Shares needed, k.
    pub threshold: usize,
    /// Hex 16 random bytes, fresh at each (re-)wrap.
    pub salt: String,
    /// Hex 16 bytes derived from the keychain secret and the salt: tells "another keychain" apart
    /// from "another machine".
    pub secret_check: String,
    /// Hex 16 bytes MACed with the data key: the recovered key is the bound one.
    pub key_check: String,
    /// One wrapped share per bound component, sorted by name.
    pub shares: Vec<WrappedShare>,
    /// The last re-wrap, shown by `doctor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<BindingChange>,
}

/// How the current machine compares with a record, by the keyed hashes (no unwrap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingAssessment {
    /// Whether the keychain secret is the one bound.
    pub secret_matches: bool,
    /// Components whose value matches.
    pub matched: usize,
    /// Shares needed, k.
    pub needed: usize,
    /// Components bound, n.
    pub total: usize,
    /// Which components differ, by name.
    pub diff: FingerprintDiff,
}

impl BindingAssessment {
    /// True when the data key can be rebuilt here.
    pub fn holds(&self) -> bool {
        self.secret_matches && self.matched >= self.needed
    }
}

/// Shares needed for `n` components: `n - 1` from three up, else all (see the module doc).
pub fn threshold_for(n: usize) -> usize {
    if n >= 3 {
        n - 1
    } else {
        n
    }
}

impl BindingRecord {
    /// Binds `data_key` to `secret` and the bound components of `fp`, under a fresh salt.
    ///
    /// # Errors
    /// [`BindingError::TooManyComponents`] past 255 components.
    pub fn bind(
        data_key: &DataKey,
        secret: &SecretBytes,
        fp: &Fingerprint,
    ) -> Result<Self, BindingError> {
        let components = fp.components();
        let n = components.len();
        let k = threshold_for(n);
        let too_many = || BindingError::TooManyComponents { count: n };
        let k_u8 = u8::try_from(k).map_err(|_| too_many())?;
        if n > usize::from(u8::MAX) {
            return Err(too_many());
        }
        let salt: [u8; 16] = rand::random();
        let keys = RecordKeys::new(secret, &salt);
        let dealer = Sharks(k_u8).dealer(data_key.expose());
        let mut shares = Vec::with_capacity(n);
        for ((name, value), share) in components.iter().zip(dealer) {
            let plain = Zeroizing::new(Vec::<u8>::from(&share));
            let key = RecordKeys::wrap_key(secret, &salt, name, value);
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_ref()));
            let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
            let aad = share_aad(&salt, name);
            let ct = cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &plain,
                        aad: &aad,
                    },
                )
                .map_err(|_| too_many())?;
            let mut wrapped = nonce.to_vec();
            wrapped.extend_from_slice(&ct);
            shares.push(WrappedShare {
                component: name.clone(),
                hash: keys.value_hash(name, value),
                wrapped: hex::encode(wrapped),
            });
        }
        Ok(Self {
            version: BINDING_VERSION,
            threshold: k,
            salt: hex::encode(salt),
            secret_check: keys.secret_check(),
            key_check: key_check(data_key),
            shares,
            last_change: None,
        })
    }

    fn salt_bytes(&self) -> Vec<u8> {
        hex::decode(&self.salt).unwrap_or_default()
    }

    /// Compares this machine with the record by the keyed hashes; reads and writes nothing.
    pub fn assess(&self, secret: &SecretBytes, fp: &Fingerprint) -> BindingAssessment {
        let keys = RecordKeys::new(secret, &self.salt_bytes());
        let secret_matches = bool::from(
            keys.secret_check()
                .as_bytes()
                .ct_eq(self.secret_check.as_bytes()),
        );
        let mut diff = FingerprintDiff::default();
        let mut matched = 0;
        for share in &self.shares {
            match fp.components().get(&share.component) {
                None => diff.missing.push(share.component.clone()),
                Some(value) => {
                    let now = keys.value_hash(&share.component, value);
                    if bool::from(now.as_bytes().ct_eq(share.hash.as_bytes())) {
                        matched += 1;
                    } else {
                        diff.changed.push(share.component.clone());
                    }
                }
            }
        }
        for name in fp.components().keys() {
            if !self.shares.iter().any(|s| &s.component == name) {
                diff.added.push(name.clone());
            }
        }
        BindingAssessment {
            secret_matches,
            matched,
            needed: self.threshold,
            total: self.shares.len(),
            diff,
        }
    }

    /// Rebuilds the data key from the shares this keychain secret and machine can unwrap; returns
    /// it with how the machine differs from the record. Reads and writes nothing.
    ///
    /// # Errors
    /// [`BindingError::WrongKeychainSecret`], [`BindingError::TooFewComponents`], or
    /// [`BindingError::Damaged`] when the shares do not give the bound key.
    pub fn open(
        &self,
        data_dir: &Path,
        record_path: &Path,
        secret: &SecretBytes,
        fp: &Fingerprint,
    ) -> Result<(DataKey, FingerprintDiff), BindingError> {
        let assessment = self.assess(secret, fp);
        // reject another keychain first: its secret unwraps nothing, whatever the hardware
        if !assessment.secret_matches {
            return Err(BindingError::WrongKeychainSecret {
                data: data_dir.to_path_buf(),
            });
        }
        let damaged = |reason: &str| BindingError::Damaged {
            path: record_path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let salt = self.salt_bytes();
        let mut opened: Vec<Share> = Vec::new();
        for share in &self.shares {
            let Some(value) = fp.components().get(&share.component) else {
                continue;
            };
            let bytes = hex::decode(&share.wrapped).map_err(|_| damaged("a share is not hex"))?;
            if bytes.len() <= NONCE_LEN {
                return Err(damaged("a share is truncated"));
            }
            let key = RecordKeys::wrap_key(secret, &salt, &share.component, value);
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_ref()));
            let aad = share_aad(&salt, &share.component);
            // a changed component's wrap key differs, so its share fails the tag: skip it
            let Ok(plain) = cipher.decrypt(
                Nonce::from_slice(&bytes[..NONCE_LEN]),
                Payload {
                    msg: &bytes[NONCE_LEN..],
                    aad: &aad,
                },
            ) else {
                continue;
            };
            let plain = Zeroizing::new(plain);
            opened.push(
                Share::try_from(plain.as_slice()).map_err(|_| damaged("a share is malformed"))?,
            );
        }
        if self.threshold == 0 || opened.len() < self.threshold {
            return Err(BindingError::TooFewComponents {
                data: data_dir.to_path_buf(),
                matched: opened.len(),
                needed: self.threshold,
                total: self.shares.len(),
                diff: assessment.diff.describe(),
            });
        }
        opened.truncate(self.threshold);
        let recovered = Zeroizing::new(
            Sharks(u8::try_from(self.threshold).map_err(|_| damaged("threshold past 255"))?)
                .recover(&opened)
                .map_err(|_| damaged("the shares do not combine"))?,
        );
        let bytes: [u8; 32] = recovered
            .as_slice()
            .try_into()
            .map_err(|_| damaged("the shares hold a key of the wrong length"))?;
        let data_key = DataKey::from_bytes(bytes);
        // shares from another record spliced in combine to another key: refuse it
        if !bool::from(
            key_check(&data_key)
                .as_bytes()
                .ct_eq(self.key_check.as_bytes()),
        ) {
            return Err(damaged(
                "the shares combine to a key that is not the bound one",
            ));
        }
        Ok((data_key, assessment.diff))
    }

    /// Loads the record; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`BindingError::Read`] or [`BindingError::Damaged`].
    pub fn load(path: &Path) -> Result<Option<Self>, BindingError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BindingError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let damaged = |reason: String| BindingError::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        let rec: Self = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if rec.version != BINDING_VERSION {
            return Err(damaged(format!("unknown version {}", rec.version)));
        }
        if hex::decode(&rec.salt).map(|s| s.len()) != Ok(16) {
            return Err(damaged("salt is not 16 hex bytes".to_owned()));
        }
        if rec.threshold == 0 || rec.threshold > rec.shares.len() {
            return Err(damaged(format!(
                "threshold {} of {} shares",
                rec.threshold,
                rec.shares.len()
            )));
        }
        Ok(Some(rec))
    }

    /// Saves the record atomically (`0600`).
    ///
    /// # Errors
    /// [`BindingError::Write`].
    pub fn save(&self, path: &Path) -> Result<(), BindingError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| BindingError::Damaged {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_private_atomically(path, &json)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "binding_tests.rs"]
mod tests;
