//! Group commit for the hot path of signed agent calls: nonce inserts and heartbeat touches from many
//! concurrent requests are written by one task, many per transaction, instead of one transaction
//! each. Each caller still waits for its own write to commit before it gets an answer, so a nonce is
//! never reported fresh before it is durably recorded.
//!
//! A batch is a few statements whatever its size: one multi-row `INSERT … RETURNING` for its nonces
//! and one multi-row `UPDATE … FROM (VALUES …)` for its touches (per [`ROWS_PER_STATEMENT`] rows),
//! plus one look-up of the agents whose nonce was refused. With a statement per op, the writer's
//! throughput was one op per database round trip, and a relay busy streaming (each round trip
//! waiting its turn on the runtime) fell behind 1,000 heartbeats a second (docs/PERFORMANCE.md,
//! "Load (issue 14)").

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{NonceOutcome, Result, StoreError};

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 512;
/// Most rows in one statement of a batch: a full batch is a few statements, not one per op.
const ROWS_PER_STATEMENT: usize = 64;
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

/// One transaction for the whole batch, in a few statements whatever its size (see the module
/// docs); returns, per op in batch order, the nonce outcome (touches: `Fresh`).
async fn write(
    pool: &AnyPool,
    batch: &[Op],
) -> std::result::Result<Vec<NonceOutcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let outcomes = record_nonces(&mut tx, batch).await?;
    record_touches(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Inserts the batch's nonces, `ROWS_PER_STATEMENT` per statement; the outcome of each op.
async fn record_nonces(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    batch: &[Op],
) -> std::result::Result<Vec<NonceOutcome>, sqlx::Error> {
    // Each distinct (agent, nonce) once; a later op with the same pair is a replay of the first.
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    let mut keys: Vec<(&str, &str, i64)> = Vec::new();
    let mut key_of_op: Vec<Option<(usize, bool)>> = Vec::with_capacity(batch.len());
    for op in batch {
        key_of_op.push(match op {
            Op::Nonce {
                agent_id,
                nonce,
                expires_at,
                ..
            } => Some(match first.entry((agent_id.as_str(), nonce.as_str())) {
                Entry::Occupied(k) => (*k.get(), true),
                Entry::Vacant(v) => {
                    keys.push((agent_id, nonce, *expires_at));
                    (*v.insert(keys.len() - 1), false)
                }
            }),
            Op::Touch { .. } => None,
        });
    }
    let mut inserted: HashSet<(String, String)> = HashSet::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        // Recorded only while the agent exists and is not revoked: revocation is checked here, in
        // the database, for every call, even when the agent's keys are cached.
        let sql = format!(
            "INSERT INTO nonces (agent_id, nonce, expires_at) \
             SELECT v.column1, v.column2, v.column3 FROM (VALUES {}) AS v \
             WHERE EXISTS (SELECT 1 FROM agents WHERE id = v.column1 AND revoked_at = 0) \
             ON CONFLICT DO NOTHING RETURNING agent_id, nonce",
            value_rows(padded(chunk.len()), 3)
        );
        // Only `$n` placeholders are formatted in; the values are bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (agent_id, nonce, expires_at) in padded_rows(chunk) {
            query = query.bind(*agent_id).bind(*nonce).bind(*expires_at);
        }
        for row in query.fetch_all(&mut **tx).await? {
            inserted.insert((row.try_get("agent_id")?, row.try_get("nonce")?));
        }
    }
    // Why the others were not recorded: the agent is gone, revoked, or the nonce was used.
    let refused: Vec<&str> = keys
        .iter()
        .filter(|(a, n, _)| !inserted.contains(&((*a).to_owned(), (*n).to_owned())))
        .map(|(a, _, _)| *a)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let revoked_at = revocation_of(tx, &refused).await?;
    let key_outcome = |k: usize| {
        let (agent_id, nonce, _) = keys[k];
        if inserted.contains(&(agent_id.to_owned(), nonce.to_owned())) {
            return NonceOutcome::Fresh;
        }
        match revoked_at.get(agent_id) {
            None => NonceOutcome::AgentGone,
            Some(0) => NonceOutcome::Replayed,
            Some(_) => NonceOutcome::AgentRevoked,
        }
    };
    Ok(key_of_op
        .into_iter()
        .map(|k| match k {
            None => NonceOutcome::Fresh,
            Some((k, false)) => key_outcome(k),
            // the same nonce earlier in this batch: a replay if that one was recorded
            Some((k, true)) => match key_outcome(k) {
                NonceOutcome::Fresh => NonceOutcome::Replayed,
                other => other,
            },
        })
        .collect())
}

/// `revoked_at` of each of `agents` that exists.
async fn revocation_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    agents: &[&str],
) -> std::result::Result<HashMap<String, i64>, sqlx::Error> {
    let mut found = HashMap::new();
    for chunk in agents.chunks(ROWS_PER_STATEMENT) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, revoked_at FROM agents WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            found.insert(row.try_get("id")?, row.try_get("revoked_at")?);
        }
    }
    Ok(found)
}

/// Marks the batch's agents seen, `ROWS_PER_STATEMENT` per statement; only the last touch of an
/// agent in the batch is written, and a row is written only when something changed.
async fn record_touches(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    batch: &[Op],
) -> std::result::Result<(), sqlx::Error> {
    let mut last: HashMap<&str, (i64, &str, i64)> = HashMap::new();
    for op in batch {
        if let Op::Touch {
            agent_id,
            now,
            version,
            workspaces,
            ..
        } = op
        {
            last.insert(agent_id, (*now, version, *workspaces));
        }
    }
    // the same order in every batch (and on every instance): rows locked in one order
    let mut touches: Vec<(&str, (i64, &str, i64))> = last.into_iter().collect();
    touches.sort_unstable_by_key(|(agent_id, _)| *agent_id);
    for chunk in touches.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE agents SET last_seen_at = v.column2, version = v.column3, workspaces = v.column4 \
             FROM (VALUES {}) AS v WHERE agents.id = v.column1 AND \
             (agents.last_seen_at <> v.column2 OR agents.version <> v.column3 OR agents.workspaces <> v.column4)",
            value_rows(padded(chunk.len()), 4)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (agent_id, (now, version, workspaces)) in padded_rows(chunk) {
            query = query
                .bind(*agent_id)
                .bind(*now)
                .bind(*version)
                .bind(*workspaces);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `rows` is rounded up to a power of two, so that a handful of statement texts (prepared once
/// per connection) serve every batch size.
fn padded(rows: usize) -> usize {
    rows.next_power_of_two()
}

/// `chunk`, then its last row again up to [`padded`] rows: a repeated nonce is skipped by
/// `ON CONFLICT DO NOTHING` and a repeated touch writes the same values.
fn padded_rows<T>(chunk: &[T]) -> impl Iterator<Item = &T> {
    let extra = padded(chunk.len()) - chunk.len();
    chunk
        .iter()
        .chain(chunk.last().into_iter().cycle().take(extra))
}

/// `($1, $2, $3), ($4, $5, $6), …`: `rows` rows of `columns` placeholders.
fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
