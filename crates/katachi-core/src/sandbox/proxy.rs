//! The egress proxy: the only way out of a sandbox, an HTTP `CONNECT` proxy run by the agent that
//! lets through the allowed hosts and logs every attempt.
//!
//! # Design (Linux)
//! The command runs in a fresh network namespace with only a loopback interface, so the kernel has
//! no route out: that, not the proxy variables, is the egress boundary. The way in is a listening
//! socket that lives *inside* that namespace but is served by the agent outside it:
//! 1. before the launch, the agent makes a UNIX socketpair;
//! 2. in the child, right after `unshare`, the pre-exec code brings `lo` up, binds a TCP socket to
//!    `127.0.0.1:`[`PROXY_PORT`] in the new namespace, listens, and passes the listening descriptor
//!    to the agent over the socketpair (`SCM_RIGHTS`), then closes its own copy: nothing in the
//!    sandbox holds it, and Landlock denies every `bind`, so nothing can take the port over;
//! 3. the agent receives the descriptor and accepts on it with Tokio ([`EgressProxy`]). A socket
//!    keeps its namespace, so every accepted connection comes from inside the sandbox, while the
//!    agent's own connections to the allowed hosts leave from the host's namespace.
//!
//! Landlock allows TCP `connect` to [`PROXY_PORT`] only, and `HTTPS_PROXY`/`HTTP_PROXY` (both
//! cases) point at it. No forwarding process, no relay loop in a forked child, no port on the
//! host's loopback that other local processes could use: the listening socket is reachable only
//! from inside the run's namespace. Without namespaces (a weaker sandbox the user accepted), the
//! proxy listens on an ephemeral port of the host's loopback instead, and Landlock alone limits
//! `connect` to that port.
//!
//! # What each connection may do
//! `CONNECT host:port` is checked against the policy's patterns (see [`super::hosts`]) before any
//! DNS lookup; the agent then resolves the name itself, refuses loopback, private and link-local
//! answers unless allowed literally, connects to the checked address and relays bytes both ways.
//! Anything else (plain-`http` absolute-form requests, garbage) is refused: only tunnels go
//! through. Each attempt is logged with `tracing` (target `katachi::egress`) and kept in a
//! per-run list returned in [`super::RunOutcome::egress`].
//!
//! # Not covered
//! The proxy does not look inside the tunnel (TLS stays end to end) and does not limit bandwidth.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::denied::SandboxDenied;
use super::hosts::{
    check_destination, choose_address, parse_target_host, split_host_port, Host, HostPattern,
    Refusal,
};

/// The proxy's port inside the run's network namespace (any port works there: it is empty).
pub(crate) const PROXY_PORT: u16 = 3128;
/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Time for the client to send its head, for DNS, and for the upstream connect, each.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Attempts kept in a run's list; later ones are only counted (a looping command cannot fill memory).
const MAX_LOGGED: usize = 1000;

/// One connection attempt through the proxy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EgressAttempt {
    /// `host:port` as the command asked for it.
    pub target: String,
    /// Whether the policy let it through.
    pub allowed: bool,
    /// The address the proxy connected to (allowed attempts).
    pub address: Option<String>,
    /// Why it was refused (`not in the allowed hosts`).
    pub reason: Option<String>,
    /// The structured denial, saying how to allow it.
    pub denied: Option<SandboxDenied>,
    /// An allowed attempt that still failed (DNS, connect): what went wrong.
    pub error: Option<String>,
}

impl fmt::Display for EgressAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.denied, &self.error) {
            (Some(d), _) => write!(
                f,
                "denied {}: {} ({})",
                self.target,
                self.reason.as_deref().unwrap_or("refused"),
                d.how_to_allow
            ),
            (None, Some(e)) => write!(f, "allowed {} but it failed: {e}", self.target),
            (None, None) => write!(f, "allowed {}", self.target),
        }
    }
}

impl EgressAttempt {
    fn refused(r: &Refusal) -> Self {
        Self {
            target: r.target.clone(),
            allowed: false,
            address: None,
            reason: Some(r.reason.clone()),
            denied: Some(r.to_denied()),
            error: None,
        }
    }
}

/// A boxed resolution future.
pub(crate) type Resolution = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Turns a name into addresses: the system resolver, or a fixed table in tests.
pub(crate) trait Resolver: Send + Sync + 'static {
    /// The addresses of `host`.
    fn resolve(&self, host: &str, port: u16) -> Resolution;
}

/// The system resolver (`getaddrinfo` on a blocking thread), run by the agent, outside the sandbox.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Resolution {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

#[derive(Debug, Default)]
struct Log {
    kept: Vec<EgressAttempt>,
    dropped: u64,
}

/// A running proxy for one sandboxed run.
#[derive(Debug)]
pub(crate) struct EgressProxy {
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl EgressProxy {
    /// Starts serving `listener` (already listening) with `patterns`. Must run inside Tokio.
    ///
    /// # Errors
    /// When the listener cannot be registered with Tokio.
    pub(crate) fn start(
        listener: std::net::TcpListener,
        patterns: Vec<HostPattern>,
        workspace: Option<std::path::PathBuf>,
        resolver: Arc<dyn Resolver>,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let log = Arc::new(Mutex::new(Log::default()));
        let rules = Arc::new(Rules {
            patterns,
            workspace,
            resolver,
        });
        let task = tokio::spawn(accept_loop(listener, rules, log.clone()));
        Ok(Self { log, task })
    }

    /// Stops the proxy (open tunnels are cut) and returns the attempts it saw.
    pub(crate) fn finish(self) -> Vec<EgressAttempt> {
        self.task.abort();
        let mut log = self
            .log
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        if log.dropped > 0 {
            tracing::warn!(
                target: "katachi::egress",
                dropped = log.dropped,
                "more egress attempts than the per-run list keeps"
            );
        }
        log.kept.shrink_to_fit();
        log.kept
    }
}

struct Rules {
    patterns: Vec<HostPattern>,
    /// The run's workspace, named in the lasting way to allow a host.
    workspace: Option<std::path::PathBuf>,
    resolver: Arc<dyn Resolver>,
}

impl Rules {
    /// `refusal` with the lasting way to allow it too: the `policy set` command for the workspace.
    fn explain(&self, mut refusal: Refusal) -> Refusal {
        let flag = refusal.how_to_allow.strip_prefix("add ");
        if let (Some(ws), Some(flag)) = (&self.workspace, flag) {
            refusal.how_to_allow = format!(
                "add {flag} to the run, or on the agent's machine run `{}`",
                super::denied::policy_set_command(ws, flag)
            );
        }
        refusal
    }
}

async fn accept_loop(listener: TcpListener, rules: Arc<Rules>, log: Arc<Mutex<Log>>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // dropping the set (when this task is aborted) aborts every connection
    let mut conns = JoinSet::new();
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(target: "katachi::egress", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (rules, log) = (rules.clone(), log.clone());
        conns.spawn(async move {
            let attempt = serve(stream, &rules, &log).await;
            if let Some(a) = attempt {
                record(&log, a);
            }
            drop(permit);
        });
        // reap finished connections so the set does not grow
        while conns.try_join_next().is_some() {}
    }
}

fn record(log: &Mutex<Log>, a: EgressAttempt) {
    if a.allowed {
        tracing::info!(target: "katachi::egress", target_host = %a.target, address = ?a.address, error = ?a.error, "egress allowed");
    } else {
        tracing::warn!(target: "katachi::egress", target_host = %a.target, reason = ?a.reason, "egress denied");
    }
    if let Ok(mut l) = log.lock() {
        if l.kept.len() < MAX_LOGGED {
            l.kept.push(a);
        } else {
            l.dropped += 1;
        }
    }
}

/// Serves one connection: `None` when the client sent nothing usable before going away.
/// Tunnels are recorded when they open and served here until either side closes.
async fn serve(mut client: TcpStream, rules: &Rules, log: &Mutex<Log>) -> Option<EgressAttempt> {
    let (head, rest) = tokio::time::timeout(STEP_TIMEOUT, read_head(&mut client))
        .await
        .ok()??;
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (method, authority) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if !method.eq_ignore_ascii_case("CONNECT") {
        let refusal = Refusal {
            target: truncate(authority, 200),
            reason: format!(
                "{} requests are not proxied: only HTTPS tunnels (CONNECT) are",
                truncate(method, 20)
            ),
            how_to_allow: "use an https:// URL".to_owned(),
        };
        reply(&mut client, "405 Method Not Allowed", &refusal).await;
        return Some(EgressAttempt::refused(&refusal));
    }
    let Some((host, port)) = parse_authority(authority) else {
        let refusal = Refusal {
            target: truncate(authority, 200),
            reason: "not a host:port".to_owned(),
            how_to_allow: "CONNECT to host:port".to_owned(),
        };
        reply(&mut client, "400 Bad Request", &refusal).await;
        return Some(EgressAttempt::refused(&refusal));
    };
    if let Err(refusal) = check_destination(&rules.patterns, &host, port) {
        let refusal = rules.explain(refusal);
        reply(&mut client, "403 Forbidden", &refusal).await;
        return Some(EgressAttempt::refused(&refusal));
    }
    let target = format!("{host}:{port}");
    let failed = |error: String| EgressAttempt {
        target: target.clone(),
        allowed: true,
        address: None,
        reason: None,
        denied: None,
        error: Some(error),
    };
    let resolved = match &host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(n) => {
            match tokio::time::timeout(STEP_TIMEOUT, rules.resolver.resolve(n, port)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    return Some(
                        bad_gateway(&mut client, failed(format!("cannot resolve: {e}"))).await,
                    )
                }
                Err(_) => {
                    return Some(
                        bad_gateway(&mut client, failed("name resolution timed out".to_owned()))
                            .await,
                    )
                }
            }
        }
    };
    let addr = match choose_address(&rules.patterns, &host, port, &resolved) {
        Ok(a) => a,
        Err(refusal) => {
            let refusal = rules.explain(refusal);
            reply(&mut client, "403 Forbidden", &refusal).await;
            return Some(EgressAttempt::refused(&refusal));
        }
    };
    let mut upstream = match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Some(
                bad_gateway(
                    &mut client,
                    failed(format!("cannot connect to {addr}: {e}")),
                )
                .await,
            )
        }
        Err(_) => {
            return Some(
                bad_gateway(
                    &mut client,
                    failed(format!("connecting to {addr} timed out")),
                )
                .await,
            )
        }
    };
    let attempt = EgressAttempt {
        target,
        allowed: true,
        address: Some(addr.to_string()),
        reason: None,
        denied: None,
        error: None,
    };
    // logged when the tunnel opens, not when it closes: a long download is visible at once
    record(log, attempt);
    let tunnel = async {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        // bytes the client sent right after its head (a TLS hello) belong to the tunnel
        upstream.write_all(&rest).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
    };
    let _ = tunnel.await;
    None
}

async fn bad_gateway(client: &mut TcpStream, attempt: EgressAttempt) -> EgressAttempt {
    let body = format!("katachi sandbox: {attempt}\n");
    let head = format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(head.as_bytes()).await;
    let _ = client.write_all(body.as_bytes()).await;
    attempt
}

/// Answers a refusal with its reason in the body and an `X-Katachi-Denied` header.
async fn reply(client: &mut TcpStream, status: &str, r: &Refusal) {
    let body = format!(
        "katachi sandbox: denied {}: {} ({})\n",
        r.target, r.reason, r.how_to_allow
    );
    let json = serde_json::to_string(&r.to_denied()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nX-Katachi-Denied: {json}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(head.as_bytes()).await;
    let _ = client.write_all(body.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Reads up to the blank line ending the head: (head as text, bytes after it).
async fn read_head(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
        if let Some(end) = find_head_end(&buf) {
            let rest = buf.split_off(end);
            // a head is ASCII; anything else is not HTTP
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// `host:port` of a CONNECT line (the port is required).
fn parse_authority(authority: &str) -> Option<(Host, u16)> {
    let lower = authority.to_ascii_lowercase();
    let (host, port) = split_host_port(&lower)?;
    let port = port?.parse::<u16>().ok().filter(|&p| p != 0)?;
    Some((parse_target_host(host)?, port))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
