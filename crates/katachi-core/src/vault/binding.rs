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
//! # What it does not do
//! - It does not stop someone who has the keychain secret *and* k of the components.
//! - Re-wrapping after a change is the caller's decision ([`BindingRecord::bind`] with the same data
//!   key); see `AgentHome`.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use blahaj::{Share, Sharks};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::machine_key::DataKey;
use crate::atomic_file::{write_private_atomically, AtomicWriteError};
use crate::fingerprint::{Fingerprint, FingerprintDiff};
use crate::secret::SecretBytes;

/// Format version of the record (also in every share's AAD).
pub const BINDING_VERSION: u32 = 1;
/// What a wrapped share is for (in every share's AAD).
const SHARE_PURPOSE: &str = "data-key-share";
const NONCE_LEN: usize = 12;
const CHECK_LEN: usize = 16;

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
    #[error("the katachi data in {data} was written by an older katachi, and the key derived from this keychain and this hardware does not open {what} ({diff}); nothing was changed. Put back the hardware that changed (a dock or adapter plugged in when the data was created counts), or use the keychain that created it, and run again")]
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

/// The keys one (secret, salt) pair gives: the value-hash key and the secret check.
struct RecordKeys {
    hkdf: Hkdf<Sha256>,
}

impl RecordKeys {
    fn new(secret: &SecretBytes, salt: &[u8]) -> Self {
        Self {
            hkdf: Hkdf::<Sha256>::new(Some(salt), secret.expose()),
        }
    }

    fn expand<const N: usize>(&self, info: &[u8]) -> Zeroizing<[u8; N]> {
        let mut out = Zeroizing::new([0u8; N]);
        // N ≤ 32 is far below HKDF-SHA256's limit: expand cannot fail.
        let _ = self.hkdf.expand(info, out.as_mut());
        out
    }

    fn secret_check(&self) -> String {
        hex::encode(*self.expand::<CHECK_LEN>(b"katachi/v1/binding-secret-check"))
    }

    fn value_hash(&self, name: &str, value: &[u8]) -> String {
        let key = self.expand::<32>(b"katachi/v1/binding-component-hash");
        let mut mac = hmac_with(key.as_ref());
        mac.update(&len_prefixed(name.as_bytes(), value));
        hex::encode(mac.finalize().into_bytes())
    }

    /// The wrap key of one component's share: HKDF(salt; secret ‖ name ‖ value).
    fn wrap_key(
        secret: &SecretBytes,
        salt: &[u8],
        name: &str,
        value: &[u8],
    ) -> Zeroizing<[u8; 32]> {
        let mut ikm = Zeroizing::new(secret.expose().to_vec());
        ikm.extend_from_slice(&len_prefixed(name.as_bytes(), value));
        let mut key = Zeroizing::new([0u8; 32]);
        let _ =
            Hkdf::<Sha256>::new(Some(salt), &ikm).expand(b"katachi/v1/binding-share", key.as_mut());
        key
    }
}

fn hmac_with(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so new_from_slice cannot fail; the fallback is unreachable.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()))
}

fn len_prefixed(name: &[u8], value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(8 + name.len() + value.len()));
    for part in [name, value] {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn key_check(data_key: &DataKey) -> String {
    let mut mac = hmac_with(data_key.expose());
    mac.update(b"katachi binding data key check v1");
    hex::encode(&mac.finalize().into_bytes()[..CHECK_LEN])
}

fn share_aad(salt: &[u8], component: &str) -> Vec<u8> {
    let mut aad = format!("katachi-binding\0v{BINDING_VERSION}\0{SHARE_PURPOSE}\0").into_bytes();
    aad.extend_from_slice(&len_prefixed(component.as_bytes(), salt));
    aad
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
