//! Group commit for the hot path of signed agent calls: nonce inserts and heartbeat touches from many
//! concurrent requests are written by one task, many per transaction, instead of one transaction
//! each. Each caller still waits for its own write to commit before it gets an answer, so a nonce is
//! never reported fresh before it is durably recorded.

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{NonceOutcome, Result, StoreError};

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 512;
/// Queue length before callers wait for room (back-pressure).
const QUEUE: usize = 4096;

/// A write waiting for the next batch.
pub(crate) enum Op {
    /// Record a nonce; replies whether it was new.
    Nonce {
        agent_id: String,
        nonce: String,
        expires_at: i64,
        reply: oneshot::Sender<Result<NonceOutcome>>,
    },
    /// Mark an agent seen.
    Touch {
        agent_id: String,
        now: i64,
        version: String,
        workspaces: i64,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Handle to the batch writer task.
#[derive(Clone, Debug)]
pub(crate) struct Batcher {
    /// Where operations are queued.
    tx: mpsc::Sender<Op>,
}

impl Batcher {
    /// Starts the writer task on the current runtime.
    pub(crate) fn spawn(pool: AnyPool, write_lock: Option<Arc<Mutex<()>>>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, write_lock, rx));
        Self { tx }
    }

    /// Queues `op`; fails only when the writer is gone (relay shutting down).
    pub(crate) async fn submit(&self, op: Op) -> Result<()> {
        self.tx
            .send(op)
            .await
            .map_err(|_| StoreError::Query(sqlx::Error::PoolClosed))
    }
}

async fn run(pool: AnyPool, write_lock: Option<Arc<Mutex<()>>>, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // SQLite: queue behind other in-process writers instead of hitting SQLITE_BUSY.
        let guard = match &write_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let written = write(&pool, &batch).await;
        drop(guard);
        match written {
            Ok(results) => {
                for (op, outcome) in batch.drain(..).zip(results) {
                    match op {
                        Op::Nonce { reply, .. } => {
                            let _ = reply.send(Ok(outcome));
                        }
                        Op::Touch { reply, .. } => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, size = batch.len(), "batched write failed");
                let text = e.to_string();
                // An unreachable database stays recognisable (`503`, not `500`) for every caller.
                let unavailable = super::means_unavailable(&e);
                for op in batch.drain(..) {
                    let err = || {
                        if unavailable {
                            StoreError::Unavailable(text.clone())
                        } else {
                            StoreError::Query(sqlx::Error::Protocol(text.clone()))
                        }
                    };
                    match op {
                        Op::Nonce { reply, .. } => {
                            let _ = reply.send(Err(err()));
                        }
                        Op::Touch { reply, .. } => {
                            let _ = reply.send(Err(err()));
                        }
                    }
                }
            }
        }
    }
}

/// One transaction for the whole batch; returns, per op, the nonce outcome (touches: `Fresh`).
async fn write(
    pool: &AnyPool,
    batch: &[Op],
) -> std::result::Result<Vec<NonceOutcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for (i, op) in batch.iter().enumerate() {
        match op {
            Op::Nonce {
                agent_id,
                nonce,
                expires_at,
                ..
            } => {
                // Recorded only while the agent exists and is not revoked: revocation is checked
                // here, in the database, for every call, even when the agent's keys are cached.
                let done = sqlx::query(
                    "INSERT INTO nonces (agent_id, nonce, expires_at)
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM agents WHERE id = $1 AND revoked_at = 0)
                     ON CONFLICT DO NOTHING",
                )
                .bind(agent_id)
                .bind(nonce)
                .bind(*expires_at)
                .execute(&mut *tx)
                .await?;
                let outcome = if done.rows_affected() == 1 {
                    NonceOutcome::Fresh
                } else {
                    let row = sqlx::query("SELECT revoked_at FROM agents WHERE id = $1")
                        .bind(agent_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    match row
                        .map(|r| sqlx::Row::try_get::<i64, _>(&r, "revoked_at"))
                        .transpose()?
                    {
                        None => NonceOutcome::AgentGone,
                        Some(0) => NonceOutcome::Replayed,
                        Some(_) => NonceOutcome::AgentRevoked,
                    }
                };
                results.push(outcome);
            }
            Op::Touch {
                agent_id,
                now,
                version,
                workspaces,
                ..
            } => {
                // Only the last touch of an agent in this batch needs writing.
                let superseded = batch[i + 1..]
                    .iter()
                    .any(|later| matches!(later, Op::Touch { agent_id: a, .. } if a == agent_id));
                if !superseded {
                    sqlx::query(
                        "UPDATE agents SET last_seen_at = $1, version = $2, workspaces = $3
                         WHERE id = $4 AND (last_seen_at <> $1 OR version <> $2 OR workspaces <> $3)",
                    )
                    .bind(*now)
                    .bind(version)
                    .bind(*workspaces)
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await?;
                }
                results.push(NonceOutcome::Fresh);
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}
