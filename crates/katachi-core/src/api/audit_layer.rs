//! The audit layer: every call that arrives through the tunnel is written to the store's audit
//! chain — who (the user and browser session the relay named), what (a stable operation name such
//! as `file.read`), which workspace and paths, the result, and the bytes that left the machine.
//!
//! Put it on the router the tunnel serves (`router(state).layer(AuditLayer::start(home))`): it is
//! applied after routing, so the operation name comes from the matched route.
//!
//! # Guarantees
//! - One record per call, written when the call is over: its response body ended, failed, or was
//!   dropped early (a download cut mid-way records the bytes handed to the connection by then), or
//!   the call was cancelled before any response (`request.cancelled`).
//! - Bytes out are the response body bytes passed to the connection, counted in the body itself;
//!   bytes in are the request body bytes the handler read.
//! - Fail closed: while the log cannot be written (its sealed head was tampered with, the store
//!   cannot be opened, an append fails) every call is refused with `503 audit.unavailable` before
//!   it runs; nothing is served unrecorded knowingly. The start-up check runs before the first call
//!   is admitted. Refused calls are not recorded (the log is what cannot be written); their only
//!   output is the error body.
//! - Never dropped: each call reserves a slot in the writer's bounded queue before it runs; when the
//!   queue is full, new calls wait for room (back-pressure). The record goes into that slot from
//!   the body's `Drop`, which never blocks.
//! - The request path never touches SQLite: a dedicated thread owns its own connection and appends
//!   records in batches, one transaction each (see `writer`).
//!
//! # What it does not do
//! - A call admitted while the log was writable, whose record then fails to append, has already
//!   run: the records of the calls in flight when the log breaks are kept in memory and retried,
//!   and lost if the agent stops before the log can be written again (logged as an error).
//! - Records still queued when the process exits abruptly are lost (each batch is atomic, so the
//!   chain itself stays intact).
//! - Bytes counted for a cut download can exceed what the client received by what the HTTP/2
//!   connection had buffered: the ledger errs on the side of more bytes out, never fewer.
//! - Caller headers are trusted as the relay sent them: only the relay can send requests down the
//!   tunnel, and it forwards none of the browser's own headers of these names.
//!
//! # Layout
//! - `call`: reading who / what / where from the request ([`CallDetail`] is the stored detail).
//! - `body`: the counting bodies and the pending call that records itself exactly once.
//! - `writer`: the writer thread, its batches, retries and [`AuditHealth`].

mod body;
mod call;
mod writer;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, watch};
use tower::{Layer, Service};

pub(crate) use call::AuditNote;
pub use call::{AiCaller, CallDetail};
pub use writer::{AuditHealth, AuditOptions};

use self::body::PendingCall;
use self::call::CallInfo;
use self::writer::{FinishedCall, Writer};
use super::{ApiError, ErrorCode, WorkspaceSource};
use crate::store::{AuditKey, Store, StoreError};
use crate::AgentHome;

/// A tower layer recording every call in the audit chain; clones share one writer.
#[derive(Clone)]
pub struct AuditLayer {
    /// Shared by every service the layer makes.
    shared: Arc<Shared>,
}

/// The writer's queue and health, shared by the services.
struct Shared {
    /// Slots in the writer's queue.
    queue: mpsc::Sender<FinishedCall>,
    /// The writer's health.
    health: watch::Receiver<AuditHealth>,
    /// Records appended so far.
    written: watch::Receiver<u64>,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("health", &*self.shared.health.borrow())
            .finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// Starts the writer on the agent's own store and returns the layer. Never fails: a store
    /// that cannot be opened or a log that cannot be appended to makes the layer refuse calls
    /// (see [`Self::health`]) until it can.
    pub fn start(home: Arc<AgentHome>) -> Self {
        let key = AuditKey::derive(home.machine_key());
        Self::start_with(move || home.store(), key, None, AuditOptions::default())
    }

    /// Starts the writer with an explicit way to open its store connection, the chain's key, and
    /// where to look up workspace paths (`None`: the writer's store), for tests and embedders.
    pub fn start_with(
        open_store: impl FnMut() -> Result<Store, StoreError> + Send + 'static,
        key: AuditKey,
        workspaces: Option<Arc<dyn WorkspaceSource>>,
        options: AuditOptions,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(options.queue.max(1));
        let (health_tx, health) = watch::channel(AuditHealth::Starting);
        let (written_tx, written) = watch::channel(0);
        let writer = Writer {
            open: Box::new(open_store),
            key,
            workspaces,
            options,
            health: health_tx,
            written: written_tx,
        };
        let spawned = std::thread::Builder::new()
            .name("katachi-audit".to_owned())
            .spawn(move || writer.run(receiver));
        if let Err(e) = spawned {
            // the writer and its channel ends are dropped with the closure: every call is refused
            tracing::error!(error = %e, "audit: cannot start the writer thread");
        }
        Self {
            shared: Arc::new(Shared {
                queue,
                health,
                written,
            }),
        }
    }

    /// The writer's health now.
    pub fn health(&self) -> AuditHealth {
        self.shared.health.borrow().clone()
    }

    /// Waits until the writer has checked the log at start, and returns its health then.
    pub async fn ready(&self) -> AuditHealth {
        let mut health = self.shared.health.clone();
        let checked = health
            .wait_for(|h| *h != AuditHealth::Starting)
            .await
            .map(|h| h.clone());
        checked.unwrap_or_else(|_| writer_gone())
    }

    /// Waits until at least `n` records have been appended since the layer started (tests, and a
    /// clean shutdown). Returns the count then, or early with the count so far if the writer stopped.
    pub async fn written_at_least(&self, n: u64) -> u64 {
        let mut written = self.shared.written.clone();
        let reached = written.wait_for(|w| *w >= n).await.map(|w| *w);
        reached.unwrap_or_else(|_| *self.shared.written.borrow())
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`AuditLayer`] around one route.
#[derive(Clone)]
pub struct AuditService<S> {
    /// The route.
    inner: S,
    /// The writer's queue and health.
    shared: Arc<Shared>,
}

impl<S> Service<Request> for AuditService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // the clone that was polled ready serves this call (tower's usual swap)
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let permit = match shared.admit().await {
                Ok(permit) => permit,
                Err(refused) => return Ok(refused.into_response()),
            };
            let pending = PendingCall::new(permit, CallInfo::of(&req));
            let req = req.map(|b| pending.count_request(b));
            // dropping this future before a response drops `pending`: recorded as cancelled
            let response = inner.call(req).await?;
            Ok(pending.attach(response))
        })
    }
}

impl Shared {
    /// A reserved slot for the call's record, once the log is known writable; waits for room.
    async fn admit(&self) -> Result<mpsc::OwnedPermit<FinishedCall>, ApiError> {
        let mut health = self.health.clone();
        let state = health
            .wait_for(|h| *h != AuditHealth::Starting)
            .await
            .map(|h| h.clone())
            .unwrap_or_else(|_| writer_gone());
        if let AuditHealth::Broken { code, .. } = state {
            return Err(refusal(&code));
        }
        // waits while the queue is full: back-pressure, never a dropped record
        self.queue
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| refusal("audit.writer_stopped"))
    }
}

/// The health reported when the writer thread is gone.
fn writer_gone() -> AuditHealth {
    AuditHealth::Broken {
        code: "audit.writer_stopped".to_owned(),
        message: "the audit writer stopped".to_owned(),
    }
}

/// `503 audit.unavailable` naming why.
fn refusal(code: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AuditUnavailable,
        format!(
            "the audit log cannot be written ({code}), so this agent refuses calls through the tunnel; run `katachi audit verify` on the agent's machine"
        ),
    )
}

#[cfg(test)]
#[path = "audit_layer/audit_layer_tests.rs"]
mod tests;
