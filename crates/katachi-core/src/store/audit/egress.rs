//! The egress ledger: per workspace, how many calls were made and how many bytes left the machine
//! through them — the product's promise (code leaves only through structured calls) made visible.

use rusqlite::Connection;
use serde::Serialize;

use crate::store::StoreError;

/// Calls and bytes out for one workspace (or for calls outside any workspace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceEgress {
    /// The workspace's id at the time of the calls; `None` for calls outside any workspace (listing
    /// workspaces, agent status).
    pub workspace_id: Option<i64>,
    /// The workspace's path at the time of the calls.
    pub workspace_path: Option<String>,
    /// Calls recorded.
    pub calls: i64,
    /// Bytes that left the machine through them.
    pub bytes_out: i64,
}

/// Totals per workspace, most bytes first.
pub(super) fn egress_by_workspace(conn: &Connection) -> Result<Vec<WorkspaceEgress>, StoreError> {
    // grouped on id and path: ids of removed workspaces can be reused for another folder
    let mut stmt = conn.prepare_cached(
        "SELECT workspace_id, workspace_path, count(*), coalesce(sum(bytes_out), 0) FROM audit_log \
         GROUP BY workspace_id, workspace_path ORDER BY 4 DESC, 3 DESC, 1",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(WorkspaceEgress {
            workspace_id: r.get(0)?,
            workspace_path: r.get(1)?,
            calls: r.get(2)?,
            bytes_out: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
