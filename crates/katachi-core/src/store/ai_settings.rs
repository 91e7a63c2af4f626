//! Which AI provider, model and base URL each workspace uses (row 0: the default for all).
//! The store keeps the names as given; `ai::settings` checks them.

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_unix, Result};

/// The workspace id of the default settings row.
pub const DEFAULT_AI_SETTINGS: i64 = 0;

/// A stored settings row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiSettingsRow {
    /// The provider kind (`openai`, `anthropic`).
    pub provider: String,
    /// The model name.
    pub model: String,
    /// A base URL other than the provider's (self-hosted, local servers).
    pub base_url: Option<String>,
    /// The API-key entry to use when it is not the provider kind's own.
    pub key_name: Option<String>,
}

/// Provider settings per workspace.
pub struct AiSettingsTable<'c> {
    /// The store's connection.
    conn: &'c Connection,
}

impl<'c> AiSettingsTable<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// The row of `workspace_id` ([`DEFAULT_AI_SETTINGS`] for the default), if set.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn get(&self, workspace_id: i64) -> Result<Option<AiSettingsRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT provider, model, base_url, key_name FROM ai_settings WHERE workspace_id = ?1",
                params![workspace_id],
                |r| {
                    Ok(AiSettingsRow {
                        provider: r.get(0)?,
                        model: r.get(1)?,
                        base_url: r.get(2)?,
                        key_name: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Sets (or replaces) the row of `workspace_id`.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn set(&self, workspace_id: i64, row: &AiSettingsRow) -> Result<()> {
        self.conn.execute(
            "INSERT INTO ai_settings (workspace_id, provider, model, base_url, key_name, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (workspace_id) DO UPDATE SET provider = excluded.provider,
               model = excluded.model, base_url = excluded.base_url,
               key_name = excluded.key_name, updated_at = excluded.updated_at",
            params![
                workspace_id,
                row.provider,
                row.model,
                row.base_url,
                row.key_name,
                now_unix()
            ],
        )?;
        Ok(())
    }

    /// Removes the row of `workspace_id` (it then uses the default); false when none was set.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn clear(&self, workspace_id: i64) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM ai_settings WHERE workspace_id = ?1",
            params![workspace_id],
        )? > 0)
    }
}
