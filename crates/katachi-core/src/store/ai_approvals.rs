//! The approvals ledger: every decision the user made on an AI action (or that expired), per
//! workspace, and the session grants that are still in force until revoked.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{now_unix, Result};

/// What the user decided about one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed this one action.
    Once,
    /// Allowed this action and the same kind (tool and subject) for the rest of the session.
    Session,
    /// Refused.
    Deny,
    /// Not answered in time: counts as refused.
    Expired,
}

impl Decision {
    /// The decision's stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Once => "once",
            Decision::Session => "session",
            Decision::Deny => "deny",
            Decision::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "once" => Decision::Once,
            "session" => Decision::Session,
            "deny" => Decision::Deny,
            "expired" => Decision::Expired,
            _ => return None,
        })
    }

    /// The action may run.
    pub fn allows(self) -> bool {
        matches!(self, Decision::Once | Decision::Session)
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRecord {
    /// Stable id (what a revocation names).
    pub id: i64,
    /// The workspace the action was in.
    pub workspace_id: i64,
    /// The chat session that asked (none once the session is deleted: the row goes with it).
    pub session_id: Option<i64>,
    /// The tool (`write_file`, `apply_patch`, `run_command`).
    pub tool: String,
    /// What a session grant covers: the command for runs, `*` for writes and patches.
    pub subject: String,
    /// What was decided.
    pub decision: Decision,
    /// When (Unix seconds).
    pub decided_at: i64,
    /// When a session grant was revoked (Unix seconds), if it was.
    pub revoked_at: Option<i64>,
}

/// The approvals ledger.
pub struct ApprovalLedger<'c> {
    /// The store's connection.
    conn: &'c Connection,
}

impl<'c> ApprovalLedger<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// Records a decision; returns its id.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure (e.g. a workspace that was removed).
    pub fn record(
        &self,
        workspace_id: i64,
        session_id: Option<i64>,
        tool: &str,
        subject: &str,
        decision: Decision,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO ai_approvals (workspace_id, session_id, tool, subject, decision, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![workspace_id, session_id, tool, subject, decision.as_str(), now_unix()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The session grant in force for `tool` on `subject` in the session, if any.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn session_grant(
        &self,
        session_id: i64,
        tool: &str,
        subject: &str,
    ) -> Result<Option<ApprovalRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, workspace_id, session_id, tool, subject, decision, decided_at, revoked_at
                 FROM ai_approvals
                 WHERE session_id = ?1 AND tool = ?2 AND subject = ?3
                   AND decision = 'session' AND revoked_at IS NULL
                 ORDER BY id DESC LIMIT 1",
                params![session_id, tool, subject],
                record_from_row,
            )
            .optional()?)
    }

    /// The latest `limit` decisions in a workspace, newest first.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn of_workspace(&self, workspace_id: i64, limit: u32) -> Result<Vec<ApprovalRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, workspace_id, session_id, tool, subject, decision, decided_at, revoked_at
             FROM ai_approvals WHERE workspace_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![workspace_id, limit], record_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes a session grant of the workspace; false when there is no such grant in force
    /// (another workspace's id, a one-time approval, a refusal, already revoked).
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn revoke(&self, workspace_id: i64, id: i64) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE ai_approvals SET revoked_at = ?1
             WHERE id = ?2 AND workspace_id = ?3 AND decision = 'session' AND revoked_at IS NULL",
            params![now_unix(), id, workspace_id],
        )? > 0)
    }
}

fn record_from_row(r: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let decision: String = r.get(5)?;
    Ok(ApprovalRecord {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        session_id: r.get(2)?,
        tool: r.get(3)?,
        subject: r.get(4)?,
        // the CHECK constraint keeps decisions valid; anything else reads as a refusal
        decision: Decision::parse(&decision).unwrap_or(Decision::Deny),
        decided_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}
