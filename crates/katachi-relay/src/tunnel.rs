//! Agent tunnels: the upgrade route agents dial, the registry of open tunnels, and the browser
//! route forwarded through them.
//!
//! # Protocol
//! An agent sends a signed `GET /api/agent/tunnel` (HTTP/1.1, `Upgrade: katachi-tunnel/1`). Once
//! [`verify_signed_request`] passes, the relay answers `101` and becomes the HTTP/2 *client* over
//! the upgraded stream; the agent serves its API there. The `SendRequest` handle is kept in the
//! [`TunnelRegistry`] under the agent id until the connection ends; a reconnect replaces it.
//!
//! `ANY /agents/{id}/api/{*rest}` (signed-in browser) is forwarded to `/{rest}?query` on the
//! agent, bodies streamed both ways.
//!
//! # Security
//! - Only a request that passes every signed-call check (token, HMAC, window, nonce, revocation)
//!   opens a tunnel, and only for the agent it proves to be.
//! - The browser route answers 404 for an agent that is not the user's (or revoked), exactly as for
//!   an unknown id, so ids of other users' agents are not confirmed.
//! - Only a fixed list of request headers is forwarded: never the session cookie.
//! - Anything but `GET`/`HEAD` needs an `Origin` equal to the relay's own (no cross-site writes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use katachi_proto::agent::{
    FORWARDED_SESSION_HEADER, FORWARDED_USER_HEADER, FORWARDED_USER_ID_HEADER, TUNNEL_PROTOCOL,
};

use crate::agent_api::verify_signed_request;
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::session::CurrentUser;

/// HTTP/2 PING interval on a tunnel, so a vanished agent is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a PING may go unanswered before the tunnel is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request headers passed from the browser to the agent API; everything else (cookies above all)
/// stays at the relay.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 9] = [
    header::ACCEPT,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::RANGE,
    header::IF_RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// One open tunnel.
struct Entry {
    /// Distinguishes this connection from a later one of the same agent.
    generation: u64,
    /// Sends requests to the agent.
    sender: SendRequest<Body>,
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
    /// Registers `sender` as the agent's tunnel, replacing an older one; its generation.
    fn insert(&self, agent_id: &str, sender: SendRequest<Body>) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.tunnels.lock() {
            map.insert(agent_id.to_owned(), Entry { generation, sender });
        }
        generation
    }

    /// Removes the agent's tunnel if it is still the one of `generation` (a newer one stays).
    fn remove(&self, agent_id: &str, generation: u64) {
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
    fn sender(&self, agent_id: &str) -> Option<SendRequest<Body>> {
        let map = self.tunnels.lock().ok()?;
        map.get(agent_id)
            .filter(|e| !e.sender.is_closed())
            .map(|e| e.sender.clone())
    }

    /// True when the agent has an open tunnel.
    pub fn is_online(&self, agent_id: &str) -> bool {
        self.sender(agent_id).is_some()
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

/// `GET /api/agent/tunnel`: checks the signed upgrade request, answers `101`, and runs the HTTP/2
/// client side of the tunnel in a task.
///
/// # Errors
/// `426 tunnel.upgrade_required` without the upgrade headers, `400 tunnel.not_upgradable` on a
/// connection that cannot be upgraded (HTTP/2), or the signed-call error.
pub async fn open(State(state): State<AppState>, mut req: Request) -> Result<Response, ApiError> {
    let wants_tunnel = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(TUNNEL_PROTOCOL));
    if !wants_tunnel {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "tunnel.upgrade_required",
            format!("send Connection: Upgrade and Upgrade: {TUNNEL_PROTOCOL}"),
        ));
    }
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "tunnel.not_upgradable",
            "this connection cannot be upgraded; open the tunnel over HTTP/1.1",
        ));
    };
    let agent = verify_signed_request(&state, req).await?;
    let agent_id = agent.id().to_owned();
    let task_state = state.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(agent = %agent_id, error = %e, "tunnel upgrade failed");
                return;
            }
        };
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let (sender, conn) = match builder.handshake(upgraded).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(agent = %agent_id, error = %e, "tunnel HTTP/2 handshake failed");
                return;
            }
        };
        let generation = task_state.tunnels.insert(&agent_id, sender);
        tracing::info!(agent = %agent_id, "tunnel open");
        if let Err(e) = conn.await {
            tracing::debug!(agent = %agent_id, error = %e, "tunnel ended with an error");
        }
        task_state.tunnels.remove(&agent_id, generation);
        tracing::info!(agent = %agent_id, "tunnel closed");
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, TUNNEL_PROTOCOL)
        .body(Body::empty())
        .map_err(ApiError::internal)
}

/// The headers naming the caller to the agent: user id, readable name, and a one-way tag of the
/// browser session (see `katachi_proto::agent::FORWARDED_SESSION_HEADER`).
fn caller_headers(user: &CurrentUser) -> Vec<(&'static str, HeaderValue)> {
    let mut headers = Vec::with_capacity(3);
    if let Ok(id) = HeaderValue::from_str(&user.user.id) {
        headers.push((FORWARDED_USER_ID_HEADER, id));
    }
    if let Some(email) = &user.user.email {
        let encoded = percent_encoding::utf8_percent_encode(email, percent_encoding::CONTROLS)
            .to_string()
            .replace(' ', "%20");
        if let Ok(name) = HeaderValue::from_str(&encoded) {
            headers.push((FORWARDED_USER_HEADER, name));
        }
    }
    let tag = crate::sha256_hex(&format!("katachi-audit-session\n{}", user.session_hash));
    if let Ok(tag) = HeaderValue::from_str(&tag[..16]) {
        headers.push((FORWARDED_SESSION_HEADER, tag));
    }
    headers
}

/// `ANY /agents/{id}/api/{*rest}`: the signed-in user's request, forwarded to their agent.
///
/// # Errors
/// `401 session.required`, `403 request.cross_origin` (a write without our `Origin`),
/// `404 agent.not_found` (unknown, revoked, or another user's agent),
/// `503 agent.offline` (no tunnel), `502 agent.unreachable` (the tunnel broke mid-request).
pub async fn forward(
    State(state): State<AppState>,
    user: Option<CurrentUser>,
    Path((agent_id, _rest)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(user) = user else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session.required",
            "sign in first",
        ));
    };
    // Writes must come from our own pages: a present, matching Origin (browsers always send it on
    // PUT/POST/DELETE). This stops cross-site requests riding on the session cookie.
    if !matches!(req.method(), &Method::GET | &Method::HEAD) {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if origin != Some(state.public_origin().as_str()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "request.cross_origin",
                "changes to an agent must come from this site's pages (Origin header)",
            ));
        }
    }
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "agent.not_found", "no such agent");
    let owned = state
        .store
        .agents_of(&user.user.id)
        .await?
        .iter()
        .any(|a| a.id == agent_id && a.revoked_at == 0);
    if !owned {
        return Err(not_found());
    }
    // The raw (still percent-encoded) rest of the path: decoding it here would change its meaning.
    let prefix = format!("/agents/{agent_id}/api");
    let rest = req
        .uri()
        .path()
        .strip_prefix(&prefix)
        .filter(|r| r.starts_with('/'))
        .ok_or_else(not_found)?;
    let target = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let Some(mut sender) = state.tunnels.sender(&agent_id) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent.offline",
            "the agent is not connected; start it and try again",
        ));
    };
    let (parts, body) = req.into_parts();
    let mut outgoing = Request::builder().method(parts.method).uri(target);
    for name in FORWARDED_REQUEST_HEADERS {
        for value in parts.headers.get_all(&name) {
            outgoing = outgoing.header(&name, value);
        }
    }
    // Who is calling, for the agent's audit log. Only the relay sets these: the allowlist above
    // never copies a browser's own `x-katachi-*` headers.
    for (name, value) in caller_headers(&user) {
        outgoing = outgoing.header(name, value);
    }
    let outgoing = outgoing.body(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.invalid",
            format!("cannot forward this request: {e}"),
        )
    })?;
    let unreachable = |e: hyper::Error| {
        tracing::debug!(agent = %agent_id, error = %e, "forwarding through the tunnel failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "agent.unreachable",
            "the connection to the agent broke; try again",
        )
    };
    sender.ready().await.map_err(unreachable)?;
    let response = sender.send_request(outgoing).await.map_err(unreachable)?;
    let (mut parts, incoming) = response.into_parts();
    // Hop-by-hop and connection-level headers do not cross the relay.
    parts.headers.remove(header::CONNECTION);
    parts
        .headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    Ok(Response::from_parts(parts, Body::new(incoming)).into_response())
}
