//! Denials tell the truth: each hint a refusal gives is run here exactly as written (through
//! `sh -c`, with the built `katachi` first on `PATH`), and the refused action must then work.
//! The agent API is driven in-process over the same agent home, as the tunnel drives it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use katachi_core::api::{router, ApiLimits, ApiState};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::{AgentHome, KatachiDirs};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::support::{finish, Home, Run};

/// Runs `command` as a user would paste it into a shell on the agent's machine.
fn run_as_written(home: &Home, command: &str) -> Run {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_katachi"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", command])
        .env("PATH", path)
        .env("KATACHI_HOME", home.home())
        .output()
        .unwrap();
    finish(out)
}

/// A workspace (with a space in its name: hints must quote it) allowed in `home`, and its id.
fn allowed_workspace(home: &Home) -> (std::path::PathBuf, i64) {
    let ws = home.mkdir("projects/my app");
    let add = home.run(&["--json", "workspace", "add", ws.to_str().unwrap()]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let id = add.json()["workspace"]["id"].as_i64().unwrap();
    (std::fs::canonicalize(ws).unwrap(), id)
}

/// The agent API over `home`'s agent; `unenforced` makes runs act as on Windows.
fn agent_api(home: &Home, unenforced: bool) -> axum::Router {
    let agent = AgentHome::open(KatachiDirs::under(&home.home()), &SystemFingerprint).unwrap();
    let source = Arc::new(agent);
    router(if unenforced {
        ApiState::with_unenforced_sandbox(source, ApiLimits::default())
    } else {
        ApiState::new(source)
    })
}

/// POSTs a run; the status and either the error body or the NDJSON lines.
async fn api_run(app: &axum::Router, id: i64, body: Value) -> (StatusCode, Vec<Value>) {
    let res = app
        .clone()
        .oneshot(
            Request::post(format!("/v1/workspaces/{id}/run"))
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let lines = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (status, lines)
}

fn stdout_of(lines: &[Value]) -> String {
    lines
        .iter()
        .filter(|l| l["stream"] == "stdout")
        .filter_map(|l| l["data"].as_str())
        .collect()
}

#[tokio::test]
async fn an_unenforced_sandbox_refuses_runs_until_the_hinted_consent_is_given() {
    let home = Home::new();
    let (ws, id) = allowed_workspace(&home);
    std::fs::write(ws.join("hello.txt"), b"hi\n").unwrap();
    let app = agent_api(&home, true);

    let (status, body) = api_run(&app, id, json!({"command": "ls"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    let error = &body[0]["error"];
    assert_eq!(error["code"], "sandbox.unenforced", "{body:?}");
    let hint = error["how_to_allow"].as_str().unwrap();
    assert!(error["message"].as_str().unwrap().contains(hint), "{error}");
    assert!(hint.ends_with("--allow-unsandboxed"), "{hint}");

    // the local user runs the command as written: the run is then allowed
    let given = run_as_written(&home, hint);
    assert_eq!(given.code, 0, "{hint}: {}", given.stderr);
    let (status, lines) = api_run(&app, id, json!({"command": "ls"})).await;
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(stdout_of(&lines), "hello.txt\n", "{lines:?}");
    let shown = home.run(&[
        "--json",
        "sandbox",
        "policy",
        "show",
        "--workspace",
        ws.to_str().unwrap(),
    ]);
    assert_eq!(
        shown.json()["effective"]["allow_unsandboxed"],
        true,
        "{}",
        shown.stdout
    );

    // `policy reset` takes the consent back
    let reset = home.run(&[
        "sandbox",
        "policy",
        "reset",
        "--workspace",
        ws.to_str().unwrap(),
    ]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let (status, _) = api_run(&app, id, json!({"command": "ls"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_enforced_sandbox_runs_without_any_consent() {
    let home = Home::new();
    let (ws, id) = allowed_workspace(&home);
    std::fs::write(ws.join("a"), b"").unwrap();
    let (status, lines) = api_run(&agent_api(&home, false), id, json!({"command": "ls"})).await;
    assert_eq!(
        (status, stdout_of(&lines)),
        (StatusCode::OK, "a\n".to_owned())
    );
}
