//! Applying a [`TrayView`] to the live tray, and the task that keeps it in step with the status.
//!
//! The view is computed off the main thread; the icon, tooltip and menu are replaced on the main
//! thread (GTK's). A change that leaves the menu's items as they were (connecting ↔ reconnecting,
//! a new approval code) changes the status line's text and the icon only, so a menu the user has
//! open stays open; so does the countdown, refreshed once a second while the agent waits to
//! reconnect.

use std::time::Duration;

use katachi_core::agent::Status;
use katachi_core::api::RunDenied;
use tauri::menu::Menu;
use tauri::{AppHandle, Manager, Runtime};
use tokio::sync::{broadcast, watch};

use super::menu::{build_tray_menu, MenuContext, MENU_STATUS};
use super::view::{menu_line, TrayView, ViewClock};
use super::TRAY_ID;
use crate::agent_host::AgentHost;
use crate::notices::{self, DenialNotices, Notice, Notices};

/// What rendering needs besides the status: the fixed menu context and the local offset.
pub(crate) struct TrayRenderer {
    /// The sandbox line (fixed for the process) and whether the relay is known.
    pub(crate) context: MenuContext,
    /// The user's offset from UTC, read at start-up.
    pub(crate) local_offset_secs: i32,
}

impl TrayRenderer {
    /// The view of `status` now.
    pub(crate) fn view(&self, status: &Status) -> TrayView {
        TrayView::of(
            status,
            ViewClock {
                now: unix_now(),
                local_offset_secs: self.local_offset_secs,
            },
        )
    }
}

/// Follows `status` until its channel closes: every change is rendered at once; while
/// reconnecting, the countdown is refreshed every second.
pub(crate) async fn follow_status<R: Runtime>(
    app: AppHandle<R>,
    renderer: TrayRenderer,
    mut status: watch::Receiver<Status>,
) {
    let mut notices = Notices::default();
    loop {
        let current = status.borrow_and_update().clone();
        if let Some(notice) = notices.on_status(&current, unix_now()) {
            notify(&app, notice);
        }
        let context = MenuContext {
            web_ui_known: app.state::<AgentHost>().relay_url().is_some(),
            ..renderer.context.clone()
        };
        let view = renderer.view(&current);
        let redraw = app.clone();
        let applied = app.run_on_main_thread(move || {
            if let Err(err) = apply_view(&redraw, &view, &context) {
                eprintln!("katachi-app: cannot redraw the tray: {err}");
            }
        });
        if applied.is_err() {
            return; // the event loop has ended
        }
        let counting_down = matches!(current, Status::Reconnecting { .. });
        loop {
            tokio::select! {
                changed = status.changed() => {
                    if changed.is_err() {
                        return; // the agent's task has ended; its last status stays shown
                    }
                    break;
                }
                () = sleep_until_unix(notices.next_tick()) => {
                    if let Some(notice) = notices.on_tick(unix_now()) {
                        notify(&app, notice);
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)), if counting_down => {
                    let line = renderer.view(&current).status_line;
                    let app2 = app.clone();
                    let _ = app.run_on_main_thread(move || refresh_status_line(&app2, &line));
                }
            }
        }
    }
}

/// Follows the agent's sandbox denials until the agent is gone: each may notify (what was
/// denied, how to allow it), rate-limited per workspace by [`DenialNotices`]. Denials missed
/// while lagging behind are skipped: a burst that large would be rate-limited anyway.
pub(crate) async fn follow_denials<R: Runtime>(
    app: AppHandle<R>,
    mut denials: broadcast::Receiver<RunDenied>,
) {
    let mut notices = DenialNotices::default();
    loop {
        match denials.recv().await {
            Ok(denied) => {
                if let Some(notice) = notices.on_denial(&denied, unix_now()) {
                    notify(&app, notice);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Sleeps until the unix time `at`; forever when `None`.
async fn sleep_until_unix(at: Option<i64>) {
    match at {
        Some(at) => {
            let wait = u64::try_from(at - unix_now()).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        None => std::future::pending().await,
    }
}

/// Shows `notice` unless the user turned notifications off; off the async workers (a blocking
/// D-Bus call). A desktop with no notification service only costs a line on stderr.
fn notify<R: Runtime>(app: &AppHandle<R>, notice: Notice) {
    if !app.state::<AgentHost>().notifications_enabled() {
        return;
    }
    tauri::async_runtime::spawn_blocking(move || {
        if let Err(err) = notices::show(&notice) {
            eprintln!(
                "katachi-app: cannot show the notification {:?}: {err}",
                notice.summary
            );
        }
    });
}

/// Shows `view` in the tray: its icon and tooltip, and its menu — a new one only where the items
/// differ from the shown menu's (else that menu's status line gets the new words). Main thread only.
fn apply_view<R: Runtime>(
    app: &AppHandle<R>,
    view: &TrayView,
    context: &MenuContext,
) -> tauri::Result<()> {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return Ok(()); // no tray (no tray host): nothing to draw
    };
    app.manage(ShownMenu::<R>::default());
    let state = app.state::<ShownMenu<R>>();
    let Ok(mut shown) = state.0.lock() else {
        return Ok(()); // a panic while drawing poisoned it: keep what is shown
    };
    if shown.as_ref().map(|s| s.view.icon) != Some(view.icon) {
        tray.set_icon(Some(view.icon.image()))?;
    }
    tray.set_tooltip(Some(view.tooltip()))?;
    match shown.as_mut() {
        Some(s) if s.view.same_menu_items(view) && s.context == *context => {
            set_status_line(&s.menu, &view.status_line);
            s.view = view.clone();
        }
        _ => {
            let menu = build_tray_menu(app, view, context)?;
            tray.set_menu(Some(menu.clone()))?;
            *shown = Some(Shown {
                menu,
                view: view.clone(),
                context: context.clone(),
            });
        }
    }
    Ok(())
}

/// Sets the status line's text in the menu shown now. Main thread only.
fn refresh_status_line<R: Runtime>(app: &AppHandle<R>, line: &str) {
    let Some(state) = app.try_state::<ShownMenu<R>>() else {
        return;
    };
    let shown = state.0.lock();
    if let Ok(Some(shown)) = shown.as_deref() {
        set_status_line(&shown.menu, line);
    }
}

/// Sets the text of `menu`'s status line.
fn set_status_line<R: Runtime>(menu: &Menu<R>, line: &str) {
    if let Some(item) = menu.get(MENU_STATUS).as_ref().and_then(|k| k.as_menuitem()) {
        let _ = item.set_text(menu_line(line));
    }
}

/// The menu the tray shows now, and what it was built from.
struct Shown<R: Runtime> {
    /// The menu.
    menu: Menu<R>,
    /// The view shown: the one it was built from, with the icon and status line shown since.
    view: TrayView,
    /// The context it was built in.
    context: MenuContext,
}

/// The tray's shown menu, once there is one.
struct ShownMenu<R: Runtime>(std::sync::Mutex<Option<Shown<R>>>);

impl<R: Runtime> Default for ShownMenu<R> {
    fn default() -> Self {
        Self(std::sync::Mutex::new(None))
    }
}

/// Now, unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
