//! When a failed provider call is tried again, and after how long.
//!
//! Retried: connection errors and 429/500/502/503/504/529, only before the answer started
//! streaming (a stream is never replayed: the user already saw part of it). Never retried:
//! 400/401/403/404 and other 4xx. The wait is exponential backoff with jitter, or the provider's
//! `Retry-After` (seconds or an HTTP date) when it sent one; a `Retry-After` longer than
//! [`RetryPolicy::max_retry_after`] fails at once with a message saying when to try again.

use std::time::{Duration, SystemTime};

/// How a provider call is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// The first backoff; doubled per attempt, with jitter (50–100 % of the value).
    pub base_delay: Duration,
    /// The longest backoff between two attempts.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; beyond it the call fails with the wait in its message.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff after attempt `attempt` (1-based) failed: `base * 2^(attempt-1)`, capped at
    /// `max_delay`, times a random 50–100 % so clients that failed together do not retry together.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        use rand::Rng;
        let exponent = attempt.saturating_sub(1).min(16);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let jitter = rand::thread_rng().gen_range(0.5..=1.0);
        full.mul_f64(jitter)
    }
}

/// True for the statuses worth another attempt: rate limited, or the provider failing or
/// overloaded (Anthropic's 529).
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3), relative to `now`.
/// `None` when it is neither; a date in the past is a zero wait.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // some providers send fractional seconds ("1.5")
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Some(Duration::from_secs_f64(seconds.min(1e9)));
        }
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn only_rate_limits_and_server_failures_are_retried() {
        for status in [429, 500, 502, 503, 504, 529] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 422, 501] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }
}
