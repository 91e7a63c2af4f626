//! The relay speaks TLS 1.3 only: TLS 1.2 and plaintext clients are refused at the handshake.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::TestRelay;

fn client_config(
    relay: &TestRelay,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&relay.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

fn port(relay: &TestRelay) -> u16 {
    url::Url::parse(&relay.url).unwrap().port().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_3_handshake_succeeds_with_the_pinned_local_ca_and_offers_h2() {
    let relay = TestRelay::start().await;
    let tcp = TcpStream::connect(("127.0.0.1", port(&relay)))
        .await
        .unwrap();
    let conn = tokio_rustls::TlsConnector::from(client_config(&relay, &[&rustls::version::TLS13]));
    let tls = conn
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_clients_are_refused() {
    let relay = TestRelay::start().await;
    let tcp = TcpStream::connect(("127.0.0.1", port(&relay)))
        .await
        .unwrap();
    let conn = tokio_rustls::TlsConnector::from(client_config(&relay, &[&rustls::version::TLS12]));
    let err = conn
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("protocol") || err.to_string().contains("alert"),
        "{err}"
    );
    // …and the relay keeps serving TLS 1.3 clients.
    assert_eq!(
        relay
            .client()
            .get(relay.at("/login"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_http_gets_no_http_answer() {
    let relay = TestRelay::start().await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port(&relay)))
        .await
        .unwrap();
    tcp.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tcp.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "connection must be closed, not left hanging");
    assert!(
        !String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"),
        "no page over plaintext"
    );
}
