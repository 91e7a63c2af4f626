//! The store's schema, one migration per version (tracked in `PRAGMA user_version` by
//! `rusqlite_migration`). Migrations only ever get appended; a released one never changes.

use std::path::Path;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

use super::{Result, StoreError};

/// Every migration, oldest first.
const MIGRATIONS: &[M<'static>] = &[
    // v1: the tables of the foundation issue.
    M::up(
        "CREATE TABLE allowed_workspaces (
            id        INTEGER PRIMARY KEY,
            path      TEXT NOT NULL UNIQUE,
            added_at  INTEGER NOT NULL
         );
         CREATE TABLE chat_sessions (
            id            INTEGER PRIMARY KEY,
            workspace_id  INTEGER REFERENCES allowed_workspaces(id) ON DELETE SET NULL,
            title         TEXT NOT NULL,
            created_at    INTEGER NOT NULL,
            updated_at    INTEGER NOT NULL
         );
         CREATE TABLE messages (
            id          INTEGER PRIMARY KEY,
            session_id  INTEGER NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
            role        TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
            content     TEXT NOT NULL,
            created_at  INTEGER NOT NULL
         );
         CREATE INDEX messages_by_session ON messages(session_id, id);
         CREATE TABLE workspace_memory (
            workspace_id  INTEGER NOT NULL REFERENCES allowed_workspaces(id) ON DELETE CASCADE,
            key           TEXT NOT NULL,
            value         TEXT NOT NULL,
            updated_at    INTEGER NOT NULL,
            PRIMARY KEY (workspace_id, key)
         );
         CREATE TABLE activity_outbox (
            event_id         TEXT PRIMARY KEY,
            kind             TEXT NOT NULL,
            payload          TEXT NOT NULL,
            created_at       INTEGER NOT NULL,
            attempts         INTEGER NOT NULL DEFAULT 0,
            next_attempt_at  INTEGER NOT NULL DEFAULT 0
         );
         CREATE TABLE audit_log (
            seq        INTEGER PRIMARY KEY,
            at         INTEGER NOT NULL,
            actor      TEXT NOT NULL,
            action     TEXT NOT NULL,
            detail     TEXT NOT NULL,
            result     TEXT NOT NULL,
            bytes_out  INTEGER NOT NULL DEFAULT 0
         );",
    ),
];

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Brings the schema to the latest version; refuses a newer one without touching it.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > latest_version() {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: latest_version(),
        });
    }
    Migrations::from_slice(MIGRATIONS).to_latest(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(Migrations::from_slice(MIGRATIONS).validate().is_ok());
    }
}
