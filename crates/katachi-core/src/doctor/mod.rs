//! `katachi doctor`: checks each layer of the agent's secrets at rest, in order, and says which one
//! failed and how to fix it. Read-only: it never creates a secret, a store or a binding record.
//!
//! # Layout
//! - `binding`: the fingerprint and binding layers — which component changed, and whether the
//!   hardware binding still holds (k of n components match).

mod binding;

use std::path::PathBuf;

use serde::Serialize;

use crate::agent_home::keystore_for;
use crate::config::Config;
use crate::dirs::{permission_problem, KatachiDirs};
use crate::fingerprint::FingerprintSource;
use crate::secret::SecretBytes;
use crate::store::{Store, StoreError};
use crate::vault::{load_machine_secret, Keystore, KeystoreKind, MachineKey, Purpose, SealedFile};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Works.
    Ok,
    /// Works, but weaker or unusual; read the summary.
    Warn,
    /// Broken; the summary says how to fix it.
    Fail,
    /// Not checked because a layer below failed.
    Skipped,
}

/// One checked layer.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Which layer (`config`, `keystore`, `fingerprint`, `binding`, `store`, `credentials`,
    /// `permissions`).
    pub layer: &'static str,
    /// The outcome.
    pub status: CheckStatus,
    /// What was found.
    pub summary: String,
    /// What to do, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check, in layer order.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The data folder checked.
    pub data_dir: PathBuf,
    /// The keystore in use, once known.
    pub keystore: Option<KeystoreKind>,
    /// The checks.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// True when no check failed.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }

    fn push(
        &mut self,
        layer: &'static str,
        status: CheckStatus,
        summary: impl Into<String>,
        fix: Option<String>,
    ) {
        self.checks.push(Check {
            layer,
            status,
            summary: summary.into(),
            fix,
        });
    }

    fn skip(&mut self, layers: &[&'static str], because: &str) {
        for layer in layers {
            self.push(
                layer,
                CheckStatus::Skipped,
                format!("not checked: {because} failed"),
                None,
            );
        }
    }
}

/// Checks the agent home at `dirs` with the keystore its config names.
pub fn diagnose(dirs: &KatachiDirs, source: &dyn FingerprintSource) -> DoctorReport {
    diagnose_inner(dirs, source, None)
}

/// Checks with an explicit keystore (tests of other crates).
pub fn diagnose_with_keystore(
    dirs: &KatachiDirs,
    source: &dyn FingerprintSource,
    keystore: Box<dyn Keystore>,
) -> DoctorReport {
    diagnose_inner(dirs, source, Some(keystore))
}

fn diagnose_inner(
    dirs: &KatachiDirs,
    source: &dyn FingerprintSource,
    keystore: Option<Box<dyn Keystore>>,
) -> DoctorReport {
    let mut report = DoctorReport {
        data_dir: dirs.data().to_path_buf(),
        keystore: None,
        checks: Vec::new(),
    };

    let config = match Config::load(&dirs.config_file()) {
        Ok(c) => {
            report.push(
                "config",
                CheckStatus::Ok,
                format!(
                    "{} ({} keystore)",
                    dirs.config_file().display(),
                    backend_name(c.keystore.backend)
                ),
                None,
            );
            c
        }
        Err(e) => {
            report.push(
                "config",
                CheckStatus::Fail,
                e.to_string(),
                Some(format!("fix or remove {}", dirs.config_file().display())),
            );
            report.skip(
                &["fingerprint", "keystore", "binding", "store", "credentials"],
                "config",
            );
            check_permissions(&mut report, dirs);
            return report;
        }
    };

    let fingerprint = match source.read() {
        Ok(fp) => fp,
        Err(e) => {
            report.push("fingerprint", CheckStatus::Fail, e.to_string(), None);
            report.skip(
                &["keystore", "binding", "store", "credentials"],
                "fingerprint",
            );
            check_permissions(&mut report, dirs);
            return report;
        }
    };

    let keystore = keystore.unwrap_or_else(|| keystore_for(&config, dirs, &fingerprint));
    report.keystore = Some(keystore.kind());
    let secret = check_keystore(&mut report, keystore.as_ref());

    match secret {
        Some(Some(secret)) => match binding::check(&mut report, dirs, &secret, &fingerprint) {
            Some(key) => {
                check_store(&mut report, dirs, &key);
                check_credentials(&mut report, dirs, &key);
            }
            None => report.skip(&["store", "credentials"], "binding"),
        },
        Some(None) => {
            binding::check_fingerprint_without_secret(&mut report, dirs, &fingerprint);
            binding::check_without_secret(&mut report, dirs);
        }
        None => {
            binding::check_fingerprint_without_secret(&mut report, dirs, &fingerprint);
            report.skip(&["binding", "store", "credentials"], "keystore");
        }
    }
    check_permissions(&mut report, dirs);
    report
}

fn backend_name(backend: crate::config::KeystoreBackend) -> &'static str {
    match backend {
        crate::config::KeystoreBackend::Keychain => "OS keychain",
        crate::config::KeystoreBackend::File => "file",
    }
}

/// `None` when the keystore failed; `Some(None)` when reachable with no secret yet.
fn check_keystore(
    report: &mut DoctorReport,
    keystore: &dyn Keystore,
) -> Option<Option<SecretBytes>> {
    match load_machine_secret(keystore) {
        Ok(secret) => {
            let present = if secret.is_some() {
                "machine secret present"
            } else {
                "no machine secret yet (created on first use)"
            };
            match keystore.kind() {
                KeystoreKind::OsKeychain => report.push("keystore", CheckStatus::Ok, format!("OS keychain reachable, {present}"), None),
                kind => report.push(
                    "keystore",
                    CheckStatus::Warn,
                    format!("{kind:?} keystore in use (weaker than the OS keychain: a copy of the disk plus this machine's hardware identity opens it), {present}").to_lowercase(),
                    Some("use the OS keychain when this machine has one: set `[keystore] backend = \"keychain\"` before first use".to_owned()),
                ),
            }
            Some(secret)
        }
        Err(e) => {
            report.push("keystore", CheckStatus::Fail, e.to_string(), None);
            None
        }
    }
}

fn check_store(report: &mut DoctorReport, dirs: &KatachiDirs, key: &MachineKey) {
    let path = dirs.store_path();
    if !path.exists() {
        report.push(
            "store",
            CheckStatus::Ok,
            "not created yet (made on first use)",
            None,
        );
        return;
    }
    match Store::open(&path, &key.key_for(Purpose::STORE)) {
        Ok(store) => {
            let workspaces = store.workspaces().list().map(|w| w.len()).unwrap_or(0);
            let messages = store.chat().message_count().unwrap_or(0);
            let version = store.schema_version().unwrap_or(0);
            report.push(
                "store",
                CheckStatus::Ok,
                format!("opens (schema v{version}, {workspaces} workspaces, {messages} messages)"),
                None,
            );
        }
        Err(e @ StoreError::CannotDecrypt { .. }) => {
            let fix = "the binding opened but the store does not: it was copied here from another installation, or replaced; move it aside to start again".to_owned();
            report.push("store", CheckStatus::Fail, e.to_string(), Some(fix));
        }
        Err(e) => report.push("store", CheckStatus::Fail, e.to_string(), None),
    }
}

fn check_credentials(report: &mut DoctorReport, dirs: &KatachiDirs, key: &MachineKey) {
    let files = [
        SealedFile::new(dirs.agent_credentials_path(), Purpose::AGENT_CREDENTIALS),
        SealedFile::new(dirs.tunnel_credentials_path(), Purpose::TUNNEL_CREDENTIALS),
    ];
    let mut found = 0;
    for file in &files {
        match file.read(key) {
            Ok(Some(_)) => found += 1,
            Ok(None) => {}
            Err(e) => {
                report.push("credentials", CheckStatus::Fail, e.to_string(), None);
                return;
            }
        }
    }
    let summary = if found == 0 {
        "not signed in yet".to_owned()
    } else {
        format!("{found} sealed credential file(s) open")
    };
    report.push("credentials", CheckStatus::Ok, summary, None);
}

fn check_permissions(report: &mut DoctorReport, dirs: &KatachiDirs) {
    let mut paths = vec![
        dirs.data().to_path_buf(),
        dirs.config().to_path_buf(),
        dirs.credentials_dir(),
    ];
    for dir in [dirs.data().to_path_buf(), dirs.credentials_dir()] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            paths.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    paths.push(dirs.config_file());
    let problems: Vec<String> = paths.iter().filter_map(|p| permission_problem(p)).collect();
    if problems.is_empty() {
        report.push(
            "permissions",
            CheckStatus::Ok,
            "folders 0700, files 0600",
            None,
        );
    } else {
        report.push(
            "permissions",
            CheckStatus::Warn,
            problems.join("; "),
            Some("restrict the listed paths to their owner".to_owned()),
        );
    }
}
