//! The audit and egress ledger: what was done through the agent, by whom, on which paths, with what
//! result, and how many bytes left the machine — kept as a tamper-evident chain.
//!
//! # Guarantees
//! - Each record carries an HMAC-SHA256, keyed by the machine key derived for
//!   [`Purpose::AUDIT_CHAIN`], over a canonical encoding of all its fields **and the previous
//!   record's MAC** (the first record chains to 32 zero bytes). A sealed *head* (last seq and MAC,
//!   itself MACed) is updated in the same transaction, so removing records from the end is caught
//!   too. [`AuditLog::verify`] names the first broken record and what is wrong with it
//!   ([`AuditError::Edited`], [`AuditError::Deleted`], [`AuditError::Reordered`],
//!   [`AuditError::WrongKey`], [`AuditError::Inserted`], [`AuditError::Unlinked`],
//!   [`AuditError::Truncated`], [`AuditError::HeadTampered`], [`AuditError::HeadMissing`]).
//! - Nothing appends without the key: the only way to the log is [`crate::Store::audit`], which
//!   takes an [`AuditKey`].
//! - Appends from several connections (threads, processes) keep one valid chain: the head is read
//!   and replaced inside one `BEGIN IMMEDIATE` transaction.
//! - Appends fail closed: if the head does not verify, nothing is appended (appending would hide a
//!   truncation); the error says to run `katachi audit verify`.
//!
//! # What it does not do
//! - It does not stop someone who holds the machine key (the keychain secret *and* this machine)
//!   from rewriting the whole chain consistently; it makes edits visible to anyone without it — a
//!   process that only has the store key, a restored or merged database, a record copied from
//!   another machine, a bug that writes the table directly.
//! - Rolling the whole database back to an older copy (rows and head together) yields an older, intact
//!   chain; so does wiping every record and the head. Detecting those needs state outside this
//!   machine (for example the relay keeping the last head it saw).
//! - Records written before the chain existed (schema v1) carry no MAC; the first append seals them
//!   into the chain as they are, and [`VerifyReport::unsealed`] counts them until then.
//!
//! # Layout
//! - `key`: [`AuditKey`], the canonical encoding of a record and the MACs of records and head.
//! - `record`: what a caller appends ([`AuditEntry`], [`Actor`]) and what a reader gets ([`AuditRecord`]).
//! - `append`: adding a record inside an immediate transaction, sealing v1 records on first use.
//! - `verify`: walking the chain and naming the first broken record ([`VerifyReport`]).
//! - `egress`: bytes that left the machine, per workspace ([`WorkspaceEgress`]).
//!
//! [`Purpose::AUDIT_CHAIN`]: crate::vault::Purpose::AUDIT_CHAIN

mod append;
mod egress;
mod key;
mod record;
mod verify;

use rusqlite::Connection;

use super::StoreError;

pub use egress::WorkspaceEgress;
pub use key::AuditKey;
pub use record::{Actor, AuditEntry, AuditRecord};
pub use verify::VerifyReport;

/// Why the audit chain could not be appended to or does not verify.
///
/// Every tampering variant names a sequence number: the first record (in seq order) where the
/// chain breaks. Which variant is reported is a diagnosis from what was found; any of them means the
/// log was changed outside katachi.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record's MAC does not match its fields: a field (or the MAC) was edited after it was
    /// written. Compare with a backup, or treat the record as untrustworthy.
    #[error(
        "audit record {seq} was edited after it was written (its MAC does not match its fields)"
    )]
    Edited {
        /// The edited record.
        seq: i64,
    },
    /// Record `seq` is missing: there is a gap in the sequence, so it was deleted.
    #[error("audit record {seq} was deleted (the sequence jumps over it)")]
    Deleted {
        /// The first missing sequence number.
        seq: i64,
    },
    /// The record at `seq` was written as record `original_seq`: records were reordered, or removed
    /// and the rest renumbered.
    #[error("audit record {seq} was written as record {original_seq}: records were reordered or renumbered")]
    Reordered {
        /// Where the record is now.
        seq: i64,
        /// Where it was written.
        original_seq: i64,
    },
    /// The record was MACed with another key: it was copied from another machine's log (or written
    /// under another keychain secret).
    #[error("audit record {seq} was sealed with another machine's key (copied from another log)")]
    WrongKey {
        /// The foreign record.
        seq: i64,
    },
    /// A record lies beyond the sealed head, or has an impossible sequence number: it was added
    /// outside katachi.
    #[error(
        "audit record {seq} was added outside katachi (it lies beyond the sealed end of the log)"
    )]
    Inserted {
        /// The added record.
        seq: i64,
    },
    /// The record is intact but does not follow the one before it: its predecessor was replaced.
    #[error("audit record {seq} does not follow the record before it (that record was replaced)")]
    Unlinked {
        /// The record whose link is broken.
        seq: i64,
    },
    /// The log ends before the sealed head: records from `seq` on were deleted.
    #[error("audit records {seq} to {head_seq} were deleted from the end of the log")]
    Truncated {
        /// The first missing sequence number.
        seq: i64,
        /// The last sequence number the head was sealed at.
        head_seq: i64,
    },
    /// The head (last seq and MAC) does not verify: it was edited, possibly to hide a truncation.
    /// Appending stops until this is looked into.
    #[error("the sealed end of the audit log (at record {seq}) was edited; run `katachi audit verify` and keep a copy of the store before changing anything")]
    HeadTampered {
        /// The sequence number the head claims.
        seq: i64,
    },
    /// Sealed records exist but the head is gone: it was deleted, possibly to hide a truncation.
    /// Appending stops until this is looked into.
    #[error("the sealed end of the audit log is missing although records up to {seq} are sealed; run `katachi audit verify` and keep a copy of the store before changing anything")]
    HeadMissing {
        /// The last sequence number in the log.
        seq: i64,
    },
    /// The database failed (busy, disk, corruption).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for AuditError {
    fn from(e: rusqlite::Error) -> Self {
        AuditError::Store(e.into())
    }
}

impl AuditError {
    /// A stable, dotted code for scripts (`audit.edited`, …; `store.*` for database failures).
    pub fn code(&self) -> &'static str {
        match self {
            AuditError::Edited { .. } => "audit.edited",
            AuditError::Deleted { .. } => "audit.deleted",
            AuditError::Reordered { .. } => "audit.reordered",
            AuditError::WrongKey { .. } => "audit.wrong_key",
            AuditError::Inserted { .. } => "audit.inserted",
            AuditError::Unlinked { .. } => "audit.unlinked",
            AuditError::Truncated { .. } => "audit.truncated",
            AuditError::HeadTampered { .. } => "audit.head_tampered",
            AuditError::HeadMissing { .. } => "audit.head_missing",
            AuditError::Store(StoreError::Busy) => "store.busy",
            AuditError::Store(_) => "store.error",
        }
    }

    /// The first broken sequence number, for every tampering variant; `None` for database failures.
    pub fn seq(&self) -> Option<i64> {
        match self {
            AuditError::Edited { seq }
            | AuditError::Deleted { seq }
            | AuditError::Reordered { seq, .. }
            | AuditError::WrongKey { seq }
            | AuditError::Inserted { seq }
            | AuditError::Unlinked { seq }
            | AuditError::Truncated { seq, .. }
            | AuditError::HeadTampered { seq }
            | AuditError::HeadMissing { seq } => Some(*seq),
            AuditError::Store(_) => None,
        }
    }
}

/// The audit log of one store connection, bound to the chain's key.
pub struct AuditLog<'c> {
    /// The store's connection.
    conn: &'c Connection,
    /// Keys the MAC of every record and of the head.
    key: &'c AuditKey,
}

impl<'c> AuditLog<'c> {
    pub(super) fn new(conn: &'c Connection, key: &'c AuditKey) -> Self {
        Self { conn, key }
    }

    /// Appends a record, chained to the sealed head; returns its sequence number.
    ///
    /// # Errors
    /// [`AuditError::HeadTampered`] / [`AuditError::HeadMissing`] / [`AuditError::Inserted`] when the
    /// log was tampered with (nothing is appended), [`AuditError::Store`] on a database failure
    /// (`StoreError::Busy` after the busy timeout).
    pub fn append(&self, entry: &AuditEntry) -> Result<i64, AuditError> {
        append::append_chained(self.conn, self.key, entry)
    }

    /// Appends `entries` in order, in one transaction: all of them or none; returns the last
    /// sequence number (`None` for no entries). One transaction per batch is what lets a busy
    /// agent record every call without a disk sync per call.
    ///
    /// # Errors
    /// As [`Self::append`]; on any error nothing of the batch is appended.
    pub fn append_all(&self, entries: &[AuditEntry]) -> Result<Option<i64>, AuditError> {
        append::append_all_chained(self.conn, self.key, entries)
    }

    /// Whether the next append would go through: the sealed head verifies under this key (or the
    /// chain has not started). Reads only; cheap (does not walk the chain, see [`Self::verify`]).
    ///
    /// # Errors
    /// [`AuditError::HeadTampered`] / [`AuditError::HeadMissing`] when appends are refused,
    /// [`AuditError::Store`] on a database failure.
    pub fn check_appendable(&self) -> Result<(), AuditError> {
        append::check_appendable(self.conn, self.key)
    }

    /// Walks the whole chain in seq order and checks every MAC, every link and the head.
    ///
    /// # Errors
    /// The first break found, as an [`AuditError`] naming its sequence number.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify::verify_chain(self.conn, self.key)
    }

    /// The newest `limit` records, newest first. Does not check the chain (see [`Self::verify`]).
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub fn recent(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        record::recent(self.conn, limit)
    }

    /// Calls and bytes that left the machine, per workspace, largest first. Does not check the
    /// chain (see [`Self::verify`]).
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub fn egress_by_workspace(&self) -> Result<Vec<WorkspaceEgress>, StoreError> {
        egress::egress_by_workspace(self.conn)
    }
}

#[cfg(test)]
#[path = "audit/audit_tests.rs"]
mod tests;
