//! A cheap in-memory limiter in front of the endpoints that cost the relay work or rows: sign-in,
//! sign-up (argon2) and device codes (a row each).
//!
//! Keyed by the client's address ([`crate::client_ip`]: behind a trusted proxy, the one it names)
//! bucket ([`crate::client_addr`]: IPv4 address, IPv6 /64), GCRA
//! (`governor`): a burst, then a steady rate. Over it, the answer is `429` with `Retry-After`, before
//! any database or hashing work. Each relay instance counts on its own; the store's per-address
//! windows and the per-account delays stay the shared limits behind it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client_addr::address_bucket;
use crate::client_ip::ClientIp;
use crate::state::AppState;

/// The limiter's budget per address bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressQuota {
    /// Requests one bucket may make at once.
    pub burst: u32,
    /// Requests it regains per minute.
    pub per_minute: u32,
}

impl Default for AddressQuota {
    /// 30 at once, then one every two seconds: far above a person, far below a flood.
    fn default() -> Self {
        Self {
            burst: 30,
            per_minute: 30,
        }
    }
}

/// Keyed rate limiter over client address buckets.
#[derive(Debug)]
pub struct AddressLimiter {
    /// GCRA state per bucket.
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl AddressLimiter {
    /// A limiter with `quota` per address bucket (zeros count as one).
    pub fn new(quota: AddressQuota) -> Self {
        let one = NonZeroU32::MIN;
        let per_minute = NonZeroU32::new(quota.per_minute).unwrap_or(one);
        let burst = NonZeroU32::new(quota.burst).unwrap_or(one);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
        }
    }

    /// Counts a request from `ip`: `Err(wait)` when its bucket is over the quota.
    ///
    /// # Errors
    /// How long until the bucket may make its next request.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&address_bucket(ip))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets buckets that are full again (bounds memory; called periodically).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Middleware: posts over the quota are answered `429` with `Retry-After`, in the shape the route
/// speaks (OAuth JSON for the device endpoint, a page for forms). Other methods pass.
pub async fn limit_posts_by_address(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Err(wait) = state.address_limiter.check(client) else {
        return next.run(request).await;
    };
    state.metrics.rate_limited(crate::metrics::Limiter::Address);
    // Rounded up: a client that waits exactly this long finds its next request allowed.
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let message = format!("too many requests from this address; try again in {secs} s");
    let mut response = if request.uri().path() == katachi_proto::device::DEVICE_CODE_PATH {
        (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(katachi_proto::device::TokenError {
                error: katachi_proto::device::TokenErrorCode::SlowDown,
                error_description: Some(message),
            }),
        )
            .into_response()
    } else {
        (
            StatusCode::TOO_MANY_REQUESTS,
            crate::web::layout::message_page(
                "Too many requests",
                &format!("Too many requests from this address; try again in {secs} seconds."),
            ),
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_over_its_burst_waits_and_other_buckets_do_not() {
        let limiter = AddressLimiter::new(AddressQuota {
            burst: 2,
            per_minute: 1,
        });
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(same_64).is_ok());
        // The third from the same /64 is over the burst, whichever address it uses.
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(60));
        assert!(limiter.check(other).is_ok());
    }
}
