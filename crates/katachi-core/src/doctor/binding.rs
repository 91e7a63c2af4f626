//! The `fingerprint` and `binding` layers of `katachi doctor`: which component changed since the
//! data key was bound, and whether the binding still holds (k of n components match). Reads only.

use crate::agent_home::katachi_data_found;
use crate::dirs::KatachiDirs;
use crate::fingerprint::{Fingerprint, FingerprintRecord};
use crate::secret::SecretBytes;
use crate::vault::{BindingError, BindingRecord, MachineKey};

use super::{CheckStatus, DoctorReport};

/// Components read now, plus the removable NICs that were ignored.
fn components_read(fp: &Fingerprint) -> String {
    let names = fp.component_names();
    let mut text = format!("{} components: {}", names.len(), names.join(", "));
    let ignored: Vec<&str> = fp
        .unavailable()
        .iter()
        .filter(|u| u.contains("removable"))
        .map(String::as_str)
        .collect();
    if !ignored.is_empty() {
        text.push_str(&format!("; ignored: {}", ignored.join(", ")));
    }
    text
}

/// Both layers with the keychain secret at hand; the machine key when the binding opens.
pub(super) fn check(
    report: &mut DoctorReport,
    dirs: &KatachiDirs,
    secret: &SecretBytes,
    fp: &Fingerprint,
) -> Option<MachineKey> {
    let path = dirs.binding_path();
    let record = match BindingRecord::load(&path) {
        Ok(Some(record)) => record,
        Ok(None) => return Some(check_unbound(report, dirs, secret, fp)),
        Err(e) => {
            report.push("fingerprint", CheckStatus::Ok, components_read(fp), None);
            report.push("binding", CheckStatus::Fail, e.to_string(), None);
            return None;
        }
    };
    let a = record.assess(secret, fp);
    if !a.secret_matches {
        report.push("fingerprint", CheckStatus::Ok, components_read(fp), None);
        let err = BindingError::WrongKeychainSecret {
            data: dirs.data().to_path_buf(),
        };
        report.push("binding", CheckStatus::Fail, err.to_string(), None);
        return None;
    }
    if a.diff.is_empty() {
        report.push(
            "fingerprint",
            CheckStatus::Ok,
            format!("unchanged since bound; {}", components_read(fp)),
            None,
        );
    } else {
        report.push(
            "fingerprint",
            CheckStatus::Warn,
            format!(
                "hardware differs from the bound components ({}); {}",
                a.diff.describe(),
                components_read(fp)
            ),
            None,
        );
    }
    let last = record
        .last_change
        .as_ref()
        .map(|c| format!("; last re-bind: {}", c.what))
        .unwrap_or_default();
    let matched = format!(
        "{} of {} bound components match, {} needed",
        a.matched, a.total, a.needed
    );
    if !a.holds() {
        report.push(
            "binding",
            CheckStatus::Fail,
            format!("does not hold: {matched} ({}){last}", a.diff.describe()),
            Some("this is another machine, or more than one part changed at once: put the changed parts back, or run katachi on the machine the data came from".to_owned()),
        );
        return None;
    }
    match record.open(dirs.data(), &path, secret, fp) {
        Ok((key, _)) => {
            let (status, fix) = if a.diff.is_empty() {
                (CheckStatus::Ok, None)
            } else {
                (CheckStatus::Warn, Some("the next start re-binds the key to this hardware; after that one more part may change".to_owned()))
            };
            report.push("binding", status, format!("holds: {matched}{last}"), fix);
            Some(MachineKey::from_data_key(&key))
        }
        Err(e) => {
            report.push("binding", CheckStatus::Fail, e.to_string(), None);
            None
        }
    }
}

/// No binding record yet: a fresh home, or one of an older katachi (its fingerprint record says
/// whether the next start can migrate it).
fn check_unbound(
    report: &mut DoctorReport,
    dirs: &KatachiDirs,
    secret: &SecretBytes,
    fp: &Fingerprint,
) -> MachineKey {
    legacy_fingerprint(report, dirs, fp);
    let summary = if katachi_data_found(dirs).is_empty() {
        "not bound yet (bound at first start)"
    } else {
        "data of an older katachi: bound to the hardware at the next start, keeping its key"
    };
    report.push("binding", CheckStatus::Ok, summary, None);
    MachineKey::derive(secret, fp)
}

/// The `fingerprint` layer from an older katachi's record (names and salted hashes), if any.
fn legacy_fingerprint(report: &mut DoctorReport, dirs: &KatachiDirs, fp: &Fingerprint) {
    match FingerprintRecord::load(&dirs.fingerprint_record_path()) {
        Ok(Some(record)) => {
            let diff = record.compare(fp);
            if diff.is_empty() {
                let summary = format!("unchanged since recorded; {}", components_read(fp));
                report.push("fingerprint", CheckStatus::Ok, summary, None);
            } else {
                report.push(
                    "fingerprint",
                    CheckStatus::Warn,
                    format!("hardware identity differs from the one recorded by an older katachi ({}); {}", diff.describe(), components_read(fp)),
                    Some("that katachi's data opens only with the hardware it recorded: put the changed parts back before the next start".to_owned()),
                );
            }
        }
        Ok(None) => report.push(
            "fingerprint",
            CheckStatus::Ok,
            format!("{} (not bound yet)", components_read(fp)),
            None,
        ),
        Err(e) => report.push("fingerprint", CheckStatus::Warn, e.to_string(), None),
    }
}

/// The `fingerprint` layer when the keychain secret is missing or unreachable.
pub(super) fn check_fingerprint_without_secret(
    report: &mut DoctorReport,
    dirs: &KatachiDirs,
    fp: &Fingerprint,
) {
    if dirs.binding_path().exists() {
        let summary = format!(
            "{} (compared with the binding only with the keychain secret)",
            components_read(fp)
        );
        report.push("fingerprint", CheckStatus::Ok, summary, None);
    } else {
        legacy_fingerprint(report, dirs, fp);
    }
}

/// The `binding`, `store` and `credentials` layers when the keychain holds no secret.
pub(super) fn check_without_secret(report: &mut DoctorReport, dirs: &KatachiDirs) {
    let found = katachi_data_found(dirs);
    if found.is_empty() {
        report.push(
            "binding",
            CheckStatus::Ok,
            "not bound yet (bound at first start)",
            None,
        );
        report.push(
            "store",
            CheckStatus::Ok,
            "not created yet (made on first use)",
            None,
        );
        report.push("credentials", CheckStatus::Ok, "not signed in yet", None);
        return;
    }
    let lost = BindingError::KeychainSecretLost {
        data: dirs.data().to_path_buf(),
        found: found.join(", "),
        service: dirs.keychain_service().to_owned(),
    };
    report.push(
        "binding",
        CheckStatus::Fail,
        lost.to_string(),
        Some("the secret was deleted from the keychain, or the keystore backend in config.toml was switched; restore it or switch back".to_owned()),
    );
    report.skip(&["store", "credentials"], "binding");
}
