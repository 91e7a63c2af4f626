//! Chat sessions and their messages (the AI conversation history), encrypted with the store.

use rusqlite::{params, Connection};
use serde::Serialize;

use super::{now_unix, Result};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person at the browser.
    User,
    /// The AI model.
    Assistant,
    /// Instructions given to the model.
    System,
    /// Output of a tool call.
    Tool,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Tool => "tool",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" => Role::System,
            "tool" => Role::Tool,
            _ => return None,
        })
    }
}

/// A chat session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatSession {
    /// Stable id.
    pub id: i64,
    /// The workspace it belongs to, if any.
    pub workspace_id: Option<i64>,
    /// Title shown in lists.
    pub title: String,
    /// Created (Unix seconds).
    pub created_at: i64,
}

/// One message of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Stable id, increasing in insertion order.
    pub id: i64,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Written (Unix seconds).
    pub created_at: i64,
}

/// Chat sessions and messages.
pub struct Chat<'c> {
    /// The store's connection.
    conn: &'c Connection,
}

impl<'c> Chat<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// Starts a session.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure (e.g. an unknown workspace id).
    pub fn create_session(&self, workspace_id: Option<i64>, title: &str) -> Result<ChatSession> {
        let now = now_unix();
        self.conn.execute(
            "INSERT INTO chat_sessions (workspace_id, title, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
            params![workspace_id, title, now],
        )?;
        Ok(ChatSession {
            id: self.conn.last_insert_rowid(),
            workspace_id,
            title: title.to_owned(),
            created_at: now,
        })
    }

    /// Appends one message to a session.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure (e.g. an unknown session).
    pub fn append(&self, session_id: i64, role: Role, content: &str) -> Result<i64> {
        self.append_many(session_id, std::iter::once((role, content)))
            .map(|ids| ids.first().copied().unwrap_or_default())
    }

    /// Appends several messages in one transaction (all or none); returns their ids.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure; nothing is written then.
    pub fn append_many<'m>(
        &self,
        session_id: i64,
        messages: impl IntoIterator<Item = (Role, &'m str)>,
    ) -> Result<Vec<i64>> {
        let tx = rusqlite::Transaction::new_unchecked(
            self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let now = now_unix();
        let mut ids = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO messages (session_id, role, content, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (role, content) in messages {
                stmt.execute(params![session_id, role.as_str(), content, now])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.execute(
            "UPDATE chat_sessions SET updated_at = ?1 WHERE id = ?2",
            params![now, session_id],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// The messages of a session in order; at most `limit`, starting after message id `after`.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn messages(&self, session_id: i64, after: i64, limit: u32) -> Result<Vec<ChatMessage>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, role, content, created_at FROM messages
             WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![session_id, after, limit], |r| {
            let role: String = r.get(1)?;
            Ok(ChatMessage {
                id: r.get(0)?,
                // The CHECK constraint keeps roles valid; a hand-edited row reads as a system note.
                role: Role::parse(&role).unwrap_or(Role::System),
                content: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// All sessions, most recently updated first.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn sessions(&self) -> Result<Vec<ChatSession>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, workspace_id, title, created_at FROM chat_sessions ORDER BY updated_at DESC, id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ChatSession {
                id: r.get(0)?,
                workspace_id: r.get(1)?,
                title: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Number of messages in the store.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn message_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?)
    }
}
