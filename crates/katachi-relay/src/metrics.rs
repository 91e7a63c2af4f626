//! The relay's Prometheus metrics: what the code counts, and the text `/metrics` serves.
//!
//! [`Metrics`] is held in [`crate::AppState`]; handlers call its cheap methods (an atomic add, or one
//! histogram observation), and [`Metrics::encode`] renders the Prometheus text format (version
//! 0.0.4, `prometheus-client`) for the metrics listener ([`crate::metrics_listener`]). `/metrics` is
//! never routed on the public listener.
//!
//! # Metrics (all prefixed `katachi_relay_`)
//! | name | type | labels |
//! |---|---|---|
//! | `connected_agents` | gauge | — (open agent tunnels on this instance) |
//! | `tunnels_opened_total` | counter | `carrier` = `direct` \| `websocket` (how each tunnel came: the direct upgrade, or HTTP/2 inside a WebSocket behind a proxy that passes only WebSocket upgrades) |
//! | `tunnel_bytes_total` | counter | `direction` = `to_agent` \| `from_agent` (forwarded bodies, counted by the instance holding the tunnel) |
//! | `request_duration_seconds` | histogram | `route` = a [`RouteGroup`] (time to response headers) |
//! | `heartbeats_total` | counter | — (accepted signed heartbeats) |
//! | `signed_calls_rejected_total` | counter | `code` = the refusal's error code (`signature.bad_signature`, …) |
//! | `rate_limited_total` | counter | `limiter` = a [`Limiter`] |
//!
//! # Guarantees
//! Every label value is a `&'static str` chosen by the relay's code (a route group, a limiter, an
//! error code), never a path, an address, an id or anything else a client sends: the number of
//! series is fixed at compile time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[path = "metrics_body.rs"]
mod body;

pub use self::body::CountedBody;

/// The `Content-Type` of what [`Metrics::encode`] renders.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histograms' buckets: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The groups request latency is reported by (a fixed set: never the raw path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// Pages for people and their JSON (sign-in, agents, device approval, settings, 404s).
    Page,
    /// The OAuth device flow endpoints agents call (`/oauth/device/code`, `/oauth/token`).
    DeviceFlow,
    /// Signed agent calls, the tunnel upgrade included.
    AgentApi,
    /// Browser requests forwarded through an agent's tunnel (time until the agent's headers).
    TunnelForward,
    /// CSS and JS served from the binary.
    Static,
    /// `/healthz` and `/readyz`.
    Health,
}

impl RouteGroup {
    /// Every group, in label order.
    pub const ALL: [RouteGroup; 6] = [
        RouteGroup::Page,
        RouteGroup::DeviceFlow,
        RouteGroup::AgentApi,
        RouteGroup::TunnelForward,
        RouteGroup::Static,
        RouteGroup::Health,
    ];

    /// The `route` label value.
    pub fn label(self) -> &'static str {
        match self {
            RouteGroup::Page => "page",
            RouteGroup::DeviceFlow => "device_flow",
            RouteGroup::AgentApi => "agent_api",
            RouteGroup::TunnelForward => "tunnel_forward",
            RouteGroup::Static => "static",
            RouteGroup::Health => "health",
        }
    }

    /// The group of a request path.
    pub fn of_path(path: &str) -> Self {
        use katachi_proto::device::{DEVICE_CODE_PATH, TOKEN_PATH};
        if path == "/healthz" || path == "/readyz" {
            return RouteGroup::Health;
        }
        if path == DEVICE_CODE_PATH || path == TOKEN_PATH {
            return RouteGroup::DeviceFlow;
        }
        if path.starts_with("/api/agent/") {
            return RouteGroup::AgentApi;
        }
        if path.starts_with("/static/") {
            return RouteGroup::Static;
        }
        // `/agents/{id}/api/…`
        let mut segments = path.trim_start_matches('/').splitn(4, '/');
        if segments.next() == Some("agents") && segments.nth(1) == Some("api") {
            return RouteGroup::TunnelForward;
        }
        RouteGroup::Page
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The limits whose refusals are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    /// The in-memory per-address limiter in front of sign-in, sign-up and device codes (`429`).
    Address,
    /// Sign-in attempts per address in the store's shared window.
    SignIn,
    /// Sign-ups per address in the store's shared window.
    SignUp,
    /// A sign-in refused because the account is in its failure delay (from a browser it does not know).
    AccountDelay,
    /// Device codes requested per address.
    DeviceCode,
    /// Wrong user codes typed, per user or per address.
    UserCode,
    /// `429 agent.busy`: a tunnel's forwarded requests in flight at their cap.
    TunnelBusy,
}

impl Limiter {
    /// Every limiter, in label order.
    pub const ALL: [Limiter; 7] = [
        Limiter::Address,
        Limiter::SignIn,
        Limiter::SignUp,
        Limiter::AccountDelay,
        Limiter::DeviceCode,
        Limiter::UserCode,
        Limiter::TunnelBusy,
    ];

    /// The `limiter` label value.
    pub fn label(self) -> &'static str {
        match self {
            Limiter::Address => "address",
            Limiter::SignIn => "sign_in",
            Limiter::SignUp => "sign_up",
            Limiter::AccountDelay => "account_delay",
            Limiter::DeviceCode => "device_code",
            Limiter::UserCode => "user_code",
            Limiter::TunnelBusy => "tunnel_busy",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `route="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

/// `direction="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// `carrier="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CarrierLabel {
    carrier: &'static str,
}

/// The tunnel carriers, as `crate::tunnel_carrier::Carrier::name` says them.
pub const CARRIERS: [&str; 2] = ["direct", "websocket"];

/// `code="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// `limiter="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimiterLabel {
    limiter: &'static str,
}

/// The relay's metrics (cheap to clone: every part is shared).
#[derive(Clone)]
pub struct Metrics {
    /// Everything below, registered for encoding.
    registry: Arc<Registry>,
    /// Open agent tunnels on this instance.
    connected_agents: Gauge,
    /// Tunnels opened, by carrier.
    opened: Family<CarrierLabel, Counter>,
    /// Bytes of forwarded request bodies sent to agents.
    bytes_to_agent: Counter,
    /// Bytes of forwarded response bodies received from agents.
    bytes_from_agent: Counter,
    /// Latency per route group, indexed by [`RouteGroup::index`].
    latency: Arc<[Histogram; RouteGroup::ALL.len()]>,
    /// Accepted heartbeats.
    heartbeats: Counter,
    /// Refused signed calls by error code (series created on first use).
    rejected: Family<CodeLabel, Counter>,
    /// Refusals per limiter, indexed by [`Limiter::index`].
    limited: Arc<[Counter; Limiter::ALL.len()]>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, every fixed label value present at zero (so dashboards and alerts
    /// see the series before the first event).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("katachi_relay");
        let connected_agents = Gauge::default();
        registry.register(
            "connected_agents",
            "Agent tunnels open on this relay instance",
            connected_agents.clone(),
        );
        let opened: Family<CarrierLabel, Counter> = Family::default();
        registry.register(
            "tunnels_opened",
            "Agent tunnels opened on this relay instance, by carrier (direct upgrade or WebSocket)",
            opened.clone(),
        );
        for carrier in CARRIERS {
            opened.get_or_create_owned(&CarrierLabel { carrier });
        }
        let bytes: Family<DirectionLabel, Counter> = Family::default();
        registry.register(
            "tunnel_bytes",
            "Bytes of forwarded request bodies (to_agent) and response bodies (from_agent) through agent tunnels",
            bytes.clone(),
        );
        let direction = |direction| bytes.get_or_create_owned(&DirectionLabel { direction });
        let (bytes_to_agent, bytes_from_agent) = (direction("to_agent"), direction("from_agent"));
        let latency_family: Family<RouteLabel, Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response headers, by route group",
            latency_family.clone(),
        );
        let latency = RouteGroup::ALL.map(|group| {
            latency_family.get_or_create_owned(&RouteLabel {
                route: group.label(),
            })
        });
        let heartbeats = Counter::default();
        registry.register(
            "heartbeats",
            "Signed heartbeats accepted from agents",
            heartbeats.clone(),
        );
        let rejected = Family::default();
        registry.register(
            "signed_calls_rejected",
            "Signed agent calls refused, by the refusal's error code",
            rejected.clone(),
        );
        let limited_family: Family<LimiterLabel, Counter> = Family::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by limiter",
            limited_family.clone(),
        );
        let limited = Limiter::ALL.map(|limiter| {
            limited_family.get_or_create_owned(&LimiterLabel {
                limiter: limiter.label(),
            })
        });
        Self {
            registry: Arc::new(registry),
            connected_agents,
            opened,
            bytes_to_agent,
            bytes_from_agent,
            latency: Arc::new(latency),
            heartbeats,
            rejected,
            limited: Arc::new(limited),
        }
    }

    /// Counts a tunnel opened over `carrier` (one of [`CARRIERS`]), and counts it open until the
    /// returned guard is dropped (when its connection ends).
    pub fn tunnel_opened(&self, carrier: &'static str) -> OpenTunnel {
        self.opened.get_or_create(&CarrierLabel { carrier }).inc();
        self.connected_agents.inc();
        OpenTunnel(self.connected_agents.clone())
    }

    /// Wraps a forwarded request body so its bytes count as sent to the agent.
    pub fn count_to_agent<B>(&self, body: B) -> CountedBody<B> {
        CountedBody::new(body, self.bytes_to_agent.clone())
    }

    /// Wraps a forwarded response body so its bytes count as received from the agent.
    pub fn count_from_agent<B>(&self, body: B) -> CountedBody<B> {
        CountedBody::new(body, self.bytes_from_agent.clone())
    }

    /// Records how long a request of `group` took to its response headers.
    pub fn observe_latency(&self, group: RouteGroup, took: Duration) {
        if let Some(h) = self.latency.get(group.index()) {
            h.observe(took.as_secs_f64());
        }
    }

    /// Counts an accepted heartbeat.
    pub fn heartbeat_accepted(&self) {
        self.heartbeats.inc();
    }

    /// Counts a refused signed call under its error code (a `&'static str`: bounded by the code).
    pub fn signed_call_rejected(&self, code: &'static str) {
        self.rejected.get_or_create(&CodeLabel { code }).inc();
    }

    /// Counts a request refused by `limiter`.
    pub fn rate_limited(&self, limiter: Limiter) {
        if let Some(c) = self.limited.get(limiter.index()) {
            c.inc();
        }
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    ///
    /// # Errors
    /// Only if formatting into a `String` fails (it does not).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// An open tunnel counted in `connected_agents`; dropping it uncounts it.
#[derive(Debug)]
pub struct OpenTunnel(Gauge);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Middleware of the public router: the time to each response's headers, by route group.
pub async fn observe_request_latency(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let group = RouteGroup::of_path(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe_latency(group, started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_a_fixed_set_of_route_groups() {
        for (path, group) in [
            ("/", RouteGroup::Page),
            ("/login", RouteGroup::Page),
            ("/agents", RouteGroup::Page),
            ("/agents/agt_1", RouteGroup::Page),
            ("/agents/agt_1/revoke", RouteGroup::Page),
            ("/api/me/agents", RouteGroup::Page),
            ("/no/such/page", RouteGroup::Page),
            ("/agents/agt_1/api/files/read", RouteGroup::TunnelForward),
            ("/agents/agt_1/api", RouteGroup::TunnelForward),
            ("/api/agent/heartbeat", RouteGroup::AgentApi),
            ("/api/agent/tunnel", RouteGroup::AgentApi),
            ("/oauth/device/code", RouteGroup::DeviceFlow),
            ("/oauth/token", RouteGroup::DeviceFlow),
            ("/static/app.css", RouteGroup::Static),
            ("/healthz", RouteGroup::Health),
            ("/readyz", RouteGroup::Health),
        ] {
            assert_eq!(RouteGroup::of_path(path), group, "{path}");
        }
    }

    #[test]
    fn every_fixed_series_exists_before_the_first_event() {
        let text = Metrics::new().encode().unwrap();
        for group in RouteGroup::ALL {
            let series = format!(
                "katachi_relay_request_duration_seconds_count{{route=\"{}\"}} 0",
                group.label()
            );
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        for limiter in Limiter::ALL {
            let series = format!(
                "katachi_relay_rate_limited_total{{limiter=\"{}\"}} 0",
                limiter.label()
            );
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        assert!(text.contains("katachi_relay_connected_agents 0"), "{text}");
        for carrier in CARRIERS {
            let series = format!("katachi_relay_tunnels_opened_total{{carrier=\"{carrier}\"}} 0");
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
    }

    #[test]
    fn an_open_tunnel_counts_until_its_guard_drops() {
        let metrics = Metrics::new();
        let a = metrics.tunnel_opened("direct");
        let b = metrics.tunnel_opened("websocket");
        assert_eq!(metrics.connected_agents.get(), 2);
        drop(a);
        assert_eq!(metrics.connected_agents.get(), 1);
        drop(b);
        assert_eq!(metrics.connected_agents.get(), 0);
        let text = metrics.encode().unwrap();
        for carrier in CARRIERS {
            let series = format!("katachi_relay_tunnels_opened_total{{carrier=\"{carrier}\"}} 1");
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
    }
}
