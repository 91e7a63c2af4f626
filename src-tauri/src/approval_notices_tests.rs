use katachi_core::ai::approvals::{ApprovalRequest, Decision, PendingApproval};
use serde_json::json;

use super::*;

const NOW: i64 = 1_800_000_000;
const WITH_ACTIONS: ServerFeatures = ServerFeatures {
    actions: true,
    body_markup: false,
};

fn approval(id: &str, tool: &str, preview: serde_json::Value) -> PendingApproval {
    PendingApproval {
        id: id.to_owned(),
        request: ApprovalRequest {
            workspace_id: 7,
            session_id: 3,
            tool: tool.to_owned(),
            subject: "cargo".to_owned(),
            summary: "Run `cargo test` in proj".to_owned(),
            preview,
        },
        expires_at: NOW + 300,
    }
}

fn command(args: &[&str], cwd: &str) -> PendingApproval {
    approval(
        "a1",
        "run_command",
        json!({"kind": "command", "command": "cargo", "args": args, "cwd": cwd}),
    )
}

#[test]
fn a_command_approval_shows_the_tool_workspace_and_exact_command_line_with_approve_and_deny() {
    let mut notices = ApprovalNotices::default();
    let notice = notices
        .on_asked(
            &command(&["test", "--all", "it's here", "$(rm -rf ~)"], "crates/x"),
            Some("/home/me/proj"),
            WITH_ACTIONS,
            NOW,
        )
        .unwrap();
    assert_eq!(notice.approval_id, "a1");
    assert_eq!(notice.summary, "Katachi: run a command?");
    assert_eq!(
        notice.body,
        "In /home/me/proj:\nRun: cargo test --all 'it'\\''s here' '$(rm -rf ~)' (in crates/x)\nUnanswered, it is refused in 5 min."
    );
    assert_eq!(
        notice.actions,
        vec![(ACTION_APPROVE, "Approve"), (ACTION_DENY, "Deny")]
    );
}

#[test]
fn a_write_or_patch_approval_lists_the_files_changed_with_line_counts() {
    let mut notices = ApprovalNotices::default();
    let diff = "--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,2 +1,2 @@\n-old\n+new\n+more\n context\n";
    let patch = approval(
        "p1",
        "apply_patch",
        json!({"kind": "diff", "paths": ["src/a.rs", "src/b.rs"], "unified_diff": diff}),
    );
    let notice = notices
        .on_asked(&patch, Some("/w"), WITH_ACTIONS, NOW + 120)
        .unwrap();
    assert_eq!(notice.summary, "Katachi: apply a patch?");
    assert_eq!(
        notice.body,
        "In /w:\nChange 2 files (+2 −1): src/a.rs, src/b.rs\nUnanswered, it is refused in 3 min."
    );
    let many: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let write = approval(
        "w1",
        "write_file",
        json!({"kind": "diff", "paths": many, "unified_diff": ""}),
    );
    let notice = notices.on_asked(&write, None, WITH_ACTIONS, NOW).unwrap();
    assert_eq!(notice.summary, "Katachi: write a file?");
    assert!(
        notice
            .body
            .starts_with("In workspace #7:\nChange 10 files (+0 −0): f0, f1,"),
        "{}",
        notice.body
    );
    assert!(notice.body.contains("f7 and 2 more"), "{}", notice.body);
}

#[test]
fn without_actions_the_notification_says_to_answer_in_the_web_ui_and_a_click_decides_nothing() {
    let mut notices = ApprovalNotices::default();
    let notice = notices
        .on_asked(
            &command(&["test"], ""),
            Some("/w"),
            ServerFeatures::default(),
            NOW,
        )
        .unwrap();
    assert!(notice.actions.is_empty());
    assert!(
        notice
            .body
            .ends_with("\nAnswer it in the chat of the web UI."),
        "{}",
        notice.body
    );
    assert_eq!(notices.on_action("a1", ACTION_APPROVE), None);
    // still shown: it is closed once the web UI answers
    assert!(notices.on_settled("a1"));
}

#[test]
fn approve_decides_once_and_deny_denies_each_only_once() {
    let mut notices = ApprovalNotices::default();
    notices.on_asked(&command(&[], ""), None, WITH_ACTIONS, NOW);
    assert_eq!(
        notices.on_action("a1", "default"),
        None,
        "a click on the body"
    );
    assert_eq!(
        notices.on_action("a1", ACTION_APPROVE),
        Some(Decision::Once)
    );
    assert_eq!(
        notices.on_action("a1", ACTION_APPROVE),
        None,
        "a second click"
    );
    assert!(
        !notices.on_settled("a1"),
        "closed by the server after the click"
    );

    let mut other = approval(
        "b2",
        "write_file",
        json!({"kind": "diff", "paths": ["x"], "unified_diff": ""}),
    );
    other.expires_at = NOW;
    notices.on_asked(&other, None, WITH_ACTIONS, NOW);
    assert_eq!(notices.on_action("b2", ACTION_DENY), Some(Decision::Deny));
}

#[test]
fn an_approval_decided_elsewhere_or_expired_closes_its_notification_and_a_late_click_decides_nothing(
) {
    let mut notices = ApprovalNotices::default();
    notices.on_asked(&command(&[], ""), None, WITH_ACTIONS, NOW);
    assert_eq!(notices.shown().collect::<Vec<_>>(), ["a1"]);
    assert!(notices.on_settled("a1"), "close it");
    assert_eq!(notices.on_action("a1", ACTION_APPROVE), None);
    assert!(!notices.on_settled("a1"), "nothing left to close");
    assert!(!notices.on_settled("never-shown"));
}

#[test]
fn a_dismissed_notification_decides_nothing_and_is_not_shown_twice_for_one_approval() {
    let mut notices = ApprovalNotices::default();
    let asked = command(&[], "");
    assert!(notices.on_asked(&asked, None, WITH_ACTIONS, NOW).is_some());
    assert!(notices.on_asked(&asked, None, WITH_ACTIONS, NOW).is_none());
    notices.on_closed("a1");
    assert_eq!(notices.on_action("a1", ACTION_DENY), None);
    assert!(!notices.on_settled("a1"));
}

#[test]
fn model_text_is_escaped_for_a_markup_server_and_long_command_lines_are_cut_saying_so() {
    let mut notices = ApprovalNotices::default();
    let markup = ServerFeatures {
        actions: true,
        body_markup: true,
    };
    let long = "x".repeat(700);
    let notice = notices
        .on_asked(&command(&["<b>&", &long], ""), Some("/w<i>"), markup, NOW)
        .unwrap();
    assert!(
        notice
            .body
            .starts_with("In /w&lt;i&gt;:\nRun: cargo '&lt;b&gt;&amp;' xxx"),
        "{}",
        notice.body
    );
    assert!(
        notice
            .body
            .contains("… (113 more characters: see the web UI)"),
        "{}",
        notice.body
    );
    assert!(!notice.body.contains("<b>"));
}

#[test]
fn an_unknown_preview_falls_back_to_the_summary_of_the_core() {
    let mut notices = ApprovalNotices::default();
    let notice = notices
        .on_asked(
            &approval("m1", "mcp_tool", json!({"kind": "other"})),
            Some("/w"),
            WITH_ACTIONS,
            NOW,
        )
        .unwrap();
    assert_eq!(notice.summary, "Katachi: allow mcp_tool?");
    assert!(
        notice.body.contains("\nRun `cargo test` in proj\n"),
        "{}",
        notice.body
    );
}

#[test]
fn server_features_are_read_from_the_capabilities() {
    let caps = ["body".to_owned(), "actions".to_owned()];
    assert_eq!(
        ServerFeatures::from_capabilities(&caps),
        ServerFeatures {
            actions: true,
            body_markup: false
        }
    );
    assert_eq!(
        ServerFeatures::from_capabilities(&[]),
        ServerFeatures::default()
    );
}
