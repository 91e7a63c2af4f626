//! Approval notifications of the tray process: which approval gets which desktop notification,
//! and what a click on it decides ([`ApprovalNotices`], a pure state machine tested per case).
//! Showing them is `approval_desktop`'s job.
//!
//! # Contract
//! - Each approval the model asks for (a write, a patch, a command) gets one notification naming
//!   the tool, the workspace and exactly what would happen: the command line (arguments quoted
//!   where a shell would split them) or the files changed with their line counts.
//! - Where the notification server offers actions, it has **Approve** and **Deny**: Approve
//!   decides [`Decision::Once`], Deny [`Decision::Deny`] — the same answers as the web UI's, given
//!   through the same `Approvals::decide`. Elsewhere the notification says to answer in the web UI.
//! - A click counts only for an approval still shown: one decided elsewhere (web UI), expired or
//!   withdrawn has its notification closed ([`ApprovalNotices::on_settled`]) and a late click on
//!   it decides nothing. Dismissing a notification decides nothing either: the approval keeps
//!   waiting in the web UI until it expires.
//! - Text from the model (paths, arguments) is escaped when the server reads markup.

use std::collections::HashMap;

use katachi_core::ai::approvals::{Decision, PendingApproval};
use katachi_core::ai::ApprovalPreview;

/// Action key of the Approve button.
pub const ACTION_APPROVE: &str = "approve";
/// Action key of the Deny button.
pub const ACTION_DENY: &str = "deny";
/// Longest command line shown whole; a longer one is cut and says so.
const MAX_COMMAND_CHARS: usize = 600;
/// Most file names listed; the rest are counted.
const MAX_FILES_LISTED: usize = 8;

/// What the notification server can do (its `GetCapabilities`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerFeatures {
    /// It shows action buttons (`actions`).
    pub actions: bool,
    /// It reads the body as markup (`body-markup`): text must be escaped.
    pub body_markup: bool,
}

impl ServerFeatures {
    /// The features named in a `GetCapabilities` answer.
    pub fn from_capabilities(capabilities: &[String]) -> Self {
        let has = |name: &str| capabilities.iter().any(|c| c == name);
        Self {
            actions: has("actions"),
            body_markup: has("body-markup"),
        }
    }
}

/// One approval's notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNotice {
    /// The approval it asks about.
    pub approval_id: String,
    /// The title.
    pub summary: String,
    /// What would happen, where, and until when.
    pub body: String,
    /// The buttons (action key, label); empty where the server has none.
    pub actions: Vec<(&'static str, &'static str)>,
}

/// Which approvals have a notification shown, and whether it has buttons.
#[derive(Debug, Default)]
pub struct ApprovalNotices {
    /// Approval id → the notification has Approve/Deny.
    shown: HashMap<String, bool>,
}

impl ApprovalNotices {
    /// The notification for a newly asked `approval` in `workspace` (its folder, when known),
    /// on a server with `server` features, at `now` (unix seconds); `None` when it has one already.
    pub fn on_asked(
        &mut self,
        approval: &PendingApproval,
        workspace: Option<&str>,
        server: ServerFeatures,
        now: i64,
    ) -> Option<ApprovalNotice> {
        if self.shown.contains_key(&approval.id) {
            return None;
        }
        self.shown.insert(approval.id.clone(), server.actions);
        let request = &approval.request;
        let escape = |text: &str| {
            if server.body_markup {
                escape_markup(text)
            } else {
                text.to_owned()
            }
        };
        let place = workspace.map_or_else(
            || format!("workspace #{}", request.workspace_id),
            str::to_owned,
        );
        let what = match serde_json::from_value::<ApprovalPreview>(request.preview.clone()) {
            Ok(ApprovalPreview::Command { command, args, cwd }) => {
                let folder = if cwd.is_empty() {
                    String::new()
                } else {
                    format!(" (in {cwd})")
                };
                format!("Run: {}{folder}", command_line(&command, &args))
            }
            Ok(ApprovalPreview::Diff {
                paths,
                unified_diff,
            }) => files_changed(&paths, &unified_diff),
            // a preview this version does not know: the one-line summary the core wrote
            Err(_) => request.summary.clone(),
        };
        let minutes = (approval.expires_at.saturating_sub(now).max(0) + 59) / 60;
        let mut body = format!(
            "In {}:\n{}\nUnanswered, it is refused in {minutes} min.",
            escape(&place),
            escape(&what)
        );
        let actions = if server.actions {
            vec![(ACTION_APPROVE, "Approve"), (ACTION_DENY, "Deny")]
        } else {
            body.push_str("\nAnswer it in the chat of the web UI.");
            Vec::new()
        };
        Some(ApprovalNotice {
            approval_id: approval.id.clone(),
            summary: format!("Katachi: {}?", tool_question(&request.tool)),
            body,
            actions,
        })
    }

    /// The decision a click on `action` of approval `id`'s notification makes; `None` for an
    /// approval no longer shown, a notification without buttons, or another action (a click on
    /// the body). The notification is gone after a click (the server closes it).
    pub fn on_action(&mut self, id: &str, action: &str) -> Option<Decision> {
        let decision = match action {
            ACTION_APPROVE => Decision::Once,
            ACTION_DENY => Decision::Deny,
            _ => return None,
        };
        match self.shown.get(id) {
            Some(true) => {
                self.shown.remove(id);
                Some(decision)
            }
            _ => None,
        }
    }

    /// Approval `id` was answered, expired or withdrawn: `true` when its notification is still
    /// shown and must be closed.
    pub fn on_settled(&mut self, id: &str) -> bool {
        self.shown.remove(id).is_some()
    }

    /// The user dismissed approval `id`'s notification (or the server closed it): nothing is
    /// decided; the approval keeps waiting in the web UI.
    pub fn on_closed(&mut self, id: &str) {
        self.shown.remove(id);
    }

    /// The approvals with a notification shown.
    pub fn shown(&self) -> impl Iterator<Item = &str> {
        self.shown.keys().map(String::as_str)
    }
}

/// The question of the title, per tool.
fn tool_question(tool: &str) -> String {
    match tool {
        "run_command" => "run a command".to_owned(),
        "write_file" => "write a file".to_owned(),
        "apply_patch" => "apply a patch".to_owned(),
        other => format!("allow {other}"),
    }
}

/// The command line as a shell user would read it: arguments a shell would split or expand are
/// single-quoted, so what is shown is exactly what runs (no shell runs it). Cut at
/// [`MAX_COMMAND_CHARS`], saying so.
fn command_line(command: &str, args: &[String]) -> String {
    let line = std::iter::once(command)
        .chain(args.iter().map(String::as_str))
        .map(shell_word)
        .collect::<Vec<_>>()
        .join(" ");
    let total = line.chars().count();
    if total <= MAX_COMMAND_CHARS {
        return line;
    }
    let cut: String = line.chars().take(MAX_COMMAND_CHARS).collect();
    format!(
        "{cut}… ({} more characters: see the web UI)",
        total - MAX_COMMAND_CHARS
    )
}

/// One word, quoted when a shell would not read it as is.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | '=' | ':' | ',' | '+' | '@' | '%')
        });
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// "Change 2 files (+12 −3): a.rs, b.rs".
fn files_changed(paths: &[String], unified_diff: &str) -> String {
    let (mut added, mut removed) = (0usize, 0usize);
    for line in unified_diff.lines() {
        if line.starts_with('+') && !line.starts_with("+++") {
            added += 1;
        } else if line.starts_with('-') && !line.starts_with("---") {
            removed += 1;
        }
    }
    let mut listed = paths
        .iter()
        .take(MAX_FILES_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > MAX_FILES_LISTED {
        listed.push_str(&format!(" and {} more", paths.len() - MAX_FILES_LISTED));
    }
    let files = match paths.len() {
        1 => "1 file".to_owned(),
        n => format!("{n} files"),
    };
    format!("Change {files} (+{added} −{removed}): {listed}")
}

/// `text` with the markup characters of notification bodies escaped.
fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
#[path = "approval_notices_tests.rs"]
mod tests;
