//! Structured denials: what the sandbox refused, and how the user can allow it.
//!
//! A denial is an answer for the caller (the browser, the CLI), not an error string: it names the
//! kind of thing refused, the exact target, and the setting that would allow it.

use std::fmt;
use std::path::Path;

/// The kind of access that was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenialKind {
    /// A file or folder outside the allowed workspaces, or a protected path inside one.
    File,
    /// A program that is not on the command allowlist.
    Exec,
    /// A network destination that is not on the allowed-hosts list.
    Network,
    /// A resource limit (time, memory, processes, output).
    Limit,
}

impl fmt::Display for DenialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::File => "file",
            Self::Exec => "exec",
            Self::Network => "network",
            Self::Limit => "limit",
        })
    }
}

/// One refusal, with its reason in structured form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("sandbox denied {kind} access to {target}; to allow it: {how_to_allow}")]
pub struct SandboxDenied {
    /// What kind of access was refused.
    pub kind: DenialKind,
    /// The file, command, host or limit concerned.
    pub target: String,
    /// The setting or flag that would allow it.
    pub how_to_allow: String,
}

/// The limit target of a run its caller cancelled.
const CANCELLED: &str = "cancelled";

impl SandboxDenied {
    /// A limit denial: `target` names the limit (`wall time`, `output`, …).
    pub(crate) fn limit(target: &str, how_to_allow: &str) -> Self {
        Self {
            kind: DenialKind::Limit,
            target: target.to_owned(),
            how_to_allow: how_to_allow.to_owned(),
        }
    }

    /// The "denial" that ends a run its caller cancelled (closed tab, Stop, stream reset).
    pub(crate) fn cancelled() -> Self {
        Self::limit(CANCELLED, "the run was cancelled by its caller")
    }

    /// Whether this only says that the caller cancelled the run: nothing the sandbox refused.
    pub fn is_cancellation(&self) -> bool {
        self.kind == DenialKind::Limit && self.target == CANCELLED
    }
}

/// `text` as one word for the user's shell: unchanged when it has only characters no shell
/// treats specially, else quoted (single quotes on Unix, double quotes on Windows, where a path
/// cannot hold `"`). Hints built with it work when pasted as they are.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
    if plain {
        text.to_owned()
    } else if cfg!(windows) {
        format!("\"{text}\"")
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The command that stores `flag` in the overrides of `workspace`, ready to paste:
/// `katachi sandbox policy set --workspace /w --allow-cmd make`.
pub fn policy_set_command(workspace: &Path, flag: &str) -> String {
    format!(
        "katachi sandbox policy set --workspace {} {flag}",
        shell_word(&workspace.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/home/u/proj-1"), "/home/u/proj-1");
        if !cfg!(windows) {
            assert_eq!(shell_word("/home/u/my proj"), "'/home/u/my proj'");
            assert_eq!(shell_word("/x/it's"), "'/x/it'\\''s'");
        }
        assert_eq!(shell_word(""), if cfg!(windows) { "\"\"" } else { "''" });
    }
}
