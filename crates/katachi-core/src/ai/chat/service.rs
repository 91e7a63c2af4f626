//! [`ChatService`]: the agent's chat sessions — start a turn, stop it, answer its approvals — over
//! one store and the model and tools of each workspace ([`ChatBackends`]).
//!
//! # Guarantees
//! - One turn at a time per session: a second one is refused (`chat.busy`) while the first runs.
//! - A session is reachable only while its workspace is allowed: a removed workspace's sessions
//!   answer `chat.session_not_found`, like sessions that never existed.
//! - What can be checked before a turn starts is refused as an error, not streamed: an unknown
//!   session, no provider set for the workspace, a missing API key, an empty message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::ChatEvent;
use super::prompt::system_prompt;
use super::seams::{TurnModel, TurnTools};
use super::turn::{Turn, MAX_STEPS};
use super::{ChatStore, Failure};
use crate::ai::approvals::Approvals;
use crate::store::{Actor, ChatSession, Workspace};

/// Longest user message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Lines buffered between a turn and its client.
const EVENT_BUFFER: usize = 256;

/// What the chat service needs per workspace: its model, its tools, its memory files.
pub trait ChatBackends: Send + Sync + 'static {
    /// The model the workspace uses (its provider settings and API key). Blocking: it may ask
    /// the keychain.
    ///
    /// # Errors
    /// [`Failure`] `ai.not_configured` (no provider set), `ai.no_api_key`, `ai.settings_invalid`.
    fn model_for(&self, workspace: &Workspace) -> Result<Arc<dyn TurnModel>, Failure>;
    /// The tools of the workspace for chat session `session_id`, acting for the relay's user
    /// `user` (both recorded with every call in the audit log). Asked once per turn, before it
    /// starts: it may ask the relay for the user's MCP tools.
    fn tools_for<'a>(
        &'a self,
        workspace: &'a Workspace,
        user: &'a str,
        session_id: i64,
    ) -> BoxFuture<'a, Arc<dyn TurnTools>>;
    /// The workspace's memory files present at its root (`AGENTS.md`, …), read with the API's
    /// path rules.
    fn memory_files<'a>(
        &'a self,
        workspace: &'a Workspace,
    ) -> BoxFuture<'a, Vec<(&'static str, String)>>;
}

/// Why a chat call was refused before anything ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// No such session in an allowed workspace.
    #[error("chat session {0} does not exist (or its workspace is no longer allowed)")]
    SessionNotFound(i64),
    /// No allowed workspace has this id.
    #[error("workspace {0} is not allowed; GET /v1/workspaces lists them")]
    WorkspaceNotFound(i64),
    /// A turn of this session is running.
    #[error("a turn of chat session {0} is running; stop it or wait for it to end")]
    Busy(i64),
    /// The workspace has no note with this key.
    #[error("the workspace has no note {0:?}; GET …/chat/notes lists them")]
    NoteNotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Something the call needed failed (store, settings, key).
    #[error("{0}")]
    Failed(Failure),
}

impl ChatError {
    /// The stable wire code.
    pub fn code(&self) -> &str {
        match self {
            ChatError::SessionNotFound(_) => "chat.session_not_found",
            ChatError::WorkspaceNotFound(_) => "workspace.not_found",
            ChatError::Busy(_) => "chat.busy",
            ChatError::NoteNotFound(_) => "chat.note_not_found",
            ChatError::Invalid(_) => "request.invalid",
            ChatError::Failed(f) => &f.code,
        }
    }
}

impl From<Failure> for ChatError {
    fn from(f: Failure) -> Self {
        ChatError::Failed(f)
    }
}

/// The agent's chat sessions. Cheap to clone.
#[derive(Clone)]
pub struct ChatService {
    /// Sessions, messages, decisions, egress.
    store: ChatStore,
    /// Pending approvals.
    approvals: Approvals,
    /// Models, tools and memory per workspace.
    backends: Arc<dyn ChatBackends>,
    /// The running turns by session, with the token that stops each.
    running: Arc<Mutex<HashMap<i64, CancellationToken>>>,
    /// Most model calls of one turn.
    max_steps: usize,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService")
            .field("max_steps", &self.max_steps)
            .finish_non_exhaustive()
    }
}

/// A started turn: its events, and the guard that stops it when dropped (the client went away).
pub struct StartedTurn {
    /// The turn's lines, ending with `done`.
    pub events: mpsc::Receiver<ChatEvent>,
    /// Stops the turn when dropped.
    pub guard: StopOnDrop,
}

/// Stops a turn when dropped (after its end, a no-op).
pub struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl ChatService {
    /// The service over `store`, asking on `approvals`, with `backends` per workspace.
    pub fn new(store: ChatStore, approvals: Approvals, backends: Arc<dyn ChatBackends>) -> Self {
        Self {
            store,
            approvals,
            backends,
            running: Arc::default(),
            max_steps: MAX_STEPS,
        }
    }

    /// The store.
    pub fn store(&self) -> &ChatStore {
        &self.store
    }

    /// The pending approvals.
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    /// The allowed workspace `id`.
    ///
    /// # Errors
    /// [`ChatError::WorkspaceNotFound`], or a store failure.
    pub async fn workspace(&self, id: i64) -> Result<Workspace, ChatError> {
        self.store
            .run(|s| s.workspaces().list())
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or(ChatError::WorkspaceNotFound(id))
    }

    /// Session `id` and its (allowed) workspace.
    ///
    /// # Errors
    /// [`ChatError::SessionNotFound`], or a store failure.
    pub async fn session(&self, id: i64) -> Result<(ChatSession, Workspace), ChatError> {
        let session = self
            .store
            .run(move |s| s.chat().session(id))
            .await?
            .ok_or(ChatError::SessionNotFound(id))?;
        let ws_id = session.workspace_id.ok_or(ChatError::SessionNotFound(id))?;
        let workspace = self
            .workspace(ws_id)
            .await
            .map_err(|_| ChatError::SessionNotFound(id))?;
        Ok((session, workspace))
    }

    /// The model workspace `workspace` uses, or why it has none.
    ///
    /// # Errors
    /// [`Failure`] as [`ChatBackends::model_for`] says.
    pub async fn describe_model(
        &self,
        workspace: &Workspace,
    ) -> Result<super::seams::ModelDescription, Failure> {
        let backends = Arc::clone(&self.backends);
        let ws = workspace.clone();
        tokio::task::spawn_blocking(move || backends.model_for(&ws).map(|m| m.describe()))
            .await
            .map_err(|_| {
                Failure::new(
                    "ai.not_configured",
                    "the provider settings could not be read",
                )
            })?
    }

    /// Whether a turn of session `id` is running.
    pub fn is_running(&self, id: i64) -> bool {
        self.lock_running().contains_key(&id)
    }

    /// Starts a turn of session `id` with the user's `text`, for the relay's user `user`.
    ///
    /// # Errors
    /// [`ChatError`] when the session is unknown or busy, the text empty or too long, or the
    /// workspace has no usable model.
    pub async fn start_turn(
        &self,
        id: i64,
        text: String,
        user: String,
    ) -> Result<StartedTurn, ChatError> {
        if text.trim().is_empty() {
            return Err(ChatError::Invalid("the message is empty".to_owned()));
        }
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ChatError::Invalid(format!(
                "the message is {} bytes, more than the {MAX_MESSAGE_BYTES}-byte limit",
                text.len()
            )));
        }
        let (session, workspace) = self.session(id).await?;
        let backends = Arc::clone(&self.backends);
        let ws = workspace.clone();
        let model = tokio::task::spawn_blocking(move || backends.model_for(&ws))
            .await
            .map_err(|_| {
                Failure::new(
                    "ai.not_configured",
                    "the provider settings could not be read",
                )
            })??;
        let cancel = CancellationToken::new();
        {
            let mut running = self.lock_running();
            if running.contains_key(&id) {
                return Err(ChatError::Busy(id));
            }
            running.insert(id, cancel.clone());
        }
        let actor = Actor::Ai {
            user: user.clone(),
            session: id.to_string(),
        };
        let (out, events) = mpsc::channel(EVENT_BUFFER);
        let service = self.clone();
        let token = cancel.clone();
        tokio::spawn(async move {
            // the user's MCP tools are asked of the relay here, not before the answer starts
            let tools = service.backends.tools_for(&workspace, &user, id).await;
            let memory = service.backends.memory_files(&workspace).await;
            let ws_id = workspace.id;
            let notes = service
                .store
                .run(move |s| s.memory().all(ws_id))
                .await
                .unwrap_or_default();
            let name = std::path::Path::new(&workspace.path)
                .file_name()
                .map_or_else(
                    || workspace.path.clone(),
                    |n| n.to_string_lossy().into_owned(),
                );
            let memory_refs: Vec<(&str, String)> = memory.into_iter().collect();
            let turn = Turn {
                session: &session,
                workspace: &workspace,
                system: system_prompt(&name, &memory_refs, &notes),
                store: &service.store,
                model: model.as_ref(),
                tools: tools.as_ref(),
                approvals: &service.approvals,
                actor,
                out,
                cancel: token,
                max_steps: service.max_steps,
            };
            let end = turn
                .run(text, |_| {
                    service.lock_running().remove(&id);
                })
                .await;
            tracing::debug!(session = id, ?end, "chat: turn ended");
        });
        Ok(StartedTurn {
            events,
            guard: StopOnDrop(cancel),
        })
    }

    /// Stops the running turn of session `id`; false when none runs.
    pub fn stop(&self, id: i64) -> bool {
        match self.lock_running().get(&id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, CancellationToken>> {
        // each change is one insert or remove: the map stays consistent through a panic elsewhere
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
