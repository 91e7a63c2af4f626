//! AI chat in the workbench, end to end: headless Chromium, a relay served in this process, the real
//! `katachi start` (its own `KATACHI_HOME`, signed in by a user approving its code in the browser),
//! set up with `katachi ai use openai … --base-url` and `katachi ai key set openai` against the fake
//! provider of `katachi-testkit` on loopback (the real OpenAI SSE wire, the production client).
//!
//! One user session walks through what the issue asks of the Chat view: the model's missing-setup
//! message (and a message sent meanwhile refused with it, its text kept), then the model's name; tokens shown while the provider still streams, and Stop ending the
//! provider call, then Stop ending an approved command that runs (its output shown live); a multi-step task (read a file, a patch approved from the page with its coloured
//! diff, the patch on disk, an allowed `grep` approved and run in the sandbox with its live output,
//! the model's report); a denied patch and the model's next answer; a provider error mid-stream and
//! the session usable after it (with markup in the model's words shown as text, live and from the
//! store); rename and export as Markdown; the agent restarted, the session shown
//! again from its store and a new turn answered with the old conversation; its history paged with
//! "Load older"; delete. Throughout, the
//! API key reaches the provider and nothing else: not the agent's output (debug logging), the page's
//! HTML, the export, the agent's files, or the relay's database files.
//!
//! Needs `target/debug/katachi` (`cargo build -p katachi-cli`), `/usr/bin/chromium`,
//! `/usr/bin/chromedriver`, and a D-Bus session with a keyring for the agent's keychain:
//! `scripts/with-session.sh cargo test -p katachi-e2e --test relay_chat`. Screenshots go to
//! `$CARGO_TARGET_TMPDIR/screenshots`, or to `docs/screenshots` when `KATACHI_UPDATE_SCREENSHOTS=1`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use katachi_e2e::approval::sign_up_verified;
use katachi_e2e::chromium::Browser;
use katachi_e2e::process::SpawnedProcess;
use katachi_e2e::relay::InProcessRelay;
use katachi_e2e::{screenshot_path, workspace_binary};
use katachi_testkit::{Ending, FakeAnswer, FakeProvider, FakeReply};
use serde_json::{json, Value};

/// Whole-test budget: Chromium and two agent starts on a loaded 2-core machine.
const TEST_BUDGET: Duration = Duration::from_secs(480);
/// For the page to show what it should (a turn through relay, tunnel and provider included).
const PAGE: Duration = Duration::from_secs(30);
/// For `katachi start` to print its sign-in page, or go online.
const AGENT_REACTS: Duration = Duration::from_secs(60);
/// For a one-shot `katachi` command.
const CLI_RUN: Duration = Duration::from_secs(30);
/// The API key: it must reach the provider and nothing else.
const KEY: &str = "sk-katachi-e2e-chat-5f0c2a9e71b3d8";
const LIB: &str = "pub fn answer() -> u32 {\n    41\n}\n";
const PATCH: &str =
    "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn answer() -> u32 {\n-    41\n+    42\n }\n";
const PATCH_43: &str =
    "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn answer() -> u32 {\n-    42\n+    43\n }\n";
/// Markup a model might write: it must read as text in the page.
const MARKUP: &str = "<img src=x onerror=\"window.katachiInjected=1\"><b>not bold</b>";
const REPORT: &str = "Done: `answer()` now returns 42, and grep finds it on line 2.";

/// A JSON argument object streamed in three pieces, as providers stream tool arguments.
fn pieces(args: &Value) -> Vec<String> {
    let text = args.to_string();
    let (a, rest) = text.split_at(text.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    vec![a.to_owned(), b.to_owned(), c.to_owned()]
}

fn multi_step_script() -> Vec<FakeReply> {
    vec![
        FakeAnswer::text(["Let me ", "look."])
            .tool_call("c1", "read_file", pieces(&json!({"path": "src/lib.rs"})))
            .into(),
        FakeAnswer::text(["It returns 41; here is the fix."])
            .tool_call("c2", "apply_patch", pieces(&json!({"patch": PATCH})))
            .into(),
        FakeAnswer::default()
            .tool_call(
                "c3",
                "run_command",
                pieces(&json!({"command": "grep", "args": ["-n", "42", "src/lib.rs"]})),
            )
            .into(),
        FakeAnswer::text([
            "Done: ",
            "`answer()` now returns 42, and grep finds it on line 2.",
        ])
        .into(),
    ]
}

/// Runs a blocking wait on a child process without stalling the runtime's workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A `katachi` command whose state lives in `home` (set on the child only), logging at debug level
/// so that a key in any log line would be seen.
fn katachi(home: &Path, args: &[&str]) -> Command {
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
fn katachi_ok(home: &Path, args: &[&str]) -> String {
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
fn store_key(home: &Path) -> String {
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
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The test's world: relay, fake provider, agent home and workspace, the agent, the browser.
struct World {
    relay: InProcessRelay,
    fake: FakeProvider,
    home: PathBuf,
    workspace: PathBuf,
    agent: SpawnedProcess,
    agent_id: String,
    browser: Browser,
    /// Everything the agent processes and the CLI printed so far (the key must not be in it).
    printed: String,
    _dir: tempfile::TempDir,
}

impl World {
    fn workbench(&self) -> String {
        self.relay.at(&format!("/agents/{}", self.agent_id))
    }

    fn lib(&self) -> String {
        std::fs::read_to_string(self.workspace.join("src/lib.rs")).unwrap()
    }

    /// Waits for an approval of `tool` to wait in the page; what it shows ([`PENDING`]).
    async fn pending(&self, tool: &str) -> Value {
        let script = format!(
            "const shown = (() => {{ {PENDING} }})(); return shown && shown.tool === {tool:?} ? shown : null;"
        );
        self.wait(&script, &format!("an approval of {tool}")).await
    }

    async fn wait(&self, script: &str, what: &str) -> Value {
        self.browser
            .wait_for_value(script, PAGE, what)
            .await
            .unwrap()
    }

    /// Types `text` in the composer and sends it with the Send button.
    async fn say(&self, text: &str) {
        self.browser.fill("#chat-input", text).await.unwrap();
        self.browser.click("#chat-send").await.unwrap();
    }

    /// Waits until the turn is over and the status line reads as `class` (`ok`, `error`, `info`).
    async fn turn_over(&self, class: &str) -> Value {
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
    async fn answers(&self) -> String {
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
    async fn open_session(&self) -> i64 {
        let id = self
            .wait(
                "const b = document.querySelector('.wb-chat-session[aria-current=\"true\"]'); return b ? b.dataset.sessionId : null;",
                "an open session",
            )
            .await;
        id.as_str().unwrap().parse().unwrap()
    }

    /// `GET path` of the agent API, from the page (through relay and tunnel).
    async fn api(&self, path: &str) -> Value {
        self.browser
            .execute(&format!(
                "return fetch('/agents/{}/api/v1{path}').then(r => r.json());",
                self.agent_id
            ))
            .await
            .unwrap()
    }

    /// [`MARKUP`] shown in the log made no element and ran nothing.
    async fn assert_markup_inert(&self) {
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
    async fn assert_page_keyless(&self, when: &str) {
        let html = self.browser.source().await.unwrap();
        assert!(!html.contains(KEY), "the page holds the API key {when}");
    }
}

/// `katachi start` signed in through the browser (the user types the printed code); the agent
/// process and its id, once its tunnel is up.
async fn start_signed_in_agent(
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

async fn wait_online(relay: &InProcessRelay, agent_id: &str, online: bool) {
    let deadline = Instant::now() + AGENT_REACTS;
    while relay.state().tunnels.is_online(agent_id) != online {
        assert!(
            Instant::now() < deadline,
            "the agent's tunnel never became online={online}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Relay, fake provider, a workspace allowed, the agent signed in; the workbench's Chat tab open
/// and the model's missing setup shown, then set up with the CLI and shown by name.
async fn set_up() -> World {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let workspace = dir.path().join("project");
    std::fs::create_dir_all(workspace.join("src")).unwrap();
    std::fs::write(workspace.join("src/lib.rs"), LIB).unwrap();
    std::fs::write(
        workspace.join("AGENTS.md"),
        "Always run grep after a change.\n",
    )
    .unwrap();
    let workspace = std::fs::canonicalize(&workspace).unwrap();
    let relay = InProcessRelay::start(|_| {}).await.unwrap();
    let fake = FakeProvider::start(Vec::<FakeReply>::new()).await.unwrap();
    let mut printed = blocking(|| {
        katachi_ok(
            &home,
            &["--json", "workspace", "add", workspace.to_str().unwrap()],
        )
    });

    let browser = Browser::launch().await.unwrap();
    sign_up_verified(
        &browser,
        &relay,
        "chat-e2e@example.com",
        "correct horse battery staple",
        PAGE,
    )
    .await
    .unwrap();
    let (agent, agent_id) = start_signed_in_agent(&relay, &browser, &home).await;
    let world = World {
        relay,
        fake,
        home,
        workspace,
        agent,
        agent_id,
        browser,
        printed: String::new(),
        _dir: dir,
    };

    // No model yet: the Chat view says what to run on the agent's machine.
    world.browser.goto(&world.workbench()).await.unwrap();
    world
        .wait(
            "return document.getElementById('workspace-picker').disabled ? null : true;",
            "the workspace list",
        )
        .await;
    world.browser.click("#tab-chat").await.unwrap();
    let missing = world
        .wait(
            "const m = document.getElementById('chat-model-missing'); return m.hidden ? null : m.textContent;",
            "the missing model's message",
        )
        .await;
    assert!(
        missing.as_str().unwrap().contains("katachi ai use"),
        "{missing}"
    );

    // A message sent now is refused with that message, and stays in the composer.
    world.browser.click("#chat-new").await.unwrap();
    world
        .browser
        .wait_for_text("#chat-title", "New chat", PAGE)
        .await
        .unwrap();
    world.say("Hello?").await;
    world.turn_over("error").await;
    let refused = world
        .browser
        .execute(
            "return [document.querySelector('#chat-log .wb-chat-note.error').textContent, \
             document.getElementById('chat-input').value];",
        )
        .await
        .unwrap();
    assert!(
        refused[0].as_str().unwrap().contains("katachi ai use"),
        "{refused}"
    );
    assert_eq!(refused[1], "Hello?", "the refused text is kept");
    // deleting asks in the page first; the list is empty again
    world.browser.click("#chat-delete").await.unwrap();
    world.browser.click("#chat-delete-confirm").await.unwrap();
    world
        .browser
        .wait_for_text("#chat-sessions", "No chats yet.", PAGE)
        .await
        .unwrap();

    // Set up with the CLI while the agent runs; "Check again" shows the model.
    let base_url = world.fake.openai_base_url().to_string();
    printed += &blocking(|| {
        let mut out = katachi_ok(
            &world.home,
            &["ai", "use", "openai", "test-model", "--base-url", &base_url],
        );
        out += &store_key(&world.home);
        out
    });
    world.browser.click("#chat-model-retry").await.unwrap();
    world
        .browser
        .wait_for_text("#chat-model", "openai · test-model", PAGE)
        .await
        .unwrap();
    assert_eq!(
        world
            .browser
            .execute("return document.getElementById('chat-model-missing').hidden;")
            .await
            .unwrap(),
        true
    );
    World { printed, ..world }
}

/// Tokens appear while the provider still streams; Stop closes the provider call; what was said
/// is kept, marked as stopped.
async fn stop_mid_stream(w: &World) {
    w.fake
        .push(FakeAnswer::text(["Thinking ", "hard", " forever"]).ending(Ending::HoldAfter(2)));
    w.browser.click("#chat-new").await.unwrap();
    w.browser
        .wait_for_text("#chat-title", "New chat", PAGE)
        .await
        .unwrap();
    // when the first token is shown in the page (wall clock, ms), for the figure below
    w.browser
        .execute(
            "window.katachiFirstToken = null; new MutationObserver((_, seen) => { \
               if (document.querySelector('#chat-log .wb-msg.assistant .wb-msg-text')) { \
                 window.katachiFirstToken = performance.timeOrigin + performance.now(); seen.disconnect(); } \
             }).observe(document.getElementById('chat-log'), {childList: true, subtree: true, characterData: true}); return true;",
        )
        .await
        .unwrap();
    let clocks = (Instant::now(), SystemTime::now());
    w.say("Think about it").await;
    // the provider holds after two pieces: the page shows them while the answer is still open
    w.wait(
        "const t = [...document.querySelectorAll('#chat-log .wb-msg.assistant .wb-msg-text')].map(e => e.textContent).join(''); \
         return t === 'Thinking hard' && !document.getElementById('chat-stop').hidden ? t : null;",
        "the streamed tokens while the answer is open",
    )
    .await;
    assert!(w.fake.wait_for_holding(1, PAGE).await);
    // The figure (printed, not judged: a debug build on a shared machine): the first token from
    // the provider's send to the page, through agent, tunnel and relay.
    let shown_ms = w
        .browser
        .execute("return window.katachiFirstToken;")
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    let sent = w.fake.content_sent_times()[0];
    let sent_ms = (clocks.1 + sent.duration_since(clocks.0))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    eprintln!(
        "relay_chat: first token shown in the page {:.1} ms after the provider sent it",
        shown_ms - sent_ms
    );
    // the first message named the session
    w.browser
        .wait_for_text("#chat-title", "Think about it", PAGE)
        .await
        .unwrap();
    w.browser.click("#chat-stop").await.unwrap();
    assert!(
        w.fake.wait_for_disconnects(1, PAGE).await,
        "Stop closed the provider call"
    );
    w.turn_over("info").await;
    assert!(w
        .browser
        .text("#chat-log .wb-msg-interrupted")
        .await
        .unwrap()
        .starts_with("Stopped"));
    let session = w.open_session().await;
    let deadline = Instant::now() + PAGE;
    loop {
        let stored = w.api(&format!("/chat/sessions/{session}")).await;
        let messages = stored["messages"].as_array().cloned().unwrap_or_default();
        if messages.len() == 2 && stored["session"]["running"] == false {
            assert_eq!(messages[1]["content"], "Thinking hard", "{stored}");
            assert!(
                messages[1]["payload"]["interrupted"]
                    .as_str()
                    .unwrap()
                    .contains("stopped"),
                "{stored}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the stopped turn: {stored}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pids of `tail -f src/lib.rs` processes running in `workspace`.
fn tails_in(workspace: &Path) -> Vec<u32> {
    katachi_e2e::process::pids_where(|pid| {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_tail = args
            .first()
            .is_some_and(|a| a == b"tail" || a.ends_with(b"/tail"));
        is_tail
            && args.get(1) == Some(&&b"-f"[..])
            && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == workspace)
    })
}

/// Stop while an approved command runs: its output was live, and its process is gone.
async fn stop_a_running_command(w: &World) {
    w.fake.push(FakeAnswer::default().tool_call(
        "t1",
        "run_command",
        pieces(&json!({"command": "tail", "args": ["-f", "src/lib.rs"]})),
    ));
    w.say("Follow the file").await;
    let asked = w.pending("run_command").await;
    assert_eq!(asked["command"], "tail -f src/lib.rs", "{asked}");
    w.browser
        .click("#chat-log .wb-approval.pending .approve-once")
        .await
        .unwrap();
    w.wait(
        "const o = document.querySelector('.wb-tool[data-tool=run_command] .wb-tool-output'); \
         return o && o.textContent.includes('pub fn answer()') && !document.getElementById('chat-stop').hidden;",
        "the running command's live output",
    )
    .await;
    assert!(
        !tails_in(&w.workspace).is_empty(),
        "tail runs in the workspace"
    );
    w.browser.click("#chat-stop").await.unwrap();
    w.turn_over("info").await;
    let deadline = Instant::now() + PAGE;
    while !tails_in(&w.workspace).is_empty() {
        assert!(Instant::now() < deadline, "Stop left the command running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The approval waiting in the page: its tool, diff lines and colours, command line, expiry; `null`
/// while none waits (a script body; [`World::pending`] wraps it).
const PENDING: &str =
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

/// Read, patch (approved with the keyboard), `grep` (approved for the session) in the sandbox with
/// its output live, and the model's report.
async fn multi_step_task(w: &World) {
    for reply in multi_step_script() {
        w.fake.push(reply);
    }
    w.browser.click("#chat-new").await.unwrap();
    w.browser
        .wait_for_text("#chat-title", "New chat", PAGE)
        .await
        .unwrap();
    w.say("Make answer() return 42").await;
    let asked = w.pending("apply_patch").await;
    assert_eq!(asked["tool"], "apply_patch", "{asked}");
    assert_eq!(asked["add"], json!(["+    42\n"]), "{asked}");
    assert_eq!(asked["del"], json!(["-    41\n"]), "{asked}");
    let (add, del, ctx) = (&asked["add_bg"], &asked["del_bg"], &asked["ctx_bg"]);
    assert!(
        add != del && add != ctx && del != ctx,
        "added and removed lines are coloured apart: {asked}"
    );
    assert!(
        asked["expiry"].as_str().unwrap().starts_with("Expires at "),
        "{asked}"
    );
    assert_eq!(
        asked["buttons"],
        json!(["Approve once", "Approve for this session", "Deny"])
    );
    assert!(
        w.answers()
            .await
            .starts_with("Let me look.|It returns 41; here is the fix."),
        "{}",
        w.answers().await
    );
    // the read ran without asking, its result is in the page
    assert_eq!(
        w.browser
            .text(".wb-tool[data-tool=read_file] .wb-tool-state")
            .await
            .unwrap(),
        "done"
    );
    assert_eq!(w.lib(), LIB, "nothing is written before the approval");
    w.browser
        .execute("document.querySelector('#chat-log .wb-approval.pending').scrollIntoView({block: 'start'}); return true;")
        .await
        .unwrap();
    w.browser
        .screenshot_to(&screenshot_path!("relay-workbench-chat-approval.png"))
        .await
        .unwrap();

    // approved from the keyboard: focus the button, press Enter
    w.browser
        .send_keys("#chat-log .wb-approval.pending .approve-once", "\u{E007}")
        .await
        .unwrap();
    let asked = w.pending("run_command").await;
    assert_eq!(asked["tool"], "run_command", "{asked}");
    assert_eq!(asked["command"], "grep -n 42 src/lib.rs", "{asked}");
    assert_eq!(w.lib(), LIB.replace("41", "42"), "the patch is on disk");
    assert_eq!(
        w.browser
            .text(".wb-tool[data-tool=apply_patch] .wb-approval-status")
            .await
            .unwrap(),
        "Approved once"
    );
    w.browser
        .click("#chat-log .wb-approval.pending .approve-session")
        .await
        .unwrap();
    w.turn_over("ok").await;
    assert!(w.answers().await.ends_with(REPORT), "{}", w.answers().await);
    w.browser
        .screenshot_to(&screenshot_path!("relay-workbench-chat-report.png"))
        .await
        .unwrap();
    let output = w
        .browser
        .text(".wb-tool[data-tool=run_command] .wb-tool-output")
        .await
        .unwrap();
    assert!(
        output.contains("2:    42"),
        "the run's live output: {output}"
    );
    assert_eq!(
        w.browser
            .text(".wb-tool[data-tool=run_command] .wb-tool-state")
            .await
            .unwrap(),
        "done"
    );
    // the model was given the tools, the workspace memory, and the run's output
    let requests = w.fake.requests();
    let n = requests.len();
    assert!(requests[n - 4]
        .body
        .to_string()
        .contains("Always run grep after a change."));
    assert!(requests[n - 1].body.to_string().contains("2:    42"));
}

/// A denied patch: nothing written, the refusal shown, the model's next answer shown.
async fn denied_tool(w: &World) {
    w.fake.push(FakeAnswer::default().tool_call(
        "d1",
        "apply_patch",
        pieces(&json!({"patch": PATCH_43})),
    ));
    w.fake
        .push(FakeAnswer::text(["Understood, ", "I left it alone."]));
    w.say("Now make it 43").await;
    let asked = w.pending("apply_patch").await;
    assert_eq!(asked["add"], json!(["+    43\n"]), "{asked}");
    w.browser
        .click("#chat-log .wb-approval.pending .deny")
        .await
        .unwrap();
    w.turn_over("ok").await;
    assert!(
        w.answers().await.ends_with("Understood, I left it alone."),
        "{}",
        w.answers().await
    );
    let refused = w
        .browser
        .execute(
            "const t = [...document.querySelectorAll('.wb-tool[data-tool=apply_patch]')].pop(); \
             return [t.querySelector('.wb-approval-status').textContent, t.querySelector('.wb-tool-result summary').textContent];",
        )
        .await
        .unwrap();
    assert_eq!(refused[0], "Denied", "{refused}");
    assert!(
        refused[1].as_str().unwrap().contains("approval.denied"),
        "{refused}"
    );
    assert_eq!(
        w.lib(),
        LIB.replace("41", "42"),
        "the denied patch changed nothing"
    );
}

/// The provider fails mid-stream: the error is shown with its message, what came before stays,
/// and the next turn works.
async fn provider_error_mid_stream(w: &World) {
    w.fake.push(
        FakeAnswer::text(["Partial ", "answer ", "never ends"]).ending(Ending::ErrorAfter(2)),
    );
    w.say("Explain the change").await;
    w.turn_over("error").await;
    let error = w
        .wait(
            "const e = [...document.querySelectorAll('#chat-log .wb-chat-note.error')].pop(); \
             return e ? [e.dataset.code, e.textContent] : null;",
            "the provider's error",
        )
        .await;
    assert!(
        error[0].as_str().unwrap().starts_with("ai."),
        "a stable code: {error}"
    );
    assert!(error[1].as_str().unwrap().len() > 20, "a message: {error}");
    assert!(w.answers().await.ends_with("Partial answer "));
    // markup in the model's words is shown as it is, never run or rendered
    w.fake.push(FakeAnswer::text(["Complete. ", MARKUP]));
    w.say("Again, please").await;
    w.turn_over("ok").await;
    assert!(
        w.answers().await.ends_with(&format!("Complete. {MARKUP}")),
        "{}",
        w.answers().await
    );
    w.assert_markup_inert().await;
}

/// Renamed with the keyboard; exported as a Markdown download built in the page.
async fn rename_and_export(w: &World) {
    w.browser.click("#chat-rename").await.unwrap();
    w.browser
        .fill(".wb-chat-title-input", "Answer fix\u{E007}")
        .await
        .unwrap();
    w.browser
        .wait_for_text("#chat-title", "Answer fix", PAGE)
        .await
        .unwrap();
    w.browser
        .wait_for_text(
            ".wb-chat-session[aria-current=\"true\"]",
            "Answer fix",
            PAGE,
        )
        .await
        .unwrap();
    w.browser
        .execute(
            "window.katachiBlobs = []; const made = URL.createObjectURL; \
             URL.createObjectURL = (b) => { window.katachiBlobs.push(b); return made.call(URL, b); }; return true;",
        )
        .await
        .unwrap();
    w.browser.click("#chat-export").await.unwrap();
    let session = w.open_session().await;
    w.browser
        .wait_for_text(
            "#chat-status",
            &format!("Exported katachi-chat-{session}-answer-fix.md."),
            PAGE,
        )
        .await
        .unwrap();
    let markdown = w
        .browser
        .execute("return window.katachiBlobs[0].text();")
        .await
        .unwrap();
    let markdown = markdown.as_str().unwrap();
    assert!(markdown.starts_with("# Answer fix\n"), "{markdown}");
    for said in [
        "Make answer() return 42",
        REPORT,
        "apply_patch",
        "Complete.",
    ] {
        assert!(
            markdown.contains(said),
            "the export lacks {said:?}: {markdown}"
        );
    }
    assert!(!markdown.contains(KEY));
}

/// The agent is stopped and started again: the session is shown from its store, and a new turn
/// sends the old conversation.
async fn restart_and_resume(w: &mut World) {
    let stopped = blocking(|| w.agent.terminate(Duration::from_secs(15))).unwrap();
    assert!(stopped.success(), "{}", w.agent.describe("SIGTERM"));
    w.printed += &w.agent.describe("");
    wait_online(&w.relay, &w.agent_id, false).await;
    w.agent = SpawnedProcess::spawn(katachi(&w.home, &["start", "--heartbeat-secs", "1"])).unwrap();
    blocking(|| w.agent.wait_for_stdout_line("online", AGENT_REACTS))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_online(&w.relay, &w.agent_id, true).await;

    w.browser.goto(&w.workbench()).await.unwrap();
    w.wait(
        "return document.getElementById('workspace-picker').disabled ? null : true;",
        "the workspace list after the restart",
    )
    .await;
    w.browser.click("#tab-chat").await.unwrap();
    w.browser
        .wait_for_text("#chat-title", "Answer fix", PAGE)
        .await
        .unwrap();
    w.wait(
        "return document.querySelectorAll('#chat-log .wb-tool').length >= 4 ? true : null;",
        "the stored tool calls",
    )
    .await;
    let answers = w.answers().await;
    for said in [
        "It returns 41; here is the fix.",
        REPORT,
        "Understood, I left it alone.",
        "Complete.",
    ] {
        assert!(
            answers.contains(said),
            "{said:?} is not shown again: {answers}"
        );
    }
    let shown = w
        .browser
        .execute(
            "return [[...document.querySelectorAll('#chat-log .wb-msg.user .wb-msg-text')].map(e => e.textContent), \
             [...document.querySelectorAll('.wb-tool[data-tool=apply_patch] .wb-tool-decision')].map(e => e.textContent), \
             document.querySelector('.wb-tool[data-tool=run_command] .wb-tool-result').textContent];",
        )
        .await
        .unwrap();
    assert_eq!(
        shown[0],
        json!([
            "Make answer() return 42",
            "Now make it 43",
            "Explain the change",
            "Again, please"
        ])
    );
    assert_eq!(shown[1], json!(["Approved once", "Denied"]), "{shown}");
    assert!(answers.contains(MARKUP), "{answers}");
    w.assert_markup_inert().await;
    assert!(shown[2].as_str().unwrap().contains("2:    42"), "{shown}");

    w.fake
        .push(FakeAnswer::text(["Still here: ", "answer() returns 42."]));
    w.say("Are you still there?").await;
    w.turn_over("ok").await;
    assert!(w
        .answers()
        .await
        .ends_with("Still here: answer() returns 42."));
    let sent = w.fake.requests().last().unwrap().body.to_string();
    assert!(
        sent.contains("Make answer() return 42") && sent.contains("Understood, I left it alone."),
        "the resumed session sent its history: {sent}"
    );
}

/// A session opens on its latest page; "Load older" brings the earlier ones above it, and a result
/// shown before its call (on an older page) joins the call once that page is loaded.
async fn page_through_history(w: &World) {
    // pages of 4 messages, so that calls and their results fall on different pages
    w.browser
        .execute("document.getElementById('chat-log').dataset.pageSize = '4'; return true;")
        .await
        .unwrap();
    w.browser
        .click(".wb-chat-session[aria-current=\"true\"]")
        .await
        .unwrap();
    let counts = "return [document.querySelectorAll('#chat-log .wb-msg.user').length, \
        document.querySelectorAll('#chat-log .wb-tool').length, \
        document.querySelectorAll('#chat-log .wb-tool-result').length, \
        document.getElementById('chat-older').hidden];";
    let first = w
        .wait(
            &format!("const c = (() => {{ {counts} }})(); return c[0] === 2 && !c[3] ? c : null;"),
            "the latest page of 4 with Load older",
        )
        .await;
    assert_eq!(first, json!([2, 0, 0, false]), "the latest 4 messages only");
    let mut pages = 1;
    while w
        .browser
        .execute("return !document.getElementById('chat-older').hidden;")
        .await
        .unwrap()
        == true
    {
        let shown = w.browser.execute(counts).await.unwrap();
        w.browser.click("#chat-older").await.unwrap();
        w.wait(
            &format!(
                "const c = (() => {{ {counts} }})(); return JSON.stringify(c) !== {:?} ? c : null;",
                shown.to_string()
            ),
            "an older page",
        )
        .await;
        pages += 1;
        assert!(pages <= 10, "Load older never ends");
    }
    let session = w.open_session().await;
    let stored = w.api(&format!("/chat/sessions/{session}?limit=1000")).await;
    let stored = stored["messages"].as_array().unwrap().len();
    assert!(stored > 12, "{stored} messages");
    assert_eq!(pages, stored.div_ceil(4), "{stored} messages in pages of 4");
    let all = w.browser.execute(counts).await.unwrap();
    // four calls, each with its one result: none left alone
    assert_eq!(all, json!([5, 4, 4, true]), "every page loaded");
    let users = w
        .browser
        .execute("return [...document.querySelectorAll('#chat-log .wb-msg.user .wb-msg-text')].map(e => e.textContent);")
        .await
        .unwrap();
    assert_eq!(
        users,
        json!([
            "Make answer() return 42",
            "Now make it 43",
            "Explain the change",
            "Again, please",
            "Are you still there?"
        ])
    );
    assert!(w.answers().await.starts_with("Let me look.|It returns 41"));
}

/// Deleting asks in the page first; the session leaves the list.
async fn delete_session(w: &World) {
    w.browser
        .click(".wb-chat-session:not([aria-current=\"true\"])")
        .await
        .unwrap();
    w.browser
        .wait_for_text("#chat-title", "Think about it", PAGE)
        .await
        .unwrap();
    w.browser.click("#chat-delete").await.unwrap();
    w.browser.click("#chat-delete-confirm").await.unwrap();
    w.browser
        .wait_for_text("#chat-title", "Answer fix", PAGE)
        .await
        .unwrap();
    let titles = w
        .browser
        .execute(
            "return [...document.querySelectorAll('.wb-chat-session')].map(b => b.textContent);",
        )
        .await
        .unwrap();
    assert_eq!(titles, json!(["Answer fix"]));
    let ws = w
        .browser
        .execute("return document.getElementById('workspace-picker').value;")
        .await
        .unwrap();
    let listed = w
        .api(&format!(
            "/workspaces/{}/chat/sessions",
            ws.as_str().unwrap()
        ))
        .await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_chats_with_the_agent_in_the_workbench_approves_denies_stops_and_resumes_after_a_restart(
) {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session for the agent's keychain: run under scripts/with-session.sh"
    );
    tokio::time::timeout(TEST_BUDGET, async {
        let mut w = set_up().await;
        stop_mid_stream(&w).await;
        stop_a_running_command(&w).await;
        w.assert_page_keyless("after a stopped turn").await;
        multi_step_task(&w).await;
        denied_tool(&w).await;
        provider_error_mid_stream(&w).await;
        w.assert_page_keyless("after the tool calls").await;
        rename_and_export(&w).await;
        restart_and_resume(&mut w).await;
        page_through_history(&w).await;
        delete_session(&w).await;
        w.assert_page_keyless("after the restart").await;

        // The key went to the provider, as its bearer token...
        let requests = w.fake.requests();
        assert!(requests.len() >= 10, "{} provider calls", requests.len());
        for request in &requests {
            assert_eq!(
                request.header("authorization"),
                Some(&*format!("Bearer {KEY}"))
            );
        }
        // ...and nowhere else: the agent's and the CLI's output, the agent's files, the relay's.
        let agent_end = blocking(|| w.agent.terminate(Duration::from_secs(15))).unwrap();
        assert!(agent_end.success());
        w.printed += &w.agent.describe("");
        assert!(
            w.printed.contains("DEBUG") || w.printed.contains("debug"),
            "the agent logged at debug level"
        );
        assert!(!w.printed.contains(KEY), "the key is in the agent's output");
        for (path, bytes) in files_under(&w.home)
            .into_iter()
            .chain(files_under(w.relay.data_dir()))
        {
            assert!(!contains(&bytes, KEY), "the key is in {}", path.display());
        }
        w.browser.close().await.unwrap();
    })
    .await
    .expect("the test ran over its time budget");
}
