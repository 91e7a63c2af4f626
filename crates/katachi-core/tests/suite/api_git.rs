//! Git status and diff through the API, on real repositories made with libgit2.

use std::path::Path;

use git2::Repository;
use reqwest::StatusCode;

use super::api_support::{code, ApiServer};

fn commit_all(dir: &Path) -> Repository {
    let repo = Repository::open(dir).unwrap_or_else(|_| Repository::init(dir).unwrap());
    {
        let mut cfg = repo.config().unwrap();
        cfg.set_str("user.name", "test").unwrap();
        cfg.set_str("user.email", "test@example.invalid").unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = repo.signature().unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, "commit", &tree, &parents)
            .unwrap();
    }
    repo
}

#[tokio::test]
async fn status_and_diff_show_a_change_made_on_disk() {
    let s = ApiServer::start().await;
    s.put_file("src/lib.rs", b"pub fn answer() -> u32 {\n    41\n}\n");
    commit_all(&s.ws);
    s.put_file("src/lib.rs", b"pub fn answer() -> u32 {\n    42\n}\n");
    s.put_file("NEW.md", b"new\n");

    let (status, body) = s.get_json(&s.ws_url("/git/status")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["repository"], "");
    assert!(body["head"].as_str().unwrap().len() == 40);
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{body}");
    assert_eq!(entries[0]["path"], "NEW.md");
    assert_eq!(entries[0]["unstaged"], "untracked");
    assert_eq!(entries[1]["path"], "src/lib.rs");
    assert_eq!(entries[1]["unstaged"], "modified");

    let (_, body) = s.get_json(&s.ws_url("/git/diff")).await;
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{body}");
    let patch = files[0]["patch"].as_str().unwrap();
    assert!(patch.contains("-    41\n+    42\n"), "{patch}");

    let (_, body) = s
        .get_json(&s.ws_url("/git/diff?include_untracked=true"))
        .await;
    assert_eq!(body["files"].as_array().unwrap().len(), 2);
    let (_, body) = s.get_json(&s.ws_url("/git/diff?mode=staged")).await;
    assert_eq!(body["files"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_folder_without_git_is_not_a_repository() {
    let s = ApiServer::start().await;
    let (status, body) = s.get_json(&s.ws_url("/git/status")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "git.not_a_repository")
    );
}

#[tokio::test]
async fn a_work_tree_redirected_outside_is_refused() {
    let s = ApiServer::start().await;
    s.put_file("f", b"x");
    let repo = commit_all(&s.ws);
    // a hostile config pointing the work tree at another folder
    repo.config()
        .unwrap()
        .set_str("core.worktree", s.outside.to_str().unwrap())
        .unwrap();
    let (status, body) = s.get_json(&s.ws_url("/git/diff")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "git.not_a_repository")
    );
    assert!(!body.to_string().contains("TOP-SECRET"));
}
