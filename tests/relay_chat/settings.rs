//! The workspace's Permissions ledger and Notes for the model, under the chat sessions.

use katachi_e2e::screenshot_path;
use serde_json::Value;

use super::world::*;

/// What a note saved in the panel says (the model must be given it).
pub(crate) const NOTE: &str = "Run cargo test before you report.";

/// The workspace shown (its id, as the picker holds it).
async fn workspace_id(w: &World) -> String {
    let ws = w
        .browser
        .execute("return document.getElementById('workspace-picker').value;")
        .await
        .unwrap();
    ws.as_str().unwrap().to_owned()
}

/// The ledger lists the session grant of `grep` made in the multi-step task; Revoke (keyboard)
/// marks it revoked, in the page and at the agent. A note saved in the panel is listed.
pub(crate) async fn permissions_and_notes(w: &World) {
    w.browser.click("#chat-grants-title").await.unwrap();
    let grant = w
        .wait(
            "const li = [...document.querySelectorAll('#chat-grants li[data-decision=session]')]\
             .find(l => l.querySelector('.wb-ledger-subject').textContent.includes('grep') && l.dataset.revoked === 'false'); \
             return li && li.querySelector('.wb-grant-revoke') ? li.dataset.grantId : null;",
            "the grep session grant in the Permissions ledger",
        )
        .await;
    let grant = grant.as_str().unwrap().to_owned();
    // the patch approved once is listed too, without a Revoke button
    let once = w
        .wait(
            "const li = [...document.querySelectorAll('#chat-grants li[data-decision=once]')]\
             .find(l => l.querySelector('strong').textContent === 'Apply patch'); \
             return li ? [li.querySelector('strong').textContent, li.querySelectorAll('button').length] : null;",
            "the patch approved once in the ledger",
        )
        .await;
    assert_eq!(once, serde_json::json!(["Apply patch", 0]));
    w.browser
        .send_keys(
            &format!("#chat-grants li[data-grant-id=\"{grant}\"] .wb-grant-revoke"),
            "\u{E007}",
        )
        .await
        .unwrap();
    let state = w
        .wait(
            &format!(
                "const li = document.querySelector('#chat-grants li[data-grant-id=\"{grant}\"]'); \
                 return li && li.dataset.revoked === 'true' && !li.querySelector('button') \
                 ? li.querySelector('.wb-ledger-state').textContent : null;"
            ),
            "the grant marked revoked",
        )
        .await;
    assert!(
        state
            .as_str()
            .unwrap()
            .starts_with("allowed for the session · revoked "),
        "{state}"
    );
    let ws = workspace_id(w).await;
    let ledger = w.api(&format!("/workspaces/{ws}/chat/grants")).await;
    let entry: &Value = ledger["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"].as_i64().map(|id| id.to_string()).as_deref() == Some(grant.as_str()))
        .unwrap_or_else(|| panic!("grant {grant} in {ledger}"));
    assert!(entry["revoked_at"].is_i64(), "{entry}");

    w.browser.click("#chat-notes-title").await.unwrap();
    w.browser.fill("#chat-note-key", "tests").await.unwrap();
    w.browser.fill("#chat-note-value", NOTE).await.unwrap();
    w.browser.click("#chat-note-save").await.unwrap();
    w.browser
        .wait_for_text(
            "#chat-notes li[data-note-key=tests] .wb-note-value",
            NOTE,
            PAGE,
        )
        .await
        .unwrap();
    let notes = w.api(&format!("/workspaces/{ws}/chat/notes")).await;
    assert_eq!(
        notes,
        serde_json::json!({"notes": [{"key": "tests", "value": NOTE}]})
    );
    w.browser
        .execute("document.getElementById('chat-grants-box').scrollIntoView({block: 'start'}); return true;")
        .await
        .unwrap();
    w.browser
        .screenshot_to(&screenshot_path!("relay-workbench-chat-permissions.png"))
        .await
        .unwrap();
}

/// The note saved in the panel was in the system prompt of the turn after it.
pub(crate) fn note_reached_the_model(w: &World) {
    let requests = w.fake.requests();
    let last = requests.last().unwrap().body.to_string();
    assert!(last.contains(NOTE), "{last}");
}
