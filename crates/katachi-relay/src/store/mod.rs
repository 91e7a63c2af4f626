//! The relay's database: SQLite (embedded, the default) or PostgreSQL, through sqlx's `Any` driver
//! with one set of migrations that both understand (TEXT ids, BIGINT unix seconds).
//!
//! Everything that must be shared between several relay instances lives here, not in memory:
//! sessions, nonces, rate-limit buckets, device codes and agent liveness.
//!
//! # Layout
//! - `users`: accounts, identities from GitHub/Google, sessions, OAuth states, rate limits.
//! - `devices`: RFC 8628 device codes.
//! - `agents`: agents, nonces, activity events.
//! - `mcp`: MCP server configurations with sealed secret values.
//! - `liveness`: which sessions and agents requests in flight may still use.
//! - `reseal`: binds sealed values of the first format to their row, once, at start-up.
//! - `routes`: relay instances and which of them holds each agent's tunnel.
//! - `rotate`: re-seals every sealed value with a new master key, all or nothing.
//! - `sign_in`: browsers known to an account (they pass its failure delay with the right password).

mod agents;
mod batch;
mod devices;
mod liveness;
mod mcp;
mod reseal;
mod rotate;
mod routes;
mod sign_in;
mod users;

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;

pub use agents::{AgentRow, NewAgent, NonceOutcome};
pub use devices::{DeviceCode, DeviceStatus};
pub use mcp::McpServer;
pub use reseal::ResealReport;
pub use rotate::{ColumnCount, RotationError, RotationReport};
pub use routes::{InstanceRow, TunnelRoute, INSTANCE_TTL_SECS};
pub use users::{RateLimit, User};

/// The embedded migrations (shared by SQLite and PostgreSQL).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("cannot open the database {url}: {source}")]
    Connect {
        /// The URL, without password.
        url: String,
        /// What sqlx said.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// The URL names a database kind the relay does not support.
    #[error("unsupported database URL {0:?}: use sqlite://… or postgres://…")]
    Unsupported(String),
    /// A batched write failed because the database cannot be reached (see
    /// [`StoreError::is_unavailable`]); the text is what sqlx said. Retry once it is back.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// True when the database cannot be reached right now — connection refused or lost, no free
    /// connection within the pool's acquire timeout, the server shutting down or starting up — as
    /// opposed to a query it refused. Requests that meet it answer `503
    /// relay.database_unavailable`; they succeed again once the database is back, with no restart.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Query(e) | StoreError::Connect { source: e, .. } => means_unavailable(e),
            StoreError::Migrate(_) | StoreError::Unsupported(_) => false,
        }
    }
}

/// Whether sqlx's `e` says the database cannot be reached (rather than that a query is wrong):
/// pool timeouts, I/O and TLS failures, and PostgreSQL's connection-exception (`08…`) and
/// operator-intervention (`57P…`: shutdown, crash, starting up) SQLSTATEs.
pub(crate) fn means_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database handle (cheap to clone).
#[derive(Clone, Debug)]
pub struct Store {
    /// Connection pool.
    pool: AnyPool,
    /// SQLite allows one writer at a time; writers queue here instead of in SQLite's sleeping busy
    /// handler (which costs milliseconds of tail latency). `None` for PostgreSQL.
    write_lock: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    /// Group-commit writer for nonces and heartbeat touches (the hot path of agent calls).
    batcher: batch::Batcher,
}

/// How long a request waits for a database connection before it is answered `503
/// relay.database_unavailable`: while the database is down sqlx keeps trying to connect, so every
/// request waits this long. A healthy pool hands a connection out in microseconds; 3 s rides out a
/// database restart's first seconds without holding browsers and agents for long.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// Connects to `url` (default: SQLite `relay.db` in `data_dir`) and runs the migrations.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached or migrated.
    pub async fn connect(url: Option<&str>, data_dir: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let url = match url {
            Some(u) => u.to_owned(),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("relay.db").display()),
        };
        let is_sqlite = url.starts_with("sqlite:");
        if !is_sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(StoreError::Unsupported(redact(&url)));
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 8 } else { 16 })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if is_sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000;").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect { url: redact(&url), source })?;
        MIGRATOR.run(&pool).await?;
        let write_lock = is_sqlite.then(|| std::sync::Arc::new(tokio::sync::Mutex::new(())));
        let batcher = batch::Batcher::spawn(pool.clone(), write_lock.clone());
        if is_sqlite {
            spawn_checkpointer(pool.clone());
        }
        Ok(Self {
            pool,
            write_lock,
            batcher,
        })
    }

    /// Held while writing: serialises SQLite writers in-process; a no-op for PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        }
    }

    /// The pool, for modules of this crate.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs a trivial query (`SELECT 1`): the database is reachable and answers (readiness).
    ///
    /// # Errors
    /// [`StoreError::Query`] when it cannot be reached or fails; it may wait for a free connection up
    /// to the pool's acquire timeout, so callers bound it with their own timeout.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection; each later query fails at once (shutdown, and tests of a lost
    /// database).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Removes expired sessions, nonces, OAuth states, device codes and rate-limit buckets.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn purge_expired(&self, now: i64) -> Result<()> {
        let _w = self.write_guard().await;
        for sql in [
            "DELETE FROM sessions WHERE expires_at < $1",
            "DELETE FROM nonces WHERE expires_at < $1",
            "DELETE FROM oauth_states WHERE expires_at < $1",
            "DELETE FROM device_codes WHERE expires_at < $1",
            "DELETE FROM known_browsers WHERE expires_at < $1",
            "DELETE FROM email_verifications WHERE expires_at < $1",
            "DELETE FROM rate_limits WHERE window_start < $1 - 86400",
        ] {
            sqlx::query(sql).bind(now).execute(&self.pool).await?;
        }
        Ok(())
    }
}

/// Copies the SQLite WAL into the database once a second from a background task (PASSIVE: never
/// blocks readers or writers), so request-serving writers do not pay for checkpoints and their
/// fsyncs. The automatic checkpoint stays as a backstop at 10,000 pages.
fn spawn_checkpointer(pool: AnyPool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "background checkpoint failed");
            }
        }
    });
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    redact(url)
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_appear_in_database_errors() {
        assert_eq!(
            super::redact("postgres://u:hunter2@localhost/db"),
            "postgres://u:***@localhost/db"
        );
    }
}
