//! The chat routes of the agent API (served over the tunnel beside the file API):
//!
//! - `GET  /v1/workspaces/{id}/chat/sessions` — the workspace's sessions, latest first.
//! - `POST /v1/workspaces/{id}/chat/sessions` `{"title"?}` — a new session.
//! - `GET  /v1/workspaces/{id}/chat/model` — the provider and model the workspace uses, or why none.
//! - `GET  /v1/workspaces/{id}/chat/grants` — the approvals ledger; `POST …/grants/{gid}/revoke`.
//! - `GET  /v1/chat/sessions/{sid}?before&limit` — a page of messages, latest first page.
//! - `POST /v1/chat/sessions/{sid}/title` `{"title"}`; `DELETE /v1/chat/sessions/{sid}`.
//! - `POST /v1/chat/sessions/{sid}/turn` `{"text"}` — a turn, streamed as NDJSON ([`ChatEvent`]).
//!   The client going away stops it.
//! - `POST /v1/chat/sessions/{sid}/stop` — stops the running turn.
//! - `GET  /v1/chat/sessions/{sid}/export` — the session as Markdown (`{"filename","markdown"}`).
//! - `GET  /v1/chat/approvals` — pending approvals; `POST /v1/chat/approvals/{aid}` `{"decision"}`.
//! - `GET|PUT|DELETE /v1/workspaces/{id}/chat/notes[/{key}]` — the notes for the model
//!   ([`super::memory_routes`]).
//!
//! Errors are the API's JSON shape `{"error":{"code","message"}}` with stable codes.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use katachi_proto::agent::FORWARDED_USER_ID_HEADER;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::events::ChatEvent;
use super::export::to_markdown;
use super::service::{ChatError, ChatService, StartedTurn};
use crate::ai::approvals::{ApprovalError, PendingApproval};
use crate::api::WorkspaceId;
use crate::store::{ApprovalRecord, ChatMessage, ChatSession, Decision, Role};

/// Messages of one page by default, and at most.
const PAGE_DEFAULT: u32 = 200;
const PAGE_MAX: u32 = 1000;

/// Longest session title, in characters.
const MAX_TITLE_CHARS: usize = 200;

/// The chat routes over `service` (full paths, to merge into the API router).
pub fn routes(service: ChatService) -> Router {
    Router::new()
        .route(
            "/v1/workspaces/{id}/chat/sessions",
            get(list_sessions).post(create_session),
        )
        .route("/v1/workspaces/{id}/chat/model", get(model_of))
        .route("/v1/workspaces/{id}/chat/grants", get(list_grants))
        .route(
            "/v1/workspaces/{id}/chat/grants/{gid}/revoke",
            post(revoke_grant),
        )
        .route(
            "/v1/chat/sessions/{sid}",
            get(show_session).delete(delete_session),
        )
        .route("/v1/chat/sessions/{sid}/title", post(rename_session))
        .route("/v1/chat/sessions/{sid}/turn", post(start_turn))
        .route("/v1/chat/sessions/{sid}/stop", post(stop_turn))
        .route("/v1/chat/sessions/{sid}/export", get(export_session))
        .route("/v1/chat/approvals", get(list_approvals))
        .route("/v1/chat/approvals/{aid}", post(decide_approval))
        .with_state(service.clone())
        .merge(super::memory_routes::routes(service))
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        let status = match &self {
            ChatError::SessionNotFound(_)
            | ChatError::WorkspaceNotFound(_)
            | ChatError::NoteNotFound(_) => StatusCode::NOT_FOUND,
            ChatError::Busy(_) => StatusCode::CONFLICT,
            ChatError::Invalid(_) => StatusCode::BAD_REQUEST,
            ChatError::Failed(f) => match f.code.as_str() {
                "store.unavailable" | "audit.unavailable" => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            },
        };
        let message = match &self {
            ChatError::Failed(f) => f.message.clone(),
            other => other.to_string(),
        };
        error_response(status, self.code(), &message)
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// A JSON body, refused as `request.invalid` with serde's reason.
pub(super) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ChatError> {
    serde_json::from_slice(body).map_err(|e| ChatError::Invalid(format!("bad JSON body: {e}")))
}

/// A session id from the path; anything else is an unknown session.
fn session_id(raw: &str) -> Result<i64, ChatError> {
    raw.parse().map_err(|_| ChatError::SessionNotFound(-1))
}

/// Who asks: the relay's id of the signed-in user, `local` when the call did not come through
/// the relay (tests over loopback).
fn user_of(headers: &HeaderMap) -> String {
    headers
        .get(FORWARDED_USER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("local")
        .to_owned()
}

/// A session as listed.
#[derive(Debug, Serialize)]
struct SessionView {
    /// Its id.
    id: i64,
    /// Its title.
    title: String,
    /// Created (Unix seconds).
    created_at: i64,
    /// A turn is running.
    running: bool,
}

impl SessionView {
    fn of(session: ChatSession, service: &ChatService) -> Self {
        Self {
            running: service.is_running(session.id),
            id: session.id,
            title: session.title,
            created_at: session.created_at,
        }
    }
}

async fn list_sessions(
    State(service): State<ChatService>,
    WorkspaceId(id): WorkspaceId,
) -> Result<Json<serde_json::Value>, ChatError> {
    service.workspace(id).await?;
    let sessions = service
        .store()
        .run(move |s| s.chat().sessions_of(id, 500))
        .await?;
    let sessions: Vec<SessionView> = sessions
        .into_iter()
        .map(|s| SessionView::of(s, &service))
        .collect();
    Ok(Json(serde_json::json!({ "sessions": sessions })))
}

/// `POST …/sessions` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSession {
    /// Its title (default "New chat"; at most 200 characters, no control characters).
    #[serde(default)]
    title: Option<String>,
}

fn checked_title(title: Option<String>) -> Result<String, ChatError> {
    let title = title.unwrap_or_default().trim().to_owned();
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ChatError::Invalid(format!(
            "the title is longer than {MAX_TITLE_CHARS} characters"
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(ChatError::Invalid(
            "the title contains control characters".to_owned(),
        ));
    }
    Ok(if title.is_empty() {
        "New chat".to_owned()
    } else {
        title
    })
}

async fn create_session(
    State(service): State<ChatService>,
    WorkspaceId(id): WorkspaceId,
    body: Bytes,
) -> Result<Response, ChatError> {
    let request: NewSession = if body.is_empty() {
        NewSession::default()
    } else {
        json_body(&body)?
    };
    let title = checked_title(request.title)?;
    service.workspace(id).await?;
    let session = service
        .store()
        .run(move |s| s.chat().create_session(Some(id), &title))
        .await?;
    service
        .store()
        .record_activity(
            "ai.session_started",
            serde_json::json!({ "session_id": session.id, "workspace_id": id }),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(SessionView::of(session, &service)),
    )
        .into_response())
}

async fn model_of(
    State(service): State<ChatService>,
    WorkspaceId(id): WorkspaceId,
) -> Result<Json<serde_json::Value>, ChatError> {
    let workspace = service.workspace(id).await?;
    Ok(Json(match service.describe_model(&workspace).await {
        Ok(d) => serde_json::json!({
            "configured": true, "provider": d.provider, "model": d.model,
            "context_tokens": d.context_tokens,
        }),
        Err(f) => serde_json::json!({
            "configured": false, "code": f.code, "message": f.message,
        }),
    }))
}

async fn list_grants(
    State(service): State<ChatService>,
    WorkspaceId(id): WorkspaceId,
) -> Result<Json<serde_json::Value>, ChatError> {
    service.workspace(id).await?;
    let records: Vec<ApprovalRecord> = service
        .store()
        .run(move |s| s.approvals().of_workspace(id, 500))
        .await?;
    Ok(Json(serde_json::json!({ "approvals": records })))
}

async fn revoke_grant(
    State(service): State<ChatService>,
    Path((id, gid)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ChatError> {
    // two path parameters: the workspace id is read here, not by `WorkspaceId`
    let id: i64 = id
        .parse()
        .map_err(|_| ChatError::Invalid(format!("{id:?} is not a workspace id")))?;
    service.workspace(id).await?;
    let gid: i64 = gid
        .parse()
        .map_err(|_| ChatError::Invalid(format!("{gid:?} is not a grant id")))?;
    let revoked = service
        .store()
        .run(move |s| s.approvals().revoke(id, gid))
        .await?;
    Ok(Json(serde_json::json!({ "revoked": revoked })))
}

/// `GET /v1/chat/sessions/{sid}` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Messages before this id (the next older page).
    before: Option<i64>,
    /// Messages per page (default 200, at most 1000).
    limit: Option<u32>,
}

/// A message as the browser reads it.
#[derive(Debug, Serialize)]
struct MessageView {
    /// Its id.
    id: i64,
    /// Who wrote it.
    role: Role,
    /// The text (a tool result's JSON text).
    content: String,
    /// Its structured part.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<serde_json::Value>,
    /// Written (Unix seconds).
    created_at: i64,
}

impl From<ChatMessage> for MessageView {
    fn from(m: ChatMessage) -> Self {
        Self {
            id: m.id,
            role: m.role,
            payload: m.payload.and_then(|p| serde_json::from_str(&p).ok()),
            content: m.content,
            created_at: m.created_at,
        }
    }
}

async fn show_session(
    State(service): State<ChatService>,
    Path(sid): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ChatError> {
    let Query(query) = query
        .map_err(|e| ChatError::Invalid(format!("bad query parameters: {}", e.body_text())))?;
    let id = session_id(&sid)?;
    let (session, workspace) = service.session(id).await?;
    let limit = query.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
    let before = query.before;
    let mut page = service
        .store()
        .run(move |s| s.chat().latest_messages(id, before, limit + 1))
        .await?;
    let more = page.len() > limit as usize;
    if more {
        page.remove(0);
    }
    let messages: Vec<MessageView> = page.into_iter().map(MessageView::from).collect();
    Ok(Json(serde_json::json!({
        "session": SessionView::of(session, &service),
        "workspace_id": workspace.id,
        "messages": messages,
        "more": more,
    })))
}

/// `POST …/title` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    /// The new title.
    title: String,
}

async fn rename_session(
    State(service): State<ChatService>,
    Path(sid): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ChatError> {
    let id = session_id(&sid)?;
    let Rename { title } = json_body(&body)?;
    let title = checked_title(Some(title))?;
    service.session(id).await?;
    let stored = title.clone();
    service
        .store()
        .run(move |s| s.chat().rename(id, &stored))
        .await?;
    Ok(Json(serde_json::json!({ "id": id, "title": title })))
}

async fn delete_session(
    State(service): State<ChatService>,
    Path(sid): Path<String>,
) -> Result<StatusCode, ChatError> {
    let id = session_id(&sid)?;
    service.session(id).await?;
    if service.is_running(id) {
        return Err(ChatError::Busy(id));
    }
    service
        .store()
        .run(move |s| s.chat().delete_session(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/turn` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TurnRequest {
    /// The user's message.
    text: String,
}

async fn start_turn(
    State(service): State<ChatService>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ChatError> {
    let id = session_id(&sid)?;
    let TurnRequest { text } = json_body(&body)?;
    let started = service.start_turn(id, text, user_of(&headers)).await?;
    Ok(ndjson(started))
}

/// A turn's events as an NDJSON body; dropping the body (client gone) stops the turn.
fn ndjson(started: StartedTurn) -> Response {
    let StartedTurn { events, guard } = started;
    let lines = futures::stream::unfold((events, guard), |(mut events, guard)| async move {
        let event: ChatEvent = events.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(line)),
            (events, guard),
        ))
    });
    let mut response = Response::new(Body::from_stream(lines));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stop_turn(
    State(service): State<ChatService>,
    Path(sid): Path<String>,
) -> Result<Json<serde_json::Value>, ChatError> {
    let id = session_id(&sid)?;
    service.session(id).await?;
    Ok(Json(serde_json::json!({ "stopped": service.stop(id) })))
}

async fn export_session(
    State(service): State<ChatService>,
    Path(sid): Path<String>,
) -> Result<Json<serde_json::Value>, ChatError> {
    let id = session_id(&sid)?;
    let (session, workspace) = service.session(id).await?;
    let messages = service
        .store()
        .run(move |s| s.chat().messages(id, 0, u32::MAX))
        .await?;
    let markdown = to_markdown(&session, Some(&workspace.path), &messages);
    let slug: String = session
        .title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-");
    Ok(Json(serde_json::json!({
        "filename": format!("katachi-chat-{id}-{}.md", if slug.is_empty() { "session" } else { &slug }),
        "markdown": markdown,
    })))
}

async fn list_approvals(State(service): State<ChatService>) -> Json<serde_json::Value> {
    let pending: Vec<PendingApproval> = service.approvals().pending();
    Json(serde_json::json!({ "approvals": pending }))
}

/// `POST /v1/chat/approvals/{aid}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Answer {
    /// `once`, `session` or `deny`.
    #[schema(value_type = String, example = "once")]
    decision: Decision,
}

async fn decide_approval(
    State(service): State<ChatService>,
    Path(aid): Path<String>,
    body: Bytes,
) -> Result<Response, ChatError> {
    let Answer { decision } = json_body(&body)?;
    match service.approvals().decide(&aid, decision) {
        Ok(approval) => Ok(Json(serde_json::json!({
            "id": approval.id, "decision": decision,
        }))
        .into_response()),
        Err(e @ ApprovalError::NotPending(_)) => Ok(error_response(
            StatusCode::CONFLICT,
            e.code(),
            &e.to_string(),
        )),
        Err(e @ ApprovalError::NotAnAnswer) => Err(ChatError::Invalid(e.to_string())),
    }
}
