//! A hostile agent behind the relay, in Debian's headless Chromium: an agent approved through the
//! real device flow dials the real tunnel (`TunnelDialer`, signed upgrade, HTTP/2 over it) but
//! serves a hostile router instead of the agent API. Its answers carry HTML, SVG and JSON with
//! `<script>` that would rename the page, set a cookie, call a loopback recorder and navigate
//! there, plus `Set-Cookie`, `Location`, `Refresh`, `Link`, `Access-Control-*` and its own lax CSP.
//!
//! The user opens each answer in the browser: no script runs (the recorder hears nothing, the
//! title stays), no cookie is set, no navigation leaves the relay. Over HTTP the same answers show
//! none of the agent's headers, and the relay's own CSP (`default-src 'none'; sandbox`),
//! `nosniff` and `no-store`, also on the relay's own errors on that route.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`; without them the test fails rather than
//! passes silently.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use katachi_e2e::agent_tunnel;
use katachi_e2e::approval::{approve_device, sign_up_verified};
use katachi_e2e::chromium::Browser;
use katachi_e2e::relay::InProcessRelay;
use serde_json::Value;

/// Whole-test budget: Chromium start-up on a loaded 2-core machine included.
const TEST_BUDGET: Duration = Duration::from_secs(240);
/// Budget for a page to show what it should.
const PAGE: Duration = Duration::from_secs(20);
/// How long a hostile page gets to act (its script navigates after 200 ms; `Refresh` is 0 s).
const GRACE: Duration = Duration::from_millis(1500);
const PASSWORD: &str = "correct horse battery staple";
/// The relay's CSP on every forwarded answer.
const RELAY_CSP: &str = "default-src 'none'; sandbox";
/// Headers of the hostile answers that must never reach a client.
const HOSTILE_HEADERS: [&str; 8] = [
    "set-cookie",
    "location",
    "refresh",
    "link",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "content-disposition",
];

/// Requests that reached the loopback recorder (method and path).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    /// Serves on `127.0.0.1:0` (plain HTTP, any path, CORS open); its base URL.
    async fn serve(&self) -> String {
        let heard = self.clone();
        let app = Router::new().fallback(move |req: Request| {
            let heard = heard.clone();
            async move {
                heard
                    .0
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", req.method(), req.uri()));
                Response::builder()
                    .header("access-control-allow-origin", "*")
                    .body(Body::from("recorded"))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn heard(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Script that, if it ever runs, leaves a trace everywhere the test looks.
fn hostile_script(recorder: &str, route: &str) -> String {
    format!(
        "document.title = 'pwned'; \
         document.cookie = 'hostile_script_{route}=1; path=/'; \
         fetch('{recorder}/fetch-{route}', {{ mode: 'no-cors' }}); \
         new Image().src = '{recorder}/image-{route}'; \
         setTimeout(function () {{ location.href = '{recorder}/script-nav-{route}'; }}, 200);"
    )
}

/// Every header a hostile agent would like to set on the relay's origin.
fn hostile_response(recorder: &str, route: &str, status: u16, content_type: &str) -> Response {
    let body = match content_type {
        "image/svg+xml" => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>{}</script></svg>",
            hostile_script(recorder, route)
        ),
        _ => format!(
            "<!doctype html><html><head><title>hostile</title></head><body>hostile agent\
             <script>{}</script></body></html>",
            hostile_script(recorder, route)
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("set-cookie", format!("hostile_header_{route}=1; Path=/"))
        .header("location", format!("{recorder}/location-{route}"))
        .header("refresh", format!("0; url={recorder}/refresh-{route}"))
        .header(
            "link",
            format!("<{recorder}/link-{route}>; rel=preload; as=image"),
        )
        .header("access-control-allow-origin", "*")
        .header("access-control-allow-credentials", "true")
        .header("access-control-expose-headers", "*")
        .header("content-disposition", "inline")
        .header(
            "content-security-policy",
            "default-src * 'unsafe-inline'; script-src * 'unsafe-inline'",
        )
        .header("x-content-type-options", "sniff")
        .header("cache-control", "public, max-age=600")
        .body(Body::from(body))
        .unwrap()
}

/// The hostile agent's "API": an HTML page, an SVG image, HTML labelled as JSON, a redirect.
fn hostile_router(recorder: &str) -> Router {
    let route = |name: &'static str, status: u16, content_type: &'static str| {
        let recorder = recorder.to_owned();
        get(move || async move { hostile_response(&recorder, name, status, content_type) })
    };
    Router::new()
        .route("/v1/html", route("html", 200, "text/html; charset=utf-8"))
        .route("/v1/svg", route("svg", 200, "image/svg+xml"))
        .route("/v1/json", route("json", 200, "application/json"))
        .route("/v1/redirect", route("redirect", 302, "text/html"))
}

async fn wait_online(relay: &InProcessRelay, agent_id: &str) {
    let deadline = Instant::now() + PAGE;
    while !relay.state().tunnels.is_online(agent_id) {
        assert!(
            Instant::now() < deadline,
            "the hostile agent never came online"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the relay's own security headers, once each, and none of the agent's.
fn assert_relay_headers_only(what: &str, headers: &reqwest::header::HeaderMap) {
    let all = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        all("content-security-policy"),
        [RELAY_CSP],
        "{what}: {headers:?}"
    );
    assert_eq!(
        all("x-content-type-options"),
        ["nosniff"],
        "{what}: {headers:?}"
    );
    assert_eq!(all("cache-control"), ["no-store"], "{what}: {headers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agents_answers_run_no_script_set_no_cookie_and_navigate_nowhere() {
    tokio::time::timeout(TEST_BUDGET, async {
        let relay = InProcessRelay::start(|_| {}).await.unwrap();
        let recorder = Recorder::default();
        let recorder_url = recorder.serve().await;

        let browser = Browser::launch().await.unwrap();
        sign_up_verified(&browser, &relay, "victim@example.com", PASSWORD, PAGE)
            .await
            .unwrap();
        let agent = approve_device(&browser, &relay, "phished-box", PAGE)
            .await
            .unwrap();
        let tunnel =
            agent_tunnel::dial_and_serve(&relay, &agent, hostile_router(&recorder_url)).unwrap();
        wait_online(&relay, &agent.agent_id).await;
        let api = |rest: &str| relay.at(&format!("/agents/{}/api/v1/{rest}", agent.agent_id));

        // Over HTTP, in the victim's session: none of the agent's headers, the relay's own instead.
        browser.goto(&relay.at("/agents")).await.unwrap();
        let http = relay.cookieless_client().unwrap();
        let cookie = browser.cookie_header().await.unwrap();
        assert!(cookie.contains("__Host-katachi_session="), "{cookie}");
        let fetch = |url: String| {
            let request = http.get(url).header("cookie", cookie.clone());
            async move { request.send().await.unwrap() }
        };
        for (rest, content_type, disposition) in [
            ("html", "application/octet-stream", Some("attachment")),
            ("svg", "application/octet-stream", Some("attachment")),
            ("json", "application/json", None),
        ] {
            let r = fetch(api(rest)).await;
            assert_eq!(r.status(), 200, "{rest}");
            let headers = r.headers().clone();
            for name in HOSTILE_HEADERS {
                if name == "content-disposition" && disposition.is_some() {
                    continue;
                }
                assert!(
                    headers.get(name).is_none(),
                    "{rest}: {name} reached the client: {headers:?}"
                );
            }
            assert_relay_headers_only(rest, &headers);
            assert_eq!(headers["content-type"], content_type, "{rest}");
            assert_eq!(
                headers
                    .get("content-disposition")
                    .map(|v| v.to_str().unwrap()),
                disposition,
                "{rest}"
            );
            // The body itself still arrives (as a download, or as inert JSON text).
            assert!(r.text().await.unwrap().contains("<script>"), "{rest}");
        }
        // A redirect is refused, with no Location and under the same headers.
        let r = fetch(api("redirect")).await;
        assert_eq!(r.status(), 502);
        for name in HOSTILE_HEADERS {
            assert!(
                r.headers().get(name).is_none(),
                "redirect: {name}: {:?}",
                r.headers()
            );
        }
        assert_relay_headers_only("redirect", r.headers());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "agent.invalid_response", "{v}");
        // The relay's own errors on the route carry them too.
        let r = fetch(relay.at("/agents/no-such-agent/api/v1/html")).await;
        assert_eq!(r.status(), 404);
        assert_relay_headers_only("unknown agent", r.headers());
        let r = http.get(api("html")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_relay_headers_only("no session", r.headers());

        // In the browser: open each answer as a page, the way a link in a phishing mail would.
        for rest in ["html", "svg", "json", "redirect"] {
            browser.goto(&relay.at("/agents")).await.unwrap();
            let title_before = browser.execute("return document.title;").await.unwrap();
            // A download aborts the navigation, which WebDriver may report as an error: fine.
            let opened = browser.goto(&api(rest)).await;
            tokio::time::sleep(GRACE).await;
            let url = browser.current_url().await.unwrap();
            assert_eq!(
                url.origin().ascii_serialization(),
                relay.url(),
                "{rest}: the browser left the relay for {url} (goto: {opened:?})"
            );
            let title = browser.execute("return document.title;").await.unwrap();
            assert_ne!(title, "pwned", "{rest}: the agent's script ran");
            if url.path() == "/agents" {
                assert_eq!(title, title_before, "{rest}: the agent's script ran");
            }
            assert!(
                recorder.heard().is_empty(),
                "{rest}: the agent's answer made the browser call out: {:?}",
                recorder.heard()
            );
        }

        // No cookie from any header or script, and the session is still the relay's.
        browser.goto(&relay.at("/agents")).await.unwrap();
        let names = browser.cookie_names().await.unwrap();
        assert!(
            names.iter().all(|n| !n.starts_with("hostile")),
            "the agent set a cookie on the relay's origin: {names:?}"
        );
        assert!(
            names.iter().any(|n| n == "__Host-katachi_session"),
            "{names:?}"
        );
        browser
            .wait_for_text("main h1", "My agents", PAGE)
            .await
            .unwrap();

        tunnel.abort();
        browser.close().await.unwrap();
        relay.stop().await.unwrap();
    })
    .await
    .expect("the test ran past its budget");
}
