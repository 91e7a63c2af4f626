//! The tray menu, built on Tauri's mock runtime for each kind of state.

use katachi_core::agent::Status;
use tauri::menu::{Menu, MenuItemKind};
use tauri::{Manager, Runtime};

use super::menu::*;
use super::{build_tray_menu, MenuAction, TrayView, ViewClock};
use crate::sandbox;

const CLOCK: ViewClock = ViewClock {
    now: 1_796_220_000,
    local_offset_secs: 0,
};

fn context(sandbox_line: &str, web_ui_known: bool) -> MenuContext {
    MenuContext {
        sandbox_line: sandbox_line.to_owned(),
        web_ui_known,
    }
}

/// The menu's items: (id, text, enabled); a separator is `("-", "", false)`.
fn items<R: Runtime>(menu: &Menu<R>) -> tauri::Result<Vec<(String, String, bool)>> {
    let mut seen = Vec::new();
    for item in &menu.items()? {
        match item {
            MenuItemKind::MenuItem(item) => {
                seen.push((item.id().0.clone(), item.text()?, item.is_enabled()?));
            }
            MenuItemKind::Predefined(_) => seen.push(("-".into(), String::new(), false)),
            other => panic!("unexpected menu item {:?}", other.id()),
        }
    }
    Ok(seen)
}

fn menu_of(status: &Status, ctx: &MenuContext) -> tauri::Result<Vec<(String, String, bool)>> {
    let app = tauri::test::mock_app();
    let menu = build_tray_menu(app.app_handle(), &TrayView::of(status, CLOCK), ctx)?;
    items(&menu)
}

fn row(id: &str, text: &str, enabled: bool) -> (String, String, bool) {
    (id.to_owned(), text.to_owned(), enabled)
}

fn separator() -> (String, String, bool) {
    row("-", "", false)
}

#[test]
fn signed_out_menu_offers_sign_in_and_nothing_to_pause_or_stop() -> tauri::Result<()> {
    let line = "Sandbox: on — landlock abi 7, seccomp";
    let menu = menu_of(&Status::SignedOut { reason: None }, &context(line, false))?;
    assert_eq!(
        menu,
        [
            row(MENU_STATUS, "Sign-in needed", false),
            separator(),
            row(MENU_SIGN_IN, LABEL_SIGN_IN, true),
            row(MENU_WEB_UI, LABEL_WEB_UI, false),
            row(MENU_WORKSPACES, LABEL_WORKSPACES, true),
            separator(),
            row(MENU_SANDBOX, line, false),
            row(MENU_PAUSE, LABEL_PAUSE, false),
            row(MENU_STOP_ALL, LABEL_STOP_ALL, false),
            separator(),
            row(MENU_OPEN, LABEL_OPEN, true),
            row(MENU_QUIT, LABEL_QUIT, true),
        ]
    );
    Ok(())
}

#[test]
fn connected_menu_offers_sign_out_web_ui_pause_and_stop() -> tauri::Result<()> {
    let status = Status::Connected {
        since: CLOCK.now,
        relay: "https://relay.example.com".to_owned(),
        agent_name: "my-laptop".to_owned(),
    };
    let menu = menu_of(&status, &context("Sandbox: on", true))?;
    let enabled: Vec<&str> = menu
        .iter()
        .filter(|(_, _, enabled)| *enabled)
        .map(|(id, _, _)| id.as_str())
        .collect();
    assert_eq!(
        enabled,
        [
            MENU_SIGN_OUT,
            MENU_WEB_UI,
            MENU_WORKSPACES,
            MENU_PAUSE,
            MENU_STOP_ALL,
            MENU_OPEN,
            MENU_QUIT
        ]
    );
    assert_eq!(
        menu[0],
        row(
            MENU_STATUS,
            "Connected to relay.example.com as my-laptop",
            false
        )
    );
    Ok(())
}

#[test]
fn paused_menu_offers_resume_in_place_of_pause() -> tauri::Result<()> {
    let menu = menu_of(
        &Status::Paused {
            until: CLOCK.now + 3600,
        },
        &context("Sandbox: on", true),
    )?;
    assert!(
        menu.contains(&row(MENU_RESUME, LABEL_RESUME, true)),
        "{menu:?}"
    );
    assert!(!menu.iter().any(|(id, _, _)| id == MENU_PAUSE), "{menu:?}");
    assert!(
        menu.contains(&row(MENU_STOP_ALL, LABEL_STOP_ALL, false)),
        "{menu:?}"
    );
    Ok(())
}

#[test]
fn every_clickable_item_has_an_action_and_no_line_has_one() -> tauri::Result<()> {
    let menus = [
        menu_of(&Status::SignedOut { reason: None }, &context("s", true))?,
        menu_of(&Status::Paused { until: 0 }, &context("s", true))?,
        menu_of(&Status::Connecting, &context("s", true))?,
    ];
    for (id, text, _) in menus.iter().flatten() {
        let action = MenuAction::of_menu_id(id);
        let is_line = id == MENU_STATUS || id == MENU_SANDBOX || id == "-";
        assert_eq!(action.is_none(), is_line, "{id} ({text}) → {action:?}");
    }
    Ok(())
}

#[test]
fn sandbox_line_is_katachi_cores_summary_of_this_machine() -> tauri::Result<()> {
    let summary = sandbox::this_machine().summary();
    let menu = menu_of(&Status::Connecting, &context(&summary, false))?;
    assert!(
        menu.contains(&row(MENU_SANDBOX, &summary, false)),
        "{menu:?}"
    );
    Ok(())
}

#[test]
fn on_an_unsandboxed_system_the_sandbox_line_says_so() -> tauri::Result<()> {
    let windows = katachi_core::sandbox::SandboxStatus {
        backend: "windows",
        enforced: false,
        message: Some("commands run unsandboxed on Windows: katachi cannot confine them".into()),
        layers: Vec::new(),
    };
    let menu = menu_of(&Status::Connecting, &context(&windows.summary(), false))?;
    let text = menu
        .iter()
        .find(|(id, _, _)| id == MENU_SANDBOX)
        .map(|(_, text, _)| text.clone())
        .unwrap_or_default();
    assert!(text.starts_with("Sandbox: OFF — "), "{text}");
    assert!(text.contains("unsandboxed"), "{text}");
    Ok(())
}
