//! `katachi status [--watch]`: registered or not, with which relay, and how the connection is doing:
//! live from the running agent's control socket when one runs, plus its status file.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use katachi_core::agent::Status;
use katachi_core::agent_status::{AgentStatus, ConnectionState, StatusFile};
use katachi_core::control::lock::local_time;
use katachi_core::control::{Client, StatusReport};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::tunnel::TunnelStatus;
use katachi_core::{AgentCredentials, AgentHome, KatachiDirs};
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::output::Output;

/// What `katachi status --json` prints.
#[derive(Debug, Serialize)]
struct StatusView {
    /// Sealed credentials exist for this agent home.
    registered: bool,
    /// The relay it is registered with (or signing in at).
    relay_url: Option<String>,
    /// Its id at the relay.
    agent_id: Option<String>,
    /// An agent process (`katachi start` or the tray) is running for this home.
    running: bool,
    /// connecting, online, reconnecting, needs_sign_in, error, stopped.
    state: ConnectionState,
    /// Why, for people.
    reason: Option<String>,
    /// Last acknowledged heartbeat (unix seconds).
    last_heartbeat_at: Option<i64>,
    /// Relay clock minus local clock (seconds).
    clock_offset_secs: i64,
    /// Activity events waiting for the relay.
    pending_events: u64,
    /// The running agent's tunnel (`{"state":"reconnecting","at":…,"in_secs":…,"reason":…}`…);
    /// absent when no agent runs.
    tunnel: Option<TunnelStatus>,
    /// The running agent's live status from its control socket; absent when no agent runs.
    live: Option<StatusReport>,
}

pub(crate) fn run(dirs: &KatachiDirs, args: &StatusArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let rt = crate::agent_control::runtime()?;
    let agent = crate::agent_control::connect(&rt, dirs)?;
    if args.watch {
        let agent = agent.ok_or_else(|| {
            anyhow::anyhow!(
                "no agent is running; start one with `katachi start` (or the Katachi app)"
            )
        })?;
        return rt.block_on(watch(agent, out));
    }
    let live = match agent {
        Some(mut agent) => Some(rt.block_on(agent.status())?),
        None => None,
    };
    drop(rt);
    let recorded = StatusFile::new(dirs.agent_status_path()).read()?;
    // The credentials file is what "registered" means; the status file only says how it goes.
    // Without one there is nothing to open, so no keychain is needed.
    let credentials = if dirs.agent_credentials_path().exists() {
        let home = AgentHome::open(dirs.clone(), &SystemFingerprint)
            .context("cannot open the agent's secrets")?;
        AgentCredentials::load(&home)?
    } else {
        None
    };
    let mut view = combine(credentials.as_ref(), recorded);
    if let Some(report) = live {
        view.running = true;
        view.live = Some(report);
    }
    out.emit(&view, || render(&view));
    Ok(ExitCode::SUCCESS)
}

/// Merges what the credentials say with the last status the agent wrote.
fn combine(credentials: Option<&AgentCredentials>, recorded: Option<AgentStatus>) -> StatusView {
    let registered = credentials.is_some();
    let mut view = StatusView {
        registered,
        relay_url: credentials.map(|c| c.relay_url().as_str().to_owned()),
        agent_id: credentials.map(|c| c.agent_id().to_owned()),
        running: false,
        state: if registered {
            ConnectionState::Stopped
        } else {
            ConnectionState::NeedsSignIn
        },
        reason: if registered {
            Some("the agent is not running; start it with `katachi start`".to_owned())
        } else {
            Some("not registered; sign in with `katachi start --relay URL`".to_owned())
        },
        last_heartbeat_at: None,
        clock_offset_secs: 0,
        pending_events: 0,
        tunnel: None,
        live: None,
    };
    let Some(status) = recorded else {
        return view;
    };
    view.last_heartbeat_at = status.last_heartbeat_at;
    view.clock_offset_secs = status.clock_offset_secs;
    view.pending_events = status.pending_events;
    let same_agent = !registered || status.agent_id.is_none() || status.agent_id == view.agent_id;
    let running =
        status.state != ConnectionState::Stopped && same_agent && status.writer_is_running();
    if running {
        view.running = true;
        view.state = status.state;
        view.reason = status.reason;
        view.tunnel = status.tunnel;
        if view.relay_url.is_none() {
            view.relay_url = status.relay_url;
        }
    }
    view
}

/// Prints the running agent's status, then each change, until Ctrl-C or the agent stops.
async fn watch(agent: Client, out: &Output) -> anyhow::Result<ExitCode> {
    let mut stream = agent.watch().await?;
    loop {
        tokio::select! {
            next = stream.next() => match next? {
                Some(report) => out.event(&report, || describe(&report)),
                None => {
                    out.warn("the agent stopped");
                    return Ok(ExitCode::SUCCESS);
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// The live status in one line for people.
pub(crate) fn describe(report: &StatusReport) -> String {
    let state = match &report.status {
        Status::SignedOut {
            reason: Some(reason),
        } => format!("signed out: {reason}"),
        Status::SignedOut { reason: None } => "signed out".to_owned(),
        Status::WaitingForApproval {
            user_code,
            verification_uri,
            expires_at,
        } => format!(
            "waiting for approval: enter {user_code} at {verification_uri} (until {})",
            local_time(*expires_at)
        ),
        Status::Connecting => "connecting".to_owned(),
        Status::Connected {
            since,
            relay,
            agent_name,
        } => format!(
            "connected to {relay} as {agent_name} since {}",
            local_time(*since)
        ),
        Status::Reconnecting {
            in_secs, reason, ..
        } => {
            format!("reconnecting in {in_secs} s: {reason}")
        }
        Status::Paused { until } => format!("paused until {}", local_time(*until)),
        Status::Error { message, fix } => format!("error: {message}; {fix}"),
    };
    match report.by {
        Some(by) => format!("{state} (pid {}, {by})", report.pid),
        None => format!("{state} (pid {})", report.pid),
    }
}

fn render(v: &StatusView) -> String {
    let mut lines = Vec::new();
    if let Some(report) = &v.live {
        lines.push(format!("agent:           {}", describe(report)));
    }
    match (&v.agent_id, &v.relay_url) {
        (Some(id), Some(relay)) if v.registered => {
            lines.push(format!("registered:      yes, agent {id} at {relay}"));
        }
        _ => lines.push("registered:      no".to_owned()),
    }
    let state = match &v.reason {
        Some(reason) => format!("{} ({reason})", v.state.label()),
        None => v.state.label().to_owned(),
    };
    lines.push(format!("state:           {state}"));
    if let Some(tunnel) = &v.tunnel {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        lines.push(format!("tunnel:          {}", tunnel.describe(now)));
    }
    if let Some(at) = v.last_heartbeat_at {
        let when = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
        let age = std::time::SystemTime::now()
            .duration_since(when)
            .map(|d| format!(" ({} s ago)", d.as_secs()))
            .unwrap_or_default();
        lines.push(format!(
            "last heartbeat:  {}{age}",
            humantime::format_rfc3339_seconds(when)
        ));
    }
    if v.registered {
        lines.push(format!("clock offset:    {:+} s", v.clock_offset_secs));
        lines.push(format!("pending events:  {}", v.pending_events));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_agent_shows_its_tunnel_in_text_and_json() {
        let mut recorded = AgentStatus::new(ConnectionState::Online);
        recorded.tunnel = Some(TunnelStatus::Reconnecting {
            at: i64::MAX / 2,
            in_secs: 4,
            reason: "relay unreachable (connection refused)".to_owned(),
        });
        let view = combine(None, Some(recorded));
        assert!(view.running);
        let text = render(&view);
        assert!(
            text.contains("tunnel:          reconnecting in ")
                && text.contains(" s: relay unreachable (connection refused)"),
            "{text}"
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["tunnel"]["state"], "reconnecting");
        assert_eq!(json["tunnel"]["in_secs"], 4);
    }

    #[test]
    fn a_stopped_agent_shows_no_tunnel() {
        let mut recorded = AgentStatus::new(ConnectionState::Stopped);
        recorded.tunnel = Some(TunnelStatus::Connected {
            since: 0,
            carrier: Default::default(),
        });
        let view = combine(None, Some(recorded));
        assert!(view.tunnel.is_none());
        assert!(!render(&view).contains("tunnel:"));
    }
}
