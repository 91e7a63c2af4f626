//! Dialing the relay (TCP, TLS 1.3, signed HTTP/1.1 upgrade, over the direct or the WebSocket
//! carrier: [`super::carrier`]) and serving the API over HTTP/2 on the upgraded stream.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, DATE, HOST, USER_AGENT};
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::Router;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use katachi_proto::agent::{ApiErrorBody, TUNNEL_PATH};
use katachi_proto::relay_error::{classify_refusal, Disposition, RelayErrorCode};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use super::carrier::{refused_on_the_way, CarriedStream, Carrier, CarrierMemory};
use crate::auth::AgentCredentials;
use crate::relay_link::https::error_chain;
use crate::relay_link::tls::{relay_tls_config, Alpn, RelayTlsError};
use crate::signing::RequestSigner;
use crate::RelayUrl;

/// How long TCP + TLS + the upgrade answer may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// HTTP/2 PING interval on the tunnel, so a dead relay is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a PING may go unanswered before the tunnel is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest refusal body read (to learn its error code).
const MAX_REFUSAL_BODY: usize = 16 * 1024;
/// Requests the relay may have in flight on one tunnel at once (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`
/// of the agent's server). The relay's own per-tunnel limit defaults to the same number, so it
/// answers `429 agent.busy` itself before the agent would make it queue.
pub const MAX_CONCURRENT_STREAMS: u32 = 64;
/// Why a tunnel could not be opened, or why it ended.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The relay URL has no usable host.
    #[error("relay URL {0} has no usable host for the tunnel")]
    BadRelayUrl(String),
    /// The pinned CA holds no usable certificate.
    #[error("the relay CA is not usable for the tunnel: {0}")]
    InvalidCa(String),
    /// The TLS configuration could not be built.
    #[error("cannot set up TLS for the tunnel: {0}")]
    Tls(String),
    /// TCP, TLS or HTTP failed before the tunnel was up.
    #[error("cannot reach the relay at {url} for the tunnel: {reason}")]
    Unreachable {
        /// The relay.
        url: String,
        /// Why (one line, with causes).
        reason: String,
    },
    /// The relay did not answer within the dial timeout.
    #[error("the relay at {0} did not open the tunnel in time")]
    Timeout(String),
    /// The relay answered the upgrade with something other than `101`.
    #[error("the relay refused the tunnel: HTTP {status} ({})", code.as_ref().map_or("no error code", RelayErrorCode::as_str))]
    Refused {
        /// HTTP status.
        status: u16,
        /// The relay's error code (`signature.bad_signature`, `agent.revoked`…); `None` when the
        /// body was not the relay's JSON error.
        code: Option<RelayErrorCode>,
    },
    /// The stored access token cannot be put in a header (damaged credentials).
    #[error("the stored access token cannot be sent (damaged credentials); sign in again")]
    UnusableToken,
    /// The tunnel was up and ended with an error.
    #[error("the tunnel ended: {0}")]
    Ended(String),
}

impl TunnelError {
    /// What the agent does next: a refusal is sorted by the one shared rule
    /// ([`classify_refusal`]); network failures, timeouts and ended tunnels are retryable; a
    /// damaged token needs a new sign-in; a wrong set-up (URL, CA, TLS) is fatal.
    pub fn disposition(&self) -> Disposition {
        match self {
            TunnelError::Unreachable { .. } | TunnelError::Timeout(_) | TunnelError::Ended(_) => {
                Disposition::Retryable
            }
            TunnelError::Refused { status, code } => classify_refusal(*status, code.as_ref()),
            TunnelError::UnusableToken => Disposition::NeedsSignIn,
            TunnelError::BadRelayUrl(_) | TunnelError::InvalidCa(_) | TunnelError::Tls(_) => {
                Disposition::Fatal
            }
        }
    }

    /// True when retrying later may succeed (network, timeouts, relay restarts, a clock the
    /// relay's `Date` corrects).
    pub fn is_transient(&self) -> bool {
        self.disposition() == Disposition::Retryable
    }

    /// True when the stored credentials are no good any more (revoked, unknown to the relay, a
    /// signing secret it rejects, a damaged token): the agent must sign in again.
    pub fn needs_sign_in(&self) -> bool {
        self.disposition() == Disposition::NeedsSignIn
    }
}

/// Everything needed to open tunnels to one relay as one agent.
pub struct TunnelDialer {
    /// The relay.
    relay: RelayUrl,
    /// `host:port` for TCP and the `Host` header.
    authority: String,
    /// The TLS server name.
    server_name: ServerName<'static>,
    /// TLS 1.3 only, pinned roots, ALPN `http/1.1`.
    tls: TlsConnector,
    /// `Bearer <token>`, marked sensitive.
    bearer: HeaderValue,
    /// Signs the upgrade request.
    signer: RequestSigner,
    /// The carrier that last opened a tunnel, dialled first.
    carrier: CarrierMemory,
}

/// An open tunnel, ready to serve.
pub(crate) struct OpenTunnel {
    /// The byte stream under the tunnel's HTTP/2.
    stream: CarriedStream,
    /// What carries it.
    pub(crate) carrier: Carrier,
}

impl std::fmt::Debug for TunnelDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelDialer")
            .field("relay", &self.relay)
            .field("authority", &self.authority)
            .field("signer", &self.signer)
            .field("carrier", &self.carrier.preferred())
            .finish_non_exhaustive()
    }
}

impl TunnelDialer {
    /// A dialer for `credentials`, signing with `signer` (which should share the clock offset the
    /// agent's other relay calls learnt).
    ///
    /// # Errors
    /// [`TunnelError::BadRelayUrl`], [`TunnelError::InvalidCa`], [`TunnelError::Tls`],
    /// [`TunnelError::UnusableToken`].
    pub fn new(credentials: &AgentCredentials, signer: RequestSigner) -> Result<Self, TunnelError> {
        let relay = credentials.relay_url().clone();
        let url = url::Url::parse(relay.as_str())
            .map_err(|_| TunnelError::BadRelayUrl(relay.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| TunnelError::BadRelayUrl(relay.to_string()))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(bare_host)
            .map_err(|_| TunnelError::BadRelayUrl(relay.to_string()))?;
        let tls = relay_tls_config(credentials.ca_pem(), Alpn::Http1).map_err(|e| match e {
            RelayTlsError::InvalidCa(reason) => TunnelError::InvalidCa(reason),
            RelayTlsError::Build(reason) => TunnelError::Tls(reason),
        })?;
        let tls = TlsConnector::from(Arc::new(tls));
        let mut value = Zeroizing::new(b"Bearer ".to_vec());
        value.extend_from_slice(credentials.access_token().expose());
        let mut bearer = HeaderValue::from_bytes(&value).map_err(|_| TunnelError::UnusableToken)?;
        bearer.set_sensitive(true);
        Ok(Self {
            relay,
            authority: format!("{host}:{port}"),
            server_name,
            tls,
            bearer,
            signer,
            carrier: CarrierMemory::default(),
        })
    }

    /// The carrier the next dial tries first: the one that last opened a tunnel (direct until
    /// one has).
    pub fn preferred_carrier(&self) -> Carrier {
        self.carrier.preferred()
    }

    /// Dials `carrier` first from now on, as if it had opened the last tunnel (a deployment known
    /// to pass WebSocket upgrades only, and the benches that compare the carriers).
    pub fn set_preferred_carrier(&self, carrier: Carrier) {
        self.carrier.remember(carrier);
    }

    /// Opens one tunnel and serves `router` over it until the connection ends.
    ///
    /// # Errors
    /// Any [`TunnelError`]; [`TunnelError::is_transient`] tells whether to retry.
    pub async fn dial_and_serve(&self, router: Router) -> Result<(), TunnelError> {
        let open = self.dial().await?;
        self.serve(open, router).await
    }

    /// Opens one tunnel (TCP, TLS, signed upgrade) within the dial timeout.
    pub(crate) async fn dial(&self) -> Result<OpenTunnel, TunnelError> {
        tokio::time::timeout(DIAL_TIMEOUT, self.open())
            .await
            .map_err(|_| TunnelError::Timeout(self.relay.to_string()))?
    }

    /// Serves `router` over an open tunnel until it ends.
    pub(crate) async fn serve(&self, open: OpenTunnel, router: Router) -> Result<(), TunnelError> {
        let carrier = open.carrier;
        tracing::info!(relay = %self.relay, %carrier, "tunnel open");
        let result = serve_router_over_stream(open.stream, router).await;
        tracing::info!(relay = %self.relay, %carrier, "tunnel closed");
        result
    }

    /// The remembered carrier first; the other one at once when a hop on the way refused the
    /// first one's upgrade (the rule: [`super::carrier`]).
    async fn open(&self) -> Result<OpenTunnel, TunnelError> {
        let first = self.carrier.preferred();
        let (carrier, opened) = match self.open_with(first).await {
            Err(TunnelError::Refused { status, code })
                if refused_on_the_way(status, code.as_ref()) =>
            {
                let other = first.other();
                tracing::info!(
                    relay = %self.relay,
                    status,
                    code = code.as_ref().map_or("none", RelayErrorCode::as_str),
                    "the {first} upgrade was refused on the way to the relay; trying the {other} carrier"
                );
                (other, self.open_with(other).await)
            }
            opened => (first, opened),
        };
        let stream = opened?;
        self.carrier.remember(carrier);
        Ok(OpenTunnel { stream, carrier })
    }

    /// TCP, TLS, and the signed upgrade for `carrier`; the carried stream on `101`.
    async fn open_with(&self, carrier: Carrier) -> Result<CarriedStream, TunnelError> {
        let unreachable = |reason: String| TunnelError::Unreachable {
            url: self.relay.to_string(),
            reason,
        };
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(
                self.server_name.clone(),
                katachi_proto::transport::ReadAhead::new(tcp),
            )
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        // Drives the HTTP/1.1 exchange; it finishes (handing the stream over) once upgraded.
        let driver = tokio::spawn(conn.with_upgrades());

        let signed = self.signer.sign(Method::GET.as_str(), TUNNEL_PATH, b"");
        let request = Request::builder()
            .method(Method::GET)
            .uri(TUNNEL_PATH)
            .header(HOST, &self.authority);
        let (request, websocket_key) = carrier.upgrade_request(request);
        let mut request = request
            .header(
                USER_AGENT,
                concat!("katachi-agent/", env!("CARGO_PKG_VERSION")),
            )
            .header(AUTHORIZATION, self.bearer.clone());
        for (name, value) in signed.pairs() {
            request = request.header(name, value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| {
            driver.abort();
            unreachable(error_chain(&e))
        })?;
        if let Some(date) = response.headers().get(DATE).and_then(|v| v.to_str().ok()) {
            self.signer.observe_date(date);
        }
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_REFUSAL_BODY)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            driver.abort();
            return Err(TunnelError::Refused {
                status,
                code: error_code(&body),
            });
        }
        carrier
            .check_switch(response.headers(), websocket_key.as_deref())
            .map_err(|reason| {
                driver.abort();
                unreachable(reason)
            })?;
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        Ok(carrier.carry(upgraded).await)
    }
}

/// Serves `router` as the HTTP/2 server on `stream`, the agent's half of an open tunnel, until the
/// relay closes it or it fails. Everything the relay sends arrives here first, so this is also the
/// entry point of the tunnel fuzz target (`fuzz/fuzz_targets/tunnel_stream.rs`).
///
/// # Errors
/// [`TunnelError::Ended`] when the stream breaks or carries a protocol error.
pub async fn serve_router_over_stream<S>(stream: S, router: Router) -> Result<(), TunnelError>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
        .serve_connection(stream, service)
        .await
        .map_err(|e| TunnelError::Ended(error_chain(&e)))
}

/// The `error.code` of a relay error body, when it is one.
fn error_code(body: &[u8]) -> Option<RelayErrorCode> {
    serde_json::from_slice::<ApiErrorBody>(body)
        .ok()
        .map(|b| RelayErrorCode::parse(&b.error.code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_are_read_from_the_error_body() {
        assert_eq!(
            error_code(br#"{"error":{"code":"agent.revoked","message":"x"}}"#),
            Some(RelayErrorCode::AgentRevoked)
        );
        assert_eq!(error_code(b"<html>"), None);
    }

    #[test]
    fn revoked_and_unknown_agents_need_sign_in_and_clock_refusals_are_retried() {
        let refused = |status: u16, code: &str| TunnelError::Refused {
            status,
            code: Some(RelayErrorCode::parse(code)),
        };
        for code in ["agent.revoked", "agent.unknown", "signature.bad_signature"] {
            let e = refused(401, code);
            assert!(e.needs_sign_in() && !e.is_transient(), "{code}");
        }
        for code in [
            "signature.stale_timestamp",
            "signature.future_timestamp",
            "signature.replayed_nonce",
        ] {
            let e = refused(401, code);
            assert!(e.is_transient() && !e.needs_sign_in(), "{code}");
        }
        assert!(TunnelError::Refused {
            status: 503,
            code: None
        }
        .is_transient());
        let upgrade = refused(426, "tunnel.upgrade_required");
        assert!(!upgrade.is_transient() && !upgrade.needs_sign_in());
    }
}
