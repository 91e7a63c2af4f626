//! What of an agent's answer reaches the browser: the relay treats every agent answer as hostile.
//!
//! An agent may have been approved through phishing, or run on a compromised machine. Whatever it
//! answers on `/agents/{id}/api/...` is served from the relay's own origin, next to the user's
//! session and their other agents, so nothing in it may act on that origin.
//!
//! # Contract
//! - **Headers** ([`screen_agent_head`]): only [`FORWARDED_RESPONSE_HEADERS`] cross, each only when
//!   the agent sent it exactly once (the API never repeats one). Everything else is dropped:
//!   `Set-Cookie`, `Location`, `Refresh`, `Link`, `Access-Control-*`, the agent's own
//!   `Content-Security-Policy`, `Content-Disposition`, `Clear-Site-Data`, `Service-Worker-Allowed`,
//!   hop-by-hop headers, and any header invented later.
//! - **Content type**: one of the API's own ([`API_CONTENT_TYPES`], optionally with
//!   `charset=utf-8`) is passed in its canonical spelling. Anything else (HTML, SVG, XML, text,
//!   none, unparsable, several values, other parameters) becomes `application/octet-stream` with
//!   `Content-Disposition: attachment`: a browser downloads it instead of rendering it.
//! - **Status**: a redirect (3xx other than `304 Not Modified`) is refused with
//!   [`AgentAnswerError::Redirect`] (the caller answers `502 agent.invalid_response`). The API never
//!   redirects; with `Location` dropped, a bare 3xx would only be an answer nobody can use.
//! - **The relay's own headers** ([`set_relay_headers`], a layer on the whole forwarded route, so
//!   the relay's own errors there get them too): `Content-Security-Policy: default-src 'none';
//!   sandbox`, `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` replace whatever is
//!   there. A document opened from the route runs no script, loads nothing, has an opaque origin
//!   (no cookies, no storage) and is never kept in a cache.
//!
//! Bodies are not inspected: an allowed type with an HTML body is inert under the CSP and `nosniff`.

use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// Response headers of the agent API that the browser may see (the workbench reads
/// `x-katachi-sha256`; the others are HTTP's own for bodies, ranges and back-off). Content type is
/// screened separately.
pub(crate) const FORWARDED_RESPONSE_HEADERS: [HeaderName; 8] = [
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::ETAG,
    header::LAST_MODIFIED,
    header::RETRY_AFTER,
    // katachi-core `api::read`: the file's SHA-256 (a later write's `expected`) and its whole size.
    HeaderName::from_static("x-katachi-sha256"),
    HeaderName::from_static("x-katachi-file-size"),
];

/// The content types the agent API answers with (docs/openapi.json): JSON, files, the NDJSON of
/// a run. `text/event-stream` is not sent today; the design names server-sent events for streamed
/// answers (AI chat), and such a body is never rendered as a document.
pub(crate) const API_CONTENT_TYPES: [&str; 4] = [
    "application/json",
    "application/octet-stream",
    "application/x-ndjson",
    "text/event-stream",
];

/// What any other content type is served as.
const FALLBACK_CONTENT_TYPE: &str = "application/octet-stream";

/// The relay's CSP for forwarded answers: nothing loads, nothing runs, opaque origin.
pub(crate) const FORWARDED_CSP: &str = "default-src 'none'; sandbox";

/// An agent answer the relay does not pass on at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentAnswerError {
    /// The agent answered a redirect. The API has none, so the agent is broken or hostile (a
    /// redirect would send the user's browser wherever the agent likes); check the agent's version.
    #[error("the agent answered with a redirect ({0}), which its API never sends")]
    Redirect(StatusCode),
}

/// The headers the browser gets for an agent's answer with `status` and `agent_headers`: the
/// allowlisted ones, and a screened content type.
///
/// # Errors
/// [`AgentAnswerError::Redirect`] for a 3xx other than 304.
pub(crate) fn screen_agent_head(
    status: StatusCode,
    agent_headers: &HeaderMap,
) -> Result<HeaderMap, AgentAnswerError> {
    if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
        return Err(AgentAnswerError::Redirect(status));
    }
    let mut headers = HeaderMap::with_capacity(FORWARDED_RESPONSE_HEADERS.len() + 2);
    for name in FORWARDED_RESPONSE_HEADERS {
        // Twice the same header is not an answer of the API: keep neither.
        if let Some(value) = single_value(agent_headers, &name) {
            headers.insert(name, value.clone());
        }
    }
    match api_content_type(agent_headers) {
        Some(content_type) => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        None => {
            // HTML, SVG, XML and the like would run script on the relay's origin: download it.
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(FALLBACK_CONTENT_TYPE),
            );
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            );
        }
    }
    Ok(headers)
}

/// Sets the relay's own CSP, `nosniff` and `no-store` on `response`, replacing any value there.
/// A layer on the forwarded route (`axum::middleware::map_response`).
pub(crate) async fn set_relay_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FORWARDED_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of `name` when `headers` has exactly one.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// The canonical spelling of the agent's content type when it is one of [`API_CONTENT_TYPES`]
/// with no parameter but `charset=utf-8`; `None` for anything else.
fn api_content_type(headers: &HeaderMap) -> Option<&'static str> {
    let text = single_value(headers, &header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let mut parts = text.split(';');
    let essence = parts.next()?.trim();
    let canonical = API_CONTENT_TYPES
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(essence))?;
    for parameter in parts {
        let (name, value) = parameter.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if !name.trim().eq_ignore_ascii_case("charset") || !value.eq_ignore_ascii_case("utf-8") {
            return None;
        }
    }
    Some(canonical)
}

#[cfg(test)]
#[path = "tunnel_response_tests.rs"]
mod tests;
