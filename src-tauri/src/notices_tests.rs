//! Which status changes notify the user.

use katachi_core::agent::Status;

use std::path::PathBuf;

use katachi_core::api::RunDenied;
use katachi_core::sandbox::{DenialKind, SandboxDenied};

use super::{DenialNotices, Notices, DENIAL_QUIET_SECS, DISCONNECTED_FOR};

fn connected() -> Status {
    Status::Connected {
        since: 0,
        relay: "https://relay.example.com".to_owned(),
        agent_name: "my-laptop".to_owned(),
    }
}

fn waiting(code: &str) -> Status {
    Status::WaitingForApproval {
        user_code: code.to_owned(),
        verification_uri: "https://relay.example.com/device".to_owned(),
        expires_at: 0,
    }
}

fn reconnecting() -> Status {
    Status::Reconnecting {
        at: 0,
        in_secs: 8,
        reason: "relay unreachable".to_owned(),
    }
}

#[test]
fn approval_then_connected_notifies_connected() {
    let mut n = Notices::default();
    assert_eq!(n.on_status(&waiting("ABCD-EFGH"), 0), None);
    let notice = n.on_status(&connected(), 1).map(|n| n.summary);
    assert_eq!(notice.as_deref(), Some("Katachi is connected"));
}

#[test]
fn a_connection_at_start_is_not_notified() {
    let mut n = Notices::default();
    assert_eq!(n.on_status(&Status::Connecting, 0), None);
    assert_eq!(n.on_status(&connected(), 1), None);
}

#[test]
fn an_outage_is_notified_once_after_a_minute_and_its_end_too() {
    let mut n = Notices::default();
    n.on_status(&connected(), 0);
    assert_eq!(n.on_status(&reconnecting(), 100), None);
    assert_eq!(n.next_tick(), Some(100 + DISCONNECTED_FOR));
    assert_eq!(n.on_tick(100 + DISCONNECTED_FOR - 1), None);
    let notice = n.on_tick(100 + DISCONNECTED_FOR).map(|n| n.body);
    assert!(notice.is_some_and(|body| body.contains("relay unreachable")));
    assert_eq!(n.on_tick(100 + 2 * DISCONNECTED_FOR), None);
    assert_eq!(n.next_tick(), None);
    let back = n.on_status(&connected(), 300).map(|n| n.summary);
    assert_eq!(back.as_deref(), Some("Katachi is connected again"));
}

#[test]
fn a_short_outage_and_a_pause_are_not_notified() {
    let mut n = Notices::default();
    n.on_status(&connected(), 0);
    n.on_status(&reconnecting(), 10);
    assert_eq!(n.on_status(&connected(), 20), None);
    assert_eq!(n.on_status(&Status::Paused { until: 9999 }, 30), None);
    assert_eq!(n.next_tick(), None);
    assert_eq!(n.on_tick(1000), None);
}

#[test]
fn losing_the_sign_in_notifies_sign_in_needed_with_the_reason() {
    let mut n = Notices::default();
    n.on_status(&connected(), 0);
    let reason = "this machine was removed at the relay".to_owned();
    let notice = n.on_status(
        &Status::SignedOut {
            reason: Some(reason.clone()),
        },
        1,
    );
    assert_eq!(
        notice.map(|n| (n.summary, n.body)),
        Some(("Sign-in needed".to_owned(), reason))
    );
}

#[test]
fn a_fresh_home_or_a_cancelled_sign_in_is_not_notified() {
    let mut n = Notices::default();
    assert_eq!(n.on_status(&Status::SignedOut { reason: None }, 0), None);
    n.on_status(&waiting("ABCD-EFGH"), 1);
    assert_eq!(n.on_status(&Status::SignedOut { reason: None }, 2), None);
}

#[test]
fn an_expired_code_replaced_by_a_new_one_is_notified_with_the_new_code() {
    let mut n = Notices::default();
    n.on_status(&waiting("ABCD-EFGH"), 0);
    let notice = n.on_status(&waiting("WXYZ-1234"), 900).map(|n| n.body);
    assert!(notice.is_some_and(|body| body.contains("WXYZ-1234")));
}

fn denied_in(workspace: &str) -> RunDenied {
    RunDenied {
        workspace: PathBuf::from(workspace),
        command: "curl https://evil.example".to_owned(),
        denied: SandboxDenied {
            kind: DenialKind::Exec,
            target: "curl".to_owned(),
            how_to_allow: "katachi sandbox policy set --workspace /code/app --allow-cmd curl"
                .to_owned(),
        },
    }
}

#[test]
fn a_denied_command_is_notified_with_what_was_denied_and_how_to_allow_it() {
    let mut n = DenialNotices::default();
    let notice = n.on_denial(&denied_in("/code/app"), 1000).unwrap();
    assert_eq!(notice.summary, "A command was denied by the sandbox");
    assert!(
        notice
            .body
            .contains("curl https://evil.example in /code/app"),
        "{}",
        notice.body
    );
    assert!(
        notice.body.contains("exec access to curl"),
        "{}",
        notice.body
    );
    assert!(
        notice.body.contains(
            "To allow it: katachi sandbox policy set --workspace /code/app --allow-cmd curl."
        ),
        "{}",
        notice.body
    );
}

#[test]
fn a_loop_of_denials_notifies_once_per_workspace_per_quiet_period_and_counts_the_rest() {
    let mut n = DenialNotices::default();
    assert!(n.on_denial(&denied_in("/code/app"), 1000).is_some());
    // the same workspace, denied again and again within the quiet period: silent
    for t in 1..DENIAL_QUIET_SECS {
        assert_eq!(
            n.on_denial(&denied_in("/code/app"), 1000 + t),
            None,
            "at +{t}"
        );
    }
    // another workspace is not held back by the first one
    assert!(n.on_denial(&denied_in("/code/other"), 1005).is_some());
    // once the period is over: one notice, saying how many were kept quiet
    let next = n
        .on_denial(&denied_in("/code/app"), 1000 + DENIAL_QUIET_SECS)
        .unwrap();
    let quiet = DENIAL_QUIET_SECS - 1;
    assert!(
        next.body.ends_with(&format!(
            " {quiet} more were denied here since the last notice."
        )),
        "{}",
        next.body
    );
    // and the count starts again
    assert_eq!(
        n.on_denial(&denied_in("/code/app"), 1000 + DENIAL_QUIET_SECS + 1),
        None
    );
    let after = n
        .on_denial(&denied_in("/code/app"), 1000 + 2 * DENIAL_QUIET_SECS)
        .unwrap();
    assert!(
        after
            .body
            .ends_with(" 1 more was denied here since the last notice."),
        "{}",
        after.body
    );
}
