//! Activity events: queued in the SQLCipher outbox, delivered to the relay in batches, removed only
//! once the relay acknowledges them — so none is lost while the relay is down.
//!
//! # Guarantees
//! - An event leaves the outbox only when the relay's [`ActivityAck`] names its id.
//! - A failed delivery backs off per event ([`retry_delay_secs`]: 1 s, 2 s, 4 s … capped at
//!   [`MAX_RETRY_DELAY_SECS`]); when the relay answers again, the caller makes everything due at
//!   once ([`crate::store::Outbox::retry_all_now`]).
//! - Event ids are random (122 bits, UUID v4 form): the relay stores each id once, so a batch sent
//!   twice (acknowledgement lost on the way back) does not duplicate anything.
//! - Events the relay would refuse (id, kind or payload over its limits) are refused at
//!   [`enqueue_activity`], so one bad event cannot block the queue.

use std::collections::HashSet;
use std::future::Future;

use katachi_proto::agent::{ActivityAck, ActivityBatch, ActivityEvent, MAX_EVENTS_PER_BATCH};

use crate::relay_link::calls::{RelayClient, RelayError};
use crate::store::{Outbox, OutboxEvent, Store, StoreError};

/// Longest wait before an event is retried.
pub const MAX_RETRY_DELAY_SECS: i64 = 300;
/// Longest event kind the relay accepts.
pub const MAX_KIND_LEN: usize = 64;
/// Largest payload the relay accepts (bytes of JSON).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;
/// Most batches sent by one [`flush_outbox`] call, bounding how long one flush can take.
const MAX_BATCHES_PER_FLUSH: usize = 50;

/// Why an event could not be queued or the outbox not flushed.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    /// The event kind is empty or longer than [`MAX_KIND_LEN`].
    #[error("activity kind {0:?} must be 1-{MAX_KIND_LEN} characters")]
    InvalidKind(String),
    /// The payload is larger than [`MAX_PAYLOAD_LEN`] once encoded.
    #[error("activity payload is {0} bytes; the relay accepts at most {MAX_PAYLOAD_LEN}")]
    PayloadTooLarge(usize),
    /// The outbox could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The relay did not take the batch; the events stay queued (with backoff when transient).
    #[error(transparent)]
    Relay(#[from] RelayError),
}

/// Where batches go: the relay in the agent, a fake in tests.
pub trait ActivitySink {
    /// Delivers one batch; the ack names the ids the relay now holds.
    fn send_batch(
        &self,
        batch: &ActivityBatch,
    ) -> impl Future<Output = Result<ActivityAck, RelayError>>;
}

impl ActivitySink for RelayClient {
    fn send_batch(
        &self,
        batch: &ActivityBatch,
    ) -> impl Future<Output = Result<ActivityAck, RelayError>> {
        self.send_events(batch)
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Events the relay acknowledged (now removed from the outbox).
    pub delivered: usize,
    /// Events sent but not acknowledged, now waiting for their retry delay.
    pub deferred: usize,
}

/// A fresh event id: 128 random bits in UUID v4 form (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
pub fn new_event_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Queues an event of `kind` with a JSON `payload`; returns its id.
///
/// # Errors
/// [`ActivityError::InvalidKind`], [`ActivityError::PayloadTooLarge`] or [`ActivityError::Store`].
pub fn enqueue_activity(
    outbox: &Outbox<'_>,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<String, ActivityError> {
    if kind.is_empty() || kind.len() > MAX_KIND_LEN {
        return Err(ActivityError::InvalidKind(kind.chars().take(80).collect()));
    }
    let payload = payload.to_string();
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(ActivityError::PayloadTooLarge(payload.len()));
    }
    let id = new_event_id();
    outbox.enqueue(&id, kind, &payload)?;
    Ok(id)
}

/// Seconds to wait before retrying an event that has now failed `failures` times (≥ 1):
/// 1, 2, 4, … capped at [`MAX_RETRY_DELAY_SECS`]. Never less than 1 s, so a flush never resends
/// an event it just failed.
pub fn retry_delay_secs(failures: i64) -> i64 {
    let exponent = u32::try_from(failures.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    2_i64.pow(exponent).clamp(1, MAX_RETRY_DELAY_SECS)
}

/// The wire form of queued events.
pub fn to_batch(events: &[OutboxEvent]) -> ActivityBatch {
    ActivityBatch {
        events: events
            .iter()
            .map(|e| ActivityEvent {
                event_id: e.event_id.clone(),
                kind: e.kind.clone(),
                at: e.created_at,
                payload: e.payload.clone(),
            })
            .collect(),
    }
}

/// Sends every due event in batches of [`MAX_EVENTS_PER_BATCH`] until none is due, the relay
/// fails, or [`MAX_BATCHES_PER_FLUSH`] batches went out.
///
/// Acknowledged events are removed; unacknowledged ones are rescheduled with backoff. When the
/// relay fails, the batch in flight is rescheduled and the error returned: nothing is lost.
///
/// The returned future borrows the store (a SQLite connection) and is not `Send`: run it on a
/// current-thread runtime or a local task.
///
/// # Errors
/// [`ActivityError::Relay`] (after rescheduling the batch) or [`ActivityError::Store`].
pub async fn flush_outbox(
    store: &Store,
    sink: &impl ActivitySink,
) -> Result<FlushReport, ActivityError> {
    let mut report = FlushReport::default();
    let limit = u32::try_from(MAX_EVENTS_PER_BATCH).unwrap_or(100);
    for _ in 0..MAX_BATCHES_PER_FLUSH {
        let due = store.outbox().due(limit)?;
        if due.is_empty() {
            break;
        }
        let ack = match sink.send_batch(&to_batch(&due)).await {
            Ok(ack) => ack,
            Err(e) => {
                if !e.needs_sign_in() {
                    reschedule(&store.outbox(), &due)?;
                }
                return Err(e.into());
            }
        };
        let acknowledged: HashSet<&str> = ack.acknowledged.iter().map(String::as_str).collect();
        let mut unacknowledged = Vec::new();
        for event in &due {
            if acknowledged.contains(event.event_id.as_str()) {
                store.outbox().acknowledge(&event.event_id)?;
                report.delivered += 1;
            } else {
                unacknowledged.push(event.clone());
            }
        }
        reschedule(&store.outbox(), &unacknowledged)?;
        report.deferred += unacknowledged.len();
    }
    Ok(report)
}

/// Records a failed attempt for each event, with its next retry delay.
fn reschedule(outbox: &Outbox<'_>, events: &[OutboxEvent]) -> Result<(), StoreError> {
    for e in events {
        outbox.mark_failed(&e.event_id, retry_delay_secs(e.attempts.saturating_add(1)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::vault::{DerivedKey, Purpose};

    fn store(dir: &std::path::Path) -> Store {
        Store::open(
            &dir.join("s.db"),
            &DerivedKey::from_bytes([3; 32], Purpose::STORE),
        )
        .unwrap()
    }

    /// A relay stand-in: down, or acknowledging (some of) what it gets.
    #[derive(Default)]
    struct FakeRelay {
        down: bool,
        /// Ids never acknowledged.
        refuse: HashSet<String>,
        /// Sizes of the batches received.
        batches: RefCell<Vec<usize>>,
        /// Every id received, in order.
        received: RefCell<Vec<String>>,
    }

    impl ActivitySink for FakeRelay {
        fn send_batch(
            &self,
            batch: &ActivityBatch,
        ) -> impl Future<Output = Result<ActivityAck, RelayError>> {
            self.batches.borrow_mut().push(batch.events.len());
            let result = if self.down {
                Err(RelayError::Unreachable {
                    url: "https://relay.test".into(),
                    reason: "connection refused".into(),
                })
            } else {
                let ids: Vec<String> = batch.events.iter().map(|e| e.event_id.clone()).collect();
                self.received.borrow_mut().extend(ids.iter().cloned());
                Ok(ActivityAck {
                    acknowledged: ids
                        .into_iter()
                        .filter(|id| !self.refuse.contains(id))
                        .collect(),
                })
            };
            std::future::ready(result)
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn queue(s: &Store, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                enqueue_activity(
                    &s.outbox(),
                    "workspace.added",
                    &serde_json::json!({ "i": i }),
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn event_ids_look_like_uuid_v4_and_differ() {
        let a = new_event_id();
        let b = new_event_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<_> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn backoff_doubles_from_one_second_and_is_capped() {
        let delays: Vec<_> = (1..=10).map(retry_delay_secs).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(retry_delay_secs(0), 1);
        assert_eq!(retry_delay_secs(-5), 1);
        assert_eq!(retry_delay_secs(i64::MAX), MAX_RETRY_DELAY_SECS);
    }

    #[test]
    fn everything_due_goes_out_in_batches_of_at_most_100() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let ids = queue(&s, 250);
        let relay = FakeRelay::default();
        let report = block_on(flush_outbox(&s, &relay)).unwrap();
        assert_eq!(
            report,
            FlushReport {
                delivered: 250,
                deferred: 0
            }
        );
        assert_eq!(*relay.batches.borrow(), [100, 100, 50]);
        assert_eq!(*relay.received.borrow(), ids, "oldest first");
        assert_eq!(s.outbox().pending_count().unwrap(), 0);
    }

    #[test]
    fn nothing_is_lost_while_the_relay_is_down() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        queue(&s, 3);
        let down = FakeRelay {
            down: true,
            ..FakeRelay::default()
        };
        let err = block_on(flush_outbox(&s, &down)).unwrap_err();
        assert!(matches!(err, ActivityError::Relay(ref e) if e.is_transient()));
        // Kept, and backing off: not due again right away.
        assert_eq!(s.outbox().pending_count().unwrap(), 3);
        assert!(s.outbox().due(10).unwrap().is_empty());
        // The relay is back: everything due now, delivered once.
        s.outbox().retry_all_now().unwrap();
        let due = s.outbox().due(10).unwrap();
        assert!(due.iter().all(|e| e.attempts == 1));
        let up = FakeRelay::default();
        assert_eq!(block_on(flush_outbox(&s, &up)).unwrap().delivered, 3);
        assert_eq!(s.outbox().pending_count().unwrap(), 0);
    }

    #[test]
    fn unacknowledged_events_stay_and_back_off_without_blocking_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let ids = queue(&s, 3);
        let relay = FakeRelay {
            refuse: HashSet::from([ids[1].clone()]),
            ..FakeRelay::default()
        };
        let report = block_on(flush_outbox(&s, &relay)).unwrap();
        assert_eq!(
            report,
            FlushReport {
                delivered: 2,
                deferred: 1
            }
        );
        // The flush did not spin on the refused event: one batch only.
        assert_eq!(*relay.batches.borrow(), [3]);
        assert_eq!(s.outbox().pending_count().unwrap(), 1);
        s.outbox().retry_all_now().unwrap();
        let left = s.outbox().due(10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].event_id, ids[1]);
        assert_eq!(left[0].attempts, 1);
    }

    #[test]
    fn batches_carry_kind_payload_and_time() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let id = enqueue_activity(
            &s.outbox(),
            "workspace.removed",
            &serde_json::json!({ "path": "/src/app" }),
        )
        .unwrap();
        let batch = to_batch(&s.outbox().due(10).unwrap());
        let e = &batch.events[0];
        assert_eq!(e.event_id, id);
        assert_eq!(e.kind, "workspace.removed");
        assert_eq!(e.payload, r#"{"path":"/src/app"}"#);
        assert!(e.at > 1_700_000_000);
    }

    #[test]
    fn events_the_relay_would_refuse_are_refused_when_queued() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        assert!(matches!(
            enqueue_activity(&s.outbox(), "", &serde_json::json!({})),
            Err(ActivityError::InvalidKind(_))
        ));
        assert!(matches!(
            enqueue_activity(&s.outbox(), &"k".repeat(65), &serde_json::json!({})),
            Err(ActivityError::InvalidKind(_))
        ));
        let big = serde_json::json!({ "x": "y".repeat(MAX_PAYLOAD_LEN) });
        assert!(matches!(
            enqueue_activity(&s.outbox(), "big", &big),
            Err(ActivityError::PayloadTooLarge(_))
        ));
        assert_eq!(s.outbox().pending_count().unwrap(), 0);
    }
}
