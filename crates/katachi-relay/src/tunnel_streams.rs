//! [`LiveStreams`]: the forwarded requests in flight on this relay instance, by agent and by browser
//! session, so that signing out or revoking an agent ends them at once — and on every instance.
//!
//! # Contract
//! - Every forwarded request is registered from the moment it is sent to the agent until its
//!   response body ends ([`LiveStreams::register`] hands out a guard that deregisters on drop).
//! - [`LiveStreams::end_session`] / [`LiveStreams::end_agent`] cancel the matching requests now: a
//!   request still waiting for headers fails `agent.unreachable`, a streaming body ends with an error
//!   (never a clean end, so a cut download is not taken for a complete one), and the HTTP/2 stream to
//!   the agent is reset so the agent stops the work behind it (a run, a search).
//! - Another instance signs out or revokes in the shared database only: [`watch_revocations`]
//!   rechecks the database every [`RECHECK_INTERVAL`] for the sessions of this instance's live
//!   requests and for agents revoked lately, and ends what is no longer allowed. A sign-out or a
//!   revocation on one instance therefore ends the requests on every instance within that interval.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::state::AppState;

/// How often the database is rechecked for sign-outs and revocations made on other instances.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How far back revocations are looked at: more than the interval, so clock differences between
/// instances (revocation times come from the instance that revoked) do not hide one.
const REVOKED_LOOKBACK_SECS: i64 = 120;

/// One request in flight.
struct Entry {
    /// The agent it goes to.
    agent_id: String,
    /// Hash of the browser session that sent it.
    session_hash: String,
    /// Cancelled to end it.
    cancel: CancellationToken,
}

/// The forwarded requests in flight on this instance (cheap to clone: one shared registry).
#[derive(Default, Clone)]
pub struct LiveStreams {
    /// The registry.
    shared: Arc<Shared>,
}

/// The registry behind [`LiveStreams`].
#[derive(Default)]
struct Shared {
    /// Request id → entry.
    entries: Mutex<HashMap<u64, Entry>>,
    /// Source of request ids.
    next_id: AtomicU64,
}

/// Keeps a request registered while it lives; deregisters it when dropped.
pub(crate) struct StreamGuard {
    /// Where it is registered.
    shared: Arc<Shared>,
    /// Its id.
    id: u64,
    /// Its cancellation.
    cancel: CancellationToken,
}

impl LiveStreams {
    /// Registers a request of `session_hash` to `agent_id`.
    pub(crate) fn register(&self, agent_id: &str, session_hash: &str) -> StreamGuard {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        if let Ok(mut map) = self.shared.entries.lock() {
            map.insert(
                id,
                Entry {
                    agent_id: agent_id.to_owned(),
                    session_hash: session_hash.to_owned(),
                    cancel: cancel.clone(),
                },
            );
        }
        StreamGuard {
            shared: self.shared.clone(),
            id,
            cancel,
        }
    }

    /// Ends every request of the browser session `session_hash` (signed out); returns how many.
    pub fn end_session(&self, session_hash: &str) -> usize {
        self.end_where(|e| e.session_hash == session_hash)
    }

    /// Ends every request to `agent_id` (revoked); returns how many.
    pub fn end_agent(&self, agent_id: &str) -> usize {
        self.end_where(|e| e.agent_id == agent_id)
    }

    /// Requests in flight now.
    pub fn len(&self) -> usize {
        self.shared.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no request is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn end_where(&self, matches: impl Fn(&Entry) -> bool) -> usize {
        let Ok(map) = self.shared.entries.lock() else {
            return 0;
        };
        let mut ended = 0;
        for entry in map.values().filter(|e| matches(e)) {
            entry.cancel.cancel();
            ended += 1;
        }
        ended
    }

    /// The distinct browser sessions with a request in flight.
    fn sessions(&self) -> Vec<String> {
        let Ok(map) = self.shared.entries.lock() else {
            return Vec::new();
        };
        let set: HashSet<&String> = map.values().map(|e| &e.session_hash).collect();
        set.into_iter().cloned().collect()
    }
}

impl std::fmt::Debug for LiveStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStreams")
            .field("in_flight", &self.len())
            .finish_non_exhaustive()
    }
}

impl StreamGuard {
    /// Completes when the request is ended by a sign-out or a revocation.
    pub(crate) fn cancelled(&self) -> WaitForCancellationFutureOwned {
        self.cancel.clone().cancelled_owned()
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.shared.entries.lock() {
            map.remove(&self.id);
        }
    }
}

/// The error a cut body ends with (the browser sees the stream reset, not a clean end).
#[derive(Debug, thiserror::Error)]
#[error("the request was ended: the session signed out or the agent was revoked")]
pub(crate) struct StreamEnded;

/// A forwarded response body that ends with [`StreamEnded`] as soon as its request is cancelled,
/// and holds its registration and `keep` (the in-flight permit) until it is finished or dropped.
pub(crate) struct EndableBody<B, K> {
    /// The agent's body.
    inner: Pin<Box<B>>,
    /// Resolves on cancellation.
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Set once the cancellation was reported.
    ended: bool,
    /// Held for the body's life: the request stays registered.
    _guard: StreamGuard,
    /// Held for the body's life.
    _keep: K,
}

impl<B, K> EndableBody<B, K> {
    /// Wraps `inner`, ending it when `guard` is cancelled.
    pub(crate) fn new(inner: B, guard: StreamGuard, keep: K) -> Self {
        Self {
            inner: Box::pin(inner),
            cancelled: Box::pin(guard.cancelled()),
            ended: false,
            _guard: guard,
            _keep: keep,
        }
    }
}

impl<B, K> Body for EndableBody<B, K>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    K: Unpin,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.cancelled.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(Box::new(StreamEnded))));
        }
        self.inner.as_mut().poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Ends, every [`RECHECK_INTERVAL`], this instance's requests whose session is gone (signed out on
/// any instance, or expired) and the tunnels and requests of agents revoked on any instance.
/// Runs until the relay stops; a database error is logged and retried at the next tick.
pub(crate) async fn watch_revocations(state: AppState) {
    let mut tick = tokio::time::interval(RECHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = crate::now_unix();
        match state
            .store
            .agents_revoked_since(now - REVOKED_LOOKBACK_SECS)
            .await
        {
            Ok(revoked) => {
                for agent_id in revoked {
                    if state.tunnels.close(&agent_id) {
                        tracing::info!(agent = %agent_id, "tunnel of an agent revoked elsewhere closed");
                    }
                    state.agent_cache.evict_agent(&agent_id);
                    state.streams.end_agent(&agent_id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "checking for revoked agents failed"),
        }
        let sessions = state.streams.sessions();
        if sessions.is_empty() {
            continue;
        }
        match state.store.live_sessions(&sessions, now).await {
            Ok(live) => {
                for gone in sessions.iter().filter(|s| !live.contains(*s)) {
                    let ended = state.streams.end_session(gone);
                    tracing::info!(ended, "requests of a signed-out session ended");
                }
            }
            Err(e) => tracing::warn!(error = %e, "checking the sessions of live requests failed"),
        }
    }
}
