//! The vault: the keychain secret, the machine key derived from it, sealed files and API keys.
//!
//! ```text
//! keychain secret (32 random bytes, OS keychain) ─┐ one wrap key per component:
//! fingerprint components c_1 … c_n               ─┘ HKDF(secret ‖ c_i) ─▶ unwraps share_i
//!
//! k of n shares ─Shamir─▶ data key ─HKDF-Expand─▶ MachineKey ─▶ one key per Purpose
//!                                                                ├ store (SQLCipher)
//!                                                                ├ sealed files
//!                                                                └ API keys
//! ```
//! The data key of an installation is HKDF-Extract(secret ‖ v1 fingerprint digest) computed once at
//! its first start (which is also what katachi derived before the binding existed, so older data
//! migrates with no re-encryption); from then on it lives only as the wrapped shares.
//!
//! # Layout
//! - `keystore`: where the keychain secret lives ([`Keystore`]: OS keychain, opt-in file, memory).
//! - `file_keystore`: the opt-in, weaker file keystore for headless machines.
//! - `machine_key`: the data key, the machine key and per-purpose derived keys.
//! - `binding`: the data key split k-of-n over the hardware components (the binding record).
//! - `sealed`: AES-256-GCM sealed blobs and files with a versioned header.
//! - `api_keys`: AI provider API keys kept in the keystore, sealed with the machine key.
//!
//! # Security
//! Nothing here falls back to plaintext: a missing or locked keychain is an error naming the fix.

mod api_keys;
mod binding;
mod file_keystore;
mod keystore;
mod machine_key;
mod sealed;

pub use api_keys::{check_key_name, ApiKeyError, ApiKeys};
pub use binding::{
    threshold_for, BindingAssessment, BindingChange, BindingError, BindingRecord, WrappedShare,
    BINDING_VERSION,
};
pub use file_keystore::FileKeystore;
pub use keystore::{Keystore, KeystoreError, KeystoreKind, MemoryKeystore, OsKeychain};
pub use machine_key::{
    legacy_data_key, load_machine_secret, load_or_create_machine_secret, DataKey, DerivedKey,
    MachineKey, Purpose, MACHINE_SECRET_ACCOUNT,
};
pub use sealed::{seal, unseal, SealError, SealedFile};
