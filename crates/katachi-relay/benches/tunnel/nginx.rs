//! The peer of the streaming figure (issue 14): the same file through Debian's nginx as a TLS 1.3
//! reverse proxy with both legs encrypted — browser ⇄ nginx (TLS 1.3, HTTP/2) ⇄ origin (TLS 1.3,
//! HTTP/1.1) — against relay + tunnel (browser ⇄ relay TLS 1.3, relay ⇄ agent TLS 1.3 tunnel),
//! alternating downloads in the same run. The origin serves the same audited agent router as the
//! tunnel's agent, on a single-threaded runtime of its own (as the agent runs). Target: the tunnel
//! moves at least as much per second as nginx.
//!
//! Skipped, saying so, when `/usr/sbin/nginx` is missing (`scripts/install-deps.sh` installs it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::load::{median, runtime_thread, ClientThread};

/// nginx's binary.
const NGINX: &str = "/usr/sbin/nginx";

/// A test CA and a certificate for localhost / 127.0.0.1 signed by it (PEM).
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "katachi bench CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Serves `api` over TLS 1.3 (HTTP/1.1 and HTTP/2 by ALPN) on a thread of its own; its address.
fn serve_tls_origin(api: Router, pki: &Pki) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime_thread("origin", move |rt| {
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(api.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    addr
}

/// nginx as a TLS 1.3 reverse proxy from `front` to `origin` (TLS 1.3), in `dir`.
fn start_nginx(dir: &Path, front: u16, origin: SocketAddr, pki: &Pki) -> tokio::process::Child {
    for (name, text) in [
        ("cert.pem", &pki.cert_pem),
        ("key.pem", &pki.key_pem),
        ("ca.pem", &pki.ca_pem),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let d = dir.display();
    let config = format!(
        "worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  \
         fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  \
         upstream origin {{ server {origin}; keepalive 8; }}\n  \
         server {{\n    listen 127.0.0.1:{front} ssl http2;\n    ssl_certificate {d}/cert.pem;\n    \
         ssl_certificate_key {d}/key.pem;\n    ssl_protocols TLSv1.3;\n    \
         location / {{\n      proxy_pass https://origin;\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      proxy_ssl_protocols TLSv1.3;\n      \
         proxy_ssl_server_name on;\n      proxy_ssl_name localhost;\n      \
         proxy_ssl_verify on;\n      proxy_ssl_trusted_certificate {d}/ca.pem;\n      \
         proxy_ssl_session_reuse on;\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    tokio::process::Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Runs `rounds` alternating downloads of `file` (`size` bytes): relay + tunnel on `tunnel`
/// (`tunnel_url`) and nginx in front of a TLS origin serving `origin_api`; prints the medians.
pub async fn compare(
    tunnel: &ClientThread,
    tunnel_url: &str,
    origin_api: Router,
    file_path: &str,
    size: u64,
    rounds: usize,
) {
    println!("\n== the same file through nginx as a TLS 1.3 reverse proxy, both legs encrypted (alternating with the tunnel) ==");
    if !Path::new(NGINX).is_file() {
        println!("skipped: {NGINX} is missing (scripts/install-deps.sh installs it)");
        return;
    }
    let pki = pki();
    let origin = serve_tls_origin(origin_api, &pki);
    let dir = tempfile::tempdir().unwrap();
    let front = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _nginx = start_nginx(dir.path(), front, origin, &pki);
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", front)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        up,
        "nginx did not listen: {}",
        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
    );
    let origin_url = format!("https://localhost:{front}");
    let nginx = ClientThread::start(
        crate::agent::direct_client(),
        crate::browser::H2Browser::new(&origin_url, &pki.ca_pem, String::new()),
    );
    let nginx_url = format!("{origin_url}{file_path}");
    // Warm: the page cache, every connection.
    let _ = nginx.download(true, &nginx_url, size).await;
    let _ = tunnel.download(true, tunnel_url, size).await;
    let (mut n, mut t) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        n.push(nginx.download(true, &nginx_url, size).await);
        t.push(tunnel.download(true, tunnel_url, size).await);
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("nginx (TLS 1.3 both legs)   {} MiB/s", show(&n));
    println!("relay + tunnel              {} MiB/s", show(&t));
    let mut ratios: Vec<f64> = t.iter().zip(&n).map(|(t, n)| t / n).collect();
    let (nm, tm) = (median(&mut n), median(&mut t));
    println!(
        "median: nginx {nm:.0} MiB/s, tunnel {tm:.0} MiB/s = {:.2} × nginx (target ≥ 1: {}); median of the pairs' ratios {:.2} ×",
        tm / nm,
        if tm >= nm { "met" } else { "NOT met" },
        median(&mut ratios)
    );
}
