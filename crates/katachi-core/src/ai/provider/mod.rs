//! The model providers: an OpenAI-compatible Chat Completions client (OpenAI, and local servers
//! such as Ollama, llama.cpp or vLLM through another base URL) and an Anthropic Messages client,
//! both streamed over SSE.
//!
//! # Contract
//! - [`Provider::stream`] sends one [`ModelRequest`] and returns the answer as a [`ModelStream`]
//!   of [`ModelEvent`]s: text pieces as they come, complete tool calls (streamed argument pieces
//!   joined and parsed; text that is not JSON becomes `{"_invalid_json": "<text>"}` so the tool
//!   answers the model with an argument error), usage, then `Finished`.
//! - Failed calls are retried before the answer starts ([`RetryPolicy`]): connection errors,
//!   429 and 5xx/529, honouring `Retry-After`; 4xx are never retried.
//! - Dropping the stream, or the future of [`Provider::stream`], closes the connection at once.
//! - Every error has a stable `ai.*` code ([`ProviderError::code`]).
//!
//! # Security
//! - The API key is sent only to the configured base URL, in a header marked sensitive
//!   (`Authorization: Bearer` for OpenAI, `x-api-key` for Anthropic); redirects are not followed,
//!   so it can never be replayed to another host. It is never in `Debug`, errors or logs: provider
//!   messages are scrubbed of it ([`error`]).
//! - Plain `http://` is allowed only to a loopback host (a local model server); any other host
//!   must be `https://`, so neither the key nor the code crosses a network in clear.
//!
//! # Layout
//! - `error`: [`ProviderError`] and its codes, provider messages made safe to show.
//! - `retry`: [`RetryPolicy`], `Retry-After`, which statuses are retried.
//! - `call`: the HTTP call with its retries, error bodies read into errors.
//! - `stream`: [`ModelStream`]: SSE events decoded by a wire decoder.
//! - `openai`, `anthropic`: each provider's request body and stream decoder.

mod anthropic;
mod call;
pub mod error;
mod openai;
pub mod retry;
mod stream;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::ai::model::ModelRequest;
use crate::secret::SecretBytes;

pub use error::ProviderError;
pub use retry::RetryPolicy;
pub use stream::ModelStream;

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions, and the servers compatible with it (Ollama, llama.cpp, vLLM).
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

impl ProviderKind {
    /// The name used in settings, in `katachi ai key set <name>` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which provider a workspace uses, and its model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    /// The wire protocol.
    pub kind: ProviderKind,
    /// The API's base URL: `https://api.openai.com/v1` (the path before `/chat/completions`),
    /// `https://api.anthropic.com` (before `/v1/messages`), or a local server's.
    pub base_url: url::Url,
    /// The model's name at that provider.
    pub model: String,
    /// Most tokens of one answer.
    pub max_tokens: u32,
    /// The model's context window in tokens (when to compact the conversation).
    pub context_tokens: u32,
}

impl ProviderConfig {
    /// The defaults of a provider: its public API, a current model, its window.
    pub fn default_for(kind: ProviderKind) -> Self {
        let (base, model, context_tokens) = match kind {
            ProviderKind::OpenAi => ("https://api.openai.com/v1", "gpt-4.1", 1_000_000),
            ProviderKind::Anthropic => ("https://api.anthropic.com", "claude-sonnet-4-5", 200_000),
        };
        Self {
            kind,
            base_url: parse_static_url(base),
            model: model.to_owned(),
            max_tokens: 8192,
            context_tokens,
        }
    }
}

fn parse_static_url(text: &str) -> url::Url {
    match url::Url::parse(text) {
        Ok(url) => url,
        // the defaults above are constant, valid URLs (tested)
        Err(e) => unreachable!("default provider URL {text}: {e}"),
    }
}

/// How the HTTP calls are made.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// When failed calls are tried again.
    pub retry: RetryPolicy,
    /// Longest wait for a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// Longest silence while reading (headers or the next piece of the stream) before the call
    /// is given up: long enough for a model that thinks before it writes.
    pub read_timeout: Duration,
    /// An extra trusted root certificate (PEM), for a local server with its own CA.
    pub extra_root_pem: Option<String>,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
            extra_root_pem: None,
        }
    }
}

/// A provider client: one configuration, one key, one connection pool.
pub struct Provider {
    config: ProviderConfig,
    api_key: Option<SecretBytes>,
    options: ProviderOptions,
    client: reqwest::Client,
    bytes_sent: AtomicU64,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the key is only said to be there, never shown
        f.debug_struct("Provider")
            .field("config", &self.config)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A client for `config`, sending `api_key` (from the vault's API-key store).
    ///
    /// The key is required for Anthropic and for OpenAI's own API (`api.openai.com`); a local
    /// OpenAI-compatible server may run without one.
    ///
    /// # Errors
    /// [`ProviderError::BadBaseUrl`] (plain `http://` to a host that is not loopback, or not a
    /// base URL), [`ProviderError::NoApiKey`], [`ProviderError::ApiKeyUnusable`],
    /// [`ProviderError::Setup`].
    pub fn new(
        config: ProviderConfig,
        api_key: Option<SecretBytes>,
        options: ProviderOptions,
    ) -> Result<Self, ProviderError> {
        check_base_url(&config)?;
        let api_key = api_key.filter(|key| !key.is_empty());
        let needs_key = match config.kind {
            ProviderKind::Anthropic => true,
            ProviderKind::OpenAi => config.base_url.host_str() == Some("api.openai.com"),
        };
        if needs_key && api_key.is_none() {
            return Err(ProviderError::NoApiKey {
                provider: config.kind,
            });
        }
        if let Some(key) = &api_key {
            // the key goes into a header: refuse line breaks and control bytes up front
            if HeaderValue::from_bytes(key.expose()).is_err() {
                return Err(ProviderError::ApiKeyUnusable {
                    provider: config.kind,
                });
            }
        }
        let client = build_client(&config, &options)?;
        Ok(Self {
            config,
            api_key,
            options,
            client,
            bytes_sent: AtomicU64::new(0),
        })
    }

    /// The configuration this client calls.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// Bytes of request bodies this client has sent so far, every attempt counted, including
    /// calls that failed (what left the machine, for the egress ledger).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// Sends `request` and returns its streamed answer. An empty `request.model` means the
    /// configured model; `request.max_tokens` 0 means the configured `max_tokens`.
    ///
    /// # Errors
    /// Any [`ProviderError`] from before the answer started; errors after that come from the
    /// stream.
    pub async fn stream(&self, request: &ModelRequest) -> Result<ModelStream, ProviderError> {
        let mut request = request.clone();
        if request.model.is_empty() {
            request.model.clone_from(&self.config.model);
        }
        if request.max_tokens == 0 {
            request.max_tokens = self.config.max_tokens;
        }
        let (path, body) = match self.config.kind {
            ProviderKind::OpenAi => (
                "chat/completions",
                openai::request_body(
                    &request,
                    openai::TokenLimitField::for_base_url(&self.config.base_url),
                ),
            ),
            ProviderKind::Anthropic => ("v1/messages", anthropic::request_body(&request)),
        };
        let url = format!(
            "{}/{path}",
            self.config.base_url.as_str().trim_end_matches('/')
        );
        let body = serde_json::to_vec(&body).map_err(|e| ProviderError::Setup {
            provider: self.config.kind,
            reason: format!("the request could not be encoded: {e}"),
        })?;
        let sent = call::send_with_retries(self, &url, self.headers()?, body).await?;
        Ok(match self.config.kind {
            ProviderKind::OpenAi => stream::decode_response(
                sent.response,
                openai::OpenAiDecoder::default(),
                self.config.kind,
                sent.request_bytes,
            ),
            ProviderKind::Anthropic => stream::decode_response(
                sent.response,
                anthropic::AnthropicDecoder::default(),
                self.config.kind,
                sent.request_bytes,
            ),
        })
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let unusable = || ProviderError::ApiKeyUnusable {
            provider: self.config.kind,
        };
        match self.config.kind {
            ProviderKind::OpenAi => {
                if let Some(key) = &self.api_key {
                    // exposed to build the one header the provider authenticates
                    let mut bearer = zeroize::Zeroizing::new(b"Bearer ".to_vec());
                    bearer.extend_from_slice(key.expose());
                    let mut value = HeaderValue::from_bytes(&bearer).map_err(|_| unusable())?;
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                }
            }
            ProviderKind::Anthropic => {
                if let Some(key) = &self.api_key {
                    // exposed to build the one header the provider authenticates
                    let mut value =
                        HeaderValue::from_bytes(key.expose()).map_err(|_| unusable())?;
                    value.set_sensitive(true);
                    headers.insert("x-api-key", value);
                }
                headers.insert(
                    "anthropic-version",
                    HeaderValue::from_static(anthropic::API_VERSION),
                );
            }
        }
        Ok(headers)
    }

    pub(crate) fn key_bytes(&self) -> Option<&[u8]> {
        // only to scrub the key out of provider messages
        self.api_key.as_ref().map(SecretBytes::expose)
    }

    pub(crate) fn options(&self) -> &ProviderOptions {
        &self.options
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn count_sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Refuses a base URL that would send the key or the code in clear over a network.
fn check_base_url(config: &ProviderConfig) -> Result<(), ProviderError> {
    let url = &config.base_url;
    let refuse = |reason| ProviderError::BadBaseUrl {
        provider: config.kind,
        url: url_without_secrets(url),
        reason,
    };
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(refuse("it is not an http(s) base URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(
            "it holds credentials; set the key with `katachi ai key set`",
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url) => Ok(()),
        "http" => Err(refuse(
            "plain http is allowed only to this machine (localhost, 127.0.0.1, ::1); use https",
        )),
        _ => Err(refuse("only https (or http to this machine) is supported")),
    }
}

/// The URL for a message: without user, password, query or fragment (where keys get pasted).
fn url_without_secrets(url: &url::Url) -> String {
    let mut shown = url.clone();
    // both only fail for URLs that cannot be a base, which have no credentials to hide
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn build_client(
    config: &ProviderConfig,
    options: &ProviderOptions,
) -> Result<reqwest::Client, ProviderError> {
    let setup = |reason: String| ProviderError::Setup {
        provider: config.kind,
        reason,
    };
    let mut builder = reqwest::Client::builder()
        // a redirect could carry the key to another host
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .user_agent(concat!("katachi-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &options.extra_root_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| setup(format!("the extra root certificate is not usable: {e}")))?;
        // text without a PEM certificate parses as an empty bundle: refuse it, or TLS would
        // fail later with a less helpful message
        if certificates.is_empty() {
            return Err(setup(
                "the extra root certificate holds no PEM certificate".to_owned(),
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| setup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: ProviderKind, base: &str) -> ProviderConfig {
        ProviderConfig {
            base_url: url::Url::parse(base).unwrap(),
            ..ProviderConfig::default_for(kind)
        }
    }

    #[test]
    fn plain_http_is_only_for_loopback_hosts() {
        for base in [
            "http://127.0.0.1:11434/v1",
            "http://localhost:8080/v1",
            "http://[::1]:1/v1",
        ] {
            let made = Provider::new(
                config(ProviderKind::OpenAi, base),
                None,
                ProviderOptions::default(),
            );
            assert!(made.is_ok(), "{base}: {made:?}");
        }
        let err = Provider::new(
            config(ProviderKind::OpenAi, "http://192.168.1.5:11434/v1"),
            None,
            ProviderOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "ai.bad_base_url");
    }

    #[test]
    fn a_refused_base_url_is_shown_without_its_credentials() {
        let err = Provider::new(
            config(
                ProviderKind::OpenAi,
                "http://user:hunter2@10.0.0.2:8000/v1?key=abc123",
            ),
            None,
            ProviderOptions::default(),
        )
        .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("abc123"),
            "{shown}"
        );
        assert!(shown.contains("10.0.0.2:8000/v1"), "{shown}");
    }

    #[test]
    fn an_unusable_extra_root_certificate_is_a_setup_error() {
        let options = ProviderOptions {
            extra_root_pem: Some("not a certificate".into()),
            ..ProviderOptions::default()
        };
        let err = Provider::new(
            config(ProviderKind::OpenAi, "http://127.0.0.1:1/v1"),
            None,
            options,
        )
        .unwrap_err();
        assert_eq!(err.code(), "ai.provider_setup");
    }

    #[test]
    fn a_key_is_required_where_the_provider_needs_one() {
        for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            let err = Provider::new(
                ProviderConfig::default_for(kind),
                None,
                ProviderOptions::default(),
            )
            .unwrap_err();
            assert_eq!(err.code(), "ai.no_api_key");
        }
        let err = Provider::new(
            ProviderConfig::default_for(ProviderKind::Anthropic),
            Some(SecretBytes::new(b"sk-ant\r\nx".to_vec())),
            ProviderOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "ai.api_key_unusable");
    }

    #[test]
    fn provider_kinds_serialise_by_their_settings_names() {
        assert_eq!(
            serde_json::to_value(ProviderKind::OpenAi).unwrap(),
            "openai"
        );
        assert_eq!(
            serde_json::to_value(ProviderKind::Anthropic).unwrap(),
            "anthropic"
        );
        let back: ProviderConfig = serde_json::from_value(
            serde_json::to_value(ProviderConfig::default_for(ProviderKind::OpenAi)).unwrap(),
        )
        .unwrap();
        assert_eq!(back.base_url.as_str(), "https://api.openai.com/v1");
    }
}
