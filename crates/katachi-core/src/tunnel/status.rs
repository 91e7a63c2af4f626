//! The tunnel's [`TunnelStatus`]: what the reconnect loop publishes on a `watch` channel for the
//! tray and the CLI, and what `katachi start` records in the agent's status file.
//!
//! Times are wall-clock unix seconds, so a status read back by another process (`katachi status`)
//! still says when the tunnel came up or when the next attempt is due.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::carrier::Carrier;

/// Where the agent's tunnel to the relay stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TunnelStatus {
    /// Dialing the relay (first attempt, or right after a network change).
    Connecting,
    /// The tunnel is up and serving the API.
    Connected {
        /// When it came up (unix seconds).
        since: i64,
        /// What carries it (`direct` when read from a status written before carriers existed).
        #[serde(default)]
        carrier: Carrier,
    },
    /// The tunnel is down; the next attempt is scheduled.
    Reconnecting {
        /// When the next attempt starts (unix seconds).
        at: i64,
        /// The wait, as decided when it was scheduled (seconds, rounded up).
        in_secs: u64,
        /// Why the last attempt or the last tunnel failed (one line, no secret).
        reason: String,
    },
    /// The relay refused the agent itself (revoked, unknown, bad credentials): sign in again. The
    /// loop has stopped.
    NeedsSignIn {
        /// What the relay said.
        reason: String,
    },
    /// The set-up cannot work (bad relay URL, unusable CA, a refusal retrying cannot fix). The loop
    /// has stopped.
    Error {
        /// What is wrong.
        reason: String,
    },
}

impl TunnelStatus {
    /// A `Reconnecting` status for an attempt `wait` from now.
    pub(crate) fn reconnecting(wait: Duration, reason: String) -> Self {
        let in_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        TunnelStatus::Reconnecting {
            at: unix_now().saturating_add(i64::try_from(in_secs).unwrap_or(i64::MAX)),
            in_secs,
            reason,
        }
    }

    /// A `Connected` status from now, over `carrier`.
    pub(crate) fn connected_now(carrier: Carrier) -> Self {
        TunnelStatus::Connected {
            since: unix_now(),
            carrier,
        }
    }

    /// The stable word for the state (`connecting`, `connected`, `reconnecting`,
    /// `needs_sign_in`, `error`), as serialised.
    pub fn state_word(&self) -> &'static str {
        match self {
            TunnelStatus::Connecting => "connecting",
            TunnelStatus::Connected { .. } => "connected",
            TunnelStatus::Reconnecting { .. } => "reconnecting",
            TunnelStatus::NeedsSignIn { .. } => "needs_sign_in",
            TunnelStatus::Error { .. } => "error",
        }
    }

    /// One line for people, as of `now` (unix seconds): `connected since 2025-01-02T03:04:05Z`
    /// (`… over the WebSocket carrier` when that carries it),
    /// `reconnecting in 4 s: relay unreachable (connection refused)`, `needs sign-in: …`.
    pub fn describe(&self, now: i64) -> String {
        match self {
            TunnelStatus::Connecting => "connecting".to_owned(),
            TunnelStatus::Connected { since, carrier } => {
                let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(*since).unwrap_or(0));
                let since = humantime::format_rfc3339_seconds(at);
                match carrier {
                    Carrier::Direct => format!("connected since {since}"),
                    Carrier::WebSocket => {
                        format!("connected since {since} over the WebSocket carrier")
                    }
                }
            }
            TunnelStatus::Reconnecting { at, reason, .. } => {
                let left = at.saturating_sub(now).max(0);
                format!("reconnecting in {left} s: {reason}")
            }
            TunnelStatus::NeedsSignIn { reason } => format!("needs sign-in: {reason}"),
            TunnelStatus::Error { reason } => format!("error: {reason}"),
        }
    }
}

/// A status channel for [`super::TunnelDialer::serve_with_reconnect`], starting at `Connecting`;
/// subscribe with [`watch::Sender::subscribe`] or keep the receiver.
pub fn status_channel() -> (watch::Sender<TunnelStatus>, watch::Receiver<TunnelStatus>) {
    watch::channel(TunnelStatus::Connecting)
}

/// Wall-clock unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_says_how_long_is_left_and_why() {
        let s = TunnelStatus::Reconnecting {
            at: 1_000_004,
            in_secs: 4,
            reason: "relay unreachable (connection refused)".into(),
        };
        assert_eq!(
            s.describe(1_000_000),
            "reconnecting in 4 s: relay unreachable (connection refused)"
        );
        // Read back late (the attempt is under way): never a negative wait.
        assert!(s.describe(2_000_000).starts_with("reconnecting in 0 s"));
    }

    #[test]
    fn connected_names_the_moment_it_came_up_and_a_websocket_carrier() {
        let s = TunnelStatus::Connected {
            since: 0,
            carrier: Carrier::Direct,
        };
        assert_eq!(s.describe(5), "connected since 1970-01-01T00:00:00Z");
        let s = TunnelStatus::Connected {
            since: 0,
            carrier: Carrier::WebSocket,
        };
        assert_eq!(
            s.describe(5),
            "connected since 1970-01-01T00:00:00Z over the WebSocket carrier"
        );
        // A status file written before carriers existed still reads.
        let old: TunnelStatus = serde_json::from_str(r#"{"state":"connected","since":7}"#).unwrap();
        assert_eq!(
            old,
            TunnelStatus::Connected {
                since: 7,
                carrier: Carrier::Direct
            }
        );
    }

    #[test]
    fn statuses_serialise_with_a_stable_state_tag() {
        let s = TunnelStatus::NeedsSignIn {
            reason: "agent.revoked".into(),
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["state"], "needs_sign_in");
        assert_eq!(json["reason"], "agent.revoked");
        assert_eq!(s.state_word(), "needs_sign_in");
        let back: TunnelStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_sub_second_wait_rounds_up() {
        let s = TunnelStatus::reconnecting(Duration::from_millis(300), "x".into());
        assert!(matches!(s, TunnelStatus::Reconnecting { in_secs: 1, .. }));
    }
}
