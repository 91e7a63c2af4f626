//! The audit log: what was done through the agent, by whom, and how many bytes left the machine.
//! (The tamper-evident chain over these records comes with the agent API.)

use rusqlite::{params, Connection};
use serde::Serialize;

use super::{now_unix, Result};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Sequence number, increasing.
    pub seq: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// Who (user, browser session, `cli`).
    pub actor: String,
    /// What (`workspace.add`, `file.read`, …).
    pub action: String,
    /// Which paths or arguments.
    pub detail: String,
    /// `ok` or the error code.
    pub result: String,
    /// Bytes that left the machine.
    pub bytes_out: i64,
}

/// The audit log.
pub struct AuditLog<'c> {
    /// The store's connection.
    conn: &'c Connection,
}

impl<'c> AuditLog<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// Appends a record; returns its sequence number.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn append(
        &self,
        actor: &str,
        action: &str,
        detail: &str,
        result: &str,
        bytes_out: i64,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO audit_log (at, actor, action, detail, result, bytes_out) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now_unix(), actor, action, detail, result, bytes_out],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The newest `limit` records, newest first.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn recent(&self, limit: u32) -> Result<Vec<AuditRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at, actor, action, detail, result, bytes_out FROM audit_log ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok(AuditRecord {
                seq: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                detail: r.get(4)?,
                result: r.get(5)?,
                bytes_out: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
