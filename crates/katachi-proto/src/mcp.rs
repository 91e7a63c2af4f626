//! The signed MCP calls: an agent lists the tools of its user's MCP servers and calls one. The
//! relay connects to the servers (with the secrets it keeps sealed); the agent never sees a
//! secret, only tool names, descriptions, schemas and results.
//!
//! Both are signed `POST`s like the heartbeat ([`crate::signing`]). A refusal of a whole call is
//! the relay's usual `{"error":{"code","message"}}` with an `mcp.*` code
//! ([`crate::relay_error::RelayErrorCode`]); in a list, one server's failure is reported on that
//! server ([`McpServerTools::error`]) and the others are still listed.

use serde::{Deserialize, Serialize};

use crate::agent::ApiError;

/// List the tools of the user's MCP servers (empty body).
pub const MCP_TOOLS_PATH: &str = "/api/agent/mcp/tools";
/// Call one tool ([`McpCallRequest`] → [`McpCallResult`]).
pub const MCP_CALL_PATH: &str = "/api/agent/mcp/call";
/// Longest tool name accepted in a call.
pub const MAX_TOOL_NAME: usize = 128;

/// The tools of every MCP server of the agent's user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolList {
    /// One entry per configured server, by name.
    pub servers: Vec<McpServerTools>,
}

/// One server and its tools, or why they are not available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServerTools {
    /// The server's id at the relay (what a call names).
    pub server_id: String,
    /// The name the user gave it.
    pub server_name: String,
    /// Its tools (empty when `error` is set).
    pub tools: Vec<McpTool>,
    /// Why the server's tools are not available (`mcp.not_remote`, `mcp.unreachable`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

/// One tool as the server describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpTool {
    /// The tool's name on its server.
    pub name: String,
    /// What it does (may be empty).
    #[serde(default)]
    pub description: String,
    /// The JSON schema of its arguments (an object schema).
    pub input_schema: serde_json::Value,
}

/// "Call this tool of this server with these arguments."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpCallRequest {
    /// The server's id ([`McpServerTools::server_id`]).
    pub server_id: String,
    /// The tool's name on that server.
    pub tool: String,
    /// The arguments: a JSON object.
    pub arguments: serde_json::Value,
}

/// What the tool returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpCallResult {
    /// The MCP result content: an array of content items (`{"type":"text","text":…}`, …).
    pub content: serde_json::Value,
    /// The structured result, when the tool gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<serde_json::Value>,
    /// The tool reports a failure (the content says why).
    pub is_error: bool,
}
