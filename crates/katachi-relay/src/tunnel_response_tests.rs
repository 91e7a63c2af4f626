//! The screen between an agent's answer and the browser, header by header.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::*;

/// An agent head from `(name, value)` pairs (repeats kept).
fn agent_head(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn screened(pairs: &[(&str, &str)]) -> HeaderMap {
    screen_agent_head(StatusCode::OK, &agent_head(pairs)).unwrap()
}

fn content_type_of(pairs: &[(&str, &str)]) -> (String, Option<String>) {
    let headers = screened(pairs);
    let text = |name| {
        headers
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
    };
    (
        text(header::CONTENT_TYPE).unwrap(),
        text(header::CONTENT_DISPOSITION),
    )
}

#[test]
fn headers_that_act_on_the_relays_origin_are_dropped() {
    let dangerous = [
        (
            "set-cookie",
            "__Host-katachi_session=stolen; Path=/; Secure",
        ),
        ("location", "https://evil.example/"),
        ("refresh", "0; url=https://evil.example/"),
        ("link", "<https://evil.example/x.css>; rel=stylesheet"),
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "*"),
        ("content-security-policy", "script-src 'unsafe-inline' *"),
        ("content-security-policy-report-only", "default-src *"),
        ("content-disposition", "inline; filename=\"a.html\""),
        ("clear-site-data", "\"cookies\", \"storage\""),
        ("service-worker-allowed", "/"),
        ("x-frame-options", "ALLOWALL"),
        ("strict-transport-security", "max-age=0"),
        ("referrer-policy", "unsafe-url"),
        ("cross-origin-opener-policy", "unsafe-none"),
        ("cache-control", "public, max-age=31536000"),
        ("x-content-type-options", "sniff"),
        ("vary", "*"),
        ("connection", "keep-alive"),
        ("x-katachi-user-id", "someone-else"),
    ];
    for (name, value) in dangerous {
        let headers = screened(&[("content-type", "application/json"), (name, value)]);
        assert!(
            headers.get(name).is_none(),
            "{name} reached the browser: {headers:?}"
        );
    }
}

#[test]
fn header_names_in_any_case_are_the_same_header() {
    let headers = screened(&[
        ("Set-Cookie", "a=1"),
        ("LOCATION", "https://evil.example/"),
        ("X-Katachi-SHA256", "ab12"),
    ]);
    assert!(headers.get("set-cookie").is_none());
    assert!(headers.get("location").is_none());
    assert_eq!(headers["x-katachi-sha256"], "ab12");
}

#[test]
fn the_apis_own_headers_cross_unchanged() {
    let sent = [
        ("content-length", "10"),
        ("content-range", "bytes 0-4/10"),
        ("accept-ranges", "bytes"),
        ("etag", "\"sha256:ab12\""),
        ("last-modified", "Wed, 02 Dec 2026 10:00:00 GMT"),
        ("retry-after", "1"),
        ("x-katachi-sha256", "ab12"),
        ("x-katachi-file-size", "10"),
    ];
    let mut pairs = vec![("content-type", "application/octet-stream")];
    pairs.extend(sent);
    let headers = screened(&pairs);
    for (name, value) in sent {
        assert_eq!(headers[name], value, "{name}");
    }
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(headers.get("content-disposition").is_none());
    assert_eq!(headers.len(), sent.len() + 1, "{headers:?}");
}

#[test]
fn a_repeated_allowed_header_is_dropped() {
    let headers = screened(&[
        ("x-katachi-sha256", "ab12"),
        ("x-katachi-sha256", "cd34"),
        ("etag", "\"a\""),
        ("ETag", "\"b\""),
    ]);
    assert!(headers.get("x-katachi-sha256").is_none(), "{headers:?}");
    assert!(headers.get("etag").is_none(), "{headers:?}");
}

#[test]
fn the_apis_content_types_cross_in_canonical_spelling() {
    for (sent, expected) in [
        ("application/json", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("Application/JSON;Charset=\"UTF-8\"", "application/json"),
        ("application/octet-stream", "application/octet-stream"),
        ("application/x-ndjson", "application/x-ndjson"),
        ("text/event-stream", "text/event-stream"),
        (" application/json ", "application/json"),
    ] {
        assert_eq!(
            content_type_of(&[("content-type", sent)]),
            (expected.to_owned(), None),
            "{sent}"
        );
    }
}

#[test]
fn any_other_content_type_becomes_a_download() {
    let download = (
        "application/octet-stream".to_owned(),
        Some("attachment".to_owned()),
    );
    for sent in [
        "text/html",
        "text/html; charset=utf-8",
        "TEXT/HTML",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "application/xhtml+xml",
        "text/plain",
        "text/javascript",
        "application/pdf",
        "multipart/x-mixed-replace; boundary=x",
        "application/json, text/html",
        "application/json; charset=utf-7",
        "application/json; boundary=x",
        "application/json;",
        "application/jsonx",
        "application/json+html",
        "",
    ] {
        assert_eq!(
            content_type_of(&[("content-type", sent)]),
            download,
            "{sent:?}"
        );
    }
    // None at all, or two (a browser might pick either).
    assert_eq!(content_type_of(&[]), download);
    assert_eq!(
        content_type_of(&[
            ("content-type", "application/json"),
            ("content-type", "text/html"),
        ]),
        download
    );
}

#[test]
fn a_content_type_that_is_not_text_becomes_a_download() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_bytes(b"application/json\xff").unwrap(),
    );
    let screened = screen_agent_head(StatusCode::OK, &headers).unwrap();
    assert_eq!(screened["content-type"], "application/octet-stream");
    assert_eq!(screened["content-disposition"], "attachment");
}

#[test]
fn redirects_are_refused_and_not_modified_passes() {
    let head = agent_head(&[("location", "https://evil.example/")]);
    for status in [300, 301, 302, 303, 307, 308] {
        let status = StatusCode::from_u16(status).unwrap();
        assert!(
            matches!(
                screen_agent_head(status, &head),
                Err(AgentAnswerError::Redirect(s)) if s == status
            ),
            "{status}"
        );
    }
    let headers = screen_agent_head(StatusCode::NOT_MODIFIED, &head).unwrap();
    assert!(headers.get("location").is_none());
    for status in [200, 206, 404, 429, 500] {
        let status = StatusCode::from_u16(status).unwrap();
        assert!(screen_agent_head(status, &head).is_ok(), "{status}");
    }
}

#[tokio::test]
async fn the_relays_own_headers_replace_whatever_the_answer_carried() {
    let response = Response::builder()
        .header("content-security-policy", "script-src 'unsafe-inline'")
        .header("content-security-policy", "default-src *")
        .header("x-content-type-options", "sniff")
        .header("cache-control", "public, max-age=600")
        .body(Body::empty())
        .unwrap();
    let response = set_relay_headers(response).await;
    let headers = response.headers();
    let all = |name| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        all("content-security-policy"),
        ["default-src 'none'; sandbox"]
    );
    assert_eq!(all("x-content-type-options"), ["nosniff"]);
    assert_eq!(all("cache-control"), ["no-store"]);
}
