//! `katachi start | status | unregister | workspace` against the real relay, as processes.

use std::time::{Duration, Instant};

use super::relay_support::{
    start_and_register, start_registered, AgentProcess, LocalRelay, PATIENCE,
};
use super::support::Home;

/// Polls `check` until it holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn start_signs_in_heartbeats_and_stops_cleanly_on_sigterm() {
    let relay = LocalRelay::start();
    let home = Home::new();
    let before = home.run(&["--json", "status"]).json();
    assert_eq!(before["registered"], false);
    assert_eq!(before["state"], "needs_sign_in");

    let mut agent = AgentProcess::spawn(
        &home,
        &[
            "start",
            "--relay",
            relay.url(),
            "--ca",
            relay.ca_arg(),
            "--no-browser",
            "--device-name",
            "test-box",
            "--heartbeat-secs",
            "1",
        ],
    );
    // The page and the code, each on its own marked line.
    let url = agent.wait_for_value("open:");
    let code = agent.wait_for_value("code:");
    assert!(url.starts_with(&format!("{}/device", relay.url())), "{url}");
    assert!(url.contains(&code), "{url} should carry {code}");
    assert_eq!(code.len(), 9, "{code}");
    assert_eq!(&code[4..5], "-", "{code}");
    let waiting = home.run(&["--json", "status"]).json();
    assert_eq!(waiting["state"], "needs_sign_in", "{waiting}");
    assert_eq!(waiting["running"], true, "{waiting}");

    let user = relay.create_user();
    relay.decide(&code, &user, true);
    let agent_id = agent.wait_for_value("registered as agent");
    agent.wait_for_line("online", |l| l == "online");

    // The relay saw the device name and heartbeats.
    let agents = relay.agents_of(&user);
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].id, agent_id);
    assert_eq!(agents[0].name, "test-box");
    assert!(agents[0].last_seen_at > 0);
    assert_eq!(agents[0].version, env!("CARGO_PKG_VERSION"));

    // The sealed credentials exist and hold nothing readable.
    let sealed = home.data().join("credentials").join("agent.sealed");
    let raw = std::fs::read(&sealed).unwrap();
    assert!(!raw
        .windows(agent_id.len())
        .any(|w| w == agent_id.as_bytes()));

    let status = home.run(&["--json", "status"]).json();
    assert_eq!(status["registered"], true, "{status}");
    assert_eq!(status["agent_id"], agent_id.as_str());
    assert_eq!(status["relay_url"], relay.url());
    assert_eq!(status["running"], true);
    assert_eq!(status["state"], "online");
    assert!(status["last_heartbeat_at"].as_i64().unwrap() > 0);
    assert!(status["clock_offset_secs"].as_i64().unwrap().abs() <= 2);
    let text = home.run(&["status"]);
    assert!(
        text.stdout.contains("state:           online"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(&agent_id), "{}", text.stdout);

    assert_eq!(agent.terminate(), 0, "stderr: {}", agent.stderr());
    let after = home.run(&["--json", "status"]).json();
    assert_eq!(after["registered"], true);
    assert_eq!(after["running"], false);
    assert_eq!(after["state"], "stopped");

    // Started again, it reuses the credentials: no new code, straight online.
    let mut again = start_registered(&home);
    again.wait_for_line("online", |l| l == "online");
    assert!(
        again.seen().iter().all(|l| !l.starts_with("code:")),
        "{:?}",
        again.seen()
    );
    assert_eq!(again.terminate(), 0);
    assert_eq!(relay.agents_of(&user).len(), 1);
}

#[test]
fn workspace_events_reach_the_relay_and_none_is_lost_while_it_is_down() {
    let mut relay = LocalRelay::start();
    let home = Home::new();
    let mut reg = start_and_register(&relay, &home);

    // Queued while the agent runs: delivered within a heartbeat or two.
    let a = home.mkdir("code/a");
    assert_eq!(home.run(&["workspace", "add", a.to_str().unwrap()]).code, 0);
    eventually("workspace.added reaches the relay", || {
        relay.event_count(&reg.agent_id) == 1
    });

    // The relay goes away; the agent notices and keeps the events queued.
    relay.stop();
    reg.agent
        .wait_for_line("reconnecting", |l| l.starts_with("reconnecting"));
    let b = home.mkdir("code/b");
    for p in [&b, &a] {
        assert_eq!(home.run(&["workspace", "add", p.to_str().unwrap()]).code, 0);
    }
    assert_eq!(home.run(&["workspace", "rm", b.to_str().unwrap()]).code, 0);
    let queued = home.run(&["--json", "status"]).json();
    assert_eq!(queued["state"], "reconnecting", "{queued}");

    // Back: the agent comes online again and delivers everything (added b, removed b).
    relay.restart();
    reg.agent.wait_for_line("online again", |l| l == "online");
    eventually("all events reach the relay", || {
        relay.event_count(&reg.agent_id) == 3
    });
    eventually("the outbox is empty", || {
        home.run(&["--json", "status"]).json()["pending_events"] == 0
    });
    assert_eq!(reg.agent.terminate(), 0);
    // Nothing was sent twice.
    assert_eq!(relay.event_count(&reg.agent_id), 3);
}

#[test]
fn events_queued_while_no_agent_runs_are_sent_at_the_next_start() {
    let relay = LocalRelay::start();
    let home = Home::new();
    let mut reg = start_and_register(&relay, &home);
    assert_eq!(reg.agent.terminate(), 0);
    for name in ["x", "y"] {
        let p = home.mkdir(name);
        assert_eq!(home.run(&["workspace", "add", p.to_str().unwrap()]).code, 0);
    }
    assert_eq!(relay.event_count(&reg.agent_id), 0);
    let mut agent = start_registered(&home);
    agent.wait_for_line("online", |l| l == "online");
    eventually("queued events are delivered", || {
        relay.event_count(&reg.agent_id) == 2
    });
    assert_eq!(agent.terminate(), 0);
}

#[test]
fn revoked_agent_wipes_its_credentials_and_exits_non_zero() {
    let relay = LocalRelay::start();
    let home = Home::new();
    let mut reg = start_and_register(&relay, &home);
    relay.revoke(&reg.agent_id, &reg.user_id);
    let code = reg.agent.wait_exit();
    // 79: a service manager must not restart a revoked agent.
    assert_eq!(code, 79);
    let stderr = reg.agent.stderr();
    assert!(stderr.contains("revoked"), "{stderr}");
    assert!(stderr.contains("wiped"), "{stderr}");
    assert!(!home
        .data()
        .join("credentials")
        .join("agent.sealed")
        .exists());
    let status = home.run(&["--json", "status"]).json();
    assert_eq!(status["registered"], false, "{status}");
    assert_eq!(status["state"], "needs_sign_in", "{status}");
}

#[test]
fn unregister_tells_the_relay_then_wipes_the_credentials() {
    let relay = LocalRelay::start();
    let home = Home::new();
    let mut reg = start_and_register(&relay, &home);
    assert_eq!(reg.agent.terminate(), 0);

    let out = home.run(&["--json", "unregister"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["relay_told"], true, "{json}");
    assert_eq!(json["credentials_wiped"], true);
    assert_eq!(json["agent_id"], reg.agent_id.as_str());
    assert!(relay.agents_of(&reg.user_id).is_empty());
    assert_eq!(home.run(&["--json", "status"]).json()["registered"], false);

    let again = home.run(&["unregister"]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("not registered"), "{}", again.stdout);
}

#[test]
fn unregister_keeps_the_credentials_when_the_relay_is_unreachable() {
    let mut relay = LocalRelay::start();
    let home = Home::new();
    let mut reg = start_and_register(&relay, &home);
    assert_eq!(reg.agent.terminate(), 0);
    relay.stop();

    let out = home.run(&["--json", "unregister"]);
    assert_eq!(out.code, 1);
    let err = out.json();
    assert_eq!(err["error"]["code"], "relay.unreachable", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("credentials were kept"), "{message}");
    assert!(message.contains("--local-only"), "{message}");
    assert_eq!(home.run(&["--json", "status"]).json()["registered"], true);

    let local = home.run(&["--json", "unregister", "--local-only"]);
    assert_eq!(local.code, 0, "{}", local.stderr);
    assert_eq!(local.json()["relay_told"], false);
    assert_eq!(local.json()["credentials_wiped"], true);
    assert_eq!(home.run(&["--json", "status"]).json()["registered"], false);
}

#[test]
fn a_denied_sign_in_ends_with_its_own_error_code() {
    let relay = LocalRelay::start();
    let home = Home::new();
    let mut agent = AgentProcess::spawn(
        &home,
        &[
            "--json",
            "start",
            "--relay",
            relay.url(),
            "--ca",
            relay.ca_arg(),
            "--no-browser",
        ],
    );
    let line = agent.wait_for_line("the sign_in event", |l| l.contains("\"sign_in\""));
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    let code = event["user_code"].as_str().unwrap().to_owned();
    assert!(event["verification_uri_complete"]
        .as_str()
        .unwrap()
        .contains(&code));
    let user = relay.create_user();
    relay.decide(&code, &user, false);
    // 77: needs sign-in, not a crash to restart.
    assert_eq!(agent.wait_exit(), 77);
    let last: serde_json::Value = serde_json::from_str(agent.seen().last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "auth.denied", "{last}");
    assert!(!home
        .data()
        .join("credentials")
        .join("agent.sealed")
        .exists());
}

#[test]
fn start_refuses_a_relay_it_cannot_trust() {
    let relay = LocalRelay::start();
    let other = LocalRelay::start();
    let home = Home::new();
    // Pinned to another relay's CA: the TLS handshake fails before anything is sent.
    let out = home.run(&[
        "--json",
        "start",
        "--relay",
        relay.url(),
        "--ca",
        other.ca_arg(),
        "--no-browser",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.json()["error"]["code"],
        "relay.unreachable",
        "{}",
        out.stdout
    );
    let http = home.run(&["--json", "start", "--relay", "http://localhost:1"]);
    assert_eq!(http.json()["error"]["code"], "relay.invalid_url");
    assert_eq!(http.code, 78, "a config error");
    let none = home.run(&["--json", "start"]);
    assert_eq!(none.code, 77);
    assert!(
        none.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--relay"),
        "{}",
        none.stdout
    );
}

#[test]
fn a_registered_agent_will_not_silently_move_to_another_relay() {
    let relay = LocalRelay::start();
    let other = LocalRelay::start();
    let home = Home::new();
    let mut reg = start_and_register(&relay, &home);
    assert_eq!(reg.agent.terminate(), 0);
    let out = home.run(&["start", "--relay", other.url(), "--ca", other.ca_arg()]);
    assert_eq!(out.code, 78, "a config error");
    assert!(out.stderr.contains("katachi unregister"), "{}", out.stderr);
}

#[test]
fn credentials_that_cannot_be_saved_are_kept_in_memory_and_saved_later() {
    let relay = LocalRelay::start();
    let home = Home::new();
    let mut agent = AgentProcess::spawn(
        &home,
        &[
            "start",
            "--relay",
            relay.url(),
            "--ca",
            relay.ca_arg(),
            "--no-browser",
            "--heartbeat-secs",
            "1",
        ],
    );
    let code = agent.wait_for_value("code:");
    // Break the credentials folder (a file in its place: no temp file can be created there; this
    // works even as root, unlike permissions).
    let dir = home.data().join("credentials");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"in the way").unwrap();
    let user = relay.create_user();
    relay.decide(&code, &user, true);
    let agent_id = agent.wait_for_value("registered as agent");
    // Registered and online all the same, with the failure reported.
    agent.wait_for_line("online", |l| l == "online");
    assert!(
        agent.stderr().contains("could not be saved"),
        "{}",
        agent.stderr()
    );
    // Repaired: the running agent saves them on a following tick.
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    eventually("the credentials are sealed", || {
        dir.join("agent.sealed").exists()
    });
    assert_eq!(agent.terminate(), 0);
    let status = home.run(&["--json", "status"]).json();
    assert_eq!(status["agent_id"], agent_id.as_str(), "{status}");
    let mut again = start_registered(&home);
    again.wait_for_line("online", |l| l == "online");
    assert_eq!(again.terminate(), 0);
}
