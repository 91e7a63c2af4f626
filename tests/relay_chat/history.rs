//! A session after its turns: rename and export, the agent restarted and the session resumed,
//! its history paged, delete.

use std::time::{Duration, Instant};

use katachi_e2e::process::SpawnedProcess;
use katachi_testkit::FakeAnswer;
use serde_json::json;

use super::world::*;

/// Renamed with the keyboard; exported as a Markdown download built in the page.
pub(crate) async fn rename_and_export(w: &World) {
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
pub(crate) async fn restart_and_resume(w: &mut World) {
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
pub(crate) async fn page_through_history(w: &World) {
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
pub(crate) async fn delete_session(w: &World) {
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

/// The chat's activity reached the relay as signed events: sessions started, tools run, approvals
/// decided, and nothing of what was said.
pub(crate) async fn activity_reached_the_relay(w: &World) {
    let wanted = |events: &[(String, String)]| {
        let count = |kind: &str| events.iter().filter(|(k, _)| k == kind).count();
        // three sessions; read, patch, grep and the denied patch (the stopped `tail` has no
        // result); `tail`, patch, grep approved, one patch denied
        count("ai.session_started") >= 3
            && count("ai.tool_run") >= 4
            && count("ai.approval_decided") >= 4
    };
    let deadline = Instant::now() + PAGE;
    let events = loop {
        let events = relay_events(&w.relay, &w.agent_id).await;
        if wanted(&events) {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "the chat's activity did not reach the relay: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let decided: Vec<serde_json::Value> = events
        .iter()
        .filter(|(k, _)| k == "ai.approval_decided")
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect();
    for decision in ["once", "session", "deny"] {
        assert!(
            decided.iter().any(|d| d["decision"] == decision),
            "{decided:?}"
        );
    }
    for (kind, payload) in &events {
        for said in [
            "Make answer() return 42",
            "Thinking",
            "pub fn answer",
            "42\n",
            REPORT,
        ] {
            assert!(
                !payload.contains(said),
                "{kind} carries chat content: {payload}"
            );
        }
    }
}

/// The chat's colours come from the page's CSS variables: given a dark scheme's values, its
/// messages, tool calls and composer turn dark with light text.
pub(crate) async fn chat_follows_the_page_colours(w: &World) {
    let colours = w
        .browser
        .execute(
            "const root = document.documentElement.style; \
             for (const [k, v] of [['--card', '#161b22'], ['--bg', '#0d1117'], ['--fg', '#e6edf3'], ['--muted', '#8d96a0']]) root.setProperty(k, v); \
             const luma = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).map(Number); return 0.2126 * r + 0.7152 * g + 0.0722 * b; }; \
             const of = (css) => { const n = document.querySelector(css); const s = getComputedStyle(n); return [luma(s.backgroundColor), luma(s.color)]; }; \
             return ['#chat-log .wb-msg.assistant', '#chat-log .wb-msg.user', '#chat-log .wb-tool', '#chat-input'].map(of);",
        )
        .await
        .unwrap();
    for (part, pair) in ["answer", "user message", "tool call", "composer"]
        .iter()
        .zip(colours.as_array().unwrap())
    {
        let (background, text) = (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap());
        assert!(
            background < 80.0 && text > 180.0,
            "the {part} does not follow the dark variables: background {background}, text {text}"
        );
    }
}
