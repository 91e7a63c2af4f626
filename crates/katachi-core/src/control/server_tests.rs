//! The control socket over a real Unix socket, served for a real [`Agent`] (its supervisor) whose
//! relay link is scripted to stay connected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{oneshot, watch, Notify};

use super::protocol::codes;
use super::{Client, ControlError, ControlServer};
use crate::agent::online::{Online, Running, SessionOutcome};
use crate::agent::{Agent, AgentEnd, Status};
use crate::agent_status::AgentStatus;
use crate::fingerprint::{Fingerprint, FixedFingerprint};
use crate::tunnel::{NetworkChanges, NoNetworkChanges, TunnelError, TunnelStatus};
use crate::vault::MemoryKeystore;
use crate::{AgentHome, KatachiDirs, SessionEnd};

/// A relay link that connects at once and stays up until stopped.
struct StaysConnected;

impl Online for StaysConnected {
    fn relay(&self) -> String {
        "https://relay.test".to_owned()
    }

    fn agent_name(&self) -> String {
        "agt_control".to_owned()
    }

    fn session(
        &self,
        stop: oneshot::Receiver<()>,
        _status: watch::Sender<AgentStatus>,
        _wake: Arc<Notify>,
    ) -> Running<SessionOutcome> {
        Box::pin(async move {
            let _ = stop.await;
            Ok(SessionEnd::Stopped)
        })
    }

    fn tunnel(
        &self,
        status: watch::Sender<TunnelStatus>,
        _network: Box<dyn NetworkChanges>,
    ) -> Running<TunnelError> {
        Box::pin(async move {
            status.send_replace(TunnelStatus::Connected {
                since: 1,
                carrier: Default::default(),
            });
            std::future::pending::<TunnelError>().await
        })
    }
}

/// A running agent with its control socket in a temp home.
struct Harness {
    tmp: tempfile::TempDir,
    dirs: KatachiDirs,
    agent: Agent,
    task: tokio::task::JoinHandle<AgentEnd>,
    home: Arc<AgentHome>,
    server: Option<ControlServer>,
}

async fn running() -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = KatachiDirs::under(&tmp.path().join("home"));
    let fingerprint = FixedFingerprint(
        Fingerprint::from_components([("machine_id".to_owned(), b"control-test".to_vec())])
            .unwrap(),
    );
    let home = AgentHome::open_with_keystore(
        dirs.clone(),
        &fingerprint,
        Box::new(MemoryKeystore::default()),
    )
    .unwrap();
    let (agent, task) = Agent::start_with(StaysConnected, Box::new(NoNetworkChanges));
    let home = Arc::new(home);
    let server = ControlServer::start(&dirs, agent.clone(), Arc::clone(&home)).unwrap();
    Harness {
        tmp,
        dirs,
        agent,
        task,
        home,
        server: Some(server),
    }
}

async fn client(dirs: &KatachiDirs) -> Client {
    Client::connect(dirs).await.unwrap().expect("an agent runs")
}

async fn wait_for(agent: &Agent, state: &str) {
    let mut rx = agent.status();
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|s| s.state_word() == state),
    )
    .await
    .expect("state reached in time")
    .unwrap();
}

#[tokio::test]
async fn socket_is_private_and_a_second_server_is_refused() {
    let r = running().await;
    let path = r.server.as_ref().unwrap().path().to_path_buf();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(r.dirs.runtime_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);

    let err = ControlServer::start(&r.dirs, r.agent.clone(), Arc::clone(&r.home)).unwrap_err();
    assert!(matches!(err, ControlError::AlreadyServing(_)), "{err:?}");
    // the first server still answers
    let report = client(&r.dirs).await.status().await.unwrap();
    assert_eq!(report.pid, std::process::id());
}

#[tokio::test]
async fn dropped_server_removes_its_socket_and_a_stale_socket_is_replaced() {
    let mut r = running().await;
    let path = r.server.as_ref().unwrap().path().to_path_buf();
    drop(r.server.take());
    assert!(!path.exists(), "the socket file is removed on drop");
    assert!(Client::connect(&r.dirs).await.unwrap().is_none());

    // a crashed agent leaves its socket file behind: nobody answers there
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert!(Client::connect(&r.dirs).await.unwrap().is_none());
    let server = ControlServer::start(&r.dirs, r.agent.clone(), Arc::clone(&r.home)).unwrap();
    let report = client(&r.dirs).await.status().await.unwrap();
    assert_eq!(report.status.state_word(), "connected");
    drop(server);
}

#[tokio::test]
async fn commands_are_applied_to_the_running_agent() {
    let r = running().await;
    wait_for(&r.agent, "connected").await;
    let mut c = client(&r.dirs).await;
    let report = c.status().await.unwrap();
    assert!(
        matches!(report.status, Status::Connected { ref agent_name, .. } if agent_name == "agt_control"),
        "{report:?}"
    );

    c.pause(Duration::from_secs(3600)).await.unwrap();
    wait_for(&r.agent, "paused").await;
    c.resume().await.unwrap();
    wait_for(&r.agent, "connected").await;
    let err = c.resume().await.unwrap_err();
    assert_eq!(err.refusal_code(), Some("agent.not_now"), "{err}");

    let ws = r.tmp.path().join("code");
    std::fs::create_dir(&ws).unwrap();
    c.workspace_add(&ws).await.unwrap();
    let listed = c.workspace_list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].exists);
    let err = c
        .workspace_remove(&r.tmp.path().join("elsewhere"))
        .await
        .unwrap_err();
    assert_eq!(err.refusal_code(), Some("workspace.not_allowed"), "{err}");

    c.stop().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), r.task)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(end, AgentEnd::Stopped), "{end:?}");
}

#[tokio::test]
async fn a_policy_set_then_reset_through_the_socket_leaves_the_default_policy_in_the_store() {
    let r = running().await;
    let mut c = client(&r.dirs).await;
    let ws = r.tmp.path().join("code");
    std::fs::create_dir(&ws).unwrap();
    c.workspace_add(&ws).await.unwrap();
    let overrides_in_store = || {
        let store = r.home.store().unwrap();
        let ws = crate::workspace_admin::workspace_of(&store, &ws).unwrap();
        crate::sandbox::WorkspaceOverrides::load(&store, &ws).unwrap()
    };

    let set = c
        .policy_set(crate::workspace_admin::PolicyChange {
            workspace: ws.clone(),
            allow_hosts: vec!["api.example.com".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(set.overrides.allow_hosts, ["api.example.com"]);
    assert_eq!(overrides_in_store().allow_hosts, ["api.example.com"]);

    let reset = c.policy_reset(&ws).await.unwrap();
    assert!(reset.removed, "{reset:?}");
    assert!(overrides_in_store().is_empty());
    // Again: nothing to remove, and it says so.
    assert!(!c.policy_reset(&ws).await.unwrap().removed);

    let err = c
        .policy_reset(&r.tmp.path().join("elsewhere"))
        .await
        .unwrap_err();
    assert_eq!(err.refusal_code(), Some("workspace.not_allowed"), "{err}");
    // A relative path on the wire is refused, not resolved against the agent's folder.
    let (read, mut write) = tokio::net::UnixStream::connect(r.server.as_ref().unwrap().path())
        .await
        .unwrap()
        .into_split();
    write
        .write_all(b"{\"cmd\":\"policy_reset\",\"workspace\":\"code\"}\n")
        .await
        .unwrap();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await.unwrap();
    assert!(line.contains("workspace.relative"), "{line}");
}

#[tokio::test]
async fn status_stream_delivers_a_change() {
    let r = running().await;
    wait_for(&r.agent, "connected").await;
    let mut stream = client(&r.dirs).await.watch().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.status.state_word(), "connected");

    client(&r.dirs)
        .await
        .pause(Duration::from_secs(60))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let report = stream.next().await.unwrap().unwrap();
            if report.status.state_word() == "paused" {
                return report;
            }
        }
    })
    .await
    .expect("the pause is streamed");
    assert!(matches!(next.status, Status::Paused { .. }));
}

#[tokio::test]
async fn malformed_and_overlong_lines_get_typed_errors() {
    let r = running().await;
    let path = r.server.as_ref().unwrap().path().to_path_buf();
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"{\"cmd\":\"fly\"}\n").await.unwrap();
    let reply: serde_json::Value =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(reply["error"]["code"], codes::BAD_REQUEST);

    // the connection is still served after a bad line
    write.write_all(b"{\"cmd\":\"status\"}\n").await.unwrap();
    let reply: serde_json::Value =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert!(reply["ok"]["status"]["state"].is_string(), "{reply}");

    let long = vec![b'x'; super::protocol::MAX_LINE + 10];
    write.write_all(&long).await.unwrap();
    let reply: serde_json::Value =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(reply["error"]["code"], codes::LINE_TOO_LONG);
    // then closed (a reset, when the rest of the long line was still unread)
    assert!(
        !matches!(lines.next_line().await, Ok(Some(_))),
        "then closed"
    );
}

#[tokio::test]
async fn a_peer_running_as_another_user_is_refused_by_its_uid() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: switching a client to another uid needs root");
        return;
    }
    let r = running().await;
    let path = r.server.as_ref().unwrap().path().to_path_buf();
    // open the way for uid 65534 (folders traversable, socket writable): only the peer check
    // is left to refuse it
    let mut dir = path.parent().unwrap().to_path_buf();
    loop {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        if dir == r.tmp.path() {
            break;
        }
        dir = dir.parent().unwrap().to_path_buf();
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    // the refusal comes first, before any request: read it without sending
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        s.connect(sys.argv[1])\n\
        sys.stdout.write(s.makefile().readline())\n";
    let path_arg = path.clone();
    let out = tokio::task::spawn_blocking(move || {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(&path_arg)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["error"]["code"], codes::FORBIDDEN, "{reply}");
    assert!(reply.get("ok").is_none());
    // the agent's own user is still served
    assert!(client(&r.dirs).await.status().await.is_ok());
}

#[tokio::test]
async fn sign_in_commands_reach_the_agent_and_answer_with_its_codes() {
    let r = running().await;
    wait_for(&r.agent, "connected").await;
    let mut c = client(&r.dirs).await;
    let err = c.sign_in("not a url", None, None).await.unwrap_err();
    assert_eq!(err.refusal_code(), Some("relay.invalid_url"), "{err}");
    let err = c
        .sign_in("https://relay.test", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.refusal_code(), Some("agent.already_signed_in"), "{err}");
    let err = c.cancel_sign_in().await.unwrap_err();
    assert_eq!(err.refusal_code(), Some("agent.not_now"), "{err}");
}

#[test]
fn request_lines_parse_with_defaults_and_aliases() {
    use super::lock::FrontEnd;
    use super::protocol::{Request, RequestLine};
    let line: RequestLine = serde_json::from_str(r#"{"cmd":"unregister"}"#).unwrap();
    assert_eq!(line.by, FrontEnd::Cli);
    assert_eq!(line.request, Request::SignOut { local_only: false });
    let line: RequestLine = serde_json::from_str(
        r#"{"cmd":"policy_set","by":"app","workspace":"/w","allow_hosts":["a.b"]}"#,
    )
    .unwrap();
    assert_eq!(line.by, FrontEnd::App);
    let Request::PolicySet(change) = &line.request else {
        panic!("{line:?}")
    };
    assert_eq!(change.allow_hosts, ["a.b"]);
    let back: RequestLine = serde_json::from_str(&serde_json::to_string(&line).unwrap()).unwrap();
    assert_eq!(back, line);
    assert!(serde_json::from_str::<RequestLine>(r#"{"cmd":"pause"}"#).is_err());
    let line: RequestLine =
        serde_json::from_str(r#"{"cmd":"policy_reset","workspace":"/w"}"#).unwrap();
    assert_eq!(
        line.request,
        Request::PolicyReset {
            workspace: "/w".into()
        }
    );
    assert_eq!(line.request.name(), "policy_reset");
}
