//! `katachi pause [--for 1h]` and `katachi resume`: take the running agent's remote access down
//! for a while (no tunnel, no heartbeats), and bring it back.

use std::process::ExitCode;
use std::time::Duration;

use katachi_core::KatachiDirs;

use crate::output::Output;

/// `katachi pause` options.
#[derive(Debug, clap::Args)]
pub(crate) struct PauseArgs {
    /// How long (`30m`, `1h`, `2h 30m`); `katachi resume` ends it sooner.
    #[arg(long = "for", value_name = "DURATION", default_value = "1h", value_parser = parse_pause)]
    pub duration: Duration,
}

fn parse_pause(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err("a pause lasts at least 1 s".to_owned());
    }
    Ok(d)
}

/// Pauses the running agent.
pub(crate) fn pause(
    dirs: &KatachiDirs,
    args: &PauseArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let rt = crate::agent_control::runtime()?;
    let mut agent = crate::agent_control::require(&rt, dirs)?;
    rt.block_on(agent.pause(args.duration))?;
    let secs = args.duration.as_secs();
    out.emit(&serde_json::json!({ "paused_for_secs": secs }), || {
        format!(
            "remote access paused for {}; `katachi resume` ends it sooner",
            humantime::format_duration(Duration::from_secs(secs))
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Ends the running agent's pause.
pub(crate) fn resume(dirs: &KatachiDirs, out: &Output) -> anyhow::Result<ExitCode> {
    let rt = crate::agent_control::runtime()?;
    let mut agent = crate::agent_control::require(&rt, dirs)?;
    rt.block_on(agent.resume())?;
    out.emit(&serde_json::json!({ "resumed": true }), || {
        "remote access resumed; the agent reconnects to the relay".to_owned()
    });
    Ok(ExitCode::SUCCESS)
}
