//! The floor under the streaming figure: what the bytes of a download cost on this machine with
//! no HTTP at all, only the transports the issue requires. Three shapes move the same file, each
//! from a sender thread that reads it in 256 KiB chunks to a receiver thread that reads 64 KiB at
//! a time (blocking sockets, no runtime, no framing):
//!
//! - **plain**: sender → loopback TCP → receiver (what the direct path's transport costs);
//! - **one TLS hop**: the same over rustls TLS 1.3 (AES-GCM both ends);
//! - **TLS relay**: sender → TLS 1.3 → a relay thread that decrypts and re-encrypts into a second
//!   TLS 1.3 connection → receiver: the relay + tunnel path with its HTTP taken away.
//!
//! "TLS relay / plain" is the best ratio any TLS-terminating relay could reach here, measured in
//! the same run as the real figure.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use crate::load::median;
use crate::relay_process::cpu_seconds;

const SEND_CHUNK: usize = 256 * 1024;
const RECV_CHUNK: usize = 64 * 1024;

struct Tls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn tls() -> Tls {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    // no session tickets: a sender that closes with a ticket unread would reset the connection
    server.send_tls13_tickets = 0;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Tls {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// A connected loopback pair: (the dialling end, the accepted end).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dialled = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    dialled.set_nodelay(true).unwrap();
    accepted.set_nodelay(true).unwrap();
    (dialled, accepted)
}

/// A socket read 64 KiB at a time under TLS (rustls asks for 4 KiB per read), as the relay's
/// `ReadAhead` does; writes go straight to the socket.
struct Socket {
    read: BufReader<TcpStream>,
    write: TcpStream,
}

impl Socket {
    fn new(tcp: TcpStream) -> Self {
        Self {
            write: tcp.try_clone().unwrap(),
            read: BufReader::with_capacity(RECV_CHUNK, tcp),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read.read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.write.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write.flush()
    }
}

fn client_tls(tls: &Tls, tcp: TcpStream) -> StreamOwned<ClientConnection, Socket> {
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(
        ClientConnection::new(tls.client.clone(), name).unwrap(),
        Socket::new(tcp),
    )
}

fn server_tls(tls: &Tls, tcp: TcpStream) -> StreamOwned<ServerConnection, Socket> {
    StreamOwned::new(
        ServerConnection::new(tls.server.clone()).unwrap(),
        Socket::new(tcp),
    )
}

/// Writes `file` to `out`, then closes it (TLS close_notify where there is TLS).
fn send(file: &Path, mut out: impl Write) {
    let mut f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0u8; SEND_CHUNK];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).unwrap();
    }
    out.flush().unwrap();
}

/// Writes `file` over a TLS client connection on `tcp`, then closes it with close_notify.
fn send_over_tls(tls: &Tls, file: &Path, tcp: TcpStream) {
    let mut out = client_tls(tls, tcp);
    send(file, &mut out);
    out.conn.send_close_notify();
    out.flush().unwrap();
}

/// Reads `input` to its end; the byte count. A peer that closes without close_notify ends it too.
fn receive(mut input: impl Read) -> u64 {
    let mut buf = vec![0u8; RECV_CHUNK];
    let mut got = 0u64;
    loop {
        match input.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return got,
            Err(e) => panic!("receive: {e}"),
        }
    }
}

/// One transfer of `file` (`size` bytes) in `shape`; MiB/s.
fn transfer(shape: Shape, tls: &Tls, file: &Path, size: u64) -> f64 {
    let start = Instant::now();
    let got = std::thread::scope(|s| match shape {
        Shape::Plain => {
            let (tx, rx) = pair();
            s.spawn(move || send(file, tx));
            receive(rx)
        }
        Shape::OneTls => {
            let (tx, rx) = pair();
            s.spawn(move || send_over_tls(tls, file, tx));
            receive(server_tls(tls, rx))
        }
        Shape::TlsRelay => {
            let (agent, relay_in) = pair();
            let (browser, relay_out) = pair();
            s.spawn(move || send_over_tls(tls, file, agent));
            s.spawn(move || {
                let mut from_agent = server_tls(tls, relay_in);
                let mut to_browser = server_tls(tls, relay_out);
                let mut buf = vec![0u8; RECV_CHUNK];
                loop {
                    let n = match from_agent.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                        Err(e) => panic!("relay: {e}"),
                    };
                    if n == 0 {
                        break;
                    }
                    to_browser.write_all(&buf[..n]).unwrap();
                }
                to_browser.conn.send_close_notify();
                to_browser.flush().unwrap();
            });
            receive(client_tls(tls, browser))
        }
    });
    assert_eq!(got, size, "the transfer was cut short");
    size as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64()
}

#[derive(Clone, Copy)]
enum Shape {
    Plain,
    OneTls,
    TlsRelay,
}

/// Moves `file` (`size` bytes) 3 times in each shape, alternating; prints MiB/s, CPU seconds per
/// GiB, and the TLS relay's ratio to plain. Returns the TLS relay's median MiB/s.
pub fn run(file: &Path, size: u64) -> f64 {
    let tls = tls();
    let shapes = [
        ("plain TCP", Shape::Plain),
        ("one TLS 1.3 hop", Shape::OneTls),
        ("TLS 1.3 relay", Shape::TlsRelay),
    ];
    for (_, shape) in shapes {
        transfer(shape, &tls, file, size); // warm
    }
    let mut speeds = [Vec::new(), Vec::new(), Vec::new()];
    let mut cpu = [0.0f64; 3];
    for _ in 0..3 {
        for (i, (_, shape)) in shapes.iter().enumerate() {
            let c0 = cpu_seconds("self");
            speeds[i].push(transfer(*shape, &tls, file, size));
            cpu[i] += cpu_seconds("self") - c0;
        }
    }
    let gib = 3.0 * size as f64 / f64::from(1u32 << 30);
    let mut medians = [0.0f64; 3];
    for (i, (name, _)) in shapes.iter().enumerate() {
        medians[i] = median(&mut speeds[i]);
        println!(
            "{name:<18} {:>6.0} MiB/s (median of 3), {:.2} CPU-s/GiB",
            medians[i],
            cpu[i] / gib
        );
    }
    println!(
        "floor: a TLS relay with no HTTP moves {:.2} × what plain TCP moves on this machine",
        medians[2] / medians[0]
    );
    medians[2]
}
