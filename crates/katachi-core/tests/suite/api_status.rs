//! The agent's status and workspace list through the API, over a fixed list and over a real store.

use std::sync::{Arc, Mutex};

use katachi_core::api::WorkspaceSource;
use katachi_core::store::{Workspace, WorkspaceError};
use reqwest::StatusCode;

use super::api_support::{code, serve_source, ApiServer};
use super::support::TestHome;

#[tokio::test]
async fn status_reports_the_version_and_workspace_count() {
    let s = ApiServer::start().await;
    let (status, body) = s.get_json(&format!("{}/v1/status", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["api_version"], 1);
    assert_eq!(body["workspaces"], 1);
    let (_, body) = s.get_json(&format!("{}/v1/workspaces", s.base)).await;
    assert_eq!(body["workspaces"][0]["id"], 1);
    assert_eq!(body["workspaces"][0]["name"], "ws");
    assert_eq!(body["workspaces"][0]["path"], s.ws.to_str().unwrap());
}

/// A source whose list a test changes while the server runs.
struct Changing(Mutex<Vec<Workspace>>);

impl WorkspaceSource for Changing {
    fn allowed_workspaces(&self) -> Result<Vec<Workspace>, WorkspaceError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

#[tokio::test]
async fn a_removed_workspace_is_refused_on_the_next_call() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    let ws = Workspace {
        id: 7,
        path: std::fs::canonicalize(tmp.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned(),
        added_at: 0,
    };
    let source = Arc::new(Changing(Mutex::new(vec![ws])));
    let (base, _task) = serve_source(source.clone()).await;
    let url = format!("{base}/v1/workspaces/7/file?path=f");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);
    source.0.lock().unwrap().clear();
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(&res.json().await.unwrap()), "workspace.not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_home_serves_the_workspaces_of_its_store() {
    let home = TestHome::new();
    let agent = home.open("api");
    let folder = home.tmp.path().join("project");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("main.rs"), b"fn main() {}\n").unwrap();
    let id = match agent
        .store()
        .unwrap()
        .workspaces()
        .add(&folder, &[])
        .unwrap()
    {
        katachi_core::store::AddOutcome::Added { workspace, .. } => workspace.id,
        other => panic!("{other:?}"),
    };
    let (base, _task) = serve_source(Arc::new(agent)).await;
    let res = reqwest::get(format!("{base}/v1/status")).await.unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["workspaces"], 1);
    let res = reqwest::get(format!("{base}/v1/workspaces/{id}/file?path=main.rs"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"fn main() {}\n");
}
