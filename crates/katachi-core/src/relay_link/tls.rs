//! The one TLS client configuration every agent connection to the relay uses: the HTTPS calls
//! (device flow, heartbeats, events, unregister, through [`crate::relay_link::https`]) and the tunnel
//! ([`crate::tunnel`]).
//!
//! # Guarantees
//! - **TLS 1.3 only**: a relay offering TLS 1.2 or less fails the handshake.
//! - When the relay's CA is given (`katachi start --ca FILE`, kept with the credentials), it is the
//!   **only** trust root (pinning): a certificate from any other CA — even a publicly trusted one —
//!   is refused. Without it, the system's roots are used.
//! - One crypto provider for every connection: aws-lc on Linux and macOS, ring on Windows.
//!
//! It does not open connections; callers add only what is theirs (ALPN).

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RelayTlsError {
    /// The CA given for pinning holds no usable PEM certificate. Pass the relay's `tls/ca.pem`.
    #[error("the relay CA is not a usable PEM certificate: {0}")]
    InvalidCa(String),
    /// The TLS stack refused the settings (should not happen: TLS 1.3 is always built in).
    #[error("cannot set up TLS: {0}")]
    Build(String),
}

/// The application protocols the connection offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1` only: the tunnel's upgrade is an HTTP/1.1 mechanism.
    Http1,
    /// `h2` then `http/1.1`: the HTTPS client's ordinary calls.
    H2OrHttp1,
}

/// The TLS client configuration for a connection to the relay: TLS 1.3 only, the pinned CA as the
/// only root when `ca_pem` is given (else the system roots), offering `alpn`.
///
/// # Errors
/// [`RelayTlsError::InvalidCa`] when `ca_pem` holds no certificate or one that does not parse.
///
/// # Security
/// Pinning: the root store starts empty and receives only the given CA; system roots are loaded
/// only when no CA is pinned.
pub fn relay_tls_config(
    ca_pem: Option<&str>,
    alpn: Alpn,
) -> Result<rustls::ClientConfig, RelayTlsError> {
    let roots = match ca_pem {
        Some(pem) => pinned_roots(pem)?,
        None => system_roots(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(tls_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| RelayTlsError::Build(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = match alpn {
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::H2OrHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// The certificates of the pinned CA bundle as the only roots; at least one.
fn pinned_roots(pem: &str) -> Result<rustls::RootCertStore, RelayTlsError> {
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(RelayTlsError::InvalidCa(
            "no BEGIN CERTIFICATE block".to_owned(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| RelayTlsError::InvalidCa(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| RelayTlsError::InvalidCa(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(RelayTlsError::InvalidCa(
            "no certificate in the file".to_owned(),
        ));
    }
    Ok(roots)
}

/// The system's trust roots; one odd system certificate does not stop the others from being used.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// The crypto: aws-lc on Linux and macOS, ring on Windows (where aws-lc needs more C tooling than a
/// plain compiler). The tunnel's connection task encrypts everything it sends and is the busiest
/// thread of a download; aws-lc's AES-GCM is about twice ring's on current x86, and that thread's
/// CPU per GiB dropped by about 17 % (docs/PERFORMANCE.md, "Tunnel").
fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(unix)]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(unix))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_that_is_not_a_certificate_is_refused() {
        for bad in [
            "not a certificate",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(
                    relay_tls_config(Some(bad), Alpn::Http1),
                    Err(RelayTlsError::InvalidCa(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_connection_offers_its_own_alpn() {
        // TLS 1.3 only is proven over real sockets by the CLI suite's
        // `relay_client::a_server_offering_only_tls_1_2_is_refused`.
        let config = relay_tls_config(None, Alpn::H2OrHttp1).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let tunnel = relay_tls_config(None, Alpn::Http1).unwrap();
        assert_eq!(tunnel.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
