//! The agent workbench in Debian's headless Chromium, against a relay served in this process and a
//! real agent API (katachi-core's router over a real git workspace) reached only through the tunnel
//! that the agent dials (`TunnelDialer`, TLS 1.3 with the relay's CA pinned).
//!
//! A user approves the agent, opens its workbench from "My agents", opens `src/main.rs` from the
//! tree and sees it in CodeMirror with syntax colours (CodeMirror's styles pass the strict CSP), sees
//! a binary file described rather than shown, changes a file on disk and finds it in git status with
//! its diff (added and removed lines coloured), edits and saves a file (and sees a conflict when the
//! file changed on disk meanwhile), sees a clear message with a working Retry while the agent is
//! offline; another user gets 404 for the page. In the Run panel, a user runs an allowed command and
//! sees its output, watches a running command's output arrive live and stops it (its process is
//! gone), and sees the structured reason when a command is not allowed; on an agent whose sandbox is
//! not enforced (Windows), sees the command its local user runs to allow runs in that workspace.
//!
//! Needs `/usr/bin/chromium`, `/usr/bin/chromedriver` and `git`; without them the test fails rather
//! than passes silently. Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots`, or to
//! `docs/screenshots` when `KATACHI_UPDATE_SCREENSHOTS=1`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_core::api::{router, ApiLimits, ApiState, FixedWorkspaces};
use katachi_e2e::agent_tunnel;
use katachi_e2e::approval::{approve_device, sign_up_verified};
use katachi_e2e::chromium::Browser;
use katachi_e2e::relay::{AgentCredentials, InProcessRelay};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Whole-test budget: Chromium start-up on a loaded 2-core machine included.
const TEST_BUDGET: Duration = Duration::from_secs(240);
/// Budget for a page to show what it should.
const PAGE: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery staple";
const MAIN_RS: &str = "fn main() {\n    let greeting = \"hello from the workbench\";\n    println!(\"{greeting}\");\n}\n";

/// One Chromium at a time: the machine has two cores, and the timings stay honest.
static ONE_BROWSER: Semaphore = Semaphore::const_new(1);

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Workbench Test",
            "-c",
            "user.email=wb@example.com",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is missing: apt-get install git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git repository with a few committed files.
fn make_workspace(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), MAIN_RS).unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        "pub fn answer() -> u32 {\n    42\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("README.md"),
        "# Demo\n\nA workspace for the workbench test.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("logo.bin"),
        [0x89, b'P', b'N', b'G', 0, 0, 1, 2, 3, 0xff],
    )
    .unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

/// The agent's side: its API router over `workspace`, served over the tunnel it dials.
fn dial_agent(
    relay: &InProcessRelay,
    agent: &AgentCredentials,
    workspace: &Path,
) -> JoinHandle<()> {
    let source = Arc::new(FixedWorkspaces::new([workspace]).unwrap());
    dial_agent_serving(relay, agent, ApiState::new(source))
}

/// Dials the relay as `agent` and serves the API over `state` through the tunnel.
fn dial_agent_serving(
    relay: &InProcessRelay,
    agent: &AgentCredentials,
    state: ApiState,
) -> JoinHandle<()> {
    agent_tunnel::dial_and_serve(relay, agent, router(state)).unwrap()
}

async fn wait_online(relay: &InProcessRelay, agent_id: &str, online: bool) {
    let deadline = Instant::now() + PAGE;
    while relay.state().tunnels.is_online(agent_id) != online {
        assert!(
            Instant::now() < deadline,
            "the tunnel never became online={online}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `script` until it returns a value `accept`s (bounded); that value.
async fn wait_for_script(
    browser: &Browser,
    script: &str,
    accept: impl Fn(&Value) -> bool,
    what: &str,
) -> Value {
    let deadline = Instant::now() + PAGE;
    loop {
        let value = browser.execute(script).await.unwrap();
        if accept(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: last {value}; the page reads: {}",
                browser.visible_text().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the CodeMirror editor inside the viewer's shadow root: its text, whether its base styles
/// apply, and the colours of the `fn` keyword and of plain text.
const EDITOR_PROBE: &str = r#"
const host = document.querySelector('#file-view .wb-editor-host');
const root = host && host.shadowRoot;
const content = root && root.querySelector('.cm-content');
if (!content) { return null; }
const editor = root.querySelector('.cm-editor');
const keyword = [...content.querySelectorAll('.cm-line span')].find((s) => s.textContent === 'fn');
return {
  text: [...content.querySelectorAll('.cm-line')].map((l) => l.textContent).join('\n'),
  editorDisplay: getComputedStyle(editor).display,
  keywordColor: keyword ? getComputedStyle(keyword).color : null,
  textColor: getComputedStyle(content).color,
  styleElements: document.querySelectorAll('style').length + root.querySelectorAll('style').length,
  adopted: root.adoptedStyleSheets.length,
};
"#;

/// Types `text` at the end of the editor the way a keyboard would (an input event CodeMirror reads).
const TYPE_AT_END: &str = r#"
const content = document.querySelector('#file-view .wb-editor-host').shadowRoot.querySelector('.cm-content');
content.focus();
const lines = content.querySelectorAll('.cm-line');
const last = lines[lines.length - 1];
const range = document.createRange();
range.selectNodeContents(last);
range.collapse(false);
const sel = window.getSelection();
sel.removeAllRanges();
sel.addRange(range);
document.execCommand('insertText', false, arguments[0] || '// edited in the workbench');
return true;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_browses_an_agents_workspace_sees_highlighted_code_and_the_diff_of_a_change() {
    let _one = ONE_BROWSER.acquire().await.unwrap();
    tokio::time::timeout(TEST_BUDGET, async {
        let relay = InProcessRelay::start(|_| {}).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let workspace = tmp.path().join("demo-project");
        make_workspace(&workspace);

        // The user approves the agent's device code in the browser.
        let browser = Browser::launch().await.unwrap();
        sign_up_verified(&browser, &relay, "wb-owner@example.com", PASSWORD, PAGE)
            .await
            .unwrap();
        let agent = approve_device(&browser, &relay, "wb-box", PAGE).await.unwrap();
        let mut tunnel = dial_agent(&relay, &agent, &workspace);
        wait_online(&relay, &agent.agent_id, true).await;

        // From "My agents" to the workbench.
        browser.goto(&relay.at("/agents")).await.unwrap();
        browser
            .click(&format!("tr[data-agent-id=\"{}\"] a.open", agent.agent_id))
            .await
            .unwrap();
        browser.wait_for_text("#agent-state", "online", PAGE).await.unwrap();
        browser
            .wait_for_text("#workspace-picker option", "demo-project", PAGE)
            .await
            .unwrap();
        browser.click("#workspace-picker option[value=\"1\"]").await.unwrap();

        // The tree lists the workspace lazily: src/ opens to show its files.
        browser.click("#file-tree [data-path=\"src\"]").await.unwrap();
        browser
            .click("#file-tree [data-path=\"src/main.rs\"]")
            .await
            .unwrap();
        let probe = wait_for_script(
            &browser,
            EDITOR_PROBE,
            |v| v["text"].as_str().is_some_and(|t| t.contains("hello from the workbench")),
            "src/main.rs in CodeMirror",
        )
        .await;
        assert_eq!(probe["text"], MAIN_RS, "{probe}");
        // CodeMirror's own stylesheet applies (adopted, not a <style> the CSP would block) ...
        assert_eq!(probe["editorDisplay"], "flex", "{probe}");
        assert_eq!(probe["styleElements"], 0, "{probe}");
        assert!(probe["adopted"].as_u64().unwrap_or(0) > 0, "{probe}");
        // ... and the Rust highlighting colours the keyword unlike plain text.
        let keyword = probe["keywordColor"].as_str().expect("no `fn` token span");
        assert_ne!(keyword, probe["textColor"].as_str().unwrap(), "{probe}");
        // Read-only until the user chooses Edit.
        let buttons = browser
            .execute(
                "const shown = (s) => document.querySelector(s).offsetParent !== null; \
                 return [shown('#file-edit'), shown('#file-save')];",
            )
            .await
            .unwrap();
        assert_eq!(buttons, serde_json::json!([true, false]), "Edit shown, Save hidden");
        let meta = browser.text("#file-meta").await.unwrap();
        assert!(meta.contains("Rust") && meta.contains("bytes"), "{meta}");
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("relay-workbench-file.png"))
            .await
            .unwrap();

        // A binary file is described, not shown as text.
        browser.click("#file-tree [data-path=\"logo.bin\"]").await.unwrap();
        browser
            .wait_for_text("#file-meta", "binary, 10 bytes", PAGE)
            .await
            .unwrap();

        // An API refusal is shown as its message, never as a blank pane: a hard-linked file.
        std::fs::write(tmp.path().join("outside.txt"), "outside the workspace\n").unwrap();
        std::fs::hard_link(tmp.path().join("outside.txt"), workspace.join("linked.txt")).unwrap();
        // A file larger than the viewer opens is described without being read.
        std::fs::write(workspace.join("big.log"), vec![b'x'; 3 << 20]).unwrap();
        browser
            .execute("document.querySelector('#workspace-picker').dispatchEvent(new Event('change')); return true;")
            .await
            .unwrap();
        browser
            .click("#file-tree [data-path=\"linked.txt\"]")
            .await
            .unwrap();
        browser
            .wait_for("#file-view .wb-message.error", PAGE)
            .await
            .unwrap();
        let refusal = browser.text("#file-view").await.unwrap();
        assert!(refusal.contains("several hard links"), "{refusal}");
        browser.click("#file-tree [data-path=\"big.log\"]").await.unwrap();
        browser
            .wait_for_text(
                "#file-view",
                "big.log is 3.0 MiB (3,145,728 bytes): the viewer opens files up to 2.0 MiB (2,097,152 bytes).",
                PAGE,
            )
            .await
            .unwrap();
        std::fs::remove_file(workspace.join("linked.txt")).unwrap();
        std::fs::remove_file(workspace.join("big.log")).unwrap();

        // A change on disk shows up in git status and its diff.
        std::fs::write(
            workspace.join("src/main.rs"),
            MAIN_RS.replace("hello from the workbench", "changed on disk"),
        )
        .unwrap();
        std::fs::write(workspace.join("NOTES.txt"), "new file\n").unwrap();
        browser.click("#git-refresh").await.unwrap();
        browser
            .wait_for_text("#git-status [data-path=\"src/main.rs\"] .wb-letters", "M", PAGE)
            .await
            .unwrap();
        browser
            .wait_for_text("#git-status [data-path=\"NOTES.txt\"] .wb-letters", "??", PAGE)
            .await
            .unwrap();
        browser
            .click("#git-status [data-path=\"src/main.rs\"]")
            .await
            .unwrap();
        browser
            .wait_for_text(
                "#diff-view .wb-line.del",
                "-    let greeting = \"hello from the workbench\";",
                PAGE,
            )
            .await
            .unwrap();
        assert_eq!(
            browser.text("#diff-view .wb-line.add").await.unwrap().trim_end(),
            "+    let greeting = \"changed on disk\";"
        );
        let colours = browser
            .execute(
                "const bg = (s) => getComputedStyle(document.querySelector(s)).backgroundColor; \
                 return [bg('#diff-view .wb-line.add'), bg('#diff-view .wb-line.del'), bg('#diff-view .wb-line.ctx')];",
            )
            .await
            .unwrap();
        assert_eq!(colours[0], "rgb(230, 246, 236)", "added lines are green: {colours}");
        assert_eq!(colours[1], "rgb(253, 236, 234)", "removed lines are red: {colours}");
        assert_ne!(colours[2], colours[0], "{colours}");
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("relay-workbench-diff.png"))
            .await
            .unwrap();

        // Edit and save through the API's hash-guarded write (the tree was reloaded: src/ is closed).
        browser.click("#file-tree [data-path=\"src\"]").await.unwrap();
        browser
            .click("#file-tree [data-path=\"src/lib.rs\"]")
            .await
            .unwrap();
        wait_for_script(
            &browser,
            EDITOR_PROBE,
            |v| v["text"].as_str().is_some_and(|t| t.contains("answer")),
            "src/lib.rs in CodeMirror",
        )
        .await;
        browser.click("#file-edit").await.unwrap();
        browser.execute(TYPE_AT_END).await.unwrap();
        browser.click("#file-save").await.unwrap();
        browser.wait_for_text("#file-status", "saved", PAGE).await.unwrap();
        let saved = std::fs::read_to_string(workspace.join("src/lib.rs")).unwrap();
        assert!(saved.contains("// edited in the workbench"), "{saved}");
        // Changed on disk after it was read: the next save is a conflict, and the disk wins.
        std::fs::write(workspace.join("src/lib.rs"), "// someone else\n").unwrap();
        browser.execute(TYPE_AT_END).await.unwrap();
        browser.click("#file-save").await.unwrap();
        wait_for_script(
            &browser,
            "return document.querySelector('#file-status').textContent;",
            |v| {
                v.as_str().is_some_and(|t| {
                    t.starts_with("Conflict, not saved:") && t.contains("changed since it was read")
                })
            },
            "the conflict message",
        )
        .await;
        assert_eq!(
            std::fs::read_to_string(workspace.join("src/lib.rs")).unwrap(),
            "// someone else\n"
        );

        // The agent goes offline: a clear message, and Retry works once it is back.
        tunnel.abort();
        let _ = tunnel.await;
        wait_online(&relay, &agent.agent_id, false).await;
        browser
            .goto(&relay.at(&format!("/agents/{}", agent.agent_id)))
            .await
            .unwrap();
        browser.wait_for("#banner #retry", PAGE).await.unwrap();
        let banner = browser.text("#banner").await.unwrap();
        assert!(
            browser.text("#file-tree").await.unwrap().contains("once it is reachable"),
            "the tree still says it is loading"
        );
        assert!(
            banner.contains("cannot be reached") && banner.contains("not connected"),
            "{banner}"
        );
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("relay-workbench-offline.png"))
            .await
            .unwrap();
        tunnel = dial_agent(&relay, &agent, &workspace);
        wait_online(&relay, &agent.agent_id, true).await;
        browser.click("#banner #retry").await.unwrap();
        browser.wait_for_text("#agent-state", "online", PAGE).await.unwrap();
        browser
            .wait_for("#file-tree [data-path=\"src\"]", PAGE)
            .await
            .unwrap();

        // Another user: the page is a 404, as for an unknown agent.
        browser.click("form[action=\"/logout\"] button").await.unwrap();
        // Signed out (wait for it: a sign-up started meanwhile would race the redirect).
        browser.wait_for_text("main h1", "Sign in", PAGE).await.unwrap();
        sign_up_verified(&browser, &relay, "wb-other@example.com", PASSWORD, PAGE)
            .await
            .unwrap();
        browser
            .goto(&relay.at(&format!("/agents/{}", agent.agent_id)))
            .await
            .unwrap();
        browser.wait_for_text("main h1", "Not found", PAGE).await.unwrap();
        assert!(!browser.source().await.unwrap().contains("wb-box"));

        tunnel.abort();
        browser.close().await.unwrap();
        relay.stop().await.unwrap();
    })
    .await
    .expect("the test ran over its time budget");
}

/// Pids of processes whose command line contains `marker` (the agent's sandboxed runs are in
/// their own PID namespace, still visible from here).
fn pids_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until the text of `css` contains `needle`; that text.
async fn wait_for_text_containing(browser: &Browser, css: &str, needle: &str) -> String {
    let script =
        format!("const n = document.querySelector({css:?}); return n ? n.textContent : null;");
    let value = wait_for_script(
        browser,
        &script,
        |v| v.as_str().is_some_and(|t| t.contains(needle)),
        &format!("{css} containing {needle:?}"),
    )
    .await;
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_runs_an_allowed_command_sees_its_output_live_stops_it_and_sees_a_denial() {
    let _one = ONE_BROWSER.acquire().await.unwrap();
    tokio::time::timeout(TEST_BUDGET, async {
        let relay = InProcessRelay::start(|_| {}).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let workspace = tmp.path().join("run-project");
        make_workspace(&workspace);
        let marker = format!("katachi-wb-live-{}", std::process::id());
        let log = workspace.join(format!("{marker}.log"));
        std::fs::write(&log, "build started\n").unwrap();

        let browser = Browser::launch().await.unwrap();
        sign_up_verified(&browser, &relay, "wb-run@example.com", PASSWORD, PAGE)
            .await
            .unwrap();
        let agent = approve_device(&browser, &relay, "run-box", PAGE)
            .await
            .unwrap();
        let tunnel = dial_agent(&relay, &agent, &workspace);
        wait_online(&relay, &agent.agent_id, true).await;
        browser
            .goto(&relay.at(&format!("/agents/{}", agent.agent_id)))
            .await
            .unwrap();
        browser
            .wait_for_text("#agent-state", "online", PAGE)
            .await
            .unwrap();

        // The Run tab lists the workspace's allowed commands and the sandbox it runs them in.
        browser.click("#tab-run").await.unwrap();
        browser
            .wait_for("#run-command option[value=\"cat\"]", PAGE)
            .await
            .unwrap();
        let sandbox = browser.text("#run-sandbox").await.unwrap();
        assert!(sandbox.contains("sandbox"), "{sandbox}");

        // An allowed command: its output and exit code.
        browser
            .click("#run-command option[value=\"cat\"]")
            .await
            .unwrap();
        browser
            .fill("#run-args", "README.md src/lib.rs")
            .await
            .unwrap();
        browser.click("#run-start").await.unwrap();
        wait_for_text_containing(&browser, "#run-status", "exit code 0").await;
        let output = browser.text("#run-output").await.unwrap();
        assert!(
            output.contains("A workspace for the workbench test.")
                && output.contains("pub fn answer()"),
            "{output}"
        );
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!("relay-workbench-run.png"))
            .await
            .unwrap();

        // Output arrives live through relay and tunnel while the command still runs; Stop kills it.
        browser
            .click("#run-command option[value=\"tail\"]")
            .await
            .unwrap();
        browser
            .fill("#run-args", &format!("-f {marker}.log"))
            .await
            .unwrap();
        browser.click("#run-start").await.unwrap();
        wait_for_text_containing(&browser, "#run-output", "build started").await;
        assert!(!pids_with(&marker).is_empty(), "tail is not running");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"step 2 done\n"))
            .unwrap();
        wait_for_text_containing(&browser, "#run-output", "step 2 done").await;
        assert!(
            browser
                .execute("return document.querySelector('#run-stop').offsetParent !== null;")
                .await
                .unwrap()
                .as_bool()
                .unwrap(),
            "Stop is shown while the command runs"
        );
        browser.click("#run-stop").await.unwrap();
        wait_for_text_containing(&browser, "#run-status", "Stopped").await;
        let deadline = Instant::now() + PAGE;
        while !pids_with(&marker).is_empty() {
            assert!(Instant::now() < deadline, "tail survived Stop");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A command that is not allowed (as a stale list or a crafted page would send): refused
        // before anything runs, with the structured reason shown readably.
        browser
            .execute(
                "const s = document.querySelector('#run-command'); \
                 s.append(new Option('rm', 'rm')); s.value = 'rm'; return true;",
            )
            .await
            .unwrap();
        browser.fill("#run-args", "-rf src").await.unwrap();
        browser.click("#run-start").await.unwrap();
        let denial =
            wait_for_text_containing(&browser, "#run-denial", "Denied by the sandbox").await;
        assert!(
            denial.contains("running rm is not allowed") && denial.contains("To allow it:"),
            "{denial}"
        );
        let kind = browser
            .execute("return document.querySelector('#run-denial').dataset.kind;")
            .await
            .unwrap();
        assert_eq!(kind, "exec");
        assert!(workspace.join("src/lib.rs").exists(), "nothing ran");
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!(
                "relay-workbench-run-denied.png"
            ))
            .await
            .unwrap();

        tunnel.abort();
        browser.close().await.unwrap();
        relay.stop().await.unwrap();
    })
    .await
    .expect("the test ran over its time budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_unenforced_sandbox_the_run_panel_shows_the_command_that_allows_runs() {
    let _one = ONE_BROWSER.acquire().await.unwrap();
    tokio::time::timeout(TEST_BUDGET, async {
        let relay = InProcessRelay::start(|_| {}).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let workspace = tmp.path().join("windows-box");
        make_workspace(&workspace);
        let browser = Browser::launch().await.unwrap();
        sign_up_verified(
            &browser,
            &relay,
            "wb-unenforced@example.com",
            PASSWORD,
            PAGE,
        )
        .await
        .unwrap();
        let agent = approve_device(&browser, &relay, "windows-box", PAGE)
            .await
            .unwrap();
        // the agent behaves as on Windows: its sandbox is not enforced
        let source = Arc::new(FixedWorkspaces::new([&workspace]).unwrap());
        let state = ApiState::with_unenforced_sandbox(source, ApiLimits::default());
        let tunnel = dial_agent_serving(&relay, &agent, state);
        wait_online(&relay, &agent.agent_id, true).await;
        browser
            .goto(&relay.at(&format!("/agents/{}", agent.agent_id)))
            .await
            .unwrap();
        browser.click("#tab-run").await.unwrap();
        browser
            .wait_for("#run-command option[value=\"cat\"]", PAGE)
            .await
            .unwrap();
        browser
            .click("#run-command option[value=\"cat\"]")
            .await
            .unwrap();
        browser.fill("#run-args", "README.md").await.unwrap();
        browser.click("#run-start").await.unwrap();
        let shown = wait_for_text_containing(&browser, "#run-denial", "--allow-unsandboxed").await;
        let canonical = std::fs::canonicalize(&workspace).unwrap();
        assert!(
            shown.contains(&format!(
                "katachi sandbox policy set --workspace {} --allow-unsandboxed",
                canonical.display()
            )),
            "{shown}"
        );
        let kind = browser
            .execute("return document.querySelector('#run-denial').dataset.kind;")
            .await
            .unwrap();
        assert_eq!(kind, "unenforced");
        let output = browser.text("#run-output").await.unwrap();
        assert!(
            !output.contains("A workspace for the workbench test."),
            "{output}"
        );
        browser
            .screenshot_to(&katachi_e2e::screenshot_path!(
                "relay-workbench-run-unenforced.png"
            ))
            .await
            .unwrap();
        tunnel.abort();
        browser.close().await.unwrap();
        relay.stop().await.unwrap();
    })
    .await
    .expect("the test ran over its time budget");
}
