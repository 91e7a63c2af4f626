//! The keys and encodings of one binding record: the per-component wrap keys, the keyed value
//! hashes, the secret and data-key checks, and each share's AAD.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{BINDING_VERSION, CHECK_LEN, SHARE_PURPOSE};
use crate::secret::SecretBytes;
use crate::vault::DataKey;

/// The keys one (secret, salt) pair gives: the value-hash key and the secret check.
pub(super) struct RecordKeys {
    hkdf: Hkdf<Sha256>,
}

impl RecordKeys {
    pub(super) fn new(secret: &SecretBytes, salt: &[u8]) -> Self {
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

    pub(super) fn secret_check(&self) -> String {
        hex::encode(*self.expand::<CHECK_LEN>(b"katachi/v1/binding-secret-check"))
    }

    pub(super) fn value_hash(&self, name: &str, value: &[u8]) -> String {
        let key = self.expand::<32>(b"katachi/v1/binding-component-hash");
        let mut mac = hmac_with(key.as_ref());
        mac.update(&len_prefixed(name.as_bytes(), value));
        hex::encode(mac.finalize().into_bytes())
    }

    /// The wrap key of one component's share: HKDF(salt; secret ‖ name ‖ value).
    pub(super) fn wrap_key(
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
        .unwrap_or_else(|_| <Hmac<Sha256> as aes_gcm::aead::KeyInit>::new(&Default::default()))
}

fn len_prefixed(name: &[u8], value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(8 + name.len() + value.len()));
    for part in [name, value] {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

pub(super) fn key_check(data_key: &DataKey) -> String {
    let mut mac = hmac_with(data_key.expose());
    mac.update(b"katachi binding data key check v1");
    hex::encode(&mac.finalize().into_bytes()[..CHECK_LEN])
}

pub(super) fn share_aad(salt: &[u8], component: &str) -> Vec<u8> {
    let mut aad = format!("katachi-binding\0v{BINDING_VERSION}\0{SHARE_PURPOSE}\0").into_bytes();
    aad.extend_from_slice(&len_prefixed(component.as_bytes(), salt));
    aad
}
