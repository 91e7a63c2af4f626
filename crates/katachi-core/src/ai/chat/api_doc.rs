//! The chat routes in the agent API's OpenAPI document (`docs/openapi.json`).
//!
//! The handlers in [`super::routes`] take raw bodies (so a bad one is answered with the API's
//! error shape, not axum's), so their descriptions live here, one per route, with the request
//! types of `routes` as schemas. `api::openapi`'s test keeps the checked-in document current, and
//! `every_chat_route_is_described` below keeps this list in step with the router.

#![allow(dead_code)] // the functions exist for their `#[utoipa::path]` descriptions only

use super::memory_routes::NoteBody;
use super::routes::{Answer, NewSession, PageQuery, Rename, TurnRequest};
use crate::api::ErrorBody;

#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/chat/sessions",
    tag = "chat",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "`{\"sessions\":[{\"id\",\"title\",\"created_at\",\"running\"}]}`, latest first (at most 500)", body = serde_json::Value),
        (status = 404, description = "`workspace.not_found`", body = ErrorBody),
        (status = 503, description = "`store.unavailable`", body = ErrorBody),
    )
)]
pub(crate) fn list_sessions() {}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{id}/chat/sessions",
    tag = "chat",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body(content = NewSession, content_type = "application/json", description = "Optional: an empty body starts \"New chat\""),
    responses(
        (status = 201, description = "The new session `{\"id\",\"title\",\"created_at\",\"running\"}`; an `ai.session_started` activity event goes to the relay", body = serde_json::Value),
        (status = 400, description = "`request.invalid`: bad JSON, a title over 200 characters or with control characters", body = ErrorBody),
        (status = 404, description = "`workspace.not_found`", body = ErrorBody),
        (status = 503, description = "`store.unavailable`", body = ErrorBody),
    )
)]
pub(crate) fn create_session() {}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/chat/model",
    tag = "chat",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "`{\"configured\":true,\"provider\",\"model\",\"context_tokens\"}`, or `{\"configured\":false,\"code\",\"message\"}` saying how to choose one (`katachi ai use`, the tray's Settings) or store its key", body = serde_json::Value),
        (status = 404, description = "`workspace.not_found`", body = ErrorBody),
    )
)]
pub(crate) fn model_of() {}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/chat/grants",
    tag = "chat",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The approvals ledger, newest first: `{\"approvals\":[{\"id\",\"session_id\",\"tool\",\"subject\",\"decision\",\"decided_at\",\"revoked_at\"}]}`", body = serde_json::Value),
        (status = 404, description = "`workspace.not_found`", body = ErrorBody),
        (status = 503, description = "`store.unavailable`", body = ErrorBody),
    )
)]
pub(crate) fn list_grants() {}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{id}/chat/grants/{gid}/revoke",
    tag = "chat",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("gid" = i64, Path, description = "Ledger entry id of a session grant"),
    ),
    responses(
        (status = 200, description = "`{\"revoked\":bool}`: false when it was not a live grant of this workspace", body = serde_json::Value),
        (status = 400, description = "`request.invalid`: ids that are not numbers", body = ErrorBody),
        (status = 404, description = "`workspace.not_found`", body = ErrorBody),
    )
)]
pub(crate) fn revoke_grant() {}

#[utoipa::path(
    get,
    path = "/v1/chat/sessions/{sid}",
    tag = "chat",
    params(("sid" = i64, Path, description = "Session id"), PageQuery),
    responses(
        (status = 200, description = "`{\"session\",\"workspace_id\",\"messages\":[{\"id\",\"role\",\"content\",\"payload\"?,\"created_at\"}],\"more\"}`: the latest page (oldest first within it); `before` = the first id for the next older page", body = serde_json::Value),
        (status = 400, description = "`request.invalid`: bad query parameters", body = ErrorBody),
        (status = 404, description = "`chat.session_not_found`", body = ErrorBody),
    )
)]
pub(crate) fn show_session() {}

#[utoipa::path(
    post,
    path = "/v1/chat/sessions/{sid}/title",
    tag = "chat",
    params(("sid" = i64, Path, description = "Session id")),
    request_body(content = Rename, content_type = "application/json"),
    responses(
        (status = 200, description = "`{\"id\",\"title\"}`", body = serde_json::Value),
        (status = 400, description = "`request.invalid`", body = ErrorBody),
        (status = 404, description = "`chat.session_not_found`", body = ErrorBody),
    )
)]
pub(crate) fn rename_session() {}

#[utoipa::path(
    delete,
    path = "/v1/chat/sessions/{sid}",
    tag = "chat",
    params(("sid" = i64, Path, description = "Session id")),
    responses(
        (status = 204, description = "Deleted with its messages and grants; its id is never given again"),
        (status = 404, description = "`chat.session_not_found`", body = ErrorBody),
        (status = 409, description = "`chat.busy`: a turn is running (stop it first)", body = ErrorBody),
    )
)]
pub(crate) fn delete_session() {}

#[utoipa::path(
    post,
    path = "/v1/chat/sessions/{sid}/turn",
    tag = "chat",
    params(("sid" = i64, Path, description = "Session id")),
    request_body(content = TurnRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "`application/x-ndjson`, one event per line as it happens, each `{\"type\":…}`: `started`, `text`, `tool_call`, `approval` (answer it with `POST /v1/chat/approvals/{aid}`), `approval_settled`, `tool_output`, `tool_result`, `usage`, `summarised`, `error` (`{\"code\",\"message\"}`), and last `done` (`{\"end\":\"finished\"|\"max_tokens\"|\"step_limit\"|\"stopped\"|\"failed\"}`). Closing the response stops the turn.", content_type = "application/x-ndjson", body = serde_json::Value),
        (status = 400, description = "`request.invalid`: bad JSON or an empty message", body = ErrorBody),
        (status = 404, description = "`chat.session_not_found`", body = ErrorBody),
        (status = 409, description = "`chat.busy`: a turn of this session is running; `ai.not_configured`, `ai.settings_invalid`, `ai.no_api_key`, `ai.key_unreadable`: no usable provider or key for the workspace (the message says how to set one)", body = ErrorBody),
        (status = 503, description = "`store.unavailable`, `audit.unavailable`", body = ErrorBody),
    )
)]
pub(crate) fn start_turn() {}

#[utoipa::path(
    post,
    path = "/v1/chat/sessions/{sid}/stop",
    tag = "chat",
    params(("sid" = i64, Path, description = "Session id")),
    responses(
        (status = 200, description = "`{\"stopped\":bool}`: the provider call and any running tool are cancelled; what was said so far is kept", body = serde_json::Value),
        (status = 404, description = "`chat.session_not_found`", body = ErrorBody),
    )
)]
pub(crate) fn stop_turn() {}

#[utoipa::path(
    get,
    path = "/v1/chat/sessions/{sid}/export",
    tag = "chat",
    params(("sid" = i64, Path, description = "Session id")),
    responses(
        (status = 200, description = "`{\"filename\",\"markdown\"}`: the whole session as Markdown", body = serde_json::Value),
        (status = 404, description = "`chat.session_not_found`", body = ErrorBody),
    )
)]
pub(crate) fn export_session() {}

#[utoipa::path(
    get,
    path = "/v1/chat/approvals",
    tag = "chat",
    responses(
        (status = 200, description = "Pending approvals: `{\"approvals\":[{\"id\",\"workspace_id\",\"session_id\",\"tool\",\"subject\",\"summary\",\"preview\",\"expires_at\"}]}` (`preview`: the diff of a write or patch, the exact command line of a run)", body = serde_json::Value),
    )
)]
pub(crate) fn list_approvals() {}

#[utoipa::path(
    post,
    path = "/v1/chat/approvals/{aid}",
    tag = "chat",
    params(("aid" = String, Path, description = "Approval id")),
    request_body(content = Answer, content_type = "application/json"),
    responses(
        (status = 200, description = "`{\"id\",\"decision\"}`", body = serde_json::Value),
        (status = 400, description = "`request.invalid`: not `once`, `session` or `deny`", body = ErrorBody),
        (status = 409, description = "`approval.not_pending`: answered already, expired or withdrawn", body = ErrorBody),
    )
)]
pub(crate) fn decide_approval() {}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/chat/notes",
    tag = "chat",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The notes for the model, by key: `{\"notes\":[{\"key\",\"value\"}]}`; every chat turn's system prompt carries them", body = serde_json::Value),
        (status = 400, description = "`request.invalid`: an id that is not a number", body = ErrorBody),
        (status = 404, description = "`workspace.not_found`", body = ErrorBody),
        (status = 503, description = "`store.unavailable`", body = ErrorBody),
    )
)]
pub(crate) fn list_notes() {}

#[utoipa::path(
    put,
    path = "/v1/workspaces/{id}/chat/notes/{key}",
    tag = "chat",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("key" = String, Path, description = "1 to 64 characters of `A-Z a-z 0-9 _ . -`"),
    ),
    request_body(content = NoteBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Saved (replacing any note of that key): `{\"key\",\"value\"}`", body = serde_json::Value),
        (status = 400, description = "`request.invalid`: a bad key, bad JSON, a value over 8 KiB or with a NUL character", body = ErrorBody),
        (status = 404, description = "`workspace.not_found`", body = ErrorBody),
        (status = 503, description = "`store.unavailable`", body = ErrorBody),
    )
)]
pub(crate) fn save_note() {}

#[utoipa::path(
    delete,
    path = "/v1/workspaces/{id}/chat/notes/{key}",
    tag = "chat",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("key" = String, Path, description = "The note's key"),
    ),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 400, description = "`request.invalid`: a bad key", body = ErrorBody),
        (status = 404, description = "`workspace.not_found`, `chat.note_not_found`", body = ErrorBody),
        (status = 503, description = "`store.unavailable`", body = ErrorBody),
    )
)]
pub(crate) fn forget_note() {}

/// Every chat route, as `(METHOD, path)`, for the test below and `api::openapi`.
#[cfg(test)]
pub(crate) const DESCRIBED: &[(&str, &str)] = &[
    ("GET", "/v1/workspaces/{id}/chat/sessions"),
    ("POST", "/v1/workspaces/{id}/chat/sessions"),
    ("GET", "/v1/workspaces/{id}/chat/model"),
    ("GET", "/v1/workspaces/{id}/chat/grants"),
    ("POST", "/v1/workspaces/{id}/chat/grants/{gid}/revoke"),
    ("GET", "/v1/chat/sessions/{sid}"),
    ("DELETE", "/v1/chat/sessions/{sid}"),
    ("POST", "/v1/chat/sessions/{sid}/title"),
    ("POST", "/v1/chat/sessions/{sid}/turn"),
    ("POST", "/v1/chat/sessions/{sid}/stop"),
    ("GET", "/v1/chat/sessions/{sid}/export"),
    ("GET", "/v1/chat/approvals"),
    ("POST", "/v1/chat/approvals/{aid}"),
    ("GET", "/v1/workspaces/{id}/chat/notes"),
    ("PUT", "/v1/workspaces/{id}/chat/notes/{key}"),
    ("DELETE", "/v1/workspaces/{id}/chat/notes/{key}"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes the chat routers declare, read from their source (axum keeps no list to ask).
    fn routed() -> Vec<(String, String)> {
        let mut found = routed_in(include_str!("routes.rs"));
        found.extend(routed_in(include_str!("memory_routes.rs")));
        found
    }

    fn routed_in(source: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut rest = source;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let Some(start) = rest.find('"') else { break };
            let after = &rest[start + 1..];
            let Some(end) = after.find('"') else { break };
            let path = after[..end].to_owned();
            // this route's handlers: up to the next route, or the state at the end
            let close = [".route(", ".with_state("]
                .iter()
                .filter_map(|m| after.find(m))
                .min()
                .unwrap_or(after.len());
            let handlers = &after[end..close];
            for (method, call) in [
                ("GET", "get("),
                ("POST", "post("),
                ("DELETE", "delete("),
                ("PUT", "put("),
            ] {
                if handlers.contains(call) {
                    found.push((method.to_owned(), path.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn every_chat_route_is_described() {
        let mut routed = routed();
        routed.sort();
        let mut described: Vec<(String, String)> = DESCRIBED
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        described.sort();
        assert_eq!(routed, described);
        let doc = crate::api::openapi::openapi_json().unwrap();
        let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
        for (method, path) in DESCRIBED {
            assert!(
                doc["paths"][path][method.to_ascii_lowercase()].is_object(),
                "{method} {path} is not in the OpenAPI document"
            );
        }
    }
}
