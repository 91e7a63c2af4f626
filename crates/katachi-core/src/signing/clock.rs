//! Time for signed requests: the local clock behind a trait, and the offset to the relay's clock.
//!
//! A machine whose clock is minutes off would have every signed call refused as stale or future.
//! Every relay response carries an HTTP `Date` header; the difference between it and the local
//! clock is the offset, and timestamps are signed as `local now + offset`. `Date` has one-second
//! resolution, so the offset is only replaced when it moves by [`OFFSET_JITTER_SECS`] or more,
//! unless the relay just refused a timestamp (then it is re-learnt unconditionally).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A change of the offset smaller than this is rounding noise of the one-second `Date` header.
pub(crate) const OFFSET_JITTER_SECS: i64 = 2;

/// Where "now" comes from: the system clock in the agent, a skewed one in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The local time, unix seconds.
    fn now_unix(&self) -> i64;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        unix_seconds(SystemTime::now())
    }
}

/// The machine's clock off by a fixed number of seconds: lets tests run an agent whose clock is
/// wrong against a real relay and prove that the offset corrects it.
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock {
    /// Seconds added to the system clock (negative: the agent's clock is behind).
    skew_secs: i64,
}

impl SkewedClock {
    /// The system clock plus `skew_secs`.
    pub fn new(skew_secs: i64) -> Self {
        Self { skew_secs }
    }
}

impl Clock for SkewedClock {
    fn now_unix(&self) -> i64 {
        SystemClock.now_unix().saturating_add(self.skew_secs)
    }
}

/// The relay's clock minus the local one, in seconds, shared by every request of one agent.
#[derive(Debug, Default)]
pub struct ClockOffset {
    /// Seconds to add to the local clock to get the relay's.
    secs: AtomicI64,
}

impl ClockOffset {
    /// Starts at `secs` (0 when nothing is known yet).
    pub fn new(secs: i64) -> Self {
        Self {
            secs: AtomicI64::new(secs),
        }
    }

    /// The current offset.
    pub fn secs(&self) -> i64 {
        self.secs.load(Ordering::Relaxed)
    }

    /// Takes the offset a response's `Date` header implies when it differs from the current one by
    /// [`OFFSET_JITTER_SECS`] or more; returns the offset now in force. An unparsable header
    /// changes nothing.
    pub fn observe(&self, date_header: &str, local_now: i64) -> i64 {
        if let Some(seen) = offset_from_date_header(date_header, local_now) {
            let current = self.secs();
            if (seen - current).abs() >= OFFSET_JITTER_SECS {
                self.secs.store(seen, Ordering::Relaxed);
                return seen;
            }
            return current;
        }
        self.secs()
    }

    /// Takes the offset a response's `Date` header implies, whatever it is: used after the relay
    /// refused a timestamp, when the current offset is known to be wrong. `None` (and nothing
    /// changes) when the header does not parse.
    pub fn relearn(&self, date_header: &str, local_now: i64) -> Option<i64> {
        let seen = offset_from_date_header(date_header, local_now)?;
        self.secs.store(seen, Ordering::Relaxed);
        Some(seen)
    }
}

/// The offset (relay − local, seconds) implied by an HTTP `Date` header (RFC 9110 IMF-fixdate, or
/// the obsolete forms `httpdate` accepts) read at local time `local_now`; `None` when unparsable.
pub fn offset_from_date_header(date_header: &str, local_now: i64) -> Option<i64> {
    let relay_now = unix_seconds(httpdate::parse_http_date(date_header.trim()).ok()?);
    Some(relay_now.saturating_sub(local_now))
}

/// Seconds since the Unix epoch (negative before it).
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Date` of 2023-11-14T22:13:20Z = 1_700_000_000.
    const DATE: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const RELAY_NOW: i64 = 1_700_000_000;

    #[test]
    fn offset_is_relay_minus_local() {
        assert_eq!(offset_from_date_header(DATE, RELAY_NOW), Some(0));
        // Local clock 5 minutes fast: subtract 300 s.
        assert_eq!(offset_from_date_header(DATE, RELAY_NOW + 300), Some(-300));
        // Local clock 2 minutes slow: add 120 s.
        assert_eq!(offset_from_date_header(DATE, RELAY_NOW - 120), Some(120));
        assert_eq!(offset_from_date_header("yesterday", RELAY_NOW), None);
        assert_eq!(offset_from_date_header("", RELAY_NOW), None);
    }

    #[test]
    fn obsolete_date_formats_are_understood() {
        assert_eq!(
            offset_from_date_header("Tuesday, 14-Nov-23 22:13:20 GMT", RELAY_NOW),
            Some(0)
        );
        assert_eq!(
            offset_from_date_header("Tue Nov 14 22:13:20 2023", RELAY_NOW),
            Some(0)
        );
    }

    #[test]
    fn one_second_jitter_is_ignored_but_real_skew_is_taken() {
        let offset = ClockOffset::default();
        assert_eq!(offset.observe(DATE, RELAY_NOW + 1), 0, "rounding noise");
        assert_eq!(offset.observe(DATE, RELAY_NOW - 1), 0, "rounding noise");
        assert_eq!(offset.observe(DATE, RELAY_NOW + 90), -90);
        assert_eq!(offset.secs(), -90);
        assert_eq!(offset.observe("garbage", RELAY_NOW), -90, "kept");
    }

    #[test]
    fn relearning_takes_the_new_offset_even_when_small() {
        let offset = ClockOffset::new(-90);
        assert_eq!(offset.relearn(DATE, RELAY_NOW + 1), Some(-1));
        assert_eq!(offset.secs(), -1);
        assert_eq!(offset.relearn("garbage", RELAY_NOW), None);
        assert_eq!(offset.secs(), -1);
    }

    #[test]
    fn skewed_clock_is_the_system_clock_plus_the_skew() {
        let system = SystemClock.now_unix();
        let skewed = SkewedClock::new(-600).now_unix();
        assert!((skewed - (system - 600)).abs() <= 1);
    }
}
