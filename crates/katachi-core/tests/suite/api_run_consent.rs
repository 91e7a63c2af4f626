//! Runs where the sandbox is not enforced (Windows), forced here through the API state's seam:
//! refused before anything starts, with the consent command for the local user. The consent
//! itself (stored by the CLI) is tested end to end in `katachi-cli/tests/suite/hints.rs`.

use std::sync::Arc;

use katachi_core::api::{ApiLimits, ApiState, FixedWorkspaces};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::api_support::serve;

#[tokio::test]
async fn a_run_is_refused_where_the_sandbox_is_not_enforced_and_names_the_consent_command() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = std::fs::canonicalize(tmp.path()).unwrap().join("my ws");
    std::fs::create_dir(&ws).unwrap();
    let source = Arc::new(FixedWorkspaces::new([&ws]).unwrap());
    let (base, _task) = serve(ApiState::with_unenforced_sandbox(
        source,
        ApiLimits::default(),
    ))
    .await;
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/workspaces/1/run"))
        .body(json!({"command": "ls"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "sandbox.unenforced", "{body}");
    let expected = format!(
        "katachi sandbox policy set --workspace '{}' --allow-unsandboxed",
        ws.display()
    );
    assert_eq!(body["error"]["how_to_allow"], expected.as_str(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&expected),
        "{body}"
    );
}
