//! Per-workspace sandbox overrides: the commands, hosts, `.env` access and limits a workspace
//! adds to the default policy, kept as one JSON document per allowed workspace.
//!
//! The store keeps the text as written; `sandbox::overrides` parses and checks it, so a bad value
//! becomes an error naming the workspace rather than a failure here. Removing a workspace removes
//! its overrides (`ON DELETE CASCADE`).

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_unix, Result};

/// The sandbox overrides of the allowed workspaces.
pub struct SandboxOverrides<'c> {
    /// The store's connection.
    conn: &'c Connection,
}

impl<'c> SandboxOverrides<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// The stored JSON document of the workspace, if any.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn get(&self, workspace_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT policy FROM sandbox_overrides WHERE workspace_id = ?1",
                params![workspace_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Replaces the workspace's document.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure (e.g. a workspace id that does not exist).
    pub fn set(&self, workspace_id: i64, policy_json: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO sandbox_overrides (workspace_id, policy, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (workspace_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
            params![workspace_id, policy_json, now_unix()],
        )?;
        Ok(())
    }

    /// Removes the workspace's overrides; true when there were some.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn reset(&self, workspace_id: i64) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM sandbox_overrides WHERE workspace_id = ?1",
            params![workspace_id],
        )? > 0)
    }
}
