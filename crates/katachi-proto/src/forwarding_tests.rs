use http::Method;

use super::*;

const AGENT: &str = "agt_0123456789abcdef01234567";

fn caller() -> Vec<(&'static str, HeaderValue)> {
    vec![
        (FORWARDED_USER_ID_HEADER, HeaderValue::from_static("u-1")),
        (
            FORWARDED_SESSION_HEADER,
            HeaderValue::from_static("0123456789abcdef"),
        ),
    ]
}

fn browser(uri: &str) -> Request<()> {
    Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header(header::COOKIE, "katachi_session=secret")
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::RANGE, "bytes=0-1")
        .header(FORWARDED_USER_ID_HEADER, "forged")
        .header("x-katachi-internal-session", "ff")
        .body(())
        .unwrap()
}

#[test]
fn the_agent_gets_the_raw_rest_of_the_path_and_the_query() {
    let uri = format!("/agents/{AGENT}/api/v1/workspaces/1/file?path=a%2Fb.txt&expected=absent");
    let out = browser_request(AGENT, browser(&uri), caller()).unwrap();
    assert_eq!(out.method(), Method::PUT);
    assert_eq!(
        out.uri().to_string(),
        "/v1/workspaces/1/file?path=a%2Fb.txt&expected=absent"
    );
}

#[test]
fn only_allowlisted_browser_headers_and_the_relays_caller_headers_reach_the_agent() {
    let uri = format!("/agents/{AGENT}/api/v1/status");
    let out = browser_request(AGENT, browser(&uri), caller()).unwrap();
    let h = out.headers();
    assert!(h.get(header::COOKIE).is_none(), "cookies stay at the relay");
    assert!(h.get(INTERNAL_SESSION_HEADER).is_none());
    assert_eq!(h[header::CONTENT_TYPE], "text/plain");
    assert_eq!(h[header::RANGE], "bytes=0-1");
    let ids: Vec<_> = h.get_all(FORWARDED_USER_ID_HEADER).iter().collect();
    assert_eq!(ids, ["u-1"], "the browser's own caller header is dropped");
    assert!(h.keys().all(is_tunnelled_header));
}

#[test]
fn a_path_outside_the_agents_api_prefix_is_not_this_route() {
    for uri in [
        format!("/agents/{AGENT}/api"),
        format!("/agents/{AGENT}/apix/v1/status"),
        format!("/agents/{AGENT}x/api/v1/status"),
        "/agents/other/api/v1/status".to_owned(),
    ] {
        assert!(
            matches!(
                browser_request(AGENT, browser(&uri), caller()),
                Err(ForwardError::NotThisRoute)
            ),
            "{uri}"
        );
    }
}

#[test]
fn the_internal_hop_hands_the_agent_the_same_request() {
    let uri = format!("/agents/{AGENT}/api/v1/workspaces/1/file?path=src%2Fmain.rs");
    let direct = browser_request(AGENT, browser(&uri), caller()).unwrap();
    let expected_uri = direct.uri().clone();
    let expected_headers = direct.headers().clone();

    let internal = internal_request(AGENT, "abcdef0123", direct).unwrap();
    assert_eq!(
        internal.uri().to_string(),
        format!("{INTERNAL_PREFIX}{AGENT}/v1/workspaces/1/file?path=src%2Fmain.rs")
    );
    let (session, again) = request_from_internal(AGENT, internal).unwrap();
    assert_eq!(session, "abcdef0123");
    assert_eq!(again.method(), Method::PUT);
    assert_eq!(again.uri(), &expected_uri);
    assert_eq!(again.headers(), &expected_headers);
}

#[test]
fn an_internal_request_without_a_hex_session_is_refused() {
    let tunnelled = Request::get("/v1/status").body(()).unwrap();
    let internal = internal_request(AGENT, "abc", tunnelled).unwrap();
    let (parts, ()) = internal.into_parts();
    for session in [None, Some(""), Some("xyz"), Some("ab cd")] {
        let mut req = Request::from_parts(parts.clone(), ());
        req.headers_mut().remove(INTERNAL_SESSION_HEADER);
        if let Some(s) = session {
            req.headers_mut()
                .insert(INTERNAL_SESSION_HEADER, HeaderValue::from_str(s).unwrap());
        }
        assert!(
            matches!(
                request_from_internal(AGENT, req),
                Err(ForwardError::NoSession)
            ),
            "{session:?}"
        );
    }
}

#[test]
fn an_internal_path_for_another_agent_is_not_this_route() {
    let tunnelled = Request::get("/v1/status").body(()).unwrap();
    let internal = internal_request(AGENT, "abc", tunnelled).unwrap();
    assert!(matches!(
        request_from_internal("agt_other", internal),
        Err(ForwardError::NotThisRoute)
    ));
}
