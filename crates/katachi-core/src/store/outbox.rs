//! The activity outbox: events for the relay, kept until the relay acknowledges them, so none is lost
//! while the relay is unreachable. Event ids make delivery idempotent on the relay's side.

use rusqlite::{params, Connection};
use serde::Serialize;

use super::{now_unix, Result};

/// An event waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEvent {
    /// Idempotency key (the relay ignores a repeat).
    pub event_id: String,
    /// Event kind (`workspace.added`, …).
    pub kind: String,
    /// JSON payload.
    pub payload: String,
    /// When it was queued (unix seconds): when it happened, for the relay.
    pub created_at: i64,
    /// Delivery attempts so far.
    pub attempts: i64,
}

/// The outbox.
pub struct Outbox<'c> {
    /// The store's connection.
    conn: &'c Connection,
}

impl<'c> Outbox<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// Queues an event; queuing the same id twice keeps the first.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn enqueue(&self, event_id: &str, kind: &str, payload: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO activity_outbox (event_id, kind, payload, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![event_id, kind, payload, now_unix()],
        )?;
        Ok(())
    }

    /// Up to `limit` events due for (re)delivery, oldest first.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn due(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT event_id, kind, payload, created_at, attempts FROM activity_outbox
             WHERE next_attempt_at <= ?1 ORDER BY created_at, rowid LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_unix(), limit], |r| {
            Ok(OutboxEvent {
                event_id: r.get(0)?,
                kind: r.get(1)?,
                payload: r.get(2)?,
                created_at: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a failed attempt; the event is due again after `retry_in_secs`.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn mark_failed(&self, event_id: &str, retry_in_secs: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE activity_outbox SET attempts = attempts + 1, next_attempt_at = ?1 WHERE event_id = ?2",
            params![now_unix().saturating_add(retry_in_secs), event_id],
        )?;
        Ok(())
    }

    /// Removes an event the relay acknowledged; true when it was queued.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn acknowledge(&self, event_id: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM activity_outbox WHERE event_id = ?1",
            params![event_id],
        )? > 0)
    }

    /// Makes every queued event due now, whatever its backoff: called when the relay answers again
    /// after an outage, so queued events go out at once instead of waiting out their delay.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn retry_all_now(&self) -> Result<usize> {
        Ok(self
            .conn
            .execute("UPDATE activity_outbox SET next_attempt_at = 0", [])?)
    }

    /// Number of events waiting for an acknowledgement.
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure.
    pub fn pending_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM activity_outbox", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
