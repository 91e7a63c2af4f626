//! The app's log: `tracing` events go to a file in katachi's state dir, rotated daily.
//!
//! # Contract
//! - Files are `katachi-app.YYYY-MM-DD.log` in [`KatachiDirs::state`] (Linux: `$XDG_STATE_HOME/katachi`,
//!   else `~/.local/state/katachi`; under `KATACHI_HOME`: `$KATACHI_HOME/state`). The folder is
//!   created `0700`, so only the user reads the log; the agent's API and sandbox never show it
//!   (it is one of the agent home's protected folders).
//! - One file a day; at most [`MAX_LOG_FILES`] are kept, older ones are deleted when a new day starts.
//! - The level comes from `KATACHI_LOG` (as for the `katachi` CLI), `info` by default. Warnings and
//!   errors also go to stderr, for `make run` and for a parent process reading it.
//! - Writes are synchronous, from the logging thread: no extra thread and no wake-up while idle.
//!
//! # Security
//! Nothing secret is logged by katachi's own code (tokens, keys and codes are newtypes without
//! `Debug`). The HTTP and TLS crates below the agent can print headers at `debug`/`trace`, so their
//! levels are capped at `info` whatever `KATACHI_LOG` says ([`SECRET_SAFE_CAPS`]).
//!
//! # Not done here
//! No log shipping, no structured (JSON) output; a log that cannot be opened leaves the app running
//! with stderr only (the caller prints why).

use std::path::{Path, PathBuf};

use katachi_core::dirs::{create_private_dir, DirsError, KatachiDirs};
use tracing::Subscriber;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// Environment variable holding the log filter (`info`, `katachi_core=debug`, ...), as for the CLI.
pub const FILTER_ENV: &str = "KATACHI_LOG";

/// How many daily log files are kept (a week).
pub const MAX_LOG_FILES: usize = 7;

/// The log files' name: `katachi-app.<date>.log`.
pub const LOG_FILE_PREFIX: &str = "katachi-app";

/// Crates whose `debug`/`trace` output may hold request headers (bearer tokens, cookies): capped
/// at `info` after the user's filter is applied.
pub const SECRET_SAFE_CAPS: &[&str] = &[
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "reqwest=info",
    "rustls=info",
    "tokio_rustls=info",
    "tungstenite=info",
    "tokio_tungstenite=info",
];

/// Why the log file could not be set up; the app then runs with stderr only.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// No state folder is known or it cannot be created (no home, read-only filesystem).
    #[error("cannot prepare the log folder: {0}")]
    Dirs(#[from] DirsError),
    /// The log file cannot be opened in the state folder (permissions, disk full).
    #[error("cannot open the log file in {dir}: {source}")]
    Open {
        /// The state folder.
        dir: PathBuf,
        /// What tracing-appender said.
        source: tracing_appender::rolling::InitError,
    },
    /// `KATACHI_LOG` is not a valid filter; fix its syntax (e.g. `info` or `katachi_core=debug`).
    #[error("{FILTER_ENV} is not a valid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// Another global subscriber was installed first (only a test harness would do this).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the app's global `tracing` subscriber: the rotating file in the state folder of the
/// agent home named by the environment (`KATACHI_HOME` or the platform default) and stderr for
/// warnings. Returns the log folder.
///
/// # Errors
/// [`LoggingError`]: the caller reports it on stderr and keeps going without a log file.
pub fn init_logging() -> Result<PathBuf, LoggingError> {
    let dirs = KatachiDirs::from_env()?;
    let filter = std::env::var(FILTER_ENV).unwrap_or_default();
    let subscriber = file_subscriber(dirs.state(), &filter)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LoggingError::AlreadyInstalled)?;
    Ok(dirs.state().to_path_buf())
}

/// The subscriber writing to `katachi-app.<date>.log` in `dir` (created `0700` when missing) with
/// `filter` (empty: `info`) plus [`SECRET_SAFE_CAPS`], and warnings to stderr.
///
/// # Errors
/// [`LoggingError::Dirs`], [`LoggingError::Open`] or [`LoggingError::Filter`].
pub(crate) fn file_subscriber(
    dir: &Path,
    filter: &str,
) -> Result<impl Subscriber + Send + Sync, LoggingError> {
    create_private_dir(dir)?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_FILE_PREFIX)
        .filename_suffix("log")
        .max_log_files(MAX_LOG_FILES)
        .build(dir)
        .map_err(|source| LoggingError::Open {
            dir: dir.to_path_buf(),
            source,
        })?;
    let file = tracing_subscriber::fmt::layer()
        .with_writer(appender)
        .with_ansi(false)
        .with_filter(file_filter(filter)?);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(LevelFilter::WARN);
    Ok(tracing_subscriber::registry().with(file).with(stderr))
}

/// The user's filter (empty: `info`) with the HTTP/TLS crates capped at `info`.
fn file_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    let filter = if filter.trim().is_empty() {
        "info"
    } else {
        filter
    };
    let mut parsed = EnvFilter::builder().parse(filter)?;
    for cap in SECRET_SAFE_CAPS {
        parsed = parsed.add_directive(cap.parse()?);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_text(dir: &Path) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(LOG_FILE_PREFIX) && name.ends_with(".log") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap());
            }
        }
        text
    }

    #[test]
    fn a_log_line_lands_in_a_dated_file_in_a_private_state_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("home/state");
        let subscriber = file_subscriber(&state, "").unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(relay = "relay.example.com", "tray started");
            tracing::debug!("below the default level");
        });

        let text = log_text(&state);
        assert!(text.contains("tray started"), "{text}");
        assert!(text.contains("relay.example.com"), "{text}");
        assert!(!text.contains("below the default level"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no colour codes in the file: {text:?}"
        );
        let names: Vec<String> = std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // katachi-app.YYYY-MM-DD.log
        assert_eq!(
            names[0].len(),
            "katachi-app.2026-12-02.log".len(),
            "{names:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
    }

    #[test]
    fn http_crates_stay_at_info_even_when_the_user_asks_for_trace() {
        let tmp = tempfile::tempdir().unwrap();
        let subscriber = file_subscriber(tmp.path(), "trace").unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "hyper::proto", "authorization: Bearer sekrit-token");
            tracing::trace!(target: "katachi_core::agent", "agent trace line");
        });

        let text = log_text(tmp.path());
        assert!(text.contains("agent trace line"), "{text}");
        assert!(!text.contains("sekrit-token"), "{text}");
    }

    #[test]
    fn a_bad_filter_is_reported_not_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let err = file_subscriber(tmp.path(), "katachi_core=loud").err();
        assert!(matches!(err, Some(LoggingError::Filter(_))), "{err:?}");
    }
}
