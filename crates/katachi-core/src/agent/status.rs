//! [`Status`]: the one state of the agent that the CLI, the tray and the window render.

use serde::{Deserialize, Serialize};

/// Where the agent stands, as one value. Times are unix seconds, so another process can show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// No credentials, or the relay refused them for good: a sign-in is needed.
    SignedOut {
        /// Why, when the relay said so (revoked, unknown agent…).
        reason: Option<String>,
    },
    /// A sign-in waits for the user to approve `user_code` at `verification_uri`.
    WaitingForApproval {
        /// The code the user confirms (XXXX-XXXX).
        user_code: String,
        /// The page where they approve it.
        verification_uri: String,
        /// When the code expires.
        expires_at: i64,
    },
    /// Dialing the relay (first attempt, after a network change, after a pause).
    Connecting,
    /// The tunnel is up: the agent is reachable through the relay.
    Connected {
        /// When the tunnel came up.
        since: i64,
        /// The relay's URL.
        relay: String,
        /// The name the agent registered under (the device name sent at sign-in), or its id at
        /// the relay when the credentials predate that name.
        agent_name: String,
    },
    /// The tunnel is down; the next attempt is scheduled.
    Reconnecting {
        /// When the next attempt starts.
        at: i64,
        /// The wait, as decided when it was scheduled (seconds).
        in_secs: u64,
        /// Why the last attempt failed (one line, no secret).
        reason: String,
    },
    /// Remote access is paused: no tunnel, no heartbeats.
    Paused {
        /// When it resumes by itself.
        until: i64,
    },
    /// The agent stopped and cannot go on by itself.
    Error {
        /// What is wrong.
        message: String,
        /// What the user can do about it.
        fix: String,
    },
}

impl Status {
    /// The stable word for the state, as serialised (`connected`, `paused`…).
    pub fn state_word(&self) -> &'static str {
        match self {
            Status::SignedOut { .. } => "signed_out",
            Status::WaitingForApproval { .. } => "waiting_for_approval",
            Status::Connecting => "connecting",
            Status::Connected { .. } => "connected",
            Status::Reconnecting { .. } => "reconnecting",
            Status::Paused { .. } => "paused",
            Status::Error { .. } => "error",
        }
    }
}
