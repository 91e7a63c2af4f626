//! A running `katachi start` is the one agent of its home, and the CLI drives it through its
//! control socket: a second start is refused (exit 75), `status` is live, workspace changes and
//! pause/resume reach it at once.

use std::time::{Duration, Instant};

use super::relay_support::{start_and_register, AgentProcess, LocalRelay, PATIENCE};
use super::support::Home;

/// Polls `katachi --json status` until the live state is `state`.
fn live_state_until(home: &Home, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = home.run(&["--json", "status"]).json();
        if status["live"]["status"]["state"] == state {
            return status;
        }
        assert!(Instant::now() < deadline, "never {state}: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_running_agent_is_driven_through_its_control_socket() {
    let relay = LocalRelay::start();
    let home = Home::new();
    let mut reg = start_and_register(&relay, &home);

    let second = home.run(&["start", "--heartbeat-secs", "1"]);
    assert_eq!(second.code, 75, "stderr: {}", second.stderr);
    assert!(
        second.stderr.contains("already running (pid ")
            && second.stderr.contains("started by katachi start)"),
        "{}",
        second.stderr
    );

    let status = live_state_until(&home, "connected");
    assert_eq!(status["running"], true);
    assert_eq!(status["live"]["by"], "cli");
    let text = home.run(&["status"]);
    assert!(
        text.stdout.contains("agent:           connected to "),
        "{}",
        text.stdout
    );

    let ws = home.mkdir("code");
    let added = home.run(&["--json", "workspace", "add", ws.to_str().unwrap()]);
    assert_eq!(added.code, 0, "{}", added.stderr);
    assert_eq!(added.json()["outcome"], "added");
    let listed = home.run(&["--json", "workspace", "ls"]).json();
    assert_eq!(listed[0]["exists"], true, "{listed}");
    let refused = home.run(&["--json", "workspace", "rm", "/nonexistent-katachi-ws"]);
    assert_eq!(refused.code, 1);
    assert_eq!(refused.json()["error"]["code"], "workspace.not_allowed");

    // sandbox policy set and reset go to the running agent as well
    let ws_arg = ws.to_str().unwrap();
    let set = home.run(&[
        "--json",
        "sandbox",
        "policy",
        "set",
        "--workspace",
        ws_arg,
        "--allow-host",
        "api.example.com",
    ]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert_eq!(set.json()["allow_hosts"][0], "api.example.com");
    let reset = home.run(&[
        "--json",
        "sandbox",
        "policy",
        "reset",
        "--workspace",
        ws_arg,
    ]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert_eq!(reset.json()["removed"], true, "{}", reset.stdout);
    let shown = home.run(&["--json", "sandbox", "policy", "show", "--workspace", ws_arg]);
    assert_eq!(
        shown.json()["overrides"]["allow_hosts"],
        serde_json::json!([])
    );
    let again = home.run(&[
        "--json",
        "sandbox",
        "policy",
        "reset",
        "--workspace",
        ws_arg,
    ]);
    assert_eq!(again.json()["removed"], false, "{}", again.stdout);
    let elsewhere = home.run(&[
        "--json",
        "sandbox",
        "policy",
        "reset",
        "--workspace",
        "/nonexistent-katachi-ws",
    ]);
    assert_eq!(elsewhere.json()["error"]["code"], "workspace.not_allowed");

    // a live stream: the current state, then each change
    let mut watch = AgentProcess::spawn(&home, &["--json", "status", "--watch"]);
    let state_is = |want: &'static str| {
        move |l: &str| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["status"]["state"] == want)
        }
    };
    watch.wait_for_line("connected", state_is("connected"));

    let paused = home.run(&["pause", "--for", "1h"]);
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    watch.wait_for_line("paused", state_is("paused"));
    live_state_until(&home, "paused");
    let resumed = home.run(&["resume"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    live_state_until(&home, "connected");
    let again = home.run(&["--json", "resume"]);
    assert_eq!(again.json()["error"]["code"], "agent.not_now");

    assert_eq!(reg.agent.terminate(), 0, "stderr: {}", reg.agent.stderr());
    // the stream ends with the agent
    assert_eq!(watch.wait_exit(), 0, "stderr: {}", watch.stderr());
    let after = home.run(&["--json", "status"]).json();
    assert!(after["live"].is_null(), "{after}");
    let no_agent = home.run(&["pause"]);
    assert_eq!(no_agent.code, 1);
    assert!(
        no_agent.stderr.contains("no agent is running"),
        "{}",
        no_agent.stderr
    );
}
