//! The approval notifications over the real freedesktop Notifications protocol: this test owns
//! `org.freedesktop.Notifications` on the session bus (`scripts/with-session.sh` gives each test
//! run its own), records the `Notify` and `CloseNotification` calls it gets, and clicks like a
//! desktop does, by emitting `ActionInvoked`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use katachi_core::ai::approvals::{ApprovalRequest, Approvals, Decision};
use serde_json::json;
use zbus::message::Type as MessageType;

use super::*;
use crate::approval_notices::ACTION_APPROVE;

const NAME: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";
/// Notifications whose body has this are clicked "approve" by the fake desktop.
const CLICK_MARKER: &str = "cargo test";

/// One `Notify` call as the server got it.
#[derive(Debug, Clone)]
struct Notified {
    id: u32,
    summary: String,
    body: String,
    actions: Vec<String>,
    timeout: i32,
}

/// A notification server on the session bus that records and clicks.
#[derive(Clone, Default)]
struct FakeDesktop {
    notified: Arc<Mutex<Vec<Notified>>>,
    closed: Arc<Mutex<Vec<u32>>>,
    /// Whether it offers action buttons (`actions` capability).
    actions: Arc<AtomicBool>,
}

impl FakeDesktop {
    /// Owns the notification service's name and serves it until the test ends.
    async fn serve() -> Result<Self, Box<dyn std::error::Error>> {
        let conn = zbus::Connection::session().await?;
        let mut calls = zbus::MessageStream::from(&conn);
        let reply = conn
            .request_name_with_flags(NAME, zbus::fdo::RequestNameFlags::DO_NOT_QUEUE)
            .await?;
        assert_eq!(
            reply,
            zbus::fdo::RequestNameReply::PrimaryOwner,
            "another notification server runs on this session bus"
        );
        let desktop = Self::default();
        desktop.actions.store(true, Ordering::SeqCst);
        let serving = desktop.clone();
        tokio::spawn(async move {
            let mut next_id = 0u32;
            while let Some(Ok(msg)) = calls.next().await {
                let header = msg.header();
                let is_ours = header.message_type() == MessageType::MethodCall
                    && header.interface().map(|i| i.as_str()) == Some(NAME);
                if !is_ours {
                    continue;
                }
                let member = header.member().map(|m| m.as_str().to_owned());
                let answered = match member.as_deref() {
                    Some("GetCapabilities") => {
                        let mut caps = vec!["body"];
                        if serving.actions.load(Ordering::SeqCst) {
                            caps.push("actions");
                        }
                        conn.reply(&header, &caps).await
                    }
                    Some("GetServerInformation") => {
                        conn.reply(&header, &("fake-desktop", "katachi-tests", "1", "1.2"))
                            .await
                    }
                    Some("Notify") => {
                        type NotifyArgs = (
                            String,
                            u32,
                            String,
                            String,
                            String,
                            Vec<String>,
                            HashMap<String, zbus::OwnedVariant>,
                            i32,
                        );
                        let Ok((_app, _replaces, _icon, summary, body, actions, _hints, timeout)) =
                            msg.body().deserialize::<NotifyArgs>()
                        else {
                            continue;
                        };
                        next_id += 1;
                        let id = next_id;
                        let click = body.contains(CLICK_MARKER)
                            && actions.iter().any(|a| a == ACTION_APPROVE);
                        serving.notified.lock().unwrap().push(Notified {
                            id,
                            summary,
                            body,
                            actions,
                            timeout,
                        });
                        let replied = conn.reply(&header, &id).await;
                        if click {
                            // a user clicks Approve; said again until it is answered, as the
                            // client subscribes to the signal only once the call returned
                            let (conn, serving) = (conn.clone(), serving.clone());
                            tokio::spawn(async move {
                                for _ in 0..100 {
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    if serving.closed.lock().unwrap().contains(&id) {
                                        return;
                                    }
                                    let _ = conn
                                        .emit_signal(
                                            None::<&str>,
                                            PATH,
                                            NAME,
                                            "ActionInvoked",
                                            &(id, ACTION_APPROVE),
                                        )
                                        .await;
                                }
                            });
                        }
                        replied
                    }
                    Some("CloseNotification") => {
                        let Ok(id) = msg.body().deserialize::<u32>() else {
                            continue;
                        };
                        serving.closed.lock().unwrap().push(id);
                        let replied = conn.reply(&header, &()).await;
                        // reason 3: closed by a call to CloseNotification
                        let _ = conn
                            .emit_signal(
                                None::<&str>,
                                PATH,
                                NAME,
                                "NotificationClosed",
                                &(id, 3u32),
                            )
                            .await;
                        replied
                    }
                    _ => Ok(()),
                };
                if let Err(err) = answered {
                    eprintln!("fake desktop: cannot answer {member:?}: {err}");
                }
            }
        });
        Ok(desktop)
    }

    fn notified(&self) -> Vec<Notified> {
        self.notified.lock().unwrap().clone()
    }

    /// Waits until `check` holds, for at most 10 s.
    async fn until(&self, what: &str, check: impl Fn(&Self) -> bool) {
        for _ in 0..200 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting until {what}: notified {:?}",
            self.notified()
        );
    }
}

fn run(args: &[&str]) -> ApprovalRequest {
    ApprovalRequest {
        workspace_id: 4,
        session_id: 1,
        tool: "run_command".into(),
        subject: "cargo".into(),
        summary: "Run `cargo` in proj".into(),
        preview: json!({"kind": "command", "command": "cargo", "args": args, "cwd": ""}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_clicked_on_the_desktop_notification_decides_the_approval_and_one_settled_elsewhere_is_closed(
) -> Result<(), Box<dyn std::error::Error>> {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run the tests with `make test` or `scripts/with-session.sh cargo test`"
    );
    let desktop = FakeDesktop::serve().await?;
    let approvals = Approvals::default();
    tokio::spawn(follow_approvals(
        approvals.clone(),
        ApprovalDesk {
            enabled: Box::new(|| true),
            workspace_path: Box::new(|id| (id == 4).then(|| "/home/me/proj".to_owned())),
        },
    ));

    // 1. the desktop clicks Approve: the waiting turn gets the answer through `decide`
    let ticket = approvals.ask(run(&["test", "--all"]));
    let decision = tokio::time::timeout(Duration::from_secs(15), ticket.decision()).await?;
    assert_eq!(decision, Decision::Once);
    let shown = desktop.notified();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].summary, "Katachi: run a command?");
    assert!(
        shown[0]
            .body
            .starts_with("In /home/me/proj:\nRun: cargo test --all\n"),
        "{}",
        shown[0].body
    );
    assert_eq!(shown[0].actions, ["approve", "Approve", "deny", "Deny"]);
    assert_eq!(shown[0].timeout, 0, "stays until answered or expired");

    // 2. answered in the web UI instead: the notification is closed, nothing else is decided
    let ticket = approvals.ask(run(&["build"]));
    let id = ticket.approval().id.clone();
    desktop
        .until("the second notification is shown", |d| {
            d.notified().len() == 2
        })
        .await;
    approvals.decide(&id, Decision::Deny)?;
    assert_eq!(ticket.decision().await, Decision::Deny);
    let second = desktop.notified()[1].id;
    desktop
        .until("the settled approval's notification is closed", |d| {
            d.closed.lock().unwrap().contains(&second)
        })
        .await;

    // 3. a server without buttons: the notification says where to answer, and the approval waits
    desktop.actions.store(false, Ordering::SeqCst);
    let ticket = approvals.ask(run(&["test", "--doc"]));
    desktop
        .until("the third notification is shown", |d| {
            d.notified().len() == 3
        })
        .await;
    let plain = desktop.notified()[2].clone();
    assert!(plain.actions.is_empty(), "{plain:?}");
    assert!(
        plain.body.ends_with("Answer it in the chat of the web UI."),
        "{}",
        plain.body
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(approvals.pending().len(), 1, "no answer without a click");
    drop(ticket);
    desktop
        .until("the withdrawn approval's notification is closed", |d| {
            d.closed.lock().unwrap().contains(&plain.id)
        })
        .await;
    Ok(())
}
