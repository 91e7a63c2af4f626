//! The set-up and the turns: the model's setup shown, Stop (mid-stream, mid-command), the
//! multi-step task with its approvals, a denial, a provider error.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use katachi_e2e::approval::sign_up_verified;
use katachi_e2e::chromium::Browser;
use katachi_e2e::relay::InProcessRelay;
use katachi_e2e::screenshot_path;
use katachi_testkit::{Ending, FakeAnswer, FakeProvider, FakeReply};
use serde_json::json;

use super::world::*;

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

/// Relay, fake provider, a workspace allowed, the agent signed in; the workbench's Chat tab open
/// and the model's missing setup shown, then set up with the CLI and shown by name.
pub(crate) async fn set_up() -> World {
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
pub(crate) async fn stop_mid_stream(w: &World) {
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
pub(crate) async fn stop_a_running_command(w: &World) {
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

/// Read, patch (approved with the keyboard), `grep` (approved for the session) in the sandbox with
/// its output live, and the model's report.
pub(crate) async fn multi_step_task(w: &World) {
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
pub(crate) async fn denied_tool(w: &World) {
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
pub(crate) async fn provider_error_mid_stream(w: &World) {
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
