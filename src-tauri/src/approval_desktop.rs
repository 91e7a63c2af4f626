//! Approval notifications on the desktop (`notify-rust` over the freedesktop Notifications
//! D-Bus API): [`follow_approvals`] follows the agent's approvals hub, shows what
//! [`ApprovalNotices`] says to show, turns a click on Approve/Deny into `Approvals::decide` (the
//! web UI's own path) and closes the notification of an approval settled elsewhere.
//!
//! The decisions are all in `approval_notices`; this glue only moves events between the hub,
//! the state machine and the notification server. A notification server that is missing, slow
//! or failing costs a line on stderr and never blocks an approval: the web UI still asks.
//!
//! Limit: `notify-rust` subscribes to `ActionInvoked` once `Notify` has returned, so a click in the
//! first milliseconds after a notification appears could be missed (the approval then waits for the
//! web UI or expires; nothing is decided wrongly).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use katachi_core::ai::approvals::{ApprovalEvent, Approvals, PendingApproval};
use notify_rust::{NotificationResponse, Timeout};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::approval_notices::{ApprovalNotice, ApprovalNotices, ServerFeatures};

/// Longest wait for the notification server's capabilities before assuming it has no buttons.
const CAPABILITIES_TIMEOUT: Duration = Duration::from_secs(3);

/// What the notifier needs from the app besides the approvals.
pub(crate) struct ApprovalDesk {
    /// Whether the user wants notifications now (`[notifications] enabled`, read before each).
    pub(crate) enabled: Box<dyn Fn() -> bool + Send + Sync>,
    /// The folder of a workspace, by id (a blocking store read).
    pub(crate) workspace_path: Box<dyn Fn(i64) -> Option<String> + Send + Sync>,
}

/// What happened to a shown notification.
#[derive(Debug)]
struct Click {
    /// Its approval.
    approval_id: String,
    /// The action invoked, or how it closed.
    response: NotificationResponse,
}

/// Follows `approvals` until the hub is gone: each asked approval gets a notification, each
/// click decides, each settlement closes. Approvals already waiting when it starts are shown too.
pub(crate) async fn follow_approvals(approvals: Approvals, desk: ApprovalDesk) {
    let desk = Arc::new(desk);
    let mut events = approvals.subscribe();
    let (clicked, mut clicks) = mpsc::unbounded_channel::<Click>();
    let mut notices = ApprovalNotices::default();
    // approval id → closes its notification
    let mut closers: HashMap<String, oneshot::Sender<()>> = HashMap::new();
    for waiting in approvals.pending() {
        ask(&desk, &mut notices, &mut closers, &clicked, &waiting).await;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(ApprovalEvent::Asked(asked)) => {
                    ask(&desk, &mut notices, &mut closers, &clicked, &asked).await;
                }
                Ok(ApprovalEvent::Settled { id, .. }) => {
                    if notices.on_settled(&id) {
                        close(&mut closers, &id);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // events were missed: close what is no longer pending, show what is new
                    let pending = approvals.pending();
                    let gone: Vec<String> = notices
                        .shown()
                        .filter(|id| !pending.iter().any(|p| p.id == *id))
                        .map(str::to_owned)
                        .collect();
                    for id in gone {
                        notices.on_settled(&id);
                        close(&mut closers, &id);
                    }
                    for waiting in pending {
                        ask(&desk, &mut notices, &mut closers, &clicked, &waiting).await;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            Some(click) = clicks.recv() => {
                let id = click.approval_id;
                closers.remove(&id);
                match click.response {
                    NotificationResponse::Action(action) => {
                        if let Some(decision) = notices.on_action(&id, &action) {
                            if let Err(err) = approvals.decide(&id, decision) {
                                // answered elsewhere a moment before: that answer stands
                                eprintln!("katachi-app: the notification's answer was not taken: {err}");
                            }
                        }
                    }
                    NotificationResponse::Closed(_) => notices.on_closed(&id),
                    // a click on the body (`default`), an inline reply: no answer
                    _ => {}
                }
            }
        }
    }
}

/// Shows the notification of `approval` (unless the user turned notifications off or it is
/// shown already).
async fn ask(
    desk: &Arc<ApprovalDesk>,
    notices: &mut ApprovalNotices,
    closers: &mut HashMap<String, oneshot::Sender<()>>,
    clicked: &mpsc::UnboundedSender<Click>,
    approval: &PendingApproval,
) {
    if !(desk.enabled)() {
        return;
    }
    let lookup = Arc::clone(desk);
    let workspace_id = approval.request.workspace_id;
    let workspace = tokio::task::spawn_blocking(move || (lookup.workspace_path)(workspace_id))
        .await
        .ok()
        .flatten();
    let server = server_features().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let Some(notice) = notices.on_asked(approval, workspace.as_deref(), server, now) else {
        return;
    };
    let (closer, closed) = oneshot::channel();
    closers.insert(notice.approval_id.clone(), closer);
    tokio::spawn(present(notice, closed, clicked.clone()));
}

/// Closes the notification of approval `id`, if shown.
fn close(closers: &mut HashMap<String, oneshot::Sender<()>>, id: &str) {
    if let Some(closer) = closers.remove(id) {
        let _ = closer.send(());
    }
}

/// What the notification server can do; no buttons when it does not answer in time.
async fn server_features() -> ServerFeatures {
    let asked = tokio::task::spawn_blocking(notify_rust::get_capabilities);
    match tokio::time::timeout(CAPABILITIES_TIMEOUT, asked).await {
        Ok(Ok(Ok(capabilities))) => ServerFeatures::from_capabilities(&capabilities),
        _ => ServerFeatures::default(),
    }
}

/// Shows `notice` and reports its click or close to `clicked`, until it is answered, closed by
/// the user, or `close` says the approval was settled elsewhere (then it is closed here).
async fn present(
    notice: ApprovalNotice,
    close: oneshot::Receiver<()>,
    clicked: mpsc::UnboundedSender<Click>,
) {
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("Katachi")
        .summary(&notice.summary)
        .body(&notice.body)
        // it stays until answered here or elsewhere, or expired (then it is closed from here)
        .timeout(Timeout::Never);
    for (key, label) in &notice.actions {
        notification.action(key, label);
    }
    let handle = match notification.show_async().await {
        Ok(handle) => handle,
        Err(err) => {
            eprintln!(
                "katachi-app: cannot show the approval notification {:?}: {err}",
                notice.summary
            );
            let _ = clicked.send(Click {
                approval_id: notice.approval_id,
                response: NotificationResponse::Closed(notify_rust::CloseReason::Other(0)),
            });
            return;
        }
    };
    let id = notice.approval_id;
    let report = |response: &NotificationResponse| {
        let _ = clicked.send(Click {
            approval_id: id.clone(),
            response: response.clone(),
        });
    };
    tokio::select! {
        () = handle.wait_for_action_async(report) => {}
        _ = close => handle.close_async().await,
    }
}

#[cfg(test)]
#[path = "approval_desktop_tests.rs"]
mod tests;
