//! The agent API served over real loopback HTTP (axum on 127.0.0.1:0), called with reqwest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use katachi_core::api::{router, ApiLimits, ApiState, FixedWorkspaces, WorkspaceSource};
use reqwest::StatusCode;
use serde_json::Value;

/// A served API over one workspace `ws` inside a temp folder; `outside` beside it holds files the
/// API must never reach.
pub struct ApiServer {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// Holds `ws` and `outside`.
    pub _tmp: tempfile::TempDir,
    /// The workspace folder (canonical), id 1.
    pub ws: PathBuf,
    /// A folder next to the workspace, not allowed.
    pub outside: PathBuf,
    /// The server task (aborted on drop).
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// A server with the default limits.
    pub async fn start() -> Self {
        Self::with_limits(ApiLimits::default()).await
    }

    /// A server with `limits`.
    pub async fn with_limits(limits: ApiLimits) -> Self {
        Self::start_with(limits, &[]).await
    }

    /// A server whose workspace holds folders standing for katachi's own (`names`, created
    /// inside the workspace), as when the workspace is the user's home.
    pub async fn with_katachi_folders(names: &[&str]) -> Self {
        Self::start_with(ApiLimits::default(), names).await
    }

    async fn start_with(limits: ApiLimits, katachi_folders: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base_dir = std::fs::canonicalize(tmp.path()).unwrap();
        let ws = base_dir.join("ws");
        let outside = base_dir.join("outside");
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"TOP-SECRET\n").unwrap();
        let folders: Vec<PathBuf> = katachi_folders.iter().map(|n| ws.join(n)).collect();
        for f in &folders {
            std::fs::create_dir_all(f).unwrap();
        }
        let source = Arc::new(
            FixedWorkspaces::new([&ws])
                .unwrap()
                .with_katachi_folders(&folders),
        );
        let (base, task) = serve(ApiState::with_limits(source, limits)).await;
        Self {
            base,
            client: reqwest::Client::new(),
            _tmp: tmp,
            ws,
            outside,
            task,
        }
    }

    /// URL of a route of workspace 1, e.g. `ws_url("/file?path=a")`.
    pub fn ws_url(&self, route: &str) -> String {
        format!("{}/v1/workspaces/1{route}", self.base)
    }

    /// Writes a file inside the workspace (creating folders).
    pub fn put_file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.ws.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// GET returning status and JSON body.
    pub async fn get_json(&self, url: &str) -> (StatusCode, Value) {
        let res = self.client.get(url).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    /// PUT of `body` to `path` with `expected`, returning status and JSON body.
    pub async fn write(&self, path: &str, expected: &str, body: &[u8]) -> (StatusCode, Value) {
        let url = self.ws_url(&format!("/file?path={}&expected={expected}", encode(path)));
        let res = self
            .client
            .put(url)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }
}

/// Serves the API router for `state` on a fresh loopback port.
pub async fn serve(state: ApiState) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), task)
}

/// Serves the API over an arbitrary workspace source.
pub async fn serve_source(
    source: Arc<dyn WorkspaceSource>,
) -> (String, tokio::task::JoinHandle<()>) {
    serve(ApiState::new(source)).await
}

/// Percent-encodes a path for the query string (every byte outside unreserved characters).
pub fn encode(path: &str) -> String {
    encode_bytes(path.as_bytes())
}

/// Percent-encodes raw bytes (for non-UTF-8 and NUL tests).
pub fn encode_bytes(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// SHA-256 hex of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Whether `dir` holds a leftover temp file of an atomic write.
pub fn has_temp_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".katachi-tmp-")
    })
}
