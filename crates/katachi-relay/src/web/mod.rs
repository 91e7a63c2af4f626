//! Pages for people and the routes of the whole relay.
//!
//! Every response carries HSTS, a strict CSP (`frame-ancestors 'none'`), `X-Content-Type-Options`,
//! `Referrer-Policy` and `Cache-Control: no-store` (static assets excepted: they are cacheable);
//! answers forwarded from agents carry the stricter CSP of `crate::tunnel`
//! (`default-src 'none'; sandbox`) instead. Cookies are `__Host-`, Secure, HttpOnly, SameSite=Lax.
//! Every form carries a CSRF token checked against a cookie, and cross-origin posts are refused.
//!
//! # Layout
//! - `session`: session and CSRF cookies, the [`session::CurrentUser`] extractor, `next=` sanitising.
//! - `layout`: the page shell and small HTML pieces.
//! - `account`: sign-up, sign-in (argon2id, rate limits, per-account delay), sign-out.
//! - `oauth_login`: sign-in with GitHub or Google (authorization code + PKCE + state).
//! - `oauth_identity`: reads who signed in at the provider (GitHub user API, Google id_token).
//! - `known_browser`: the cookie of browsers where an account signed in (they pass its failure delay).
//! - `verify_email`: e-mail verification links of password accounts (needed to approve devices).
//! - `device`: the device approval page.
//! - `agents`: "my agents" (online / last seen, revoke) and its JSON for live refresh.
//! - `mcp`: each user's MCP server configurations, secret values sealed and never shown again.
//! - `workbench`: one agent's workbench (workspaces, file tree, viewer, git status and diff).
//! - `assets`: the CSS and JS served from the binary (the workbench bundle built by `build.rs`).
//!
//! `/healthz` and `/readyz` ([`crate::health`]) are routes here too; every request's latency is
//! observed by route group ([`crate::metrics`]).

pub mod account;
pub mod agents;
mod assets;
pub mod device;
pub mod known_browser;
pub mod layout;
pub mod mcp;
pub mod oauth_identity;
pub mod oauth_login;
pub mod session;
pub mod verify_email;
pub mod workbench;

use axum::http::{header, HeaderName, HeaderValue};
use axum::routing::{any, get, post};
use axum::Router;
use katachi_proto::forwarding::BROWSER_ROUTE;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::AppState;

/// Largest request body anywhere (agent calls have their own, smaller check).
const MAX_BODY: usize = 1024 * 1024;

/// CSP: our own scripts and styles only, no framing, forms post to us only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// All routes. (`/metrics` is not one of them: it is served on the metrics listener only.)
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let headers: [(HeaderName, &'static str); 7] = [
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: under it browsers send `Origin: null` on our own form posts, which the
        // CSRF Origin check must refuse. `same-origin` still tells other sites nothing (URLs here
        // can carry a user code).
        (header::REFERRER_POLICY, "same-origin"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        // Pages carry CSRF tokens, user codes, agent lists and tokens (`/oauth/token`, RFC 6749
        // §5.1): no browser or proxy keeps them. Static assets set their own, cacheable, value.
        (header::CACHE_CONTROL, "no-store"),
    ];
    // Forwarded to agents with the body streamed: the agent API enforces its own (larger) caps, so
    // this route sits outside the relay's body limit. Its own CSP (`sandbox`), `nosniff` and
    // `no-store` replace anything there, so the site-wide CSP below ("if not present") never applies
    // to it; the other site-wide headers (HSTS, frame and referrer policies) still do.
    let tunnelled = Router::new()
        .route(BROWSER_ROUTE, any(crate::tunnel::forward))
        .layer(axum::middleware::map_response(
            crate::tunnel::set_relay_headers,
        ))
        .with_state(state.clone());
    // Posts that cost argon2 work or a row: an in-memory per-address limiter goes first.
    let limited = || {
        axum::middleware::from_fn_with_state(
            state.clone(),
            crate::address_limit::limit_posts_by_address,
        )
    };
    let mut app = Router::new()
        .route("/", get(agents::home))
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz))
        .route(
            "/signup",
            get(account::signup_page)
                .post(account::signup)
                .route_layer(limited()),
        )
        .route(
            "/login",
            get(account::login_page)
                .post(account::login)
                .route_layer(limited()),
        )
        .route("/logout", post(account::logout))
        .route("/auth/{provider}/start", get(oauth_login::start))
        .route("/auth/{provider}/callback", get(oauth_login::callback))
        .route(
            katachi_proto::device::VERIFY_PATH,
            get(device::show).post(device::decide),
        )
        .route(
            "/verify-email/{token}",
            get(verify_email::show).post(verify_email::verify),
        )
        .route("/verify-email/resend", post(verify_email::resend))
        .route("/agents", get(agents::list))
        .route("/agents/{id}", get(workbench::show))
        .route("/agents/{id}/revoke", post(agents::revoke))
        .route("/api/me/agents", get(agents::json))
        .route("/settings/mcp", get(mcp::list).post(mcp::add))
        .route("/settings/mcp/{id}/delete", post(mcp::delete))
        .route("/static/app.css", get(assets::css))
        .route("/static/agents.js", get(assets::agents_js))
        .route("/static/workbench.js", get(assets::workbench_js))
        .route("/static/workbench.css", get(assets::workbench_css))
        .route(
            katachi_proto::device::DEVICE_CODE_PATH,
            post(crate::device_flow::device_code).route_layer(limited()),
        )
        .route(
            katachi_proto::device::TOKEN_PATH,
            post(crate::device_flow::token),
        )
        .route(
            katachi_proto::agent::HEARTBEAT_PATH,
            post(crate::agent_api::heartbeat),
        )
        .route(
            katachi_proto::agent::EVENTS_PATH,
            post(crate::agent_api::events),
        )
        .route(
            katachi_proto::mcp::MCP_TOOLS_PATH,
            post(crate::agent_api::mcp_tools),
        )
        .route(
            katachi_proto::mcp::MCP_CALL_PATH,
            post(crate::agent_api::mcp_call),
        )
        .route(katachi_proto::agent::TUNNEL_PATH, get(crate::tunnel::open))
        .route(
            katachi_proto::agent::UNREGISTER_PATH,
            post(crate::agent_api::unregister),
        )
        .fallback(layout::not_found)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .merge(tunnelled);
    for (name, value) in headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    // Outermost: the time to response headers of every request, the relay's own refusals included.
    app.layer(axum::middleware::from_fn_with_state(
        metrics,
        crate::metrics::observe_request_latency,
    ))
}
