//! Every error code the relay sends, as one typed enum, and the one rule for what an agent does
//! when it receives one.
//!
//! # Contract
//! - [`RelayErrorCode`] names each stable code the relay writes into `{"error":{"code",…}}` (API
//!   and agent endpoints, the tunnel upgrade, the signature checks) or into the RFC 8628 token
//!   endpoint's `{"error":…}`. [`RelayErrorCode::parse`] never fails: a code this build does not
//!   know becomes [`RelayErrorCode::Unknown`], keeping its text for messages.
//! - [`classify_refusal`] is the **only** place that decides whether a refusal means "sign in
//!   again", "try again later" or "stop and tell the user". The tunnel, the relay session and the
//!   device flow all call it, so the same code can never mean opposite things to two of them.
//! - The relay builds its codes from [`SignatureError::code`](crate::signing::SignatureError::code)
//!   and string literals; the test `every_code_the_relay_sends_is_known` pins that list.
//!
//! It does not decide what "sign in again" does to stored credentials: that is the caller's.

/// What an agent does after the relay refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The relay will never accept these credentials again (revoked, unknown, a signing secret it
    /// does not recognise): stop using them and sign in again.
    NeedsSignIn,
    /// A later attempt can succeed (relay overloaded or restarting, clock offset to re-learn,
    /// nonce to refresh, user not done approving): retry with backoff.
    Retryable,
    /// Retrying the same request will not help and signing in again would not either (a malformed
    /// request, an incompatible relay): stop and report.
    Fatal,
}

/// Defines [`RelayErrorCode`] with its wire spelling and its disposition in one table.
macro_rules! relay_error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal => $disposition:ident, )*) => {
        /// A stable error code sent by the relay.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum RelayErrorCode {
            $( $(#[$doc])* $variant, )*
            /// A code this build does not know (a newer relay). Classified by the HTTP status in
            /// [`classify_refusal`]: retryable on 5xx/429, otherwise fatal — never "sign in
            /// again", so an unknown code cannot make the agent drop good credentials.
            Unknown(String),
        }

        impl RelayErrorCode {
            /// Every known code, for tests and documentation.
            pub const ALL: &'static [RelayErrorCode] = &[$( RelayErrorCode::$variant, )*];

            /// The code as it travels on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( RelayErrorCode::$variant => $wire, )*
                    RelayErrorCode::Unknown(code) => code,
                }
            }

            /// The code for `wire`; [`RelayErrorCode::Unknown`] when this build does not know it.
            pub fn parse(wire: &str) -> Self {
                match wire {
                    $( $wire => RelayErrorCode::$variant, )*
                    other => RelayErrorCode::Unknown(other.to_owned()),
                }
            }

            /// What the agent does on this code, when the code alone decides; `None` for
            /// [`RelayErrorCode::Unknown`] (see [`classify_refusal`]).
            pub fn known_disposition(&self) -> Option<Disposition> {
                match self {
                    $( RelayErrorCode::$variant => Some(Disposition::$disposition), )*
                    RelayErrorCode::Unknown(_) => None,
                }
            }
        }
    };
}

relay_error_codes! {
    // --- Signature checks on every agent call and the tunnel upgrade (`SignatureError::code`).
    /// A signing header is missing: an agent bug, not fixed by retrying.
    MissingHeader = "signature.missing_header" => Fatal,
    /// A signing header does not parse: an agent bug.
    MalformedHeader = "signature.malformed_header" => Fatal,
    /// The timestamp is too old for the relay: re-learn the clock offset and retry.
    StaleTimestamp = "signature.stale_timestamp" => Retryable,
    /// The timestamp is ahead of the relay: re-learn the clock offset and retry.
    FutureTimestamp = "signature.future_timestamp" => Retryable,
    /// The nonce was seen before; the next attempt carries a fresh one.
    ReplayedNonce = "signature.replayed_nonce" => Retryable,
    /// The signature does not verify with the secret the relay holds for this agent: the stored
    /// signing secret is not the relay's any more.
    BadSignature = "signature.bad_signature" => NeedsSignIn,
    /// The relay does not know this agent (unregistered, deleted, relay data reset).
    AgentUnknown = "agent.unknown" => NeedsSignIn,
    /// The owner revoked this agent.
    AgentRevoked = "agent.revoked" => NeedsSignIn,
    // --- Agent endpoints (heartbeat, events, unregister).
    /// The body is not the JSON the endpoint expects.
    MalformedJson = "request.malformed_json" => Fatal,
    /// The body is larger than the relay accepts.
    TooLarge = "request.too_large" => Fatal,
    /// A field is out of range.
    InvalidRequest = "request.invalid" => Fatal,
    /// More events than one batch may carry.
    TooManyEvents = "request.too_many_events" => Fatal,
    /// One event is invalid.
    InvalidEvent = "request.invalid_event" => Fatal,
    /// The relay failed internally; it says "try again later".
    Internal = "internal" => Retryable,
    /// The relay's database cannot be reached for now (restarting, failing over): retry later.
    DatabaseUnavailable = "relay.database_unavailable" => Retryable,
    // --- The signed MCP calls (`mcp`): the user's remote MCP servers, run by the relay. Each is
    // --- final for the call that got it (the model reads it as the tool's error), never a reason
    // --- to sign in again or to retry the same request blindly.
    /// No MCP server with that id belongs to the agent's user (deleted, or another user's).
    McpServerUnknown = "mcp.server_unknown" => Fatal,
    /// The server is a local (command) one: the relay runs only remote (URL) servers.
    McpNotRemote = "mcp.not_remote" => Fatal,
    /// The server's stored settings cannot be used (a variable that is no valid header, sealed
    /// with another key): the user fixes it on the relay's MCP page.
    McpMisconfigured = "mcp.misconfigured" => Fatal,
    /// The server's URL leads to a loopback, private or link-local address, which the relay refuses.
    McpAddressRefused = "mcp.address_refused" => Fatal,
    /// The relay could not connect to the server (refused, DNS, TLS).
    McpUnreachable = "mcp.unreachable" => Fatal,
    /// The server did not answer in time.
    McpTimeout = "mcp.timeout" => Fatal,
    /// The server answered, but not as an MCP server should (HTTP error, protocol error, auth refused).
    McpServerError = "mcp.server_error" => Fatal,
    /// The server refused or failed the tool call (unknown tool, bad arguments).
    McpToolFailed = "mcp.tool_failed" => Fatal,
    /// The tool's result is larger than the relay passes on.
    McpResultTooLarge = "mcp.result_too_large" => Fatal,
    // --- The tunnel upgrade.
    /// The upgrade request lacked `Upgrade: katachi-tunnel/1`: an incompatible agent.
    UpgradeRequired = "tunnel.upgrade_required" => Fatal,
    /// The connection cannot be upgraded (a proxy in the way).
    NotUpgradable = "tunnel.not_upgradable" => Fatal,
    /// A WebSocket upgrade without the tunnel's subprotocol, version 13 or a valid key: an
    /// incompatible agent.
    WebSocketInvalid = "tunnel.websocket_invalid" => Fatal,
    // --- Browser-facing routes through the tunnel (never sent to the agent, listed so that the
    // --- table is the relay's whole vocabulary).
    /// The browser has no session.
    SessionRequired = "session.required" => Fatal,
    /// A cross-origin browser request.
    CrossOrigin = "request.cross_origin" => Fatal,
    /// No such agent for this user.
    AgentNotFound = "agent.not_found" => Fatal,
    /// The agent has no tunnel up.
    AgentOffline = "agent.offline" => Retryable,
    /// The tunnel failed mid-request.
    AgentUnreachable = "agent.unreachable" => Retryable,
    /// The request was cut off.
    RequestEnded = "request.ended" => Retryable,
    /// The agent did not answer in time.
    AgentTimeout = "agent.timeout" => Retryable,
    /// The agent's answer was refused by the relay's screen.
    AgentInvalidResponse = "agent.invalid_response" => Fatal,
    /// Too many requests in flight on the tunnel.
    AgentBusy = "agent.busy" => Retryable,
    // --- RFC 8628 token endpoint (`TokenErrorCode`), as the device flow receives them.
    /// The user has not approved yet: keep polling.
    AuthorizationPending = "authorization_pending" => Retryable,
    /// Polling too fast: keep polling, 5 s slower.
    SlowDown = "slow_down" => Retryable,
    /// The user denied the sign-in: start a new one if they want to.
    AccessDenied = "access_denied" => NeedsSignIn,
    /// The code expired (or was used): start a new sign-in.
    ExpiredToken = "expired_token" => NeedsSignIn,
    /// Unknown device code: start a new sign-in.
    InvalidGrant = "invalid_grant" => NeedsSignIn,
    /// A malformed token request: an agent bug.
    OauthInvalidRequest = "invalid_request" => Fatal,
    /// Wrong grant type: an incompatible agent.
    UnsupportedGrantType = "unsupported_grant_type" => Fatal,
    /// Unknown client id: an incompatible agent.
    InvalidClient = "invalid_client" => Fatal,
}

impl std::fmt::Display for RelayErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent does after the relay answered `status` with `code` (`None`: the body was not the
/// relay's JSON error).
///
/// A known code decides by itself; otherwise the status does: 5xx and 429 are retryable (a relay
/// restarting or a proxy in front of it), anything else is fatal. Neither path ever yields
/// [`Disposition::NeedsSignIn`] without a code that says so.
pub fn classify_refusal(status: u16, code: Option<&RelayErrorCode>) -> Disposition {
    if let Some(disposition) = code.and_then(RelayErrorCode::known_disposition) {
        return disposition;
    }
    if status >= 500 || status == 429 {
        Disposition::Retryable
    } else {
        Disposition::Fatal
    }
}

#[cfg(test)]
#[path = "relay_error_tests.rs"]
mod tests;
