//! The store as a turn uses it: one connection, used off the async threads.

use std::sync::{Arc, Mutex, PoisonError};

use super::Failure;
use crate::store::{AuditEntry, AuditKey, Store, StoreError};

/// How the chat service opens its connection.
type Opener = dyn Fn() -> Result<Store, StoreError> + Send + Sync;

/// The store of the chat service: one SQLCipher connection shared by its turns (each use is a
/// short statement), opened at first use and again after a failed open, and the audit chain's
/// key for the egress ledger. Cheap to clone.
#[derive(Clone)]
pub struct ChatStore {
    /// The connection once open (rusqlite connections are not `Sync`).
    store: Arc<Mutex<Option<Store>>>,
    /// Opens it.
    open: Arc<Opener>,
    /// Seals egress records into the audit chain.
    audit_key: Arc<AuditKey>,
}

impl std::fmt::Debug for ChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStore").finish_non_exhaustive()
    }
}

impl ChatStore {
    /// Over the store `open` opens (at first use), appending egress records with `audit_key`.
    pub fn new(
        open: impl Fn() -> Result<Store, StoreError> + Send + Sync + 'static,
        audit_key: AuditKey,
    ) -> Self {
        Self {
            store: Arc::new(Mutex::new(None)),
            open: Arc::new(open),
            audit_key: Arc::new(audit_key),
        }
    }

    /// Runs `work` on the connection, opening it first if needed (blocking).
    fn with_store<T>(
        store: &Mutex<Option<Store>>,
        open: &Opener,
        work: impl FnOnce(&Store) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut slot = store.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(open().map_err(|e| e.to_string())?);
        }
        match slot.as_ref() {
            Some(store) => work(store),
            None => Err("the store is not open".to_owned()),
        }
    }

    /// Runs `work` on the store on the blocking pool.
    ///
    /// # Errors
    /// [`Failure`] `store.unavailable` when the work fails (the cause is logged, not sent).
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
    {
        let (store, open) = (Arc::clone(&self.store), Arc::clone(&self.open));
        let joined = tokio::task::spawn_blocking(move || {
            Self::with_store(&store, open.as_ref(), |s| {
                work(s).map_err(|e| e.to_string())
            })
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "chat: store operation failed");
                Err(Failure::store())
            }
            Err(e) => {
                tracing::error!(error = %e, "chat: store task failed");
                Err(Failure::store())
            }
        }
    }

    /// Appends an egress record (what was sent to a provider) to the audit chain.
    ///
    /// # Errors
    /// [`Failure`] `audit.unavailable` when the chain cannot be appended to.
    pub async fn record_egress(&self, entry: AuditEntry) -> Result<(), Failure> {
        let (store, open) = (Arc::clone(&self.store), Arc::clone(&self.open));
        let key = Arc::clone(&self.audit_key);
        let joined = tokio::task::spawn_blocking(move || {
            Self::with_store(&store, open.as_ref(), |s| {
                s.audit(&key)
                    .append(&entry)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        })
        .await;
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "chat: cannot record egress in the audit log");
                Err(Failure::audit())
            }
            Err(e) => {
                tracing::error!(error = %e, "chat: audit task failed");
                Err(Failure::audit())
            }
        }
    }

    /// Queues an activity event for the relay (`ai.session_started`, `ai.tool_run`,
    /// `ai.approval_decided`); a failure is logged, never fatal: the turn goes on.
    pub async fn record_activity(&self, kind: &'static str, payload: serde_json::Value) {
        let queued = self
            .run(move |s| crate::activity::enqueue_activity(&s.outbox(), kind, &payload))
            .await;
        if queued.is_err() {
            tracing::warn!(kind, "chat: an activity event could not be queued");
        }
    }
}
