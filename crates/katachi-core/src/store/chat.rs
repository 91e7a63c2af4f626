//! Chat sessions and their messages (the AI conversation history), encrypted with the store.

use rusqlite::{params, Connection, OptionalExtension, Row};
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
    /// Its structured part as JSON text (an assistant's tool calls, a tool result's call id), read
    /// by `ai`; the store keeps it as it is.
    pub payload: Option<String>,
    /// Written (Unix seconds).
    pub created_at: i64,
}

/// A message to append: who, the text, and its structured part.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'m> {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: &'m str,
    /// Its structured part (JSON text), if any.
    pub payload: Option<&'m str>,
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
            "INSERT INTO chat_sessions (id, workspace_id, title, created_at, updated_at)
             VALUES ((SELECT highest + 1 FROM chat_session_ids), ?1, ?2, ?3, ?3)",
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
        self.append_messages(
            session_id,
            messages.into_iter().map(|(role, content)| NewMessage {
                role,
                content,
                payload: None,
            }),
        )
    }

    /// Appends messages with their structured parts in one transaction (all or none); returns
    /// their ids.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure; nothing is written then.
    pub fn append_messages<'m>(
        &self,
        session_id: i64,
        messages: impl IntoIterator<Item = NewMessage<'m>>,
    ) -> Result<Vec<i64>> {
        let tx = rusqlite::Transaction::new_unchecked(
            self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let now = now_unix();
        let mut ids = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO messages (session_id, role, content, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for m in messages {
                stmt.execute(params![
                    session_id,
                    m.role.as_str(),
                    m.content,
                    m.payload,
                    now
                ])?;
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
            "SELECT id, role, content, payload, created_at FROM messages
             WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![session_id, after, limit], message_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The latest `limit` messages of a session before message id `before` (all when `None`),
    /// oldest first: the page a chat view opens on, and each older page as it scrolls back.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn latest_messages(
        &self,
        session_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, role, content, payload, created_at FROM messages
             WHERE session_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![session_id, before.unwrap_or(i64::MAX), limit],
            message_from_row,
        )?;
        let mut page = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        page.reverse();
        Ok(page)
    }

    /// One session, if it exists.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn session(&self, id: i64) -> Result<Option<ChatSession>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, workspace_id, title, created_at FROM chat_sessions WHERE id = ?1",
                params![id],
                session_from_row,
            )
            .optional()?)
    }

    /// The sessions of one workspace, most recently updated first, at most `limit`.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn sessions_of(&self, workspace_id: i64, limit: u32) -> Result<Vec<ChatSession>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, workspace_id, title, created_at FROM chat_sessions
             WHERE workspace_id = ?1 ORDER BY updated_at DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![workspace_id, limit], session_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Renames a session; false when it does not exist.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn rename(&self, id: i64, title: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE chat_sessions SET title = ?1 WHERE id = ?2",
            params![title, id],
        )? > 0)
    }

    /// Deletes a session and its messages; false when it did not exist.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn delete_session(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM chat_sessions WHERE id = ?1", params![id])?
            > 0)
    }

    /// Number of messages in one session.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn session_message_count(&self, session_id: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM messages WHERE session_id = ?1",
            params![session_id],
            |r| r.get(0),
        )?)
    }

    /// All sessions, most recently updated first.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn sessions(&self) -> Result<Vec<ChatSession>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, workspace_id, title, created_at FROM chat_sessions ORDER BY updated_at DESC, id DESC",
        )?;
        let rows = stmt.query_map([], session_from_row)?;
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

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<ChatSession> {
    Ok(ChatSession {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        title: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<ChatMessage> {
    let role: String = r.get(1)?;
    Ok(ChatMessage {
        id: r.get(0)?,
        // The CHECK constraint keeps roles valid; a hand-edited row reads as a system note.
        role: Role::parse(&role).unwrap_or(Role::System),
        content: r.get(2)?,
        payload: r.get(3)?,
        created_at: r.get(4)?,
    })
}
