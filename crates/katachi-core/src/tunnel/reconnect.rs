//! Keeping a tunnel up: redial after transient failures following the [`super::backoff`] policy,
//! cut the wait short when the network changes, and publish each [`TunnelStatus`] on a `watch`
//! channel.
//!
//! The loop stops only when the relay refuses the agent for good ([`TunnelStatus::NeedsSignIn`])
//! or the set-up cannot work ([`TunnelStatus::Error`]); cancel it otherwise by dropping its future.

use std::future::Future;

use axum::Router;
use tokio::sync::watch;
use tokio::time::Instant;

use super::backoff::{Backoff, Failure, NETWORK_SETTLE};
use super::carrier::Carrier;
use super::dial::{OpenTunnel, TunnelDialer, TunnelError};
use super::network::NetworkChanges;
use super::status::TunnelStatus;

/// What [`TunnelDialer::serve_with_reconnect`] reports to and listens to.
pub struct ReconnectOptions {
    /// Where each status is published (see [`super::status_channel`]); subscribers get every
    /// change, the last one first.
    pub status: watch::Sender<TunnelStatus>,
    /// What says "the network changed" ([`super::SystemNetworkChanges`] in the agent,
    /// [`super::ManualNetworkChanges`] in tests).
    pub network: Box<dyn NetworkChanges>,
}

impl std::fmt::Debug for ReconnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectOptions")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// One way of opening and serving tunnels: the real dialer in the agent, a scripted one in tests.
pub(crate) trait Link: Sync {
    /// An open tunnel, ready to serve.
    type Open: Send;
    /// Opens a tunnel.
    fn dial(&self) -> impl Future<Output = Result<Self::Open, TunnelError>> + Send;
    /// Serves an open tunnel until it ends.
    fn serve(&self, open: Self::Open) -> impl Future<Output = Result<(), TunnelError>> + Send;
    /// What carries an open tunnel, for the status.
    fn carrier(&self, _open: &Self::Open) -> Carrier {
        Carrier::Direct
    }
}

/// The real [`Link`]: the dialer and the router it serves.
struct RouterLink<'a> {
    /// Opens tunnels.
    dialer: &'a TunnelDialer,
    /// What is served over each.
    router: Router,
}

impl Link for RouterLink<'_> {
    type Open = OpenTunnel;

    fn dial(&self) -> impl Future<Output = Result<Self::Open, TunnelError>> + Send {
        self.dialer.dial()
    }

    fn serve(&self, open: Self::Open) -> impl Future<Output = Result<(), TunnelError>> + Send {
        self.dialer.serve(open, self.router.clone())
    }

    fn carrier(&self, open: &OpenTunnel) -> Carrier {
        open.carrier
    }
}

impl TunnelDialer {
    /// Keeps a tunnel up, serving `router`, until the relay refuses the agent for good (revoked,
    /// unknown, bad credentials: status [`TunnelStatus::NeedsSignIn`]) or the set-up is unusable
    /// ([`TunnelStatus::Error`]); that error is returned. Transient failures (network, relay
    /// restart, timeouts) are retried following [`super::backoff`]; a network change cuts a wait
    /// short. Cancel by dropping the future (for example in a `tokio::select!` with a shutdown
    /// signal).
    pub async fn serve_with_reconnect(
        &self,
        router: Router,
        options: ReconnectOptions,
    ) -> TunnelError {
        keep_up(
            &RouterLink {
                dialer: self,
                router,
            },
            options,
        )
        .await
    }
}

/// The reconnect loop over any [`Link`].
pub(crate) async fn keep_up<L: Link>(link: &L, options: ReconnectOptions) -> TunnelError {
    let ReconnectOptions {
        status,
        mut network,
    } = options;
    let mut policy = Backoff::new(Instant::now());
    status.send_replace(TunnelStatus::Connecting);
    loop {
        let (kind, reason) = match link.dial().await {
            Ok(open) => {
                let up_since = Instant::now();
                status.send_replace(TunnelStatus::connected_now(link.carrier(&open)));
                let ended = link.serve(open).await;
                policy.tunnel_ended(up_since.elapsed(), Instant::now());
                let reason = match ended {
                    Ok(()) => "the relay closed the tunnel".to_owned(),
                    Err(e) => e.to_string(),
                };
                (Failure::Unreachable, reason)
            }
            Err(e) if e.is_transient() => {
                let kind = match e {
                    TunnelError::Refused { .. } | TunnelError::Timeout(_) => Failure::Refused,
                    _ => Failure::Unreachable,
                };
                (kind, e.to_string())
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(error = %reason, "tunnel refused for good; not redialing");
                status.send_replace(if e.needs_sign_in() {
                    TunnelStatus::NeedsSignIn { reason }
                } else {
                    TunnelStatus::Error { reason }
                });
                return e;
            }
        };
        let wait = policy.next_wait(kind, Instant::now(), &mut rand::thread_rng());
        if policy.failures() == 1 {
            tracing::warn!(error = %reason, ?wait, "tunnel down; reconnecting");
        } else {
            tracing::debug!(error = %reason, ?wait, failures = policy.failures(), "tunnel still down");
        }
        status.send_replace(TunnelStatus::reconnecting(wait, reason));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = network.changed() => {
                tracing::info!("network changed; redialing the relay now");
                policy.network_changed(Instant::now());
                status.send_replace(TunnelStatus::Connecting);
                tokio::time::sleep(NETWORK_SETTLE).await;
            }
        }
    }
}

#[cfg(test)]
#[path = "reconnect_tests.rs"]
mod tests;
