//! The core's agent runtime ([`katachi_core::agent::Agent`]) against the real relay, in-process:
//! status transitions, pause and resume seen from the relay, revocation, clean stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_core::agent::{Agent, AgentEnd, RelayLink, Status};
use katachi_core::api::ApiState;
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::signing::SystemClock;
use katachi_core::tunnel::NoNetworkChanges;
use katachi_core::{AgentCredentials, AgentHome, KatachiDirs, SessionEnd, SessionOptions};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::relay_client::sign_in;
use super::relay_support::{LocalRelay, PATIENCE};
use super::support::Home;

/// A registered agent home (credentials saved) and its running runtime.
struct Running {
    rt: Runtime,
    home: Arc<AgentHome>,
    agent: Agent,
    task: Option<JoinHandle<AgentEnd>>,
    agent_id: String,
    user_id: String,
    _dir: Home,
}

fn start_agent(relay: &LocalRelay) -> Running {
    let (credentials, user_id) = sign_in(relay);
    let dir = Home::new();
    let home =
        Arc::new(AgentHome::open(KatachiDirs::under(&dir.home()), &SystemFingerprint).unwrap());
    credentials.save(&home).unwrap();
    drop(home.store().unwrap());
    let agent_id = credentials.agent_id().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let router = katachi_core::api::router(ApiState::new(home.clone()));
    let link = RelayLink::new(
        home.clone(),
        credentials,
        true,
        SessionOptions {
            heartbeat_every: Duration::from_secs(1),
        },
        Arc::new(SystemClock),
        router,
    );
    let (agent, task) = rt.block_on(async { Agent::start(link, Box::new(NoNetworkChanges)) });
    Running {
        rt,
        home,
        agent,
        task: Some(task),
        agent_id,
        user_id,
        _dir: dir,
    }
}

impl Running {
    /// Waits (up to [`PATIENCE`]) for a status that satisfies `check`.
    fn status_until(&self, what: &str, check: impl Fn(&Status) -> bool) -> Status {
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
    fn end(&mut self) -> AgentEnd {
        let task = self.task.take().unwrap();
        self.rt
            .block_on(async { tokio::time::timeout(PATIENCE, task).await })
            .expect("the agent did not end")
            .unwrap()
    }
}

/// Polls `check` until it holds.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_runtime_connects_and_a_pause_takes_the_agent_off_the_relay_until_resumed() {
    let relay = LocalRelay::start();
    let mut agent = start_agent(&relay);
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
    assert_eq!(agent_name, agent.agent_id);
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
    assert!(
        relay.close_tunnel(&agent.agent_id),
        "no tunnel after resume"
    );

    agent.rt.block_on(handle.stop()).unwrap();
    assert!(matches!(agent.end(), AgentEnd::Stopped));
    let file = katachi_core::StatusFile::new(agent.home.dirs().agent_status_path());
    let last = file.read().unwrap().unwrap();
    assert_eq!(last.state, katachi_core::ConnectionState::Stopped);
}

#[test]
fn a_revoked_agent_ends_signed_out_with_its_credentials_wiped() {
    let relay = LocalRelay::start();
    let mut agent = start_agent(&relay);
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
