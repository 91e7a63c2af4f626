//! Sealed blobs and files: AES-256-GCM under a purpose's [`DerivedKey`], with a versioned header.
//!
//! ```text
//! magic "KTCHSEAL" (8) | version (1) | purpose length (1) | purpose | key id (16) | nonce (12) | ciphertext ‖ tag (16)
//! ```
//! The AAD is everything before the nonce, so the purpose, version and key id cannot be swapped.
//! The key id (see [`DerivedKey::key_id`]) tells "sealed under another machine key" apart from
//! "modified after sealing". Every failure leaves the file untouched.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use subtle::ConstantTimeEq;

use super::machine_key::{DerivedKey, MachineKey, Purpose};
use crate::atomic_file::{write_private_atomically, AtomicWriteError};
use crate::secret::SecretBytes;

const MAGIC: &[u8; 8] = b"KTCHSEAL";
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a sealed blob or file could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The bytes do not start with katachi's magic: some other file is in the way.
    #[error("{what} is not a katachi sealed file (wrong magic bytes)")]
    NotSealed {
        /// The file or value that was read.
        what: String,
    },
    /// Shorter than its header says: an interrupted copy or a damaged disk.
    #[error("{what} is truncated ({len} bytes); restore it from a backup or sign in again")]
    Truncated {
        /// The file or value that was read.
        what: String,
        /// Its length.
        len: usize,
    },
    /// Written by a newer (or unknown) format version.
    #[error("{what} uses sealed-file format version {found}, this katachi reads version {VERSION}; upgrade katachi")]
    UnsupportedVersion {
        /// The file or value that was read.
        what: String,
        /// The version found.
        found: u8,
    },
    /// Sealed for another purpose (e.g. a tunnel credential file put where the agent token belongs).
    #[error("{what} holds {found:?}, expected {expected:?}")]
    WrongPurpose {
        /// The file or value that was read.
        what: String,
        /// The purpose in the header.
        found: String,
        /// The purpose asked for.
        expected: String,
    },
    /// Sealed under a different machine key: copied from another machine, the hardware changed, or
    /// the keychain secret was replaced. `katachi doctor` names the component that changed.
    #[error("{what} was sealed on another machine or with another keychain secret; it was left untouched. Run `katachi doctor` to see what changed, or sign in again on this machine")]
    WrongMachine {
        /// The file or value that was read.
        what: String,
    },
    /// The key matches but the content fails authentication: the file was modified after sealing.
    #[error("{what} was modified after it was sealed (authentication failed); it was left untouched. Remove it and sign in again")]
    Tampered {
        /// The file or value that was read.
        what: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file could not be written; the previous version is intact and the caller still holds the value.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// The purpose name does not fit the header (over 255 bytes).
    #[error("purpose name too long for a sealed header")]
    PurposeTooLong,
    /// The cipher refused to encrypt (plaintext over AES-GCM's limit).
    #[error("plaintext too large to seal")]
    TooLarge,
}

/// Seals `plaintext` under `key` (its purpose goes into the header and the AAD).
///
/// # Errors
/// [`SealError::PurposeTooLong`] or [`SealError::TooLarge`]; never for ordinary input.
pub fn seal(key: &DerivedKey, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let purpose = key.purpose().name().as_bytes();
    let purpose_len = u8::try_from(purpose.len()).map_err(|_| SealError::PurposeTooLong)?;
    let mut out = Vec::with_capacity(
        8 + 2 + purpose.len() + KEY_ID_LEN + NONCE_LEN + plaintext.len() + TAG_LEN,
    );
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(purpose_len);
    out.extend_from_slice(purpose);
    out.extend_from_slice(&key.key_id());
    let aad_len = out.len();
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose()));
    // A random 96-bit nonce per seal: files are rewritten rarely, far below the 2^32 bound.
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &out[..aad_len],
            },
        )
        .map_err(|_| SealError::TooLarge)?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a blob sealed by [`seal`]; `what` names it in errors (a path or an entry name).
///
/// # Errors
/// A distinct [`SealError`] for wrong magic, truncation, unknown version, wrong purpose, another
/// machine's key, and tampering.
pub fn unseal(key: &DerivedKey, bytes: &[u8], what: &str) -> Result<SecretBytes, SealError> {
    let name = || what.to_owned();
    let truncated = || SealError::Truncated {
        what: name(),
        len: bytes.len(),
    };
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            truncated()
        } else {
            SealError::NotSealed { what: name() }
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(SealError::NotSealed { what: name() });
    }
    let version = *bytes.get(8).ok_or_else(truncated)?;
    if version != VERSION {
        return Err(SealError::UnsupportedVersion {
            what: name(),
            found: version,
        });
    }
    let purpose_len = usize::from(*bytes.get(9).ok_or_else(truncated)?);
    let purpose_end = 10 + purpose_len;
    let key_id_end = purpose_end + KEY_ID_LEN;
    let nonce_end = key_id_end + NONCE_LEN;
    if bytes.len() < nonce_end + TAG_LEN {
        return Err(truncated());
    }
    let found_purpose = &bytes[10..purpose_end];
    let expected = key.purpose().name();
    if found_purpose != expected.as_bytes() {
        return Err(SealError::WrongPurpose {
            what: name(),
            found: String::from_utf8_lossy(found_purpose).into_owned(),
            expected: expected.to_owned(),
        });
    }
    // Tell "another machine's key" apart from "modified": compare key ids first.
    if !bool::from(bytes[purpose_end..key_id_end].ct_eq(&key.key_id())) {
        return Err(SealError::WrongMachine { what: name() });
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose()));
    let nonce = Nonce::from_slice(&bytes[key_id_end..nonce_end]);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &bytes[nonce_end..],
                aad: &bytes[..key_id_end],
            },
        )
        .map(SecretBytes::new)
        .map_err(|_| SealError::Tampered { what: name() })
}

/// A file sealed with the machine key for one purpose (agent credentials, tunnel credentials).
#[derive(Debug, Clone)]
pub struct SealedFile {
    /// Where the file lives.
    path: PathBuf,
    /// What it holds; selects the key and is checked on read.
    purpose: Purpose,
}

impl SealedFile {
    /// A sealed file at `path` holding `purpose`.
    pub fn new(path: impl Into<PathBuf>, purpose: Purpose) -> Self {
        Self {
            path: path.into(),
            purpose,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seals `plaintext` and replaces the file atomically (`0600`).
    ///
    /// Takes the value by reference: when saving fails the caller still holds it and can retry or
    /// keep using it — a credential already obtained is never lost because the disk said no.
    ///
    /// # Errors
    /// [`SealError::Write`] when the file cannot be replaced; the old file is then intact.
    pub fn write(&self, key: &MachineKey, plaintext: &[u8]) -> Result<(), SealError> {
        let sealed = seal(&key.key_for(self.purpose), plaintext)?;
        write_private_atomically(&self.path, &sealed)?;
        Ok(())
    }

    /// Opens the file; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// As [`unseal`], plus [`SealError::Read`].
    pub fn read(&self, key: &MachineKey) -> Result<Option<SecretBytes>, SealError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SealError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        unseal(
            &key.key_for(self.purpose),
            &bytes,
            &self.path.display().to_string(),
        )
        .map(Some)
    }

    /// Removes the file; `Ok(false)` when it was not there.
    ///
    /// # Errors
    /// [`SealError::Read`] when the OS refuses.
    pub fn remove(&self) -> Result<bool, SealError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(SealError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8, purpose: Purpose) -> DerivedKey {
        DerivedKey::from_bytes([byte; 32], purpose)
    }

    const P: Purpose = Purpose::custom("test-purpose");

    #[test]
    fn seal_then_unseal_round_trips() {
        let k = key(1, P);
        let sealed = seal(&k, b"token-123").unwrap();
        assert_eq!(unseal(&k, &sealed, "x").unwrap().expose(), b"token-123");
        assert!(!sealed.windows(9).any(|w| w == b"token-123"));
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let k = key(1, P);
        assert_ne!(seal(&k, b"same").unwrap(), seal(&k, b"same").unwrap());
    }

    #[test]
    fn another_machines_key_is_reported_as_wrong_machine() {
        let sealed = seal(&key(1, P), b"secret").unwrap();
        assert!(matches!(
            unseal(&key(2, P), &sealed, "x"),
            Err(SealError::WrongMachine { .. })
        ));
    }

    #[test]
    fn every_flipped_bit_after_the_key_id_is_detected_as_tampering() {
        let k = key(1, P);
        let sealed = seal(&k, b"0123456789abcdef").unwrap();
        let body_start = 10 + P.name().len() + KEY_ID_LEN;
        for i in body_start..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(unseal(&k, &bad, "x"), Err(SealError::Tampered { .. })),
                "byte {i}"
            );
        }
    }

    #[test]
    fn header_changes_get_their_own_errors() {
        let k = key(1, P);
        let sealed = seal(&k, b"v").unwrap();
        let mut bad_magic = sealed.clone();
        bad_magic[0] = b'X';
        assert!(matches!(
            unseal(&k, &bad_magic, "x"),
            Err(SealError::NotSealed { .. })
        ));
        let mut bad_version = sealed.clone();
        bad_version[8] = 9;
        assert!(matches!(
            unseal(&k, &bad_version, "x"),
            Err(SealError::UnsupportedVersion { found: 9, .. })
        ));
        let other = seal(&key(1, Purpose::custom("other")), b"v").unwrap();
        assert!(matches!(
            unseal(&k, &other, "x"),
            Err(SealError::WrongPurpose { .. })
        ));
    }

    #[test]
    fn every_truncation_is_reported_as_truncated() {
        let k = key(1, P);
        let sealed = seal(&k, b"some credential").unwrap();
        for len in 1..sealed.len() {
            let err = unseal(&k, &sealed[..len], "x").unwrap_err();
            assert!(
                matches!(
                    err,
                    SealError::Truncated { .. } | SealError::Tampered { .. }
                ),
                "len {len}: {err}"
            );
        }
        // Anything shorter than header + tag is "truncated", never a decryption attempt.
        let min = 10 + P.name().len() + KEY_ID_LEN + NONCE_LEN + TAG_LEN;
        for len in 1..min {
            assert!(
                matches!(
                    unseal(&k, &sealed[..len], "x"),
                    Err(SealError::Truncated { .. })
                ),
                "len {len}"
            );
        }
        assert!(matches!(
            unseal(&k, b"", "x"),
            Err(SealError::Truncated { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let k = key(1, P);
        for len in 0..200usize {
            let junk: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let _ = unseal(&k, &junk, "x");
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&junk);
            let _ = unseal(&k, &with_magic, "x");
        }
    }
}
