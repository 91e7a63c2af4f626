//! The HTTPS client every call to the relay goes through, and the relay's validated base URL.
//!
//! # Guarantees
//! - rustls only (no OpenSSL, no native-tls), configured by [`crate::relay_link::tls`] like every agent
//!   connection: **TLS 1.3 only**, and the relay's CA, when given, as the **only** trust root
//!   (pinning).
//! - `https://` only, no redirects followed (a signed request is never replayed to another URL).
//!
//! It does not sign anything; see [`crate::signing`].

use std::time::Duration;

use crate::relay_link::tls::{relay_tls_config, Alpn, RelayTlsError};

/// How long to wait for the TCP + TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in total.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the relay's URL or the HTTPS client is not usable.
#[derive(Debug, thiserror::Error)]
pub enum RelayHttpError {
    /// The relay URL does not parse, or carries a query, fragment or user info.
    #[error("relay URL {url:?} is not usable: {reason}; give it as https://host[:port]")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The relay URL is not `https://`: the relay serves HTTPS only and credentials never travel in
    /// clear.
    #[error("relay URL {url:?} is not https://; the relay serves HTTPS only")]
    NotHttps {
        /// What was given.
        url: String,
    },
    /// The CA given for pinning holds no usable PEM certificate.
    #[error(
        "the relay CA is not a PEM certificate ({reason}); pass the relay's tls/ca.pem with --ca"
    )]
    InvalidCa {
        /// What the parser said.
        reason: String,
    },
    /// The TLS configuration could not be built (should not happen: TLS 1.3 is always built in).
    #[error("cannot set up TLS for the HTTPS client: {0}")]
    Tls(String),
    /// The HTTPS client could not be set up (should not happen with a valid TLS configuration).
    #[error("cannot set up the HTTPS client: {0}")]
    Build(#[source] reqwest::Error),
}

impl RelayHttpError {
    /// The stable code of this error (`relay.invalid_url`, `relay.invalid_ca`, `relay.tls`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } | Self::NotHttps { .. } => "relay.invalid_url",
            Self::InvalidCa { .. } => "relay.invalid_ca",
            Self::Tls(_) | Self::Build(_) => "relay.tls",
        }
    }
}

/// A relay's base URL: `https://`, no query or fragment, no trailing slash.
///
/// Two spellings of the same relay (`https://r.example/` and `https://r.example`) compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl(String);

impl RelayUrl {
    /// Validates and normalises a relay URL.
    ///
    /// # Errors
    /// [`RelayHttpError::NotHttps`] or [`RelayHttpError::InvalidUrl`].
    pub fn parse(input: &str) -> Result<Self, RelayHttpError> {
        let invalid = |reason: &str| RelayHttpError::InvalidUrl {
            url: input.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(input.trim()).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "https" {
            return Err(RelayHttpError::NotHttps {
                url: input.to_owned(),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("user info is not allowed"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("query and fragment are not allowed"));
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// The normalised URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The absolute URL of `path` (which starts with `/`) on this relay.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// True when `other` has the same scheme, host and port as the relay: the only pages the agent
    /// opens in a browser.
    pub fn is_same_origin(&self, other: &str) -> bool {
        match (url::Url::parse(&self.0), url::Url::parse(other)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }
}

impl std::fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds the HTTPS client for the relay: the shared TLS configuration
/// ([`relay_tls_config`]: TLS 1.3 only, `ca_pem` as the only root when given), no redirects.
///
/// # Errors
/// [`RelayHttpError::InvalidCa`] when `ca_pem` holds no usable certificate,
/// [`RelayHttpError::Tls`], [`RelayHttpError::Build`].
pub fn relay_http_client(ca_pem: Option<&str>) -> Result<reqwest::Client, RelayHttpError> {
    let tls = relay_tls_config(ca_pem, Alpn::H2OrHttp1).map_err(|e| match e {
        RelayTlsError::InvalidCa(reason) => RelayHttpError::InvalidCa { reason },
        RelayTlsError::Build(reason) => RelayHttpError::Tls(reason),
    })?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("katachi-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(RelayHttpError::Build)
}

/// An error and its sources on one line (`a: b: c`), for messages that must say *why* a connection
/// failed (refused, certificate not trusted, protocol version) without a debug dump.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        // reqwest and hyper repeat their inner message; keep each part once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_are_normalised_and_must_be_https() {
        let a = RelayUrl::parse("https://relay.example:8443/").unwrap();
        let b = RelayUrl::parse(" https://relay.example:8443 ").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "https://relay.example:8443");
        assert_eq!(
            a.endpoint("/oauth/token"),
            "https://relay.example:8443/oauth/token"
        );
        assert!(matches!(
            RelayUrl::parse("http://relay.example"),
            Err(RelayHttpError::NotHttps { .. })
        ));
        for bad in [
            "relay.example",
            "https://u:p@relay.example",
            "https://relay.example/?x=1",
            "https://relay.example/#f",
        ] {
            assert!(
                matches!(
                    RelayUrl::parse(bad),
                    Err(RelayHttpError::InvalidUrl { .. } | RelayHttpError::NotHttps { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_pages_of_the_relay_itself_are_same_origin() {
        let r = RelayUrl::parse("https://localhost:8443").unwrap();
        assert!(r.is_same_origin("https://localhost:8443/device?user_code=ABCD-EFGH"));
        assert!(!r.is_same_origin("https://localhost:9443/device"));
        assert!(!r.is_same_origin("http://localhost:8443/device"));
        assert!(!r.is_same_origin("file:///etc/passwd"));
        assert!(!r.is_same_origin("https://evil.example/device"));
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused() {
        assert!(matches!(
            relay_http_client(Some("not a certificate")),
            Err(RelayHttpError::InvalidCa { .. })
        ));
        assert!(matches!(
            relay_http_client(Some(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            )),
            Err(RelayHttpError::InvalidCa { .. })
        ));
    }

    #[test]
    fn a_client_builds_with_and_without_a_pinned_ca() {
        assert!(relay_http_client(None).is_ok());
    }
}
