//! The metrics listener (`--metrics-listen`, default `127.0.0.1:9464`, `off` for none): plain HTTP
//! serving `GET /metrics` (Prometheus text format), `/healthz` and `/readyz`; everything else 404.
//!
//! # Security
//! `/metrics` lives here only, never on the public listener (which answers it `404`): the figures
//! (agents connected, refusals by reason) are for the operator's monitoring. The listener is plain
//! HTTP and unauthenticated, so it binds loopback by default; the configuration refuses the public
//! listener's address (`config.rs`), and a non-loopback address is logged as a warning at start.

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Binds the metrics listener.
///
/// # Errors
/// The address cannot be bound (in use, not local), naming the flag.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for metrics on {addr} (--metrics-listen: another address, or `off`)")
    })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the metrics listener is not on loopback: anyone who reaches it reads /metrics (firewall it)"
        );
    }
    Ok(listener)
}

/// The metrics listener's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
}

/// Serves [`router`] on `listener` in a task (aborted by the relay when it stops).
pub fn spawn(listener: TcpListener, state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    })
}

/// `GET /metrics`.
async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => {
            let mut response = text.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}
