//! The protected-path rule set through the API: every path in the set, over real loopback HTTP.
//! Writes to `.git/config`, `.git/hooks/**`, any `.git`, and `.env*` files are refused with
//! `path.protected` naming the rule; katachi's own folders are invisible (left out of tree and
//! search, refused for read, stat and write), also when reached through a symlink.

use std::os::unix::fs::symlink;

use reqwest::StatusCode;
use serde_json::Value;

use super::api_support::{code, encode, sha256_hex, ApiServer};

/// Asserts a `path.protected` refusal naming `rule`.
fn assert_protected(status: StatusCode, body: &Value, rule: &str) {
    assert_eq!(
        (status, code(body)),
        (StatusCode::FORBIDDEN, "path.protected"),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("(rule {rule})")), "{message}");
}

async fn read(s: &ApiServer, path: &str) -> (StatusCode, Value) {
    s.get_json(&s.ws_url(&format!("/file?path={}", encode(path))))
        .await
}

async fn stat(s: &ApiServer, path: &str) -> (StatusCode, Value) {
    s.get_json(&s.ws_url(&format!("/stat?path={}", encode(path))))
        .await
}

fn init_git(s: &ApiServer) {
    git2::Repository::init(&s.ws).unwrap();
}

#[tokio::test]
async fn replacing_git_config_is_refused_and_the_file_is_unchanged() {
    let s = ApiServer::start().await;
    init_git(&s);
    let config = s.ws.join(".git/config");
    let before = std::fs::read(&config).unwrap();
    let hostile = b"[core]\n\tfsmonitor = touch /tmp/pwned\n";
    let (status, body) = s.write(".git/config", &sha256_hex(&before), hostile).await;
    assert_protected(status, &body, "git.config");
    // any spelling that names the same file on a case-insensitive filesystem
    let (status, body) = s.write(".GIT/Config", &sha256_hex(&before), hostile).await;
    assert_protected(status, &body, "git.config");
    assert_eq!(std::fs::read(&config).unwrap(), before);
}

#[tokio::test]
async fn writing_a_git_hook_is_refused_new_or_existing() {
    let s = ApiServer::start().await;
    init_git(&s);
    let (status, body) = s
        .write(".git/hooks/pre-commit", "absent", b"#!/bin/sh\nid\n")
        .await;
    assert_protected(status, &body, "git.hooks");
    assert!(!s.ws.join(".git/hooks/pre-commit").exists());
    let sample = s.put_file(".git/hooks/post-checkout", b"#!/bin/sh\n");
    let (status, body) = s
        .write(
            ".git/hooks/post-checkout",
            &sha256_hex(b"#!/bin/sh\n"),
            b"#!/bin/sh\nid\n",
        )
        .await;
    assert_protected(status, &body, "git.hooks");
    assert_eq!(std::fs::read(sample).unwrap(), b"#!/bin/sh\n");
}

#[tokio::test]
async fn creating_or_replacing_a_git_file_is_refused_at_any_depth() {
    let s = ApiServer::start().await;
    std::fs::create_dir(s.ws.join("sub")).unwrap();
    for path in [".git", "sub/.git", "sub/.Git"] {
        let (status, body) = s.write(path, "absent", b"gitdir: /elsewhere/.git\n").await;
        assert_protected(status, &body, "git.create");
    }
    assert!(!s.ws.join(".git").exists() && !s.ws.join("sub/.git").exists());
    // an existing `.git` file (a linked work tree's pointer) cannot be redirected either
    s.put_file("wt/.git", b"gitdir: ../.git/worktrees/wt\n");
    let (status, body) = s
        .write(
            "wt/.git",
            &sha256_hex(b"gitdir: ../.git/worktrees/wt\n"),
            b"gitdir: /x\n",
        )
        .await;
    assert_protected(status, &body, "git.create");
}

#[tokio::test]
async fn other_files_inside_git_stay_writable() {
    let s = ApiServer::start().await;
    init_git(&s);
    s.put_file(".git/info/exclude", b"");
    let (status, body) = s
        .write(".git/info/exclude", &sha256_hex(b""), b"target/\n")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    std::fs::create_dir(s.ws.join("src")).unwrap();
    let (status, body) = s.write("src/config", "absent", b"x").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn env_files_are_neither_read_nor_written_nor_searched() {
    let s = ApiServer::start().await;
    s.put_file(".env", b"TOKEN=ENV-SECRET\n");
    s.put_file("app/.env.local", b"TOKEN=ENV-SECRET\n");
    for path in [".env", "app/.env.local"] {
        let (status, body) = read(&s, path).await;
        assert_protected(status, &body, "env.file");
        let (status, body) = stat(&s, path).await;
        assert_protected(status, &body, "env.file");
        let (status, body) = s
            .write(path, &sha256_hex(b"TOKEN=ENV-SECRET\n"), b"TOKEN=other\n")
            .await;
        assert_protected(status, &body, "env.file");
    }
    let (status, body) = s.write("app/.env.production", "absent", b"X=1\n").await;
    assert_protected(status, &body, "env.file");
    let (_, body) = s.get_json(&s.ws_url("/search?query=ENV-SECRET")).await;
    assert_eq!(body["matches"].as_array().unwrap().len(), 0, "{body}");
    assert_eq!(
        std::fs::read(s.ws.join(".env")).unwrap(),
        b"TOKEN=ENV-SECRET\n"
    );
}

#[tokio::test]
async fn katachi_folders_are_invisible_to_tree_and_search() {
    let s = ApiServer::with_katachi_folders(&["kdata", "nested/kconfig"]).await;
    s.put_file("kdata/store.db", b"KATACHI-SECRET\n");
    s.put_file("nested/kconfig/config.toml", b"KATACHI-SECRET\n");
    s.put_file("nested/visible.txt", b"visible\n");
    let (status, body) = s.get_json(&s.ws_url("/tree?depth=5")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let paths: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["nested", "nested/visible.txt"], "{body}");
    let (_, body) = s.get_json(&s.ws_url("/search?query=KATACHI-SECRET")).await;
    assert_eq!(body["matches"].as_array().unwrap().len(), 0, "{body}");
    assert_eq!(body["files_skipped"], 0, "{body}");
}

#[tokio::test]
async fn katachi_folders_are_refused_for_read_stat_tree_and_write() {
    let s = ApiServer::with_katachi_folders(&["kdata"]).await;
    s.put_file("kdata/store.db", b"KATACHI-SECRET\n");
    for (status, body) in [
        read(&s, "kdata/store.db").await,
        stat(&s, "kdata").await,
        s.get_json(&s.ws_url("/tree?path=kdata")).await,
        s.get_json(&s.ws_url("/search?query=x&path=kdata")).await,
        s.write("kdata/store.db", &sha256_hex(b"KATACHI-SECRET\n"), b"x")
            .await,
        s.write("kdata/new.txt", "absent", b"x").await,
    ] {
        assert_protected(status, &body, "katachi.folder");
        assert!(!body.to_string().contains("KATACHI-SECRET"));
    }
    assert!(!s.ws.join("kdata/new.txt").exists());
}

#[tokio::test]
async fn symlinks_into_protected_paths_are_caught() {
    let s = ApiServer::with_katachi_folders(&["kdata"]).await;
    init_git(&s);
    s.put_file("kdata/store.db", b"KATACHI-SECRET\n");
    s.put_file(".env", b"TOKEN=ENV-SECRET\n");
    let config = std::fs::read(s.ws.join(".git/config")).unwrap();
    symlink(".git/config", s.ws.join("cfg")).unwrap();
    symlink(".git/hooks", s.ws.join("hooks")).unwrap();
    symlink(".env", s.ws.join("settings")).unwrap();
    symlink("kdata/store.db", s.ws.join("db")).unwrap();
    symlink("kdata", s.ws.join("kd")).unwrap();

    let (status, body) = s.write("cfg", &sha256_hex(&config), b"[core]\n").await;
    assert_protected(status, &body, "git.config");
    let (status, body) = s.write("hooks/pre-push", "absent", b"#!/bin/sh\n").await;
    assert_protected(status, &body, "git.hooks");
    let (status, body) = read(&s, "settings").await;
    assert_protected(status, &body, "env.file");
    let (status, body) = read(&s, "db").await;
    assert_protected(status, &body, "katachi.folder");
    let (status, body) = s.get_json(&s.ws_url("/tree?path=kd")).await;
    assert_protected(status, &body, "katachi.folder");
    let (status, body) = s.write("kd/new", "absent", b"x").await;
    assert_protected(status, &body, "katachi.folder");
    assert_eq!(std::fs::read(s.ws.join(".git/config")).unwrap(), config);
}

#[tokio::test]
async fn an_agent_home_gives_the_api_the_rules_its_sandbox_gets() {
    use katachi_core::api::WorkspaceSource;
    use std::sync::Arc;

    // the workspace holds the agent's own folders, as the user's home does
    let home = super::support::TestHome::new();
    let agent = home.open("protected");
    let ws = std::fs::canonicalize(home.tmp.path()).unwrap();
    let store = agent.store().unwrap();
    let id = match store
        .workspaces()
        .add(&ws, &agent.protected_dirs())
        .unwrap()
    {
        katachi_core::store::AddOutcome::Added { workspace, .. } => workspace.id,
        other => panic!("{other:?}"),
    };
    katachi_core::sandbox::WorkspaceOverrides {
        allow_env_files: true,
        ..Default::default()
    }
    .save(&store, &store.workspaces().list().unwrap()[0])
    .unwrap();

    let policy = agent.sandbox_policy(&ws).unwrap().build().unwrap();
    let rules = agent.protected_paths(&ws).unwrap();
    assert_eq!(rules.katachi_folders(), policy.hidden());
    // data, config, runtime (lock, control socket) and state (the app's logs)
    assert_eq!(rules.katachi_folders().len(), 4);
    assert!(policy.hidden().iter().any(|h| h.ends_with("state")));
    assert!(rules.allow_env_files());
    assert!(policy.workspaces()[0].allow_env_files);

    std::fs::write(ws.join(".env"), b"A=1\n").unwrap();
    let data = std::fs::canonicalize(home.dirs.data()).unwrap();
    let data_rel = data.strip_prefix(&ws).unwrap().to_str().unwrap().to_owned();
    let (base, _task) = super::api_support::serve_source(Arc::new(agent)).await;
    let get = |route: String| {
        let url = format!("{base}/v1/workspaces/{id}{route}");
        async move {
            let res = reqwest::get(url).await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap_or_default())
        }
    };
    // the store itself is katachi's: refused, and left out of the tree
    let (status, body) = get(format!("/stat?path={}", encode(&data_rel))).await;
    assert_protected(status, &body, "katachi.folder");
    let (_, body) = get("/tree?depth=4".to_owned()).await;
    assert!(!body.to_string().contains("/data"), "{body}");
    // the workspace allows its `.env*` files: so does the API
    let (status, _) = get("/stat?path=.env".to_owned()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn git_status_and_diff_leave_out_katachi_folders_and_withhold_env_files() {
    let s = ApiServer::with_katachi_folders(&["kdata"]).await;
    s.put_file(".env", b"TOKEN=ENV-SECRET-1\n");
    s.put_file("kdata/config.toml", b"key = \"KATACHI-SECRET-1\"\n");
    s.put_file("main.rs", b"fn main() {}\n");
    // a repository that tracks both (committed before katachi was installed, say)
    let repo = git2::Repository::init(&s.ws).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &[])
        .unwrap();
    s.put_file(".env", b"TOKEN=ENV-SECRET-2\n");
    s.put_file("kdata/config.toml", b"key = \"KATACHI-SECRET-2\"\n");
    s.put_file("kdata/new.db", b"KATACHI-SECRET-3\n");
    s.put_file(".env.local", b"TOKEN=ENV-SECRET-3\n");

    let (status, body) = s.get_json(&s.ws_url("/git/status")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let paths: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [".env", ".env.local"], "{body}");
    for mode in ["head", "worktree", "staged"] {
        let url = s.ws_url(&format!("/git/diff?mode={mode}&include_untracked=true"));
        let (status, body) = s.get_json(&url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let text = body.to_string();
        assert!(
            !text.contains("SECRET") && !text.contains("kdata"),
            "{mode}: {text}"
        );
        for file in body["files"].as_array().unwrap() {
            assert_eq!(file["withheld"], true, "{file}");
        }
    }
}
