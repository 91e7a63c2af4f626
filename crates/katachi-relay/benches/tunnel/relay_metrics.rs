//! The relay's own view of request latency: its `request_duration_seconds` histogram (time from a
//! request reaching the relay's router to its response headers), scraped from the metrics
//! listener. Subtracting two scrapes gives one phase; quantiles are bucket bounds (1 ms … 10 s).

use prometheus_parse::{Scrape, Value};

/// One route's histogram: cumulative counts per upper bound (seconds), `+Inf` last.
#[derive(Clone, Default)]
pub struct RouteHistogram {
    buckets: Vec<(f64, u64)>,
}

impl RouteHistogram {
    /// What was observed since `before`.
    pub fn minus(&self, before: &RouteHistogram) -> RouteHistogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| {
                let then = before
                    .buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0, |(_, c)| *c);
                (*le, n.saturating_sub(then))
            })
            .collect();
        RouteHistogram { buckets }
    }

    /// Both together (two parts of one setting).
    pub fn plus(&self, other: &RouteHistogram) -> RouteHistogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| {
                let more = other
                    .buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0, |(_, c)| *c);
                (*le, n + more)
            })
            .collect();
        RouteHistogram { buckets }
    }

    /// Requests observed.
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, n)| *n)
    }

    /// The upper bound (ms) of the bucket holding the `p` quantile; `f64::INFINITY` past 10 s,
    /// NaN with no requests.
    pub fn quantile_bound_ms(&self, p: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return f64::NAN;
        }
        let rank = (total as f64 * p).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= rank)
            .map_or(f64::INFINITY, |(le, _)| le * 1e3)
    }
}

/// The histograms of `routes` (route label values) from the relay's metrics at `port`; empty
/// histograms when the listener does not answer.
pub async fn scrape(port: u16, routes: &[&str]) -> Vec<RouteHistogram> {
    let text = match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let scraped = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok();
    routes
        .iter()
        .map(|route| {
            let mut buckets: Vec<(f64, u64)> = scraped
                .iter()
                .flat_map(|s| &s.samples)
                .filter(|s| {
                    s.metric == "katachi_relay_request_duration_seconds"
                        && s.labels.get("route") == Some(*route)
                })
                .find_map(|s| match &s.value {
                    Value::Histogram(counts) => Some(
                        counts
                            .iter()
                            .map(|c| (c.less_than, c.count as u64))
                            .collect(),
                    ),
                    _ => None,
                })
                .unwrap_or_default();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            RouteHistogram { buckets }
        })
        .collect()
}
