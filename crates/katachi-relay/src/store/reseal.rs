//! One-time re-sealing of secret values of the first, unbound format (purpose-only AEAD associated
//! data) so that each is bound to its row (`crypto::SealedRow`).
//!
//! Runs once per database: when done it sets the flag `sealed-values-bound`, and from then on does
//! nothing, so an unbound value put back into the database later (say, from an old backup, by
//! someone who can write the database) is never bound to the row it was put into: it stays
//! unopenable. Each value is replaced only if the row still holds the value that was read (compare and
//! set), so two relay instances starting together on one PostgreSQL cannot clobber each other. A
//! value that does not open with this relay's master key is left as it is and counted: it was
//! sealed with another key, and the relay keeps reporting it as such.

use sqlx::Row;

use super::{Result, Store};
use crate::crypto::{MasterKey, SealedRow};

/// What [`Store::reseal_unbound_values`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    /// Values now bound to their row.
    pub resealed: usize,
    /// Unbound values that did not open with this master key (left untouched).
    pub unopenable: usize,
    /// True when an earlier start had already done it (nothing was read).
    pub already_done: bool,
}

/// The flag set once every value is bound.
pub(super) const BOUND_FLAG: &str = "sealed-values-bound";

/// A column holding sealed values, with what binds each of its values.
struct SealedColumn {
    /// Table.
    table: &'static str,
    /// Column of the sealed value.
    column: &'static str,
    /// The row binding of a value from the row's id and user id.
    row: for<'a> fn(&'a str, &'a str) -> SealedRow<'a>,
}

/// Every column of the relay holding long-lived sealed values. (`oauth_states.pkce_verifier` lives
/// for minutes: an unbound one simply fails, and the user starts that sign-in again.)
const SEALED_COLUMNS: [SealedColumn; 2] = [
    SealedColumn {
        table: "agents",
        column: "signing_secret_enc",
        row: |id, user| SealedRow::agent_signing_secret(id, user),
    },
    SealedColumn {
        table: "mcp_servers",
        column: "env_enc",
        row: |id, user| SealedRow::mcp_env(id, user),
    },
];

/// `(table, column)` of every column above (the rotation's test checks it covers them all).
#[cfg(test)]
pub(super) fn sealed_columns() -> impl Iterator<Item = (&'static str, &'static str)> {
    SEALED_COLUMNS.iter().map(|c| (c.table, c.column))
}

impl Store {
    /// Re-seals every value of the unbound first format for its row.
    ///
    /// # Errors
    /// [`super::StoreError::Query`]; values already re-sealed stay re-sealed.
    pub async fn reseal_unbound_values(&self, master: &MasterKey) -> Result<ResealReport> {
        let mut report = ResealReport::default();
        let done = sqlx::query("SELECT name FROM relay_flags WHERE name = $1")
            .bind(BOUND_FLAG)
            .fetch_optional(self.pool())
            .await?;
        if done.is_some() {
            report.already_done = true;
            return Ok(report);
        }
        for col in &SEALED_COLUMNS {
            let (table, column) = (col.table, col.column);
            // The bound format starts with `v2.`; every other value is of the first format.
            // Table and column names come from the constant above, never from input.
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id, user_id, {column} AS sealed FROM {table} WHERE {column} NOT LIKE 'v2.%'"
            )))
            .fetch_all(self.pool())
            .await?;
            for r in &rows {
                let id: String = r.try_get("id")?;
                let user_id: String = r.try_get("user_id")?;
                let sealed: String = r.try_get("sealed")?;
                if !MasterKey::is_unbound(&sealed) {
                    continue;
                }
                let Ok(bound) = master.reseal_unbound(&(col.row)(&id, &user_id), &sealed) else {
                    report.unopenable += 1;
                    continue;
                };
                let _w = self.write_guard().await;
                let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3"
                )))
                .bind(&bound)
                .bind(&id)
                .bind(&sealed)
                .execute(self.pool())
                .await?;
                report.resealed += usize::from(done.rows_affected() == 1);
            }
        }
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO relay_flags (name, set_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(BOUND_FLAG)
        .bind(crate::now_unix())
        .execute(self.pool())
        .await?;
        Ok(report)
    }
}
