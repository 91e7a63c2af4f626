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
//!   the session hash (`katachi_proto::forwarding::INTERNAL_SESSION_HEADER`, so a sign-out here
//!   ends the request) are taken (`katachi_proto::forwarding::request_from_internal`). The request
//!   goes through this instance's own tunnel only ([`crate::tunnel::deliver_here`]): never on to a
//!   third instance.
//! - Anything else is `404`.

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use katachi_proto::forwarding::{request_from_internal, ForwardError, INTERNAL_ROUTE};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::peer_tls::{fingerprint, server_config};
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
        .route(INTERNAL_ROUTE, any(forwarded))
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
    // The agent's path, the session hash and the headers the agent may see, nothing else
    // (`katachi_proto::forwarding`, fuzzed in `fuzz/`).
    let (session, outgoing) = match request_from_internal(&agent_id, req) {
        Ok(taken) => taken,
        Err(ForwardError::NotThisRoute) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "request.invalid", e.to_string())
                .into_response()
        }
    };
    match crate::tunnel::deliver_here(&state, &agent_id, &session, outgoing).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}
