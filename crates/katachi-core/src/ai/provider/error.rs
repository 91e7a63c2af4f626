//! What can go wrong calling a model provider, each case with a stable `ai.*` code.
//!
//! # Security
//! No message here ever holds the API key: provider error bodies are cut to
//! [`MAX_PROVIDER_MESSAGE`] characters and scrubbed of the key and of anything shaped like one
//! ([`scrub_provider_message`]) before they are put in an error.

use std::time::Duration;

use super::ProviderKind;

/// The most characters of a provider's own error message kept in an error.
pub const MAX_PROVIDER_MESSAGE: usize = 300;

/// A provider call that failed. [`ProviderError::code`] is stable (shown to the browser and CLI).
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider needs an API key and none is stored: the user has not set one yet.
    #[error("no API key is set for {provider}; set it with `katachi ai key set {provider}`")]
    NoApiKey {
        /// The provider.
        provider: ProviderKind,
    },
    /// The stored key cannot be sent in an HTTP header (control characters, line breaks): it
    /// was pasted wrongly.
    #[error(
        "the API key for {provider} holds characters an HTTP header cannot carry; \
         set it again with `katachi ai key set {provider}`"
    )]
    ApiKeyUnusable {
        /// The provider.
        provider: ProviderKind,
    },
    /// The base URL is not usable: plain `http://` to a host that is not loopback (the key and
    /// the code would cross the network in clear), or a URL that cannot be a base.
    #[error("the base URL {url} for {provider} is not usable: {reason}")]
    BadBaseUrl {
        /// The provider.
        provider: ProviderKind,
        /// The URL as configured.
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The HTTP client could not be built (an unusable extra root certificate).
    #[error("the HTTP client for {provider} could not be set up: {reason}")]
    Setup {
        /// The provider.
        provider: ProviderKind,
        /// What failed.
        reason: String,
    },
    /// No connection could be made (DNS, refused, TLS, timeout), after every attempt.
    #[error("{provider} at {host} could not be reached after {attempts} attempt(s): {reason}")]
    Unreachable {
        /// The provider.
        provider: ProviderKind,
        /// The host called.
        host: String,
        /// Attempts made.
        attempts: u32,
        /// The last connection error.
        reason: String,
    },
    /// 401/403: the key was refused (wrong, revoked, or without access). Never retried.
    #[error(
        "the API key for {provider} was refused (HTTP {status}: {message}); \
         set it with `katachi ai key set {provider}`"
    )]
    Auth {
        /// The provider.
        provider: ProviderKind,
        /// 401 or 403.
        status: u16,
        /// The provider's message (scrubbed, truncated).
        message: String,
    },
    /// 429 after every attempt, or with a `Retry-After` longer than the retry policy waits.
    #[error("{provider} is rate limiting requests (HTTP {status}: {message}){hint}", hint = retry_hint(*.retry_after))]
    RateLimited {
        /// The provider.
        provider: ProviderKind,
        /// 429.
        status: u16,
        /// What the provider said to wait, when it said.
        retry_after: Option<Duration>,
        /// The provider's message (scrubbed, truncated).
        message: String,
    },
    /// 5xx (or 529 overloaded) after every attempt: the provider is failing.
    #[error("{provider} failed with HTTP {status} after {attempts} attempt(s): {message}{hint}", hint = retry_hint(*.retry_after))]
    Failed {
        /// The provider.
        provider: ProviderKind,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// What the provider said to wait, when it said.
        retry_after: Option<Duration>,
        /// The provider's message (scrubbed, truncated).
        message: String,
    },
    /// Any other 4xx (400 bad request, 404 unknown model, 413 too large): the request itself is
    /// wrong. Never retried.
    #[error("{provider} refused the request (HTTP {status}): {message}")]
    BadRequest {
        /// The provider.
        provider: ProviderKind,
        /// The status.
        status: u16,
        /// The provider's message (scrubbed, truncated).
        message: String,
    },
    /// The answer stream failed after it started: cut connection, read timeout, a frame that is
    /// not the protocol, or an error the provider reported in the stream (Anthropic
    /// `event: error`, an OpenAI error chunk).
    #[error("the answer stream from {provider} broke: {reason}")]
    StreamBroken {
        /// The provider.
        provider: ProviderKind,
        /// What broke.
        reason: String,
    },
}

impl ProviderError {
    /// The stable code of this error (`ai.*`), for the browser, the CLI and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoApiKey { .. } => "ai.no_api_key",
            Self::ApiKeyUnusable { .. } => "ai.api_key_unusable",
            Self::BadBaseUrl { .. } => "ai.bad_base_url",
            Self::Setup { .. } => "ai.provider_setup",
            Self::Unreachable { .. } => "ai.provider_unreachable",
            Self::Auth { .. } => "ai.provider_auth",
            Self::RateLimited { .. } => "ai.rate_limited",
            Self::Failed { .. } => "ai.provider_failed",
            Self::BadRequest { .. } => "ai.bad_request",
            Self::StreamBroken { .. } => "ai.stream_broken",
        }
    }
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) => {
            let wait = Duration::from_secs(wait.as_secs().max(1));
            format!("; try again in {}", humantime::format_duration(wait))
        }
        None => String::new(),
    }
}

/// A provider's message made safe to show: the key (and anything shaped like a key) replaced,
/// control characters dropped, cut to [`MAX_PROVIDER_MESSAGE`] characters.
pub(crate) fn scrub_provider_message(message: &str, key: Option<&[u8]>) -> String {
    let mut text = message.to_owned();
    if let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) {
        if !key.is_empty() {
            text = text.replace(key, "[redacted]");
        }
    }
    // providers echo parts of refused keys ("Incorrect API key provided: sk-abc…xyz")
    let words: Vec<String> = text
        .split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if bare.starts_with("sk-") && bare.len() >= 8 {
                "[redacted]".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect();
    let text = words.join(" ");
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_PROVIDER_MESSAGE)
        .collect();
    if text.chars().filter(|c| !c.is_control()).count() > MAX_PROVIDER_MESSAGE {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_messages_lose_the_key_and_key_shaped_words() {
        let scrubbed = scrub_provider_message(
            "Incorrect API key provided: sk-proj-abcd1234. Also my-secret-key here.",
            Some(b"my-secret-key"),
        );
        assert!(!scrubbed.contains("sk-proj"), "{scrubbed}");
        assert!(!scrubbed.contains("my-secret-key"), "{scrubbed}");
        assert!(scrubbed.starts_with("Incorrect API key provided: [redacted]"));
    }

    #[test]
    fn long_provider_messages_are_cut() {
        let scrubbed = scrub_provider_message(&"x".repeat(5000), None);
        assert_eq!(scrubbed.chars().count(), MAX_PROVIDER_MESSAGE + 1);
    }

    #[test]
    fn codes_are_in_the_ai_family() {
        let error = ProviderError::NoApiKey {
            provider: ProviderKind::Anthropic,
        };
        assert_eq!(error.code(), "ai.no_api_key");
        assert!(error.to_string().contains("katachi ai key set anthropic"));
    }
}
