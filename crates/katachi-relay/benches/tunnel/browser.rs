//! A browser-like HTTP/2 client for the streaming figure: what Chrome's network service does with
//! one connection to the relay, not what a general-purpose client library does. TLS 1.3 with the
//! relay's CA, HTTP/2 by ALPN with Chrome's settings (16 KiB frames, 6 MiB stream window, 15 MiB
//! connection window), socket reads of up to 64 KiB (rustls alone asks for 4 KiB per read, which
//! no browser does). Its TLS is aws-lc, the BoringSSL family Chrome's own TLS comes from. Used on
//! the client thread (see `load::ClientThread`), and by the `fleet` part's browsers on theirs.

use std::sync::Arc;
use std::time::{Duration, Instant};

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

    async fn sender(&mut self) -> Result<&mut SendRequest<Empty<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let host = self.origin.host_str().ok_or("no host")?.to_owned();
            let port = self.origin.port_or_known_default().ok_or("no port")?;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
            let tls = self
                .tls
                .connect(name, ReadAhead::new(tcp))
                .await
                .map_err(|e| format!("TLS: {e}"))?;
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
            let (sender, conn) = builder
                .handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())
    }

    /// Drops the connection (a request on it timed out): the next call opens a new one.
    pub fn disconnect(&mut self) {
        self.sender = None;
    }

    /// `GET url` (on the relay) over the connection (opened again if it broke), reading the whole
    /// body as it streams, at most `pace` bytes a second when given (a reader that slow: HTTP/2
    /// flow control holds the sender back). A failure (connection, status other than 200, body
    /// cut) is an `Err` naming it; the next call opens a new connection if this one is gone.
    pub async fn fetch(&mut self, url: &str, pace: Option<f64>) -> Result<Fetched, String> {
        let start = Instant::now();
        let request = hyper::Request::get(url)
            .header(hyper::header::COOKIE, &self.cookie)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let sender = self.sender().await?;
        sender
            .ready()
            .await
            .map_err(|e| format!("not ready: {e}"))?;
        let mut response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let headers = start.elapsed();
        let status = response.status().as_u16();
        let mut first_byte = None;
        let mut bytes = 0u64;
        while let Some(frame) = response.body_mut().frame().await {
            let frame = frame.map_err(|e| format!("body after {bytes} bytes: {e}"))?;
            if let Ok(data) = frame.into_data() {
                if first_byte.is_none() && !data.is_empty() {
                    first_byte = Some(start.elapsed());
                }
                bytes += data.len() as u64;
            }
            if let Some(rate) = pace {
                let due = Duration::from_secs_f64(bytes as f64 / rate.max(1.0));
                if let Some(early) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(early).await;
                }
            }
        }
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        let total = start.elapsed();
        Ok(Fetched {
            headers,
            first_byte: first_byte.unwrap_or(total),
            total,
            bytes,
        })
    }

    /// Downloads `url` (on the relay), expecting exactly `size` bytes; MiB/s.
    pub async fn download(&mut self, url: &str, size: u64) -> f64 {
        let fetched = self.fetch(url, None).await.unwrap();
        assert_eq!(fetched.bytes, size, "the download was cut short");
        size as f64 / (1024.0 * 1024.0) / fetched.total.as_secs_f64()
    }
}

/// One completed `GET` of [`H2Browser::fetch`].
pub struct Fetched {
    /// From sending the request to the response's headers.
    pub headers: Duration,
    /// From sending the request to the first byte of the body.
    pub first_byte: Duration,
    /// From sending the request to the end of the body.
    pub total: Duration,
    /// Body bytes received.
    pub bytes: u64,
}
