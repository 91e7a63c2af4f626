//! [`McpError`]: why an MCP list or call failed, with a stable wire code each. Messages name the
//! server by the name its user gave it and never carry a secret or an upstream error's text.

use axum::http::StatusCode;

use crate::error::ApiError;

/// Why an MCP server's tools could not be listed or called.
#[derive(Debug, Clone, thiserror::Error)]
pub enum McpError {
    /// No server with that id belongs to the agent's user (deleted, or another user's: both look
    /// the same). List the tools again.
    #[error("no MCP server {0:?} is configured for this agent's user; list the MCP tools again")]
    ServerUnknown(String),
    /// A local (command) server: the relay runs only remote servers.
    #[error("MCP server {0:?} is a local (command) server; the relay connects only to remote servers (a URL)")]
    NotRemote(String),
    /// The stored settings cannot be used; the user fixes them on the relay's MCP page.
    #[error("MCP server {name:?} cannot be used as configured: {reason}; fix it on the relay's MCP servers page")]
    Misconfigured {
        /// The server's name.
        name: String,
        /// What is wrong (names a variable at most, never a value).
        reason: String,
    },
    /// The URL leads to a non-public address and the relay refuses those.
    #[error("MCP server {0:?} has a URL leading to a loopback, private or link-local address, which this relay refuses")]
    AddressRefused(String),
    /// No connection (refused, no route, DNS, TLS).
    #[error("cannot reach MCP server {0:?} (connection refused, DNS, network or TLS failure)")]
    Unreachable(String),
    /// No answer in time.
    #[error("MCP server {name:?} did not answer within {secs} s")]
    Timeout {
        /// The server's name.
        name: String,
        /// The limit.
        secs: u64,
    },
    /// An answer, but not a usable MCP one.
    #[error("MCP server {name:?} did not answer as an MCP server: {reason}")]
    ServerError {
        /// The server's name.
        name: String,
        /// The relay's description (an HTTP status, "not MCP", "refused the credentials").
        reason: String,
    },
    /// The server refused or failed the call.
    #[error("MCP server {name:?} refused the call of {tool:?}: {message}")]
    ToolFailed {
        /// The server's name.
        name: String,
        /// The tool.
        tool: String,
        /// The server's message, secrets redacted, cut to 500 characters.
        message: String,
    },
    /// The result is larger than the relay passes on.
    #[error("the result of {tool:?} on MCP server {name:?} is {bytes} bytes, more than the {limit}-byte limit")]
    ResultTooLarge {
        /// The server's name.
        name: String,
        /// The tool.
        tool: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

impl McpError {
    /// The stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            McpError::ServerUnknown(_) => "mcp.server_unknown",
            McpError::NotRemote(_) => "mcp.not_remote",
            McpError::Misconfigured { .. } => "mcp.misconfigured",
            McpError::AddressRefused(_) => "mcp.address_refused",
            McpError::Unreachable(_) => "mcp.unreachable",
            McpError::Timeout { .. } => "mcp.timeout",
            McpError::ServerError { .. } => "mcp.server_error",
            McpError::ToolFailed { .. } => "mcp.tool_failed",
            McpError::ResultTooLarge { .. } => "mcp.result_too_large",
        }
    }

    /// The HTTP status of a call refused with it.
    pub fn status(&self) -> StatusCode {
        match self {
            McpError::ServerUnknown(_) => StatusCode::NOT_FOUND,
            McpError::NotRemote(_) | McpError::Misconfigured { .. } => StatusCode::CONFLICT,
            McpError::AddressRefused(_) => StatusCode::FORBIDDEN,
            McpError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            McpError::Unreachable(_)
            | McpError::ServerError { .. }
            | McpError::ToolFailed { .. }
            | McpError::ResultTooLarge { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// As the wire's `{code, message}`.
    pub fn to_wire(&self) -> katachi_proto::agent::ApiError {
        katachi_proto::agent::ApiError {
            code: self.code().to_owned(),
            message: self.to_string(),
        }
    }
}

impl From<McpError> for ApiError {
    fn from(e: McpError) -> Self {
        ApiError::new(e.status(), e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use katachi_proto::relay_error::{Disposition, RelayErrorCode};

    use super::*;

    #[test]
    fn every_mcp_code_is_known_to_agents_and_final_for_the_call() {
        let name = || "s".to_owned();
        let all = [
            McpError::ServerUnknown(name()),
            McpError::NotRemote(name()),
            McpError::Misconfigured {
                name: name(),
                reason: String::new(),
            },
            McpError::AddressRefused(name()),
            McpError::Unreachable(name()),
            McpError::Timeout {
                name: name(),
                secs: 1,
            },
            McpError::ServerError {
                name: name(),
                reason: String::new(),
            },
            McpError::ToolFailed {
                name: name(),
                tool: String::new(),
                message: String::new(),
            },
            McpError::ResultTooLarge {
                name: name(),
                tool: String::new(),
                bytes: 2,
                limit: 1,
            },
        ];
        for e in &all {
            let code = RelayErrorCode::parse(e.code());
            // final: an agent neither retries it blindly nor signs in again because of it
            assert_eq!(
                code.known_disposition(),
                Some(Disposition::Fatal),
                "{}",
                e.code()
            );
            assert!(e.status().is_client_error() || e.status().is_server_error());
        }
    }
}
