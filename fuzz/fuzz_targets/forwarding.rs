//! A browser's request for an agent, rebuilt into the agent's request directly and across one hop
//! between relay instances (`katachi_proto::forwarding`, what `katachi-relay`'s `tunnel.rs`,
//! `cluster/peers.rs` and `cluster/internal.rs` run), routed by axum with the relay's own route
//! patterns so the agent ids are the ones the relay's `Path` extractors decode.
//!
//! Input: the first line is the session hash the forwarding instance sends; the rest is a
//! browser request head (`request_text.rs` format) sent to the relay. Beyond "never panics":
//! - a request is forwarded only when the agent id the route decoded is the path's own segment
//!   (the id whose ownership the relay checked is the one in the path), and then never refused as
//!   invalid;
//! - the agent's request is the browser's path after `/agents/{id}/api`, byte for byte, with the
//!   query: a path under `…/api/v1/` reaches the agent under `/v1/`, and it is always a plain
//!   path (no scheme, no authority: it cannot be sent to another host);
//! - only the allowlisted browser headers (values unchanged) and the relay's caller headers reach
//!   the agent, every value a single line; the browser's own `x-katachi-*` headers never do;
//! - after the internal hop (the request rebuilt under `/internal/v1/agents/{id}`, routed again,
//!   taken back out) the agent gets the same method, path, query and headers, for the same agent
//!   id and session; a session hash that is not hex is refused there.
//!
//! Seeds (`corpus/forwarding/seed-*`, made by `fuzz/make_seeds.py`) are the workbench's real calls
//! with browser headers, and paths with encoded ids, dots and doubled slashes.

#![no_main]

#[path = "request_text.rs"]
mod request_text;

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::routing::any;
use axum::Router;
use katachi_proto::agent::{FORWARDED_SESSION_HEADER, FORWARDED_USER_ID_HEADER};
use katachi_proto::forwarding::{
    browser_request, internal_request, is_tunnelled_header, request_from_internal, ForwardError,
    BROWSER_ROUTE, CALLER_HEADERS, FORWARDED_REQUEST_HEADERS, INTERNAL_ROUTE,
};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

use request_text::is_single_line;

/// What the agent should receive, handed from the browser route to the internal one.
#[derive(Clone)]
struct Expected {
    agent_id: String,
    session: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

/// What the internal route saw, for the browser route to check.
#[derive(Default)]
struct Seen {
    /// Set when the internal route's handler ran.
    handled: bool,
}

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(session) = std::str::from_utf8(&data[..newline]) else {
        return;
    };
    let Some((head, _)) = request_text::parse(&data[newline + 1..]) else {
        return;
    };
    let Some(runtime) = runtime() else {
        return;
    };
    let mut request = Request::from_parts(head, Body::empty());
    request.extensions_mut().insert(session.to_owned());
    // the browser's request as the relay routes it; a path the route does not match is not ours
    let _ = runtime.block_on(browser_router().oneshot(request));
});

/// The relay's browser route, handled by [`forward_checked`].
fn browser_router() -> Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| Router::new().route(BROWSER_ROUTE, any(forward_checked)))
        .clone()
}

/// The internal listener's route, handled by [`internal_checked`].
fn internal_router() -> Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| Router::new().route(INTERNAL_ROUTE, any(internal_checked)))
        .clone()
}

fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().build().ok())
        .as_ref()
}

/// The relay's caller headers for the signed-in user.
fn caller() -> Vec<(&'static str, HeaderValue)> {
    vec![
        (FORWARDED_USER_ID_HEADER, HeaderValue::from_static("u-fuzz")),
        (
            FORWARDED_SESSION_HEADER,
            HeaderValue::from_static("0123456789abcdef"),
        ),
    ]
}

/// `ANY /agents/{id}/api/{*rest}`: the browser route's rebuilding, checked, then the internal hop.
async fn forward_checked(
    Path((agent_id, _rest)): Path<(String, String)>,
    req: Request,
) -> StatusCode {
    let session = req
        .extensions()
        .get::<String>()
        .cloned()
        .unwrap_or_default();
    let browser_path = req.uri().path().to_owned();
    let browser_query = req.uri().query().map(str::to_owned);
    let browser_headers = req.headers().clone();
    let method = req.method().clone();
    // the path's own agent segment, still encoded
    let raw_id = browser_path
        .strip_prefix("/agents/")
        .and_then(|p| p.split('/').next())
        .unwrap_or_default()
        .to_owned();

    let out = match browser_request(&agent_id, req, caller()) {
        Ok(out) => out,
        Err(ForwardError::NotThisRoute) => {
            assert_ne!(agent_id, raw_id, "the path's own agent was refused");
            return StatusCode::NOT_FOUND;
        }
        Err(e) => panic!("a routed browser request could not be rebuilt: {e}"),
    };
    assert_eq!(
        agent_id, raw_id,
        "forwarded for an id that is not the path's"
    );

    // The agent's path is the browser's after the prefix, with its query; a plain path.
    let uri = out.uri();
    assert!(uri.scheme().is_none() && uri.authority().is_none(), "{uri}");
    let prefix = format!("/agents/{agent_id}/api");
    assert_eq!(format!("{prefix}{}", uri.path()), browser_path);
    assert_eq!(uri.query(), browser_query.as_deref());
    assert!(uri.path().starts_with('/'));
    if browser_path.starts_with(&format!("{prefix}/v1/")) {
        assert!(uri.path().starts_with("/v1/"), "left /v1: {uri}");
    }
    assert_eq!(out.method(), method);

    // Only allowlisted headers, unchanged, and the relay's own caller headers.
    check_tunnelled_headers(out.headers(), &browser_headers);
    for name in CALLER_HEADERS {
        let sent: Vec<_> = out.headers().get_all(name).iter().cloned().collect();
        let relays: Vec<_> = caller()
            .into_iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(sent, relays, "{name} is not the relay's");
    }

    // The internal hop.
    let expected = Expected {
        agent_id: agent_id.clone(),
        session: session.clone(),
        method: out.method().clone(),
        uri: out.uri().clone(),
        headers: out.headers().clone(),
    };
    let mut internal = match internal_request(&agent_id, &session, out) {
        Ok(r) => r,
        Err(ForwardError::Unforwardable(_)) => {
            // only a session hash that is no header value (the relay's is always hex)
            assert!(HeaderValue::from_str(&session).is_err(), "{session:?}");
            return StatusCode::BAD_GATEWAY;
        }
        Err(e) => panic!("the internal hop refused a forwarded request: {e}"),
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    internal.extensions_mut().insert(expected);
    internal.extensions_mut().insert(seen.clone());
    let Ok(answer) = internal_router().oneshot(internal).await;
    let handled = seen.lock().map(|s| s.handled).unwrap_or(false);
    assert!(
        handled,
        "the internal route did not match {}",
        answer.status()
    );
    let hex_session = !session.is_empty() && session.bytes().all(|b| b.is_ascii_hexdigit());
    assert_eq!(
        answer.status() == StatusCode::OK,
        hex_session,
        "session {session:?} answered {}",
        answer.status()
    );
    StatusCode::OK
}

/// `ANY /internal/v1/agents/{agent_id}/{*rest}`: what the holding instance takes back out.
async fn internal_checked(
    Path((agent_id, _rest)): Path<(String, String)>,
    req: Request,
) -> StatusCode {
    let (Some(expected), Some(seen)) = (
        req.extensions().get::<Expected>().cloned(),
        req.extensions().get::<Arc<Mutex<Seen>>>().cloned(),
    ) else {
        panic!("the internal request lost its extensions");
    };
    if let Ok(mut seen) = seen.lock() {
        seen.handled = true;
    }
    assert_eq!(
        agent_id, expected.agent_id,
        "the internal path names another agent"
    );
    match request_from_internal(&agent_id, req) {
        Ok((session, tunnelled)) => {
            assert_eq!(session, expected.session);
            assert_eq!(tunnelled.method(), expected.method);
            assert_eq!(tunnelled.uri(), &expected.uri, "the hop changed the path");
            assert_eq!(
                tunnelled.headers(),
                &expected.headers,
                "the hop changed the headers"
            );
            StatusCode::OK
        }
        Err(ForwardError::NoSession) => StatusCode::BAD_REQUEST,
        Err(e) => panic!("the holding instance refused a forwarded request: {e}"),
    }
}

/// `sent` holds only tunnelled headers, single lines, and the browser's allowlisted ones unchanged.
fn check_tunnelled_headers(sent: &HeaderMap, browser: &HeaderMap) {
    for (name, value) in sent {
        assert!(is_tunnelled_header(name), "{name} reached the agent");
        assert!(is_single_line(value.as_bytes()), "{name}: {value:?}");
    }
    for name in &FORWARDED_REQUEST_HEADERS {
        let from: Vec<_> = browser.get_all(name).iter().collect();
        let to: Vec<_> = sent.get_all(name).iter().collect();
        assert_eq!(from, to, "{name} changed on the way");
    }
}
