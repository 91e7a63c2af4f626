//! Appending a record: read the sealed head, link the new record to it, replace the head — all in
//! one `BEGIN IMMEDIATE` transaction, so concurrent writers (threads or processes, each with its own
//! connection) queue on SQLite's write lock and never chain two records to the same predecessor.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::key::{AuditKey, GENESIS, MAC_LEN};
use super::record::{AuditEntry, StoredRow, ROW_COLUMNS};
use super::AuditError;
use crate::store::now_unix;

/// The sealed head: the last record's seq and MAC, and a MAC over both.
#[derive(Debug)]
pub(super) struct Head {
    /// The last sealed record.
    pub(super) seq: i64,
    /// That record's MAC.
    pub(super) mac: Vec<u8>,
    /// MAC over `seq` and `mac` (see [`AuditKey::head_mac`]).
    pub(super) seal: Vec<u8>,
}

impl Head {
    /// Whether the head was sealed with `key` and not edited since.
    pub(super) fn is_sealed_by(&self, key: &AuditKey) -> bool {
        key.head_mac_matches(self.seq, &self.mac, &self.seal)
    }
}

/// Reads the head row, if any.
pub(super) fn read_head(conn: &Connection) -> rusqlite::Result<Option<Head>> {
    conn.query_row(
        "SELECT seq, mac, seal FROM audit_head WHERE id = 1",
        [],
        |r| {
            Ok(Head {
                seq: r.get(0)?,
                mac: r.get(1)?,
                seal: r.get(2)?,
            })
        },
    )
    .optional()
}

/// Appends `entry` after the head; returns its seq.
pub(super) fn append_chained(
    conn: &Connection,
    key: &AuditKey,
    entry: &AuditEntry,
) -> Result<i64, AuditError> {
    append_all_chained(conn, key, std::slice::from_ref(entry)).map(|last| last.unwrap_or(0))
}

/// Appends `entries` in order after the head, in one transaction (all or none); returns the last
/// seq, or `None` when `entries` is empty (nothing is touched then).
pub(super) fn append_all_chained(
    conn: &Connection,
    key: &AuditKey,
    entries: &[AuditEntry],
) -> Result<Option<i64>, AuditError> {
    if entries.is_empty() {
        return Ok(None);
    }
    // IMMEDIATE: take the write lock before reading the head, so no other writer can append
    // between our read and our write (two records chained to one predecessor).
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let (mut seq, mut prev_mac) = linkable_head(&tx, key)?;
    for entry in entries {
        seq += 1;
        prev_mac = insert_record(&tx, key, entry, seq, &prev_mac)?.to_vec();
    }
    write_head(&tx, key, seq, &prev_mac)?;
    tx.commit()?;
    Ok(Some(seq))
}

/// Whether a record could be appended now: the head verifies (or the chain has not started and no
/// sealed record lost its head). Reads only.
pub(super) fn check_appendable(conn: &Connection, key: &AuditKey) -> Result<(), AuditError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
    match read_head(&tx)? {
        Some(head) if head.is_sealed_by(key) => Ok(()),
        Some(head) => Err(AuditError::HeadTampered { seq: head.seq }),
        None => match last_sealed_seq(&tx)? {
            Some(seq) => Err(AuditError::HeadMissing { seq }),
            None => Ok(()),
        },
    }
}

/// The seq and MAC the next record links to, sealing v1 records when the chain has not started.
fn linkable_head(tx: &Transaction<'_>, key: &AuditKey) -> Result<(i64, Vec<u8>), AuditError> {
    match read_head(tx)? {
        // link to the head, not to the last row: a deleted tail stays a visible gap
        Some(head) if head.is_sealed_by(key) => Ok((head.seq, head.mac)),
        // an edited head may be hiding a truncation; appending would bury it
        Some(head) => Err(AuditError::HeadTampered { seq: head.seq }),
        None => {
            let (seq, mac) = seal_unsealed_records(tx, key)?;
            Ok((seq, mac.to_vec()))
        }
    }
}

/// Inserts `entry` as record `seq` linked to `prev_mac`; returns its MAC.
fn insert_record(
    tx: &Transaction<'_>,
    key: &AuditKey,
    entry: &AuditEntry,
    seq: i64,
    prev_mac: &[u8],
) -> Result<[u8; MAC_LEN], AuditError> {
    let at = now_unix();
    let paths = entry.paths_json();
    let key_id = key.key_id();
    let fields = entry.sealed_fields(at, &paths, &key_id);
    let mac = key.record_mac(&fields, seq, prev_mac);
    let inserted = tx.execute(
        "INSERT INTO audit_log (seq, at, actor, user_id, browser_session, action, workspace_id, \
         workspace_path, paths, detail, result, bytes_out, key_id, prev_mac, mac) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            seq,
            fields.at,
            fields.actor,
            fields.user,
            fields.session,
            fields.action,
            fields.workspace_id,
            fields.workspace_path,
            fields.paths,
            fields.detail,
            fields.result,
            fields.bytes_out,
            &key_id[..],
            prev_mac,
            &mac[..],
        ],
    );
    match inserted {
        Ok(_) => Ok(mac),
        // a row already sits past the head: someone added it outside katachi
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            Err(AuditError::Inserted { seq })
        }
        Err(e) => Err(e.into()),
    }
}

/// The last record that carries a MAC, if any.
fn last_sealed_seq(tx: &Transaction<'_>) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT max(seq) FROM audit_log WHERE mac IS NOT NULL",
        [],
        |r| r.get(0),
    )
}

/// Replaces the head with (`seq`, `mac`) and its seal.
fn write_head(tx: &Transaction<'_>, key: &AuditKey, seq: i64, mac: &[u8]) -> rusqlite::Result<()> {
    let seal = key.head_mac(seq, mac);
    tx.execute(
        "INSERT INTO audit_head (id, seq, mac, seal) VALUES (1, ?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, mac = excluded.mac, seal = excluded.seal",
        params![seq, mac, &seal[..]],
    )?;
    Ok(())
}

/// Starts the chain when there is no head: seals the records written before the chain existed
/// (schema v1, no MAC) in seq order, as they are. Returns the last seq and MAC to link to
/// (`0` and [`GENESIS`] for an empty log).
///
/// # Errors
/// [`AuditError::HeadMissing`] when sealed records exist: the head was deleted, and restarting the
/// chain would bury whatever was removed with it.
fn seal_unsealed_records(
    tx: &Transaction<'_>,
    key: &AuditKey,
) -> Result<(i64, [u8; MAC_LEN]), AuditError> {
    if let Some(seq) = last_sealed_seq(tx)? {
        return Err(AuditError::HeadMissing { seq });
    }
    let unsealed = {
        let mut stmt = tx.prepare(&format!("SELECT {ROW_COLUMNS} FROM audit_log ORDER BY seq"))?;
        let rows = stmt.query_map([], StoredRow::from_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let key_id = key.key_id();
    let mut last = (0, GENESIS);
    for row in &unsealed {
        let mac = key.record_mac(&row.sealed_fields(Some(&key_id)), row.seq, &last.1);
        tx.execute(
            "UPDATE audit_log SET key_id = ?1, prev_mac = ?2, mac = ?3 WHERE seq = ?4",
            params![&key_id[..], &last.1[..], &mac[..], row.seq],
        )?;
        last = (row.seq, mac);
    }
    // the caller appends and writes the head in this same transaction
    Ok(last)
}
