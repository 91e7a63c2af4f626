//! `katachi start` records its tunnel's status and `katachi status` shows it (text and JSON).

use std::time::{Duration, Instant};

use super::relay_support::{start_and_register, LocalRelay, PATIENCE};
use super::support::Home;

/// Polls `katachi --json status` until `check` holds for its `tunnel`; that status.
fn tunnel_status_until(
    home: &Home,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = home.run(&["--json", "status"]).json();
        if check(&status["tunnel"]) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "never happened: {what}; last: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_shows_the_tunnel_connected_and_its_reconnect_after_a_cut() {
    let relay = LocalRelay::start();
    let home = Home::new();
    let mut reg = start_and_register(&relay, &home);
    // Printed before (or soon after) the session's "online".
    let connected = |l: &str| l.starts_with("tunnel: connected since ");
    if !reg.agent.seen().iter().any(|l| connected(l)) {
        reg.agent.wait_for_line("tunnel connected", connected);
    }
    let status = tunnel_status_until(&home, "tunnel connected", |t| t["state"] == "connected");
    let since = status["tunnel"]["since"].as_i64().unwrap();
    assert!(since > 0, "{status}");
    let text = home.run(&["status"]);
    assert!(
        text.stdout.contains("tunnel:          connected since "),
        "{}",
        text.stdout
    );

    // The relay cuts the tunnel: the agent says it is reconnecting, and is back by itself.
    assert!(relay.close_tunnel(&reg.agent_id));
    reg.agent.wait_for_line("tunnel reconnecting", |l| {
        l.starts_with("tunnel: reconnecting in ")
    });
    reg.agent
        .wait_for_line("tunnel back", |l| l.starts_with("tunnel: connected since "));
    tunnel_status_until(&home, "tunnel back", |t| t["state"] == "connected");

    // Stopped: no tunnel claimed any more.
    assert_eq!(reg.agent.terminate(), 0, "stderr: {}", reg.agent.stderr());
    let after = home.run(&["--json", "status"]).json();
    assert_eq!(after["running"], false);
    assert!(after["tunnel"].is_null(), "{after}");
}
