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

/// The first backticked `katachi …` command in a hint: what the user is told to run.
fn command_in(hint: &str) -> String {
    let start = hint
        .find("`katachi ")
        .unwrap_or_else(|| panic!("no `katachi …` command in the hint: {hint}"));
    let rest = &hint[start + 1..];
    let end = rest
        .find('`')
        .unwrap_or_else(|| panic!("unclosed command: {hint}"));
    rest[..end].to_owned()
}

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

#[tokio::test]
async fn a_denied_command_names_a_policy_command_that_allows_it() {
    let home = Home::new();
    let (ws, id) = allowed_workspace(&home);
    std::fs::write(ws.join("f"), b"one\ntwo\n").unwrap();
    let app = agent_api(&home, false);
    let sed = json!({"command": "sed", "args": ["-n", "2p", "f"]});
    let (status, body) = api_run(&app, id, sed.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    let hint = body[0]["error"]["denied"]["how_to_allow"].as_str().unwrap();
    let given = run_as_written(&home, &command_in(hint));
    assert_eq!(given.code, 0, "{hint}: {}", given.stderr);
    let (status, lines) = api_run(&app, id, sed).await;
    assert_eq!(
        (status, stdout_of(&lines)),
        (StatusCode::OK, "two\n".to_owned())
    );
}

#[tokio::test]
async fn a_command_sent_as_a_path_is_told_its_plain_name_and_how_to_allow_it() {
    let home = Home::new();
    let (ws, id) = allowed_workspace(&home);
    std::fs::write(ws.join("f"), b"one\ntwo\n").unwrap();
    let app = agent_api(&home, false);
    // `cat` is allowed by default: the hint says to send its name, which then runs
    let (status, body) = api_run(&app, id, json!({"command": "/usr/bin/cat", "args": ["f"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    let hint = body[0]["error"]["denied"]["how_to_allow"].as_str().unwrap();
    assert!(hint.contains("send `cat`"), "{hint}");
    let (status, lines) = api_run(&app, id, json!({"command": "cat", "args": ["f"]})).await;
    assert_eq!(
        (status, stdout_of(&lines)),
        (StatusCode::OK, "one\ntwo\n".to_owned())
    );
    // `sed` is not: the hint's command allows its plain name, never the path the CLI refuses
    let (_, body) = api_run(
        &app,
        id,
        json!({"command": "/usr/bin/sed", "args": ["-n", "1p", "f"]}),
    )
    .await;
    let hint = body[0]["error"]["denied"]["how_to_allow"].as_str().unwrap();
    assert!(hint.contains("send `sed`"), "{hint}");
    let given = run_as_written(&home, &command_in(hint));
    assert_eq!(given.code, 0, "{hint}: {}", given.stderr);
    let (status, lines) = api_run(
        &app,
        id,
        json!({"command": "sed", "args": ["-n", "1p", "f"]}),
    )
    .await;
    assert_eq!(
        (status, stdout_of(&lines)),
        (StatusCode::OK, "one\n".to_owned())
    );
}

#[tokio::test]
async fn a_protected_env_file_names_the_command_that_allows_it() {
    let home = Home::new();
    let (ws, id) = allowed_workspace(&home);
    std::fs::write(ws.join(".env"), b"A=1\n").unwrap();
    let app = agent_api(&home, false);
    let read = || {
        app.clone().oneshot(
            Request::get(format!("/v1/workspaces/{id}/file?path=.env"))
                .body(Body::empty())
                .unwrap(),
        )
    };
    let res = read().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    let given = run_as_written(&home, &command_in(message));
    assert_eq!(given.code, 0, "{message}: {}", given.stderr);
    let res = read().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), b"A=1\n");
}

#[test]
fn a_denied_host_names_a_policy_command_that_allows_it() {
    let home = Home::new();
    let (ws, _) = allowed_workspace(&home);
    let (port, hits) = super::sandbox_proxy::upstream();
    let url = format!("http://localhost:{port}/");
    let ws_arg = ws.to_str().unwrap();
    let curl = [
        "sandbox",
        "run",
        "--workspace",
        ws_arg,
        "--allow-cmd",
        "curl",
        // some host allowed: the run gets its egress proxy, which refuses the others
        "--allow-host",
        "crates.io",
        "--",
        "curl",
        "-sS",
        "-p",
        "-m",
        "5",
        &url,
    ];
    let denied = home.run(&curl);
    assert_ne!(denied.code, 0);
    let line = denied
        .stderr
        .lines()
        .find(|l| l.contains("egress denied"))
        .unwrap_or_else(|| panic!("no denial: {}", denied.stderr))
        .to_owned();
    let given = run_as_written(&home, &command_in(&line));
    assert_eq!(given.code, 0, "{line}: {}", given.stderr);
    let allowed = home.run(&curl);
    assert_eq!(
        (allowed.code, allowed.stdout.as_str()),
        (0, "upstream-ok\n"),
        "{}",
        allowed.stderr
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
