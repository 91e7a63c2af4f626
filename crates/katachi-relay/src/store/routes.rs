//! Relay instances and the tunnel routing table: which instance holds each agent's tunnel.
//!
//! # Contract
//! - An instance is *alive* while its `seen_at` is at most [`INSTANCE_TTL_SECS`] old; it refreshes
//!   it every few seconds ([`Store::touch_instance`]). A route to an instance that is not alive is
//!   never used, and [`Store::purge_dead_instances`] removes both.
//! - A route is replaced by the next tunnel of the same agent on any instance (upsert); an instance
//!   removes a route only if it still names that instance and generation, so a tunnel that closes
//!   late never removes its successor's route.

use sqlx::Row;

use super::{Result, Store};

/// Seconds without a refresh after which an instance counts as gone.
pub const INSTANCE_TTL_SECS: i64 = 15;

/// An instance as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    /// Its id (random per start).
    pub id: String,
    /// `host:port` of its internal listener.
    pub internal_url: String,
    /// Hex SHA-256 of its internal certificate.
    pub cert_sha256: String,
}

/// Where an agent's tunnel is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRoute {
    /// The instance holding it.
    pub instance: InstanceRow,
    /// That instance's generation of the tunnel.
    pub generation: i64,
}

impl Store {
    /// Records this instance (or refreshes it) as alive at `now`.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn touch_instance(&self, me: &InstanceRow, started_at: i64, now: i64) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO relay_instances (id, internal_url, cert_sha256, started_at, seen_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(&me.id)
        .bind(&me.internal_url)
        .bind(&me.cert_sha256)
        .bind(started_at)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Removes this instance and every route it held (a clean shutdown).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn remove_instance(&self, id: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("DELETE FROM tunnel_routes WHERE instance_id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        sqlx::query("DELETE FROM relay_instances WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The internal addresses of the instances alive at `now`.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn alive_instances(&self, now: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT internal_url FROM relay_instances WHERE seen_at >= $1")
            .bind(now - INSTANCE_TTL_SECS)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get("internal_url")?))
            .collect()
    }

    /// The alive instance whose internal certificate has this fingerprint, if any.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn instance_by_cert(&self, cert_sha256: &str, now: i64) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT id FROM relay_instances WHERE cert_sha256 = $1 AND seen_at >= $2")
                .bind(cert_sha256)
                .bind(now - INSTANCE_TTL_SECS)
                .fetch_optional(self.pool())
                .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("id")?),
            None => None,
        })
    }

    /// Records that `instance_id` holds the agent's tunnel of `generation` (replacing any route).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn set_route(
        &self,
        agent_id: &str,
        instance_id: &str,
        generation: i64,
        now: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO tunnel_routes (agent_id, instance_id, generation, opened_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (agent_id) DO UPDATE SET instance_id = excluded.instance_id, \
             generation = excluded.generation, opened_at = excluded.opened_at",
        )
        .bind(agent_id)
        .bind(instance_id)
        .bind(generation)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Removes the agent's route if it is still `instance_id`'s of `generation`.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn clear_route(
        &self,
        agent_id: &str,
        instance_id: &str,
        generation: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "DELETE FROM tunnel_routes WHERE agent_id = $1 AND instance_id = $2 AND generation = $3",
        )
        .bind(agent_id)
        .bind(instance_id)
        .bind(generation)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Where the agent's tunnel is, if an alive instance holds it.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn route_of(&self, agent_id: &str, now: i64) -> Result<Option<TunnelRoute>> {
        let row = sqlx::query(
            "SELECT i.id, i.internal_url, i.cert_sha256, r.generation \
             FROM tunnel_routes r JOIN relay_instances i ON i.id = r.instance_id \
             WHERE r.agent_id = $1 AND i.seen_at >= $2",
        )
        .bind(agent_id)
        .bind(now - INSTANCE_TTL_SECS)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(TunnelRoute {
            instance: InstanceRow {
                id: r.try_get("id")?,
                internal_url: r.try_get("internal_url")?,
                cert_sha256: r.try_get("cert_sha256")?,
            },
            generation: r.try_get("generation")?,
        }))
    }

    /// Removes instances not seen for [`INSTANCE_TTL_SECS`] (killed, not stopped) and their routes;
    /// returns how many instances went.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn purge_dead_instances(&self, now: i64) -> Result<u64> {
        let _w = self.write_guard().await;
        let cutoff = now - INSTANCE_TTL_SECS;
        sqlx::query(
            "DELETE FROM tunnel_routes WHERE instance_id IN \
             (SELECT id FROM relay_instances WHERE seen_at < $1)",
        )
        .bind(cutoff)
        .execute(self.pool())
        .await?;
        let gone = sqlx::query("DELETE FROM relay_instances WHERE seen_at < $1")
            .bind(cutoff)
            .execute(self.pool())
            .await?;
        Ok(gone.rows_affected())
    }
}

impl Store {
    /// `NOTIFY channel, payload` to the other instances (PostgreSQL); nothing on SQLite.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.is_sqlite() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// True on SQLite (one instance), false on PostgreSQL.
    pub fn is_sqlite(&self) -> bool {
        self.write_lock.is_some()
    }
}
