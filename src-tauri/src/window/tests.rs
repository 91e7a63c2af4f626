//! The window's commands on Tauri's mock runtime, over a fake agent port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use katachi_core::agent::Status;
use serde_json::{json, Value};
use tauri::test::{mock_builder, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{App, Listener, Manager, WebviewWindow};
use tokio::sync::mpsc;

use super::port::{
    AgentView, PortFuture, SignInRequest, SignInStarted, WorkspaceItem, WorkspacePolicy,
};
use super::*;

/// An agent that records what it was asked and keeps workspaces in memory.
#[derive(Default)]
struct FakeAgent {
    calls: Mutex<Vec<String>>,
    workspaces: Mutex<Vec<WorkspaceItem>>,
    statuses: Mutex<Option<mpsc::Receiver<AgentView>>>,
}

impl FakeAgent {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn list(&self) -> Vec<WorkspaceItem> {
        self.workspaces.lock().unwrap().clone()
    }
}

impl AgentPort for FakeAgent {
    fn status(&self) -> PortFuture<'_, AgentView> {
        Box::pin(async { Ok(view(Status::SignedOut { reason: None })) })
    }
    fn watch(&self) -> PortFuture<'_, mpsc::Receiver<AgentView>> {
        let taken = self.statuses.lock().unwrap().take();
        Box::pin(async move {
            taken.ok_or_else(|| IpcError::new(IpcCode::AgentUnreachable, "fake: watched once"))
        })
    }
    fn sign_in(&self, request: SignInRequest) -> PortFuture<'_, SignInStarted> {
        self.record(format!("sign_in {}", request.relay));
        Box::pin(async {
            Ok(SignInStarted {
                user_code: "ABCD-EFGH".into(),
                verification_uri: "https://relay.example/device".into(),
                verification_uri_complete: None,
                expires_at: 0,
            })
        })
    }
    fn cancel_sign_in(&self) -> PortFuture<'_, ()> {
        self.record("cancel_sign_in".into());
        Box::pin(async { Ok(()) })
    }
    fn sign_out(&self) -> PortFuture<'_, ()> {
        self.record("sign_out".into());
        Box::pin(async { Ok(()) })
    }
    fn workspaces(&self) -> PortFuture<'_, Vec<WorkspaceItem>> {
        let list = self.list();
        Box::pin(async move { Ok(list) })
    }
    fn add_workspace(&self, path: String) -> PortFuture<'_, Vec<WorkspaceItem>> {
        self.record(format!("add {path}"));
        self.workspaces.lock().unwrap().push(WorkspaceItem {
            exists: std::path::Path::new(&path).is_dir(),
            path,
            allowed_commands: Vec::new(),
            allowed_hosts: Vec::new(),
        });
        let list = self.list();
        Box::pin(async move { Ok(list) })
    }
    fn remove_workspace(&self, path: String) -> PortFuture<'_, Vec<WorkspaceItem>> {
        self.record(format!("remove {path}"));
        self.workspaces.lock().unwrap().retain(|w| w.path != path);
        let list = self.list();
        Box::pin(async move { Ok(list) })
    }
    fn set_policy(&self, policy: WorkspacePolicy) -> PortFuture<'_, Vec<WorkspaceItem>> {
        self.record(format!(
            "policy {} cmds={:?} hosts={:?}",
            policy.path, policy.allowed_commands, policy.allowed_hosts
        ));
        Box::pin(async { Ok(Vec::new()) })
    }
}

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn view(status: Status) -> AgentView {
    AgentView {
        status,
        last_heartbeat_at: Some(1_700_000_100),
    }
}

fn window_app(agent: Arc<FakeAgent>, view: View) -> Result<App<MockRuntime>, tauri::Error> {
    let args = WindowArgs {
        view,
        ..WindowArgs::default()
    };
    let context = WindowContext::new(agent, Err("no dirs in this test".into()), args);
    build_window_app(mock_builder(), context)
}

fn main_window(app: &App<MockRuntime>) -> Result<WebviewWindow<MockRuntime>, String> {
    app.get_webview_window(WINDOW_LABEL)
        .ok_or_else(|| "the set-up hook opened no window".to_owned())
}

/// Invokes `cmd` with `args` from `window`, as the page does: the answer or the `{code, message}`.
fn invoke(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    let request = InvokeRequest {
        cmd: cmd.into(),
        callback: tauri::ipc::CallbackFn(0),
        error: tauri::ipc::CallbackFn(1),
        url: "tauri://localhost".parse().map_err(|_| Value::Null)?,
        body: tauri::ipc::InvokeBody::Json(args),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_owned(),
    };
    tauri::test::get_ipc_response(window, request)
        .map(|body| body.deserialize::<Value>().unwrap_or(Value::Null))
}

#[test]
fn the_window_opens_on_the_view_from_the_command_line_and_hands_it_out_once() -> TestResult {
    let app = window_app(Arc::default(), View::Workspaces)?;
    let window = main_window(&app)?;
    let first = invoke(&window, "window_start", json!({})).map_err(|e| e.to_string())?;
    assert_eq!(
        first,
        json!({"view": "workspaces", "link": null, "reason": null})
    );
    let again = invoke(&window, "window_start", json!({})).map_err(|e| e.to_string())?;
    assert_eq!(again["view"], "status");
    Ok(())
}

#[test]
fn adding_a_workspace_goes_to_the_running_agent_and_returns_the_new_list() -> TestResult {
    let agent = Arc::new(FakeAgent::default());
    let app = window_app(Arc::clone(&agent), View::Workspaces)?;
    let window = main_window(&app)?;
    let folder = tempfile::tempdir()?;
    let path = folder.path().to_string_lossy().into_owned();

    let list =
        invoke(&window, "add_workspace", json!({ "path": path })).map_err(|e| e.to_string())?;
    assert_eq!(list[0]["path"], path.as_str());
    assert_eq!(list[0]["exists"], true);
    assert_eq!(agent.calls(), [format!("add {path}")]);

    let listed = invoke(&window, "list_workspaces", json!({})).map_err(|e| e.to_string())?;
    assert_eq!(listed, list);
    let after =
        invoke(&window, "remove_workspace", json!({ "path": path })).map_err(|e| e.to_string())?;
    assert_eq!(after, json!([]));
    Ok(())
}

#[test]
fn an_empty_workspace_path_is_invalid_input_and_never_reaches_the_agent() -> TestResult {
    let agent = Arc::new(FakeAgent::default());
    let app = window_app(Arc::clone(&agent), View::Workspaces)?;
    let err = invoke(
        &main_window(&app)?,
        "add_workspace",
        json!({ "path": "  " }),
    )
    .err()
    .ok_or("an empty path was accepted")?;
    assert_eq!(err["code"], "invalid_input");
    assert!(agent.calls().is_empty(), "{:?}", agent.calls());
    Ok(())
}

#[test]
fn a_policy_change_reaches_the_agent_with_blank_entries_dropped() -> TestResult {
    let agent = Arc::new(FakeAgent::default());
    let app = window_app(Arc::clone(&agent), View::Workspaces)?;
    let policy = json!({"policy": {
        "path": "/w", "allowed_commands": [" cargo ", ""], "allowed_hosts": ["crates.io", " "]
    }});
    invoke(&main_window(&app)?, "set_workspace_policy", policy).map_err(|e| e.to_string())?;
    assert_eq!(
        agent.calls(),
        [r#"policy /w cmds=["cargo"] hosts=["crates.io"]"#]
    );
    Ok(())
}

#[test]
fn sign_in_never_starts_when_the_relay_is_unreachable() -> TestResult {
    let agent = Arc::new(FakeAgent::default());
    let app = window_app(Arc::clone(&agent), View::Connect)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let err = invoke(
        &main_window(&app)?,
        "sign_in",
        json!({ "relay": format!("https://127.0.0.1:{port}") }),
    )
    .err()
    .ok_or("sign-in started against a closed port")?;
    assert_eq!(err["code"], "relay_unreachable", "{err}");
    assert!(err["message"]
        .as_str()
        .unwrap_or("")
        .contains("cannot reach the relay"));
    assert!(agent.calls().is_empty(), "{:?}", agent.calls());
    Ok(())
}

#[test]
fn a_relay_url_that_is_not_https_is_refused_before_any_request() -> TestResult {
    let agent = Arc::new(FakeAgent::default());
    let app = window_app(Arc::clone(&agent), View::Connect)?;
    let err = invoke(
        &main_window(&app)?,
        "check_relay",
        json!({ "relay": "http://relay.example" }),
    )
    .err()
    .ok_or("http:// accepted")?;
    assert_eq!(err["code"], "invalid_input");
    Ok(())
}

#[test]
fn every_status_of_the_agent_reaches_the_window_as_an_event() -> TestResult {
    let (tx, rx) = mpsc::channel(4);
    let agent = Arc::new(FakeAgent {
        statuses: Mutex::new(Some(rx)),
        ..FakeAgent::default()
    });
    let app = window_app(agent, View::Status)?;
    let window = main_window(&app)?;
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    window.listen(EVENT_STATUS, move |event| {
        let _ = seen_tx.send(event.payload().to_owned());
    });
    let connected = Status::Connected {
        since: 1_700_000_000,
        relay: "https://relay.example".into(),
        agent_name: "laptop".into(),
    };
    tx.blocking_send(view(Status::Connecting))?;
    tx.blocking_send(view(connected.clone()))?;
    let first: Value = serde_json::from_str(&seen_rx.recv_timeout(Duration::from_secs(10))?)?;
    let second: Value = serde_json::from_str(&seen_rx.recv_timeout(Duration::from_secs(10))?)?;
    assert_eq!(
        first,
        json!({"status": {"state": "connecting"}, "last_heartbeat_at": 1_700_000_100})
    );
    assert_eq!(second["status"], serde_json::to_value(&connected)?);
    Ok(())
}

#[test]
fn without_a_running_agent_commands_answer_agent_unreachable() -> TestResult {
    // a home with no agent: no control socket in its runtime folder
    let root = tempfile::tempdir()?;
    let dirs = katachi_core::KatachiDirs::under(root.path());
    let context = WindowContext::new(
        Arc::new(ControlPort::new(Ok(dirs.clone()))),
        Ok(dirs),
        WindowArgs::default(),
    );
    let app = build_window_app(mock_builder(), context)?;
    let window = main_window(&app)?;
    for cmd in ["agent_status", "cancel_sign_in", "sign_out"] {
        let err = invoke(&window, cmd, json!({}))
            .err()
            .ok_or(format!("{cmd} answered without an agent"))?;
        assert_eq!(err["code"], "agent_unreachable", "{cmd}: {err}");
        assert!(
            err["message"]
                .as_str()
                .unwrap_or("")
                .contains("not running"),
            "{cmd}: {err}"
        );
    }
    Ok(())
}

#[test]
fn a_link_given_at_start_is_validated_and_handed_to_the_page() -> TestResult {
    let context = WindowContext::new(
        Arc::new(FakeAgent::default()),
        Err("none".into()),
        WindowArgs {
            view: View::Connect,
            link: Some("katachi://connect?relay=https://relay.example:8443/".into()),
            reason: Some("no tray on this desktop".into()),
            ignored: Vec::new(),
        },
    );
    let app = build_window_app(mock_builder(), context)?;
    let start =
        invoke(&main_window(&app)?, "window_start", json!({})).map_err(|e| e.to_string())?;
    assert_eq!(start["view"], "connect");
    assert_eq!(start["reason"], "no tray on this desktop");
    assert_eq!(
        start["link"],
        json!({"Ok": {"relay": "https://relay.example:8443"}})
    );
    Ok(())
}

#[test]
fn a_window_other_than_the_main_one_cannot_call_the_windows_commands() -> TestResult {
    let agent = Arc::new(FakeAgent::default());
    let app = window_app(Arc::clone(&agent), View::Status)?;
    let status =
        tauri::WebviewWindowBuilder::new(&app, "status", tauri::WebviewUrl::default()).build()?;
    let err = invoke(&status, "add_workspace", json!({ "path": "/tmp" }))
        .err()
        .ok_or("another window added a workspace")?;
    assert!(err.to_string().contains("not allowed"), "{err}");
    assert!(agent.calls().is_empty());
    Ok(())
}

#[path = "ai_settings_tests.rs"]
mod ai_settings_tests;

#[test]
fn the_window_reports_its_start_up_phases_once_each_in_order() -> TestResult {
    let app = window_app(Arc::default(), View::Status)?;
    let window = main_window(&app)?;
    invoke(&window, "window_start", json!({})).map_err(|e| e.to_string())?;
    invoke(&window, "window_start", json!({})).map_err(|e| e.to_string())?;
    let ready =
        invoke(&window, "window_ready", json!({"pageMs": 42.5})).map_err(|e| e.to_string())?;
    assert!(ready.is_u64(), "{ready}");
    // an implausible figure from the page is ignored, not refused
    invoke(&window, "window_ready", json!({"pageMs": -1})).map_err(|e| e.to_string())?;
    let phases = app.state::<WindowContext>().phases();
    let names: Vec<&str> = phases
        .split(", ")
        .map(|phase| phase.rsplitn(3, ' ').nth(2).unwrap_or(phase))
        .collect();
    assert_eq!(
        names,
        ["app built", "window created", "first call"],
        "{phases}"
    );
    Ok(())
}
