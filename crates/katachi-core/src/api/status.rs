//! `GET /v1/status`: what the browser shows about the agent before it opens a workspace, including
//! the sandbox its commands run in.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiResult, ApiState};

/// The agent's version, the API version and how many workspaces it allows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiStatus {
    /// The katachi version of the agent (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The API version; routes are under `/v{api_version}`.
    pub api_version: u32,
    /// How many workspace folders are allowed.
    pub workspaces: usize,
    /// The sandbox commands run in: platform, layers, and whether it is enforced.
    pub sandbox: super::SandboxReport,
}

/// The agent's status.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "agent",
    responses(
        (status = 200, description = "The agent's status", body = ApiStatus),
        (status = 503, description = "`store.unavailable`", body = super::ErrorBody),
    )
)]
pub(crate) async fn get_status(State(state): State<ApiState>) -> ApiResult<Json<ApiStatus>> {
    // the first probe of the kernel's sandbox layers forks: off the async threads
    let (workspaces, sandbox) = state
        .blocking(|s| {
            let sandbox = super::run::sandbox_report(&crate::sandbox::Sandbox::probe());
            Ok((s.allowed()?.len(), sandbox))
        })
        .await?;
    Ok(Json(ApiStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        api_version: 1,
        workspaces,
        sandbox,
    }))
}
