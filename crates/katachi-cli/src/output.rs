//! Text or JSON output, and errors with stable codes for scripts.

use std::process::ExitCode;

use katachi_core::agent::CommandError;
use katachi_core::agent_home::HomeError;
use katachi_core::agent_status::StatusFileError;
use katachi_core::auth::{AuthError, CredentialsError};
use katachi_core::relay_link::https::RelayHttpError;
use katachi_core::relay_link::session::SessionError;
use katachi_core::store::{AuditError, StoreError, WorkspaceError};
use katachi_core::vault::BindingError;
use katachi_core::vault::KeystoreError;
use katachi_core::vault::SealError;
use katachi_core::workspace_admin::AdminError;
use katachi_core::RelayError;
use serde::Serialize;

/// Where command results go: text for people, JSON for scripts.
pub(crate) struct Output {
    /// JSON mode.
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints `value` as JSON, or `text` for people.
    pub(crate) fn emit<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("katachi: cannot encode output: {e}"),
            }
        } else {
            println!("{}", text());
        }
    }

    /// Prints one progress event of a long-running command: a compact JSON line, or a text line.
    pub(crate) fn event<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string(value) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("katachi: cannot encode output: {e}"),
            }
        } else {
            println!("{}", text());
        }
    }

    /// A warning for people, on stderr (also in JSON mode: stdout stays machine-readable).
    pub(crate) fn warn(&self, message: &str) {
        eprintln!("katachi: warning: {message}");
    }

    /// Reports an error (JSON on stdout with a stable code, or text on stderr) and returns exit code 1.
    pub(crate) fn fail(&self, err: &anyhow::Error) -> ExitCode {
        let message = format!("{err:#}");
        if self.json {
            let mut error = serde_json::json!({ "code": error_code(err), "message": message });
            // a broken audit chain also names the first broken record
            if let Some(seq) = broken_audit_seq(err) {
                error["seq"] = seq.into();
            }
            println!("{}", serde_json::json!({ "error": error }));
        } else {
            eprintln!("katachi: {message}");
        }
        ExitCode::FAILURE
    }
}

/// A stable, dotted code for each error a script may branch on.
pub(crate) fn error_code(err: &anyhow::Error) -> &'static str {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<KeystoreError>() {
            return keystore_code(e);
        }
        if let Some(e) = cause.downcast_ref::<AdminError>() {
            return match e {
                AdminError::Workspace(e) => workspace_code(e),
                AdminError::Store(e) => store_code(e),
                AdminError::Audit(AuditError::Store(e)) => store_code(e),
                AdminError::Audit(e) => e.code(),
                AdminError::Override(_) => e.code(),
            };
        }
        if let Some(e) = cause.downcast_ref::<WorkspaceError>() {
            return workspace_code(e);
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store_code(e);
        }
        if let Some(e) = cause.downcast_ref::<AuditError>() {
            return match e {
                AuditError::Store(e) => store_code(e),
                other => other.code(),
            };
        }
        if let Some(e) = cause.downcast_ref::<RelayError>() {
            return match e {
                RelayError::Http(e) => e.code(),
                other => other.code(),
            };
        }
        if let Some(e) = cause.downcast_ref::<AuthError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<CommandError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<RelayHttpError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<CredentialsError>() {
            return match e {
                CredentialsError::Seal(e) => seal_code(e),
                CredentialsError::Malformed { .. } => "credentials.malformed",
            };
        }
        if let Some(e) = cause.downcast_ref::<SessionError>() {
            return match e {
                SessionError::Store(e) => store_code(e),
            };
        }
        if cause.downcast_ref::<StatusFileError>().is_some() {
            return "status.file";
        }
        if let Some(e) = cause.downcast_ref::<HomeError>() {
            return match e {
                HomeError::Dirs(_) => "home.dirs",
                HomeError::Config(_) => "config.invalid",
                HomeError::Fingerprint(_) => "fingerprint.unavailable",
                HomeError::Record(_) => "fingerprint.record",
                HomeError::Keystore(e) => keystore_code(e),
                HomeError::Binding(e) => binding_code(e),
            };
        }
    }
    "error"
}

/// The first broken sequence number when `err` is a broken audit chain.
pub(crate) fn broken_audit_seq(err: &anyhow::Error) -> Option<i64> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<AuditError>())
        .and_then(AuditError::seq)
}

fn workspace_code(e: &WorkspaceError) -> &'static str {
    match e {
        WorkspaceError::Store(e) => store_code(e),
        other => katachi_core::workspace_admin::workspace_code(other),
    }
}

fn keystore_code(e: &KeystoreError) -> &'static str {
    match e {
        KeystoreError::NoSessionBus => "keystore.no_session_bus",
        KeystoreError::NoSecretService => "keystore.no_secret_service",
        KeystoreError::Locked => "keystore.locked",
        KeystoreError::Corrupted { .. } => "keystore.corrupted",
        KeystoreError::NotPersisted { .. } => "keystore.not_persisted",
        KeystoreError::File { .. } => "keystore.file",
        KeystoreError::Platform { .. } => "keystore.platform",
    }
}

fn binding_code(e: &BindingError) -> &'static str {
    match e {
        BindingError::WrongKeychainSecret { .. } => "binding.wrong_keychain",
        BindingError::TooFewComponents { .. } => "binding.other_machine",
        BindingError::KeychainSecretLost { .. } => "binding.keychain_secret_lost",
        BindingError::LegacyKeyDoesNotOpen { .. } => "binding.migration_refused",
        BindingError::Damaged { .. } => "binding.damaged",
        BindingError::TooManyComponents { .. } => "binding.too_many_components",
        BindingError::Read { .. } | BindingError::Write(_) => "binding.io",
    }
}

fn seal_code(e: &SealError) -> &'static str {
    match e {
        SealError::WrongMachine { .. } => "credentials.wrong_machine",
        SealError::Tampered { .. } => "credentials.tampered",
        SealError::Write(_) => "credentials.write",
        _ => "credentials.unreadable",
    }
}

fn store_code(e: &StoreError) -> &'static str {
    match e {
        StoreError::CannotDecrypt { .. } => "store.cannot_decrypt",
        StoreError::NewerSchema { .. } => "store.newer_schema",
        StoreError::Busy => "store.busy",
        _ => "store.error",
    }
}
