//! Secrets at rest on the relay: a 256-bit master key (from a file, or generated on first run in the
//! data dir with mode `0600`) and AES-256-GCM for per-agent signing secrets and MCP secret values.
//!
//! # Format
//! A sealed value is `v2.` + `base64(nonce ‖ ciphertext ‖ tag)`. Its AEAD associated data is a
//! [`SealedRow`]: the purpose, the table, the row's id and the owning user's id, each
//! length-prefixed. So a value opens only in the row it was sealed for: one copied into another
//! column, another row, or another user's row (by someone who can write the database but does not
//! hold the master key) fails to open, and the relay treats it as sealed with another key.
//!
//! Values of the first format (no prefix, the purpose alone as AAD) are re-sealed in place once, at
//! start-up, by [`crate::store::Store::reseal_unbound_values`]; after that [`MasterKey::open`]
//! refuses them, so an unbound value put back into the database later does not open either.

use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

/// Errors with the master key or sealed values.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file could not be read or written.
    #[error("master key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A sealed value does not open: another master key, modified in the database, or moved from
    /// the row it was sealed for.
    #[error("a sealed value does not open with this relay's master key (wrong key, modified, or moved from its row)")]
    Open,
}

/// The key file's name in the data dir when `--master-key-file` is not given.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Reads a key file and returns its 64 hex characters, lower case, without surrounding space.
///
/// # Errors
/// [`CryptoError::KeyFile`] for a missing, unreadable or malformed file.
pub(crate) fn read_key_hex(path: &Path) -> Result<Zeroizing<String>, CryptoError> {
    let err = |reason: String| CryptoError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
    let trimmed = Zeroizing::new(text.trim().to_ascii_lowercase());
    if !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err("not hexadecimal".into()));
    }
    if trimmed.len() != 64 {
        return Err(err(format!(
            "holds {} hex characters, expected 64 (32 bytes)",
            trimmed.len()
        )));
    }
    Ok(trimmed)
}

/// Prefix of values sealed bound to their row.
const BOUND_PREFIX: &str = "v2.";

/// The row a sealed value belongs to: all of it is the AEAD associated data.
///
/// A new kind of sealed column must also be listed in `store/rotate.rs` (`ROTATED_COLUMNS`), or
/// `rotate-master-key` would leave its values sealed with the old key.
#[derive(Debug, Clone, Copy)]
pub struct SealedRow<'a> {
    /// What the value is (e.g. `agent-signing-secret`).
    pub purpose: &'a str,
    /// The table holding it.
    pub table: &'a str,
    /// The id of its row.
    pub row_id: &'a str,
    /// The user owning the row.
    pub user_id: &'a str,
}

impl<'a> SealedRow<'a> {
    /// An agent's HMAC signing secret (`agents.signing_secret_enc`).
    pub fn agent_signing_secret(agent_id: &'a str, user_id: &'a str) -> Self {
        Self {
            purpose: "agent-signing-secret",
            table: "agents",
            row_id: agent_id,
            user_id,
        }
    }

    /// An MCP server's environment (`mcp_servers.env_enc`).
    pub fn mcp_env(server_id: &'a str, user_id: &'a str) -> Self {
        Self {
            purpose: "mcp-env",
            table: "mcp_servers",
            row_id: server_id,
            user_id,
        }
    }

    /// A PKCE verifier kept while the user signs in at GitHub or Google
    /// (`oauth_states.pkce_verifier`, no user yet: the row is the state's hash).
    pub fn oauth_pkce_verifier(state_hash: &'a str) -> Self {
        Self {
            purpose: "oauth-pkce-verifier",
            table: "oauth_states",
            row_id: state_hash,
            user_id: "",
        }
    }

    /// The associated data: a label and each field length-prefixed, so no two rows share it.
    fn aad(&self) -> Vec<u8> {
        let mut aad = b"katachi-relay sealed v2".to_vec();
        for part in [self.purpose, self.table, self.row_id, self.user_id] {
            // Lengths are bounded by what the database holds; u64 keeps the encoding unambiguous.
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// The relay's master key.
pub struct MasterKey {
    /// AES-256-GCM cipher keyed with it.
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Reads the key (64 hex chars) from `file`, or from `<data_dir>/master.key`, generating it there
    /// on first run.
    ///
    /// # Errors
    /// [`CryptoError::KeyFile`] for an unreadable, malformed or unwritable key file.
    pub fn load_or_generate(file: Option<&Path>, data_dir: &Path) -> Result<Self, CryptoError> {
        let path = file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| data_dir.join(MASTER_KEY_FILE));
        if !path.exists() {
            if file.is_some() {
                return Err(CryptoError::KeyFile {
                    path,
                    reason: "does not exist".into(),
                });
            }
            let fresh = Zeroizing::new(crate::random_hex(32));
            crate::tls::write_file(&path, fresh.as_bytes(), true).map_err(|e| {
                CryptoError::KeyFile {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
        }
        Self::load(&path)
    }

    /// Reads an existing key file (64 hex chars); never creates one.
    ///
    /// # Errors
    /// [`CryptoError::KeyFile`] for a missing, unreadable or malformed key file.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let hex_text = read_key_hex(path)?;
        let bytes =
            Zeroizing::new(
                hex::decode(hex_text.as_bytes()).map_err(|_| CryptoError::KeyFile {
                    path: path.to_path_buf(),
                    reason: "not hexadecimal".into(),
                })?,
            );
        Ok(Self::from_bytes(&bytes))
    }

    /// True when `other` is the same key (a value sealed with one opens with the other).
    pub fn is_same_key(&self, other: &MasterKey) -> bool {
        let probe = SealedRow {
            purpose: "key-comparison",
            table: "",
            row_id: "",
            user_id: "",
        };
        other.open(&probe, &self.seal(&probe, b"probe")).is_ok()
    }

    /// A key from raw bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        }
    }

    /// Seals `plaintext` for the row `row`.
    pub fn seal(&self, row: &SealedRow<'_>, plaintext: &[u8]) -> String {
        let sealed = self.encrypt(&row.aad(), plaintext);
        format!("{BOUND_PREFIX}{sealed}")
    }

    /// Opens a value sealed by [`MasterKey::seal`] for the row `row`.
    ///
    /// # Errors
    /// [`CryptoError::Open`] for a value that is malformed, modified, sealed under another key, for
    /// another row, or in the unbound first format.
    pub fn open(
        &self,
        row: &SealedRow<'_>,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let body = sealed.strip_prefix(BOUND_PREFIX).ok_or(CryptoError::Open)?;
        self.decrypt(&row.aad(), body)
    }

    /// True when `sealed` is in the unbound first format (only the start-up re-sealing asks).
    pub(crate) fn is_unbound(sealed: &str) -> bool {
        !sealed.starts_with(BOUND_PREFIX)
    }

    /// Re-seals a value of the unbound first format (purpose-only AAD) for its row.
    ///
    /// # Errors
    /// [`CryptoError::Open`] when it does not open with this key as a value for `row.purpose`.
    pub(crate) fn reseal_unbound(
        &self,
        row: &SealedRow<'_>,
        sealed: &str,
    ) -> Result<String, CryptoError> {
        let plain = self.open_unbound(row, sealed)?;
        Ok(self.seal(row, &plain))
    }

    /// Opens a value of the unbound first format (purpose-only AAD). Only for re-sealing it bound
    /// (start-up binding, key rotation), and only while the database's `sealed-values-bound` flag
    /// is not set.
    ///
    /// # Errors
    /// [`CryptoError::Open`] when it does not open with this key as a value for `row.purpose`.
    pub(crate) fn open_unbound(
        &self,
        row: &SealedRow<'_>,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.decrypt(row.purpose.as_bytes(), sealed)
    }

    fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption only fails past AES-GCM's size limit (64 GiB); our values are tiny.
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    fn decrypt(&self, aad: &[u8], sealed: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let raw = B64.decode(sealed).map_err(|_| CryptoError::Open)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: SealedRow<'static> = SealedRow {
        purpose: "agent-signing-secret",
        table: "agents",
        row_id: "agt_1",
        user_id: "usr_1",
    };

    #[test]
    fn sealed_values_round_trip_and_are_bound_to_purpose_and_key() {
        let k = MasterKey::from_bytes(&[1; 32]);
        let s = k.seal(&ROW, b"secret");
        assert!(!s.contains("secret"));
        assert_eq!(k.open(&ROW, &s).unwrap().as_slice(), b"secret");
        let other_purpose = SealedRow {
            purpose: "mcp-env",
            ..ROW
        };
        assert!(k.open(&other_purpose, &s).is_err());
        assert!(MasterKey::from_bytes(&[2; 32]).open(&ROW, &s).is_err());
        assert!(k.open(&ROW, "!!").is_err());
        assert!(k.open(&ROW, "v2.!!").is_err());
    }

    #[test]
    fn a_sealed_value_moved_to_another_row_table_or_user_does_not_open() {
        let k = MasterKey::from_bytes(&[1; 32]);
        let s = k.seal(&ROW, b"secret");
        for moved in [
            SealedRow {
                row_id: "agt_2",
                ..ROW
            },
            SealedRow {
                user_id: "usr_2",
                ..ROW
            },
            SealedRow {
                table: "mcp_servers",
                ..ROW
            },
            // Shifting bytes between fields does not give the same associated data.
            SealedRow {
                row_id: "agt_1u",
                user_id: "sr_1",
                ..ROW
            },
        ] {
            assert!(k.open(&moved, &s).is_err(), "{moved:?}");
        }
    }

    #[test]
    fn unbound_values_do_not_open_and_are_resealed_only_for_their_purpose() {
        let k = MasterKey::from_bytes(&[1; 32]);
        // The first format: purpose-only AAD, no prefix.
        let legacy = k.encrypt(ROW.purpose.as_bytes(), b"secret");
        assert!(MasterKey::is_unbound(&legacy));
        assert!(k.open(&ROW, &legacy).is_err());
        let other_purpose = SealedRow {
            purpose: "mcp-env",
            ..ROW
        };
        assert!(k.reseal_unbound(&other_purpose, &legacy).is_err());
        let bound = k.reseal_unbound(&ROW, &legacy).unwrap();
        assert!(!MasterKey::is_unbound(&bound));
        assert_eq!(k.open(&ROW, &bound).unwrap().as_slice(), b"secret");
    }

    #[test]
    fn master_key_is_generated_once_private_and_validated() {
        let tmp = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_generate(None, tmp.path()).unwrap();
        let sealed = a.seal(&ROW, b"v");
        let b = MasterKey::load_or_generate(None, tmp.path()).unwrap();
        assert_eq!(b.open(&ROW, &sealed).unwrap().as_slice(), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tmp.path().join("master.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(tmp.path().join("bad.key"), "abc").unwrap();
        assert!(
            MasterKey::load_or_generate(Some(&tmp.path().join("bad.key")), tmp.path()).is_err()
        );
        assert!(
            MasterKey::load_or_generate(Some(&tmp.path().join("none.key")), tmp.path()).is_err()
        );
    }
}
