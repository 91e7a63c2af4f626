//! Agent tunnels: the upgrade route agents dial, the registry of open tunnels, and the browser
//! route forwarded through them.
//!
//! # Protocol
//! An agent sends a signed `GET /api/agent/tunnel` (HTTP/1.1, `Upgrade: katachi-tunnel/1`, or a
//! WebSocket upgrade where a hop passes only those: `tunnel_carrier.rs`). Once
//! [`verify_signed_request`] passes, the relay answers `101` and becomes the HTTP/2 *client* over
//! the upgraded stream; the agent serves its API there. The `SendRequest` handle is kept in the
//! [`TunnelRegistry`] under the agent id until the connection ends; a reconnect replaces it.
//!
//! `ANY /agents/{id}/api/{*rest}` (signed-in browser) is forwarded to `/{rest}?query` on the
//! agent, bodies streamed both ways.
//!
//! # Limits and liveness
//! - At most `tunnel_max_in_flight` forwarded requests per tunnel (default 64, the agent's HTTP/2
//!   stream limit) from headers to the end of the response body; one more is answered
//!   `429 agent.busy` with `Retry-After` at once, so one busy agent cannot pile up relay memory.
//! - An agent that has not sent response headers within `tunnel_response_timeout` (default 30 s)
//!   gets the request cancelled (HTTP/2 `RST_STREAM`) and the browser a `504 agent.timeout`.
//!   Streaming bodies are not cut after that: their back-pressure is the flow control of both hops.
//! - HTTP/2 PINGs every 20 s (also while idle) drop a tunnel whose agent vanished within 30 s; an
//!   open tunnel counts as "online" on the agents page ([`TunnelRegistry::mark_online`]).
//! - [`TunnelRegistry::close`] ends an agent's tunnel at once (revocation); its redial is then
//!   refused `agent.revoked` by the signed-request checks.
//!
//! # Layout
//! - this file: the upgrade route and the browser route;
//! - `tunnel_carrier.rs`: the direct upgrade or the WebSocket carrier under the tunnel's HTTP/2;
//! - `tunnel_registry.rs`: [`TunnelRegistry`] (open tunnels, in-flight permits, close, online);
//! - `tunnel_severable.rs`: the stream wrapper that lets the registry cut a tunnel at once;
//! - `tunnel_streams.rs`: [`LiveStreams`], the requests in flight that sign-out and revocation end
//!   (on every instance, through a recheck of the shared database every 2 s);
//! - `tunnel_response.rs`: what of an agent's answer reaches the browser, and the relay's own
//!   headers on the forwarded route.
//!
//! # Security
//! - Only a request that passes every signed-call check (token, HMAC, window, nonce, revocation)
//!   opens a tunnel, and only for the agent it proves to be.
//! - The browser route answers 404 for an agent that is not the user's (or revoked), exactly as for
//!   an unknown id, so ids of other users' agents are not confirmed.
//! - Only a fixed list of request headers is forwarded: never the session cookie.
//! - Anything but `GET`/`HEAD` needs an `Origin` equal to the relay's own (no cross-site writes).
//! - Signing out ends the session's requests in flight, revoking an agent ends its requests and its
//!   tunnel: at once on the instance that did it, within 2 s on the others.
//! - Every agent answer is hostile: only an allowlist of response headers and the API's own content
//!   types reach the browser (anything else is a download), a redirect is refused `502
//!   agent.invalid_response`, and every answer on the route, the relay's own errors included, carries
//!   `Content-Security-Policy: default-src 'none'; sandbox`, `nosniff` and `no-store`, replacing the
//!   agent's (`tunnel_response.rs`). A phished or compromised agent cannot run script, set a cookie
//!   or redirect on the relay's origin.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use katachi_proto::agent::{
    FORWARDED_SESSION_HEADER, FORWARDED_USER_HEADER, FORWARDED_USER_ID_HEADER,
};
use katachi_proto::forwarding::{browser_request, ForwardError};
use tokio::sync::oneshot;

#[path = "tunnel_carrier.rs"]
mod carrier;
#[path = "tunnel_registry.rs"]
mod registry;
#[path = "tunnel_response.rs"]
mod response_screen;
#[path = "tunnel_severable.rs"]
mod severable;
#[path = "tunnel_streams.rs"]
mod streams;

use self::carrier::Carrier;
use self::registry::Route;
pub use self::registry::TunnelRegistry;
use self::response_screen::screen_agent_head;
pub(crate) use self::response_screen::set_relay_headers;
use self::severable::Severable;
pub(crate) use self::streams::watch_revocations;
use self::streams::EndableBody;
pub use self::streams::{LiveStreams, RECHECK_INTERVAL};
use crate::agent_api::verify_signed_request;
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::session::CurrentUser;

/// HTTP/2 PING interval on a tunnel, so a vanished agent is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a PING may go unanswered before the tunnel is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP/2 DATA frame the relay accepts from an agent (`SETTINGS_MAX_FRAME_SIZE`; the
/// default is 16 KiB). A download then crosses the relay in the agent's read chunks (256 KiB), not
/// in 16 KiB frames: 16× fewer frames to parse and wake-ups of the browser's connection task
/// (docs/PERFORMANCE.md, "Tunnel"). Memory: an agent can already make the relay hold its flow-control
/// windows (2 MiB per stream, 5 MiB per tunnel); one frame in the read buffer is within that.
const TUNNEL_MAX_FRAME_SIZE: u32 = 256 * 1024;

/// Seconds a browser is told to wait after `429 agent.busy`.
const BUSY_RETRY_AFTER_SECS: u32 = 1;

/// `GET /api/agent/tunnel`: checks the signed upgrade request, answers `101`, and runs the HTTP/2
/// client side of the tunnel in a task.
///
/// # Errors
/// `426 tunnel.upgrade_required` without the upgrade headers, `400 tunnel.websocket_invalid` for a
/// WebSocket upgrade the tunnel cannot use, `400 tunnel.not_upgradable` on a connection that
/// cannot be upgraded (HTTP/2), or the signed-call error.
pub async fn open(State(state): State<AppState>, mut req: Request) -> Result<Response, ApiError> {
    let carrier = Carrier::requested(req.headers())?;
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "tunnel.not_upgradable",
            "this connection cannot be upgraded; open the tunnel over HTTP/1.1",
        ));
    };
    let agent = verify_signed_request(&state, req).await?;
    let switching = carrier.switching_protocols()?;
    let carrier_name = carrier.name();
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
        let (close, cut) = oneshot::channel();
        let upgraded = Severable::new(carrier.carry(upgraded).await, cut);
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .max_frame_size(TUNNEL_MAX_FRAME_SIZE);
        let (sender, conn) = match builder.handshake(upgraded).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(agent = %agent_id, error = %e, "tunnel HTTP/2 handshake failed");
                return;
            }
        };
        let generation = task_state.tunnels.insert(
            &agent_id,
            sender,
            task_state.config.tunnel_max_in_flight,
            close,
        );
        tracing::info!(agent = %agent_id, carrier = carrier_name, "tunnel open");
        // The route points here; an instance that still holds an older tunnel of the agent closes it.
        task_state
            .cluster
            .tunnel_opened(&task_state, &agent_id, generation)
            .await;
        let _counted = task_state.metrics.tunnel_opened(carrier_name);
        // Ends when the agent goes, the PINGs go unanswered, or the registry cuts the stream.
        if let Err(e) = conn.await {
            tracing::debug!(agent = %agent_id, error = %e, "tunnel ended with an error");
        }
        task_state.tunnels.remove(&agent_id, generation);
        task_state
            .cluster
            .tunnel_closed(&task_state, &agent_id, generation)
            .await;
        tracing::info!(agent = %agent_id, "tunnel closed");
    });
    Ok(switching)
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
/// `503 agent.offline` (no tunnel), `410 request.ended` (signed out or revoked before the agent
/// answered), `429 agent.busy` (too many requests in flight on the tunnel,
/// with `Retry-After`), `504 agent.timeout` (no response headers in time), `502 agent.unreachable`
/// (the tunnel broke mid-request).
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
    // The raw (still percent-encoded) rest of the path, the allowlisted headers and who is calling
    // (`katachi_proto::forwarding`, fuzzed in `fuzz/`).
    let outgoing = browser_request(&agent_id, req, caller_headers(&user)).map_err(|e| match e {
        ForwardError::NotThisRoute => not_found(),
        e => ApiError::new(StatusCode::BAD_REQUEST, "request.invalid", e.to_string()),
    })?;
    deliver(&state, &agent_id, &user.session_hash, outgoing).await
}

/// `503 agent.offline`.
fn offline() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "agent.offline",
        "the agent is not connected; start it and try again",
    )
}

/// Sends a checked browser request to the agent through the instance that holds its tunnel: this
/// one, or another one over the internal link (`crate::cluster`).
async fn deliver(
    state: &AppState,
    agent_id: &str,
    session_hash: &str,
    outgoing: Request,
) -> Result<Response, ApiError> {
    // one lookup: a tunnel that drops in between is asked of the cluster, never answered offline
    if let Some(route) = state.tunnels.route(agent_id) {
        return through_tunnel(state, agent_id, session_hash, route, outgoing).await;
    }
    match state.cluster.remote_route(state, agent_id).await? {
        Some(route) => {
            let answer =
                crate::cluster::forward_to_peer(state, &route, agent_id, session_hash, outgoing)
                    .await;
            // an unreachable instance, or one without the tunnel now: read the route anew next time
            let moved = match &answer {
                Ok(r) => r.status() == StatusCode::SERVICE_UNAVAILABLE,
                Err(_) => true,
            };
            if moved {
                state.cluster.forget_route(agent_id);
            }
            answer
        }
        None => Err(offline()),
    }
}

/// Sends a checked request through this instance's tunnel of the agent (never to another
/// instance: the internal listener calls this, so a request crosses at most one internal hop).
///
/// # Errors
/// `503 agent.offline` without a tunnel here, `429 agent.busy`, and [`relay_exchange`]'s.
pub(crate) async fn deliver_here(
    state: &AppState,
    agent_id: &str,
    session_hash: &str,
    outgoing: Request,
) -> Result<Response, ApiError> {
    let route = state.tunnels.route(agent_id).ok_or_else(offline)?;
    through_tunnel(state, agent_id, session_hash, route, outgoing).await
}

/// [`relay_exchange`] on the agent's tunnel `route`, within its in-flight limit. The tunnel's
/// bytes are counted here, where they cross the tunnel: a request forwarded from another instance
/// counts once, at the instance holding the tunnel.
async fn through_tunnel(
    state: &AppState,
    agent_id: &str,
    session_hash: &str,
    Route { sender, in_flight }: Route,
    outgoing: Request,
) -> Result<Response, ApiError> {
    // Held until the response body ends (or the request fails): one slot per request in flight.
    let Ok(permit) = in_flight.try_acquire_owned() else {
        state
            .metrics
            .rate_limited(crate::metrics::Limiter::TunnelBusy);
        return Ok(busy());
    };
    let outgoing = outgoing.map(|body| Body::new(state.metrics.count_to_agent(body)));
    let answer = relay_exchange(
        state,
        agent_id,
        session_hash,
        sender,
        outgoing,
        Some(permit),
    )
    .await?;
    Ok(answer.map(|body| Body::new(state.metrics.count_from_agent(body))))
}

/// Sends `outgoing` on `sender` (an agent's tunnel, or the internal link to the instance holding
/// it) and hands back the screened answer with its body streaming. The request is registered in
/// [`LiveStreams`] until its body ends, so a sign-out or a revocation ends it; `keep` (the tunnel's
/// in-flight permit) is held as long.
///
/// # Errors
/// `410 request.ended` (signed out or revoked before the answer), `504 agent.timeout` (no response
/// headers in time), `502 agent.unreachable` (the connection broke),
/// `502 agent.invalid_response` (an answer the relay does not pass on).
pub(crate) async fn relay_exchange(
    state: &AppState,
    agent_id: &str,
    session_hash: &str,
    mut sender: hyper::client::conn::http2::SendRequest<Body>,
    outgoing: Request,
    keep: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Response, ApiError> {
    // Registered until the body ends: a sign-out or a revocation cancels it.
    let live = state.streams.register(agent_id, session_hash);
    let unreachable = |e: hyper::Error| {
        tracing::debug!(agent = %agent_id, error = %e, "forwarding through the tunnel failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "agent.unreachable",
            "the connection to the agent broke; try again",
        )
    };
    let ended = live.cancelled();
    let exchange = async {
        tokio::select! {
            answer = async {
                sender.ready().await.map_err(unreachable)?;
                sender.send_request(outgoing).await.map_err(unreachable)
            } => answer,
            // Signed out or revoked before the agent answered: the request is dropped (reset).
            () = ended => Err(ApiError::new(
                StatusCode::GONE,
                "request.ended",
                "the request was ended: the session signed out or the agent was revoked",
            )),
        }
    };
    // Dropping the exchange on timeout resets the stream, so the agent stops working on it.
    let response = tokio::time::timeout(state.config.tunnel_response_timeout, exchange)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "agent.timeout",
                "the agent did not answer in time; try again",
            )
        })??;
    let (parts, incoming) = response.into_parts();
    // The agent's answer is hostile: only its status, allowlisted headers and an API content type
    // cross (tunnel_response.rs); the relay's own CSP is set by the route's layer.
    let headers = screen_agent_head(parts.status, &parts.headers).map_err(|e| {
        tracing::warn!(agent = %agent_id, error = %e, "agent answer refused");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "agent.invalid_response",
            e.to_string(),
        )
    })?;
    // The body owns the permit and the registration: the slot frees and the request deregisters
    // when the body is finished or dropped; a sign-out or revocation ends it with an error.
    let body = EndableBody::new(incoming, live, keep);
    let mut answer = Response::new(Body::new(body));
    *answer.status_mut() = parts.status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

/// `429 agent.busy` with `Retry-After`.
fn busy() -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "agent.busy",
        "the agent is handling too many requests; try again in a moment",
    )
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(BUSY_RETRY_AFTER_SECS),
    );
    response
}
