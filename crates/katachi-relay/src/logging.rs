//! The relay's log output (`tracing`), on standard output: human-readable text (the default) or
//! one JSON object per line (`--log-format json`: `timestamp`, `level`, `target`, `fields`, for log
//! collectors).
//!
//! The level comes from `KATACHI_LOG` (an `EnvFilter`, default `info`). Whatever it says, rmcp's
//! message logging stays off ([`crate::mcp::RMCP_LOG_DIRECTIVE`]): a server echoing its credential
//! would put the secret in the log. The banner lines (`katachi-relay: listening on …`) are plain
//! text in both formats.

use crate::config::LogFormat;

/// Installs the global subscriber.
///
/// # Errors
/// A malformed built-in directive, or a subscriber already installed.
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KATACHI_LOG")
        .unwrap_or_else(|_| "info".into())
        .add_directive(crate::mcp::RMCP_LOG_DIRECTIVE.parse()?);
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
