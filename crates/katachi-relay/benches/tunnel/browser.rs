//! A browser-like HTTP/2 client for the streaming figure: what Chrome's network service does with
//! one connection to the relay, not what a general-purpose client library does. TLS 1.3 with the
//! relay's CA, HTTP/2 by ALPN with Chrome's settings (16 KiB frames, 6 MiB stream window, 15 MiB
//! connection window), socket reads of up to 64 KiB (rustls alone asks for 4 KiB per read, which
//! no browser does). Its TLS is aws-lc, the BoringSSL family Chrome's own TLS comes from. Used on
//! the client thread only (see `load::ClientThread`).

use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use katachi_proto::transport::ReadAhead;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// Chrome's HTTP/2 flow-control windows.
const STREAM_WINDOW: u32 = 6 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 15 * 1024 * 1024;

/// One HTTP/2 connection to the relay, opened on first use.
pub struct H2Browser {
    origin: reqwest::Url,
    cookie: String,
    tls: tokio_rustls::TlsConnector,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl H2Browser {
    /// A browser for `origin` (the relay), trusting `ca_pem`, signed in with `cookie`.
    pub fn new(origin: &str, ca_pem: &str, cookie: String) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self {
            origin: reqwest::Url::parse(origin).unwrap(),
            cookie,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            sender: None,
        }
    }

    async fn sender(&mut self) -> &mut SendRequest<Empty<Bytes>> {
        if self.sender.is_none() {
            let host = self.origin.host_str().unwrap().to_owned();
            let port = self.origin.port_or_known_default().unwrap();
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .unwrap();
            tcp.set_nodelay(true).unwrap();
            let name = ServerName::try_from(host).unwrap();
            let tls = self.tls.connect(name, ReadAhead::new(tcp)).await.unwrap();
            let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW);
            if let Some(size) = std::env::var("KATACHI_BENCH_BROWSER_FRAME")
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
            {
                builder.max_frame_size(size);
            }
            let (sender, conn) = builder.handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        self.sender.as_mut().unwrap()
    }

    /// Downloads `url` (on the relay), expecting exactly `size` bytes; MiB/s.
    pub async fn download(&mut self, url: &str, size: u64) -> f64 {
        let start = Instant::now();
        let request = hyper::Request::get(url)
            .header(hyper::header::COOKIE, &self.cookie)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let sender = self.sender().await;
        sender.ready().await.unwrap();
        let mut response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut got = 0u64;
        while let Some(frame) = response.body_mut().frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                got += data.len() as u64;
            }
        }
        assert_eq!(got, size, "the download was cut short");
        size as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64()
    }
}
