//! [`TunnelRegistry`]: the relay's open agent tunnels, by agent id, each with its in-flight
//! permits and the handle that cuts it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use hyper::client::conn::http2::SendRequest;
use tokio::sync::{oneshot, Semaphore};

use crate::web::agents::AgentView;

/// One open tunnel.
struct Entry {
    /// Distinguishes this connection from a later one of the same agent.
    generation: u64,
    /// Sends requests to the agent.
    sender: SendRequest<Body>,
    /// Permits for forwarded requests in flight on this tunnel.
    in_flight: Arc<Semaphore>,
    /// Dropping it (revocation, or a newer tunnel) cuts the tunnel's stream.
    _close: oneshot::Sender<()>,
}

/// What forwarding needs of a tunnel.
pub(super) struct Route {
    /// Sends requests to the agent.
    pub(super) sender: SendRequest<Body>,
    /// Permits for forwarded requests in flight.
    pub(super) in_flight: Arc<Semaphore>,
}

/// The open tunnels, by agent id (in memory: a relay restart makes agents reconnect).
#[derive(Default)]
pub struct TunnelRegistry {
    /// agent id → its current tunnel.
    tunnels: Mutex<HashMap<String, Entry>>,
    /// Source of generations.
    next_generation: AtomicU64,
}

impl TunnelRegistry {
    /// Registers `sender` as the agent's tunnel, allowing `max_in_flight` forwarded requests at
    /// once, with `close` cutting its stream when dropped; an older tunnel of the agent is cut (the
    /// agent only redials once it lost it). Returns the generation.
    pub(super) fn insert(
        &self,
        agent_id: &str,
        sender: SendRequest<Body>,
        max_in_flight: usize,
        close: oneshot::Sender<()>,
    ) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.tunnels.lock() {
            map.insert(
                agent_id.to_owned(),
                Entry {
                    generation,
                    sender,
                    in_flight: Arc::new(Semaphore::new(max_in_flight)),
                    _close: close,
                },
            );
        }
        generation
    }

    /// Ends the agent's open tunnel at once (in-flight requests fail); true when there was one.
    /// Called when the agent is revoked, so its access ends with the click, not with the next
    /// request.
    pub fn close(&self, agent_id: &str) -> bool {
        let removed = self
            .tunnels
            .lock()
            .ok()
            .and_then(|mut map| map.remove(agent_id));
        // Dropping the entry drops its close handle: the stream under the connection is cut.
        removed.is_some()
    }

    /// Ends every open tunnel (the relay is stopping); returns how many there were.
    pub fn close_all(&self) -> usize {
        let drained: Vec<Entry> = self
            .tunnels
            .lock()
            .map(|mut map| map.drain().map(|(_, e)| e).collect())
            .unwrap_or_default();
        drained.len()
    }

    /// Shows an agent with an open tunnel as online even between heartbeats (the tunnel's HTTP/2
    /// PINGs prove it is alive); a revoked agent stays revoked.
    pub fn mark_online(&self, mut view: AgentView) -> AgentView {
        if view.status != "revoked" && self.is_online(&view.id) {
            view.status = "online".to_owned();
        }
        view
    }

    /// Removes the agent's tunnel if it is still the one of `generation` (a newer one stays).
    pub(super) fn remove(&self, agent_id: &str, generation: u64) {
        if let Ok(mut map) = self.tunnels.lock() {
            if map
                .get(agent_id)
                .is_some_and(|e| e.generation == generation)
            {
                map.remove(agent_id);
            }
        }
    }

    /// A handle on the agent's open tunnel, if any.
    pub(super) fn route(&self, agent_id: &str) -> Option<Route> {
        let map = self.tunnels.lock().ok()?;
        map.get(agent_id)
            .filter(|e| !e.sender.is_closed())
            .map(|e| Route {
                sender: e.sender.clone(),
                in_flight: e.in_flight.clone(),
            })
    }

    /// True when the agent has an open tunnel.
    pub fn is_online(&self, agent_id: &str) -> bool {
        self.route(agent_id).is_some()
    }
}

impl std::fmt::Debug for TunnelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.tunnels.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("TunnelRegistry")
            .field("open", &open)
            .finish_non_exhaustive()
    }
}
