//! Relay configuration: command-line flags over embedded defaults.
//!
//! `katachi-relay` with no flags listens on 127.0.0.1:8443, keeps its data in `./katachi-relay-data`,
//! uses SQLite there, generates its own local CA and certificate, and serves `/metrics` on
//! `127.0.0.1:9464`. `katachi-relay rotate-master-key …` runs the one subcommand instead
//! ([`crate::rotate_key`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Where the relay's data lives: the flags serving and `rotate-master-key` share.
#[derive(Clone, clap::Args)]
pub struct StoreArgs {
    /// Folder for the SQLite database, TLS material and the master key.
    #[arg(
        long,
        env = "KATACHI_RELAY_DATA_DIR",
        default_value = "katachi-relay-data"
    )]
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL; default: SQLite in the data dir.
    #[arg(long, env = "KATACHI_RELAY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File with the 32-byte master key (hex) for secrets at rest; default: `master.key` in the
    /// data dir (generated there on first start).
    #[arg(long, env = "KATACHI_RELAY_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the database URL may carry a password
        f.debug_struct("StoreArgs")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::store::redact_url),
            )
            .field("master_key_file", &self.master_key_file)
            .finish()
    }
}

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "katachi-relay",
    version,
    about = "The katachi relay backend",
    // `katachi-relay --flags` serves; a subcommand takes its own flags only.
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// An operation to run instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on (browsers and agents share it).
    #[arg(long, env = "KATACHI_RELAY_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Where the data lives (data dir, database, master key).
    #[command(flatten)]
    pub store: StoreArgs,
    /// PEM certificate chain; without it a local CA and certificate are generated.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The URL people and agents use to reach this relay (links, OAuth redirects, Origin checks).
    #[arg(long, env = "KATACHI_RELAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds an agent must wait between device-code polls.
    #[arg(long, default_value_t = 5)]
    pub device_poll_interval: u64,
    /// Seconds a device code stays valid.
    #[arg(long, default_value_t = 600)]
    pub device_code_ttl: u64,
    /// Seconds without a heartbeat after which an agent shows offline.
    #[arg(long, default_value_t = 30)]
    pub offline_after: u64,
    /// GitHub OAuth app: client id (enables "Sign in with GitHub").
    #[arg(long, env = "KATACHI_GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,
    /// GitHub OAuth app: client secret.
    #[arg(long, env = "KATACHI_GITHUB_CLIENT_SECRET")]
    pub github_client_secret: Option<String>,
    /// GitHub endpoints base (tests point it at a local provider).
    #[arg(long, default_value = "https://github.com")]
    pub github_auth_base: String,
    /// GitHub API base.
    #[arg(long, default_value = "https://api.github.com")]
    pub github_api_base: String,
    /// Google OAuth client id (enables "Sign in with Google").
    #[arg(long, env = "KATACHI_GOOGLE_CLIENT_ID")]
    pub google_client_id: Option<String>,
    /// Google OAuth client secret.
    #[arg(long, env = "KATACHI_GOOGLE_CLIENT_SECRET")]
    pub google_client_secret: Option<String>,
    /// Google authorization endpoint base.
    #[arg(long, default_value = "https://accounts.google.com")]
    pub google_auth_base: String,
    /// Google token/userinfo endpoints base.
    #[arg(long, default_value = "https://oauth2.googleapis.com")]
    pub google_api_base: String,
    /// Extra PEM CA trusted for calls to OAuth providers (tests with a local provider).
    #[arg(long)]
    pub provider_ca: Option<PathBuf>,
    /// Browser requests one agent's tunnel may carry at once; more get `429 agent.busy`.
    #[arg(long, default_value_t = 64)]
    pub tunnel_max_in_flight: usize,
    /// Seconds an agent has to start answering a forwarded request (`504 agent.timeout` after).
    #[arg(long, default_value_t = 30)]
    pub tunnel_response_timeout: u64,
    /// SMTP server for e-mail verification links: `smtp://host:port`, `smtp://host:port?tls=required`
    /// (STARTTLS) or `smtps://host:port`, with `user:password@` when it needs a login. Without it
    /// (local mode) links are written to the relay's log.
    #[arg(long, env = "KATACHI_RELAY_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender of the relay's mails; default `katachi@<host of --public-url>`.
    #[arg(long, requires = "smtp_url")]
    pub smtp_from: Option<String>,
    /// Let the relay connect to users' MCP servers on loopback, private and link-local addresses
    /// (refused by default: a URL given in a browser must not reach the relay's own network).
    #[arg(long)]
    pub mcp_allow_private_addresses: bool,
    /// Seconds one MCP tool list or call may take once connected (agents wait 30 s for an
    /// answer, connecting included).
    #[arg(long, default_value_t = 20)]
    pub mcp_call_timeout: u64,
    /// Address of this instance's internal listener, which the other relay instances on the same
    /// database forward browser requests to (mutual TLS, each instance's certificate pinned through
    /// the database). Without it the relay runs alone: only tunnels it holds itself are reachable.
    /// Bind it to a private or loopback address: it is never for the public.
    #[arg(long)]
    pub internal_listen: Option<SocketAddr>,
    /// `host:port` the other instances use to reach `--internal-listen` (default: its address;
    /// required when that is a wildcard such as 0.0.0.0).
    #[arg(long, requires = "internal_listen")]
    pub internal_advertise: Option<String>,
    /// Seconds a stopping relay (SIGTERM) lets requests in flight finish before it closes the
    /// agents' tunnels, so they reconnect to another instance.
    #[arg(long, default_value_t = 10)]
    pub drain_timeout: u64,
    /// Plain-HTTP listener for `/metrics` (Prometheus), `/healthz` and `/readyz`, or `off`. Keep it
    /// on loopback or a private network: it has no authentication. Never the public port.
    #[arg(
        long,
        env = "KATACHI_RELAY_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: MetricsListen,
    /// Log lines as human-readable text or as one JSON object per line.
    #[arg(
        long,
        env = "KATACHI_RELAY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// Reverse proxies in front of the relay, as CIDRs or single addresses (repeat the flag or
    /// separate with commas). Only from these is the client address read from the forwarding
    /// header (`--client-address-header`); without the flag the client is the TCP peer.
    #[arg(long = "trusted-proxy", env = "KATACHI_RELAY_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::client_ip::parse_trusted_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header trusted proxies write the client address into: `x-forwarded-for` (nginx,
    /// HAProxy, Cloudflare) or `forwarded` (RFC 7239). The other one is ignored.
    #[arg(long, value_enum, default_value = "x-forwarded-for")]
    pub client_address_header: crate::client_ip::ForwardedHeader,
}

/// Operations run instead of serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Re-seal every stored secret with a new master key, then install the key (stop every relay
    /// instance on the database first).
    RotateMasterKey(crate::rotate_key::RotateArgs),
}

/// `--metrics-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        s.parse()
            .map(|a| Self(Some(a)))
            .map_err(|_| format!("{s:?} is neither an address (127.0.0.1:9464) nor `off`"))
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// Refuses a metrics address that is the public listener's: `/metrics` must never be served on
/// the public port.
fn check_metrics_listen(listen: SocketAddr, metrics: SocketAddr) -> anyhow::Result<()> {
    let same_ip = metrics.ip() == listen.ip()
        || metrics.ip().is_unspecified()
        || listen.ip().is_unspecified();
    anyhow::ensure!(
        !(same_ip && metrics.port() == listen.port() && metrics.port() != 0),
        "--metrics-listen {metrics} is the public listener's address (--listen {listen}): \
         /metrics is never served on the public port; choose another port (default \
         127.0.0.1:9464) or `off`"
    );
    Ok(())
}

/// A sign-in provider's settings.
#[derive(Clone)]
pub struct ProviderConfig {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// Base URL of the authorization endpoint.
    pub auth_base: String,
    /// Base URL of the token / user-info endpoints.
    pub api_base: String,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("auth_base", &self.auth_base)
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// Provider endpoints must be https; plain http only to this machine (a local test provider).
fn check_provider_base(flag: &str, base: &str) -> anyhow::Result<()> {
    let url = url::Url::parse(base).with_context(|| format!("--{flag} {base:?} is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    anyhow::ensure!(
        url.scheme() == "https" || (url.scheme() == "http" && loopback),
        "--{flag} must be https (plain http only to localhost)"
    );
    Ok(())
}

/// Everything the relay needs to start.
#[derive(Clone)]
pub struct RelayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://…` or `postgres://…`).
    pub database_url: Option<String>,
    /// Certificate and key files, when given.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// Public URL; default `https://<listen>`.
    pub public_url: Option<String>,
    /// Master key file.
    pub master_key_file: Option<PathBuf>,
    /// Device poll interval (s).
    pub device_poll_interval: u64,
    /// Device code lifetime (s).
    pub device_code_ttl: u64,
    /// Offline window (s).
    pub offline_after: u64,
    /// GitHub sign-in.
    pub github: Option<ProviderConfig>,
    /// Google sign-in.
    pub google: Option<ProviderConfig>,
    /// Extra CA for provider calls.
    pub provider_ca: Option<PathBuf>,
    /// Forwarded requests in flight per agent tunnel (default 64, the agent's HTTP/2 stream limit).
    pub tunnel_max_in_flight: usize,
    /// Time an agent has to send the response headers of a forwarded request.
    pub tunnel_response_timeout: std::time::Duration,
    /// Posts to sign-in, sign-up and device code allowed per client address bucket (in memory).
    pub address_quota: crate::address_limit::AddressQuota,
    /// argon2 computations at once; `None`: one per core.
    pub password_hash_permits: Option<usize>,
    /// SMTP server URL for verification mails; `None`: local mode (links in the log).
    pub smtp_url: Option<String>,
    /// Sender address of the relay's mails.
    pub smtp_from: Option<String>,
    /// How the relay talks to its users' MCP servers (address guard, timeouts, size caps).
    pub mcp: crate::mcp::McpOptions,
    /// The internal listener for the other instances, when several share the database.
    pub internal: Option<InternalConfig>,
    /// How long a stopping relay lets requests in flight finish.
    pub drain_timeout: std::time::Duration,
    /// The metrics listener's address; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies whose forwarding header names the client (`--trusted-proxy`).
    pub trusted_proxies: crate::client_ip::TrustedProxies,
}

/// Where this instance listens for the other instances, and how they reach it.
#[derive(Debug, Clone)]
pub struct InternalConfig {
    /// Bind address.
    pub listen: SocketAddr,
    /// `host:port` others dial; `None`: the bound address.
    pub advertise: Option<String>,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::store::redact_url),
            )
            .field("tls_files", &self.tls_files)
            .field("public_url", &self.public_url)
            .field("master_key_file", &self.master_key_file)
            .field("device_poll_interval", &self.device_poll_interval)
            .field("device_code_ttl", &self.device_code_ttl)
            .field("offline_after", &self.offline_after)
            .field("github", &self.github)
            .field("google", &self.google)
            .field("provider_ca", &self.provider_ca)
            .field("tunnel_max_in_flight", &self.tunnel_max_in_flight)
            .field("tunnel_response_timeout", &self.tunnel_response_timeout)
            .field("address_quota", &self.address_quota)
            .field("password_hash_permits", &self.password_hash_permits)
            // An SMTP URL may carry the server's password.
            .field(
                "smtp_url",
                &self.smtp_url.as_deref().map(crate::store::redact_url),
            )
            .field("smtp_from", &self.smtp_from)
            .field("mcp", &self.mcp)
            .field("internal", &self.internal)
            .field("drain_timeout", &self.drain_timeout)
            .field("metrics_listen", &self.metrics_listen)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl RelayConfig {
    /// Defaults for a relay whose data lives in `data_dir` (tests bind port 0).
    pub fn local(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            database_url: None,
            tls_files: None,
            public_url: None,
            master_key_file: None,
            device_poll_interval: 5,
            device_code_ttl: 600,
            offline_after: 30,
            github: None,
            google: None,
            provider_ca: None,
            tunnel_max_in_flight: 64,
            tunnel_response_timeout: std::time::Duration::from_secs(30),
            address_quota: Default::default(),
            password_hash_permits: None,
            smtp_url: None,
            smtp_from: None,
            mcp: crate::mcp::McpOptions::default(),
            internal: None,
            drain_timeout: std::time::Duration::from_secs(10),
            // Tests that read metrics ask for `127.0.0.1:0`.
            metrics_listen: None,
            trusted_proxies: Default::default(),
        }
    }
}

impl Args {
    /// Validates the flags into a config.
    ///
    /// # Errors
    /// A provider with an id but no secret, a public URL that is not https, or a metrics listener
    /// on the public listener's address.
    pub fn into_config(self) -> anyhow::Result<RelayConfig> {
        let provider =
            |name: &str, id: Option<String>, secret: Option<String>, auth: String, api: String| {
                match (id, secret) {
                    (Some(client_id), Some(client_secret)) => {
                        check_provider_base(&format!("{name}-auth-base"), &auth)?;
                        check_provider_base(&format!("{name}-api-base"), &api)?;
                        Ok(Some(ProviderConfig {
                            client_id,
                            client_secret,
                            auth_base: auth,
                            api_base: api,
                        }))
                    }
                    (None, None) => Ok(None),
                    _ => anyhow::bail!("--{name}-client-id and --{name}-client-secret go together"),
                }
            };
        if let MetricsListen(Some(metrics)) = self.metrics_listen {
            check_metrics_listen(self.listen, metrics)?;
        }
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url)
                .with_context(|| format!("--public-url {url:?} is not a URL"))?;
            anyhow::ensure!(
                parsed.scheme() == "https",
                "--public-url must be https (the relay serves HTTPS only)"
            );
        }
        let internal = self
            .internal_listen
            .map(|listen| internal_config(listen, self.internal_advertise))
            .transpose()?;
        Ok(RelayConfig {
            listen: self.listen,
            data_dir: self.store.data_dir,
            database_url: self.store.database_url,
            tls_files: self.tls_cert.zip(self.tls_key),
            public_url: self.public_url,
            master_key_file: self.store.master_key_file,
            device_poll_interval: self.device_poll_interval.max(1),
            device_code_ttl: self.device_code_ttl.clamp(60, 3600),
            offline_after: self.offline_after.max(5),
            github: provider(
                "github",
                self.github_client_id,
                self.github_client_secret,
                self.github_auth_base,
                self.github_api_base,
            )?,
            google: provider(
                "google",
                self.google_client_id,
                self.google_client_secret,
                self.google_auth_base,
                self.google_api_base,
            )?,
            provider_ca: self.provider_ca,
            tunnel_max_in_flight: self.tunnel_max_in_flight.clamp(1, 10_000),
            tunnel_response_timeout: std::time::Duration::from_secs(
                self.tunnel_response_timeout.clamp(1, 3600),
            ),
            address_quota: Default::default(),
            password_hash_permits: None,
            smtp_url: self.smtp_url,
            smtp_from: self.smtp_from,
            mcp: crate::mcp::McpOptions {
                allow_private_addresses: self.mcp_allow_private_addresses,
                call_timeout: std::time::Duration::from_secs(self.mcp_call_timeout.clamp(1, 600)),
                ..Default::default()
            },
            internal,
            drain_timeout: std::time::Duration::from_secs(self.drain_timeout.min(3600)),
            metrics_listen: self.metrics_listen.0,
            trusted_proxies: crate::client_ip::TrustedProxies::new(
                self.trusted_proxies,
                self.client_address_header,
            ),
        })
    }
}

/// Checks `--internal-listen` / `--internal-advertise`: the others must be able to dial what is
/// advertised, so a wildcard bind needs an explicit address.
fn internal_config(
    listen: SocketAddr,
    advertise: Option<String>,
) -> anyhow::Result<InternalConfig> {
    if let Some(a) = &advertise {
        let ok = a.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        anyhow::ensure!(
            ok,
            "--internal-advertise {a:?} is not host:port (for example 10.0.0.5:7443)"
        );
    } else {
        anyhow::ensure!(
            !listen.ip().is_unspecified(),
            "--internal-listen {listen} is a wildcard address: give --internal-advertise \
             host:port, the address the other relay instances dial"
        );
    }
    Ok(InternalConfig { listen, advertise })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
