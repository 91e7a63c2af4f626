//! Git status and diff through the API, on real repositories made with libgit2.

use std::path::Path;

use git2::Repository;
use reqwest::StatusCode;

use super::api_support::{code, ApiServer};

pub(super) fn commit_all(dir: &Path) -> Repository {
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

/// A repository in `outside/repo` with `SECRET.txt` (content and name carry the secret) committed.
fn outside_repo(s: &ApiServer) -> (std::path::PathBuf, git2::Oid) {
    let dir = s.outside.join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("SECRET.txt"), b"SECRET-CONTENT-42\n").unwrap();
    let repo = commit_all(&dir);
    let oid = repo.head().unwrap().target().unwrap();
    (dir, oid)
}

/// Points the workspace repository's HEAD at `oid`, written as git would (libgit2 refuses a
/// reference to an object it cannot see yet).
fn point_head_at(s: &ApiServer, oid: git2::Oid) {
    s.put_file(".git/refs/heads/main", format!("{oid}\n").as_bytes());
    s.put_file(".git/HEAD", b"ref: refs/heads/main\n");
}

/// Asks status and diff (every mode); each must be refused naming `route`, and no answer may
/// carry the outside repository's secret.
async fn assert_refused_without_secret(s: &ApiServer, route: &str) {
    for url in [
        "/git/status",
        "/git/diff",
        "/git/diff?mode=staged",
        "/git/diff?mode=worktree&include_untracked=true",
    ] {
        let (status, body) = s.get_json(&s.ws_url(url)).await;
        let text = body.to_string();
        assert!(!text.contains("SECRET"), "{url} leaked: {text}");
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "git.outside_workspace"),
            "{url}: {text}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("({route})")), "{message}");
        assert!(!message.contains(s.outside.to_str().unwrap()), "{message}");
    }
}

#[tokio::test]
async fn a_git_file_pointing_at_an_outside_repository_is_refused() {
    let s = ApiServer::start().await;
    let (dir, _) = outside_repo(&s);
    s.put_file(
        ".git",
        format!("gitdir: {}\n", dir.join(".git").display()).as_bytes(),
    );
    assert_refused_without_secret(&s, "gitdir").await;
}

#[tokio::test]
async fn a_relative_git_file_climbing_out_of_the_workspace_is_refused() {
    let s = ApiServer::start().await;
    outside_repo(&s);
    s.put_file(".git", b"gitdir: ../outside/repo/.git\n");
    assert_refused_without_secret(&s, "gitdir").await;
}

#[tokio::test]
async fn a_commondir_leading_outside_is_refused() {
    let s = ApiServer::start().await;
    let (dir, _) = outside_repo(&s);
    Repository::init(&s.ws).unwrap();
    // a linked work tree's git dir: HEAD, refs and objects come from the common dir
    s.put_file(
        ".git/commondir",
        format!("{}\n", dir.join(".git").display()).as_bytes(),
    );
    assert_refused_without_secret(&s, "commondir").await;
}

#[tokio::test]
async fn alternates_leading_outside_are_refused_absolute_relative_or_chained() {
    for shape in ["absolute", "relative", "chained"] {
        let s = ApiServer::start().await;
        let (dir, oid) = outside_repo(&s);
        Repository::init(&s.ws).unwrap();
        // HEAD names the outside commit; only the alternates can supply its objects
        point_head_at(&s, oid);
        let target = dir.join(".git/objects");
        let list = match shape {
            "absolute" => target.display().to_string(),
            "relative" => "../../../outside/repo/.git/objects".to_owned(),
            _ => {
                // an inside store whose own alternates lead out
                s.put_file(
                    "store/objects/info/alternates",
                    target.display().to_string().as_bytes(),
                );
                s.ws.join("store/objects").display().to_string()
            }
        };
        s.put_file(".git/objects/info/alternates", list.as_bytes());
        assert_refused_without_secret(&s, "alternates").await;
    }
}

#[tokio::test]
async fn a_symlinked_object_store_or_loose_object_folder_is_refused() {
    for shape in ["store", "loose"] {
        let s = ApiServer::start().await;
        let (dir, oid) = outside_repo(&s);
        Repository::init(&s.ws).unwrap();
        point_head_at(&s, oid);
        let objects = s.ws.join(".git/objects");
        if shape == "store" {
            std::fs::remove_dir_all(&objects).unwrap();
            std::os::unix::fs::symlink(dir.join(".git/objects"), &objects).unwrap();
        } else {
            // a loose object of the outside repository, planted as a symlink
            let src = dir.join(".git/objects");
            for fan in std::fs::read_dir(&src).unwrap() {
                let fan = fan.unwrap();
                let name = fan.file_name();
                if name == "info" || name == "pack" {
                    continue;
                }
                std::os::unix::fs::symlink(fan.path(), objects.join(&name)).unwrap();
            }
        }
        assert_refused_without_secret(&s, "objects").await;
    }
}

#[tokio::test]
async fn a_symlinked_index_is_refused() {
    let s = ApiServer::start().await;
    let (dir, _) = outside_repo(&s);
    Repository::init(&s.ws).unwrap();
    // the outside index lists `SECRET.txt`: status would show it as a staged addition
    std::os::unix::fs::symlink(dir.join(".git/index"), s.ws.join(".git/index")).unwrap();
    assert_refused_without_secret(&s, "index").await;
}

#[tokio::test]
async fn a_work_tree_redirected_outside_is_refused() {
    let s = ApiServer::start().await;
    let (dir, _) = outside_repo(&s);
    s.put_file("f", b"x");
    let repo = commit_all(&s.ws);
    // a hostile config pointing the work tree at another folder (its files would be diffed)
    repo.config()
        .unwrap()
        .set_str("core.worktree", dir.to_str().unwrap())
        .unwrap();
    assert_refused_without_secret(&s, "worktree").await;
}

#[tokio::test]
async fn a_repository_kept_whole_inside_the_workspace_is_still_read() {
    let s = ApiServer::start().await;
    s.put_file("a.txt", b"one\n");
    let repo = commit_all(&s.ws);
    // alternates inside the workspace are fine
    let store = s.ws.join("shared-objects");
    std::fs::create_dir_all(store.join("info")).unwrap();
    s.put_file(
        ".git/objects/info/alternates",
        store.display().to_string().as_bytes(),
    );
    drop(repo);
    s.put_file("a.txt", b"two\n");
    let (status, body) = s.get_json(&s.ws_url("/git/diff")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["files"][0]["path"], "a.txt");
}

#[tokio::test]
async fn a_workspace_that_is_not_a_repository_says_so_by_name() {
    let s = ApiServer::start().await;
    let (_, body) = s.get_json(&s.ws_url("/git/status")).await;
    assert_eq!(
        body["error"]["message"],
        "this workspace is not a git repository"
    );
}
