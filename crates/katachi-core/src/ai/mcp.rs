//! The user's MCP tools, offered to the model next to the agent's own: listed and called through
//! the relay's signed MCP calls ([`crate::relay_link::mcp_calls`]).
//!
//! # Contract
//! - The relay runs the MCP servers with the secrets it keeps; nothing here runs locally, so an
//!   MCP tool can neither touch the workspace nor change the sandbox policy or the workspaces.
//! - Names: `mcp__<server>__<tool>`, every character outside `[a-zA-Z0-9_-]` turned into `_`, at
//!   most 64 characters (what OpenAI and Anthropic accept); a name cut short or colliding with
//!   another gets a short hash of the original, so two tools never share a name.
//! - Every MCP call needs the user's approval (subject `mcp:<server>/<tool>`, so "for this
//!   session" covers that one tool); the preview shows the server, the tool and the arguments.
//! - The list is fetched once before a turn ([`McpTools::fetch`]); when the agent is signed out,
//!   offline or the relay refuses, the model simply sees no MCP tools (logged at debug) and the
//!   built-in tools work as ever ([`WithMcpTools`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use katachi_proto::mcp::{McpCallRequest, McpCallResult, McpToolList};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::chat::{ToolOutcome, ToolOutputChunk, TurnTools};
use super::model::{ToolCall, ToolSpec};
use crate::relay_link::calls::{RelayClient, RelayError};

/// Prefix of every MCP tool's name.
pub const MCP_PREFIX: &str = "mcp__";
/// Longest tool name the providers accept.
const MAX_NAME: usize = 64;
/// How long a turn waits for the MCP tool list before starting without it.
const LIST_TIMEOUT: Duration = Duration::from_secs(15);

/// The relay's MCP calls, as the tool source uses them (the [`RelayClient`], or a test double).
pub trait McpRelay: Send + Sync {
    /// The tools of the user's MCP servers.
    fn list(&self) -> BoxFuture<'_, Result<McpToolList, RelayError>>;
    /// Calls one tool.
    fn call<'a>(
        &'a self,
        request: &'a McpCallRequest,
    ) -> BoxFuture<'a, Result<McpCallResult, RelayError>>;
}

impl McpRelay for RelayClient {
    fn list(&self) -> BoxFuture<'_, Result<McpToolList, RelayError>> {
        Box::pin(self.mcp_tools())
    }

    fn call<'a>(
        &'a self,
        request: &'a McpCallRequest,
    ) -> BoxFuture<'a, Result<McpCallResult, RelayError>> {
        Box::pin(self.mcp_call(request))
    }
}

/// One MCP tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
struct McpEntry {
    /// The name the model calls it by.
    model_name: String,
    /// The server's id at the relay.
    server_id: String,
    /// The server's name.
    server_name: String,
    /// The tool's name on its server.
    tool: String,
    /// What the model is told.
    description: String,
    /// Its arguments' schema.
    schema: serde_json::Value,
}

/// The MCP tools of one turn.
pub struct McpTools {
    /// Where calls go.
    relay: Arc<dyn McpRelay>,
    /// The tools.
    entries: Vec<McpEntry>,
}

impl McpTools {
    /// The tools the relay lists now; `None` (logged at debug) when it cannot be asked or
    /// refuses, or lists no tool.
    pub async fn fetch(relay: Arc<dyn McpRelay>) -> Option<Self> {
        let list = match tokio::time::timeout(LIST_TIMEOUT, relay.list()).await {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => {
                tracing::debug!(code = e.code(), error = %e, "mcp: no MCP tools this turn");
                return None;
            }
            Err(_) => {
                tracing::debug!("mcp: the relay did not list the MCP tools in time");
                return None;
            }
        };
        let entries = entries_of(&list);
        (!entries.is_empty()).then_some(Self { relay, entries })
    }

    /// The tools' specs, for the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.entries
            .iter()
            .map(|e| ToolSpec {
                name: e.model_name.clone(),
                description: e.description.clone(),
                parameters: e.schema.clone(),
            })
            .collect()
    }

    fn entry(&self, name: &str) -> Option<&McpEntry> {
        self.entries.iter().find(|e| e.model_name == name)
    }
}

/// The entries of a list, named for the model (servers with an error are left out).
fn entries_of(list: &McpToolList) -> Vec<McpEntry> {
    let mut taken = HashSet::new();
    let mut entries = Vec::new();
    for server in list.servers.iter().filter(|s| s.error.is_none()) {
        for tool in &server.tools {
            let model_name = unique_name(&server.server_name, &tool.name, &mut taken);
            let description = if tool.description.is_empty() {
                format!("MCP tool {} of {}", tool.name, server.server_name)
            } else {
                format!(
                    "{} (MCP tool {} of {})",
                    tool.description, tool.name, server.server_name
                )
            };
            let schema = if tool.input_schema.is_object() {
                tool.input_schema.clone()
            } else {
                serde_json::json!({"type": "object"})
            };
            entries.push(McpEntry {
                model_name,
                server_id: server.server_id.clone(),
                server_name: server.server_name.clone(),
                tool: tool.name.clone(),
                description,
                schema,
            });
        }
    }
    entries
}

/// `mcp__<server>__<tool>`, sanitised, ≤ 64 characters, not in `taken` (then added to it).
fn unique_name(server: &str, tool: &str, taken: &mut HashSet<String>) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let full = format!("{MCP_PREFIX}{}__{}", clean(server), clean(tool));
    let mut name = full.clone();
    let mut round = 0u32;
    while name.len() > MAX_NAME || taken.contains(&name) {
        // a cut or colliding name gets 8 hex digits of the original (and a round number)
        let hash = hex::encode(Sha256::digest(
            format!("{server}\n{tool}\n{round}").as_bytes(),
        ));
        let keep = full.len().min(MAX_NAME - 9);
        name = format!("{}_{}", &full[..keep], &hash[..8]);
        round += 1;
    }
    taken.insert(name.clone());
    name
}

/// The built-in tools of a turn plus its MCP tools (when the relay listed any).
pub struct WithMcpTools {
    /// The agent's own tools.
    builtin: Arc<dyn TurnTools>,
    /// The MCP tools, if any.
    mcp: Option<McpTools>,
}

impl WithMcpTools {
    /// `builtin`, plus `mcp`'s tools.
    pub fn new(builtin: Arc<dyn TurnTools>, mcp: Option<McpTools>) -> Self {
        Self { builtin, mcp }
    }

    fn mcp_entry(&self, call: &ToolCall) -> Option<(&McpTools, &McpEntry)> {
        let mcp = self.mcp.as_ref()?;
        Some((mcp, mcp.entry(&call.name)?))
    }
}

/// The arguments of a call as a JSON object (`null` is an empty one).
fn arguments_of(call: &ToolCall) -> Result<serde_json::Value, ToolOutcome> {
    match &call.arguments {
        serde_json::Value::Object(_) => Ok(call.arguments.clone()),
        serde_json::Value::Null => Ok(serde_json::json!({})),
        _ => Err(ToolOutcome::error(
            "request.invalid",
            "the arguments of an MCP tool must be a JSON object",
        )),
    }
}

impl TurnTools for WithMcpTools {
    fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = self.builtin.specs();
        if let Some(mcp) = &self.mcp {
            specs.extend(mcp.specs());
        }
        specs
    }

    fn approval_subject(&self, call: &ToolCall) -> Option<String> {
        match self.mcp_entry(call) {
            // every MCP call is asked: it acts outside this machine with the user's credentials
            Some((_, e)) => Some(format!("mcp:{}/{}", e.server_name, e.tool)),
            None => self.builtin.approval_subject(call),
        }
    }

    fn preview<'a>(
        &'a self,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Result<serde_json::Value, ToolOutcome>> {
        match self.mcp_entry(call) {
            Some((_, e)) => Box::pin(async move {
                Ok(serde_json::json!({
                    "kind": "mcp",
                    "server": e.server_name,
                    "tool": e.tool,
                    "arguments": arguments_of(call)?,
                }))
            }),
            None => self.builtin.preview(call),
        }
    }

    fn call<'a>(
        &'a self,
        call: &'a ToolCall,
        output: mpsc::Sender<ToolOutputChunk>,
    ) -> BoxFuture<'a, ToolOutcome> {
        let Some((mcp, e)) = self.mcp_entry(call) else {
            return self.builtin.call(call, output);
        };
        Box::pin(async move {
            let arguments = match arguments_of(call) {
                Ok(a) => a,
                Err(invalid) => return invalid,
            };
            let request = McpCallRequest {
                server_id: e.server_id.clone(),
                tool: e.tool.clone(),
                arguments,
            };
            match mcp.relay.call(&request).await {
                Ok(result) => {
                    let mut content = serde_json::json!({ "content": result.content });
                    if let Some(structured) = result.structured_content {
                        content["structured_content"] = structured;
                    }
                    ToolOutcome {
                        content,
                        is_error: result.is_error,
                    }
                }
                Err(RelayError::Rejected { code, message, .. }) => {
                    ToolOutcome::error(&code, message)
                }
                Err(other) => ToolOutcome::error(other.code(), other.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use katachi_proto::mcp::{McpServerTools, McpTool};

    use super::*;

    fn tool(name: &str) -> McpTool {
        McpTool {
            name: name.to_owned(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
        }
    }

    /// A relay that lists one server with `echo`, and answers calls with `answer`.
    struct ScriptedRelay {
        list: Result<McpToolList, ()>,
        answer: fn(&McpCallRequest) -> Result<McpCallResult, RelayError>,
    }

    impl McpRelay for ScriptedRelay {
        fn list(&self) -> BoxFuture<'_, Result<McpToolList, RelayError>> {
            let list = self.list.clone().map_err(|()| RelayError::Unreachable {
                url: "https://relay.example".into(),
                reason: "offline".into(),
            });
            Box::pin(async move { list })
        }

        fn call<'a>(
            &'a self,
            request: &'a McpCallRequest,
        ) -> BoxFuture<'a, Result<McpCallResult, RelayError>> {
            let answer = (self.answer)(request);
            Box::pin(async move { answer })
        }
    }

    /// Built-in tools: one read-only tool, `list_dir`.
    struct Builtin;

    impl TurnTools for Builtin {
        fn specs(&self) -> Vec<ToolSpec> {
            vec![ToolSpec {
                name: "list_dir".into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
            }]
        }
        fn approval_subject(&self, _: &ToolCall) -> Option<String> {
            None
        }
        fn preview<'a>(
            &'a self,
            _: &'a ToolCall,
        ) -> BoxFuture<'a, Result<serde_json::Value, ToolOutcome>> {
            Box::pin(async { Ok(serde_json::Value::Null) })
        }
        fn call<'a>(
            &'a self,
            _: &'a ToolCall,
            _: mpsc::Sender<ToolOutputChunk>,
        ) -> BoxFuture<'a, ToolOutcome> {
            Box::pin(async {
                ToolOutcome {
                    content: serde_json::json!("builtin"),
                    is_error: false,
                }
            })
        }
    }

    fn one_server() -> McpToolList {
        McpToolList {
            servers: vec![McpServerTools {
                server_id: "mcp_1".into(),
                server_name: "tools".into(),
                tools: vec![tool("echo")],
                error: None,
            }],
        }
    }

    fn echo_call(arguments: serde_json::Value) -> ToolCall {
        ToolCall {
            id: "c1".into(),
            name: "mcp__tools__echo".into(),
            arguments,
        }
    }

    #[tokio::test]
    async fn an_offline_relay_leaves_the_built_in_tools_alone() {
        let relay = Arc::new(ScriptedRelay {
            list: Err(()),
            answer: |_| unreachable!("nothing is listed, nothing is called"),
        });
        let tools = WithMcpTools::new(Arc::new(Builtin), McpTools::fetch(relay).await);
        let names: Vec<String> = tools.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["list_dir"]);
        let (out, _) = mpsc::channel(1);
        let call = ToolCall {
            id: "c0".into(),
            name: "list_dir".into(),
            arguments: serde_json::json!({}),
        };
        assert_eq!(tools.call(&call, out).await.content, "builtin");
    }

    #[tokio::test]
    async fn every_mcp_call_is_asked_with_server_tool_and_arguments_and_refusals_keep_their_code() {
        let relay = Arc::new(ScriptedRelay {
            list: Ok(one_server()),
            answer: |request| {
                assert_eq!(
                    (request.server_id.as_str(), request.tool.as_str()),
                    ("mcp_1", "echo")
                );
                Err(RelayError::Rejected {
                    status: 502,
                    code: "mcp.unreachable".into(),
                    message: "cannot reach MCP server \"tools\"".into(),
                })
            },
        });
        let tools = WithMcpTools::new(Arc::new(Builtin), McpTools::fetch(relay).await);
        let call = echo_call(serde_json::json!({"text": "hi"}));
        assert_eq!(
            tools.approval_subject(&call).as_deref(),
            Some("mcp:tools/echo")
        );
        let preview = tools.preview(&call).await.unwrap();
        assert_eq!(
            preview,
            serde_json::json!({"kind": "mcp", "server": "tools", "tool": "echo", "arguments": {"text": "hi"}})
        );
        let (out, _) = mpsc::channel(1);
        let outcome = tools.call(&call, out).await;
        assert!(outcome.is_error);
        assert_eq!(outcome.content["error"]["code"], "mcp.unreachable");
        // arguments that are no object are refused before asking anyone
        let bad = echo_call(serde_json::json!([1, 2]));
        let refused = tools.preview(&bad).await.unwrap_err();
        assert_eq!(refused.content["error"]["code"], "request.invalid");
    }

    #[test]
    fn names_are_namespaced_sanitised_short_and_unique() {
        let long = "t".repeat(80);
        let list = McpToolList {
            servers: vec![
                McpServerTools {
                    server_id: "mcp_1".into(),
                    server_name: "My Tools.v2".into(),
                    tools: vec![
                        tool("echo"),
                        tool("read/file"),
                        tool(&long),
                        tool("read_file"),
                    ],
                    error: None,
                },
                McpServerTools {
                    server_id: "mcp_2".into(),
                    server_name: "down".into(),
                    tools: vec![tool("x")],
                    error: Some(katachi_proto::agent::ApiError {
                        code: "mcp.unreachable".into(),
                        message: "m".into(),
                    }),
                },
            ],
        };
        let names: Vec<String> = entries_of(&list)
            .into_iter()
            .map(|e| e.model_name)
            .collect();
        assert_eq!(names[0], "mcp__My_Tools_v2__echo");
        assert_eq!(names[1], "mcp__My_Tools_v2__read_file");
        assert!(names[2].len() <= 64 && names[2].starts_with("mcp__My_Tools_v2__ttt"));
        // `read_file` collides with the sanitised `read/file`: it gets a hash
        assert_ne!(names[3], names[1]);
        assert!(names[3].starts_with("mcp__My_Tools_v2__read_file_"));
        assert_eq!(names.len(), 4, "a server with an error offers nothing");
        for n in &names {
            assert!(n.len() <= 64);
            assert!(n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        }
    }
}
