//! The tray's view of every [`Status`].

use katachi_core::agent::Status;

use super::{AccountItem, RemoteItem, TrayView, ViewClock};
use crate::tray::icon::TrayIcon;

/// 2026-12-02 14:00:00 UTC.
const NOW: i64 = 1_796_220_000;
const UTC: ViewClock = ViewClock {
    now: NOW,
    local_offset_secs: 0,
};

fn view(status: &Status) -> TrayView {
    TrayView::of(status, UTC)
}

#[test]
fn connected_names_the_relay_host_and_the_agent() {
    let v = view(&Status::Connected {
        since: NOW - 60,
        relay: "https://relay.example.com/".to_owned(),
        agent_name: "my-laptop".to_owned(),
    });
    assert_eq!(v.status_line, "Connected to relay.example.com as my-laptop");
    assert_eq!(v.icon, TrayIcon::Connected);
    assert_eq!(v.account, AccountItem::SignOut);
    assert_eq!(v.remote, RemoteItem::Pause { enabled: true });
    assert!(v.stop_all_enabled);
}

#[test]
fn connected_to_a_relay_on_a_port_keeps_the_port() {
    let v = view(&Status::Connected {
        since: NOW,
        relay: "https://127.0.0.1:8443".to_owned(),
        agent_name: "ci".to_owned(),
    });
    assert_eq!(v.status_line, "Connected to 127.0.0.1:8443 as ci");
}

#[test]
fn reconnecting_counts_down_to_the_next_attempt_and_says_why() {
    let status = Status::Reconnecting {
        at: NOW + 8,
        in_secs: 10,
        reason: "relay unreachable".to_owned(),
    };
    let v = view(&status);
    assert_eq!(v.status_line, "Reconnecting in 8 s: relay unreachable");
    assert_eq!(v.icon, TrayIcon::Reconnecting);
    assert_eq!(v.remote, RemoteItem::Pause { enabled: true });
    assert!(v.stop_all_enabled);
    let late = TrayView::of(
        &status,
        ViewClock {
            now: NOW + 30,
            ..UTC
        },
    );
    assert_eq!(late.status_line, "Reconnecting in 0 s: relay unreachable");
}

#[test]
fn signed_out_asks_for_a_sign_in_and_offers_nothing_to_pause() {
    let v = view(&Status::SignedOut { reason: None });
    assert_eq!(v.status_line, "Sign-in needed");
    assert_eq!(v.icon, TrayIcon::SignedOut);
    assert_eq!(v.account, AccountItem::SignIn);
    assert_eq!(v.remote, RemoteItem::Pause { enabled: false });
    assert!(!v.stop_all_enabled);
}

#[test]
fn signed_out_by_the_relay_says_why() {
    let v = view(&Status::SignedOut {
        reason: Some("this machine was removed at the relay".to_owned()),
    });
    assert_eq!(
        v.status_line,
        "Sign-in needed: this machine was removed at the relay"
    );
}

#[test]
fn waiting_for_approval_shows_the_code() {
    let v = view(&Status::WaitingForApproval {
        user_code: "ABCD-EFGH".to_owned(),
        verification_uri: "https://relay.example.com/device".to_owned(),
        expires_at: NOW + 600,
    });
    assert_eq!(v.status_line, "Waiting for approval: code ABCD-EFGH");
    assert_eq!(v.icon, TrayIcon::Waiting);
    // "Sign in…" brings the Connect view (with the code) back
    assert_eq!(v.account, AccountItem::SignIn);
    assert!(!v.stop_all_enabled);
}

#[test]
fn connecting_can_be_paused_or_stopped() {
    let v = view(&Status::Connecting);
    assert_eq!(v.status_line, "Connecting…");
    assert_eq!(v.icon, TrayIcon::Connecting);
    assert_eq!(v.remote, RemoteItem::Pause { enabled: true });
    assert!(v.stop_all_enabled);
}

#[test]
fn paused_shows_the_local_clock_time_it_resumes_and_offers_resume() {
    let v = view(&Status::Paused {
        until: NOW + 3600 + 4 * 60,
    });
    assert_eq!(v.status_line, "Paused until 15:04");
    assert_eq!(v.icon, TrayIcon::Paused);
    assert_eq!(v.remote, RemoteItem::Resume);
    assert!(!v.stop_all_enabled);

    let tokyo = ViewClock {
        local_offset_secs: 9 * 3600,
        ..UTC
    };
    let v = TrayView::of(&Status::Paused { until: NOW + 3600 }, tokyo);
    assert_eq!(v.status_line, "Paused until 00:00");
}

#[test]
fn a_stop_reads_as_stopped_until_resumed_not_as_a_date() {
    let v = view(&Status::Paused {
        until: NOW + 10 * 365 * 24 * 3600,
    });
    assert_eq!(v.status_line, "Remote access stopped until you resume it");
    assert_eq!(v.remote, RemoteItem::Resume);
}

#[test]
fn error_states_the_problem_and_its_fix() {
    let v = view(&Status::Error {
        message: "the relay's certificate changed".to_owned(),
        fix: "sign in again with the new CA".to_owned(),
    });
    assert_eq!(
        v.status_line,
        "Error: the relay's certificate changed — sign in again with the new CA"
    );
    assert_eq!(v.icon, TrayIcon::Error);
    assert!(!v.stop_all_enabled);
}

#[test]
fn every_state_has_its_own_icon() {
    let all = [
        Status::SignedOut { reason: None },
        Status::WaitingForApproval {
            user_code: "A".into(),
            verification_uri: "u".into(),
            expires_at: NOW,
        },
        Status::Connecting,
        Status::Connected {
            since: NOW,
            relay: "r".into(),
            agent_name: "a".into(),
        },
        Status::Reconnecting {
            at: NOW,
            in_secs: 1,
            reason: "r".into(),
        },
        Status::Paused { until: NOW },
        Status::Error {
            message: "m".into(),
            fix: "f".into(),
        },
    ];
    let icons: std::collections::HashSet<TrayIcon> = all.iter().map(|s| view(s).icon).collect();
    assert_eq!(icons.len(), all.len());
}

#[test]
fn tooltip_repeats_the_status_line() {
    assert_eq!(view(&Status::Connecting).tooltip(), "Katachi — Connecting…");
}

#[test]
fn an_open_menu_survives_retries_and_fresh_codes_but_not_a_change_of_actions() {
    let reconnecting = view(&Status::Reconnecting {
        at: NOW + 8,
        in_secs: 8,
        reason: "relay unreachable".to_owned(),
    });
    let connecting = view(&Status::Connecting);
    let connected = view(&Status::Connected {
        since: NOW,
        relay: "https://relay.example.com".to_owned(),
        agent_name: "my-laptop".to_owned(),
    });
    let waiting = |code: &str| {
        view(&Status::WaitingForApproval {
            user_code: code.to_owned(),
            verification_uri: "https://relay.example.com/device".to_owned(),
            expires_at: NOW + 600,
        })
    };
    let paused = view(&Status::Paused { until: NOW + 3600 });
    let signed_out = view(&Status::SignedOut { reason: None });

    // Same actions, other words: the shown menu keeps its items and only its first line changes.
    assert!(reconnecting.same_menu_items(&connecting));
    assert!(connecting.same_menu_items(&connected));
    assert!(waiting("ABCD-EFGH").same_menu_items(&waiting("JKLM-NPQR")));
    // Other actions: a new menu.
    assert!(!connected.same_menu_items(&paused));
    assert!(!connected.same_menu_items(&signed_out));
    assert!(!paused.same_menu_items(&signed_out));
}

#[test]
fn a_long_error_is_cut_in_the_menu_and_kept_whole_in_the_tooltip() {
    let message = format!("the saved credentials cannot be read: {}", "x".repeat(200));
    let v = view(&Status::Error {
        message: message.clone(),
        fix: "run `katachi doctor`".to_owned(),
    });
    let line = super::menu_line(&v.status_line);
    assert_eq!(line.chars().count(), super::MENU_LINE_MAX);
    assert!(line.ends_with('…'), "{line}");
    assert!(
        line.starts_with("Error: the saved credentials cannot be read"),
        "{line}"
    );
    assert!(v.tooltip().contains(&message));
    // A short line is shown as it is.
    assert_eq!(super::menu_line("Sign-in needed"), "Sign-in needed");
}
