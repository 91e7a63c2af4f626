//! Per-workspace memory: short notes the AI keeps about a workspace (key → value).

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_unix, Result};

/// Key/value memory per workspace.
pub struct WorkspaceMemory<'c> {
    /// The store's connection.
    conn: &'c Connection,
}

impl<'c> WorkspaceMemory<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// Sets `key` to `value` for the workspace, replacing any previous value.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure (e.g. an unknown workspace).
    pub fn remember(&self, workspace_id: i64, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO workspace_memory (workspace_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (workspace_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![workspace_id, key, value, now_unix()],
        )?;
        Ok(())
    }

    /// The value of `key` for the workspace.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn recall(&self, workspace_id: i64, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM workspace_memory WHERE workspace_id = ?1 AND key = ?2",
                params![workspace_id, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Forgets `key`; true when it existed.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn forget(&self, workspace_id: i64, key: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM workspace_memory WHERE workspace_id = ?1 AND key = ?2",
            params![workspace_id, key],
        )? > 0)
    }

    /// Every note of the workspace, by key: what the AI's system prompt carries.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn all(&self, workspace_id: i64) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, value FROM workspace_memory WHERE workspace_id = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map(params![workspace_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
