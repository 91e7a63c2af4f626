//! HMAC-SHA256 signing of agent → relay requests.
//!
//! Canonical string (one field per line, no trailing newline):
//! ```text
//! v1
//! {METHOD}
//! {path?query}
//! {timestamp, unix seconds}
//! {nonce, 32 hex chars = 128 bits}
//! {hex sha256(body)}
//! ```
//! The signature is the hex HMAC-SHA256 of that string under the agent's signing secret, sent with
//! the agent id, timestamp and nonce headers and the bearer token.
//!
//! # Security
//! [`verify_signature`] compares in constant time (`hmac::Mac::verify_slice`). Window, nonce reuse
//! and revocation are the verifier's job (the relay); this module gives them one error each.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Header carrying the agent id.
pub const HEADER_AGENT_ID: &str = "x-katachi-agent";
/// Header carrying the unix timestamp (seconds).
pub const HEADER_TIMESTAMP: &str = "x-katachi-timestamp";
/// Header carrying the 128-bit random nonce (32 hex chars).
pub const HEADER_NONCE: &str = "x-katachi-nonce";
/// Header carrying the hex signature.
pub const HEADER_SIGNATURE: &str = "x-katachi-signature";
/// Accepted clock skew, each way, in seconds.
pub const MAX_SKEW_SECS: i64 = 30;
/// Canonical string version tag.
const VERSION_TAG: &str = "v1";

/// Why a signed request is refused. Each has its own wire code ([`SignatureError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A signing header is absent.
    #[error("missing signing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but malformed (non-numeric timestamp, nonce not 32 hex chars…).
    #[error("malformed signing header {0}")]
    MalformedHeader(&'static str),
    /// The timestamp is too far in the past: a delayed or replayed request, or a slow clock.
    #[error("request timestamp is {skew_secs} s behind the relay's clock (allowed ±{MAX_SKEW_SECS} s); sync the clock")]
    Stale {
        /// How far behind.
        skew_secs: i64,
    },
    /// The timestamp is too far in the future: a fast clock or a pre-computed request.
    #[error("request timestamp is {skew_secs} s ahead of the relay's clock (allowed ±{MAX_SKEW_SECS} s); sync the clock")]
    Future {
        /// How far ahead.
        skew_secs: i64,
    },
    /// The nonce was already used inside the window: a replay.
    #[error("nonce already used: replayed request")]
    ReplayedNonce,
    /// The signature does not match the request (wrong secret, or the request changed after signing).
    #[error("signature does not match the request")]
    BadSignature,
    /// No agent with this id (or the token does not belong to it).
    #[error("unknown agent")]
    UnknownAgent,
    /// The agent was revoked by its owner.
    #[error("agent was revoked; sign in again")]
    RevokedAgent,
}

impl SignatureError {
    /// Stable wire code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader(_) => "signature.missing_header",
            SignatureError::MalformedHeader(_) => "signature.malformed_header",
            SignatureError::Stale { .. } => "signature.stale_timestamp",
            SignatureError::Future { .. } => "signature.future_timestamp",
            SignatureError::ReplayedNonce => "signature.replayed_nonce",
            SignatureError::BadSignature => "signature.bad_signature",
            SignatureError::UnknownAgent => "agent.unknown",
            SignatureError::RevokedAgent => "agent.revoked",
        }
    }
}

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// Path and query exactly as sent (`/api/agent/heartbeat?x=1`).
    pub path_and_query: &'a str,
    /// Unix seconds.
    pub timestamp: i64,
    /// 32 hex chars.
    pub nonce: &'a str,
    /// The raw body.
    pub body: &'a [u8],
}

impl SignedParts<'_> {
    /// The canonical string that is MAC-ed.
    pub fn canonical_string(&self) -> String {
        format!(
            "{VERSION_TAG}\n{}\n{}\n{}\n{}\n{}",
            self.method.to_ascii_uppercase(),
            self.path_and_query,
            self.timestamp,
            self.nonce,
            hex::encode(Sha256::digest(self.body))
        )
    }
}

/// Hex HMAC-SHA256 of the canonical string under `secret`.
pub fn sign(secret: &[u8], parts: &SignedParts<'_>) -> String {
    hex::encode(mac(secret, parts).finalize().into_bytes())
}

/// Checks `signature_hex` against the request in constant time.
///
/// # Errors
/// [`SignatureError::MalformedHeader`] for a non-hex signature, [`SignatureError::BadSignature`] otherwise.
pub fn verify_signature(
    secret: &[u8],
    parts: &SignedParts<'_>,
    signature_hex: &str,
) -> Result<(), SignatureError> {
    let given = hex::decode(signature_hex)
        .map_err(|_| SignatureError::MalformedHeader(HEADER_SIGNATURE))?;
    // constant-time compare: no timing oracle on the MAC
    mac(secret, parts)
        .verify_slice(&given)
        .map_err(|_| SignatureError::BadSignature)
}

/// Checks the timestamp against `now` (both unix seconds), ±[`MAX_SKEW_SECS`].
///
/// # Errors
/// [`SignatureError::Stale`] or [`SignatureError::Future`].
pub fn check_timestamp(timestamp: i64, now: i64) -> Result<(), SignatureError> {
    let skew = timestamp.saturating_sub(now);
    if skew < -MAX_SKEW_SECS {
        return Err(SignatureError::Stale {
            skew_secs: skew.saturating_neg(),
        });
    }
    if skew > MAX_SKEW_SECS {
        return Err(SignatureError::Future { skew_secs: skew });
    }
    Ok(())
}

/// Checks a nonce has the expected shape (32 lowercase or uppercase hex chars).
///
/// # Errors
/// [`SignatureError::MalformedHeader`].
pub fn check_nonce_format(nonce: &str) -> Result<(), SignatureError> {
    if nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(SignatureError::MalformedHeader(HEADER_NONCE))
    }
}

fn mac(secret: &[u8], parts: &SignedParts<'_>) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
    m.update(parts.canonical_string().as_bytes());
    m
}

#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    // HMAC-SHA256 takes keys of every length; keep a defined value rather than panicking.
    <Hmac<Sha256> as Mac>::new(&Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(body: &[u8]) -> SignedParts<'_> {
        SignedParts {
            method: "POST",
            path_and_query: "/api/agent/heartbeat",
            timestamp: 1_700_000_000,
            nonce: "00112233445566778899aabbccddeeff",
            body,
        }
    }

    #[test]
    fn signature_verifies_and_any_change_breaks_it() {
        let secret = b"per-agent-secret";
        let sig = sign(secret, &parts(b"{}"));
        assert!(verify_signature(secret, &parts(b"{}"), &sig).is_ok());
        assert_eq!(
            verify_signature(secret, &parts(b"{ }"), &sig),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify_signature(b"other", &parts(b"{}"), &sig),
            Err(SignatureError::BadSignature)
        );
        let mut p = parts(b"{}");
        p.path_and_query = "/api/agent/events";
        assert_eq!(
            verify_signature(secret, &p, &sig),
            Err(SignatureError::BadSignature)
        );
        let mut p = parts(b"{}");
        p.timestamp += 1;
        assert_eq!(
            verify_signature(secret, &p, &sig),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify_signature(secret, &parts(b"{}"), "zz"),
            Err(SignatureError::MalformedHeader(HEADER_SIGNATURE))
        );
    }

    #[test]
    fn canonical_string_matches_the_design() {
        let s = parts(b"").canonical_string();
        assert_eq!(
            s,
            "v1\nPOST\n/api/agent/heartbeat\n1700000000\n00112233445566778899aabbccddeeff\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_stale_or_future() {
        assert!(check_timestamp(1000, 1030).is_ok());
        assert!(check_timestamp(1030, 1000).is_ok());
        assert_eq!(
            check_timestamp(1000, 1031),
            Err(SignatureError::Stale { skew_secs: 31 })
        );
        assert_eq!(
            check_timestamp(1031, 1000),
            Err(SignatureError::Future { skew_secs: 31 })
        );
        assert!(check_timestamp(i64::MIN, 1000).is_err());
        assert!(check_timestamp(i64::MAX, 1000).is_err());
    }

    #[test]
    fn nonce_must_be_128_bits_of_hex() {
        assert!(check_nonce_format("00112233445566778899aabbccddeeff").is_ok());
        assert!(check_nonce_format("0011").is_err());
        assert!(check_nonce_format("zz112233445566778899aabbccddeeff").is_err());
    }

    #[test]
    fn every_error_has_its_own_code() {
        let all = [
            SignatureError::MissingHeader("x"),
            SignatureError::MalformedHeader("x"),
            SignatureError::Stale { skew_secs: 1 },
            SignatureError::Future { skew_secs: 1 },
            SignatureError::ReplayedNonce,
            SignatureError::BadSignature,
            SignatureError::UnknownAgent,
            SignatureError::RevokedAgent,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(SignatureError::code).collect();
        assert_eq!(codes.len(), all.len());
    }
}
