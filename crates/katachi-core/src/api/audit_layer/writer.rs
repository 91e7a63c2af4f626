//! The audit writer: one thread that owns its own store connection (SQLite connections are not
//! shared between threads) and appends finished calls to the chain, many per transaction.
//!
//! Calls reach it over a bounded queue. It takes one, then whatever else is already queued (up to a
//! batch), and appends them all in one transaction, so a busy agent pays one disk sync per batch,
//! not per call, and the request path never touches SQLite.
//!
//! It publishes its [`AuditHealth`]: `Ready` once the chain's sealed head verifies, `Broken` when
//! the store cannot be opened or an append fails (the layer then refuses calls). A failed batch is
//! kept and retried; while broken and idle it looks again now and then, so a store that comes back
//! lets calls in again, while a tampered log stays refused until it is looked into.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};

use super::call::CallInfo;
use crate::api::WorkspaceSource;
use crate::store::{Actor, AuditEntry, AuditError, AuditKey, Store, StoreError, Workspace};

/// How often a failed batch is retried, and a broken log looked at again.
const DEFAULT_RETRY_EVERY: Duration = Duration::from_secs(2);

/// Attempts at the last batch once every sender is gone (the agent is stopping).
const ATTEMPTS_AFTER_CLOSE: u32 = 3;

/// A call that is over, to be appended.
#[derive(Debug)]
pub(crate) struct FinishedCall {
    /// What the call was (status and bytes in filled in).
    pub(crate) call: CallInfo,
    /// `ok`, or the error code / how it ended.
    pub(crate) result: String,
    /// Response body bytes passed to the connection.
    pub(crate) bytes_out: u64,
}

/// Whether calls can be recorded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditHealth {
    /// The writer has not checked the log yet; calls wait for it.
    Starting,
    /// The sealed head verifies and appends go through.
    Ready,
    /// The log cannot be written; calls through the tunnel are refused.
    Broken {
        /// The stable code of the failure (`audit.head_tampered`, `store.error`, …).
        code: String,
        /// What is wrong, for people.
        message: String,
    },
}

impl AuditHealth {
    fn broken(e: &AuditError) -> Self {
        AuditHealth::Broken {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

/// Sizes and timing of the audit writer.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Calls admitted but not yet appended, at most; more calls wait for room (never dropped).
    pub queue: usize,
    /// Most records appended in one transaction.
    pub max_batch: usize,
    /// How often a failed batch is retried, and a broken log looked at again.
    pub retry_every: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            queue: 1024,
            max_batch: 256,
            retry_every: DEFAULT_RETRY_EVERY,
        }
    }
}

/// Opens the writer's own store connection (called again after a database failure).
pub(crate) type OpenStore = Box<dyn FnMut() -> Result<Store, StoreError> + Send>;

/// The writer thread's state.
pub(crate) struct Writer {
    /// Opens the store.
    pub(crate) open: OpenStore,
    /// The chain's key.
    pub(crate) key: AuditKey,
    /// Where workspace paths are looked up; `None`: the writer's own store.
    pub(crate) workspaces: Option<Arc<dyn WorkspaceSource>>,
    /// Sizes and timing.
    pub(crate) options: AuditOptions,
    /// Published health.
    pub(crate) health: watch::Sender<AuditHealth>,
    /// Records appended since start, published (tests and shutdown wait on it).
    pub(crate) written: watch::Sender<u64>,
}

impl Writer {
    /// Runs until every sender is gone and the queue is appended (or given up on).
    pub(crate) fn run(mut self, mut queue: mpsc::Receiver<FinishedCall>) {
        let mut store = None;
        self.probe(&mut store);
        let mut pending: Vec<FinishedCall> = Vec::new();
        let mut attempts_after_close = 0;
        loop {
            if pending.is_empty() {
                let broken = matches!(*self.health.borrow(), AuditHealth::Broken { .. });
                if broken {
                    match queue.try_recv() {
                        Ok(call) => pending.push(call),
                        Err(TryRecvError::Disconnected) => return,
                        Err(TryRecvError::Empty) => {
                            std::thread::sleep(self.options.retry_every);
                            self.probe(&mut store);
                            continue;
                        }
                    }
                } else {
                    match queue.blocking_recv() {
                        Some(call) => pending.push(call),
                        None => return,
                    }
                }
            }
            while pending.len() < self.options.max_batch.max(1) {
                match queue.try_recv() {
                    Ok(call) => pending.push(call),
                    Err(_) => break,
                }
            }
            match self.append(&mut store, &pending) {
                Ok(()) => {
                    let n = pending.len() as u64;
                    pending.clear();
                    self.written.send_modify(|w| *w += n);
                    self.set_health(AuditHealth::Ready);
                }
                Err(e) => {
                    self.set_health(AuditHealth::broken(&e));
                    if queue.is_closed() && queue.is_empty() {
                        attempts_after_close += 1;
                        if attempts_after_close >= ATTEMPTS_AFTER_CLOSE {
                            tracing::error!(records = pending.len(), error = %e, "audit: giving up on the last calls at shutdown");
                            return;
                        }
                    }
                    std::thread::sleep(self.options.retry_every);
                }
            }
        }
    }

    /// Opens the store if needed and checks that the chain can be appended to.
    fn probe(&mut self, store: &mut Option<Store>) {
        let checked =
            connected(&mut self.open, store).and_then(|s| s.audit(&self.key).check_appendable());
        match checked {
            Ok(()) => self.set_health(AuditHealth::Ready),
            Err(e) => {
                forget_broken_connection(&e, store);
                self.set_health(AuditHealth::broken(&e));
            }
        }
    }

    /// Appends `calls` in one transaction.
    fn append(
        &mut self,
        store: &mut Option<Store>,
        calls: &[FinishedCall],
    ) -> Result<(), AuditError> {
        let result = connected(&mut self.open, store).and_then(|s| {
            let allowed = allowed_workspaces(s, self.workspaces.as_deref(), calls);
            let entries: Vec<AuditEntry> = calls.iter().map(|c| entry_of(c, &allowed)).collect();
            s.audit(&self.key).append_all(&entries).map(|_| ())
        });
        if let Err(e) = &result {
            forget_broken_connection(e, store);
        }
        result
    }

    fn set_health(&self, new: AuditHealth) {
        self.health.send_if_modified(|h| {
            if *h == new {
                return false;
            }
            match &new {
                AuditHealth::Broken { code, message } => tracing::error!(
                    %code, %message,
                    "audit: the log cannot be written; calls through the tunnel are refused until it can"
                ),
                AuditHealth::Ready if *h != AuditHealth::Starting => {
                    tracing::info!("audit: the log can be written again");
                }
                _ => {}
            }
            *h = new;
            true
        });
    }
}

/// The open store, opening it when there is none.
fn connected<'s>(
    open: &mut OpenStore,
    store: &'s mut Option<Store>,
) -> Result<&'s Store, AuditError> {
    let open_store = match store.take() {
        Some(open_store) => open_store,
        None => open()?,
    };
    Ok(store.insert(open_store))
}

/// Drops the connection after a database failure, so the next attempt reopens it (a tampered log
/// keeps its connection: reopening does not help).
fn forget_broken_connection(e: &AuditError, store: &mut Option<Store>) {
    if matches!(e, AuditError::Store(_)) {
        *store = None;
    }
}

/// The allowed workspaces, read once per batch and only when a call names one.
fn allowed_workspaces(
    store: &Store,
    source: Option<&dyn WorkspaceSource>,
    calls: &[FinishedCall],
) -> Vec<Workspace> {
    if calls.iter().all(|c| c.call.workspace_id.is_none()) {
        return Vec::new();
    }
    let listed = match source {
        Some(source) => source.allowed_workspaces(),
        None => store.workspaces().list(),
    };
    listed.unwrap_or_else(|e| {
        // the record then keeps the id asked for instead of the path
        tracing::warn!(error = %e, "audit: cannot read the allowed workspaces");
        Vec::new()
    })
}

/// The record of a finished call.
fn entry_of(done: &FinishedCall, allowed: &[Workspace]) -> AuditEntry {
    let call = &done.call;
    let mut detail = call.detail.clone();
    let (user, session) = (call.user_id.clone(), call.session.clone());
    let actor = if call.by_ai {
        Actor::Ai { user, session }
    } else {
        Actor::Browser { user, session }
    };
    let mut entry = AuditEntry::new(actor, call.operation.clone())
        .with_paths(call.paths.iter().cloned())
        .with_result(done.result.clone())
        .with_bytes_out(done.bytes_out);
    if let Some(id) = call.workspace_id {
        match allowed.iter().find(|w| w.id == id) {
            Some(ws) => entry = entry.in_workspace(ws),
            None => detail.workspace_asked = Some(id),
        }
    }
    entry.with_detail(detail.to_json())
}
