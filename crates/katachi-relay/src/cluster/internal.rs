//! The internal listener: where the other relay instances send browser requests for agents whose
//! tunnel this instance holds.
//!
//! # Contract
//! - Mutual TLS 1.3 only (`peer_tls.rs`). Right after the handshake, the client certificate's
//!   fingerprint must be that of an alive instance in `relay_instances`; otherwise the connection is
//!   closed before a request is read.
//! - One route, `ANY /internal/v1/agents/{agent_id}/{path…}`: the caller has already checked the
//!   browser's session, ownership and `Origin`. Only the browser headers the tunnel forwards, the
//!   caller headers the relay sets (`x-katachi-user-id`, `x-katachi-user`, `x-katachi-session`) and
//!   the session hash ([`super::INTERNAL_SESSION_HEADER`], so a sign-out here ends the request) are
//!   taken. The request goes through this instance's own tunnel only
//!   ([`crate::tunnel::deliver_here`]): never on to a third instance.
//! - Anything else is `404`.

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use katachi_proto::agent::{
    FORWARDED_SESSION_HEADER, FORWARDED_USER_HEADER, FORWARDED_USER_ID_HEADER,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::peer_tls::{fingerprint, server_config};
use super::{INTERNAL_PREFIX, INTERNAL_SESSION_HEADER};
use crate::error::ApiError;
use crate::state::AppState;

/// For a caller to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the internal listener until `stop` is cancelled (a no-op without `--internal-listen`).
pub(crate) async fn serve_internal(state: AppState, stop: CancellationToken) {
    let Some(node) = state.cluster.node() else {
        return;
    };
    let Some(listener) = node.listener.lock().ok().and_then(|mut l| l.take()) else {
        return;
    };
    let config = match server_config(&node.identity) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "the internal listener's TLS set-up failed; not serving it");
            return;
        }
    };
    let acceptor = TlsAcceptor::from(config);
    let app = Router::new()
        .route("/internal/v1/agents/{agent_id}/{*rest}", any(forwarded))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state.clone());
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "internal accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "internal TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let print = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(fingerprint);
            let known = match print {
                Some(p) => state.store.instance_by_cert(&p, crate::now_unix()).await,
                None => Ok(None),
            };
            match known {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(%peer, "internal connection from an unknown certificate refused");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "cannot check an internal caller; refused");
                    return;
                }
            }
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .initial_stream_window_size(2 << 20)
                .initial_connection_window_size(8 << 20)
                .max_frame_size(256 * 1024);
            let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
            tokio::pin!(conn);
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "internal connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

/// `ANY /internal/v1/agents/{agent_id}/{path…}`: a request another instance checked, sent on
/// through this instance's tunnel of the agent.
async fn forwarded(
    State(state): State<AppState>,
    Path((agent_id, _rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    let prefix = format!("{INTERNAL_PREFIX}{agent_id}");
    let Some(rest) = req
        .uri()
        .path()
        .strip_prefix(&prefix)
        .filter(|r| r.starts_with('/'))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let target = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let Some(session) = req
        .headers()
        .get(INTERNAL_SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
    else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.invalid",
            "an internal request names no browser session",
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    let mut outgoing = Request::builder().method(parts.method).uri(target);
    let caller = [
        FORWARDED_USER_ID_HEADER,
        FORWARDED_USER_HEADER,
        FORWARDED_SESSION_HEADER,
    ]
    .map(HeaderName::from_static);
    for name in crate::tunnel::FORWARDED_REQUEST_HEADERS
        .iter()
        .chain(&caller)
    {
        for value in parts.headers.get_all(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let outgoing = match outgoing.body(body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "request.invalid",
                format!("cannot forward this request: {e}"),
            )
            .into_response()
        }
    };
    match crate::tunnel::deliver_here(&state, &agent_id, &session, outgoing).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}
