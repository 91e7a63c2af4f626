//! The relay's reading of a signed agent → relay request: the signing headers taken out of an HTTP
//! request head and checked for shape, then the checks that need the agent's secret.
//!
//! # Contract
//! - [`SignedRequest::parse`] reads the headers in a fixed order (agent id, timestamp, nonce,
//!   signature, `Authorization: Bearer`) and refuses the first missing or malformed one with its
//!   [`SignatureError`]. It needs no secret and no database, so the relay runs it before looking
//!   the agent up, and the fuzz target `signed_request` runs it on arbitrary request heads.
//! - The timestamp header must be the canonical decimal text of its value (what the agent's
//!   `i64::to_string` writes: no `+`, no leading zero, no `-0`): the text the relay accepts is the
//!   text that was signed (found by the fuzz target `signed_request`: `0850000000` was read as
//!   `850000000`).
//! - What [`SignedRequest::signed_parts`] gives is exactly what [`crate::signing::sign`] MACs:
//!   the canonical string has one line per field, and no field can hold a line break (the
//!   `http` types refuse them), so two different requests never share a canonical string.
//! - [`SignedRequest::verify`] checks the ±[`MAX_SKEW_SECS`] window, then the HMAC in constant
//!   time: the order in which the relay answers.
//!
//! It does not know agents: who the bearer token belongs to, whether the agent id is that agent's,
//! revocation and nonce reuse are the relay's checks against its database.

use http::request::Parts;
use http::HeaderMap;

#[cfg(doc)]
use crate::signing::MAX_SKEW_SECS;
use crate::signing::{
    check_nonce_format, check_timestamp, verify_signature, SignatureError, SignedParts,
    HEADER_AGENT_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};

/// Header carrying the agent's access token (`Bearer …`).
pub const HEADER_AUTHORIZATION: &str = "authorization";
/// Scheme of the access token in [`HEADER_AUTHORIZATION`] (RFC 6750, case as the agent sends it).
const BEARER_PREFIX: &str = "Bearer ";

/// A request head whose signing headers are all present and well formed; not yet verified.
///
/// # Security
/// It borrows the bearer token, a secret: its `Debug` leaves the token and the signature out.
#[derive(Clone, Copy)]
pub struct SignedRequest<'r> {
    /// `x-katachi-agent`: the agent the request claims to come from.
    agent_id: &'r str,
    /// `x-katachi-timestamp`, parsed: unix seconds when the agent signed.
    timestamp: i64,
    /// `x-katachi-nonce`: 32 hex characters, as sent (case kept: it is signed that way).
    nonce: &'r str,
    /// `x-katachi-signature`: the hex MAC, not decoded yet.
    signature: &'r str,
    /// The access token after `Bearer `.
    bearer_token: &'r str,
    /// The request method, as signed (upper-cased in the canonical string).
    method: &'r str,
    /// Path and query exactly as sent (`/` when the head has none).
    path_and_query: &'r str,
}

impl std::fmt::Debug for SignedRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("agent_id", &self.agent_id)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .finish_non_exhaustive()
    }
}

impl<'r> SignedRequest<'r> {
    /// Reads the signing headers of `head`.
    ///
    /// # Errors
    /// [`SignatureError::MissingHeader`] naming the first absent header,
    /// [`SignatureError::MalformedHeader`] naming the first one that is not visible ASCII, an
    /// `Authorization` that is not `Bearer …`, a timestamp that is not the canonical decimal text
    /// of an `i64`, or a nonce that is not 32 hex characters.
    pub fn parse(head: &'r Parts) -> Result<Self, SignatureError> {
        let h = &head.headers;
        let agent_id = header(h, HEADER_AGENT_ID)?;
        let timestamp_text = header(h, HEADER_TIMESTAMP)?;
        let nonce = header(h, HEADER_NONCE)?;
        let signature = header(h, HEADER_SIGNATURE)?;
        let bearer_token = header(h, HEADER_AUTHORIZATION)?
            .strip_prefix(BEARER_PREFIX)
            .ok_or(SignatureError::MalformedHeader(HEADER_AUTHORIZATION))?;
        let timestamp = parse_timestamp(timestamp_text)?;
        check_nonce_format(nonce)?;
        Ok(Self {
            agent_id,
            timestamp,
            nonce,
            signature,
            bearer_token,
            method: head.method.as_str(),
            path_and_query: head.uri.path_and_query().map_or("/", |p| p.as_str()),
        })
    }

    /// The agent id the request names (to compare with the token's agent).
    pub fn agent_id(&self) -> &'r str {
        self.agent_id
    }

    /// The signing time, unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The nonce as sent.
    pub fn nonce(&self) -> &'r str {
        self.nonce
    }

    /// The key under which the nonce is remembered: lower case, so `AB…` and `ab…` are one nonce
    /// (a replay cannot slip through by changing the case of the hex digits).
    pub fn replay_key(&self) -> String {
        self.nonce.to_ascii_lowercase()
    }

    /// The access token.
    ///
    /// # Security
    /// A secret: hash it to look the agent up; never log it.
    pub fn bearer_token(&self) -> &'r str {
        self.bearer_token
    }

    /// The parts the signature covers, with `body`.
    pub fn signed_parts<'a>(&'a self, body: &'a [u8]) -> SignedParts<'a> {
        SignedParts {
            method: self.method,
            path_and_query: self.path_and_query,
            timestamp: self.timestamp,
            nonce: self.nonce,
            body,
        }
    }

    /// Checks the timestamp against `now` (unix seconds), then the signature over the request
    /// with `body` under the agent's `secret`.
    ///
    /// # Errors
    /// [`SignatureError::Stale`] or [`SignatureError::Future`] outside the window (a delayed
    /// replay or a wrong clock), [`SignatureError::MalformedHeader`] for a signature that is not
    /// hex, [`SignatureError::BadSignature`] for a forged or altered request.
    pub fn verify(&self, secret: &[u8], body: &[u8], now: i64) -> Result<(), SignatureError> {
        // Outside the window: a delayed replay or a wrong clock (the agent corrects from `Date`).
        check_timestamp(self.timestamp, now)?;
        // Constant-time HMAC compare: a forged or altered request.
        verify_signature(secret, &self.signed_parts(body), self.signature)
    }
}

/// The header `name` as text.
fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, SignatureError> {
    headers
        .get(name)
        .ok_or(SignatureError::MissingHeader(name))?
        .to_str()
        .map_err(|_| SignatureError::MalformedHeader(name))
}

/// The timestamp header's value, refused unless `text` is its canonical decimal form.
fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    let malformed = || SignatureError::MalformedHeader(HEADER_TIMESTAMP);
    let timestamp: i64 = text.parse().map_err(|_| malformed())?;
    // `+5`, `05` and `-0` parse too, but only `5` and `0` are what the agent signed: any other
    // spelling would let a captured request travel with a header text that was never signed
    if timestamp.to_string() != text {
        return Err(malformed());
    }
    Ok(timestamp)
}

#[cfg(test)]
#[path = "signed_request_tests.rs"]
mod tests;
