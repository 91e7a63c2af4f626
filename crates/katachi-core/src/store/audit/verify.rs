//! Verifying the chain: every record in seq order must carry the MAC of its own fields and of its
//! predecessor's MAC, seqs must run 1, 2, 3, … without gaps, and the log must end exactly at the
//! sealed head. The first break is reported with a diagnosis of what happened to it.

use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::append::read_head;
use super::key::{AuditKey, GENESIS};
use super::record::{StoredRow, ROW_COLUMNS};
use super::AuditError;

/// What an intact log holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records in the log (sealed or not).
    pub records: u64,
    /// Records written before the chain existed (schema v1), not sealed yet: the next append seals
    /// them. Always 0 once the chain has started.
    pub unsealed: u64,
    /// The last sequence number (`None` for an empty log).
    pub last_seq: Option<i64>,
}

/// Walks the whole chain; the first break is the error.
pub(super) fn verify_chain(conn: &Connection, key: &AuditKey) -> Result<VerifyReport, AuditError> {
    // One read transaction: the head and the rows come from the same snapshot even while other
    // connections append (WAL readers see a consistent state).
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
    let Some(head) = read_head(&tx)? else {
        return verify_unstarted(&tx);
    };
    let head_is_sealed = head.is_sealed_by(key);
    // Where a moved record may have been written: up to the last seq present or, when the head is
    // genuine, the last seq ever sealed (a forged head must not widen the search).
    let last_present: i64 =
        tx.query_row("SELECT coalesce(max(seq), 0) FROM audit_log", [], |r| {
            r.get(0)
        })?;
    let max_seq = if head_is_sealed {
        last_present.max(head.seq)
    } else {
        last_present
    };
    let mut stmt = tx.prepare(&format!("SELECT {ROW_COLUMNS} FROM audit_log ORDER BY seq"))?;
    let mut rows = stmt.query([])?;
    let mut expected: i64 = 1;
    let mut prev_mac = GENESIS.to_vec();
    while let Some(r) = rows.next()? {
        let row = StoredRow::from_row(r)?;
        // seqs below 1 are never written by katachi
        if row.seq < expected {
            return Err(AuditError::Inserted { seq: row.seq });
        }
        // a gap: the records in between were deleted
        if row.seq > expected {
            return Err(AuditError::Deleted { seq: expected });
        }
        // past the sealed end: appended outside katachi (only meaningful if the head is genuine)
        if head_is_sealed && row.seq > head.seq {
            return Err(AuditError::Inserted { seq: row.seq });
        }
        prev_mac = check_record(key, &row, &prev_mac, max_seq)?;
        expected += 1;
    }
    let last = expected - 1;
    // an edited head may be hiding a truncation
    if !head_is_sealed {
        return Err(AuditError::HeadTampered { seq: head.seq });
    }
    // the log stops before the sealed end: its tail was deleted
    if last < head.seq {
        return Err(AuditError::Truncated {
            seq: last + 1,
            head_seq: head.seq,
        });
    }
    // `last == head.seq` here; the last record must be the one the head was sealed with
    if !bool::from(prev_mac.ct_eq(&head.mac)) {
        return Err(AuditError::Unlinked { seq: head.seq });
    }
    Ok(VerifyReport {
        records: u64::try_from(last).unwrap_or(0),
        unsealed: 0,
        last_seq: (last > 0).then_some(last),
    })
}

/// Checks one record against its predecessor's MAC; returns its own MAC to chain the next one.
fn check_record(
    key: &AuditKey,
    row: &StoredRow,
    prev_mac: &[u8],
    max_seq: i64,
) -> Result<Vec<u8>, AuditError> {
    let seq = row.seq;
    // a MAC column nulled out: the record was stripped of its seal
    let (Some(mac), Some(stored_prev)) = (&row.mac, &row.prev_mac) else {
        return Err(AuditError::Edited { seq });
    };
    let fields = row.sealed_fields(row.key_id.as_deref());
    if key.record_mac_matches(&fields, seq, stored_prev, mac) {
        // intact on its own; it must also follow the record before it
        if !bool::from(stored_prev.ct_eq(prev_mac)) {
            return Err(AuditError::Unlinked { seq });
        }
        return Ok(mac.clone());
    }
    // Diagnose the mismatch (every branch is a failure; this only names the likely cause).
    // sealed under another key id: copied from another machine's log
    if matches!(&row.key_id, Some(id) if !bool::from(id.ct_eq(&key.key_id()))) {
        return Err(AuditError::WrongKey { seq });
    }
    // genuine, but written at another position: moved, or renumbered after a deletion
    if let Some(original_seq) =
        (1..=max_seq).find(|&s| s != seq && key.record_mac_matches(&fields, s, stored_prev, mac))
    {
        return Err(AuditError::Reordered { seq, original_seq });
    }
    Err(AuditError::Edited { seq })
}

/// No head: an empty log, or only records written before the chain existed.
fn verify_unstarted(tx: &Transaction<'_>) -> Result<VerifyReport, AuditError> {
    let (records, last_seq, last_sealed): (i64, Option<i64>, Option<i64>) = tx.query_row(
        "SELECT count(*), max(seq), max(CASE WHEN mac IS NOT NULL THEN seq END) FROM audit_log",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // sealed records without a head: the head was deleted
    if let Some(seq) = last_sealed {
        return Err(AuditError::HeadMissing { seq });
    }
    let records = u64::try_from(records).unwrap_or(0);
    Ok(VerifyReport {
        records,
        unsealed: records,
        last_seq,
    })
}
