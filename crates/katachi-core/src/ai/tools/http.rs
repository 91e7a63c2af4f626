//! One in-process request to the API router: built on the tool box's workspace, marked as the
//! AI's, bounded in time and size; its answer as JSON, or the API's error as a [`ToolResult`].

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use tower::ServiceExt;

use super::{ToolBox, ToolResult};

/// Largest error body read from the API (error bodies are small).
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// A finished answer of the API.
#[derive(Debug)]
pub(super) struct Reply {
    /// Its headers.
    pub(super) headers: HeaderMap,
    /// Its body.
    pub(super) body: Bytes,
}

impl ToolBox {
    /// `/v1/workspaces/{id}{route}?{query}`, each query value percent-encoded.
    pub(super) fn uri(&self, route: &str, query: &[(&str, String)]) -> String {
        let mut uri = format!("/v1/workspaces/{}{route}", self.workspace);
        for (i, (key, value)) in query.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(key);
            uri.push('=');
            uri.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
        }
        uri
    }

    /// Sends a request to the router (marked as the AI's) and waits for the response head.
    pub(super) async fn send(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Result<Response, ToolResult> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let mut request = builder.body(body).map_err(|e| {
            ToolResult::error("tool.invalid_arguments", format!("bad request: {e}"))
        })?;
        request.extensions_mut().insert(self.caller.clone());
        let routed = self.router.clone().oneshot(request);
        match tokio::time::timeout(self.options.request_timeout, routed).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(never)) => match never {},
            Err(_) => Err(timeout(self.options.request_timeout)),
        }
    }

    /// Sends a request and reads the whole answer: the body of a success (at most `max_body`
    /// bytes), or the API's error as a result.
    pub(super) async fn fetch(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Body,
        max_body: usize,
    ) -> Result<Reply, ToolResult> {
        let response = self.send(method, uri, content_type, body).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.error_of(response).await);
        }
        let (parts, body) = response.into_parts();
        let read = axum::body::to_bytes(body, max_body);
        let body = match tokio::time::timeout(self.options.request_timeout, read).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                return Err(ToolResult::error(
                    "tool.too_large",
                    format!("the answer is larger than the {max_body} bytes a tool reads"),
                ))
            }
            Err(_) => return Err(timeout(self.options.request_timeout)),
        };
        Ok(Reply {
            headers: parts.headers,
            body,
        })
    }

    /// [`Self::fetch`] of a JSON answer.
    pub(super) async fn fetch_json(
        &self,
        method: Method,
        uri: &str,
        json_body: Option<&Value>,
        max_body: usize,
    ) -> Result<Value, ToolResult> {
        let (content_type, body) = match json_body {
            Some(v) => (Some("application/json"), Body::from(v.to_string())),
            None => (None, Body::empty()),
        };
        let reply = self
            .fetch(method, uri, content_type, body, max_body)
            .await?;
        serde_json::from_slice(&reply.body).map_err(|e| {
            ToolResult::error(
                "tool.failed",
                format!("the agent's answer is not JSON: {e}"),
            )
        })
    }

    /// The API's error response as a result: its JSON body as it was sent.
    pub(super) async fn error_of(&self, response: Response) -> ToolResult {
        let status = response.status();
        let read = axum::body::to_bytes(response.into_body(), MAX_ERROR_BODY_BYTES);
        let bytes = tokio::time::timeout(self.options.request_timeout, read).await;
        match bytes {
            Ok(Ok(b)) => match serde_json::from_slice::<Value>(&b) {
                Ok(content) if content.get("error").is_some() => ToolResult {
                    content,
                    is_error: true,
                },
                _ => unexpected(status),
            },
            _ => unexpected(status),
        }
    }
}

fn unexpected(status: StatusCode) -> ToolResult {
    ToolResult::error(
        "tool.failed",
        format!("the agent answered {status} without an error body"),
    )
}

pub(super) fn timeout(limit: std::time::Duration) -> ToolResult {
    ToolResult::error(
        "tool.timeout",
        format!(
            "the call took longer than {} s and was stopped",
            limit.as_secs()
        ),
    )
}
