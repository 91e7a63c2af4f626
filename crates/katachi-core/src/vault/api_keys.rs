//! AI provider API keys: kept in the keystore (the OS keychain unless the user opted in to the file
//! keystore), each value sealed with the machine key, so a keychain export alone does not reveal it.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use super::keystore::{Keystore, KeystoreError};
use super::machine_key::{MachineKey, Purpose};
use super::sealed::{seal, unseal, SealError};
use crate::secret::SecretBytes;

/// Longest accepted API key, in bytes (real provider keys are a few hundred at most).
const MAX_KEY_LEN: usize = 8 * 1024;

/// Errors storing or reading an API key.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// Provider names are short identifiers so they make safe keychain account names.
    #[error("invalid provider name {0:?}: use 1-64 characters from a-z, 0-9, '-' and '_'")]
    InvalidProvider(String),
    /// Empty keys are refused rather than stored.
    #[error("the API key is empty")]
    Empty,
    /// Implausibly long keys are refused.
    #[error(
        "the API key is {0} bytes, longer than the {MAX_KEY_LEN}-byte limit; check what was pasted"
    )]
    TooLong(usize),
    /// The keystore failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The stored value does not open with this machine's key (other machine, tampered, damaged).
    #[error("stored API key for {provider:?} cannot be opened: {source}")]
    Sealed {
        /// The provider.
        provider: String,
        /// Why it did not open.
        source: SealError,
    },
}

/// API keys of AI providers, one keystore entry per provider (`api-key:<provider>`).
pub struct ApiKeys<'a> {
    /// Where the sealed values live.
    keystore: &'a dyn Keystore,
    /// Seals the values.
    machine_key: &'a MachineKey,
}

impl<'a> ApiKeys<'a> {
    /// API keys in `keystore`, sealed with `machine_key`.
    pub fn new(keystore: &'a dyn Keystore, machine_key: &'a MachineKey) -> Self {
        Self {
            keystore,
            machine_key,
        }
    }

    /// Stores (or replaces) the key of `provider`.
    ///
    /// # Errors
    /// [`ApiKeyError`] for a bad provider name or key, or a keystore failure (the caller keeps the key).
    pub fn set(&self, provider: &str, key: &SecretBytes) -> Result<(), ApiKeyError> {
        let account = account_for(provider)?;
        if key.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(ApiKeyError::TooLong(key.len()));
        }
        let sealed =
            seal(&self.machine_key.key_for(Purpose::API_KEYS), key.expose()).map_err(|source| {
                ApiKeyError::Sealed {
                    provider: provider.to_owned(),
                    source,
                }
            })?;
        self.keystore
            .set(&account, &Zeroizing::new(B64.encode(sealed)))?;
        Ok(())
    }

    /// The key of `provider`, `None` when none is stored.
    ///
    /// # Errors
    /// [`ApiKeyError`] for a bad provider name, a keystore failure, or a value that does not open.
    pub fn get(&self, provider: &str) -> Result<Option<SecretBytes>, ApiKeyError> {
        let account = account_for(provider)?;
        let Some(encoded) = self.keystore.get(&account)? else {
            return Ok(None);
        };
        let sealed = B64.decode(encoded.trim()).map_err(|_| {
            ApiKeyError::Keystore(KeystoreError::Corrupted {
                account: account.clone(),
                reason: "not base64".to_owned(),
            })
        })?;
        unseal(
            &self.machine_key.key_for(Purpose::API_KEYS),
            &sealed,
            &format!("keychain entry {account}"),
        )
        .map(Some)
        .map_err(|source| ApiKeyError::Sealed {
            provider: provider.to_owned(),
            source,
        })
    }

    /// Deletes the key of `provider`; `Ok(false)` when none was stored.
    ///
    /// # Errors
    /// [`ApiKeyError`] for a bad provider name or a keystore failure.
    pub fn delete(&self, provider: &str) -> Result<bool, ApiKeyError> {
        Ok(self.keystore.delete(&account_for(provider)?)?)
    }
}

/// Checks a key name before anything is read or stored under it.
///
/// # Errors
/// [`ApiKeyError::InvalidProvider`] when it breaks the naming rule.
pub fn check_key_name(name: &str) -> Result<(), ApiKeyError> {
    account_for(name).map(|_| ())
}

fn account_for(provider: &str) -> Result<String, ApiKeyError> {
    let ok = (1..=64).contains(&provider.len())
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(format!("api-key:{provider}"))
    } else {
        Err(ApiKeyError::InvalidProvider(provider.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprint;
    use crate::vault::MemoryKeystore;

    fn mk(machine: &str) -> MachineKey {
        let fp =
            Fingerprint::from_components([("machine_id", machine.as_bytes().to_vec())]).unwrap();
        MachineKey::derive(&SecretBytes::new(vec![3; 32]), &fp)
    }

    #[test]
    fn api_keys_round_trip_and_are_sealed_in_the_keystore() {
        let ks = MemoryKeystore::default();
        let key = mk("a");
        let keys = ApiKeys::new(&ks, &key);
        keys.set("openai", &SecretBytes::new(b"sk-test-123".to_vec()))
            .unwrap();
        assert_eq!(
            keys.get("openai").unwrap().unwrap().expose(),
            b"sk-test-123"
        );
        let raw = ks.get("api-key:openai").unwrap().unwrap();
        assert!(!raw.contains("sk-test"));
        assert!(keys.delete("openai").unwrap());
        assert!(keys.get("openai").unwrap().is_none());
    }

    #[test]
    fn api_key_from_another_machine_does_not_open() {
        let ks = MemoryKeystore::default();
        let (a, b) = (mk("a"), mk("b"));
        ApiKeys::new(&ks, &a)
            .set("anthropic", &SecretBytes::new(b"k".to_vec()))
            .unwrap();
        let err = ApiKeys::new(&ks, &b).get("anthropic").unwrap_err();
        assert!(
            matches!(
                err,
                ApiKeyError::Sealed {
                    source: SealError::WrongMachine { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_provider_names_and_keys_are_refused() {
        let ks = MemoryKeystore::default();
        let key = mk("a");
        let keys = ApiKeys::new(&ks, &key);
        for bad in ["", "Open AI", "../x", "a:b", &"x".repeat(65)] {
            assert!(
                matches!(keys.get(bad), Err(ApiKeyError::InvalidProvider(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            keys.set("p", &SecretBytes::new(vec![])),
            Err(ApiKeyError::Empty)
        ));
        assert!(matches!(
            keys.set("p", &SecretBytes::new(vec![1; MAX_KEY_LEN + 1])),
            Err(ApiKeyError::TooLong(_))
        ));
        ks.set("api-key:p", "%%%").unwrap();
        assert!(matches!(
            keys.get("p"),
            Err(ApiKeyError::Keystore(KeystoreError::Corrupted { .. }))
        ));
    }
}
