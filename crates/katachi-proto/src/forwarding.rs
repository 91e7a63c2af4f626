//! How the relay turns a browser's request for an agent into the request the agent receives
//! through its tunnel: directly (`ANY /agents/{id}/api/{*rest}`), or after one hop between relay
//! instances (`ANY /internal/v1/agents/{id}/{*rest}` on the instance that holds the tunnel).
//!
//! # Contract
//! - The path on the agent is the browser's path after `/agents/{id}/api`, byte for byte (still
//!   percent-encoded: decoding it would change its meaning), with the query as sent; a path that
//!   does not continue with `/` after that prefix is refused ([`ForwardError::NotThisRoute`]).
//! - Only [`FORWARDED_REQUEST_HEADERS`] cross from the browser (never its cookies, never its own
//!   `x-katachi-*` headers); the caller headers ([`CALLER_HEADERS`]) are the relay's.
//! - The internal hop changes nothing the agent sees: [`internal_request`] puts the agent's path
//!   under [`INTERNAL_PREFIX`] and adds the session hash ([`INTERNAL_SESSION_HEADER`]);
//!   [`request_from_internal`] takes exactly that path, the allowlisted and caller headers and the
//!   session hash back out, so the tunnelled request is the one the first instance would have sent.
//!
//! It does not check who may call the agent (session, ownership, `Origin`): the relay does, before.

use http::header::{self, HeaderName};
use http::{HeaderValue, Request, Uri};

use crate::agent::{FORWARDED_SESSION_HEADER, FORWARDED_USER_HEADER, FORWARDED_USER_ID_HEADER};

/// The browser route: the signed-in user's calls to their agent's API.
pub const BROWSER_ROUTE: &str = "/agents/{id}/api/{*rest}";
/// The internal listener's one route: a browser request another instance checked and forwards.
pub const INTERNAL_ROUTE: &str = "/internal/v1/agents/{agent_id}/{*rest}";
/// Path prefix of forwarded requests on the internal listener, before the agent id.
pub const INTERNAL_PREFIX: &str = "/internal/v1/agents/";
/// Header of an internal request: the hash of the browser session that sent it (the receiving
/// instance ends the request when that session signs out).
pub const INTERNAL_SESSION_HEADER: &str = "x-katachi-internal-session";

/// Request headers passed from the browser to the agent API; everything else (cookies above all)
/// stays at the relay.
pub const FORWARDED_REQUEST_HEADERS: [HeaderName; 9] = [
    header::ACCEPT,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::RANGE,
    header::IF_RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// The headers naming the caller to the agent, which only the relay sets.
pub const CALLER_HEADERS: [&str; 3] = [
    FORWARDED_USER_ID_HEADER,
    FORWARDED_USER_HEADER,
    FORWARDED_SESSION_HEADER,
];

/// Why a request cannot be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The path does not continue with `/` after the agent's prefix (or names the agent otherwise
    /// than the route matched it): the relay answers as for an unknown agent.
    #[error("no such agent")]
    NotThisRoute,
    /// An internal request without a session hash (hex): not sent by a relay instance.
    #[error("an internal request names no browser session")]
    NoSession,
    /// The rebuilt request is not a valid HTTP request (a target that is no URI).
    #[error("cannot forward this request: {0}")]
    Unforwardable(#[source] http::Error),
}

/// The request the agent receives for the browser's `request` to `agent_id`'s API, with the
/// relay's `caller` headers; the body is passed on as it is.
///
/// # Errors
/// [`ForwardError::NotThisRoute`] for a path not under `/agents/{agent_id}/api/`,
/// [`ForwardError::Unforwardable`] when the rebuilt request is invalid.
pub fn browser_request<B>(
    agent_id: &str,
    request: Request<B>,
    caller: impl IntoIterator<Item = (&'static str, HeaderValue)>,
) -> Result<Request<B>, ForwardError> {
    let target = agent_target(request.uri(), &format!("/agents/{agent_id}/api"))
        .ok_or(ForwardError::NotThisRoute)?;
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::builder().method(parts.method).uri(target);
    for name in FORWARDED_REQUEST_HEADERS {
        for value in parts.headers.get_all(&name) {
            outgoing = outgoing.header(&name, value);
        }
    }
    // Who is calling, for the agent's audit log. Only the relay sets these: the allowlist above
    // never copies a browser's own `x-katachi-*` headers.
    for (name, value) in caller {
        outgoing = outgoing.header(name, value);
    }
    outgoing.body(body).map_err(ForwardError::Unforwardable)
}

/// The request one instance sends another for `agent_id`: the agent's request `tunnelled` under
/// [`INTERNAL_PREFIX`], with the browser session's hash.
///
/// # Errors
/// [`ForwardError::Unforwardable`] for a session hash that is no header value or a path that is no
/// URI.
pub fn internal_request<B>(
    agent_id: &str,
    session_hash: &str,
    tunnelled: Request<B>,
) -> Result<Request<B>, ForwardError> {
    let (mut parts, body) = tunnelled.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{INTERNAL_PREFIX}{agent_id}{path}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| ForwardError::Unforwardable(e.into()))?;
    let session =
        HeaderValue::from_str(session_hash).map_err(|e| ForwardError::Unforwardable(e.into()))?;
    parts.headers.insert(INTERNAL_SESSION_HEADER, session);
    Ok(Request::from_parts(parts, body))
}

/// What an instance takes from an internal `request` for `agent_id` (the id the route matched):
/// the browser session's hash and the request the agent receives.
///
/// # Errors
/// [`ForwardError::NotThisRoute`] for a path not under the agent's internal prefix,
/// [`ForwardError::NoSession`], [`ForwardError::Unforwardable`].
pub fn request_from_internal<B>(
    agent_id: &str,
    request: Request<B>,
) -> Result<(String, Request<B>), ForwardError> {
    let target = agent_target(request.uri(), &format!("{INTERNAL_PREFIX}{agent_id}"))
        .ok_or(ForwardError::NotThisRoute)?;
    let session = request
        .headers()
        .get(INTERNAL_SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .ok_or(ForwardError::NoSession)?;
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::builder().method(parts.method).uri(target);
    let caller = CALLER_HEADERS.map(HeaderName::from_static);
    for name in FORWARDED_REQUEST_HEADERS.iter().chain(&caller) {
        for value in parts.headers.get_all(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let outgoing = outgoing.body(body).map_err(ForwardError::Unforwardable)?;
    Ok((session, outgoing))
}

/// True for a header the agent may receive: allowlisted from the browser, or a caller header.
pub fn is_tunnelled_header(name: &HeaderName) -> bool {
    FORWARDED_REQUEST_HEADERS.contains(name) || CALLER_HEADERS.contains(&name.as_str())
}

/// The raw (still percent-encoded) path after `prefix`, which must go on with `/`, and the query.
fn agent_target(uri: &Uri, prefix: &str) -> Option<String> {
    let rest = uri
        .path()
        .strip_prefix(prefix)
        .filter(|r| r.starts_with('/'))?;
    Some(match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    })
}

#[cfg(test)]
#[path = "forwarding_tests.rs"]
mod tests;
