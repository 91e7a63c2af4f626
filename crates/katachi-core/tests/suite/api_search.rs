//! Searching through the API: literal or regex, bounded, ignore-aware.

use katachi_core::api::ApiLimits;
use reqwest::StatusCode;

use super::api_support::{code, encode, ApiServer};

#[tokio::test]
async fn literal_and_regex_searches_find_lines_with_positions() {
    let s = ApiServer::start().await;
    s.put_file("src/a.rs", b"fn alpha() {}\nfn beta() {}\n");
    s.put_file("src/b.rs", b"// calls alpha()\n");
    s.put_file("target/debug/junk", b"alpha\n");
    s.put_file(".gitignore", b"target/\n");
    let (status, body) = s.get_json(&s.ws_url("/search?query=alpha()")).await;
    assert_eq!(status, StatusCode::OK);
    let m = body["matches"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{body}");
    assert_eq!(m[0]["path"], "src/a.rs");
    assert_eq!(m[0]["line_number"], 1);
    assert_eq!(m[0]["submatches"][0], serde_json::json!([3, 10]));
    assert_eq!(m[1]["path"], "src/b.rs");

    let url = s.ws_url(&format!("/search?regex=true&query={}", encode(r"fn \w+\(")));
    let (_, body) = s.get_json(&url).await;
    assert_eq!(body["matches"].as_array().unwrap().len(), 2);
    // search one folder only
    let (_, body) = s
        .get_json(&s.ws_url("/search?query=alpha&path=src/b.rs"))
        .await;
    assert_eq!(body["matches"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_patterns_are_refused() {
    let s = ApiServer::start().await;
    for q in [
        "regex=true&query=%28",
        "query=",
        "regex=true&query=a%7B99999%7D%7B99999%7D",
    ] {
        let (status, body) = s.get_json(&s.ws_url(&format!("/search?{q}"))).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "search.invalid_pattern"),
            "{q}"
        );
    }
    let (status, body) = s.get_json(&s.ws_url("/search")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "request.invalid")
    );
}

#[tokio::test]
async fn results_are_capped_by_the_agent() {
    let limits = ApiLimits {
        search_max_results: 5,
        ..ApiLimits::default()
    };
    let s = ApiServer::with_limits(limits).await;
    s.put_file("many.txt", "hit\n".repeat(100).as_bytes());
    let (_, body) = s
        .get_json(&s.ws_url("/search?query=hit&max_results=1000"))
        .await;
    assert_eq!(body["matches"].as_array().unwrap().len(), 5);
    assert_eq!(body["truncated"], true);
}
