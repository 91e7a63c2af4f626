//! Errors as the relay answers them: JSON `{"error":{"code","message"}}` for API calls with a stable
//! code each; internal failures are logged and answered with a generic message (never a secret).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use katachi_proto::agent::{ApiError as WireError, ApiErrorBody};

/// An API error with its HTTP status and stable code.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// An internal failure: logged here, generic to the caller.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; try again later",
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    /// `503 relay.database_unavailable` while the database cannot be reached (the request can be
    /// retried as it is); `500 internal` for any other store failure.
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "the database is unavailable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "relay.database_unavailable",
                "the relay's database is unavailable; try again shortly",
            );
        }
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ApiErrorBody {
            error: WireError {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}
