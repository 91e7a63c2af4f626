//! Structured denials: what the sandbox refused, and how the user can allow it.
//!
//! A denial is an answer for the caller (the browser, the CLI), not an error string: it names the
//! kind of thing refused, the exact target, and the setting that would allow it.

use std::fmt;

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

impl SandboxDenied {
    /// A limit denial: `target` names the limit (`wall time`, `output`, …).
    pub(crate) fn limit(target: &str, how_to_allow: &str) -> Self {
        Self {
            kind: DenialKind::Limit,
            target: target.to_owned(),
            how_to_allow: how_to_allow.to_owned(),
        }
    }
}
