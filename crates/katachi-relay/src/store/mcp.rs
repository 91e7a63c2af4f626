//! MCP server configurations per user. Environment values are sealed with the master key and never
//! returned to the browser after saving: only their names are.

use sqlx::Row;

use super::{Result, Store};

/// An MCP server configuration as stored.
#[derive(Debug, Clone)]
pub struct McpServer {
    /// Id.
    pub id: String,
    /// Name shown to the user (unique per user).
    pub name: String,
    /// Command to start it (stdio servers), or empty.
    pub command: String,
    /// URL (remote servers), or empty.
    pub url: String,
    /// Sealed JSON object of environment variables.
    pub env_enc: String,
}

impl Store {
    /// Adds an MCP server; `Ok(false)` when the user already has one with that name.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn add_mcp_server(&self, user_id: &str, s: &McpServer, now: i64) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "INSERT INTO mcp_servers (id, user_id, name, command, url, env_enc, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&s.id)
        .bind(user_id)
        .bind(&s.name)
        .bind(&s.command)
        .bind(&s.url)
        .bind(&s.env_enc)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The MCP servers of a user, by name.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn mcp_servers_of(&self, user_id: &str) -> Result<Vec<McpServer>> {
        let rows = sqlx::query("SELECT id, name, command, url, env_enc FROM mcp_servers WHERE user_id = $1 ORDER BY name")
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(McpServer {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    command: r.try_get("command")?,
                    url: r.try_get("url")?,
                    env_enc: r.try_get("env_enc")?,
                })
            })
            .collect()
    }

    /// Deletes an MCP server of the user; `Ok(false)` when it is not theirs.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn delete_mcp_server(&self, user_id: &str, id: &str) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query("DELETE FROM mcp_servers WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
