//! The vault: the keychain secret, the machine key derived from it, sealed files and API keys.
//!
//! ```text
//! keychain secret (32 random bytes, OS keychain)  ─┐
//!                                                  ├─ HKDF-SHA256 ─▶ MachineKey ─▶ one key per Purpose
//! hardware fingerprint (SHA-256 of components)    ─┘                                 ├ store (SQLCipher)
//!                                                                                    ├ sealed files
//!                                                                                    └ API keys
//! ```
//!
//! # Layout
//! - `keystore`: where the keychain secret lives ([`Keystore`]: OS keychain, opt-in file, memory).
//! - `file_keystore`: the opt-in, weaker file keystore for headless machines.
//! - `machine_key`: the machine key and per-purpose derived keys.
//! - `sealed`: AES-256-GCM sealed blobs and files with a versioned header.
//! - `api_keys`: AI provider API keys kept in the keystore, sealed with the machine key.
//!
//! # Security
//! Nothing here falls back to plaintext: a missing or locked keychain is an error naming the fix.

mod api_keys;
mod file_keystore;
mod keystore;
mod machine_key;
mod sealed;

pub use api_keys::{ApiKeyError, ApiKeys};
pub use file_keystore::FileKeystore;
pub use keystore::{Keystore, KeystoreError, KeystoreKind, MemoryKeystore, OsKeychain};
pub use machine_key::{
    load_machine_secret, load_or_create_machine_secret, DerivedKey, MachineKey, Purpose,
    MACHINE_SECRET_ACCOUNT,
};
pub use sealed::{seal, unseal, SealError, SealedFile};
