//! `katachi status`: registered or not, with which relay, and how the connection is doing (from the
//! running agent's status file).

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use katachi_core::agent_status::{AgentStatus, ConnectionState, StatusFile};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::tunnel::TunnelStatus;
use katachi_core::{AgentCredentials, AgentHome, KatachiDirs};
use serde::Serialize;

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
}

pub(crate) fn run(dirs: &KatachiDirs, out: &Output) -> anyhow::Result<ExitCode> {
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
    let view = combine(credentials.as_ref(), recorded);
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

fn render(v: &StatusView) -> String {
    let mut lines = Vec::new();
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
        recorded.tunnel = Some(TunnelStatus::Connected { since: 0 });
        let view = combine(None, Some(recorded));
        assert!(view.tunnel.is_none());
        assert!(!render(&view).contains("tunnel:"));
    }
}
