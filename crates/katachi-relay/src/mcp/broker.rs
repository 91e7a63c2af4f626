//! [`McpBroker`]: lists and calls the tools of one user's MCP servers, as the signed MCP calls
//! answer them. Holds the one HTTP client of MCP connections and a short cache of tool lists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use katachi_proto::mcp::{McpCallRequest, McpCallResult, McpServerTools, McpTool, McpToolList};

use super::connect;
use super::headers::SecretHeaders;
use super::{McpError, McpOptions};
use crate::crypto::{MasterKey, SealedRow};
use crate::store::McpServer;

/// Most tools offered from one server.
const MAX_TOOLS_PER_SERVER: usize = 128;
/// Most characters of a tool's description passed on.
const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Cached tool lists kept at most (one per server).
const MAX_CACHED_LISTS: usize = 10_000;

/// A server's tool list, as fetched at `at` for the settings `fingerprint` names.
struct CachedList {
    /// Hash of the server's URL and sealed environment: an edit of either misses the cache.
    fingerprint: String,
    /// When it was fetched.
    at: Instant,
    /// The tools.
    tools: Arc<Vec<McpTool>>,
}

/// Connects to users' remote MCP servers for their agents.
pub struct McpBroker {
    /// The HTTP client of every MCP connection (guarded resolver, TLS, no redirects).
    http: reqwest013::Client,
    /// Limits and the address guard.
    options: McpOptions,
    /// Tool lists by server id.
    lists: Mutex<HashMap<String, CachedList>>,
}

impl std::fmt::Debug for McpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpBroker")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl McpBroker {
    /// A broker with `options`, trusting the system roots plus `extra_ca`.
    ///
    /// # Errors
    /// The TLS set-up fails (an unreadable `extra_ca`).
    pub fn new(options: McpOptions, extra_ca: Option<&std::path::Path>) -> anyhow::Result<Self> {
        Ok(Self {
            http: connect::http_client(&options, extra_ca)?,
            options,
            lists: Mutex::new(HashMap::new()),
        })
    }

    /// The tools of each of `servers` (the user's), fetched at once; a server that fails is
    /// listed with its error and no tools.
    pub async fn list_tools(
        &self,
        master: &MasterKey,
        user_id: &str,
        servers: &[McpServer],
    ) -> McpToolList {
        let lists = servers.iter().map(|s| async move {
            let listed = self.tools_of(master, user_id, s).await;
            if let Err(e) = &listed {
                tracing::debug!(server = %s.id, code = e.code(), "mcp: tools not available");
            }
            McpServerTools {
                server_id: s.id.clone(),
                server_name: s.name.clone(),
                error: listed.as_ref().err().map(McpError::to_wire),
                tools: listed.map(|t| t.as_ref().clone()).unwrap_or_default(),
            }
        });
        McpToolList {
            servers: futures::future::join_all(lists).await,
        }
    }

    /// Calls a tool of one of `servers` (the user's).
    ///
    /// # Errors
    /// [`McpError`]: `mcp.server_unknown` for an id not among `servers`, and every failure of the
    /// connection or the call.
    pub async fn call_tool(
        &self,
        master: &MasterKey,
        user_id: &str,
        servers: &[McpServer],
        request: &McpCallRequest,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<McpCallResult, McpError> {
        let server = servers
            .iter()
            .find(|s| s.id == request.server_id)
            .ok_or_else(|| McpError::ServerUnknown(request.server_id.clone()))?;
        if server.url.is_empty() {
            return Err(McpError::NotRemote(server.name.clone()));
        }
        let headers = headers_of(master, user_id, server)?;
        let session = connect::open(
            &self.http,
            &self.options,
            &server.name,
            &server.url,
            &headers,
        )
        .await?;
        let result = session.call_tool(&request.tool, arguments).await?;
        let mut content = serde_json::to_value(&result.content).unwrap_or_default();
        let mut structured_content = result.structured_content;
        headers.redact(&mut content);
        if let Some(s) = structured_content.as_mut() {
            headers.redact(s);
        }
        let bytes = serde_json::to_vec(&content).map_or(0, |v| v.len())
            + structured_content
                .as_ref()
                .and_then(|s| serde_json::to_vec(s).ok())
                .map_or(0, |v| v.len());
        if bytes > self.options.max_result_bytes {
            return Err(McpError::ResultTooLarge {
                name: server.name.clone(),
                tool: request.tool.clone(),
                bytes,
                limit: self.options.max_result_bytes,
            });
        }
        Ok(McpCallResult {
            content,
            structured_content,
            is_error: result.is_error.unwrap_or(false),
        })
    }

    /// One server's tools, from the cache while fresh.
    async fn tools_of(
        &self,
        master: &MasterKey,
        user_id: &str,
        server: &McpServer,
    ) -> Result<Arc<Vec<McpTool>>, McpError> {
        if server.url.is_empty() {
            return Err(McpError::NotRemote(server.name.clone()));
        }
        let fingerprint = crate::sha256_hex(&format!("{}\n{}", server.url, server.env_enc));
        if let Some(hit) = self.cached(&server.id, &fingerprint) {
            return Ok(hit);
        }
        let headers = headers_of(master, user_id, server)?;
        let session = connect::open(
            &self.http,
            &self.options,
            &server.name,
            &server.url,
            &headers,
        )
        .await?;
        let tools: Vec<McpTool> = session
            .list_tools()
            .await?
            .into_iter()
            .take(MAX_TOOLS_PER_SERVER)
            .map(|t| {
                let mut input_schema = serde_json::Value::Object((*t.input_schema).clone());
                headers.redact(&mut input_schema);
                McpTool {
                    name: t.name.into_owned(),
                    description: headers
                        .redact_text(t.description.as_deref().unwrap_or_default())
                        .chars()
                        .take(MAX_DESCRIPTION_CHARS)
                        .collect(),
                    input_schema,
                }
            })
            .collect();
        let tools = Arc::new(tools);
        self.remember(&server.id, fingerprint, Arc::clone(&tools));
        Ok(tools)
    }

    fn cached(&self, server_id: &str, fingerprint: &str) -> Option<Arc<Vec<McpTool>>> {
        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = lists.get(server_id)?;
        (hit.fingerprint == fingerprint && hit.at.elapsed() < self.options.tool_list_ttl)
            .then(|| Arc::clone(&hit.tools))
    }

    fn remember(&self, server_id: &str, fingerprint: String, tools: Arc<Vec<McpTool>>) {
        if self.options.tool_list_ttl.is_zero() {
            return;
        }
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        if lists.len() >= MAX_CACHED_LISTS {
            let ttl = self.options.tool_list_ttl;
            lists.retain(|_, l| l.at.elapsed() < ttl);
            if lists.len() >= MAX_CACHED_LISTS {
                lists.clear();
            }
        }
        lists.insert(
            server_id.to_owned(),
            CachedList {
                fingerprint,
                at: Instant::now(),
                tools,
            },
        );
    }
}

/// The server's headers, unsealed for one connection.
fn headers_of(
    master: &MasterKey,
    user_id: &str,
    server: &McpServer,
) -> Result<SecretHeaders, McpError> {
    let misconfigured = |reason: String| McpError::Misconfigured {
        name: server.name.clone(),
        reason,
    };
    let plain = master
        .open(&SealedRow::mcp_env(&server.id, user_id), &server.env_enc)
        .map_err(|_| {
            misconfigured(
                "its stored variables do not open with this relay's master key; delete it and add it again"
                    .to_owned(),
            )
        })?;
    SecretHeaders::from_env_json(&plain).map_err(|e| misconfigured(e.to_string()))
}
