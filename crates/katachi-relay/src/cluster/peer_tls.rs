//! TLS between relay instances: mutual TLS 1.3 where each side's certificate is pinned through the
//! shared database.
//!
//! # Contract
//! - Each instance makes a fresh key pair and self-signed certificate at start ([`PeerIdentity`])
//!   and publishes the certificate's SHA-256 with its internal address (`relay_instances`).
//! - Calling another instance, the caller accepts only the certificate whose fingerprint that
//!   instance published ([`client_config`]) and presents its own.
//! - The internal listener requires a client certificate and a valid TLS 1.3 signature with it
//!   ([`server_config`]); whether the certificate belongs to an alive instance is checked against
//!   the database right after the handshake, before any request is read (`internal.rs`).
//! - So only a process that can write the relay's database — which already holds everything — can
//!   join; anyone else who reaches the port is refused during or right after the handshake.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// The name in every internal certificate (and the name callers ask for).
pub const PEER_NAME: &str = "katachi-relay-internal";

/// This instance's key pair and certificate for the internal link.
pub struct PeerIdentity {
    /// The certificate (DER).
    cert: CertificateDer<'static>,
    /// The private key (PKCS#8 DER).
    key: PrivatePkcs8KeyDer<'static>,
}

impl PeerIdentity {
    /// A fresh key pair and self-signed certificate.
    ///
    /// # Errors
    /// Key or certificate generation failed.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(vec![PEER_NAME.to_owned()])?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// Hex SHA-256 of the certificate, as published in the database.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

impl std::fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of a certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// The internal listener's config: TLS 1.3, HTTP/2, a client certificate required.
///
/// # Errors
/// rustls refused the generated material.
pub fn server_config(me: &PeerIdentity) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = crate::tls::provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyPeer(provider)))
        .with_single_cert(vec![me.cert.clone()], me.key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A caller's config for the instance whose certificate has fingerprint `expected`.
///
/// # Errors
/// rustls refused the generated material.
pub fn client_config(
    me: &PeerIdentity,
    expected: &str,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = crate::tls::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedPeer {
            expected: expected.to_ascii_lowercase(),
            provider,
        }))
        .with_client_auth_cert(vec![me.cert.clone()], me.key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The server name callers ask for.
///
/// # Errors
/// Never in practice: [`PEER_NAME`] is a valid DNS name.
pub fn server_name() -> Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    ServerName::try_from(PEER_NAME)
}

/// Client side: only the published certificate of the instance being called.
#[derive(Debug)]
struct PinnedPeer {
    /// Hex SHA-256 it must have.
    expected: String,
    /// Signature verification.
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Server side: any client certificate whose key signs the handshake; which instance it belongs
/// to is looked up in the database after the handshake.
#[derive(Debug)]
struct AnyPeer(Arc<CryptoProvider>);

impl ClientCertVerifier for AnyPeer {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The internal link is TLS 1.3 only.
fn no_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

/// Checks that the peer's key signed the TLS 1.3 handshake (rustls' own verification).
fn tls13_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}
