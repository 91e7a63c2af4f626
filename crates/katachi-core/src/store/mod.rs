//! The SQLCipher store: chat sessions and messages, workspace memory, allowed workspaces, the
//! activity outbox and the audit log, in one encrypted database file.
//!
//! Keyed with a raw 256-bit key derived from the machine key ([`Purpose::STORE`]), so a copy of the
//! file is useless on another machine. WAL journal, versioned migrations.
//!
//! # Guarantees
//! - The key is checked with a read before anything is written: a wrong key (another machine, a
//!   replaced keychain secret) or a file that is not a katachi database gives
//!   [`StoreError::CannotDecrypt`] and the file is left byte-for-byte as it was.
//! - A database written by a newer katachi is refused ([`StoreError::NewerSchema`]), never downgraded.
//! - New database files are created `0600`.
//! - The audit log is a tamper-evident chain keyed apart from the store (see [`AuditLog`]): holding
//!   the store key is not enough to edit, delete or reorder records unnoticed.
//!
//! # Layout
//! - `migrations`: the schema, one migration per version.
//! - `workspaces`: the allowed workspace folders ([`AllowedWorkspaces`]).
//! - `chat`: chat sessions and their messages ([`Chat`]).
//! - `memory`: per-workspace key/value memory ([`WorkspaceMemory`]).
//! - `ai_approvals`: the ledger of AI approvals and session grants ([`ApprovalLedger`]).
//! - `ai_settings`: the AI provider each workspace uses ([`AiSettingsTable`]).
//! - `sandbox_overrides`: per-workspace sandbox overrides ([`SandboxOverrides`]).
//! - `outbox`: activity events waiting for the relay's acknowledgement ([`Outbox`]).
//! - `audit`: the audit and egress ledger, a tamper-evident chain ([`AuditLog`], keyed by [`AuditKey`]).
//!
//! [`Purpose::STORE`]: crate::vault::Purpose::STORE

mod ai_approvals;
mod ai_settings;
mod audit;
mod chat;
mod memory;
mod migrations;
mod outbox;
mod sandbox_overrides;
mod workspaces;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use zeroize::Zeroizing;

use crate::vault::DerivedKey;

pub use ai_approvals::{ApprovalLedger, ApprovalRecord, Decision};
pub use ai_settings::{AiSettingsRow, AiSettingsTable, DEFAULT_AI_SETTINGS};
pub use audit::{
    Actor, AuditEntry, AuditError, AuditKey, AuditLog, AuditRecord, VerifyReport, WorkspaceEgress,
};
pub use chat::{Chat, ChatMessage, ChatSession, NewMessage, Role};
pub use memory::WorkspaceMemory;
pub use outbox::{Outbox, OutboxEvent};
pub use sandbox_overrides::SandboxOverrides;
pub use workspaces::{AddOutcome, AllowedWorkspaces, Workspace, WorkspaceError};

/// How long a writer waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors opening or using the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not open the file: it was created on another machine or under another keychain
    /// secret, or it is not a katachi database. Nothing was written to it.
    #[error("{path} cannot be decrypted with this machine's key: it was created on another machine or with another keychain secret, or is not a katachi database. It was left untouched; run `katachi doctor` to see what changed")]
    CannotDecrypt {
        /// The database file.
        path: PathBuf,
    },
    /// The schema is newer than this build understands.
    #[error("{path} has schema version {found}, this katachi knows up to {supported}; upgrade katachi (the file was not changed)")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The file or its folder could not be created or opened.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the OS said.
        source: rusqlite::Error,
    },
    /// Creating the empty file with private permissions failed.
    #[error("cannot create database {path}: {source}")]
    Create {
        /// The database file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A schema migration failed; the transaction was rolled back.
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// Another process held the write lock for longer than the busy timeout.
    #[error("the database is busy (another katachi process is writing); try again")]
    Busy,
    /// Any other SQLite failure (disk full, I/O error, corrupted page).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open, keyed, migrated store. One connection; open one per thread or process.
pub struct Store {
    /// The SQLCipher connection.
    conn: Connection,
    /// The database file.
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) the store at `path` with `key`, and migrates it to the latest schema.
    ///
    /// # Errors
    /// [`StoreError::CannotDecrypt`] for a wrong key, [`StoreError::NewerSchema`], or an I/O failure.
    pub fn open(path: &Path, key: &DerivedKey) -> Result<Self> {
        create_private_file(path)?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        apply_key(&conn, key)?;
        verify_key(&conn, path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        prepare_for_use(&mut conn, path)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version now in the file.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// The allowed workspace folders.
    pub fn workspaces(&self) -> AllowedWorkspaces<'_> {
        AllowedWorkspaces::new(&self.conn)
    }

    /// Chat sessions and messages.
    pub fn chat(&self) -> Chat<'_> {
        Chat::new(&self.conn)
    }

    /// Per-workspace memory.
    pub fn memory(&self) -> WorkspaceMemory<'_> {
        WorkspaceMemory::new(&self.conn)
    }

    /// The ledger of AI approvals.
    pub fn approvals(&self) -> ApprovalLedger<'_> {
        ApprovalLedger::new(&self.conn)
    }

    /// The AI provider settings per workspace.
    pub fn ai_settings(&self) -> AiSettingsTable<'_> {
        AiSettingsTable::new(&self.conn)
    }

    /// Per-workspace sandbox overrides (raw JSON; `sandbox::WorkspaceOverrides` reads them).
    pub fn sandbox_overrides(&self) -> SandboxOverrides<'_> {
        SandboxOverrides::new(&self.conn)
    }

    /// Activity events waiting for the relay.
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox::new(&self.conn)
    }

    /// The audit log, bound to the chain's key: appending and verifying need it.
    pub fn audit<'a>(&'a self, key: &'a AuditKey) -> AuditLog<'a> {
        AuditLog::new(&self.conn, key)
    }
}

/// Creates the database file `0600` when missing, so SQLite (and its -wal/-shm, which copy the
/// main file's mode) never creates it world-readable.
fn create_private_file(path: &Path) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Keys the connection with the raw key (`x'…'` form: no KDF, the key is already uniform).
fn apply_key(conn: &Connection, key: &DerivedKey) -> Result<()> {
    // SQLCipher logs wrong-key page failures to stderr; the caller gets a typed error instead.
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    // Not pragma_update: it would quote the blob literal. The hex string is zeroized after use.
    let pragma = Zeroizing::new(format!(
        "PRAGMA key = \"x'{}'\";",
        hex::encode(key.expose())
    ));
    conn.execute_batch(&pragma)?;
    Ok(())
}

/// `PRAGMA key` accepts any key; the first read tells whether it is the right one.
/// Attempts at preparing a store that other connections may be preparing at the same moment.
const PREPARE_ATTEMPTS: u32 = 5;

/// WAL mode, pragmas and the schema migration.
///
/// Several connections may open a fresh file at once (the agent's session and its API do). SQLite
/// lets only one of two deferred writers go on and answers the other `SQLITE_BUSY` at once, without
/// waiting (it would deadlock otherwise); a losing migration may also find a table the winner just
/// made. Such a loser looks again after a short pause and finds the file prepared; only an error
/// that outlasts every attempt, or one that is not about another writer (a newer schema, I/O), is
/// returned.
fn prepare_for_use(conn: &mut Connection, path: &Path) -> Result<()> {
    let mut attempt = 1;
    loop {
        let prepared = (|| {
            // WAL: readers never block the writer; the WAL is encrypted like the main file.
            let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
            migrations::migrate(conn, path)
        })();
        match prepared {
            Err(StoreError::Busy | StoreError::Migration(_)) if attempt < PREPARE_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}

fn verify_key(conn: &Connection, path: &Path) -> Result<()> {
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            Err(StoreError::CannotDecrypt {
                path: path.to_path_buf(),
            })
        }
        Err(e) => Err(StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Seconds since the Unix epoch (timestamps in the store).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "ai_store_tests.rs"]
mod ai_tests;
