//! The signed MCP calls of [`RelayClient`]: list the tools of the user's MCP servers and call
//! one. The relay connects to the servers with the secrets it keeps; this side only ever sees
//! names, schemas and results ([`katachi_proto::mcp`]).
//!
//! A refusal keeps the relay's `mcp.*` code ([`RelayError::Rejected`]), so the model is told
//! exactly why a tool was not available.

use katachi_proto::mcp::{
    McpCallRequest, McpCallResult, McpToolList, MCP_CALL_PATH, MCP_TOOLS_PATH,
};

use super::calls::{encode, RelayClient, RelayError};

impl RelayClient {
    /// The tools of the user's MCP servers (each server with its tools or its error).
    ///
    /// # Errors
    /// [`RelayError`].
    pub async fn mcp_tools(&self) -> Result<McpToolList, RelayError> {
        self.call(MCP_TOOLS_PATH, Vec::new()).await?.json()
    }

    /// Calls one tool of one of the user's MCP servers.
    ///
    /// # Errors
    /// [`RelayError`]; the relay's refusals keep their `mcp.*` code in
    /// [`RelayError::Rejected`].
    pub async fn mcp_call(&self, request: &McpCallRequest) -> Result<McpCallResult, RelayError> {
        self.call(MCP_CALL_PATH, encode(request)).await?.json()
    }
}
