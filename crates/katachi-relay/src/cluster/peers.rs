//! The calling side of the internal link: one HTTP/2 connection per other instance, opened on first
//! use (mutual TLS 1.3, the callee's certificate pinned by its published fingerprint) and reused
//! until it breaks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use katachi_proto::forwarding::internal_request;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::peer_tls::{client_config, server_name, PeerIdentity};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{InstanceRow, TunnelRoute};

/// For the TCP connect and the TLS and HTTP/2 handshakes to another instance.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 windows of the internal link: wide enough that one download crosses it at tunnel speed.
const STREAM_WINDOW: u32 = 2 << 20;
/// See [`STREAM_WINDOW`].
const CONNECTION_WINDOW: u32 = 8 << 20;
/// Largest DATA frame accepted on the internal link (as on the tunnel).
const MAX_FRAME: u32 = 256 * 1024;

/// Open connections to the other instances, by instance id.
#[derive(Default)]
pub(super) struct PeerLinks {
    /// instance id → its connection.
    links: Mutex<HashMap<String, SendRequest<Body>>>,
}

/// Why another instance could not be reached.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("connecting to {0} timed out")]
    Timeout(String),
    #[error("cannot connect to {0}: {1}")]
    Io(String, std::io::Error),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("HTTP/2 handshake failed: {0}")]
    Http(#[from] hyper::Error),
}

impl PeerLinks {
    /// A connection to `peer`: the open one, or a new one.
    async fn get(
        &self,
        me: &PeerIdentity,
        peer: &InstanceRow,
    ) -> Result<SendRequest<Body>, PeerError> {
        if let Some(open) = self
            .links
            .lock()
            .ok()
            .and_then(|m| m.get(&peer.id).filter(|s| !s.is_closed()).cloned())
        {
            return Ok(open);
        }
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, connect(me, peer))
            .await
            .map_err(|_| PeerError::Timeout(peer.internal_url.clone()))??;
        if let Ok(mut map) = self.links.lock() {
            map.retain(|_, s| !s.is_closed());
            map.insert(peer.id.clone(), sender.clone());
        }
        Ok(sender)
    }
}

/// Opens a connection to `peer`.
async fn connect(me: &PeerIdentity, peer: &InstanceRow) -> Result<SendRequest<Body>, PeerError> {
    let tcp = TcpStream::connect(&peer.internal_url)
        .await
        .map_err(|e| PeerError::Io(peer.internal_url.clone(), e))?;
    let _ = tcp.set_nodelay(true);
    let config = client_config(me, &peer.cert_sha256).map_err(|e| PeerError::Tls(e.to_string()))?;
    let name = server_name().map_err(|e| PeerError::Tls(e.to_string()))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| PeerError::Tls(e.to_string()))?;
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME);
    let (sender, conn) = builder.handshake(TokioIo::new(tls)).await?;
    let peer_id = peer.id.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(peer = %peer_id, error = %e, "internal link ended with an error");
        }
    });
    Ok(sender)
}

/// Sends the browser's request for `agent_id` (already checked: signed in, owner, Origin) to the
/// instance that holds the agent's tunnel, and streams its answer back. `outgoing` carries the
/// path on the agent and the headers the agent may see.
///
/// # Errors
/// `502 agent.unreachable` when the instance cannot be reached or the link breaks before the
/// answer; the callee's own errors (`503 agent.offline`, `429 agent.busy`, …) pass through.
pub(crate) async fn forward_to_peer(
    state: &AppState,
    route: &TunnelRoute,
    agent_id: &str,
    session_hash: &str,
    outgoing: Request<Body>,
) -> Result<Response, ApiError> {
    let unreachable = |why: String| {
        tracing::warn!(agent = %agent_id, peer = %route.instance.id, error = %why, "forwarding to another relay instance failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "agent.unreachable",
            "the connection to the agent broke; try again",
        )
    };
    let Some(node) = state.cluster.node() else {
        return Err(unreachable("this instance has no internal link".to_owned()));
    };
    let sender = node
        .peers
        .get(&node.identity, &route.instance)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let request = internal_request(agent_id, session_hash, outgoing)
        .map_err(|e| unreachable(e.to_string()))?;
    crate::tunnel::relay_exchange(state, agent_id, session_hash, sender, request, None).await
}
