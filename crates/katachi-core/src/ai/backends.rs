//! The agent's own [`ChatBackends`]: each workspace's model is a [`Provider`] built from its
//! settings and its API key from the vault; its tools are a [`ToolBox`] over the agent's audited
//! API router, plus the user's MCP tools the relay lists when the agent is registered
//! ([`WithMcpTools`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;

use tokio::sync::mpsc;

use super::chat::prompt::MEMORY_FILES;
use super::chat::{
    ChatBackends, Failure, ModelCall, ModelDescription, ToolOutcome, ToolOutputChunk, TurnModel,
    TurnTools,
};
use super::mcp::{McpRelay, McpTools, WithMcpTools};
use super::model::{ModelRequest, ToolCall, ToolSpec};
use super::provider::{Provider, ProviderConfig, ProviderError, ProviderKind, ProviderOptions};
use super::settings::{AiSettings, SettingsError};
use super::tools::{ToolBox, ToolProgress, ToolResult};
use crate::signing::{Clock, ClockOffset};
use crate::store::Workspace;
use crate::{AgentCredentials, AgentHome, RelayClient};

/// Context window assumed for a model on another endpoint than the provider's own (a local
/// server's model), whose window katachi cannot know: compaction starts early rather than late.
pub const LOCAL_CONTEXT_TOKENS: u32 = 32_768;

/// A provider client as a turn's model.
pub struct ProviderModel {
    /// The client (one per turn: its byte counter is the turn's).
    provider: Provider,
}

impl ProviderModel {
    /// Wraps `provider`.
    pub fn new(provider: Provider) -> Self {
        Self { provider }
    }
}

impl TurnModel for ProviderModel {
    fn describe(&self) -> ModelDescription {
        let config = self.provider.config();
        ModelDescription {
            provider: config.kind.as_str().to_owned(),
            model: config.model.clone(),
            max_tokens: config.max_tokens,
            context_tokens: config.context_tokens,
        }
    }

    fn stream(&self, request: ModelRequest) -> BoxFuture<'_, ModelCall> {
        Box::pin(async move {
            let before = self.provider.bytes_sent();
            let started = self.provider.stream(&request).await;
            let request_bytes = self.provider.bytes_sent().saturating_sub(before);
            ModelCall {
                request_bytes,
                reply: started
                    .map(|events| events.map(|e| e.map_err(|e| failure(&e))).boxed())
                    .map_err(|e| failure(&e)),
            }
        })
    }
}

/// A provider error as the browser and the model are told it.
pub fn failure(e: &ProviderError) -> Failure {
    Failure::new(e.code(), e.to_string())
}

/// The provider configuration of checked settings.
pub fn provider_config(settings: &AiSettings) -> Result<ProviderConfig, Failure> {
    let kind = match settings.provider.as_str() {
        "openai" => ProviderKind::OpenAi,
        "anthropic" => ProviderKind::Anthropic,
        other => {
            return Err(Failure::new(
                "ai.settings_invalid",
                SettingsError::UnknownProvider(other.to_owned()).to_string(),
            ))
        }
    };
    let mut config = ProviderConfig::default_for(kind);
    config.model.clone_from(&settings.model);
    if let Some(url) = &settings.base_url {
        if *url != config.base_url {
            config.base_url = url.clone();
            config.context_tokens = LOCAL_CONTEXT_TOKENS;
        }
    }
    Ok(config)
}

/// The model workspace `workspace` uses, with its key from the vault (blocking).
///
/// # Errors
/// [`Failure`] `ai.not_configured`, `ai.settings_invalid`, `ai.no_api_key`, `store.unavailable`,
/// or the vault's failure (`ai.key_unreadable`).
pub fn model_for(
    home: &AgentHome,
    workspace: &Workspace,
    options: ProviderOptions,
) -> Result<Arc<dyn TurnModel>, Failure> {
    let store = home.store().map_err(|e| {
        tracing::warn!(error = %e, "chat: cannot open the store for the AI settings");
        Failure::store()
    })?;
    let settings = AiSettings::for_workspace(&store, workspace.id)
        .map_err(|e| Failure::new(e.code(), e.to_string()))?;
    let config = provider_config(&settings)?;
    let key = home.api_keys().get(&settings.key_name).map_err(|e| {
        tracing::warn!(error = %e, key = %settings.key_name, "chat: the API key cannot be read");
        Failure::new(
            "ai.key_unreadable",
            format!(
                "the API key {:?} cannot be read from the keychain: {e}; set it again with `katachi ai key set {}`",
                settings.key_name, settings.key_name
            ),
        )
    })?;
    let provider = Provider::new(config, key, options).map_err(|e| failure(&e))?;
    Ok(Arc::new(ProviderModel::new(provider)))
}

/// The agent's backends: its home (settings, keys) and its audited API router (tools).
pub struct AgentBackends {
    /// Settings, keys, store.
    home: Arc<AgentHome>,
    /// The API router the tunnel serves, audit layer included.
    router: axum::Router,
    /// How provider calls are made.
    options: ProviderOptions,
    /// The local clock the MCP calls to the relay are signed with.
    clock: Arc<dyn Clock>,
    /// The agent's relay clock offset, shared with its session and tunnel.
    offset: Arc<ClockOffset>,
}

impl AgentBackends {
    /// Backends over `home`, with tools through `router`; MCP calls signed at `clock`'s time
    /// corrected by the agent's `offset` (the one its session and tunnel use).
    pub fn new(
        home: Arc<AgentHome>,
        router: axum::Router,
        options: ProviderOptions,
        clock: Arc<dyn Clock>,
        offset: Arc<ClockOffset>,
    ) -> Self {
        Self {
            home,
            router,
            options,
            clock,
            offset,
        }
    }

    /// A relay client from the saved credentials; `None` when signed out or unreadable.
    async fn relay(&self) -> Option<Arc<dyn McpRelay>> {
        let client = self.relay_client().await?;
        Some(Arc::new(client))
    }

    /// [`Self::relay`]'s client: signs with the agent's shared clock offset.
    async fn relay_client(&self) -> Option<RelayClient> {
        let home = Arc::clone(&self.home);
        let saved = tokio::task::spawn_blocking(move || AgentCredentials::load(&home))
            .await
            .ok()?;
        let credentials = match saved {
            Ok(Some(c)) => c,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "mcp: the credentials cannot be read; no MCP tools");
                return None;
            }
        };
        match RelayClient::with_shared_offset(
            credentials,
            Arc::clone(&self.clock),
            Arc::clone(&self.offset),
        ) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::debug!(error = %e, "mcp: no relay client; no MCP tools");
                None
            }
        }
    }
}

/// A turn's tools: the built-in ones through `router`, and the MCP tools `relay` lists (none when
/// there is no relay or it cannot be reached).
async fn turn_tools(
    router: &axum::Router,
    workspace: &Workspace,
    user: &str,
    session_id: i64,
    relay: Option<Arc<dyn McpRelay>>,
) -> Arc<dyn TurnTools> {
    let builtin: Arc<dyn TurnTools> = Arc::new(ToolBox::new(
        router.clone(),
        workspace.id,
        user,
        &session_id.to_string(),
    ));
    let mcp = match relay {
        Some(relay) => McpTools::fetch(relay).await,
        None => None,
    };
    Arc::new(WithMcpTools::new(builtin, mcp))
}

impl ChatBackends for AgentBackends {
    fn model_for(&self, workspace: &Workspace) -> Result<Arc<dyn TurnModel>, Failure> {
        model_for(&self.home, workspace, self.options.clone())
    }

    fn tools_for<'a>(
        &'a self,
        workspace: &'a Workspace,
        user: &'a str,
        session_id: i64,
    ) -> BoxFuture<'a, Arc<dyn TurnTools>> {
        Box::pin(async move {
            let relay = self.relay().await;
            turn_tools(&self.router, workspace, user, session_id, relay).await
        })
    }

    fn memory_files<'a>(
        &'a self,
        workspace: &'a Workspace,
    ) -> BoxFuture<'a, Vec<(&'static str, String)>> {
        Box::pin(memory_files(ToolBox::new(
            self.router.clone(),
            workspace.id,
            "katachi",
            "memory",
        )))
    }
}

/// One provider for every workspace, with a key given up front, and tools through `router`:
/// for embedders that manage settings themselves, benchmarks and tests. The agent itself uses
/// [`AgentBackends`].
pub struct FixedBackends {
    /// The provider every workspace uses.
    config: ProviderConfig,
    /// Its key.
    key: Option<crate::SecretBytes>,
    /// How its calls are made.
    options: ProviderOptions,
    /// The API router the tools call.
    router: axum::Router,
    /// Where the user's MCP tools are listed and called, if anywhere.
    mcp: Option<Arc<dyn McpRelay>>,
}

impl FixedBackends {
    /// Backends calling `config` with `key`, tools through `router`.
    pub fn new(
        config: ProviderConfig,
        key: Option<crate::SecretBytes>,
        options: ProviderOptions,
        router: axum::Router,
    ) -> Self {
        Self {
            config,
            key,
            options,
            router,
            mcp: None,
        }
    }

    /// The same, offering the MCP tools `relay` lists (a registered agent's [`RelayClient`]).
    pub fn with_mcp(mut self, relay: Arc<dyn McpRelay>) -> Self {
        self.mcp = Some(relay);
        self
    }
}

impl ChatBackends for FixedBackends {
    fn model_for(&self, _: &Workspace) -> Result<Arc<dyn TurnModel>, Failure> {
        let key = self
            .key
            .as_ref()
            .map(|k| crate::SecretBytes::new(k.expose().to_vec()));
        let provider = Provider::new(self.config.clone(), key, self.options.clone())
            .map_err(|e| failure(&e))?;
        Ok(Arc::new(ProviderModel::new(provider)))
    }

    fn tools_for<'a>(
        &'a self,
        workspace: &'a Workspace,
        user: &'a str,
        session_id: i64,
    ) -> BoxFuture<'a, Arc<dyn TurnTools>> {
        Box::pin(turn_tools(
            &self.router,
            workspace,
            user,
            session_id,
            self.mcp.clone(),
        ))
    }

    fn memory_files<'a>(
        &'a self,
        workspace: &'a Workspace,
    ) -> BoxFuture<'a, Vec<(&'static str, String)>> {
        Box::pin(memory_files(ToolBox::new(
            self.router.clone(),
            workspace.id,
            "katachi",
            "memory",
        )))
    }
}

/// The workspace's memory files present at its root, read as the model's `read_file` reads
/// (path rules, size cap, audited): what of them the provider is sent is recorded.
pub async fn memory_files(tools: ToolBox) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for name in MEMORY_FILES {
        let call = ToolCall {
            id: format!("memory-{name}"),
            name: "read_file".to_owned(),
            arguments: serde_json::json!({ "path": name }),
        };
        let result = tools.call(&call, None).await;
        if result.is_error {
            continue;
        }
        if let Some(text) = result
            .content
            .get("content")
            .and_then(serde_json::Value::as_str)
        {
            found.push((name, text.to_owned()));
        }
    }
    found
}

impl TurnTools for ToolBox {
    fn specs(&self) -> Vec<ToolSpec> {
        ToolBox::specs(self)
    }

    fn approval_subject(&self, call: &ToolCall) -> Option<String> {
        if !ToolBox::needs_approval(&call.name) {
            return None;
        }
        Some(match call.name.as_str() {
            // a session grant covers one command, whatever its arguments
            "run_command" => call
                .arguments
                .get("command")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            _ => "*".to_owned(),
        })
    }

    fn preview<'a>(
        &'a self,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Result<serde_json::Value, ToolOutcome>> {
        Box::pin(async move {
            match ToolBox::preview(self, call).await {
                Ok(preview) => Ok(serde_json::to_value(preview).unwrap_or_default()),
                Err(answer) => Err(outcome(answer)),
            }
        })
    }

    fn call<'a>(
        &'a self,
        call: &'a ToolCall,
        output: mpsc::Sender<ToolOutputChunk>,
    ) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(async move {
            let (progress, mut chunks) = mpsc::channel(64);
            let forward = async move {
                while let Some(ToolProgress::Output { stream, text }) = chunks.recv().await {
                    if output.send(ToolOutputChunk { stream, text }).await.is_err() {
                        break;
                    }
                }
            };
            let (result, ()) = tokio::join!(ToolBox::call(self, call, Some(progress)), forward);
            outcome(result)
        })
    }
}

fn outcome(result: ToolResult) -> ToolOutcome {
    ToolOutcome {
        content: result.content,
        is_error: result.is_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{Fingerprint, FixedFingerprint};
    use crate::signing::SystemClock;
    use crate::vault::MemoryKeystore;
    use crate::{KatachiDirs, RelayUrl, SecretBytes};

    #[tokio::test]
    async fn mcp_calls_sign_with_the_agents_shared_clock_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let fingerprint = FixedFingerprint(
            Fingerprint::from_components([("machine_id".to_owned(), b"mcp-offset".to_vec())])
                .unwrap(),
        );
        let home = Arc::new(
            AgentHome::open_with_keystore(
                KatachiDirs::under(&tmp.path().join("home")),
                &fingerprint,
                Box::new(MemoryKeystore::default()),
            )
            .unwrap(),
        );
        let offset = Arc::new(ClockOffset::new(300));
        let backends = AgentBackends::new(
            Arc::clone(&home),
            axum::Router::new(),
            ProviderOptions::default(),
            Arc::new(SystemClock),
            Arc::clone(&offset),
        );
        assert!(
            backends.relay_client().await.is_none(),
            "signed out: no MCP"
        );

        AgentCredentials::new(
            RelayUrl::parse("https://relay.test").unwrap(),
            "agent-1".to_owned(),
            SecretBytes::new(b"token".to_vec()),
            SecretBytes::new(vec![7; 32]),
            None,
        )
        .save(&home)
        .unwrap();
        let client = backends.relay_client().await.unwrap();
        assert_eq!(client.clock_offset_secs(), 300, "learnt by the session");
        // the session learns a new offset later: the MCP client signs with it too
        let local_now = 1_800_000_000;
        let relay_date = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(local_now - 42),
        );
        offset.relearn(&relay_date, local_now as i64).unwrap();
        assert_eq!(client.clock_offset_secs(), -42, "one offset, not a copy");
    }
}
