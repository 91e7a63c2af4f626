use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::events::TextCarry;
use super::*;
use crate::api::{router, FixedWorkspaces};
use crate::sandbox::OutputStream;

fn app(dir: &Path) -> Router {
    router(ApiState::new(Arc::new(
        FixedWorkspaces::new([dir]).unwrap(),
    )))
}

fn post_run(body: &Value) -> Request<Body> {
    Request::post("/v1/workspaces/1/run")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn json_of(res: Response) -> Value {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Every NDJSON line of a finished run.
async fn lines_of(res: Response) -> Vec<Value> {
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.ends_with('\n'), "{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stdout_of(lines: &[Value]) -> String {
    lines
        .iter()
        .filter(|l| l["stream"] == "stdout")
        .map(|l| l["data"].as_str().unwrap())
        .collect()
}

/// Pids of processes whose command line contains `marker` (the sandbox's PID namespace is
/// still visible from here).
fn pids_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `tail -f` of a fresh log named after `marker`: a run that lasts until it is stopped.
async fn start_follow(app: &Router, dir: &Path, marker: &str) -> Response {
    std::fs::write(dir.join(format!("{marker}.log")), "first line\n").unwrap();
    let res = app
        .clone()
        .oneshot(post_run(
            &json!({"command": "tail", "args": ["-f", format!("{marker}.log")]}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res
}

#[tokio::test]
async fn ls_runs_in_the_sandbox_and_streams_its_output_then_exit_0() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("src")).unwrap();
    std::fs::write(tmp.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(tmp.path().join("Cargo.toml"), "[package]\n").unwrap();
    let res = app(tmp.path())
        .oneshot(post_run(&json!({"command": "ls", "args": ["-1"]})))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let lines = lines_of(res).await;
    assert_eq!(stdout_of(&lines), "Cargo.toml\nsrc\n");
    let last = lines.last().unwrap();
    assert_eq!(last["exit"], json!({"code": 0}), "{last}");
    assert_eq!(last["denied"], Value::Null);
    assert!(last["duration_ms"].is_u64());
    assert_eq!(last["output_bytes"], 15);
    let layers = last["layers"].as_array().unwrap();
    assert!(layers.iter().any(|l| l == "seccomp"), "{last}");

    // in a sub-folder, and a failing command's code comes through
    let res = app(tmp.path())
        .oneshot(post_run(
            &json!({"command": "ls", "args": ["main.rs", "missing"], "cwd": "src"}),
        ))
        .await
        .unwrap();
    let lines = lines_of(res).await;
    assert_eq!(stdout_of(&lines), "main.rs\n");
    assert!(lines.iter().any(|l| l["stream"] == "stderr"), "{lines:?}");
    assert_eq!(lines.last().unwrap()["exit"], json!({"code": 2}));
}

#[tokio::test]
async fn a_command_not_on_the_list_is_refused_with_403_and_a_structured_denial() {
    let tmp = tempfile::tempdir().unwrap();
    for command in ["rm", "sh", "/bin/ls", "../ls"] {
        let res = app(tmp.path())
            .oneshot(post_run(&json!({"command": command, "args": ["-rf", "."]})))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{command}");
        let body = json_of(res).await;
        assert_eq!(body["error"]["code"], "sandbox.denied", "{body}");
        assert_eq!(body["error"]["denied"]["kind"], "exec", "{body}");
        assert_eq!(body["error"]["denied"]["target"], command, "{body}");
        assert!(body["error"]["denied"]["how_to_allow"]
            .as_str()
            .is_some_and(|h| !h.is_empty()));
    }
}

#[tokio::test]
async fn a_cwd_outside_the_workspace_is_refused_with_the_path_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("file.txt"), "x").unwrap();
    std::os::unix::fs::symlink(tmp.path(), ws.join("out")).unwrap();
    for (cwd, status, code) in [
        ("..", StatusCode::BAD_REQUEST, "path.parent_dir"),
        ("/etc", StatusCode::BAD_REQUEST, "path.absolute"),
        ("out", StatusCode::FORBIDDEN, "path.outside_workspace"),
        ("missing", StatusCode::NOT_FOUND, "path.not_found"),
        ("file.txt", StatusCode::BAD_REQUEST, "path.not_a_directory"),
    ] {
        let res = app(&ws)
            .oneshot(post_run(&json!({"command": "ls", "cwd": cwd})))
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{cwd}");
        assert_eq!(json_of(res).await["error"]["code"], code, "{cwd}");
    }
}

#[tokio::test]
async fn malformed_requests_are_request_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    for body in [
        "not json".to_owned(),
        json!({"command": "ls", "shell": true}).to_string(),
        json!({"command": ""}).to_string(),
        json!({"command": "ls", "args": ["a\u{0}b"]}).to_string(),
        json!({"command": "ls", "timeout_secs": 0}).to_string(),
        "x".repeat(MAX_RUN_BODY_BYTES + 1),
    ] {
        let req = Request::post("/v1/workspaces/1/run")
            .body(Body::from(body.clone()))
            .unwrap();
        let res = app(tmp.path()).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body:.60}");
        assert_eq!(json_of(res).await["error"]["code"], "request.invalid");
    }
    let res = app(tmp.path())
        .oneshot(
            Request::post("/v1/workspaces/7/run")
                .body(Body::from(json!({"command": "ls"}).to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(json_of(res).await["error"]["code"], "workspace.not_found");
}

#[tokio::test]
async fn a_run_past_its_time_limit_ends_with_a_limit_denial_in_the_final_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("log"), "one\n").unwrap();
    let started = Instant::now();
    let res = app(tmp.path())
        .oneshot(post_run(
            &json!({"command": "tail", "args": ["-f", "log"], "timeout_secs": 1}),
        ))
        .await
        .unwrap();
    let lines = lines_of(res).await;
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(stdout_of(&lines), "one\n");
    let last = lines.last().unwrap();
    assert_eq!(last["denied"]["kind"], "limit", "{last}");
    assert_eq!(last["denied"]["target"], "wall time", "{last}");
    assert!(last["exit"].get("signal").is_some() || last["exit"]["code"] != 0);
}

#[tokio::test]
async fn denied_runs_reach_the_denial_feed_as_they_happen_but_cancelled_ones_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("log"), "one\n").unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let state = ApiState::new(Arc::new(FixedWorkspaces::new([tmp.path()]).unwrap()));
    let mut denials = state.denials().subscribe();
    let app = router(state);

    // refused up front: published before the 403 is answered
    let res = app
        .clone()
        .oneshot(post_run(
            &json!({"command": "curl", "args": ["-s", "example"]}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let denied = denials.try_recv().unwrap();
    assert_eq!(denied.workspace, root);
    assert_eq!(denied.command, "curl -s example");
    assert_eq!(denied.denied.kind, crate::sandbox::DenialKind::Exec);
    assert_eq!(denied.denied.target, "curl");
    assert!(!denied.denied.how_to_allow.is_empty());

    // ended by a limit during the run: published when it ends
    let res = app
        .clone()
        .oneshot(post_run(
            &json!({"command": "tail", "args": ["-f", "log"], "timeout_secs": 1}),
        ))
        .await
        .unwrap();
    lines_of(res).await;
    let denied = tokio::time::timeout(Duration::from_secs(10), denials.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(denied.denied.target, "wall time");
    assert_eq!(denied.command, "tail -f log");

    // a run its caller cancels is not a denial
    let marker = format!("katachi-run-feed-{}", std::process::id());
    let res = start_follow(&app, tmp.path(), &marker).await;
    drop(res);
    wait_until("the cancelled tail to be killed", || {
        pids_with(&marker).is_empty()
    })
    .await;
    // its end (published, if it were, right after the tree died) has passed: nothing came
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        denials.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test]
async fn a_client_that_goes_away_kills_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = format!("katachi-run-gone-{}", std::process::id());
    let res = start_follow(&app(tmp.path()), tmp.path(), &marker).await;
    let mut body = res.into_body();
    // the first line arrives while the command still runs
    let frame = body.frame().await.unwrap().unwrap();
    let first: Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
    assert_eq!(first["data"], "first line\n");
    assert!(!pids_with(&marker).is_empty(), "tail is not running");
    // the connection drops the body, as hyper does when the client disconnects
    drop(body);
    wait_until("the tail process to be killed", || {
        pids_with(&marker).is_empty()
    })
    .await;
}

#[tokio::test]
async fn runs_beyond_the_cap_are_429_until_one_has_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app(tmp.path());
    let mut running = Vec::new();
    for i in 0..MAX_CONCURRENT_RUNS {
        let marker = format!("katachi-run-cap-{}-{i}", std::process::id());
        running.push(start_follow(&app, tmp.path(), &marker).await);
    }
    let res = app
        .clone()
        .oneshot(post_run(&json!({"command": "ls"})))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(json_of(res).await["error"]["code"], "run.busy");
    // the slot frees once the cancelled run's tree is dead
    running.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app
            .clone()
            .oneshot(post_run(&json!({"command": "ls"})))
            .await
            .unwrap();
        if res.status() == StatusCode::OK {
            assert_eq!(lines_of(res).await.last().unwrap()["exit"]["code"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn binary_output_comes_as_base64() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = [0x89, b'P', b'N', b'G', 0, 0xff, 0xfe, b'\n'];
    std::fs::write(tmp.path().join("logo.bin"), bytes).unwrap();
    let res = app(tmp.path())
        .oneshot(post_run(&json!({"command": "cat", "args": ["logo.bin"]})))
        .await
        .unwrap();
    let lines = lines_of(res).await;
    let out = lines.iter().find(|l| l["stream"] == "stdout").unwrap();
    assert_eq!(out["encoding"], "base64");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(out["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, bytes);
}

#[tokio::test]
async fn the_command_list_and_status_describe_the_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let res = app(tmp.path())
        .oneshot(
            Request::get("/v1/workspaces/1/run/commands")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let list = json_of(res).await;
    let names: Vec<&str> = list["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ls") && names.contains(&"cat"), "{list}");
    assert!(names.iter().all(|n| DEFAULT_RUN_COMMANDS.contains(n)));
    assert_eq!(list["max_concurrent_runs"], MAX_CONCURRENT_RUNS);

    let res = app(tmp.path())
        .oneshot(Request::get("/v1/status").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = json_of(res).await;
    let sandbox = &status["sandbox"];
    assert_eq!(sandbox["platform"], "linux", "{status}");
    assert_eq!(sandbox["backend"], "linux");
    let layers = sandbox["layers"].as_array().unwrap();
    assert!(layers.iter().any(|l| l["name"] == "seccomp"), "{status}");
    let needed_all_on = layers
        .iter()
        .filter(|l| l["name"] != "proxy")
        .all(|l| l["active"] == true);
    assert_eq!(sandbox["enforced"], needed_all_on, "{status}");
}

#[test]
fn a_character_cut_between_chunks_is_carried_not_mangled() {
    let mut carry = TextCarry::default();
    let text = "héllo ✓";
    let bytes = text.as_bytes();
    // cut inside the three bytes of ✓
    let cut = bytes.len() - 1;
    let first = carry.push(OutputStream::Stdout, &bytes[..cut]).unwrap();
    assert_eq!(first.data, "héllo ");
    assert_eq!(first.encoding, None);
    let second = carry.push(OutputStream::Stdout, &bytes[cut..]).unwrap();
    assert_eq!(second.data, "✓");
    assert!(carry.finish(OutputStream::Stdout).is_none());
    // an unfinished character at the end of the stream is sent, as base64
    assert!(carry.push(OutputStream::Stdout, &[0xe2, 0x9c]).is_none());
    let rest = carry.finish(OutputStream::Stdout).unwrap();
    assert_eq!(rest.encoding.as_deref(), Some("base64"));
    assert_eq!(rest.data, "4pw=");
}

/// Workspaces from a real store, with the policy built from their stored overrides (as the agent's
/// home does, minus the keychain).
struct StoredWorkspaces {
    db: std::path::PathBuf,
    hidden: std::path::PathBuf,
}

impl StoredWorkspaces {
    fn store(&self) -> crate::store::Store {
        let key = crate::vault::DerivedKey::from_bytes([7; 32], crate::vault::Purpose::STORE);
        crate::store::Store::open(&self.db, &key).unwrap()
    }
}

impl crate::api::WorkspaceSource for StoredWorkspaces {
    fn allowed_workspaces(
        &self,
    ) -> Result<Vec<crate::store::Workspace>, crate::store::WorkspaceError> {
        self.store().workspaces().list()
    }

    fn sandbox_policy(
        &self,
        root: &Path,
    ) -> Result<crate::sandbox::policy::PolicyBuilder, crate::sandbox::OverrideError> {
        SandboxPolicy::for_workspace(&self.store(), root, std::slice::from_ref(&self.hidden))
    }
}

#[tokio::test]
async fn a_workspaces_stored_overrides_and_hidden_folders_shape_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let ws_dir = tmp.path().join("ws");
    let hidden = ws_dir.join("agent-state");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(hidden.join("secret"), "do not read").unwrap();
    std::fs::write(ws_dir.join("visible"), "shown\n").unwrap();
    let source = StoredWorkspaces {
        db: tmp.path().join("s.db"),
        hidden: hidden.clone(),
    };
    let store = source.store();
    let ws = match store.workspaces().add(&ws_dir, &[]).unwrap() {
        crate::store::AddOutcome::Added { workspace, .. } => workspace,
        other => panic!("{other:?}"),
    };
    let app = router(ApiState::new(Arc::new(source)));
    let run = |body: Value| {
        Request::post(format!("/v1/workspaces/{}/run", ws.id))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    // not allowed by default ...
    let res = app
        .clone()
        .oneshot(run(json!({"command": "echo", "args": ["hi"]})))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // ... allowed once the workspace's overrides say so, and listed with the defaults
    crate::sandbox::WorkspaceOverrides {
        allow_commands: vec!["echo".into()],
        ..Default::default()
    }
    .save(&store, &ws)
    .unwrap();
    let res = app
        .clone()
        .oneshot(run(json!({"command": "echo", "args": ["hi"]})))
        .await
        .unwrap();
    assert_eq!(stdout_of(&lines_of(res).await), "hi\n");
    let res = app
        .clone()
        .oneshot(
            Request::get(format!("/v1/workspaces/{}/run/commands", ws.id))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let list = json_of(res).await.to_string();
    assert!(
        list.contains("\"echo\"") && list.contains("\"ls\""),
        "{list}"
    );
    // the agent's folder stays invisible inside the workspace
    let res = app
        .clone()
        .oneshot(run(
            json!({"command": "cat", "args": ["agent-state/secret"]}),
        ))
        .await
        .unwrap();
    let lines = lines_of(res).await;
    assert_eq!(stdout_of(&lines), "");
    assert_ne!(lines.last().unwrap()["exit"]["code"], 0, "{lines:?}");
    // a damaged stored policy is a clear refusal naming the fix, not a weaker policy
    store
        .sandbox_overrides()
        .set(ws.id, "{\"allow_commands\": 7}")
        .unwrap();
    let res = app
        .clone()
        .oneshot(run(json!({"command": "ls"})))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let body = json_of(res).await;
    assert_eq!(body["error"]["code"], "sandbox.policy_invalid");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("katachi sandbox policy reset"));
}

#[test]
fn a_run_whose_runtime_shuts_down_is_killed_not_left_running() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = format!("katachi-run-shutdown-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let body = runtime.block_on(async {
        let res = start_follow(&app(tmp.path()), tmp.path(), &marker).await;
        let mut body = res.into_body();
        body.frame().await.unwrap().unwrap();
        body
    });
    assert!(!pids_with(&marker).is_empty(), "tail is not running");
    // the agent stops: its runtime drops every task, the run's supervisor among them
    drop(runtime);
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids_with(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the run outlived the runtime that supervised it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
