//! The store as a turn uses it: one connection, used off the async threads.

use std::sync::{Arc, Mutex, PoisonError};

use super::Failure;
use crate::store::{AuditEntry, AuditKey, Store};

/// The store of the chat service: one SQLCipher connection shared by its turns (each use is a
/// short statement), and the audit chain's key for the egress ledger. Cheap to clone.
#[derive(Clone)]
pub struct ChatStore {
    /// The connection (rusqlite connections are not `Sync`).
    store: Arc<Mutex<Store>>,
    /// Seals egress records into the audit chain.
    audit_key: Arc<AuditKey>,
}

impl std::fmt::Debug for ChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStore").finish_non_exhaustive()
    }
}

impl ChatStore {
    /// Over an open store, appending egress records with `audit_key`.
    pub fn new(store: Store, audit_key: AuditKey) -> Self {
        Self {
            store: Arc::new(Mutex::new(store)),
            audit_key: Arc::new(audit_key),
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
        let store = Arc::clone(&self.store);
        let joined = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(PoisonError::into_inner);
            work(&store)
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
        let store = Arc::clone(&self.store);
        let key = Arc::clone(&self.audit_key);
        let joined = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(PoisonError::into_inner);
            store.audit(&key).append(&entry).map(|_| ())
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
}
