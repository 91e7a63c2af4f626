//! The test's world: the relay, the fake provider, the agent's home and workspace, `katachi`
//! runs, the signed-in agent, the browser, and the page helpers the scenarios share.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use katachi_e2e::chromium::Browser;
use katachi_e2e::process::SpawnedProcess;
use katachi_e2e::relay::InProcessRelay;
use katachi_e2e::workspace_binary;
use katachi_testkit::FakeProvider;
use serde_json::{json, Value};

/// Whole-test budget: Chromium and two agent starts on a loaded 2-core machine.
pub(crate) const TEST_BUDGET: Duration = Duration::from_secs(480);
/// For the page to show what it should (a turn through relay, tunnel and provider included).
pub(crate) const PAGE: Duration = Duration::from_secs(30);
/// For `katachi start` to print its sign-in page, or go online.
pub(crate) const AGENT_REACTS: Duration = Duration::from_secs(60);
/// For a one-shot `katachi` command.
pub(crate) const CLI_RUN: Duration = Duration::from_secs(30);
/// The API key: it must reach the provider and nothing else.
pub(crate) const KEY: &str = "sk-katachi-e2e-chat-5f0c2a9e71b3d8";
pub(crate) const LIB: &str = "pub fn answer() -> u32 {\n    41\n}\n";
pub(crate) const PATCH: &str =
    "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn answer() -> u32 {\n-    41\n+    42\n }\n";
pub(crate) const PATCH_43: &str =
    "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn answer() -> u32 {\n-    42\n+    43\n }\n";
/// Markup a model might write: it must read as text in the page.
pub(crate) const MARKUP: &str = "<img src=x onerror=\"window.katachiInjected=1\"><b>not bold</b>";
pub(crate) const REPORT: &str = "Done: `answer()` now returns 42, and grep finds it on line 2.";

/// A JSON argument object streamed in three pieces, as providers stream tool arguments.
pub(crate) fn pieces(args: &Value) -> Vec<String> {
    let text = args.to_string();
    let (a, rest) = text.split_at(text.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    vec![a.to_owned(), b.to_owned(), c.to_owned()]
}

/// Runs a blocking wait on a child process without stalling the runtime's workers.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A `katachi` command whose state lives in `home` (set on the child only), logging at debug level
/// so that a key in any log line would be seen.
pub(crate) fn katachi(home: &Path, args: &[&str]) -> Command {
    let binary = workspace_binary("katachi");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p katachi-cli` first",
        binary.display()
    );
    let mut command = Command::new(binary);
    command
        .env("KATACHI_HOME", home)
        .env("KATACHI_LOG", "debug")
        .args(args);
    command
}

/// Runs a one-shot `katachi` command to its end; what it printed (stdout and stderr).
pub(crate) fn katachi_ok(home: &Path, args: &[&str]) -> String {
    let mut process = SpawnedProcess::spawn(katachi(home, args)).expect("cannot start katachi");
    let (status, _) = process
        .wait_for_output(CLI_RUN)
        .unwrap_or_else(|e| panic!("{e}"));
    let printed = process.describe("");
    assert!(
        status.success(),
        "`katachi {}` failed: {printed}",
        args.join(" ")
    );
    printed
}

/// `katachi ai key set openai`, the key piped on stdin as a script would; what it printed.
pub(crate) fn store_key(home: &Path) -> String {
    let mut child = katachi(home, &["ai", "key", "set", "openai"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start katachi");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes())
        .unwrap();
    let deadline = Instant::now() + CLI_RUN;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`katachi ai key set` did not end within {CLI_RUN:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`katachi ai key set` failed: {printed}"
    );
    printed
}

/// Every file under `dir`, recursively, as bytes (the relay's database and its journals).
pub(crate) fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The activity events the relay stored for `agent_id` (kind, payload), read from its SQLite file.
pub(crate) async fn relay_events(relay: &InProcessRelay, agent_id: &str) -> Vec<(String, String)> {
    sqlx::any::install_default_drivers();
    let url = format!(
        "sqlite://{}?mode=ro",
        relay.data_dir().join("relay.db").display()
    );
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, payload FROM events WHERE agent_id = $1 ORDER BY at")
            .bind(agent_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows
}

/// The test's world: relay, fake provider, agent home and workspace, the agent, the browser.
pub(crate) struct World {
    pub(crate) relay: InProcessRelay,
    pub(crate) fake: FakeProvider,
    pub(crate) home: PathBuf,
    pub(crate) workspace: PathBuf,
    pub(crate) agent: SpawnedProcess,
    pub(crate) agent_id: String,
    pub(crate) browser: Browser,
    /// Everything the agent processes and the CLI printed so far (the key must not be in it).
    pub(crate) printed: String,
    pub(crate) _dir: tempfile::TempDir,
}

impl World {
    pub(crate) fn workbench(&self) -> String {
        self.relay.at(&format!("/agents/{}", self.agent_id))
    }

    pub(crate) fn lib(&self) -> String {
        std::fs::read_to_string(self.workspace.join("src/lib.rs")).unwrap()
    }

    /// Waits for an approval of `tool` to wait in the page; what it shows ([`PENDING`]).
    pub(crate) async fn pending(&self, tool: &str) -> Value {
        let script = format!(
            "const shown = (() => {{ {PENDING} }})(); return shown && shown.tool === {tool:?} ? shown : null;"
        );
        self.wait(&script, &format!("an approval of {tool}")).await
    }

    pub(crate) async fn wait(&self, script: &str, what: &str) -> Value {
        self.browser
            .wait_for_value(script, PAGE, what)
            .await
            .unwrap()
    }

    /// Types `text` in the composer and sends it with the Send button.
    pub(crate) async fn say(&self, text: &str) {
        self.browser.fill("#chat-input", text).await.unwrap();
        self.browser.click("#chat-send").await.unwrap();
    }

    /// Waits until the turn is over and the status line reads as `class` (`ok`, `error`, `info`).
    pub(crate) async fn turn_over(&self, class: &str) -> Value {
        self.wait(
            &format!(
                "const s = document.getElementById('chat-status'); \
                 return !document.getElementById('chat-send').hidden && s.classList.contains({class:?}) ? s.textContent : null;"
            ),
            &format!("the turn to end with a `{class}` status"),
        )
        .await
    }

    /// The text of every answer of the model in the log, joined.
    pub(crate) async fn answers(&self) -> String {
        self.browser
            .execute(
                "return [...document.querySelectorAll('#chat-log .wb-msg.assistant .wb-msg-text')]\
                 .map(e => e.textContent).join('|');",
            )
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The open session's id, as the sessions list marks it.
    pub(crate) async fn open_session(&self) -> i64 {
        let id = self
            .wait(
                "const b = document.querySelector('.wb-chat-session[aria-current=\"true\"]'); return b ? b.dataset.sessionId : null;",
                "an open session",
            )
            .await;
        id.as_str().unwrap().parse().unwrap()
    }

    /// `GET path` of the agent API, from the page (through relay and tunnel).
    pub(crate) async fn api(&self, path: &str) -> Value {
        self.browser
            .execute(&format!(
                "return fetch('/agents/{}/api/v1{path}').then(r => r.json());",
                self.agent_id
            ))
            .await
            .unwrap()
    }

    /// [`MARKUP`] shown in the log made no element and ran nothing.
    pub(crate) async fn assert_markup_inert(&self) {
        let rendered = self
            .browser
            .execute(
                "return [document.querySelectorAll('#chat-log img, #chat-log b').length, \
                 window.katachiInjected === undefined];",
            )
            .await
            .unwrap();
        assert_eq!(
            rendered,
            json!([0, true]),
            "markup from the model was rendered"
        );
    }

    /// The page's HTML must not hold the key.
    pub(crate) async fn assert_page_keyless(&self, when: &str) {
        let html = self.browser.source().await.unwrap();
        assert!(!html.contains(KEY), "the page holds the API key {when}");
    }
}

/// `katachi start` signed in through the browser (the user types the printed code); the agent
/// process and its id, once its tunnel is up.
pub(crate) async fn start_signed_in_agent(
    relay: &InProcessRelay,
    browser: &Browser,
    home: &Path,
) -> (SpawnedProcess, String) {
    let mut agent = SpawnedProcess::spawn(katachi(
        home,
        &[
            "start",
            "--relay",
            relay.url(),
            "--ca",
            relay.ca_file().to_str().unwrap(),
            "--no-browser",
            "--device-name",
            "chat-e2e",
            "--heartbeat-secs",
            "1",
        ],
    ))
    .expect("cannot start `katachi start`");
    let (open_url, code) = blocking(|| {
        let open = agent.wait_for_stdout_value("open:", AGENT_REACTS)?;
        let code = agent.wait_for_stdout_value("code:", AGENT_REACTS)?;
        Ok::<_, String>((open, code))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    browser.goto(&open_url).await.unwrap();
    browser.fill("#confirm-code", &code).await.unwrap();
    browser.click("#approve").await.unwrap();
    browser
        .wait_for_text("#result", "Device connected", PAGE)
        .await
        .unwrap();
    let agent_id = blocking(|| {
        let id = agent.wait_for_stdout_value("registered as agent", AGENT_REACTS)?;
        agent.wait_for_stdout_line("online", AGENT_REACTS)?;
        Ok::<_, String>(id)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    wait_online(relay, &agent_id, true).await;
    (agent, agent_id)
}

pub(crate) async fn wait_online(relay: &InProcessRelay, agent_id: &str, online: bool) {
    let deadline = Instant::now() + AGENT_REACTS;
    while relay.state().tunnels.is_online(agent_id) != online {
        assert!(
            Instant::now() < deadline,
            "the agent's tunnel never became online={online}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The approval waiting in the page: its tool, diff lines and colours, command line, expiry; `null`
/// while none waits (a script body; [`World::pending`] wraps it).
pub(crate) const PENDING: &str =
    "const c = document.querySelector('#chat-log .wb-approval.pending'); if (!c) return null; \
    const line = (k) => c.querySelector('.wb-line.' + k); \
    const bg = (n) => n ? getComputedStyle(n).backgroundColor : null; \
    const cmd = c.querySelector('.wb-approval-command'); \
    return { tool: c.closest('.wb-tool') ? c.closest('.wb-tool').dataset.tool : null, \
      add: [...c.querySelectorAll('.wb-line.add')].map(e => e.textContent), \
      del: [...c.querySelectorAll('.wb-line.del')].map(e => e.textContent), \
      add_bg: bg(line('add')), del_bg: bg(line('del')), ctx_bg: bg(line('ctx')), \
      command: cmd ? cmd.textContent : null, \
      expiry: c.querySelector('.wb-approval-expiry').textContent, \
      buttons: [...c.querySelectorAll('.wb-approval-actions button')].map(b => b.textContent) };";
