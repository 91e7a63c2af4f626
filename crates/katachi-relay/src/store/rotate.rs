//! Master key rotation in the database: every sealed value re-sealed with a new key, in one
//! transaction.
//!
//! # Guarantees
//! - All or nothing: every value of every column in [`ROTATED_COLUMNS`] is opened with the current
//!   key and sealed with the new one for the same row inside one transaction; if any value does not
//!   open (another key, modified, moved), or one changed while the rotation ran, the transaction is
//!   rolled back and the database is exactly as it was.
//! - Values of the unbound first format open only while the database's `sealed-values-bound` flag
//!   is unset (as at start-up, `reseal.rs`); they come out bound, and the flag is set in the same
//!   transaction. Once the flag is set, an unbound value does not open, here as everywhere.
//! - Expired pending sign-in states are deleted first (they no longer open a sign-in anyway).
//! - The refusal says which columns hold how many values that do not open.
//!
//! It does not stop running relay instances from sealing new values with the old key: the caller
//! (`katachi-relay rotate-master-key`) requires every instance to be stopped first.

use sqlx::Row;

use super::{Store, StoreError};
use crate::crypto::{MasterKey, SealedRow};

/// A column holding sealed values, and how to find each value's row binding.
struct RotatedColumn {
    /// Table.
    table: &'static str,
    /// Primary key column (the row id of the binding).
    id: &'static str,
    /// Column of the owning user's id, if the table has one (else the binding's user is empty).
    user: Option<&'static str>,
    /// Column of the sealed value.
    column: &'static str,
    /// What the values are, for people (`agent signing secrets`).
    what: &'static str,
    /// The row binding of a value from the row's id and user id.
    row: for<'a> fn(&'a str, &'a str) -> SealedRow<'a>,
}

/// Every column of the relay holding sealed values (see [`crate::crypto::SealedRow`]'s constructors).
const ROTATED_COLUMNS: [RotatedColumn; 3] = [
    RotatedColumn {
        table: "agents",
        id: "id",
        user: Some("user_id"),
        column: "signing_secret_enc",
        what: "agent signing secrets",
        row: |id, user| SealedRow::agent_signing_secret(id, user),
    },
    RotatedColumn {
        table: "mcp_servers",
        id: "id",
        user: Some("user_id"),
        column: "env_enc",
        what: "MCP server environments",
        row: |id, user| SealedRow::mcp_env(id, user),
    },
    RotatedColumn {
        table: "oauth_states",
        id: "state",
        user: None,
        column: "pkce_verifier",
        what: "pending GitHub/Google sign-in verifiers",
        row: |state, _| SealedRow::oauth_pkce_verifier(state),
    },
];

/// How many values of one column a rotation re-sealed, or found unopenable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnCount {
    /// `table.column`.
    pub column: String,
    /// What the values are, for people.
    pub what: &'static str,
    /// How many.
    pub count: usize,
}

impl std::fmt::Display for ColumnCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {} ({})", self.count, self.column, self.what)
    }
}

/// What [`Store::rotate_master_key`] re-sealed, per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// One entry per sealed column, in [`ROTATED_COLUMNS`] order.
    pub resealed: Vec<ColumnCount>,
}

impl RotationReport {
    /// Values re-sealed in all.
    pub fn total(&self) -> usize {
        self.resealed.iter().map(|c| c.count).sum()
    }
}

/// Why a rotation changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Values that do not open with the current key: the key given as current is not the one the
    /// database was sealed with (check `--master-key-file` / the data dir), or values were modified
    /// or moved between rows. Nothing was changed.
    #[error(
        "{} sealed value(s) do not open with the current master key: {}; nothing was changed (is the current key the one this database was sealed with?)",
        .0.iter().map(|c| c.count).sum::<usize>(),
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    DoesNotOpen(Vec<ColumnCount>),
    /// A value changed while the rotation ran: a relay instance is still running on this database.
    /// Stop every instance and run the rotation again. Nothing was changed.
    #[error("a value in {0} changed during the rotation: is a relay instance still running on this database? nothing was changed")]
    ChangedMeanwhile(String),
    /// The database failed; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RotationError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Query(e))
    }
}

impl Store {
    /// Re-seals every sealed value with `new`, all or nothing (see the module doc).
    ///
    /// # Errors
    /// [`RotationError::DoesNotOpen`] naming the columns and counts of values `current` does not
    /// open, [`RotationError::ChangedMeanwhile`], or [`RotationError::Store`]; in every case the
    /// database is left as it was.
    pub async fn rotate_master_key(
        &self,
        current: &MasterKey,
        new: &MasterKey,
    ) -> Result<RotationReport, RotationError> {
        let _w = self.write_guard().await;
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
            .bind(crate::now_unix())
            .execute(&mut *tx)
            .await?;
        let bound_flag_set = sqlx::query("SELECT name FROM relay_flags WHERE name = $1")
            .bind(super::reseal::BOUND_FLAG)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let mut resealed = Vec::with_capacity(ROTATED_COLUMNS.len());
        let mut unopenable = Vec::new();
        for col in &ROTATED_COLUMNS {
            let (table, id, column) = (col.table, col.id, col.column);
            let user = col.user.unwrap_or("''");
            // Names come from the constant above, never from input.
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {id} AS row_id, {user} AS user_id, {column} AS sealed FROM {table}"
            )))
            .fetch_all(&mut *tx)
            .await?;
            let mut updates = Vec::with_capacity(rows.len());
            let mut failed = 0;
            for r in &rows {
                let row_id: String = r.try_get("row_id")?;
                let user_id: String = r.try_get("user_id")?;
                let sealed: String = r.try_get("sealed")?;
                let row = (col.row)(&row_id, &user_id);
                let opened = if MasterKey::is_unbound(&sealed) && !bound_flag_set {
                    current.open_unbound(&row, &sealed)
                } else {
                    current.open(&row, &sealed)
                };
                match opened {
                    Ok(plain) => {
                        let again = new.seal(&row, &plain);
                        updates.push((row_id, sealed, again));
                    }
                    Err(_) => failed += 1,
                }
            }
            if failed > 0 {
                unopenable.push(ColumnCount {
                    column: format!("{table}.{column}"),
                    what: col.what,
                    count: failed,
                });
            }
            // Nothing is written once a value failed: the whole rotation is going to be refused.
            if unopenable.is_empty() {
                for (row_id, old, again) in &updates {
                    // Compare and set: a value that changed since it was read means a writer is
                    // still running.
                    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {table} SET {column} = $1 WHERE {id} = $2 AND {column} = $3"
                    )))
                    .bind(again)
                    .bind(row_id)
                    .bind(old)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Err(RotationError::ChangedMeanwhile(format!("{table}.{column}")));
                    }
                }
            }
            resealed.push(ColumnCount {
                column: format!("{table}.{column}"),
                what: col.what,
                count: updates.len(),
            });
        }
        if !unopenable.is_empty() {
            tx.rollback().await?;
            return Err(RotationError::DoesNotOpen(unopenable));
        }
        if !bound_flag_set {
            sqlx::query(
                "INSERT INTO relay_flags (name, set_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(super::reseal::BOUND_FLAG)
            .bind(crate::now_unix())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RotationReport { resealed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_that_start_up_binds_is_also_rotated() {
        for (table, column) in super::super::reseal::sealed_columns() {
            assert!(
                ROTATED_COLUMNS
                    .iter()
                    .any(|c| c.table == table && c.column == column),
                "{table}.{column} holds sealed values but rotate-master-key would skip it"
            );
        }
    }
}
