//! `/healthz` and `/readyz`, on the public listener and on the metrics listener.
//!
//! - `GET /healthz`: the process serves requests. Always `200 {"status":"ok"}`; it touches nothing
//!   else, so a supervisor restarts only a relay that stopped answering.
//! - `GET /readyz`: this instance should get traffic: the database answers a trivial query within
//!   [`READY_DB_TIMEOUT`] and the instance is not draining. `200 {"status":"ready"}`, or `503` with
//!   the relay's JSON error `{"error":{"code":"relay.not_ready","message":"…"}}` whose message names
//!   what is wrong (the database's own error goes to the log only: it may name hosts).
//!
//! [`Draining`] is the flag a graceful shutdown sets first, so load balancers stop sending new
//! requests while the ones in flight finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::ApiError;
use crate::state::AppState;

/// How long the database has to answer `/readyz`'s query.
pub const READY_DB_TIMEOUT: Duration = Duration::from_secs(1);

/// Set once this instance begins shutting down; `/readyz` answers `503` from then on.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    /// Marks the instance as draining (never undone: a drained instance exits).
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`Draining::start`] was called.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// `GET /healthz`.
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response()
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match check_ready(&state).await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Why this instance should not get traffic, if it should not.
///
/// # Errors
/// `503 relay.not_ready` naming the cause: draining, or a database that fails or does not answer
/// within [`READY_DB_TIMEOUT`].
pub async fn check_ready(state: &AppState) -> Result<(), ApiError> {
    let not_ready = |message: &str| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "relay.not_ready",
            message.to_owned(),
        )
    };
    if state.draining.is_draining() {
        return Err(not_ready(
            "draining: this instance is shutting down; send new requests to another instance",
        ));
    }
    match tokio::time::timeout(READY_DB_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database query failed");
            Err(not_ready(
                "database: the query failed (the relay's log says why)",
            ))
        }
        Err(_) => {
            tracing::warn!("readiness: the database did not answer within 1 s");
            Err(not_ready("database: no answer within 1 s"))
        }
    }
}
