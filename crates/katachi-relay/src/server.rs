//! The accept loop: TCP → TLS 1.3 (rustls) → HTTP/1.1 or HTTP/2 (hyper) → the axum router.
//!
//! Tests bind `127.0.0.1:0` and drive the relay over real sockets ([`run`], [`Relay::start`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::service::TowerToHyperService;
use katachi_proto::transport::{ReadAhead, WriteBehind};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::RelayConfig;
use crate::crypto::MasterKey;
use crate::state::{AppState, Inner};
use crate::store::Store;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the heap's free pages are handed back to the system ([`crate::heap::trim_every`]).
const HEAP_TRIM_EVERY: Duration = Duration::from_secs(10);

/// A started relay: bound, keyed, migrated, not yet serving.
pub struct Relay {
    /// The bound listener.
    listener: TcpListener,
    /// Shared state.
    state: AppState,
    /// TLS config.
    tls: Arc<rustls::ServerConfig>,
    /// CA agents should pin, when generated.
    ca_file: Option<PathBuf>,
    /// Where it listens.
    addr: SocketAddr,
    /// The metrics listener (`--metrics-listen`), unless off.
    metrics_listener: Option<TcpListener>,
}

impl Relay {
    /// Binds `config.listen` and prepares everything.
    ///
    /// # Errors
    /// Bind, TLS, master key or database failures, with context.
    pub async fn start(config: RelayConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Self::with_listener(listener, config).await
    }

    /// Prepares a relay on an already-bound listener.
    ///
    /// # Errors
    /// TLS, master key or database failures, with context.
    pub async fn with_listener(listener: TcpListener, config: RelayConfig) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let metrics_listener = match config.metrics_listen {
            Some(at) => Some(crate::metrics_listener::bind(at).await?),
            None => None,
        };
        create_private_dir(&config.data_dir)?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", display_host(addr)))
            .trim_end_matches('/')
            .to_owned();
        let host = url::Url::parse(&public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        let tls = crate::tls::load_or_generate(
            &config.data_dir,
            config.tls_files.as_ref(),
            host.as_deref(),
        )
        .context("TLS set-up failed")?;
        let master =
            MasterKey::load_or_generate(config.master_key_file.as_deref(), &config.data_dir)?;
        let store = Store::connect(config.database_url.as_deref(), &config.data_dir).await?;
        // Values sealed before they were bound to their row are bound now, once.
        let resealed = store
            .reseal_unbound_values(&master)
            .await
            .context("re-sealing stored secrets bound to their rows failed")?;
        if resealed.resealed > 0 {
            tracing::info!(
                count = resealed.resealed,
                "stored secrets bound to their rows"
            );
        }
        if resealed.unopenable > 0 {
            tracing::warn!(
                count = resealed.unopenable,
                "stored secrets sealed with another master key were left as they are"
            );
        }
        let http = provider_client(config.provider_ca.as_deref())?;
        let mcp = crate::mcp::McpBroker::new(config.mcp.clone(), config.provider_ca.as_deref())
            .context("the MCP client's TLS set-up failed")?;
        let passwords = match config.password_hash_permits {
            Some(n) => crate::password::PasswordHashing::new(n),
            None => crate::password::PasswordHashing::per_core(),
        }?;
        let address_limiter = crate::address_limit::AddressLimiter::new(config.address_quota);
        let mailer = crate::mail::Mailer::new(
            config.smtp_url.as_deref(),
            config.smtp_from.as_deref(),
            &public_url,
        )?;
        if mailer.is_local() {
            tracing::info!("no --smtp-url: e-mail verification links go to this log (local mode)");
        }
        let cluster = match &config.internal {
            Some(internal) => crate::cluster::Cluster::bind(internal).await?,
            None => crate::cluster::Cluster::alone(),
        };
        let state = AppState::new(Inner {
            store,
            master,
            config,
            public_url,
            passwords,
            address_limiter,
            mailer,
            http,
            agent_cache: Default::default(),
            tunnels: Default::default(),
            streams: Default::default(),
            mcp,
            cluster,
            metrics: Default::default(),
            draining: Default::default(),
        });
        // Routable at once: the other instances find this one before its first tunnel opens.
        state
            .cluster
            .touch(&state)
            .await
            .context("recording this relay instance in the database failed")?;
        Ok(Self {
            listener,
            state,
            tls: tls.config,
            ca_file: tls.ca_file,
            addr,
            metrics_listener,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the metrics listener listens, unless it is off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The public URL.
    pub fn url(&self) -> &str {
        &self.state.public_url
    }

    /// The generated CA file agents pin, if any.
    pub fn ca_file(&self) -> Option<&PathBuf> {
        self.ca_file.as_ref()
    }

    /// The shared state (tests reach the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Prints where to reach it and which CA to pin.
    pub fn print_banner(&self) {
        println!("katachi-relay: listening on {}", self.url());
        if let Some(ca) = &self.ca_file {
            println!(
                "katachi-relay: local CA for agents: {} (katachi start --relay {} --ca {})",
                ca.display(),
                self.url(),
                ca.display()
            );
        }
        if let Some(at) = self.metrics_addr() {
            println!("katachi-relay: metrics on http://{at}/metrics");
        }
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    ///
    /// # Errors
    /// Never for client faults; only when the listener itself breaks.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let app = crate::web::router(self.state.clone());
        let acceptor = TlsAcceptor::from(self.tls);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let purge_state = self.state.clone();
        let purger = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                purge_state.address_limiter.forget_idle();
                if let Err(e) = purge_state.store.purge_expired(crate::now_unix()).await {
                    tracing::warn!(error = %e, "purging expired rows failed");
                }
            }
        });
        let trim_task = tokio::spawn(crate::heap::trim_every(HEAP_TRIM_EVERY));
        // Sign-outs and revocations made on other instances end this instance's requests too: at
        // once through LISTEN/NOTIFY (PostgreSQL), and through a recheck every 2 s as a backstop.
        let watcher_task = tokio::spawn(crate::tunnel::watch_revocations(self.state.clone()));
        let listen_task = tokio::spawn(crate::cluster::broadcast::listen(self.state.clone()));
        let alive_task = tokio::spawn(self.state.cluster.clone().keep_alive(self.state.clone()));
        let stop_internal = tokio_util::sync::CancellationToken::new();
        let internal_task = tokio::spawn(crate::cluster::serve_internal(
            self.state.clone(),
            stop_internal.clone(),
        ));
        let metrics_task = self
            .metrics_listener
            .map(|l| crate::metrics_listener::spawn(l, self.state.clone()));
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                // Reads ahead under TLS; writes through a writer task, so the 16 KiB frames of a
                // download leave in few syscalls (katachi_proto::transport).
                let (read, write) = tcp.into_split();
                let io = WriteBehind::spawn(ReadAhead::new(read), write);
                // A plaintext or TLS 1.2 client fails here and the connection is dropped.
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                let svc = app.map_request(
                    move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        req
                    },
                );
                let builder = ConnBuilder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(tls),
                    TowerToHyperService::new(svc),
                );
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        // From here on `/readyz` says draining, so load balancers send new requests elsewhere.
        self.state.draining.start();
        // Stopping: no new connections; requests in flight get the drain time to finish; then the
        // agents' tunnels close, so they reconnect (through the load balancer) to another instance.
        drop(self.listener);
        let drain_until = tokio::time::Instant::now() + self.state.config.drain_timeout;
        while !self.state.streams.is_empty() && tokio::time::Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let closed = self.state.tunnels.close_all();
        if closed > 0 {
            tracing::info!(
                closed,
                "agents' tunnels closed: they reconnect to another instance"
            );
        }
        self.state.cluster.leave(&self.state).await;
        stop_internal.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), internal_task).await;
        purger.abort();
        trim_task.abort();
        watcher_task.abort();
        listen_task.abort();
        alive_task.abort();
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within the drain timeout");
        }
        if let Some(task) = metrics_task {
            task.abort();
        }
        Ok(())
    }
}

/// Serves `config` on `listener` until `shutdown` (the shape tests and embedders use).
///
/// # Errors
/// As [`Relay::with_listener`] and [`Relay::serve_until`].
pub async fn run(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    Relay::with_listener(listener, config)
        .await?
        .serve_until(shutdown)
        .await
}

fn display_host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_loopback() => format!("localhost:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_loopback() => format!("localhost:{}", a.port()),
        other => other.to_string(),
    }
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))
}

/// Client for OAuth provider calls: webpki roots are not bundled, so trust comes from the system
/// store file when present plus `--provider-ca`.
fn provider_client(extra_ca: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15));
    for path in [
        Some(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt")),
        extra_ca,
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(pem) = std::fs::read(path) {
            for cert in reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default() {
                b = b.add_root_certificate(cert);
            }
        }
    }
    Ok(b.build()?)
}
