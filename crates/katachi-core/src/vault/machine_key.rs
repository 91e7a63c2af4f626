//! The machine key: a 32-byte data key, used as the HKDF-SHA256 pseudo-random key and expanded into
//! one key per purpose, so a key leaked for one use (say, an API-key blob) tells nothing about
//! another (the store).
//!
//! The data key is random and bound to the keychain secret and this machine's hardware by
//! `vault::binding` (k of n fingerprint components). Installations made before the binding derived
//! the key as HKDF-Extract(secret ‖ fingerprint digest); [`legacy_data_key`] computes that value, so
//! a migrated install keeps its data key and every per-purpose key stays byte-for-byte the same
//! (nothing is re-encrypted).

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keystore::{Keystore, KeystoreError};
use crate::fingerprint::Fingerprint;
use crate::secret::SecretBytes;

/// Keystore account of the 32-byte machine secret.
pub const MACHINE_SECRET_ACCOUNT: &str = "machine-secret";

/// Length of the machine secret in bytes.
const SECRET_LEN: usize = 32;

/// HKDF salt: a fixed domain label (the inputs are already uniformly random or hashed).
const HKDF_SALT: &[u8] = b"katachi machine key v1";

/// What a derived key is for. The name is part of the HKDF `info`, so each purpose has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purpose(&'static str);

impl Purpose {
    /// The SQLCipher store.
    pub const STORE: Purpose = Purpose("store");
    /// The agent's access token and signing secret (sealed file).
    pub const AGENT_CREDENTIALS: Purpose = Purpose("agent-credentials");
    /// Tunnel credentials (sealed file).
    pub const TUNNEL_CREDENTIALS: Purpose = Purpose("tunnel-credentials");
    /// AI provider API keys (sealed values in the keychain).
    pub const API_KEYS: Purpose = Purpose("api-keys");
    /// The audit log's tamper-evident chain.
    pub const AUDIT_CHAIN: Purpose = Purpose("audit-chain");

    /// A purpose for tests and benches of sealed files.
    pub const fn custom(name: &'static str) -> Purpose {
        Purpose(name)
    }

    /// The purpose's name (also the AAD of sealed files).
    pub fn name(self) -> &'static str {
        self.0
    }
}

/// The 32-byte data key the machine key expands from; zeroized on drop, never printed.
///
/// # Security
/// Stored only split into shares, each wrapped under the keychain secret and one hardware
/// component (`vault::binding`); never written whole.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh random data key (a new installation).
    pub fn random() -> Self {
        Self(Zeroizing::new(rand::random()))
    }

    /// A data key from bytes recovered from the binding's shares.
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key bytes: split into shares by the binding, and checked against its key check.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The data key of installations made before the threshold binding: HKDF-Extract over the keychain
/// secret ‖ the v1 fingerprint digest (removable NICs included, as those versions counted them).
/// [`MachineKey::from_data_key`] of it equals the old machine key, so migrating keeps every key.
pub fn legacy_data_key(secret: &SecretBytes, fingerprint: &Fingerprint) -> DataKey {
    // ikm = keychain secret ‖ fingerprint digest: both are needed to rebuild the key.
    let mut ikm = Zeroizing::new(Vec::with_capacity(secret.len() + 32));
    ikm.extend_from_slice(secret.expose());
    ikm.extend_from_slice(&fingerprint.digest());
    let (prk, _) = Hkdf::<Sha256>::extract(Some(HKDF_SALT), &ikm);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&prk);
    DataKey::from_bytes(bytes)
}

/// The machine key: never stored whole; rebuilt on each start from the binding (keychain secret and
/// k of n hardware components).
///
/// # Security
/// Unguessable without the keychain secret; useless on another machine because most components differ.
pub struct MachineKey {
    /// HKDF pseudo-random key.
    hkdf: Hkdf<Sha256>,
}

impl std::fmt::Debug for MachineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MachineKey(<redacted>)")
    }
}

impl MachineKey {
    /// The machine key of installations made before the threshold binding (keychain secret ‖ whole
    /// fingerprint digest). Tests and benches use it as a quick key; agents get theirs from the
    /// binding (`AgentHome`).
    pub fn derive(secret: &SecretBytes, fingerprint: &Fingerprint) -> Self {
        Self::from_data_key(&legacy_data_key(secret, fingerprint))
    }

    /// The machine key that expands from `data_key`.
    pub fn from_data_key(data_key: &DataKey) -> Self {
        // A 32-byte PRK is exactly HKDF-SHA256's hash length, so from_prk cannot fail.
        match Hkdf::<Sha256>::from_prk(data_key.expose()) {
            Ok(hkdf) => Self { hkdf },
            Err(_) => Self {
                hkdf: Hkdf::<Sha256>::new(Some(HKDF_SALT), data_key.expose()),
            },
        }
    }

    /// The 256-bit key for one purpose.
    pub fn key_for(&self, purpose: Purpose) -> DerivedKey {
        let mut key = Zeroizing::new([0u8; 32]);
        let info = format!("katachi/v1/{}", purpose.name());
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        if self.hkdf.expand(info.as_bytes(), key.as_mut()).is_err() {
            unreachable_expand();
        }
        DerivedKey { key, purpose }
    }
}

#[cold]
fn unreachable_expand() {
    tracing::error!("hkdf expand of 32 bytes failed; this cannot happen");
}

/// A 256-bit key for one [`Purpose`]; zeroized on drop.
pub struct DerivedKey {
    /// The key bytes.
    key: Zeroizing<[u8; 32]>,
    /// What the key is for.
    purpose: Purpose,
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DerivedKey({}, <redacted>)", self.purpose.name())
    }
}

impl DerivedKey {
    /// A key from raw bytes (benchmarks, and keys not bound to this machine such as the file keystore's).
    pub fn from_bytes(key: [u8; 32], purpose: Purpose) -> Self {
        Self {
            key: Zeroizing::new(key),
            purpose,
        }
    }

    /// The key bytes; call sites say why they need them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.key
    }

    /// What this key is for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// A 16-byte public identifier of this key (HMAC of a fixed label). Sealed files carry it so
    /// "sealed under another key" and "tampered with" are told apart; it reveals nothing of the key.
    pub fn key_id(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.key.as_ref()) {
            mac.update(b"katachi key id v1");
            out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        }
        out
    }
}

/// The machine secret from the keystore, created (32 random bytes) on first run.
///
/// Returns the secret and whether it was created now.
///
/// # Errors
/// [`KeystoreError`] when the keystore is unreachable or locked, when the entry is not 64 hex
/// characters ([`KeystoreError::Corrupted`]: never silently replaced, that would orphan all data), or
/// when the keystore does not keep what was written.
pub fn load_or_create_machine_secret(
    store: &dyn Keystore,
) -> Result<(SecretBytes, bool), KeystoreError> {
    if let Some(existing) = store.get(MACHINE_SECRET_ACCOUNT)? {
        return Ok((decode_secret(&Zeroizing::new(existing))?, false));
    }
    let fresh = SecretBytes::random(SECRET_LEN);
    store.set(
        MACHINE_SECRET_ACCOUNT,
        &Zeroizing::new(hex::encode(fresh.expose())),
    )?;
    // Read back: catches keychains that drop writes, and two first runs racing (the value that
    // actually stuck wins; nothing was sealed under the other one yet).
    let stored = store
        .get(MACHINE_SECRET_ACCOUNT)?
        .ok_or_else(|| KeystoreError::NotPersisted {
            account: MACHINE_SECRET_ACCOUNT.to_owned(),
        })?;
    Ok((decode_secret(&Zeroizing::new(stored))?, true))
}

/// The machine secret if the keystore holds one; never creates it (used by `doctor`).
///
/// # Errors
/// [`KeystoreError`] when the keystore is unreachable or the entry is corrupted.
pub fn load_machine_secret(store: &dyn Keystore) -> Result<Option<SecretBytes>, KeystoreError> {
    match store.get(MACHINE_SECRET_ACCOUNT)? {
        Some(v) => decode_secret(&Zeroizing::new(v)).map(Some),
        None => Ok(None),
    }
}

fn decode_secret(hex_value: &str) -> Result<SecretBytes, KeystoreError> {
    let corrupted = |reason: &str| KeystoreError::Corrupted {
        account: MACHINE_SECRET_ACCOUNT.to_owned(),
        reason: reason.to_owned(),
    };
    let bytes = hex::decode(hex_value.trim()).map_err(|_| corrupted("not hexadecimal"))?;
    if bytes.len() != SECRET_LEN {
        return Err(corrupted("wrong length"));
    }
    Ok(SecretBytes::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::MemoryKeystore;

    fn fp(v: &str) -> Fingerprint {
        Fingerprint::from_components([("machine_id", v.as_bytes().to_vec())]).unwrap()
    }

    #[test]
    fn each_purpose_gets_its_own_key() {
        let mk = MachineKey::derive(&SecretBytes::new(vec![7; 32]), &fp("a"));
        assert_ne!(
            mk.key_for(Purpose::STORE).expose(),
            mk.key_for(Purpose::API_KEYS).expose()
        );
        assert_eq!(
            mk.key_for(Purpose::STORE).expose(),
            mk.key_for(Purpose::STORE).expose()
        );
    }

    #[test]
    fn key_depends_on_both_secret_and_fingerprint() {
        let base =
            MachineKey::derive(&SecretBytes::new(vec![7; 32]), &fp("a")).key_for(Purpose::STORE);
        let other_machine =
            MachineKey::derive(&SecretBytes::new(vec![7; 32]), &fp("b")).key_for(Purpose::STORE);
        let other_secret =
            MachineKey::derive(&SecretBytes::new(vec![8; 32]), &fp("a")).key_for(Purpose::STORE);
        assert_ne!(base.expose(), other_machine.expose());
        assert_ne!(base.expose(), other_secret.expose());
        assert_ne!(base.key_id(), other_machine.key_id());
    }

    #[test]
    fn legacy_data_key_gives_the_keys_the_old_derivation_gave() {
        // The derivation of katachi before the binding, written out as it was.
        let secret = SecretBytes::new(vec![7; 32]);
        let mut ikm = secret.expose().to_vec();
        ikm.extend_from_slice(&fp("a").digest());
        let old = Hkdf::<Sha256>::new(Some(HKDF_SALT), &ikm);
        let mut old_store = [0u8; 32];
        old.expand(b"katachi/v1/store", &mut old_store).unwrap();
        let migrated = MachineKey::from_data_key(&legacy_data_key(&secret, &fp("a")));
        assert_eq!(migrated.key_for(Purpose::STORE).expose(), &old_store);
    }

    #[test]
    fn machine_secret_is_created_once_then_reused() {
        let ks = MemoryKeystore::default();
        let (a, created) = load_or_create_machine_secret(&ks).unwrap();
        assert!(created);
        let (b, created_again) = load_or_create_machine_secret(&ks).unwrap();
        assert!(!created_again);
        assert_eq!(a.expose(), b.expose());
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn corrupted_machine_secret_is_an_error_and_is_not_replaced() {
        let ks = MemoryKeystore::default();
        ks.set(MACHINE_SECRET_ACCOUNT, "zz-not-hex").unwrap();
        let err = load_or_create_machine_secret(&ks).unwrap_err();
        assert!(matches!(err, KeystoreError::Corrupted { .. }), "{err}");
        assert_eq!(
            ks.get(MACHINE_SECRET_ACCOUNT).unwrap().as_deref(),
            Some("zz-not-hex")
        );
        ks.set(MACHINE_SECRET_ACCOUNT, "abcd").unwrap();
        assert!(matches!(
            load_or_create_machine_secret(&ks),
            Err(KeystoreError::Corrupted { .. })
        ));
    }

    #[test]
    fn debug_output_is_redacted() {
        let mk = MachineKey::derive(&SecretBytes::new(vec![7; 32]), &fp("a"));
        assert_eq!(format!("{mk:?}"), "MachineKey(<redacted>)");
        assert!(format!("{:?}", mk.key_for(Purpose::STORE)).contains("redacted"));
    }
}
