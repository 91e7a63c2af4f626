//! Listing folders through the API: paged, `.gitignore`-aware, bounded.

use katachi_core::api::ApiLimits;
use reqwest::StatusCode;
use serde_json::Value;

use super::api_support::{code, ApiServer};

fn paths(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_deep_listing_pages_through_every_entry_once() {
    let s = ApiServer::start().await;
    for i in 0..30 {
        s.put_file(&format!("src/m{i:02}/mod.rs"), b"//");
    }
    s.put_file("README.md", b"#");
    let (_, all) = s.get_json(&s.ws_url("/tree?depth=3&limit=1000")).await;
    let all = paths(&all);
    assert_eq!(all.len(), 1 + 1 + 30 * 2);
    let mut got = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = s.ws_url(&format!(
            "/tree?depth=3&limit=7&cursor={}",
            super::api_support::encode(&cursor)
        ));
        let (status, page) = s.get_json(&url).await;
        assert_eq!(status, StatusCode::OK);
        got.extend(paths(&page));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["truncated"], true);
                cursor = c.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(got, all);
}

#[tokio::test]
async fn gitignored_entries_are_hidden_and_dependency_folders_are_not_entered() {
    let s = ApiServer::start().await;
    s.put_file(".gitignore", b"/dist\n*.tmp\n");
    s.put_file("dist/bundle.js", b"x");
    s.put_file("a.tmp", b"x");
    s.put_file("node_modules/pkg/index.js", b"x");
    s.put_file("src/main.rs", b"fn main() {}");
    s.put_file(".git/HEAD", b"ref: refs/heads/main\n");
    let (_, page) = s.get_json(&s.ws_url("/tree?depth=4")).await;
    assert_eq!(
        paths(&page),
        [".gitignore", "node_modules", "src", "src/main.rs"]
    );
    assert_eq!(page["entries"][1]["heavy"], true);
    // named explicitly, a dependency folder is listed
    let (_, page) = s.get_json(&s.ws_url("/tree?path=node_modules")).await;
    assert_eq!(paths(&page), ["node_modules/pkg"]);
}

#[tokio::test]
async fn a_huge_folder_is_listed_partially_and_said_so() {
    let limits = ApiLimits {
        tree_max_dir_entries: 50,
        ..ApiLimits::default()
    };
    let s = ApiServer::with_limits(limits).await;
    for i in 0..120 {
        s.put_file(&format!("huge/f{i:03}"), b"");
    }
    let (_, page) = s.get_json(&s.ws_url("/tree?path=huge&limit=1000")).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 50);
    assert_eq!(page["partial_dirs"][0], "huge");
}

#[tokio::test]
async fn a_file_is_not_a_folder() {
    let s = ApiServer::start().await;
    s.put_file("f", b"x");
    let (status, body) = s.get_json(&s.ws_url("/tree?path=f")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "path.not_a_directory")
    );
}
