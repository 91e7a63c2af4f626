//! When to redial: the reconnect policy of the tunnel.
//!
//! # The policy
//! - **Fast phase.** The first [`FAST_WINDOW`] of an outage — from the agent's start, from the drop
//!   of a tunnel that had been up at least [`STABLE_AFTER`], or from a network change — retries a
//!   relay that cannot be reached every 0.5–1.5 s (uniformly random). The first redial after such a
//!   drop waits only 0–0.5 s. So a relay restart (seconds to tens of seconds) is followed by a
//!   reconnect at most ~1.5 s after the relay listens again: the issue asks for 2 s.
//! - **Slow phase.** After that, and at once for a relay that *answers* but refuses for now
//!   (`5xx`, `429`), waits grow exponentially from 1 s to [`BACKOFF_MAX`] (60 s) with "equal
//!   jitter": a random point in the upper half of `min(60 s, 1 s · 2ⁿ)`.
//! - **Network change.** Cuts the current wait short (after a 250 ms settle, so the burst of
//!   events of one link coming up counts once), resets the failure count and opens a new fast
//!   phase: a laptop that joins a network reconnects at once.
//! - **Flapping.** A tunnel that drops before [`STABLE_AFTER`] counts as a failure and opens no new
//!   fast phase, so a relay that accepts and then closes at once gets the slow phase.
//!
//! # Why this shape (thundering herd)
//! A relay restart cuts every agent off in the same instant. Retrying a *closed port* costs the
//! relay host a SYN and a RST each, handled by the kernel: thousands of agents probing every
//! second during the fast phase are cheap. What is expensive is the TLS handshakes when the relay
//! is back; the random spread of the fast phase (a 1 s wide window, the 0–0.5 s first wait) turns
//! 10,000 agents into ~10,000 handshakes spread over a second or two, not a spike in one
//! millisecond, and any agent the busy relay refuses (`503`/`429`) or times out drops to the slow,
//! exponential phase. Outages longer than the fast phase (a relay down for maintenance, a laptop
//! offline) settle at one attempt per 30–60 s per agent.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// How long an outage is retried fast.
pub const FAST_WINDOW: Duration = Duration::from_secs(30);
/// How long a tunnel must have been up for its drop to start a new fast phase.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// The first redial after a drop waits up to this (spreads agents cut off together).
const FIRST_REDIAL_MAX: Duration = Duration::from_millis(500);
/// Spacing of fast-phase attempts: uniform in `[FAST_MIN, FAST_MAX]`.
const FAST_MIN: Duration = Duration::from_millis(500);
/// See [`FAST_MIN`].
const FAST_MAX: Duration = Duration::from_millis(1500);
/// First ceiling of the slow phase.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Settle time after a network change before the attempt it triggers.
pub const NETWORK_SETTLE: Duration = Duration::from_millis(250);

/// What kind of failure the next wait follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The relay could not be reached, or the tunnel broke (fast phase applies).
    Unreachable,
    /// The relay answered and refused for now (`5xx`, `429`…): only the slow phase applies.
    Refused,
}

/// The wait of slow-phase step `step`: `min(BACKOFF_MAX, BACKOFF_MIN · 2^step)`, then a random
/// point in its upper half ("equal jitter").
pub fn backoff(step: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(step.min(16)))
        .min(BACKOFF_MAX);
    let half = ceiling / 2;
    half + half.mul_f64(rng.gen::<f64>())
}

/// The reconnect policy's memory: failures so far and the end of the current fast phase.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Failed attempts since the last success, stable drop or network change.
    failures: u32,
    /// Steps taken in the slow phase (its exponent).
    slow_steps: u32,
    /// Until when unreachable-relay failures are retried fast.
    fast_until: Instant,
}

impl Backoff {
    /// A policy whose first fast phase starts at `now` (the agent's start).
    pub fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            slow_steps: 0,
            fast_until: now + FAST_WINDOW,
        }
    }

    /// Failed attempts counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A tunnel that was up for `uptime` ended at `now`.
    pub fn tunnel_ended(&mut self, uptime: Duration, now: Instant) {
        if uptime >= STABLE_AFTER {
            self.failures = 0;
            self.slow_steps = 0;
            self.fast_until = now + FAST_WINDOW;
        }
    }

    /// The network changed at `now`: forget the failures, retry fast again.
    pub fn network_changed(&mut self, now: Instant) {
        self.failures = 0;
        self.slow_steps = 0;
        self.fast_until = now + FAST_WINDOW;
    }

    /// Counts a failure of `kind` at `now` and says how long to wait before the next attempt.
    pub fn next_wait(&mut self, kind: Failure, now: Instant, rng: &mut impl Rng) -> Duration {
        let first = self.failures == 0;
        self.failures = self.failures.saturating_add(1);
        if kind == Failure::Unreachable && now < self.fast_until {
            return if first {
                FIRST_REDIAL_MAX.mul_f64(rng.gen::<f64>())
            } else {
                FAST_MIN + (FAST_MAX - FAST_MIN).mul_f64(rng.gen::<f64>())
            };
        }
        let wait = backoff(self.slow_steps, rng);
        self.slow_steps = self.slow_steps.saturating_add(1);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_backoff_grows_to_the_cap_and_stays_in_the_upper_half() {
        let mut rng = rand::thread_rng();
        for step in 0..40 {
            let ceiling = BACKOFF_MIN
                .saturating_mul(2u32.saturating_pow(step.min(16)))
                .min(BACKOFF_MAX);
            for _ in 0..20 {
                let wait = backoff(step, &mut rng);
                assert!(wait >= ceiling / 2 && wait <= ceiling, "{step}: {wait:?}");
            }
        }
        assert!(backoff(100, &mut rng) >= BACKOFF_MAX / 2);
    }

    #[test]
    fn an_unreachable_relay_is_retried_within_1_5_s_during_the_fast_phase() {
        let mut rng = rand::thread_rng();
        let start = Instant::now();
        let mut policy = Backoff::new(start);
        let first = policy.next_wait(Failure::Unreachable, start, &mut rng);
        assert!(first <= FIRST_REDIAL_MAX, "{first:?}");
        let mut at = start;
        while at < start + FAST_WINDOW {
            let wait = policy.next_wait(Failure::Unreachable, at, &mut rng);
            assert!(wait >= FAST_MIN && wait <= FAST_MAX, "{wait:?}");
            at += wait;
        }
        // Past the fast phase: exponential, from the bottom.
        let wait = policy.next_wait(Failure::Unreachable, at, &mut rng);
        assert!(wait <= BACKOFF_MIN, "{wait:?}");
        let mut last = wait;
        for _ in 0..12 {
            last = policy.next_wait(Failure::Unreachable, at, &mut rng);
        }
        assert!(last >= BACKOFF_MAX / 2 && last <= BACKOFF_MAX, "{last:?}");
    }

    #[test]
    fn a_relay_that_refuses_gets_the_slow_phase_at_once() {
        let mut rng = rand::thread_rng();
        let now = Instant::now();
        let mut policy = Backoff::new(now);
        let waits: Vec<_> = (0..8)
            .map(|_| policy.next_wait(Failure::Refused, now, &mut rng))
            .collect();
        assert!(waits[7] >= Duration::from_secs(64).min(BACKOFF_MAX) / 2);
    }

    #[test]
    fn a_stable_tunnel_that_drops_reopens_the_fast_phase_but_a_flapping_one_does_not() {
        let mut rng = rand::thread_rng();
        let start = Instant::now();
        let mut policy = Backoff::new(start);
        let later = start + Duration::from_secs(3600);
        // Up for an hour, then dropped: fast again, the first redial within 0.5 s.
        policy.tunnel_ended(Duration::from_secs(3600), later);
        assert!(policy.next_wait(Failure::Unreachable, later, &mut rng) <= FIRST_REDIAL_MAX);
        assert_eq!(policy.failures(), 1);

        // Long after, failing slowly; a tunnel that lasts 1 s changes nothing.
        let much_later = later + Duration::from_secs(600);
        for _ in 0..10 {
            policy.next_wait(Failure::Unreachable, much_later, &mut rng);
        }
        policy.tunnel_ended(Duration::from_secs(1), much_later);
        assert!(policy.next_wait(Failure::Unreachable, much_later, &mut rng) >= BACKOFF_MAX / 2);

        // A network change resets everything.
        policy.network_changed(much_later);
        assert_eq!(policy.failures(), 0);
        assert!(policy.next_wait(Failure::Unreachable, much_later, &mut rng) <= FIRST_REDIAL_MAX);
    }
}
