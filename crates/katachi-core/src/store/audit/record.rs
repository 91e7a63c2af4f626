//! What goes into the ledger ([`AuditEntry`], built by the caller) and what comes out
//! ([`AuditRecord`], read back for `katachi audit`).

use rusqlite::{params, Connection, Row};
use serde::Serialize;

use super::key::SealedFields;
use crate::store::{StoreError, Workspace};

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actor {
    /// The machine's own user, at the `katachi` command line.
    Cli,
    /// The machine's own user, in the tray app.
    Tray,
    /// The agent itself, on no one's request (re-binding its machine key after a hardware change).
    Agent,
    /// A signed-in user in a browser, through the relay and the tunnel.
    Browser {
        /// The relay's id of the signed-in user.
        user: String,
        /// The browser session the call came from.
        session: String,
    },
    /// The AI of a chat session, acting for a signed-in user: its tool calls through the agent
    /// API (marked in process, see [`crate::api::AiCaller`]; nothing from the network can claim it).
    Ai {
        /// The relay's id of the user the session belongs to.
        user: String,
        /// The chat session.
        session: String,
    },
}

impl Actor {
    /// The stored `actor` column.
    fn kind(&self) -> &'static str {
        match self {
            Actor::Cli => "cli",
            Actor::Tray => "tray",
            Actor::Agent => "agent",
            Actor::Browser { .. } => "browser",
            Actor::Ai { .. } => "ai",
        }
    }

    /// The stored `user_id` and `browser_session` columns.
    fn user_and_session(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Actor::Browser { user, session } | Actor::Ai { user, session } => {
                (Some(user), Some(session))
            }
            Actor::Cli | Actor::Tray | Actor::Agent => (None, None),
        }
    }
}

/// A record to append: built with [`AuditEntry::new`] and the `with_*` methods.
///
/// ```
/// # use katachi_core::store::{Actor, AuditEntry};
/// let entry = AuditEntry::new(Actor::Cli, "file.read")
///     .with_paths(["src/main.rs"])
///     .with_bytes_out(4096);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who.
    pub actor: Actor,
    /// What (`workspace.add`, `file.read`, …).
    pub action: String,
    /// In which allowed workspace: `(id, path)` at the time of the call; per-workspace totals group
    /// on it, and the path keeps the record meaningful after the workspace is removed.
    pub workspace: Option<(i64, String)>,
    /// Which paths (relative to the workspace, or absolute for workspace commands).
    pub paths: Vec<String>,
    /// Other arguments worth keeping (a search pattern, a range); empty when none. Never a secret
    /// or file content: the ledger says *that* something left, not what it was.
    pub detail: String,
    /// `ok`, or the error code the caller got.
    pub result: String,
    /// Bytes that left the machine because of this call (response body sent through the tunnel).
    pub bytes_out: u64,
}

impl AuditEntry {
    /// An entry for `action` by `actor` with result `ok`, no workspace, no paths, nothing sent.
    pub fn new(actor: Actor, action: impl Into<String>) -> Self {
        Self {
            actor,
            action: action.into(),
            workspace: None,
            paths: Vec::new(),
            detail: String::new(),
            result: "ok".to_owned(),
            bytes_out: 0,
        }
    }

    /// In this allowed workspace.
    #[must_use]
    pub fn in_workspace(mut self, workspace: &Workspace) -> Self {
        self.workspace = Some((workspace.id, workspace.path.clone()));
        self
    }

    /// On these paths.
    #[must_use]
    pub fn with_paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// With these other arguments.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// With this result (an error code; `ok` is the default).
    #[must_use]
    pub fn with_result(mut self, result: impl Into<String>) -> Self {
        self.result = result.into();
        self
    }

    /// With this many bytes sent off the machine.
    #[must_use]
    pub fn with_bytes_out(mut self, bytes: u64) -> Self {
        self.bytes_out = bytes;
        self
    }

    /// The `paths` column: a JSON array (paths may hold any character but NUL).
    pub(super) fn paths_json(&self) -> String {
        serde_json::to_string(&self.paths).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The fields as they will be stored and MACed.
    pub(super) fn sealed_fields<'a>(
        &'a self,
        at: i64,
        paths_json: &'a str,
        key_id: &'a [u8],
    ) -> SealedFields<'a> {
        let (user, session) = self.actor.user_and_session();
        SealedFields {
            at,
            actor: self.actor.kind(),
            user,
            session,
            action: &self.action,
            workspace_id: self.workspace.as_ref().map(|w| w.0),
            workspace_path: self.workspace.as_ref().map(|w| w.1.as_str()),
            paths: paths_json,
            detail: &self.detail,
            result: &self.result,
            bytes_out: i64::try_from(self.bytes_out).unwrap_or(i64::MAX),
            key_id: Some(key_id),
        }
    }
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Sequence number: 1, 2, 3, … with no gaps.
    pub seq: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// `cli`, `tray` or `browser`.
    pub actor: String,
    /// The signed-in user, for browser calls.
    pub user: Option<String>,
    /// The browser session, for browser calls.
    pub session: Option<String>,
    /// What (`workspace.add`, `file.read`, …).
    pub action: String,
    /// The allowed workspace's id at the time.
    pub workspace_id: Option<i64>,
    /// The allowed workspace's path at the time.
    pub workspace_path: Option<String>,
    /// Which paths.
    pub paths: Vec<String>,
    /// Other arguments.
    pub detail: String,
    /// `ok` or the error code.
    pub result: String,
    /// Bytes that left the machine.
    pub bytes_out: i64,
}

/// The columns a [`StoredRow`] is read from, in order.
pub(super) const ROW_COLUMNS: &str =
    "seq, at, actor, user_id, browser_session, action, workspace_id, \
     workspace_path, paths, detail, result, bytes_out, key_id, prev_mac, mac";

/// A row with everything the chain needs, as stored (MAC columns may be missing or malformed).
#[derive(Debug)]
pub(super) struct StoredRow {
    /// Primary key.
    pub(super) seq: i64,
    /// Column values.
    pub(super) at: i64,
    pub(super) actor: String,
    pub(super) user: Option<String>,
    pub(super) session: Option<String>,
    pub(super) action: String,
    pub(super) workspace_id: Option<i64>,
    pub(super) workspace_path: Option<String>,
    pub(super) paths: String,
    pub(super) detail: String,
    pub(super) result: String,
    pub(super) bytes_out: i64,
    /// Chain columns: `None` on a record written before the chain existed.
    pub(super) key_id: Option<Vec<u8>>,
    pub(super) prev_mac: Option<Vec<u8>>,
    pub(super) mac: Option<Vec<u8>>,
}

impl StoredRow {
    /// Reads a row selected with [`ROW_COLUMNS`].
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            user: r.get(3)?,
            session: r.get(4)?,
            action: r.get(5)?,
            workspace_id: r.get(6)?,
            workspace_path: r.get(7)?,
            paths: r.get(8)?,
            detail: r.get(9)?,
            result: r.get(10)?,
            bytes_out: r.get(11)?,
            key_id: r.get(12)?,
            prev_mac: r.get(13)?,
            mac: r.get(14)?,
        })
    }

    /// The fields the MAC covers; `key_id` replaced when sealing a v1 record.
    pub(super) fn sealed_fields<'a>(&'a self, key_id: Option<&'a [u8]>) -> SealedFields<'a> {
        SealedFields {
            at: self.at,
            actor: &self.actor,
            user: self.user.as_deref(),
            session: self.session.as_deref(),
            action: &self.action,
            workspace_id: self.workspace_id,
            workspace_path: self.workspace_path.as_deref(),
            paths: &self.paths,
            detail: &self.detail,
            result: &self.result,
            bytes_out: self.bytes_out,
            key_id,
        }
    }

    fn into_record(self) -> AuditRecord {
        // Verification judges integrity; a reader shows an unparsable list as it is stored.
        let paths = serde_json::from_str(&self.paths).unwrap_or_else(|_| vec![self.paths.clone()]);
        AuditRecord {
            seq: self.seq,
            at: self.at,
            actor: self.actor,
            user: self.user,
            session: self.session,
            action: self.action,
            workspace_id: self.workspace_id,
            workspace_path: self.workspace_path,
            paths,
            detail: self.detail,
            result: self.result,
            bytes_out: self.bytes_out,
        }
    }
}

/// The newest `limit` records, newest first.
pub(super) fn recent(conn: &Connection, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![limit], StoredRow::from_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?.into_record());
    }
    Ok(out)
}
