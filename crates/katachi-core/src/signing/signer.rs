//! [`RequestSigner`]: the signing headers of one agent's requests.

use std::sync::Arc;

use katachi_proto::signing::{
    sign, SignedParts, HEADER_AGENT_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};

use super::clock::{Clock, ClockOffset};
use crate::secret::SecretBytes;

/// The four signing headers of one request (the bearer token is added by the caller).
///
/// Nothing here is secret: the signature is a MAC over this one request, useless for any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `x-katachi-agent`: who signs.
    pub agent_id: String,
    /// `x-katachi-timestamp`: the relay's time as the agent believes it (local + offset).
    pub timestamp: i64,
    /// `x-katachi-nonce`: 32 hex chars, fresh for every request.
    pub nonce: String,
    /// `x-katachi-signature`: hex HMAC-SHA256 of the canonical string.
    pub signature: String,
}

impl SignedHeaders {
    /// The headers as (name, value) pairs, names from [`katachi_proto::signing`].
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_AGENT_ID, self.agent_id.clone()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_NONCE, self.nonce.clone()),
            (HEADER_SIGNATURE, self.signature.clone()),
        ]
    }
}

/// Signs one agent's requests with its per-agent secret, at the relay's time.
pub struct RequestSigner {
    /// The agent's id at the relay.
    agent_id: String,
    /// The HMAC key: the signing secret exactly as the relay issued it.
    secret: SecretBytes,
    /// The local clock.
    clock: Arc<dyn Clock>,
    /// Relay clock minus local clock, shared by every signer of the agent (see
    /// [`RequestSigner::sharing_offset`]).
    offset: Arc<ClockOffset>,
}

impl std::fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSigner")
            .field("agent_id", &self.agent_id)
            .field("secret", &self.secret)
            .field("offset_secs", &self.offset.secs())
            .finish_non_exhaustive()
    }
}

impl RequestSigner {
    /// A signer for `agent_id` with `secret`, reading time from `clock`, starting with
    /// `offset_secs` (0, or the offset a previous run learnt).
    pub fn new(
        agent_id: impl Into<String>,
        secret: SecretBytes,
        clock: Arc<dyn Clock>,
        offset_secs: i64,
    ) -> Self {
        Self {
            agent_id: agent_id.into(),
            secret,
            clock,
            offset: Arc::new(ClockOffset::new(offset_secs)),
        }
    }

    /// A signer like [`Self::new`] whose offset is `offset`, shared with every other holder: an
    /// agent's relay link keeps one for all its connections and online periods, so the offset is
    /// learnt once, not once per connection.
    pub fn with_shared_offset(
        agent_id: impl Into<String>,
        secret: SecretBytes,
        clock: Arc<dyn Clock>,
        offset: Arc<ClockOffset>,
    ) -> Self {
        Self {
            agent_id: agent_id.into(),
            secret,
            clock,
            offset,
        }
    }

    /// Another signer for the same agent that shares this one's clock offset: what either learns
    /// from the relay's `Date` header, both use. The tunnel and the HTTPS calls sign this way, so
    /// the agent has one idea of the relay's time.
    pub fn sharing_offset(&self) -> Self {
        Self {
            agent_id: self.agent_id.clone(),
            secret: self.secret.duplicate(),
            clock: Arc::clone(&self.clock),
            offset: Arc::clone(&self.offset),
        }
    }

    /// The agent id the headers carry.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The relay's time as the agent believes it: local clock plus the learnt offset.
    pub fn relay_now(&self) -> i64 {
        self.clock.now_unix().saturating_add(self.offset.secs())
    }

    /// The offset in force (relay − local, seconds).
    pub fn offset_secs(&self) -> i64 {
        self.offset.secs()
    }

    /// Updates the offset from a response's `Date` header (ignoring one-second jitter); returns the
    /// offset in force.
    pub fn observe_date(&self, date_header: &str) -> i64 {
        self.offset.observe(date_header, self.clock.now_unix())
    }

    /// Re-learns the offset from a response's `Date` header unconditionally, after the relay refused
    /// a timestamp; `None` when the header does not parse.
    pub fn relearn_from_date(&self, date_header: &str) -> Option<i64> {
        self.offset.relearn(date_header, self.clock.now_unix())
    }

    /// The signing headers of `method path_and_query` with `body`, at the relay's time and with a
    /// fresh nonce.
    ///
    /// `path_and_query` must be exactly what goes on the request line (the relay signs what it
    /// receives).
    pub fn sign(&self, method: &str, path_and_query: &str, body: &[u8]) -> SignedHeaders {
        let timestamp = self.relay_now();
        let nonce = fresh_nonce();
        let parts = SignedParts {
            method,
            path_and_query,
            timestamp,
            nonce: &nonce,
            body,
        };
        // The secret leaves the newtype only to key the HMAC.
        let signature = sign(self.secret.expose(), &parts);
        SignedHeaders {
            agent_id: self.agent_id.clone(),
            timestamp,
            nonce,
            signature,
        }
    }
}

/// 128 random bits from the OS RNG as 32 lowercase hex chars.
fn fresh_nonce() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use katachi_proto::signing::{
        check_nonce_format, check_timestamp, verify_signature, SignatureError,
    };

    use super::*;
    use crate::signing::{SkewedClock, SystemClock};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn signers_sharing_an_offset_learn_the_relays_time_together() {
        let first = RequestSigner::new(
            "agt_1",
            SecretBytes::new(SECRET.to_vec()),
            Arc::new(SystemClock),
            0,
        );
        let second = first.sharing_offset();
        // A relay whose clock is a day ahead of ours.
        let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
        let date = httpdate::fmt_http_date(ahead);
        first.observe_date(&date);
        assert!(
            (second.offset_secs() - 86_400).abs() <= 2,
            "{}",
            second.offset_secs()
        );
        assert_eq!(second.agent_id(), "agt_1");
    }

    /// A clock stopped at one instant.
    #[derive(Debug)]
    struct Frozen(i64);

    impl Clock for Frozen {
        fn now_unix(&self) -> i64 {
            self.0
        }
    }

    fn signer(clock: Arc<dyn Clock>) -> RequestSigner {
        RequestSigner::new("agt_1", SecretBytes::new(SECRET.to_vec()), clock, 0)
    }

    #[test]
    fn headers_verify_with_the_relays_verifier() {
        let s = signer(Arc::new(Frozen(1_700_000_000)));
        let body = br#"{"version":"0.1.0","workspaces":2}"#;
        let h = s.sign("POST", "/api/agent/heartbeat", body);
        assert_eq!(h.agent_id, "agt_1");
        assert_eq!(h.timestamp, 1_700_000_000);
        assert!(check_nonce_format(&h.nonce).is_ok());
        let parts = SignedParts {
            method: "POST",
            path_and_query: "/api/agent/heartbeat",
            timestamp: h.timestamp,
            nonce: &h.nonce,
            body,
        };
        assert_eq!(verify_signature(SECRET, &parts, &h.signature), Ok(()));
        // Any change after signing breaks it: the relay sees a bad signature.
        let altered = SignedParts {
            body: br#"{"version":"0.1.0","workspaces":3}"#,
            ..parts
        };
        assert_eq!(
            verify_signature(SECRET, &altered, &h.signature),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn every_request_gets_a_fresh_nonce() {
        let s = signer(Arc::new(Frozen(1_700_000_000)));
        let a = s.sign("POST", "/api/agent/heartbeat", b"{}");
        let b = s.sign("POST", "/api/agent/heartbeat", b"{}");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.signature, b.signature);
    }

    #[test]
    fn header_pairs_use_the_protocol_names() {
        let s = signer(Arc::new(Frozen(5)));
        let h = s.sign("POST", "/x", b"");
        let names: Vec<_> = h.pairs().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "x-katachi-agent",
                "x-katachi-timestamp",
                "x-katachi-nonce",
                "x-katachi-signature"
            ]
        );
        assert_eq!(h.pairs()[1].1, "5");
    }

    #[test]
    fn a_skewed_clock_is_corrected_by_the_learnt_offset() {
        // The agent's clock is 10 minutes fast; the relay's Date says the real time.
        let s = signer(Arc::new(SkewedClock::new(600)));
        let stale = s.sign("POST", "/x", b"");
        let relay_now = SystemClock.now_unix();
        assert!(matches!(
            check_timestamp(stale.timestamp, relay_now),
            Err(SignatureError::Future { .. })
        ));
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let offset = s.relearn_from_date(&date).unwrap();
        assert!((offset + 600).abs() <= 1, "{offset}");
        let fixed = s.sign("POST", "/x", b"");
        assert_eq!(check_timestamp(fixed.timestamp, relay_now), Ok(()));
        assert!((fixed.timestamp - relay_now).abs() <= 1);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = signer(Arc::new(Frozen(0)));
        let shown = format!("{s:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
