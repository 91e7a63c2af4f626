//! RFC 8628 device authorization: what the agent asks for and what it receives.

use serde::{Deserialize, Serialize};

/// The OAuth client id every katachi agent uses (a public client: no client secret).
pub const AGENT_CLIENT_ID: &str = "katachi-agent";
/// Device-code grant type (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Path of the device authorization endpoint.
pub const DEVICE_CODE_PATH: &str = "/oauth/device/code";
/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/oauth/token";
/// Path of the verification page.
pub const VERIFY_PATH: &str = "/device";
/// Alphabet of user codes: no vowels (no words), no look-alikes (0/O, 1/I/L, 5/S, 2/Z, 8/B).
pub const USER_CODE_ALPHABET: &[u8] = b"CDFGHJKMNPQRTVWXY34679";
/// Characters in a user code (shown as XXXX-XXXX).
pub const USER_CODE_LEN: usize = 8;

/// Extra fields the agent sends with the device authorization request (form-encoded), shown to the
/// user on the approval page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Human name of the machine (hostname).
    pub device_name: String,
    /// Operating system and version.
    pub device_os: String,
}

/// Response of the device authorization endpoint (RFC 8628 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCodeResponse {
    /// Secret code the agent polls with.
    pub device_code: String,
    /// Code the user types or confirms (XXXX-XXXX).
    pub user_code: String,
    /// Page where the user enters the code.
    pub verification_uri: String,
    /// Page with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Minimum seconds between polls.
    pub interval: u64,
}

/// Extra fields of the successful token response: who the agent is and how it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentGrant {
    /// The agent's id at the relay.
    pub agent_id: String,
    /// Per-agent signing secret: 64 hex characters whose ASCII bytes (not the decoded hex) are the
    /// HMAC-SHA256 key of [`crate::signing::sign`].
    pub signing_secret: String,
}

/// Error codes of the token endpoint (RFC 8628 §3.5, RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenErrorCode {
    /// The user has not approved or denied yet.
    AuthorizationPending,
    /// Polling faster than `interval`; add 5 seconds.
    SlowDown,
    /// The user denied the request.
    AccessDenied,
    /// The device code expired (or was already used).
    ExpiredToken,
    /// Unknown device code, or malformed request.
    InvalidGrant,
    /// Malformed request.
    InvalidRequest,
    /// Wrong grant type.
    UnsupportedGrantType,
    /// Unknown client.
    InvalidClient,
}

/// Error body of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenError {
    /// The code.
    pub error: TokenErrorCode,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// Normalises what a user typed: upper case, dashes and spaces dropped. `None` when it cannot be a
/// user code (wrong length or characters outside the alphabet).
pub fn normalise_user_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// Formats a normalised code as XXXX-XXXX.
pub fn display_user_code(code: &str) -> String {
    if code.len() == USER_CODE_LEN && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_case_and_dash_insensitive() {
        assert_eq!(
            normalise_user_code("wdjh-mxqk").as_deref(),
            Some("WDJHMXQK")
        );
        assert_eq!(
            normalise_user_code(" WDJH MXQK ").as_deref(),
            Some("WDJHMXQK")
        );
        assert_eq!(normalise_user_code("WDJHMXQ"), None);
        assert_eq!(
            normalise_user_code("WDJH-MXQ0"),
            None,
            "0 is not in the alphabet"
        );
        assert_eq!(display_user_code("WDJHMXQK"), "WDJH-MXQK");
    }

    #[test]
    fn alphabet_has_no_ambiguous_characters() {
        for c in b"01258AEIOUSZBL" {
            assert!(!USER_CODE_ALPHABET.contains(c), "{}", *c as char);
        }
    }

    #[test]
    fn token_errors_serialise_as_rfc_codes() {
        let e = TokenError {
            error: TokenErrorCode::SlowDown,
            error_description: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            "{\"error\":\"slow_down\"}"
        );
    }
}
