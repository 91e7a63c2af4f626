//! Unlocking the machine key of an agent home: keychain secret + binding record + this machine.
//!
//! # Guarantees
//! - Katachi data that is not this keychain's and machine's (another keychain secret, fewer than k
//!   matching components, a keychain that lost its secret, older data the derived key does not
//!   open) fails closed, and nothing is written: no file under the data folder, no secret in the
//!   keychain. A secret is created only when the data folder holds no katachi data.
//! - A first start, and the first start of an installation made before the binding, bind the data
//!   key HKDF-Extract(secret ‖ v1 fingerprint digest): for older data that is the key it was
//!   encrypted under, checked against its store and sealed files before anything is written, so
//!   it migrates with no re-encryption.
//! - An open with a changed, added or removed component re-wraps the same data key to the current
//!   components (atomic replace) and records what changed (component names only) in the record's
//!   `last_change` (shown by `doctor`) and, when the store exists, in the audit log (`machine.rebind`,
//!   actor `agent`). The audit record is best effort: a store that does not take it leaves a
//!   warning in the log, never a locked agent.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::dirs::KatachiDirs;
use crate::fingerprint::{Fingerprint, FingerprintRecord};
use crate::secret::SecretBytes;
use crate::store::{Actor, AuditEntry, AuditKey, Store};
use crate::vault::{
    legacy_data_key, load_machine_secret, load_or_create_machine_secret, BindingChange,
    BindingError, BindingRecord, DataKey, Keystore, MachineKey, Purpose, SealedFile,
};

use super::HomeError;

/// The audit action of a re-wrap after a hardware change.
pub const REBIND_ACTION: &str = "machine.rebind";

/// Katachi files in the data folder that only the machine key opens, or that show it ran here.
pub(crate) fn katachi_data_found(dirs: &KatachiDirs) -> Vec<String> {
    [
        dirs.binding_path(),
        dirs.store_path(),
        dirs.agent_credentials_path(),
        dirs.tunnel_credentials_path(),
        dirs.fingerprint_record_path(),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .map(|p| {
        p.strip_prefix(dirs.data())
            .unwrap_or(&p)
            .display()
            .to_string()
    })
    .collect()
}

/// The keychain secret; created only when the data folder holds no katachi data.
fn secret_for(dirs: &KatachiDirs, keystore: &dyn Keystore) -> Result<SecretBytes, HomeError> {
    if let Some(secret) = load_machine_secret(keystore)? {
        return Ok(secret);
    }
    let found = katachi_data_found(dirs);
    if !found.is_empty() {
        // a new secret could never open this data: mint nothing, say what is lost
        return Err(BindingError::KeychainSecretLost {
            data: dirs.data().to_path_buf(),
            found: found.join(", "),
            service: dirs.keychain_service().to_owned(),
        }
        .into());
    }
    Ok(load_or_create_machine_secret(keystore)?.0)
}

/// The machine key of this home, binding or re-binding the data key as the module doc says.
///
/// # Errors
/// [`HomeError::Binding`] when the data is not this keychain's and machine's (nothing written),
/// [`HomeError::Keystore`] when the keychain fails.
pub(super) fn unlock_machine_key(
    dirs: &KatachiDirs,
    keystore: &dyn Keystore,
    fingerprint: &Fingerprint,
) -> Result<MachineKey, HomeError> {
    let record_path = dirs.binding_path();
    let record = BindingRecord::load(&record_path)?;
    let secret = secret_for(dirs, keystore)?;
    let Some(record) = record else {
        let data_key = legacy_data_key(&secret, fingerprint);
        let migrated = check_legacy_data_opens(dirs, &data_key, fingerprint)?;
        let mut fresh = BindingRecord::bind(&data_key, &secret, fingerprint)?;
        if migrated {
            fresh.last_change = Some(BindingChange {
                at: now(),
                what: "migrated from the whole-fingerprint key of an older katachi".to_owned(),
            });
        }
        fresh.save(&record_path)?;
        return Ok(MachineKey::from_data_key(&data_key));
    };
    let (data_key, diff) = record.open(dirs.data(), &record_path, &secret, fingerprint)?;
    let machine_key = MachineKey::from_data_key(&data_key);
    if !diff.is_empty() {
        let mut rewrapped = BindingRecord::bind(&data_key, &secret, fingerprint)?;
        let what = diff.describe();
        rewrapped.last_change = Some(BindingChange {
            at: now(),
            what: what.clone(),
        });
        rewrapped.save(&record_path)?;
        tracing::warn!(change = %what, "hardware changed; the machine key was re-bound to the current components");
        record_rebind_in_audit_log(dirs, &machine_key, &what);
    }
    Ok(machine_key)
}

/// For data of an older katachi: checks the derived key opens every sealed file and the store
/// before anything is written. `Ok(true)` when there was such data (a migration).
fn check_legacy_data_opens(
    dirs: &KatachiDirs,
    data_key: &DataKey,
    fingerprint: &Fingerprint,
) -> Result<bool, HomeError> {
    let key = MachineKey::from_data_key(data_key);
    let mut any = false;
    let fail = |what: String| {
        let diff = FingerprintRecord::load(&dirs.fingerprint_record_path())
            .ok()
            .flatten()
            .map_or_else(
                || "no older fingerprint record to compare with".to_owned(),
                |rec| {
                    format!(
                        "hardware since then: {}",
                        rec.compare(fingerprint).describe()
                    )
                },
            );
        HomeError::Binding(BindingError::LegacyKeyDoesNotOpen {
            data: dirs.data().to_path_buf(),
            what,
            diff,
        })
    };
    for (path, purpose) in [
        (dirs.agent_credentials_path(), Purpose::AGENT_CREDENTIALS),
        (dirs.tunnel_credentials_path(), Purpose::TUNNEL_CREDENTIALS),
    ] {
        if !path.exists() {
            continue;
        }
        any = true;
        // read only: a wrong key leaves the file untouched
        SealedFile::new(&path, purpose)
            .read(&key)
            .map_err(|_| fail(path.display().to_string()))?;
    }
    let store = dirs.store_path();
    if store.exists() {
        any = true;
        // Store::open checks the key with a read before it writes anything
        Store::open(&store, &key.key_for(Purpose::STORE))
            .map_err(|_| fail(store.display().to_string()))?;
    }
    Ok(any || dirs.fingerprint_record_path().exists())
}

/// Appends the `machine.rebind` audit record when the store exists; failures are logged only.
fn record_rebind_in_audit_log(dirs: &KatachiDirs, key: &MachineKey, what: &str) {
    let path = dirs.store_path();
    if !path.exists() {
        return;
    }
    let entry = AuditEntry::new(Actor::Agent, REBIND_ACTION).with_detail(what);
    let appended = Store::open(&path, &key.key_for(Purpose::STORE))
        .map_err(|e| e.to_string())
        .and_then(|store| {
            store
                .audit(&AuditKey::derive(key))
                .append(&entry)
                .map_err(|e| e.to_string())
        });
    if let Err(error) = appended {
        tracing::warn!(%error, change = %what, "the re-bind could not be recorded in the audit log; the binding record keeps it");
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
