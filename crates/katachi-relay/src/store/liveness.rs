//! What the relay rechecks for requests in flight: which browser sessions still exist, and which
//! agents were revoked lately (on any instance: the database is shared).

use std::collections::HashSet;

use sqlx::Row;

use super::{Result, Store};

/// Most values bound in one `IN (…)` list.
const IN_LIST_CHUNK: usize = 200;

impl Store {
    /// The ones of `session_hashes` that are still signed in (present and not expired at `now`).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn live_sessions(
        &self,
        session_hashes: &[String],
        now: i64,
    ) -> Result<HashSet<String>> {
        let mut live = HashSet::new();
        for chunk in session_hashes.chunks(IN_LIST_CHUNK) {
            // Only `$n` placeholders are formatted in; the values are bound.
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id_hash FROM sessions WHERE expires_at > $1 AND id_hash IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for hash in chunk {
                query = query.bind(hash);
            }
            for row in query.fetch_all(self.pool()).await? {
                live.insert(row.try_get("id_hash")?);
            }
        }
        Ok(live)
    }

    /// Ids of agents revoked at or after `since` (unix seconds).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn agents_revoked_since(&self, since: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM agents WHERE revoked_at >= $1 AND revoked_at > 0")
            .bind(since)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }
}
