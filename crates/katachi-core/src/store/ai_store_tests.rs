//! The AI tables: messages with structured parts, the approvals ledger, provider settings.

use super::*;
use crate::vault::{DerivedKey, Purpose};

fn open_with_workspace() -> (tempfile::TempDir, Store, i64) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(
        &tmp.path().join("k.db"),
        &DerivedKey::from_bytes([7; 32], Purpose::STORE),
    )
    .unwrap();
    let ws_dir = tmp.path().join("ws");
    std::fs::create_dir(&ws_dir).unwrap();
    let ws = match store.workspaces().add(&ws_dir, &[]).unwrap() {
        AddOutcome::Added { workspace, .. } => workspace,
        other => panic!("unexpected {other:?}"),
    };
    (tmp, store, ws.id)
}

#[test]
fn messages_keep_their_structured_part_and_page_backwards_from_the_latest() {
    let (_tmp, store, ws) = open_with_workspace();
    let chat = store.chat();
    let session = chat.create_session(Some(ws), "fix the bug").unwrap();
    let payload = r#"{"tool_calls":[{"id":"c1","name":"read_file","arguments":{}}]}"#;
    let texts: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    for t in &texts {
        chat.append_messages(
            session.id,
            [NewMessage {
                role: Role::Assistant,
                content: t,
                payload: Some(payload),
            }],
        )
        .unwrap();
    }
    let latest = chat.latest_messages(session.id, None, 10).unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        texts[15..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(latest[0].payload.as_deref(), Some(payload));
    let older = chat
        .latest_messages(session.id, Some(latest[0].id), 10)
        .unwrap();
    assert_eq!(older.first().unwrap().content, "m5");
    assert_eq!(older.last().unwrap().content, "m14");
    assert_eq!(chat.session_message_count(session.id).unwrap(), 25);
    assert_eq!(chat.sessions_of(ws, 10).unwrap(), vec![session.clone()]);
    assert_eq!(chat.session(session.id).unwrap(), Some(session.clone()));
    assert!(chat.delete_session(session.id).unwrap());
    assert_eq!(chat.session(session.id).unwrap(), None);
    assert_eq!(chat.session_message_count(session.id).unwrap(), 0);
}

#[test]
fn a_deleted_sessions_id_is_never_given_again_even_after_a_reopen() {
    let (tmp, store, ws) = open_with_workspace();
    let chat = store.chat();
    let first = chat.create_session(Some(ws), "one").unwrap();
    let second = chat.create_session(Some(ws), "two").unwrap();
    assert_eq!(second.id, first.id + 1);
    assert!(chat.delete_session(second.id).unwrap());
    let third = chat.create_session(Some(ws), "three").unwrap();
    assert_eq!(
        third.id,
        second.id + 1,
        "the deleted session's id came back"
    );
    assert!(chat.delete_session(third.id).unwrap());
    assert!(chat.delete_session(first.id).unwrap());
    drop(store);
    let store = Store::open(
        &tmp.path().join("k.db"),
        &DerivedKey::from_bytes([7; 32], Purpose::STORE),
    )
    .unwrap();
    let fourth = store.chat().create_session(None, "four").unwrap();
    assert_eq!(fourth.id, third.id + 1);
}

#[test]
fn a_session_grant_holds_until_revoked_and_only_its_workspace_can_revoke_it() {
    let (_tmp, store, ws) = open_with_workspace();
    let session = store.chat().create_session(Some(ws), "s").unwrap().id;
    let ledger = store.approvals();
    ledger
        .record(ws, Some(session), "run_command", "cargo", Decision::Once)
        .unwrap();
    assert!(ledger
        .session_grant(session, "run_command", "cargo")
        .unwrap()
        .is_none());
    let grant = ledger
        .record(ws, Some(session), "run_command", "cargo", Decision::Session)
        .unwrap();
    assert_eq!(
        ledger
            .session_grant(session, "run_command", "cargo")
            .unwrap()
            .map(|g| g.id),
        Some(grant)
    );
    // another subject or tool is not covered
    assert!(ledger
        .session_grant(session, "run_command", "make")
        .unwrap()
        .is_none());
    assert!(!ledger.revoke(ws + 1, grant).unwrap());
    assert!(ledger.revoke(ws, grant).unwrap());
    assert!(!ledger.revoke(ws, grant).unwrap(), "already revoked");
    assert!(ledger
        .session_grant(session, "run_command", "cargo")
        .unwrap()
        .is_none());
    let all = ledger.of_workspace(ws, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].revoked_at.is_some());
    assert_eq!(all[1].decision, Decision::Once);
}

#[test]
fn provider_settings_fall_away_with_their_workspace_but_the_default_stays() {
    let (tmp, store, ws) = open_with_workspace();
    let row = AiSettingsRow {
        provider: "anthropic".into(),
        model: "claude-x".into(),
        base_url: None,
        key_name: None,
    };
    store.ai_settings().set(DEFAULT_AI_SETTINGS, &row).unwrap();
    let local = AiSettingsRow {
        provider: "openai".into(),
        model: "qwen".into(),
        base_url: Some("http://127.0.0.1:11434/v1".into()),
        key_name: Some("ollama".into()),
    };
    store.ai_settings().set(ws, &local).unwrap();
    assert_eq!(store.ai_settings().get(ws).unwrap(), Some(local));
    store.workspaces().remove(&tmp.path().join("ws")).unwrap();
    assert_eq!(store.ai_settings().get(ws).unwrap(), None);
    assert_eq!(
        store.ai_settings().get(DEFAULT_AI_SETTINGS).unwrap(),
        Some(row)
    );
}

#[test]
fn workspace_notes_are_listed_by_key() {
    let (_tmp, store, ws) = open_with_workspace();
    store.memory().remember(ws, "style", "tabs").unwrap();
    store.memory().remember(ws, "build", "make").unwrap();
    assert_eq!(
        store.memory().all(ws).unwrap(),
        vec![
            ("build".to_owned(), "make".to_owned()),
            ("style".to_owned(), "tabs".to_owned())
        ]
    );
}
