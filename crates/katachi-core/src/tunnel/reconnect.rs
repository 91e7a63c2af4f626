//! Keeping a tunnel up: redial with jittered exponential backoff after transient failures.

use std::time::Duration;

use axum::Router;
use rand::Rng;

use super::dial::{TunnelDialer, TunnelError};

/// First wait after a failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A tunnel that stayed up this long resets the backoff (the failure is not a pattern).
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The wait before attempt `failures + 1`: `min(BACKOFF_MAX, BACKOFF_MIN * 2^failures)`, then a
/// random point in its upper half ("equal jitter"), so many agents cut off by one relay restart
/// do not all come back in the same second.
pub fn backoff(failures: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(BACKOFF_MAX);
    let half = ceiling / 2;
    half + half.mul_f64(rng.gen::<f64>())
}

impl TunnelDialer {
    /// Keeps a tunnel up, serving `router`, until the relay refuses the agent for good (revoked,
    /// unknown, bad credentials) or the set-up is unusable; that error is returned. Transient
    /// failures (network, relay restart, timeouts) are retried with [`backoff`]. Cancel by dropping
    /// the future (for example in a `tokio::select!` with a shutdown signal).
    pub async fn serve_with_reconnect(&self, router: Router) -> TunnelError {
        let mut failures: u32 = 0;
        loop {
            let started = tokio::time::Instant::now();
            let outcome = self.dial_and_serve(router.clone()).await;
            if started.elapsed() >= STABLE_AFTER {
                failures = 0;
            }
            match outcome {
                Ok(()) => tracing::info!("tunnel closed by the relay; reconnecting"),
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "tunnel down; reconnecting");
                }
                Err(e) => return e,
            }
            let wait = backoff(failures, &mut rand::thread_rng());
            failures = failures.saturating_add(1);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_stays_in_the_upper_half() {
        let mut rng = rand::thread_rng();
        for failures in 0..40 {
            let ceiling = BACKOFF_MIN
                .saturating_mul(2u32.saturating_pow(failures.min(16)))
                .min(BACKOFF_MAX);
            for _ in 0..20 {
                let wait = backoff(failures, &mut rng);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "{failures}: {wait:?}"
                );
            }
        }
        assert!(backoff(0, &mut rng) <= BACKOFF_MIN);
        assert!(backoff(100, &mut rng) >= BACKOFF_MAX / 2);
    }
}
