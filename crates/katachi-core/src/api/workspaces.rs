//! `GET /v1/workspaces`: the allowed workspace folders, the only places the API reads or writes.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiResult, ApiState};

/// An allowed workspace as the browser sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceInfo {
    /// The id used in `/v1/workspaces/{id}/…`.
    pub id: i64,
    /// The folder's canonical absolute path on the agent's machine.
    pub path: String,
    /// The folder's name (last component), for display.
    pub name: String,
}

/// The allowed workspaces, sorted by path.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceList {
    /// The workspaces.
    pub workspaces: Vec<WorkspaceInfo>,
}

/// Lists the allowed workspaces.
#[utoipa::path(
    get,
    path = "/v1/workspaces",
    tag = "workspaces",
    responses(
        (status = 200, description = "The allowed workspaces", body = WorkspaceList),
        (status = 503, description = "`store.unavailable`", body = super::ErrorBody),
    )
)]
pub(crate) async fn list_workspaces(
    State(state): State<ApiState>,
) -> ApiResult<Json<WorkspaceList>> {
    let list = state.blocking(|s| s.allowed()).await?;
    let workspaces = list
        .into_iter()
        .map(|w| WorkspaceInfo {
            name: std::path::Path::new(&w.path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(&w.path)
                .to_owned(),
            id: w.id,
            path: w.path,
        })
        .collect();
    Ok(Json(WorkspaceList { workspaces }))
}
