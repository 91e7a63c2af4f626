//! Signed agent → relay calls: heartbeat, activity events, unregister, and the MCP calls (list
//! the user's MCP tools, call one: run by [`crate::mcp`]).
//!
//! Every handler takes a [`VerifiedAgent`], which only [`verify_signed_request`] builds, so no
//! handler can skip the checks: bearer token, agent id, revocation, ±30 s window, HMAC (constant
//! time), and nonce reuse — each refused with its own code. Reading the signing headers and the
//! window and HMAC checks are `katachi_proto::signed_request` (fuzzed in `fuzz/`, without the
//! relay); this module adds what needs the database: the token's agent, revocation, nonce reuse.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use katachi_proto::agent::{
    ActivityAck, ActivityBatch, Heartbeat, HeartbeatAck, MAX_EVENTS_PER_BATCH,
};
use katachi_proto::mcp::{McpCallRequest, McpCallResult, McpToolList, MAX_TOOL_NAME};
use katachi_proto::signed_request::SignedRequest;
use katachi_proto::signing::{SignatureError, MAX_SKEW_SECS};
use serde::de::DeserializeOwned;

use crate::agent_cache::CachedAgent;
use crate::crypto::SealedRow;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::NonceOutcome;
use crate::{now_unix, sha256_hex};

/// Largest signed request body.
pub const MAX_AGENT_BODY: usize = 256 * 1024;

/// An agent whose request passed every check; only [`verify_signed_request`] constructs it.
#[derive(Debug)]
pub struct VerifiedAgent {
    /// The agent's id.
    id: String,
    /// The user owning the agent: whose MCP servers it may use.
    user_id: String,
    /// The raw body that was signed.
    body: axum::body::Bytes,
}

impl VerifiedAgent {
    /// The agent's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of the user owning the agent.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The signed body parsed as JSON.
    ///
    /// # Errors
    /// `request.malformed_json` naming what is wrong.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "request.malformed_json",
                format!("request body is not valid JSON of the expected shape: {e}"),
            )
        })
    }
}

fn sig_error(e: SignatureError) -> ApiError {
    let status = match e {
        SignatureError::RevokedAgent => StatusCode::FORBIDDEN,
        SignatureError::MissingHeader(_) | SignatureError::MalformedHeader(_) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::UNAUTHORIZED,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// Runs every check on a signed request; a refusal is counted under its code
/// (`katachi_relay_signed_calls_rejected_total`).
///
/// # Errors
/// An [`ApiError`] with the code of the first failed check.
pub async fn verify_signed_request(
    state: &AppState,
    req: Request,
) -> Result<VerifiedAgent, ApiError> {
    let checked = check_signed_request(state, req).await;
    if let Err(e) = &checked {
        state.metrics.signed_call_rejected(e.code);
    }
    checked
}

/// The checks of [`verify_signed_request`], in order.
async fn check_signed_request(state: &AppState, req: Request) -> Result<VerifiedAgent, ApiError> {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_AGENT_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
            format!("request body over {MAX_AGENT_BODY} bytes"),
        )
    })?;
    // Every signing header present and well formed, before any database work.
    let signed = SignedRequest::parse(&parts).map_err(sig_error)?;

    // The bearer token names the agent; a token for another agent id is "unknown", not a hint.
    let token_hash = sha256_hex(signed.bearer_token());
    let agent = match state.agent_cache.get(&token_hash) {
        Some(a) => a,
        None => {
            let row = state.store.agent_by_token_hash(&token_hash).await?;
            let Some(row) = row else {
                return Err(sig_error(SignatureError::UnknownAgent));
            };
            // A revoked agent is refused even with a valid signature.
            if row.revoked_at != 0 {
                return Err(sig_error(SignatureError::RevokedAgent));
            }
            let secret = state
                .master
                .open(
                    &SealedRow::agent_signing_secret(&row.id, &row.user_id),
                    &row.signing_secret_enc,
                )
                .map_err(ApiError::internal)?;
            let cached = std::sync::Arc::new(CachedAgent {
                id: row.id,
                user_id: row.user_id,
                secret,
            });
            state.agent_cache.insert(token_hash.clone(), cached.clone());
            cached
        }
    };
    if agent.id != signed.agent_id() {
        return Err(sig_error(SignatureError::UnknownAgent));
    }
    // Outside ±30 s (a delayed replay or a wrong clock), then the constant-time HMAC compare (a
    // forged or altered request).
    let now = now_unix();
    signed
        .verify(&agent.secret, &body, now)
        .map_err(sig_error)?;
    // Reject a reused nonce inside the window: replay. Recorded only after the signature verified,
    // so unsigned junk cannot fill the table; recorded only while the agent exists and is not
    // revoked, so revocation takes effect at once even for cached agents.
    let expires = now + 2 * MAX_SKEW_SECS + 1;
    match state
        .store
        .use_nonce(&agent.id, &signed.replay_key(), expires)
        .await?
    {
        NonceOutcome::Fresh => {}
        NonceOutcome::Replayed => return Err(sig_error(SignatureError::ReplayedNonce)),
        NonceOutcome::AgentRevoked => {
            state.agent_cache.evict_agent(&agent.id);
            return Err(sig_error(SignatureError::RevokedAgent));
        }
        NonceOutcome::AgentGone => {
            state.agent_cache.evict_agent(&agent.id);
            return Err(sig_error(SignatureError::UnknownAgent));
        }
    }
    Ok(VerifiedAgent {
        id: agent.id.clone(),
        user_id: agent.user_id.clone(),
        body,
    })
}

impl FromRequest<AppState> for VerifiedAgent {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, Self::Rejection> {
        verify_signed_request(state, req).await
    }
}

/// `POST /api/agent/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    agent: VerifiedAgent,
) -> Result<Json<HeartbeatAck>, ApiError> {
    let beat: Heartbeat = agent.json()?;
    if beat.version.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.invalid",
            "version is limited to 64 characters",
        ));
    }
    state
        .store
        .touch_agent(
            agent.id(),
            now_unix(),
            &beat.version,
            i64::from(beat.workspaces),
        )
        .await?;
    state.metrics.heartbeat_accepted();
    Ok(Json(HeartbeatAck {
        offline_after_secs: state.config.offline_after,
    }))
}

/// `POST /api/agent/events`: stores each event once; acknowledges all of them.
pub async fn events(
    State(state): State<AppState>,
    agent: VerifiedAgent,
) -> Result<Json<ActivityAck>, ApiError> {
    let batch: ActivityBatch = agent.json()?;
    if batch.events.len() > MAX_EVENTS_PER_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.too_many_events",
            format!("at most {MAX_EVENTS_PER_BATCH} events per call"),
        ));
    }
    for e in &batch.events {
        if e.event_id.is_empty()
            || e.event_id.len() > 64
            || e.kind.len() > 64
            || e.payload.len() > 16 * 1024
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "request.invalid_event",
                format!(
                    "event {:?}: id 1-64 chars, kind ≤ 64, payload ≤ 16 KiB",
                    e.event_id.chars().take(64).collect::<String>()
                ),
            ));
        }
    }
    let now = now_unix();
    for e in &batch.events {
        state
            .store
            .record_event(agent.id(), &e.event_id, &e.kind, e.at, &e.payload, now)
            .await?;
    }
    Ok(Json(ActivityAck {
        acknowledged: batch.events.into_iter().map(|e| e.event_id).collect(),
    }))
}

/// `POST /api/agent/unregister`: the agent removes itself.
pub async fn unregister(
    State(state): State<AppState>,
    agent: VerifiedAgent,
) -> Result<Response, ApiError> {
    state.store.delete_agent(agent.id()).await?;
    state.agent_cache.evict_agent(agent.id());
    // Its tunnel, on whichever instance, ends with it.
    state.tunnels.close(agent.id());
    crate::cluster::broadcast::publish(
        &state,
        crate::cluster::broadcast::Notice::Revoked {
            agent_id: agent.id().to_owned(),
        },
    )
    .await;
    tracing::info!(agent = %agent.id(), "agent unregistered");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/agent/mcp/tools`: the tools of the agent's user's MCP servers; a server that fails
/// is listed with its error, the others still are.
pub async fn mcp_tools(
    State(state): State<AppState>,
    agent: VerifiedAgent,
) -> Result<Json<McpToolList>, ApiError> {
    let servers = state.store.mcp_servers_of(agent.user_id()).await?;
    let list = state
        .mcp
        .list_tools(&state.master, agent.user_id(), &servers)
        .await;
    Ok(Json(list))
}

/// `POST /api/agent/mcp/call`: calls one tool of one of the agent's user's MCP servers.
pub async fn mcp_call(
    State(state): State<AppState>,
    agent: VerifiedAgent,
) -> Result<Json<McpCallResult>, ApiError> {
    let request: McpCallRequest = agent.json()?;
    let invalid = |message: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.invalid",
            message.to_owned(),
        )
    };
    if request.server_id.is_empty() || request.server_id.len() > 64 {
        return Err(invalid("server_id: 1 to 64 characters"));
    }
    if request.tool.is_empty() || request.tool.len() > MAX_TOOL_NAME {
        return Err(invalid(&format!("tool: 1 to {MAX_TOOL_NAME} characters")));
    }
    let arguments = match &request.arguments {
        serde_json::Value::Object(map) => map.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        _ => return Err(invalid("arguments must be a JSON object")),
    };
    let servers = state.store.mcp_servers_of(agent.user_id()).await?;
    let called = state
        .mcp
        .call_tool(
            &state.master,
            agent.user_id(),
            &servers,
            &request,
            arguments,
        )
        .await;
    // Names only: never the arguments or the result (they may carry the user's data).
    match &called {
        Ok(result) => tracing::info!(
            agent = %agent.id(),
            server = %request.server_id,
            is_error = result.is_error,
            "mcp tool called"
        ),
        Err(e) => tracing::info!(
            agent = %agent.id(),
            server = %request.server_id,
            code = e.code(),
            "mcp tool call failed"
        ),
    }
    Ok(Json(called?))
}
