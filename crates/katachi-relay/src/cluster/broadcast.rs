//! What one instance tells all the others at once: revocations, sign-outs and tunnel take-overs,
//! over PostgreSQL `LISTEN/NOTIFY` on the channel [`CHANNEL`].
//!
//! # Contract
//! - [`publish`] sends after the database change it announces is committed, so a receiver that
//!   looks at the database sees it. On SQLite (one instance) it does nothing.
//! - [`listen`] applies what arrives: a revoked agent's tunnel and requests end, a signed-out
//!   session's requests end, and a tunnel taken over by another instance is closed here unless the
//!   routing table says this instance holds the agent's newest tunnel. Take-overs and revocations
//!   also forget the agent's remembered route (`route_cache.rs`); an instance that stops cleanly
//!   says so ([`Notice::Left`]) and every remembered route is forgotten, as when `LISTEN` goes down
//!   or comes back.
//! - Notifications are not durable: while the listening connection is down they are lost. The
//!   recheck of the database every 2 s (`tunnel_streams.rs`) stays as the backstop for revocations
//!   and sign-outs; a taken-over tunnel that missed its notice ends with its PINGs.
//! - Payloads are ids only (agent ids, session hashes: hex), never a secret; anything that does not
//!   parse is ignored.

use std::time::Duration;

use crate::state::AppState;

/// The notification channel.
pub const CHANNEL: &str = "katachi_relay";

/// One notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The agent was revoked (or unregistered).
    Revoked {
        /// Its id.
        agent_id: String,
    },
    /// The browser session signed out.
    SignedOut {
        /// Hash of the session id.
        session_hash: String,
    },
    /// The agent's tunnel is now on `instance_id`.
    TakenOver {
        /// The agent.
        agent_id: String,
        /// The instance that holds it now.
        instance_id: String,
    },
    /// The instance stopped cleanly: its routes are gone.
    Left {
        /// Its id.
        instance_id: String,
    },
}

impl Notice {
    /// The payload sent.
    pub fn encode(&self) -> String {
        match self {
            Self::Revoked { agent_id } => format!("revoked {agent_id}"),
            Self::SignedOut { session_hash } => format!("signed-out {session_hash}"),
            Self::TakenOver {
                agent_id,
                instance_id,
            } => format!("taken-over {agent_id} {instance_id}"),
            Self::Left { instance_id } => format!("left {instance_id}"),
        }
    }

    /// Parses a payload; `None` for anything else.
    pub fn decode(payload: &str) -> Option<Self> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let mut words = payload.split(' ');
        let notice = match (words.next()?, words.next(), words.next()) {
            ("revoked", Some(a), None) if ok(a) => Self::Revoked {
                agent_id: a.to_owned(),
            },
            ("signed-out", Some(s), None) if ok(s) => Self::SignedOut {
                session_hash: s.to_owned(),
            },
            ("taken-over", Some(a), Some(i)) if ok(a) && ok(i) => Self::TakenOver {
                agent_id: a.to_owned(),
                instance_id: i.to_owned(),
            },
            ("left", Some(i), None) if ok(i) => Self::Left {
                instance_id: i.to_owned(),
            },
            _ => return None,
        };
        words.next().is_none().then_some(notice)
    }
}

/// Sends `notice` to every instance (PostgreSQL); failures are logged: the 2 s recheck covers them.
pub async fn publish(state: &AppState, notice: Notice) {
    if let Err(e) = state.store.notify(CHANNEL, &notice.encode()).await {
        tracing::warn!(error = %e, ?notice, "broadcasting to the other relay instances failed");
    }
}

/// Listens on [`CHANNEL`] and applies every notice; runs until the relay stops. Only on
/// PostgreSQL; reconnects after a lost connection.
pub async fn listen(state: AppState) {
    let Some(url) = state
        .config
        .database_url
        .clone()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    else {
        return;
    };
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                } else {
                    state.cluster.set_listening(true);
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => match Notice::decode(n.payload()) {
                                Some(notice) => apply(&state, notice).await,
                                None => tracing::debug!("ignored a notice that does not parse"),
                            },
                            // The connection was lost: notices may have been missed (the
                            // rechecks cover revocations and sign-outs); listen again.
                            Ok(None) => {
                                tracing::warn!("the LISTEN connection was lost; reconnecting");
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                                break;
                            }
                        }
                    }
                    state.cluster.set_listening(false);
                }
            }
            Err(e) => tracing::warn!(
                error = %crate::store::redact_url(&e.to_string()),
                "cannot LISTEN for the other relay instances; retrying"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Acts on one notice.
async fn apply(state: &AppState, notice: Notice) {
    match notice {
        Notice::Revoked { agent_id } => {
            state.cluster.forget_route(&agent_id);
            if state.tunnels.close(&agent_id) {
                tracing::info!(agent = %agent_id, "tunnel of an agent revoked elsewhere closed");
            }
            state.agent_cache.evict_agent(&agent_id);
            state.streams.end_agent(&agent_id);
        }
        Notice::SignedOut { session_hash } => {
            state.streams.end_session(&session_hash);
        }
        Notice::Left { instance_id } => {
            if !state.cluster.is_me(&instance_id) {
                state.cluster.forget_routes();
            }
        }
        Notice::TakenOver {
            agent_id,
            instance_id,
        } => {
            state.cluster.forget_route(&agent_id);
            if state.cluster.is_me(&instance_id) || !state.tunnels.is_online(&agent_id) {
                return;
            }
            // This instance may have got a newer tunnel of the agent after the take-over: the
            // routing table orders them.
            match state.store.route_of(&agent_id, crate::now_unix()).await {
                Ok(Some(route)) if state.cluster.is_me(&route.instance.id) => {}
                Ok(_) => {
                    if state.tunnels.close(&agent_id) {
                        tracing::info!(agent = %agent_id, "tunnel taken over by another instance closed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "checking a take-over failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Notice;

    #[test]
    fn notices_round_trip_and_anything_else_is_ignored() {
        for n in [
            Notice::Revoked {
                agent_id: "agt_1f".into(),
            },
            Notice::SignedOut {
                session_hash: "abc123".into(),
            },
            Notice::TakenOver {
                agent_id: "agt_1f".into(),
                instance_id: "f00d".into(),
            },
            Notice::Left {
                instance_id: "f00d".into(),
            },
        ] {
            assert_eq!(Notice::decode(&n.encode()), Some(n));
        }
        for bad in [
            "",
            "revoked",
            "revoked a b",
            "revoked a;drop",
            "taken-over a",
            "left",
            "left a b",
            "signed-out ",
            "hello world",
        ] {
            assert_eq!(Notice::decode(bad), None, "{bad:?}");
        }
    }
}
