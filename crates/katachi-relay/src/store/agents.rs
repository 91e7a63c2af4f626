//! Agents, their nonces (replay protection shared by every relay instance) and activity events.

use sqlx::Row;

use super::{Result, Store};

/// An agent as stored.
#[derive(Debug, Clone)]
pub struct AgentRow {
    /// Id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Device name.
    pub name: String,
    /// Device OS.
    pub os: String,
    /// Signing secret, sealed with the master key.
    pub signing_secret_enc: String,
    /// Registered (unix seconds).
    pub created_at: i64,
    /// Last heartbeat (unix seconds, 0 = never).
    pub last_seen_at: i64,
    /// Revoked at (0 = not revoked).
    pub revoked_at: i64,
    /// Reported agent version.
    pub version: String,
    /// Reported number of workspaces.
    pub workspaces: i64,
}

/// What recording a nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// New: recorded.
    Fresh,
    /// Already used inside the window: a replay.
    Replayed,
    /// The agent was revoked.
    AgentRevoked,
    /// The agent no longer exists.
    AgentGone,
}

/// What is needed to register an agent.
#[derive(Debug)]
pub struct NewAgent<'a> {
    /// Id.
    pub id: &'a str,
    /// Owner.
    pub user_id: &'a str,
    /// Device name.
    pub name: &'a str,
    /// Device OS.
    pub os: &'a str,
    /// SHA-256 of the access token.
    pub token_hash: &'a str,
    /// Sealed signing secret.
    pub signing_secret_enc: &'a str,
}

macro_rules! agent_columns {
    () => {
        "id, user_id, name, os, signing_secret_enc, created_at, last_seen_at, revoked_at, version, workspaces"
    };
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<AgentRow> {
    Ok(AgentRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        os: r.try_get("os")?,
        signing_secret_enc: r.try_get("signing_secret_enc")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        revoked_at: r.try_get("revoked_at")?,
        version: r.try_get("version")?,
        workspaces: r.try_get("workspaces")?,
    })
}

impl Store {
    /// Registers an agent.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn create_agent(&self, a: &NewAgent<'_>, now: i64) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO agents (id, user_id, name, os, token_hash, signing_secret_enc, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.id)
        .bind(a.user_id)
        .bind(a.name)
        .bind(a.os)
        .bind(a.token_hash)
        .bind(a.signing_secret_enc)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The agent holding this access token (by hash).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn agent_by_token_hash(&self, token_hash: &str) -> Result<Option<AgentRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            agent_columns!(),
            " FROM agents WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The agents of a user, newest first.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn agents_of(&self, user_id: &str) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            agent_columns!(),
            " FROM agents WHERE user_id = $1 ORDER BY created_at DESC, id"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Records a heartbeat.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn touch_agent(
        &self,
        id: &str,
        now: i64,
        version: &str,
        workspaces: i64,
    ) -> Result<()> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let op = super::batch::Op::Touch {
            agent_id: id.to_owned(),
            now,
            version: version.to_owned(),
            workspaces,
            reply,
        };
        self.batcher.submit(op).await?;
        rx.await
            .map_err(|_| super::StoreError::Query(sqlx::Error::PoolClosed))?
    }

    /// Revokes an agent of `user_id`; `Ok(false)` when it is not theirs or already revoked.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn revoke_agent(&self, id: &str, user_id: &str, now: i64) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE agents SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at = 0",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes an agent and everything it sent.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn delete_agent(&self, id: &str) -> Result<()> {
        let _w = self.write_guard().await;
        for sql in [
            "DELETE FROM events WHERE agent_id = $1",
            "DELETE FROM nonces WHERE agent_id = $1",
            "DELETE FROM agents WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(self.pool()).await?;
        }
        Ok(())
    }

    /// Remembers a nonce until `expires_at`, if the agent exists and is not revoked.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn use_nonce(
        &self,
        agent_id: &str,
        nonce: &str,
        expires_at: i64,
    ) -> Result<NonceOutcome> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let op = super::batch::Op::Nonce {
            agent_id: agent_id.to_owned(),
            nonce: nonce.to_owned(),
            expires_at,
            reply,
        };
        self.batcher.submit(op).await?;
        rx.await
            .map_err(|_| super::StoreError::Query(sqlx::Error::PoolClosed))?
    }

    /// Stores an event once (idempotent by id).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn record_event(
        &self,
        agent_id: &str,
        event_id: &str,
        kind: &str,
        at: i64,
        payload: &str,
        now: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO events (agent_id, event_id, kind, at, payload, received_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(agent_id)
        .bind(event_id)
        .bind(kind)
        .bind(at)
        .bind(payload)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Number of events stored for an agent.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn event_count(&self, agent_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM events WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }
}
