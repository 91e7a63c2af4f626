//! Desktop notifications of the tray process: which status changes deserve one ([`Notices`], a
//! pure state machine tested per case) and showing them (`notify-rust`), unless the config's
//! `[notifications] enabled = false` says not to.
//!
//! Notified: connected (after a sign-in, or back after a notified disconnection); disconnected for
//! more than a minute (once per outage; a pause is not an outage); sign-in needed (the agent
//! went from signed in to signed out); approval code expired (a new code replaced it); a command
//! denied by the sandbox ([`DenialNotices`]: what was denied and how to allow it, at most one per
//! workspace every [`DENIAL_QUIET_SECS`], so a loop of denials does not flood the desktop).

use std::collections::HashMap;
use std::path::PathBuf;

use katachi_core::agent::Status;
use katachi_core::api::RunDenied;

/// How long the agent may be off line before the user is told.
pub const DISCONNECTED_FOR: i64 = 60;

/// One notification: a title and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The title.
    pub summary: String,
    /// The sentence.
    pub body: String,
}

/// What the notifier remembers between statuses.
#[derive(Debug, Default)]
pub struct Notices {
    /// The previous status.
    last: Option<Status>,
    /// Since when the agent has been trying to reconnect after being connected (unix seconds).
    down_since: Option<i64>,
    /// Whether this outage was notified already.
    down_notified: bool,
}

impl Notices {
    /// The notice (if any) for the agent's new `status` at `now`.
    pub fn on_status(&mut self, status: &Status, now: i64) -> Option<Notice> {
        let last = self.last.replace(status.clone());
        let notice = match (last.as_ref(), status) {
            (Some(Status::WaitingForApproval { .. }), Status::Connected { relay, .. }) => {
                Some(notice(
                    "Katachi is connected",
                    format!("This machine is reachable through {relay}."),
                ))
            }
            (_, Status::Connected { relay, .. }) if self.down_notified => Some(notice(
                "Katachi is connected again",
                format!("Back online through {relay}."),
            )),
            (
                Some(Status::WaitingForApproval { user_code: old, .. }),
                Status::WaitingForApproval { user_code, .. },
            ) if old != user_code => Some(notice(
                "The approval code expired",
                format!("Approve this machine with the new code {user_code}."),
            )),
            (Some(previous), Status::SignedOut { reason })
                if !matches!(
                    previous,
                    Status::SignedOut { .. } | Status::WaitingForApproval { .. }
                ) =>
            {
                Some(notice(
                    "Sign-in needed",
                    reason
                        .clone()
                        .unwrap_or_else(|| "This machine is signed out of its relay.".to_owned()),
                ))
            }
            _ => None,
        };
        match status {
            Status::Reconnecting { .. } | Status::Connecting => {
                if matches!(last, Some(Status::Connected { .. })) {
                    self.down_since = Some(now);
                }
            }
            _ => {
                self.down_since = None;
                self.down_notified = false;
            }
        }
        notice
    }

    /// When [`Self::on_tick`] should next be called (unix seconds), while an outage is counting.
    pub fn next_tick(&self) -> Option<i64> {
        match (self.down_since, self.down_notified) {
            (Some(since), false) => Some(since + DISCONNECTED_FOR),
            _ => None,
        }
    }

    /// The "disconnected" notice, once the outage has lasted [`DISCONNECTED_FOR`].
    pub fn on_tick(&mut self, now: i64) -> Option<Notice> {
        let since = self.down_since?;
        if self.down_notified || now - since < DISCONNECTED_FOR {
            return None;
        }
        self.down_notified = true;
        let why = match &self.last {
            Some(Status::Reconnecting { reason, .. }) => format!(" Last error: {reason}."),
            _ => String::new(),
        };
        Some(notice(
            "Katachi is disconnected",
            format!("This machine has not been reachable for more than a minute.{why}"),
        ))
    }
}

/// Shortest time between two denial notices of one workspace (seconds).
pub const DENIAL_QUIET_SECS: i64 = 30;

/// What the denial notifier remembers: per workspace, when it last notified and how many
/// denials it has kept quiet about since.
#[derive(Debug, Default)]
pub struct DenialNotices {
    /// Workspace root → (last notice at, denials not notified since).
    last: HashMap<PathBuf, (i64, u32)>,
}

impl DenialNotices {
    /// The notice (if any) for `denied` at `now`: `None` while its workspace was notified less
    /// than [`DENIAL_QUIET_SECS`] ago (counted, and mentioned in the next notice).
    pub fn on_denial(&mut self, denied: &RunDenied, now: i64) -> Option<Notice> {
        let entry = self.last.get_mut(&denied.workspace);
        let quiet_since = match entry {
            Some((at, skipped)) if now.saturating_sub(*at) < DENIAL_QUIET_SECS => {
                *skipped = skipped.saturating_add(1);
                return None;
            }
            Some((_, skipped)) => std::mem::take(skipped),
            None => 0,
        };
        self.last.insert(denied.workspace.clone(), (now, 0));
        let d = &denied.denied;
        let more = match quiet_since {
            0 => String::new(),
            1 => " 1 more was denied here since the last notice.".to_owned(),
            n => format!(" {n} more were denied here since the last notice."),
        };
        Some(notice(
            "A command was denied by the sandbox",
            format!(
                "{} in {}: {} access to {} was refused. To allow it: {}.{more}",
                denied.command,
                denied.workspace.display(),
                d.kind,
                d.target,
                d.how_to_allow.trim_end_matches('.'),
            ),
        ))
    }
}

/// A notice.
fn notice(summary: &str, body: String) -> Notice {
    Notice {
        summary: summary.to_owned(),
        body,
    }
}

/// Shows `notice` on the desktop (a blocking D-Bus call on Linux: run it off the main thread).
///
/// # Errors
/// The notification service refused it or is not there.
pub fn show(notice: &Notice) -> Result<(), notify_rust::error::Error> {
    notify_rust::Notification::new()
        .appname("Katachi")
        .summary(&notice.summary)
        .body(&notice.body)
        .show()
        .map(|_| ())
}

#[cfg(test)]
#[path = "notices_tests.rs"]
mod tests;
