//! A real MCP server on `127.0.0.1:0`: rmcp's Streamable HTTP server transport (the official
//! SDK) serving a few tools, so tests drive the relay's MCP client against the real protocol.
//!
//! Tools:
//! - `echo {text}` → the text;
//! - `whoami` → the `Authorization` header the request carried (or `no authorization header`),
//!   and the value is recorded ([`McpTestServer::authorizations`]): a test proves the secret
//!   reached the server without reading it from what the agent got;
//! - `fail` → a result with `is_error: true`;
//! - `repeat {count}` → `x` repeated `count` times (results over a size cap).

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler};
use tokio_util::sync::CancellationToken;

/// Arguments of `echo`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Arguments of `repeat`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct RepeatArgs {
    /// How many `x`.
    pub count: usize,
}

/// The tools, with the log of `Authorization` headers `whoami` saw.
#[derive(Debug, Clone)]
pub struct TestTools {
    /// rmcp's tool table.
    tool_router: ToolRouter<Self>,
    /// The `Authorization` headers `whoami` received.
    seen: Arc<Mutex<Vec<String>>>,
}

#[tool_router]
impl TestTools {
    /// Sends the text back.
    #[tool(description = "Echo the given text back")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    /// The `Authorization` header the request carried.
    #[tool(description = "Tell which Authorization header the request carried")]
    fn whoami(&self, Extension(parts): Extension<Parts>) -> String {
        let seen = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match seen {
            Some(value) => {
                self.seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(value.clone());
                value
            }
            None => "no authorization header".to_owned(),
        }
    }

    /// A tool that reports a failure.
    #[tool(description = "Always fails")]
    fn fail(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("this tool always fails")])
    }

    /// `x` repeated.
    #[tool(description = "Return x repeated count times")]
    fn repeat(&self, Parameters(RepeatArgs { count }): Parameters<RepeatArgs>) -> String {
        "x".repeat(count.min(16 * 1024 * 1024))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TestTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// A running MCP server; stopped when dropped.
pub struct McpTestServer {
    /// `http://127.0.0.1:PORT/mcp`.
    url: String,
    /// What `whoami` saw.
    seen: Arc<Mutex<Vec<String>>>,
    /// Stops the server.
    stop: CancellationToken,
}

impl Drop for McpTestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl McpTestServer {
    /// Serves the tools on `127.0.0.1:0` at `/mcp`.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let tools_seen = Arc::clone(&seen);
        let service: StreamableHttpService<TestTools, LocalSessionManager> =
            StreamableHttpService::new(
                move || {
                    Ok(TestTools {
                        tool_router: TestTools::tool_router(),
                        seen: Arc::clone(&tools_seen),
                    })
                },
                Default::default(),
                StreamableHttpServerConfig::default()
                    .with_sse_keep_alive(None)
                    .with_cancellation_token(stop.child_token()),
            );
        let router = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/mcp", listener.local_addr()?);
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { until.cancelled_owned().await })
                .await;
        });
        Ok(Self { url, seen, stop })
    }

    /// `http://127.0.0.1:PORT/mcp`: the server's MCP endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Authorization` headers `whoami` received, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
