//! The RFC 8628 device flow client, over the `oauth2` crate's device-code support.
//!
//! [`DeviceFlow::start`] asks the relay for a device code (sending this machine's name and OS,
//! shown to the user on the approval page) and returns a [`PendingSignIn`] to show; [`DeviceFlow::wait`]
//! polls the token endpoint — honouring `authorization_pending`, `slow_down` (+5 s) and the
//! code's expiry, backing off while the relay is unreachable — until the user approves or denies.

use std::time::Duration;

use katachi_proto::device::{DeviceInfo, DEVICE_CODE_PATH, TOKEN_PATH};
use katachi_proto::relay_error::RelayErrorCode;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, ClientId, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, ExtraTokenFields,
    RequestTokenError, StandardDeviceAuthorizationResponse, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

use super::credentials::AgentCredentials;
use crate::relay_link::https::{error_chain, relay_http_client, RelayHttpError, RelayUrl};
use crate::secret::SecretBytes;

/// The OAuth client id every katachi agent uses (a public client: no client secret).
pub use katachi_proto::device::AGENT_CLIENT_ID;

/// Why signing in did not produce credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The relay URL or the pinned CA is unusable.
    #[error(transparent)]
    Http(#[from] RelayHttpError),
    /// The relay could not be reached, or its certificate was refused (wrong `--ca`, or a TLS
    /// version below 1.3). Check the URL, the CA file and that the relay runs.
    #[error("cannot reach the relay at {url}: {reason}")]
    Unreachable {
        /// The endpoint that failed.
        url: String,
        /// What the network or TLS layer said.
        reason: String,
    },
    /// The user pressed "deny" on the approval page.
    #[error("the sign-in was denied on the approval page")]
    Denied,
    /// The code expired before anyone approved it (or it was already used). Start again.
    #[error(
        "the sign-in code expired before it was approved; run the command again for a new code"
    )]
    Expired,
    /// The relay refused the request (`invalid_client`, `invalid_grant`, a rate limit…).
    #[error("the relay refused the sign-in: {code}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        /// The OAuth error code.
        code: String,
        /// The relay's explanation.
        description: Option<String>,
    },
    /// The relay answered something that is not a valid device-flow response (a wrong URL that
    /// points at another server, or a relay of an incompatible version).
    #[error("the relay's answer is not a valid sign-in response: {reason}")]
    BadResponse {
        /// What is wrong (never the response body: it may hold a token).
        reason: String,
    },
}

impl AuthError {
    /// The stable code of this error (`relay.unreachable`, `auth.denied`, `auth.expired`…).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Http(e) => e.code(),
            Self::Unreachable { .. } => "relay.unreachable",
            Self::Denied => "auth.denied",
            Self::Expired => "auth.expired",
            Self::Rejected { .. } => "auth.rejected",
            Self::BadResponse { .. } => "auth.bad_response",
        }
    }
}

/// The fields the relay adds to a successful token response (see
/// [`katachi_proto::device::AgentGrant`]): the agent's id and its signing secret.
#[derive(Deserialize)]
pub(crate) struct AgentGrantFields {
    /// The agent's id at the relay.
    agent_id: String,
    /// The per-agent HMAC key, zeroized on drop.
    #[serde(deserialize_with = "zeroizing_string")]
    signing_secret: Zeroizing<String>,
}

/// Reads a string straight into a zeroizing buffer (moved, not copied).
fn zeroizing_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

impl std::fmt::Debug for AgentGrantFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentGrantFields")
            .field("agent_id", &self.agent_id)
            .field("signing_secret", &"<redacted>")
            .finish()
    }
}

/// `oauth2` requires `Serialize` on extra fields; the secret is never written out, even by accident.
impl Serialize for AgentGrantFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("AgentGrantFields", 2)?;
        s.serialize_field("agent_id", &self.agent_id)?;
        s.serialize_field("signing_secret", "<redacted>")?;
        s.end()
    }
}

impl ExtraTokenFields for AgentGrantFields {}

/// The token response: a bearer access token plus [`AgentGrantFields`].
type AgentTokenResponse = StandardTokenResponse<AgentGrantFields, BasicTokenType>;

/// An `oauth2` client with the device authorization and token endpoints set.
type DeviceFlowClient = oauth2::Client<
    BasicErrorResponse,
    AgentTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The device flow against one relay.
pub struct DeviceFlow {
    /// The relay.
    relay: RelayUrl,
    /// The relay's CA, pinned for these requests and kept with the credentials.
    ca_pem: Option<String>,
    /// HTTPS client (TLS 1.3, pinned when `ca_pem` is given).
    http: reqwest::Client,
    /// The `oauth2` client with the relay's endpoints.
    oauth: DeviceFlowClient,
}

impl std::fmt::Debug for DeviceFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceFlow")
            .field("relay", &self.relay.as_str())
            .field("ca_pinned", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// A device code waiting for the user: what to show them.
#[derive(Debug)]
pub struct PendingSignIn {
    /// The relay's answer (holds the device code, which `oauth2` keeps redacted in `Debug`).
    response: StandardDeviceAuthorizationResponse,
    /// The relay, to check that the page to open is its own.
    relay: RelayUrl,
    /// The device name sent with the request (as the relay keeps it: trimmed), which the
    /// credentials remember as the name the agent registered under.
    device_name: String,
}

impl PendingSignIn {
    /// The code the user confirms, as the relay formats it (XXXX-XXXX).
    pub fn user_code(&self) -> &str {
        self.response.user_code().secret()
    }

    /// The page where the user enters the code.
    pub fn verification_uri(&self) -> &str {
        self.response.verification_uri().as_str()
    }

    /// The page with the code filled in, when the relay gave one.
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.response
            .verification_uri_complete()
            .map(|u| u.secret().as_str())
    }

    /// The page to show and open: the complete one when given, else the plain one.
    pub fn url_to_open(&self) -> &str {
        self.verification_uri_complete()
            .unwrap_or_else(|| self.verification_uri())
    }

    /// True when [`Self::url_to_open`] is on the relay's own origin: only then is it opened in a
    /// browser automatically (a relay cannot make the agent open arbitrary URLs or `file:` paths).
    pub fn is_safe_to_open(&self) -> bool {
        self.relay.is_same_origin(self.url_to_open())
    }

    /// How long the code stays valid.
    pub fn expires_in(&self) -> Duration {
        self.response.expires_in()
    }

    /// The minimum time between polls the relay asked for.
    pub fn interval(&self) -> Duration {
        self.response.interval()
    }
}

/// The error for a token endpoint refusal, sorted by the shared relay error codes: a denial, a
/// code that only a new sign-in replaces (expired or unknown to the relay), or another refusal.
fn token_refusal(code: String, description: Option<String>) -> AuthError {
    match RelayErrorCode::parse(&code) {
        RelayErrorCode::AccessDenied => AuthError::Denied,
        RelayErrorCode::ExpiredToken | RelayErrorCode::InvalidGrant => AuthError::Expired,
        _ => AuthError::Rejected { code, description },
    }
}

/// This machine as the approval page shows it: host name (or `name_override`) and OS.
pub fn this_device(name_override: Option<&str>) -> DeviceInfo {
    let device_name = name_override
        .map(str::to_owned)
        .or_else(sysinfo::System::host_name)
        .unwrap_or_else(|| "unnamed device".to_owned());
    let device_os = sysinfo::System::long_os_version()
        .or_else(sysinfo::System::name)
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    DeviceInfo {
        device_name,
        device_os,
    }
}

impl DeviceFlow {
    /// A device flow against `relay`, pinning `ca_pem` when given.
    ///
    /// # Errors
    /// [`AuthError::Http`] for an unusable CA.
    pub fn new(relay: RelayUrl, ca_pem: Option<String>) -> Result<Self, AuthError> {
        let http = relay_http_client(ca_pem.as_deref())?;
        let bad_url = |e: url::ParseError| RelayHttpError::InvalidUrl {
            url: relay.as_str().to_owned(),
            reason: e.to_string(),
        };
        let device_url =
            DeviceAuthorizationUrl::new(relay.endpoint(DEVICE_CODE_PATH)).map_err(bad_url)?;
        let token_url = TokenUrl::new(relay.endpoint(TOKEN_PATH)).map_err(bad_url)?;
        let oauth = oauth2::Client::new(ClientId::new(AGENT_CLIENT_ID.to_owned()))
            // A public client: client_id goes in the form body, no Basic auth header.
            .set_auth_type(AuthType::RequestBody)
            .set_device_authorization_url(device_url)
            .set_token_uri(token_url);
        Ok(Self {
            relay,
            ca_pem,
            http,
            oauth,
        })
    }

    /// The relay.
    pub fn relay(&self) -> &RelayUrl {
        &self.relay
    }

    /// Asks the relay for a device code for `device`.
    ///
    /// # Errors
    /// [`AuthError::Unreachable`], [`AuthError::Rejected`] or [`AuthError::BadResponse`].
    pub async fn start(&self, device: &DeviceInfo) -> Result<PendingSignIn, AuthError> {
        let response: StandardDeviceAuthorizationResponse = self
            .oauth
            .exchange_device_code()
            .add_extra_param("device_name", device.device_name.clone())
            .add_extra_param("device_os", device.device_os.clone())
            .request_async(&self.http)
            .await
            .map_err(|e| {
                map_request_error(e, &self.relay.endpoint(DEVICE_CODE_PATH), |r| {
                    (
                        r.error().as_ref().to_owned(),
                        r.error_description().cloned(),
                    )
                })
            })?;
        Ok(PendingSignIn {
            response,
            relay: self.relay.clone(),
            device_name: device.device_name.trim().to_owned(),
        })
    }

    /// Polls until the user approves (credentials, which name the device the code was asked
    /// for), denies ([`AuthError::Denied`]) or the code
    /// expires ([`AuthError::Expired`]). While the relay is unreachable it keeps polling with
    /// backoff until the code expires.
    ///
    /// # Errors
    /// As above, plus [`AuthError::Rejected`] and [`AuthError::BadResponse`].
    pub async fn wait(&self, pending: &PendingSignIn) -> Result<AgentCredentials, AuthError> {
        let token = self
            .oauth
            .exchange_device_access_token(&pending.response)
            .set_max_backoff_interval(Duration::from_secs(30))
            .request_async(&self.http, tokio::time::sleep, None)
            .await
            .map_err(|e| {
                map_request_error(e, &self.relay.endpoint(TOKEN_PATH), |r| {
                    (
                        r.error().as_ref().to_owned(),
                        r.error_description().cloned(),
                    )
                })
            })
            .map_err(|e| match e {
                AuthError::Rejected { code, description } => token_refusal(code, description),
                other => other,
            })?;
        let credentials = self.credentials_from(&token)?;
        // An empty name: the relay shows "unnamed device"; the screen shows the id.
        Ok(if pending.device_name.is_empty() {
            credentials
        } else {
            credentials.with_device_name(pending.device_name.clone())
        })
    }

    /// Checks the token response and turns it into credentials.
    fn credentials_from(&self, token: &AgentTokenResponse) -> Result<AgentCredentials, AuthError> {
        let bad = |reason: &str| AuthError::BadResponse {
            reason: reason.to_owned(),
        };
        if *token.token_type() != BasicTokenType::Bearer {
            return Err(bad("the token is not a bearer token"));
        }
        let grant = token.extra_fields();
        if !is_plausible_agent_id(&grant.agent_id) {
            return Err(bad("the agent id is missing or not printable"));
        }
        if grant.signing_secret.len() < 32 {
            return Err(bad(
                "the signing secret is missing or shorter than 32 characters",
            ));
        }
        let access_token = token.access_token().secret();
        // It travels in an `Authorization` header: visible ASCII only.
        if access_token.is_empty() || !access_token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("the access token is empty or not printable ASCII"));
        }
        // Copied into zeroizing newtypes; oauth2's own copies are dropped with `token`.
        Ok(AgentCredentials::new(
            self.relay.clone(),
            grant.agent_id.clone(),
            SecretBytes::new(access_token.as_bytes().to_vec()),
            SecretBytes::new(grant.signing_secret.as_bytes().to_vec()),
            self.ca_pem.clone(),
        ))
    }
}

/// An agent id the relay may legitimately issue: short, ASCII, no spaces or control characters
/// (it goes into a header and onto the screen).
fn is_plausible_agent_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Maps an `oauth2` error to [`AuthError`]; `server_error` extracts (code, description) from the
/// endpoint's error response type.
fn map_request_error<RE, TE>(
    err: RequestTokenError<RE, TE>,
    url: &str,
    server_error: impl FnOnce(&TE) -> (String, Option<String>),
) -> AuthError
where
    RE: std::error::Error + 'static,
    TE: oauth2::ErrorResponse + 'static,
{
    match err {
        RequestTokenError::ServerResponse(r) => {
            let (code, description) = server_error(&r);
            AuthError::Rejected { code, description }
        }
        RequestTokenError::Request(e) => AuthError::Unreachable {
            url: url.to_owned(),
            reason: error_chain(&e),
        },
        // Only the position: the body may hold a token, and serde's message can quote it.
        RequestTokenError::Parse(e, _body) => AuthError::BadResponse {
            reason: format!("unexpected JSON at {}", e.path()),
        },
        RequestTokenError::Other(reason) => AuthError::BadResponse { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use katachi_proto::device::AgentGrant;

    #[test]
    fn token_refusals_are_sorted_by_the_shared_codes() {
        assert!(matches!(
            token_refusal("access_denied".into(), None),
            AuthError::Denied
        ));
        assert!(matches!(
            token_refusal("expired_token".into(), None),
            AuthError::Expired
        ));
        assert!(matches!(
            token_refusal("invalid_grant".into(), None),
            AuthError::Expired
        ));
        assert!(matches!(
            token_refusal("invalid_client".into(), Some("d".into())),
            AuthError::Rejected { code, description: Some(_) } if code == "invalid_client"
        ));
    }

    fn token_json(signing_secret: &str, agent_id: &str, token_type: &str) -> String {
        let grant = AgentGrant {
            agent_id: agent_id.to_owned(),
            signing_secret: signing_secret.to_owned(),
        };
        let mut v = serde_json::to_value(&grant).unwrap();
        v["access_token"] = "tok-0123456789".into();
        v["token_type"] = token_type.into();
        v.to_string()
    }

    fn flow() -> DeviceFlow {
        DeviceFlow::new(RelayUrl::parse("https://relay.example").unwrap(), None).unwrap()
    }

    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn the_relays_grant_fields_parse_into_credentials() {
        // The relay serialises katachi_proto's AgentGrant; our extra fields read the same JSON.
        let token: AgentTokenResponse =
            serde_json::from_str(&token_json(SECRET, "agt_42", "bearer")).unwrap();
        let creds = flow().credentials_from(&token).unwrap();
        assert_eq!(creds.agent_id(), "agt_42");
        assert_eq!(creds.signing_secret().expose(), SECRET.as_bytes());
        assert_eq!(creds.access_token().expose(), b"tok-0123456789");
        assert_eq!(creds.relay_url().as_str(), "https://relay.example");
    }

    #[test]
    fn implausible_grants_are_refused() {
        for (secret, id, ty) in [
            ("short", "agt_42", "bearer"),
            (SECRET, "", "bearer"),
            (SECRET, "agt 42", "bearer"),
            (SECRET, "agt_42", "mac"),
        ] {
            let token: AgentTokenResponse =
                serde_json::from_str(&token_json(secret, id, ty)).unwrap();
            assert!(
                matches!(
                    flow().credentials_from(&token),
                    Err(AuthError::BadResponse { .. })
                ),
                "{secret} {id} {ty}"
            );
        }
    }

    #[test]
    fn grant_fields_never_print_or_serialise_the_secret() {
        let token: AgentTokenResponse =
            serde_json::from_str(&token_json(SECRET, "agt_42", "bearer")).unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(!debug.contains("tok-0123456789"), "{debug}");
        let json = serde_json::to_string(token.extra_fields()).unwrap();
        assert!(!json.contains(SECRET), "{json}");
    }

    #[test]
    fn this_device_has_a_name_and_an_os() {
        let d = this_device(None);
        assert!(!d.device_name.is_empty());
        assert!(!d.device_os.is_empty());
        assert_eq!(this_device(Some("build-box")).device_name, "build-box");
    }
}
