//! CSS and JS compiled into the binary (no CDN). The workbench bundle is built from `webui/` by
//! `build.rs` (esbuild over the pinned npm packages) into `OUT_DIR`.

use axum::http::header;
use axum::response::IntoResponse;

/// The workbench script: CodeMirror 6 and the page's code, bundled by `build.rs`.
const WORKBENCH_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/workbench.js"));
/// The workbench's styles, bundled by `build.rs`.
const WORKBENCH_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/workbench.css"));

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const CACHE: &str = "public, max-age=3600";

/// `GET /static/app.css`.
pub async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CSS), (header::CACHE_CONTROL, CACHE)],
        include_str!("../../static/app.css"),
    )
}

/// `GET /static/agents.js`.
pub async fn agents_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, JS), (header::CACHE_CONTROL, CACHE)],
        include_str!("../../static/agents.js"),
    )
}

/// `GET /static/workbench.js`.
pub async fn workbench_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, JS), (header::CACHE_CONTROL, CACHE)],
        WORKBENCH_JS,
    )
}

/// `GET /static/workbench.css`.
pub async fn workbench_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CSS), (header::CACHE_CONTROL, CACHE)],
        WORKBENCH_CSS,
    )
}
