//! Signed agent → relay calls and the relay's JSON error shape.

use serde::{Deserialize, Serialize};

/// Heartbeat path.
pub const HEARTBEAT_PATH: &str = "/api/agent/heartbeat";
/// Activity events path.
pub const EVENTS_PATH: &str = "/api/agent/events";
/// Unregister path.
pub const UNREGISTER_PATH: &str = "/api/agent/unregister";
/// Tunnel path: a signed `GET` with `Upgrade: katachi-tunnel/1`; on `101` the relay speaks HTTP/2
/// (as the client) over the upgraded connection and the agent serves its API.
pub const TUNNEL_PATH: &str = "/api/agent/tunnel";
/// The `Upgrade` token of the tunnel.
pub const TUNNEL_PROTOCOL: &str = "katachi-tunnel/1";
/// Set by the relay on every request it forwards through a tunnel (any copy sent by a browser is
/// dropped first): the id of the signed-in user who made the call. The agent writes it to its audit
/// log.
pub const FORWARDED_USER_ID_HEADER: &str = "x-katachi-user-id";
/// Set by the relay with [`FORWARDED_USER_ID_HEADER`]: a readable name of that user (their e-mail,
/// percent-encoded), absent when the account has none.
pub const FORWARDED_USER_HEADER: &str = "x-katachi-user";
/// Set by the relay with [`FORWARDED_USER_ID_HEADER`]: a tag naming the browser session (16 hex
/// digits derived one-way from the relay's session record, so it cannot be turned back into the
/// session cookie). Calls of one browser session share it.
pub const FORWARDED_SESSION_HEADER: &str = "x-katachi-session";
/// Most events accepted in one call.
pub const MAX_EVENTS_PER_BATCH: usize = 100;

/// "I am alive", sent every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Agent version (crate version).
    pub version: String,
    /// Number of allowed workspaces (shown in "my agents").
    pub workspaces: u32,
}

/// Reply to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// Seconds until the relay considers the agent offline without another heartbeat.
    pub offline_after_secs: u64,
}

/// One activity event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityEvent {
    /// Idempotency key: the relay stores an id once.
    pub event_id: String,
    /// Kind (`workspace.added`, …).
    pub kind: String,
    /// When it happened (unix seconds).
    pub at: i64,
    /// Kind-specific JSON (a string, to keep it opaque to the relay).
    pub payload: String,
}

/// A batch of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityBatch {
    /// The events, at most [`MAX_EVENTS_PER_BATCH`].
    pub events: Vec<ActivityEvent>,
}

/// Which events the relay now holds (new or already seen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityAck {
    /// Ids acknowledged; the agent removes them from its outbox.
    pub acknowledged: Vec<String>,
}

/// The relay's JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code (`signature.replayed_nonce`, …).
    pub code: String,
    /// For people.
    pub message: String,
}

/// Wrapper so errors read `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// The error.
    pub error: ApiError,
}
