//! [`RelayClient`]: the agent's signed calls to the relay — heartbeat, activity events, unregister.
//!
//! Every call is a `POST` with a JSON body, the bearer token and the four signing headers
//! ([`crate::signing`]). Every response's `Date` header feeds the clock offset; when the relay
//! refuses a timestamp as stale or future, the offset is re-learnt from that very response and the
//! call is signed again and retried **once** (with a fresh nonce, so the retry is not a replay).
//!
//! Errors are sorted by what the caller does next: [`RelayError::is_transient`] (retry later,
//! nothing is lost), [`RelayError::needs_sign_in`] (the relay no longer accepts this agent), or a
//! refusal that retrying will not fix.

use std::sync::Arc;

use katachi_proto::agent::{
    ActivityAck, ActivityBatch, ApiErrorBody, Heartbeat, HeartbeatAck, EVENTS_PATH, HEARTBEAT_PATH,
    UNREGISTER_PATH,
};
use katachi_proto::relay_error::{classify_refusal, Disposition, RelayErrorCode};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, DATE};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::auth::AgentCredentials;
use crate::relay_link::https::{error_chain, relay_http_client, RelayHttpError};
use crate::signing::{Clock, ClockOffset, RequestSigner};

/// Why a signed call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The HTTPS client could not be set up (an unusable pinned CA).
    #[error(transparent)]
    Http(#[from] RelayHttpError),
    /// No answer: the relay is down, the network is out, or TLS failed (certificate not from the
    /// pinned CA, TLS below 1.3). Transient: retry later.
    #[error("cannot reach the relay at {url}: {reason}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// What the network or TLS layer said.
        reason: String,
    },
    /// The agent's owner revoked it on the relay. Its credentials are useless: sign in again.
    #[error("the relay says this agent was revoked by its owner; sign in again with `katachi start --relay URL`")]
    Revoked,
    /// The relay does not know this agent (unregistered, deleted, or the relay's data was reset).
    #[error("the relay does not know this agent (it was unregistered or the relay was reset); sign in again with `katachi start --relay URL`")]
    UnknownAgent,
    /// The relay does not verify this agent's signatures with the secret it holds: the stored
    /// signing secret is not the relay's any more (a restored backup, a relay reset). Sign in again.
    #[error("the relay does not accept this agent's signing secret; sign in again with `katachi start --relay URL`")]
    SecretRefused,
    /// The relay still refused the timestamp after the offset was re-learnt from its `Date`
    /// header (a clock jumping while running, or a proxy stripping `Date`). Transient.
    #[error("the relay refused the request time even after correcting for its clock ({code}): {message}")]
    ClockSkew {
        /// `signature.stale_timestamp` or `signature.future_timestamp`.
        code: String,
        /// The relay's message.
        message: String,
    },
    /// The relay refused the request for another reason (bad signature, malformed request…);
    /// retrying the same request will not help.
    #[error("the relay refused the request ({code}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The relay's stable error code.
        code: String,
        /// The relay's message.
        message: String,
    },
    /// The relay failed or is overloaded (5xx, 429). Transient.
    #[error("the relay could not serve the request (HTTP {status}): {message}")]
    ServerError {
        /// HTTP status.
        status: u16,
        /// The relay's message, or the status text.
        message: String,
    },
    /// The stored access token cannot be sent as an HTTP header (damaged credentials). Sign in
    /// again after `katachi unregister --local-only`.
    #[error("the stored access token cannot be sent (damaged credentials); run `katachi unregister --local-only` and sign in again")]
    UnusableToken,
    /// The answer is not what the protocol says (another server at that URL, or an incompatible
    /// relay version).
    #[error("unexpected answer from the relay (HTTP {status}): {reason}")]
    UnexpectedResponse {
        /// HTTP status.
        status: u16,
        /// What is wrong.
        reason: String,
    },
}

impl RelayError {
    /// What the caller does next. Refusals were sorted by the one shared rule
    /// ([`classify_refusal`]) when they were received; this maps each variant back onto it.
    pub fn disposition(&self) -> Disposition {
        match self {
            RelayError::Unreachable { .. }
            | RelayError::ServerError { .. }
            | RelayError::ClockSkew { .. } => Disposition::Retryable,
            RelayError::Revoked | RelayError::UnknownAgent | RelayError::SecretRefused => {
                Disposition::NeedsSignIn
            }
            RelayError::Http(_)
            | RelayError::Rejected { .. }
            | RelayError::UnusableToken
            | RelayError::UnexpectedResponse { .. } => Disposition::Fatal,
        }
    }

    /// True when the same call may well succeed later: keep the data and retry.
    pub fn is_transient(&self) -> bool {
        self.disposition() == Disposition::Retryable
    }

    /// True when the relay will never accept these credentials again.
    pub fn needs_sign_in(&self) -> bool {
        self.disposition() == Disposition::NeedsSignIn
    }

    /// A stable code for scripts (`relay.unreachable`, `agent.revoked`, …).
    pub fn code(&self) -> &'static str {
        match self {
            RelayError::Http(_) => "relay.tls",
            RelayError::Unreachable { .. } => "relay.unreachable",
            RelayError::Revoked => "agent.revoked",
            RelayError::UnknownAgent => "agent.unknown",
            RelayError::SecretRefused => "signature.bad_signature",
            RelayError::ClockSkew { .. } => "signature.clock_skew",
            RelayError::Rejected { .. } => "relay.rejected",
            RelayError::ServerError { .. } => "relay.server_error",
            RelayError::UnexpectedResponse { .. } => "relay.unexpected_response",
            RelayError::UnusableToken => "credentials.unusable_token",
        }
    }
}

/// Signed calls to the relay on behalf of one registered agent.
#[derive(Debug)]
pub struct RelayClient {
    /// HTTPS client (TLS 1.3, pinned to the credentials' CA when there is one).
    http: reqwest::Client,
    /// Who the agent is and which relay it talks to.
    credentials: AgentCredentials,
    /// Signs each request at the relay's time.
    signer: RequestSigner,
}

impl RelayClient {
    /// A client for `credentials`, reading local time from `clock`.
    ///
    /// # Errors
    /// [`RelayError::Http`] when the pinned CA is unusable.
    pub fn new(credentials: AgentCredentials, clock: Arc<dyn Clock>) -> Result<Self, RelayError> {
        Self::with_shared_offset(credentials, clock, Arc::new(ClockOffset::default()))
    }

    /// A client like [`Self::new`] that signs with `offset`, shared with every other holder (the
    /// agent's relay link gives all its clients one, so what one learns from the relay's `Date`
    /// header the others use at once, in this online period and the next).
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_shared_offset(
        credentials: AgentCredentials,
        clock: Arc<dyn Clock>,
        offset: Arc<ClockOffset>,
    ) -> Result<Self, RelayError> {
        let http = relay_http_client(credentials.ca_pem())?;
        let signer = RequestSigner::with_shared_offset(
            credentials.agent_id(),
            credentials.signing_secret().duplicate(),
            clock,
            offset,
        );
        Ok(Self {
            http,
            credentials,
            signer,
        })
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &AgentCredentials {
        &self.credentials
    }

    /// A signer for the tunnel's upgrade request that shares this client's clock offset: the agent
    /// has one idea of the relay's time, whichever connection learnt it.
    pub fn tunnel_signer(&self) -> RequestSigner {
        self.signer.sharing_offset()
    }

    /// Relay clock minus local clock, as learnt from the relay's `Date` headers.
    pub fn clock_offset_secs(&self) -> i64 {
        self.signer.offset_secs()
    }

    /// The relay's time as the agent believes it.
    pub fn relay_now(&self) -> i64 {
        self.signer.relay_now()
    }

    /// Sends a heartbeat: "this agent is alive".
    ///
    /// # Errors
    /// [`RelayError`].
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatAck, RelayError> {
        let body = encode(beat);
        let reply = self.call(HEARTBEAT_PATH, body).await?;
        reply.json()
    }

    /// Sends activity events (at most [`katachi_proto::agent::MAX_EVENTS_PER_BATCH`]); the reply
    /// lists the ids the relay now holds.
    ///
    /// # Errors
    /// [`RelayError`].
    pub async fn send_events(&self, batch: &ActivityBatch) -> Result<ActivityAck, RelayError> {
        let body = encode(batch);
        let reply = self.call(EVENTS_PATH, body).await?;
        reply.json()
    }

    /// Asks the relay to forget this agent. The caller then wipes the local credentials.
    ///
    /// # Errors
    /// [`RelayError`]; on any error the relay may still know the agent.
    pub async fn unregister(&self) -> Result<(), RelayError> {
        self.call(UNREGISTER_PATH, Vec::new()).await.map(|_| ())
    }

    /// `POST path` with `body`, signed; retried once after re-learning the clock offset when the
    /// relay refuses the timestamp.
    pub(crate) async fn call(
        &self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<Reply, RelayError> {
        let url = self.credentials.relay_url().endpoint(path);
        let mut relearnt = false;
        loop {
            let reply = self.send_once(&url, path, &body).await?;
            if reply.status.is_success() {
                return Ok(reply);
            }
            let error = reply.api_error();
            let code = error.as_ref().map(|e| RelayErrorCode::parse(&e.error.code));
            let skew = matches!(
                code,
                Some(RelayErrorCode::StaleTimestamp | RelayErrorCode::FutureTimestamp)
            );
            if skew && !relearnt {
                relearnt = true;
                // The relay just told us our idea of its time is wrong: take its Date as is.
                if let Some(date) = reply.date.as_deref() {
                    if let Some(offset) = self.signer.relearn_from_date(date) {
                        tracing::info!(
                            offset,
                            "clock offset re-learnt from the relay's Date header"
                        );
                        continue;
                    }
                }
            }
            return Err(classify(reply.status, error, skew));
        }
    }

    /// One signed request and its whole answer.
    async fn send_once(&self, url: &str, path: &str, body: &[u8]) -> Result<Reply, RelayError> {
        let signed = self.signer.sign("POST", path, body);
        let mut request = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.bearer()?)
            .body(body.to_vec());
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in signed.pairs() {
            request = request.header(name, value);
        }
        let unreachable = |e: reqwest::Error| RelayError::Unreachable {
            url: url.to_owned(),
            reason: error_chain(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let date = response
            .headers()
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(unreachable)?;
        if let Some(d) = date.as_deref() {
            self.signer.observe_date(d);
        }
        Ok(Reply {
            status,
            date,
            body: bytes.to_vec(),
        })
    }

    /// `Authorization: Bearer <token>`, marked sensitive so `http` never prints it.
    fn bearer(&self) -> Result<HeaderValue, RelayError> {
        let mut value = Zeroizing::new(b"Bearer ".to_vec());
        // The token leaves its newtype only for this header.
        value.extend_from_slice(self.credentials.access_token().expose());
        let mut header = HeaderValue::from_bytes(&value).map_err(|_| RelayError::UnusableToken)?;
        header.set_sensitive(true);
        Ok(header)
    }
}

/// A relay answer.
pub(crate) struct Reply {
    /// HTTP status.
    status: StatusCode,
    /// The `Date` header, when present.
    date: Option<String>,
    /// The body.
    body: Vec<u8>,
}

impl Reply {
    /// The body as `T`.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, RelayError> {
        serde_json::from_slice(&self.body).map_err(|e| RelayError::UnexpectedResponse {
            status: self.status.as_u16(),
            reason: format!("not the expected JSON: {e}"),
        })
    }

    /// The relay's `{"error":{code,message}}`, when the body is one.
    fn api_error(&self) -> Option<ApiErrorBody> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sorts a refusal by what the caller should do next, by the one shared rule
/// ([`classify_refusal`]); the variant keeps what the caller needs to say or do.
fn classify(status: StatusCode, error: Option<ApiErrorBody>, skew: bool) -> RelayError {
    let code = error.as_ref().map(|e| RelayErrorCode::parse(&e.error.code));
    let disposition = classify_refusal(status.as_u16(), code.as_ref());
    let Some(ApiErrorBody { error }) = error else {
        return match disposition {
            Disposition::Retryable => RelayError::ServerError {
                status: status.as_u16(),
                message: status.canonical_reason().unwrap_or("error").to_owned(),
            },
            Disposition::NeedsSignIn | Disposition::Fatal => RelayError::UnexpectedResponse {
                status: status.as_u16(),
                reason: "the error body is not the relay's JSON error".to_owned(),
            },
        };
    };
    match (disposition, code) {
        (Disposition::NeedsSignIn, Some(RelayErrorCode::AgentRevoked)) => RelayError::Revoked,
        (Disposition::NeedsSignIn, Some(RelayErrorCode::AgentUnknown)) => RelayError::UnknownAgent,
        (Disposition::NeedsSignIn, _) => RelayError::SecretRefused,
        (Disposition::Retryable, _) if skew => RelayError::ClockSkew {
            code: error.code,
            message: error.message,
        },
        (Disposition::Retryable, _) => RelayError::ServerError {
            status: status.as_u16(),
            message: error.message,
        },
        (Disposition::Fatal, _) => RelayError::Rejected {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        },
    }
}

/// JSON of a wire type (these contain only strings and integers: encoding cannot fail).
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use katachi_proto::agent::ApiError;

    use super::*;

    fn body(code: &str) -> Option<ApiErrorBody> {
        Some(ApiErrorBody {
            error: ApiError {
                code: code.to_owned(),
                message: "m".to_owned(),
            },
        })
    }

    #[test]
    fn refusals_are_sorted_by_what_to_do_next() {
        let revoked = classify(StatusCode::FORBIDDEN, body("agent.revoked"), false);
        assert!(matches!(revoked, RelayError::Revoked));
        assert!(revoked.needs_sign_in() && !revoked.is_transient());
        let unknown = classify(StatusCode::UNAUTHORIZED, body("agent.unknown"), false);
        assert!(matches!(unknown, RelayError::UnknownAgent));
        assert!(unknown.needs_sign_in());
        let skew = classify(
            StatusCode::UNAUTHORIZED,
            body("signature.stale_timestamp"),
            true,
        );
        assert!(matches!(skew, RelayError::ClockSkew { .. }) && skew.is_transient());
        let bad = classify(
            StatusCode::UNAUTHORIZED,
            body("signature.bad_signature"),
            false,
        );
        assert!(matches!(bad, RelayError::SecretRefused));
        assert!(!bad.is_transient() && bad.needs_sign_in());
        let malformed = classify(
            StatusCode::BAD_REQUEST,
            body("signature.malformed_header"),
            false,
        );
        assert!(
            matches!(&malformed, RelayError::Rejected { code, .. } if code == "signature.malformed_header")
        );
        assert!(!malformed.is_transient() && !malformed.needs_sign_in());
        let nonce = classify(
            StatusCode::UNAUTHORIZED,
            body("signature.replayed_nonce"),
            false,
        );
        assert!(nonce.is_transient());
        assert!(classify(StatusCode::BAD_GATEWAY, None, false).is_transient());
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, body("rate"), false).is_transient());
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, None, false),
            RelayError::UnexpectedResponse { status: 404, .. }
        ));
    }

    #[test]
    fn the_tunnel_and_the_session_classify_every_code_the_same_way() {
        let unknown = RelayErrorCode::Unknown("agent.teleported".to_owned());
        for code in RelayErrorCode::ALL.iter().chain([&unknown]) {
            for status in [400u16, 401, 403, 426, 429, 500, 503] {
                let skew = matches!(
                    code,
                    RelayErrorCode::StaleTimestamp | RelayErrorCode::FutureTimestamp
                );
                let http = StatusCode::from_u16(status).unwrap();
                let session = classify(http, body(code.as_str()), skew).disposition();
                let tunnel = crate::tunnel::TunnelError::Refused {
                    status,
                    code: Some(code.clone()),
                }
                .disposition();
                assert_eq!(session, tunnel, "{code} {status}");
            }
        }
        for status in [401u16, 404, 429, 502] {
            let http = StatusCode::from_u16(status).unwrap();
            let tunnel = crate::tunnel::TunnelError::Refused { status, code: None }.disposition();
            assert_eq!(
                classify(http, None, false).disposition(),
                tunnel,
                "{status}"
            );
        }
    }

    #[test]
    fn every_error_has_a_stable_code() {
        let all = [
            RelayError::Unreachable {
                url: String::new(),
                reason: String::new(),
            },
            RelayError::Revoked,
            RelayError::UnknownAgent,
            RelayError::SecretRefused,
            RelayError::ClockSkew {
                code: String::new(),
                message: String::new(),
            },
            RelayError::Rejected {
                status: 400,
                code: String::new(),
                message: String::new(),
            },
            RelayError::ServerError {
                status: 500,
                message: String::new(),
            },
            RelayError::UnexpectedResponse {
                status: 200,
                reason: String::new(),
            },
            RelayError::UnusableToken,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(RelayError::code).collect();
        assert_eq!(codes.len(), all.len());
    }
}
