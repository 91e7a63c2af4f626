//! The core's agent runtime ([`katachi_core::agent::Agent`]) against the real relay, in-process:
//! status transitions, pause and resume seen from the relay, revocation, clean stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_core::agent::{
    Agent, AgentConfig, AgentEnd, CommandError, SignInRequest, Status, WhenSignedOut,
};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::signing::SystemClock;
use katachi_core::store::Actor;
use katachi_core::tunnel::NoNetworkChanges;
use katachi_core::{
    AgentCredentials, AgentHome, KatachiDirs, RelayUrl, SessionEnd, SessionOptions,
};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::relay_client::sign_in;
use super::relay_support::{LocalRelay, PATIENCE};
use super::support::Home;

/// An agent home and its running runtime.
pub(super) struct Running {
    pub(super) rt: Runtime,
    pub(super) home: Arc<AgentHome>,
    pub(super) agent: Agent,
    task: Option<JoinHandle<AgentEnd>>,
    pub(super) agent_id: String,
    pub(super) user_id: String,
    _dir: Home,
}

/// Launches the runtime on `dir` with one-second heartbeats.
fn launch(dir: Home, when: WhenSignedOut) -> Running {
    let home =
        Arc::new(AgentHome::open(KatachiDirs::under(&dir.home()), &SystemFingerprint).unwrap());
    drop(home.store().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = AgentConfig {
        home: home.clone(),
        options: SessionOptions {
            heartbeat_every: Duration::from_secs(1),
        },
        clock: Arc::new(SystemClock),
        network: Box::new(NoNetworkChanges),
        when_signed_out: when,
    };
    let (agent, task) = rt.block_on(async { Agent::launch(config) });
    Running {
        rt,
        home,
        agent,
        task: Some(task),
        agent_id: String::new(),
        user_id: String::new(),
        _dir: dir,
    }
}

/// A home registered at `relay` (credentials saved), its runtime launched.
pub(super) fn start_agent(relay: &LocalRelay, when: WhenSignedOut) -> Running {
    let (credentials, user_id) = sign_in(relay);
    let dir = Home::new();
    {
        let home = AgentHome::open(KatachiDirs::under(&dir.home()), &SystemFingerprint).unwrap();
        credentials.save(&home).unwrap();
    }
    let mut running = launch(dir, when);
    running.agent_id = credentials.agent_id().to_owned();
    running.user_id = user_id;
    running
}

/// The sign-in request for `relay`, pinned to its CA.
fn request(relay: &LocalRelay) -> SignInRequest {
    SignInRequest {
        relay: RelayUrl::parse(relay.url()).unwrap(),
        ca_pem: Some(std::fs::read_to_string(relay.ca()).unwrap()),
        device_name: Some("runtime-test".to_owned()),
    }
}

impl Running {
    /// Waits (up to [`PATIENCE`]) for a status that satisfies `check`.
    pub(super) fn status_until(&self, what: &str, check: impl Fn(&Status) -> bool) -> Status {
        let mut status = self.agent.status();
        let last = self.agent.status();
        self.rt.block_on(async {
            let seen = tokio::time::timeout(PATIENCE, status.wait_for(|s| check(s)))
                .await
                .unwrap_or_else(|_| panic!("never: {what}; last: {:?}", *last.borrow()));
            seen.map(|s| s.clone())
                .unwrap_or_else(|_| panic!("the agent ended before: {what}"))
        })
    }

    /// How the agent's task ended (within [`PATIENCE`]).
    pub(super) fn end(&mut self) -> AgentEnd {
        let task = self.task.take().unwrap();
        self.rt
            .block_on(async { tokio::time::timeout(PATIENCE, task).await })
            .expect("the agent did not end")
            .unwrap()
    }
}

/// Polls `check` until it holds.
pub(super) fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_runtime_connects_and_a_pause_takes_the_agent_off_the_relay_until_resumed() {
    let relay = LocalRelay::start();
    let mut agent = start_agent(&relay, WhenSignedOut::End);
    let connected = agent.status_until("connected", |s| matches!(s, Status::Connected { .. }));
    let Status::Connected {
        relay: url,
        agent_name,
        since,
    } = connected
    else {
        unreachable!()
    };
    assert_eq!(url, relay.url());
    // The name it registered under (relay_client::sign_in sends "lib-test"), not its id.
    assert_eq!(agent_name, "lib-test");
    assert_ne!(agent_name, agent.agent_id);
    assert!(since > 0);

    let handle = agent.agent.clone();
    agent
        .rt
        .block_on(handle.pause(Duration::from_secs(3600)))
        .unwrap();
    assert!(matches!(
        *agent.agent.status().borrow(),
        Status::Paused { .. }
    ));
    // Paused: the relay holds no tunnel from the agent.
    eventually("the relay sees no tunnel while paused", || {
        !relay.close_tunnel(&agent.agent_id)
    });

    agent.rt.block_on(handle.resume()).unwrap();
    agent.status_until("connected again", |s| matches!(s, Status::Connected { .. }));
    // The relay registers the tunnel just after the agent sees it up.
    eventually("a tunnel at the relay after resume", || {
        relay.close_tunnel(&agent.agent_id)
    });

    agent.rt.block_on(handle.stop()).unwrap();
    assert!(matches!(agent.end(), AgentEnd::Stopped));
    let file = katachi_core::StatusFile::new(agent.home.dirs().agent_status_path());
    let last = file.read().unwrap().unwrap();
    assert_eq!(last.state, katachi_core::ConnectionState::Stopped);
}

#[test]
fn a_revoked_agent_ends_signed_out_with_its_credentials_wiped() {
    let relay = LocalRelay::start();
    let mut agent = start_agent(&relay, WhenSignedOut::End);
    agent.status_until("connected", |s| matches!(s, Status::Connected { .. }));
    relay.revoke(&agent.agent_id, &agent.user_id);
    let end = agent.end();
    assert!(
        matches!(
            end,
            AgentEnd::Session(SessionEnd::Revoked {
                credentials_wiped: true
            })
        ),
        "{end:?}"
    );
    assert!(matches!(
        &*agent.agent.status().borrow(),
        Status::SignedOut { reason: Some(r) } if r.contains("revoked")
    ));
    assert!(AgentCredentials::load(&agent.home).unwrap().is_none());
    // Nothing runs any more: commands are refused.
    let handle = agent.agent.clone();
    assert!(agent.rt.block_on(handle.reconnect_now()).is_err());
}

#[test]
fn a_fresh_agent_signs_in_through_the_runtime_and_goes_online_by_itself() {
    let relay = LocalRelay::start();
    let mut agent = launch(Home::new(), WhenSignedOut::Stay);
    agent.status_until("signed out", |s| {
        matches!(s, Status::SignedOut { reason: None })
    });
    // Not registered: what needs a registration is refused with a typed error.
    let handle = agent.agent.clone();
    assert_eq!(
        agent.rt.block_on(handle.sign_out(false)),
        Err(CommandError::NotSignedIn)
    );
    assert!(matches!(
        agent.rt.block_on(handle.pause(Duration::from_secs(60))),
        Err(CommandError::NotNow { .. })
    ));

    let started = agent.rt.block_on(handle.sign_in(request(&relay))).unwrap();
    assert!(started.safe_to_open, "{}", started.url_to_open);
    assert!(started.url_to_open.starts_with(relay.url()));
    let waiting = agent.status_until("waiting", |s| {
        matches!(s, Status::WaitingForApproval { .. })
    });
    let Status::WaitingForApproval {
        user_code,
        expires_at,
        ..
    } = waiting
    else {
        unreachable!()
    };
    assert_eq!(user_code, started.user_code);
    assert!(expires_at > katachi_cli_now());
    // A second sign-in while registered is refused; while waiting it replaces the first code.
    let user = relay.create_user();
    relay.decide(&started.user_code, &user, true);
    let connected = agent.status_until("connected", |s| matches!(s, Status::Connected { .. }));
    let Status::Connected { agent_name, .. } = connected else {
        unreachable!()
    };
    // Shown by the device name the sign-in sent; the saved credentials keep it.
    assert_eq!(agent_name, "runtime-test");
    let saved = AgentCredentials::load(&agent.home).unwrap().unwrap();
    assert_eq!(saved.device_name(), Some("runtime-test"));
    assert_eq!(
        agent
            .agent
            .registered()
            .borrow()
            .as_ref()
            .map(|r| r.agent_id.clone()),
        Some(saved.agent_id().to_owned())
    );
    assert_eq!(relay.agents_of(&user).len(), 1);
    assert!(matches!(
        agent.rt.block_on(handle.sign_in(request(&relay))),
        Err(CommandError::AlreadySignedIn { .. })
    ));

    // Sign out: the relay forgets the agent, the credentials go, and it can sign in again.
    agent.rt.block_on(handle.sign_out(false)).unwrap();
    assert!(matches!(
        *agent.agent.status().borrow(),
        Status::SignedOut { reason: None }
    ));
    assert!(AgentCredentials::load(&agent.home).unwrap().is_none());
    assert!(relay.agents_of(&user).is_empty());
    assert!(agent.agent.registered().borrow().is_none());
    let again = agent.rt.block_on(handle.sign_in(request(&relay))).unwrap();
    assert_ne!(again.user_code, started.user_code);
    agent.rt.block_on(handle.cancel_sign_in()).unwrap();
    agent.status_until("signed out after cancel", |s| {
        matches!(s, Status::SignedOut { reason: None })
    });
    agent.rt.block_on(handle.stop()).unwrap();
    assert!(matches!(agent.end(), AgentEnd::Stopped));
}

#[test]
fn a_sign_in_at_an_unreachable_relay_is_refused_with_its_code_and_the_agent_stays_signed_out() {
    let relay = LocalRelay::start();
    let mut request = request(&relay);
    request.relay = RelayUrl::parse("https://127.0.0.1:9").unwrap();
    let agent = launch(Home::new(), WhenSignedOut::Stay);
    let handle = agent.agent.clone();
    let err = agent.rt.block_on(handle.sign_in(request)).unwrap_err();
    assert_eq!(err.code(), "relay.unreachable", "{err}");
    assert!(err.to_string().contains("check that the relay"), "{err}");
    let status = agent.status_until("signed out", |s| matches!(s, Status::SignedOut { .. }));
    assert!(
        matches!(&status, Status::SignedOut { reason: Some(r) } if r.contains("127.0.0.1:9")),
        "{status:?}"
    );
    // Still running: a sign-in at the right relay works.
    let started = agent.rt.block_on(handle.sign_in(self::request(&relay)));
    assert!(started.is_ok(), "{started:?}");
}

#[test]
fn a_denied_sign_in_leaves_the_tray_agent_signed_out_with_the_reason() {
    let relay = LocalRelay::start();
    let agent = launch(Home::new(), WhenSignedOut::Stay);
    let handle = agent.agent.clone();
    let started = agent.rt.block_on(handle.sign_in(request(&relay))).unwrap();
    let user = relay.create_user();
    relay.decide(&started.user_code, &user, false);
    agent.status_until(
        "signed out, denied",
        |s| matches!(s, Status::SignedOut { reason: Some(r) } if r.contains("denied")),
    );
    assert!(AgentCredentials::load(&agent.home).unwrap().is_none());
}

#[test]
fn an_expired_code_is_replaced_by_a_fresh_one_without_asking() {
    let relay = LocalRelay::start_with(|config| config.device_code_ttl = 2);
    let agent = launch(Home::new(), WhenSignedOut::Stay);
    let handle = agent.agent.clone();
    let started = agent.rt.block_on(handle.sign_in(request(&relay))).unwrap();
    let fresh = agent.status_until("a fresh code", |s| {
        matches!(s, Status::WaitingForApproval { user_code, .. } if *user_code != started.user_code)
    });
    let Status::WaitingForApproval { user_code, .. } = fresh else {
        unreachable!()
    };
    // The fresh code is the one the relay now accepts.
    let user = relay.create_user();
    relay.decide(&user_code, &user, true);
    agent.status_until("connected", |s| matches!(s, Status::Connected { .. }));
}

#[test]
fn a_revoked_tray_agent_stays_up_signed_out_and_can_sign_in_again() {
    let relay = LocalRelay::start();
    let agent = start_agent(&relay, WhenSignedOut::Stay);
    agent.status_until("connected", |s| matches!(s, Status::Connected { .. }));
    relay.revoke(&agent.agent_id, &agent.user_id);
    agent.status_until(
        "signed out",
        |s| matches!(s, Status::SignedOut { reason: Some(r) } if r.contains("revoked")),
    );
    assert!(agent.agent.registered().borrow().is_none());
    let handle = agent.agent.clone();
    let started = agent.rt.block_on(handle.sign_in(request(&relay)));
    assert!(started.is_ok(), "{started:?}");
}

/// Wall-clock unix seconds.
fn katachi_cli_now() -> i64 {
    super::relay_support::now()
}

#[test]
fn workspaces_changed_through_the_handle_are_listed_at_once_with_missing_folders_marked() {
    let agent = launch(Home::new(), WhenSignedOut::Stay);
    let handle = agent.agent.clone();
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept");
    let gone = dir.path().join("gone");
    std::fs::create_dir(&kept).unwrap();
    std::fs::create_dir(&gone).unwrap();
    for path in [&kept, &gone] {
        agent
            .rt
            .block_on(handle.add_workspace(Actor::Tray, path.clone()))
            .unwrap();
    }
    std::fs::remove_dir(&gone).unwrap();
    let listed = agent.rt.block_on(handle.list_workspaces()).unwrap();
    let exists: Vec<(bool, bool)> = listed
        .iter()
        .map(|w| (w.path.ends_with("kept"), w.exists))
        .collect();
    assert_eq!(exists.len(), 2, "{listed:?}");
    assert!(exists.contains(&(true, true)) && exists.contains(&(false, false)));
    // The same store the API reads: what the handle removed is gone for it too.
    agent
        .rt
        .block_on(handle.remove_workspace(Actor::Tray, kept.canonicalize().unwrap()))
        .unwrap();
    let store = agent.home.store().unwrap();
    let left = store.workspaces().list().unwrap();
    assert_eq!(left.len(), 1);
    let refused = agent
        .rt
        .block_on(handle.add_workspace(Actor::Tray, dir.path().join("nowhere")))
        .unwrap_err();
    assert_eq!(refused.code(), "workspace.not_found", "{refused}");
}

#[test]
fn an_idle_agents_heartbeats_do_not_rewrite_the_status_file_each_time_but_a_change_does() {
    let relay = LocalRelay::start();
    let mut agent = start_agent(&relay, WhenSignedOut::End);
    agent.status_until("connected", |s| matches!(s, Status::Connected { .. }));
    let file = katachi_core::StatusFile::new(agent.home.dirs().agent_status_path());
    let online = katachi_core::ConnectionState::Online;
    eventually("the file says online with a heartbeat", || {
        file.read()
            .ok()
            .flatten()
            .is_some_and(|s| s.state == online && s.last_heartbeat_at.is_some())
    });
    let written = file.read().unwrap().unwrap();
    let first_beat = written.last_heartbeat_at.unwrap();

    // One-second heartbeats: the live status moves on three more beats...
    let session = agent.agent.session_status();
    eventually("three more heartbeats", || {
        session
            .borrow()
            .last_heartbeat_at
            .is_some_and(|at| at >= first_beat + 3)
    });
    // ...while the file, whose news did not change, was not written again (a minute at most).
    let now = file.read().unwrap().unwrap();
    assert_eq!(now.last_heartbeat_at, Some(first_beat));
    assert_eq!(now.updated_at, written.updated_at);
    assert!(katachi_core::STATUS_FILE_REFRESH >= Duration::from_secs(60));

    // A change of state is written at once.
    let handle = agent.agent.clone();
    agent
        .rt
        .block_on(handle.pause(Duration::from_secs(3600)))
        .unwrap();
    eventually("the file says paused", || {
        file.read()
            .ok()
            .flatten()
            .is_some_and(|s| s.state != online)
    });
    agent.rt.block_on(handle.stop()).unwrap();
    assert!(matches!(agent.end(), AgentEnd::Stopped));
}
