//! The whole sign-in path with real processes: `target/debug/katachi-relay` and `target/debug/katachi
//! start` as children of this test, and a user in Debian's headless Chromium.
//!
//! A user signs up, opens the page `katachi start` printed, sees the same code and the device there,
//! and approves it; the agent says it is registered and online, and `katachi status` agrees. The
//! agents page shows it online and follows it live (it turns offline, without a reload, once the
//! agent is stopped). `katachi unregister` then removes it from the relay and wipes the local
//! credentials.
//!
//! Needs `target/debug/katachi-relay` and `target/debug/katachi` (`cargo build --workspace`; `make
//! test` builds them first), `/usr/bin/chromium` and `/usr/bin/chromedriver`, and a D-Bus session
//! with an unlocked keyring for the agent's keychain:
//! `scripts/with-session.sh cargo test -p katachi-e2e --test relay_agent_e2e`. Without them the test
//! fails rather than passes silently. Every wait is bounded, and every child is killed if the test
//! fails. Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots`, or to `docs/screenshots` when
//! `KATACHI_UPDATE_SCREENSHOTS=1`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use katachi_e2e::chromium::Browser;
use katachi_e2e::process::SpawnedProcess;
use katachi_e2e::workspace_binary;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::Semaphore;

/// Whole-test budget: two debug binaries and Chromium starting on a loaded 2-core machine.
const TEST_BUDGET: Duration = Duration::from_secs(300);
/// For the relay to print where it listens (CA generation and a password hash in a debug build).
const RELAY_STARTUP: Duration = Duration::from_secs(60);
/// For `katachi start` to print the page and the code (keychain, fingerprint, one relay call).
const SIGN_IN_SHOWN: Duration = Duration::from_secs(60);
/// For the agent to notice the approval (it polls every second here) and go online.
const AGENT_REACTS: Duration = Duration::from_secs(30);
/// For a one-shot `katachi status` or `katachi unregister` to finish.
const CLI_RUN: Duration = Duration::from_secs(30);
/// For a process to stop after SIGTERM before it is killed.
const STOP: Duration = Duration::from_secs(15);
/// For a page to show what it should.
const PAGE: Duration = Duration::from_secs(30);
/// The relay's offline window (its smallest allowed value).
const OFFLINE_AFTER_SECS: u64 = 5;
/// The offline window, plus the agents page's 3 s poll, plus slack for a loaded machine.
const LIVE_OFFLINE: Duration = Duration::from_secs(OFFLINE_AFTER_SECS + 3 + 15);
const PASSWORD: &str = "correct horse battery staple";
const DEVICE_NAME: &str = "e2e-build-box";

/// One Chromium at a time: the machine has two cores, and the timings stay honest.
static ONE_BROWSER: Semaphore = Semaphore::const_new(1);

/// A binary of this workspace, or a failure saying how to build it.
fn built(name: &str) -> PathBuf {
    let binary = workspace_binary(name);
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --workspace` before the end-to-end tests (`make test` does)",
        binary.display()
    );
    binary
}

fn require_session_bus() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session for the agent's keychain: run the tests with `make test` or \
         `scripts/with-session.sh cargo test -p katachi-e2e --test relay_agent_e2e`"
    );
}

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a blocking wait on a child process without stalling the runtime's workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `katachi-relay` on a free loopback port with its data in `data_dir`, its flags only (none of the
/// `KATACHI_*` variables it also reads). Returns the process, its URL and the CA it printed.
fn start_relay(data_dir: &Path) -> (SpawnedProcess, String, PathBuf) {
    let port = free_loopback_port();
    let mut command = Command::new(built("katachi-relay"));
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--device-poll-interval", "1"])
        .args(["--offline-after", &OFFLINE_AFTER_SECS.to_string()])
        // Tests run side by side: none takes the default metrics port.
        .args(["--metrics-listen", "off"])
        // The verification link of local mode is an info-level log line the test reads.
        .env("KATACHI_LOG", "info");
    for inherited in [
        "KATACHI_RELAY_DATABASE_URL",
        "KATACHI_RELAY_MASTER_KEY_FILE",
        "KATACHI_RELAY_SMTP_URL",
        "KATACHI_GITHUB_CLIENT_ID",
        "KATACHI_GITHUB_CLIENT_SECRET",
        "KATACHI_GOOGLE_CLIENT_ID",
        "KATACHI_GOOGLE_CLIENT_SECRET",
    ] {
        command.env_remove(inherited);
    }
    let mut relay = SpawnedProcess::spawn(command).expect("cannot start katachi-relay");
    let url = relay
        .wait_for_stdout_value("katachi-relay: listening on ", RELAY_STARTUP)
        .unwrap_or_else(|e| panic!("{e}"));
    // A loopback relay names itself `localhost`.
    assert_eq!(url, format!("https://localhost:{port}"));
    let ca_line = relay
        .wait_for_stdout_value("katachi-relay: local CA for agents: ", RELAY_STARTUP)
        .unwrap_or_else(|e| panic!("{e}"));
    let ca = data_dir.join("tls").join("ca.pem");
    assert!(
        ca_line.starts_with(&format!("{} (katachi start", ca.display())),
        "the relay names another CA file: {ca_line}"
    );
    assert!(ca.is_file(), "{} is missing", ca.display());
    (relay, url, ca)
}

/// A `katachi` command for the agent whose state lives in `home` (set on the child only).
fn katachi(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(built("katachi"));
    command.env("KATACHI_HOME", home).args(args);
    command
}

/// Runs a one-shot `katachi … --json` command to completion and returns what it printed.
fn katachi_json(home: &Path, args: &[&str]) -> Value {
    let mut process = SpawnedProcess::spawn(katachi(home, args)).expect("cannot start katachi");
    let (status, stdout) = process
        .wait_for_output(CLI_RUN)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status.success(),
        "{}",
        process.describe(&format!("`katachi {}` failed: {status}", args.join(" ")))
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "`katachi {}` printed no JSON ({e}): {stdout}",
            args.join(" ")
        )
    })
}

async fn sign_up(browser: &Browser, relay_url: &str, email: &str) {
    browser
        .sign_up(relay_url, email, PASSWORD, PAGE)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_approves_the_code_katachi_start_printed_and_sees_the_agent_online_then_unregister_removes_it(
) {
    let _one = ONE_BROWSER.acquire().await.unwrap();
    require_session_bus();
    tokio::time::timeout(TEST_BUDGET, async {
        let relay_data = TempDir::new().unwrap();
        let agent_dir = TempDir::new().unwrap();
        let home = agent_dir.path().join("home");

        let (mut relay, relay_url, ca) = blocking(|| start_relay(relay_data.path()));

        // A workspace with some code, allowed before the agent starts.
        let workspace = agent_dir.path().join("project");
        std::fs::create_dir(&workspace).unwrap();
        std::fs::write(
            workspace.join("main.rs"),
            "fn main() { println!(\"through the tunnel\"); }\n",
        )
        .unwrap();
        let added = katachi_json(
            &home,
            &["--json", "workspace", "add", workspace.to_str().unwrap()],
        );
        assert_eq!(added["outcome"], "added", "{added}");

        // The agent signs in: it prints the page to open and the code, then polls the relay.
        let mut agent = SpawnedProcess::spawn(katachi(
            &home,
            &[
                "start",
                "--relay",
                &relay_url,
                "--ca",
                ca.to_str().unwrap(),
                "--no-browser",
                "--device-name",
                DEVICE_NAME,
                "--heartbeat-secs",
                "1",
            ],
        ))
        .expect("cannot start `katachi start`");
        let (open_url, code) = blocking(|| {
            let open = agent.wait_for_stdout_value("open:", SIGN_IN_SHOWN)?;
            let code = agent.wait_for_stdout_value("code:", SIGN_IN_SHOWN)?;
            Ok::<_, String>((open, code))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            open_url.starts_with(&format!("{relay_url}/device")),
            "`katachi start` printed a page off the relay: {open_url}"
        );
        assert!(
            code.len() == 9 && code.as_bytes()[4] == b'-',
            "not an XXXX-XXXX code: {code}"
        );

        // The user signs up, opens that page, and finds the same code and this device there.
        let browser = Browser::launch().await.unwrap();
        sign_up(&browser, &relay_url, "agent-e2e@example.com").await;
        // No SMTP server (local mode): the relay writes the verification link to its log, the user
        // opens it from there.
        let link = blocking(|| {
            relay.wait_for_stdout_after(
                "the e-mail verification link for agent-e2e@example.com is ",
                SIGN_IN_SHOWN,
            )
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let link: String = link
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ":/.-_".contains(*c))
            .collect();
        assert!(
            link.starts_with(&format!("{relay_url}/verify-email/")),
            "{link}"
        );
        browser.goto(&link).await.unwrap();
        // Opening the link asks to confirm (a prefetching mail scanner uses nothing up).
        browser.click("#confirm-verify").await.unwrap();
        browser
            .wait_for_text("#verified", "E-mail address verified", PAGE)
            .await
            .unwrap();
        browser.goto(&open_url).await.unwrap();
        browser
            .wait_for_text("#device-name", DEVICE_NAME, PAGE)
            .await
            .unwrap();
        assert_eq!(browser.text("#device-ip").await.unwrap(), "127.0.0.1");
        assert!(!browser.text("#device-os").await.unwrap().trim().is_empty());
        // The user types the code `katachi start` printed (RFC 8628 §5.4: no one-click approval).
        browser.fill("#confirm-code", &code).await.unwrap();
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("katachi-start-approval.png"))
            .await
            .unwrap();
        browser.click("#approve").await.unwrap();
        browser
            .wait_for_text("#result", "Device connected", PAGE)
            .await
            .unwrap();

        // The agent picks its credentials up on its next poll and starts heartbeating.
        let agent_id = blocking(|| {
            let id = agent.wait_for_stdout_value("registered as agent", AGENT_REACTS)?;
            agent.wait_for_stdout_line("online", AGENT_REACTS)?;
            Ok::<_, String>(id)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!agent_id.is_empty());

        let status = blocking(|| katachi_json(&home, &["status", "--json"]));
        assert_eq!(status["registered"], true, "{status}");
        assert_eq!(status["agent_id"], agent_id.as_str(), "{status}");
        assert_eq!(status["relay_url"], relay_url.as_str(), "{status}");
        assert_eq!(status["running"], true, "{status}");
        assert_eq!(status["state"], "online", "{status}");
        assert!(
            status["last_heartbeat_at"].as_i64().unwrap_or(0) > 0,
            "{status}"
        );

        // The agents page lists it online, under the name it signed in with.
        browser.goto(&format!("{relay_url}/agents")).await.unwrap();
        let row = format!("tr[data-agent-id=\"{agent_id}\"]");
        let row_status = format!("{row} [data-field=status]");
        browser
            .wait_for_text(&row_status, "online", PAGE)
            .await
            .unwrap();
        assert_eq!(
            browser.text(&format!("{row} td.name")).await.unwrap(),
            DEVICE_NAME
        );
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("katachi-start-agents.png"))
            .await
            .unwrap();

        // The browser reaches the agent's structured API only through the relay and the tunnel
        // the agent dialled: the workspace list comes from the agent's own encrypted store.
        let canonical = std::fs::canonicalize(&workspace).unwrap();
        let api = format!("{relay_url}/agents/{agent_id}/api/v1/workspaces");
        let mut listed = String::new();
        for _ in 0..60 {
            browser.goto(&api).await.unwrap();
            listed = browser.source().await.unwrap();
            if listed.contains(canonical.to_str().unwrap()) {
                break;
            }
            // The tunnel registers just after the agent goes online; give it a moment.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            listed.contains(canonical.to_str().unwrap()),
            "the agent's workspaces through the relay: {listed}"
        );
        browser.goto(&format!("{relay_url}/agents")).await.unwrap();
        browser
            .wait_for_text(&row_status, "online", PAGE)
            .await
            .unwrap();
        // Proves the page is not reloaded from here on: a reload would drop this.
        browser
            .execute("window.katachiSamePage = 'yes'; return true;")
            .await
            .unwrap();

        // SIGTERM stops the agent cleanly; the open page follows it to offline by itself.
        let stopped = blocking(|| agent.terminate(STOP)).unwrap();
        assert!(
            stopped.success(),
            "{}",
            agent.describe(&format!("`katachi start` ended with {stopped} on SIGTERM"))
        );
        browser
            .wait_for_text(&row_status, "offline", LIVE_OFFLINE)
            .await
            .unwrap();
        assert_eq!(
            browser
                .execute("return window.katachiSamePage;")
                .await
                .unwrap(),
            "yes",
            "the agents page reloaded instead of refreshing live"
        );
        let status = blocking(|| katachi_json(&home, &["status", "--json"]));
        assert_eq!(status["registered"], true, "{status}");
        assert_eq!(status["running"], false, "{status}");
        assert_eq!(status["state"], "stopped", "{status}");

        // Unregister: the relay forgets the agent, and the local credentials are gone.
        let unregistered = blocking(|| katachi_json(&home, &["unregister", "--json"]));
        assert_eq!(unregistered["was_registered"], true, "{unregistered}");
        assert_eq!(
            unregistered["agent_id"],
            agent_id.as_str(),
            "{unregistered}"
        );
        assert_eq!(unregistered["relay_told"], true, "{unregistered}");
        assert_eq!(unregistered["credentials_wiped"], true, "{unregistered}");

        browser.goto(&format!("{relay_url}/agents")).await.unwrap();
        browser.wait_for("#no-agents", PAGE).await.unwrap();
        assert!(
            !browser.source().await.unwrap().contains(&agent_id),
            "the agents page still lists {agent_id}"
        );

        let status = blocking(|| katachi_json(&home, &["status", "--json"]));
        assert_eq!(status["registered"], false, "{status}");
        assert_eq!(status["agent_id"], Value::Null, "{status}");
        assert_eq!(status["state"], "needs_sign_in", "{status}");

        browser.close().await.unwrap();
        let relay_end = blocking(|| relay.terminate(STOP)).unwrap();
        assert!(
            relay_end.success(),
            "{}",
            relay.describe(&format!("katachi-relay ended with {relay_end} on SIGTERM"))
        );
    })
    .await
    .expect("the test ran over its time budget");
}
