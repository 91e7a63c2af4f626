//! Sandbox denials as they happen, for the agent's host (the tray notifies the user).
//!
//! # Contract
//! - Every run the sandbox refuses through the API is published on a [`DenialFeed`]: refused up
//!   front (a command not on the list, a folder it may not use), or ended by a limit, a refused
//!   connection or a `.git` made in a workspace root. A run its caller cancelled is not a denial
//!   and is not published.
//! - Best effort and never blocking: with nobody subscribed a denial is dropped; a subscriber
//!   that falls behind by more than [`FEED_CAPACITY`] loses the oldest (a `Lagged` receive).
//! - The audit log stays the record; this feed is only a live view of it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::sandbox::{shell_word, SandboxDenied};

/// Denials a subscriber may fall behind by before it loses the oldest.
pub const FEED_CAPACITY: usize = 64;

/// Longest command line a [`RunDenied`] carries (characters); longer ones end with `…`.
const MAX_COMMAND_CHARS: usize = 200;

/// One run the sandbox denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDenied {
    /// The workspace's root (the user's own folder: shown to them, never sent elsewhere).
    pub workspace: PathBuf,
    /// The command line asked for, quoted as a shell would need it (shortened when long).
    pub command: String,
    /// What was refused and how to allow it.
    pub denied: SandboxDenied,
}

/// Where the API publishes denials; clones share one channel.
#[derive(Debug, Clone)]
pub struct DenialFeed {
    /// The channel's sending side (kept: receivers come from it).
    tx: broadcast::Sender<RunDenied>,
}

impl Default for DenialFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl DenialFeed {
    /// A feed nobody listens to yet.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(FEED_CAPACITY);
        Self { tx }
    }

    /// The denials published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunDenied> {
        self.tx.subscribe()
    }

    /// Publishes that `command args…` was denied in `workspace` (a cancellation is not).
    pub(crate) fn publish(
        &self,
        workspace: &Path,
        command: &str,
        args: &[String],
        denied: &SandboxDenied,
    ) {
        if denied.is_cancellation() {
            return;
        }
        tracing::info!(workspace = %workspace.display(), %denied, "api: the sandbox denied a run");
        // no subscriber: nobody to tell (the audit log has the call)
        let _ = self.tx.send(RunDenied {
            workspace: workspace.to_path_buf(),
            command: command_line(command, args),
            denied: denied.clone(),
        });
    }
}

/// `command args…` as one shell line, at most [`MAX_COMMAND_CHARS`] characters.
fn command_line(command: &str, args: &[String]) -> String {
    let mut line = shell_word(command);
    for arg in args {
        line.push(' ');
        line.push_str(&shell_word(arg));
        if line.chars().count() > MAX_COMMAND_CHARS {
            break;
        }
    }
    if line.chars().count() > MAX_COMMAND_CHARS {
        line = line.chars().take(MAX_COMMAND_CHARS - 1).collect();
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::DenialKind;

    fn exec_denial() -> SandboxDenied {
        SandboxDenied {
            kind: DenialKind::Exec,
            target: "curl".to_owned(),
            how_to_allow: "allow curl".to_owned(),
        }
    }

    #[test]
    fn a_published_denial_reaches_every_subscriber_with_its_command_line() {
        let feed = DenialFeed::new();
        let mut a = feed.subscribe();
        let mut b = feed.clone().subscribe();
        feed.publish(
            Path::new("/code/app"),
            "curl",
            &["-s".to_owned(), "example".to_owned()],
            &exec_denial(),
        );
        for rx in [&mut a, &mut b] {
            let got = rx.try_recv().unwrap();
            assert_eq!(got.workspace, Path::new("/code/app"));
            assert_eq!(got.command, "curl -s example");
            assert_eq!(got.denied, exec_denial());
        }
    }

    #[test]
    fn a_cancelled_run_is_not_a_denial_and_nobody_listening_is_fine() {
        let feed = DenialFeed::new();
        // no subscriber: dropped, no error
        feed.publish(Path::new("/w"), "ls", &[], &exec_denial());
        let mut rx = feed.subscribe();
        feed.publish(Path::new("/w"), "tail", &[], &SandboxDenied::cancelled());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn long_command_lines_are_shortened() {
        let args = vec!["x".repeat(500)];
        let line = command_line("grep", &args);
        assert_eq!(line.chars().count(), MAX_COMMAND_CHARS);
        assert!(line.ends_with('…'));
    }
}
