//! Secrets at rest on the relay: a 256-bit master key (from a file, or generated on first run in the
//! data dir with mode `0600`) and AES-256-GCM for per-agent signing secrets and MCP secret values.
//!
//! Sealed values are `base64(nonce ‖ ciphertext ‖ tag)` with the purpose as AAD, so a value sealed
//! for one column cannot be swapped into another.

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
    /// A sealed value does not open: another master key, or modified in the database.
    #[error("a sealed value does not open with this relay's master key (wrong key, or modified)")]
    Open,
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
            .unwrap_or_else(|| data_dir.join("master.key"));
        let err = |reason: String| CryptoError::KeyFile {
            path: path.clone(),
            reason,
        };
        if !path.exists() {
            if file.is_some() {
                return Err(err("does not exist".into()));
            }
            let fresh = Zeroizing::new(crate::random_hex(32));
            crate::tls::write_file(&path, fresh.as_bytes(), true)
                .map_err(|e| err(e.to_string()))?;
        }
        let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?);
        let bytes =
            Zeroizing::new(hex::decode(text.trim()).map_err(|_| err("not hexadecimal".into()))?);
        if bytes.len() != 32 {
            return Err(err(format!("holds {} bytes, expected 32", bytes.len())));
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// A key from raw bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        }
    }

    /// Seals `plaintext` for `purpose`.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption only fails past AES-GCM's size limit (64 GiB); our values are tiny.
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: purpose.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    /// Opens a value sealed by [`MasterKey::seal`] for `purpose`.
    ///
    /// # Errors
    /// [`CryptoError::Open`] for a value that is malformed, modified, or sealed under another key or purpose.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let raw = B64.decode(sealed).map_err(|_| CryptoError::Open)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: purpose.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_and_are_bound_to_purpose_and_key() {
        let k = MasterKey::from_bytes(&[1; 32]);
        let s = k.seal("agent-signing-secret", b"secret");
        assert!(!s.contains("secret"));
        assert_eq!(
            k.open("agent-signing-secret", &s).unwrap().as_slice(),
            b"secret"
        );
        assert!(k.open("mcp-env", &s).is_err());
        assert!(MasterKey::from_bytes(&[2; 32])
            .open("agent-signing-secret", &s)
            .is_err());
        assert!(k.open("agent-signing-secret", "!!").is_err());
    }

    #[test]
    fn master_key_is_generated_once_private_and_validated() {
        let tmp = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_generate(None, tmp.path()).unwrap();
        let sealed = a.seal("p", b"v");
        let b = MasterKey::load_or_generate(None, tmp.path()).unwrap();
        assert_eq!(b.open("p", &sealed).unwrap().as_slice(), b"v");
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
