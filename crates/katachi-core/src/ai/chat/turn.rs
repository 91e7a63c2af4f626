//! One turn: the user's message, then the model and its tool calls until the model is done, the
//! user stops it, or something fails. Everything said and done is stored as it happens.
//!
//! # Guarantees
//! - The stream ends with exactly one [`ChatEvent::Done`]; an error is an [`ChatEvent::Error`]
//!   before it, never a panic or a silent end.
//! - Cancelling (the Stop button, the client going away) ends the turn at once: the provider call
//!   is dropped (its connection closed), a running tool is dropped (a command's process tree is
//!   killed), a pending approval is withdrawn. What the model had said so far is stored, marked
//!   as cut short.
//! - A call that needs approval runs only after `once` or `session`, or under a session grant in
//!   force; a refusal or expiry goes back to the model as a structured `approval.*` result. Every
//!   decision is in the ledger.
//! - Every provider call is recorded in the audit chain with the bytes sent, its workspace and
//!   session. If it cannot be recorded, the turn stops: nothing leaves unrecorded a second time.
//! - A turn takes at most `max_steps` model calls.

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::compact;
use super::events::{ChatEvent, TurnEnd};
use super::history::{to_model_messages, Payload};
use super::seams::{ToolOutcome, TurnModel, TurnTools};
use super::{ChatStore, Failure};
use crate::ai::approvals::{ApprovalRequest, Approvals};
use crate::ai::model::{ModelEvent, ModelRequest, StopReason, ToolCall};
use crate::store::{Actor, AuditEntry, ChatSession, Decision, NewMessage, Role, Workspace};

/// Most model calls of one turn by default.
pub const MAX_STEPS: usize = 24;

/// Everything a turn works with.
pub struct Turn<'a, M: TurnModel + ?Sized, T: TurnTools + ?Sized> {
    /// The session it belongs to.
    pub session: &'a ChatSession,
    /// The session's workspace.
    pub workspace: &'a Workspace,
    /// The system prompt (instructions and workspace memory).
    pub system: String,
    /// Where messages, decisions and egress go.
    pub store: &'a ChatStore,
    /// Who answers.
    pub model: &'a M,
    /// The model's hands.
    pub tools: &'a T,
    /// Where the user is asked.
    pub approvals: &'a Approvals,
    /// Who asked for the turn (the egress ledger's actor).
    pub actor: Actor,
    /// The turn's stream to the browser.
    pub out: mpsc::Sender<ChatEvent>,
    /// Set when the user stops the turn or the client goes away.
    pub cancel: CancellationToken,
    /// Most model calls.
    pub max_steps: usize,
}

/// How the steps of a turn go on.
enum Step {
    /// The model wants its tool results: call it again.
    Again,
    /// The turn is over.
    End(TurnEnd),
}

impl<M: TurnModel + ?Sized, T: TurnTools + ?Sized> Turn<'_, M, T> {
    /// Runs the turn for the user's `text` to its end; returns how it ended.
    ///
    /// `released` runs after the turn's last store write and before its `done` line goes out, so a
    /// client that has seen `done` finds the session free for its next turn.
    pub async fn run(self, text: String, released: impl FnOnce(TurnEnd)) -> TurnEnd {
        let end = match self.drive(text).await {
            Ok(end) => end,
            Err(failure) => {
                self.emit(ChatEvent::Error {
                    code: failure.code,
                    message: failure.message,
                })
                .await;
                TurnEnd::Failed
            }
        };
        released(end);
        self.emit(ChatEvent::Done { end }).await;
        end
    }

    async fn drive(&self, text: String) -> Result<TurnEnd, Failure> {
        let session_id = self.session.id;
        let message_id = self.store_message(Role::User, text, None).await?;
        self.emit(ChatEvent::Started {
            session_id,
            message_id,
        })
        .await;
        for _ in 0..self.max_steps {
            if self.cancel.is_cancelled() {
                return Ok(TurnEnd::Stopped);
            }
            match self.step().await? {
                Step::Again => continue,
                Step::End(end) => return Ok(end),
            }
        }
        Ok(TurnEnd::StepLimit)
    }

    /// One model call and the tool calls it made.
    async fn step(&self) -> Result<Step, Failure> {
        let session_id = self.session.id;
        let mut stored = self
            .store
            .run(move |s| s.chat().messages(session_id, 0, u32::MAX))
            .await?;
        let description = self.model.describe();
        if compact::is_needed(&self.system, &stored, description.context_tokens) {
            if let Some(summary) = compact::summarise(self, &stored).await? {
                self.emit(ChatEvent::Summarised {
                    summary_id: summary.id,
                    through: compact::through(&summary),
                })
                .await;
                stored.push(summary);
            }
        }
        let request = ModelRequest {
            model: description.model.clone(),
            system: self.system.clone(),
            messages: to_model_messages(&stored),
            tools: self.tools.specs(),
            max_tokens: description.max_tokens,
        };
        let Some(mut reply) = self.start_model_call(request, "ai.chat").await? else {
            return Ok(Step::End(TurnEnd::Stopped));
        };
        let mut text = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        let reason;
        loop {
            let event = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    self.store_answer(text, calls, Some("stopped by the user")).await?;
                    return Ok(Step::End(TurnEnd::Stopped));
                }
                event = reply.next() => event,
            };
            match event {
                Some(Ok(ModelEvent::TextDelta { text: delta })) => {
                    text.push_str(&delta);
                    self.emit(ChatEvent::Text { text: delta }).await;
                }
                Some(Ok(ModelEvent::ToolCall(call))) => {
                    self.emit(ChatEvent::ToolCall {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                    })
                    .await;
                    calls.push(call);
                }
                Some(Ok(ModelEvent::Usage(usage))) => self.emit(ChatEvent::Usage(usage)).await,
                Some(Ok(ModelEvent::Finished { reason: why })) => {
                    reason = why;
                    break;
                }
                Some(Err(failure)) => {
                    // what was said so far is kept; its tool calls never ran, so they are dropped
                    self.store_answer(text, Vec::new(), Some(&failure.code))
                        .await?;
                    return Err(failure);
                }
                None => {
                    let failure = Failure::new(
                        "ai.stream_broken",
                        "the provider ended its answer without finishing it; try again",
                    );
                    self.store_answer(text, Vec::new(), Some(&failure.code))
                        .await?;
                    return Err(failure);
                }
            }
        }
        self.store_answer(text, calls.clone(), None).await?;
        if calls.is_empty() {
            return Ok(Step::End(match reason {
                StopReason::MaxTokens => TurnEnd::MaxTokens,
                _ => TurnEnd::Finished,
            }));
        }
        for call in &calls {
            if !self.answer_call(call).await? {
                return Ok(Step::End(TurnEnd::Stopped));
            }
        }
        Ok(Step::Again)
    }

    /// Starts a model call and records what it sent; `None` when the turn was stopped first.
    pub(super) async fn start_model_call(
        &self,
        request: ModelRequest,
        action: &str,
    ) -> Result<Option<super::seams::ModelEvents>, Failure> {
        let description = self.model.describe();
        let call = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Ok(None),
            call = self.model.stream(request) => call,
        };
        let result = match &call.reply {
            Ok(_) => "ok".to_owned(),
            Err(failure) => failure.code.clone(),
        };
        self.store
            .record_egress(
                AuditEntry::new(self.actor.clone(), action)
                    .in_workspace(self.workspace)
                    .with_detail(format!(
                        "provider={} model={} session={}",
                        description.provider, description.model, self.session.id
                    ))
                    .with_result(result)
                    .with_bytes_out(call.request_bytes),
            )
            .await?;
        call.reply.map(Some)
    }

    /// Stores the model's answer (text and tool calls); `cut` says why it was cut short.
    async fn store_answer(
        &self,
        text: String,
        calls: Vec<ToolCall>,
        cut: Option<&str>,
    ) -> Result<(), Failure> {
        if text.is_empty() && calls.is_empty() && cut.is_none() {
            return Ok(());
        }
        let payload = Payload {
            tool_calls: calls,
            interrupted: cut.map(str::to_owned),
            ..Payload::default()
        }
        .to_stored();
        self.store_message(Role::Assistant, text, payload)
            .await
            .map(|_| ())
    }

    /// Asks (when needed), runs and stores one tool call; false when the turn was stopped.
    async fn answer_call(&self, call: &ToolCall) -> Result<bool, Failure> {
        let (outcome, approval) = match self.approve(call).await? {
            Approval::Stopped => {
                self.store_result(
                    call,
                    &ToolOutcome::error(
                        "tool.stopped",
                        "the user stopped the turn before this ran",
                    ),
                    None,
                )
                .await?;
                return Ok(false);
            }
            Approval::Answered(outcome, decision) => (outcome, Some(decision)),
            Approval::Run(decision) => match self.run_call(call).await {
                Some(outcome) => (outcome, decision),
                None => {
                    self.store_result(
                        call,
                        &ToolOutcome::error(
                            "tool.stopped",
                            "the user stopped the turn while this ran",
                        ),
                        decision,
                    )
                    .await?;
                    return Ok(false);
                }
            },
        };
        self.store_result(call, &outcome, approval).await?;
        self.store
            .record_activity(
                "ai.tool_run",
                serde_json::json!({
                    "session_id": self.session.id,
                    "workspace_id": self.workspace.id,
                    "tool": call.name,
                    "result": outcome.content["error"]["code"].as_str().unwrap_or("ok"),
                }),
            )
            .await;
        self.emit(ChatEvent::ToolResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            is_error: outcome.is_error,
            content: outcome.content,
        })
        .await;
        Ok(true)
    }

    /// Whether the call may run: asked, granted for the session, or not needed.
    async fn approve(&self, call: &ToolCall) -> Result<Approval, Failure> {
        let Some(subject) = self.tools.approval_subject(call) else {
            return Ok(Approval::Run(None));
        };
        let (session_id, tool, grant_subject) =
            (self.session.id, call.name.clone(), subject.clone());
        let granted = self
            .store
            .run(move |s| {
                s.approvals()
                    .session_grant(session_id, &tool, &grant_subject)
            })
            .await?;
        if granted.is_some() {
            return Ok(Approval::Run(Some(Decision::Session)));
        }
        let preview = match self.tools.preview(call).await {
            Ok(preview) => preview,
            Err(invalid) => return Ok(Approval::Answered(invalid, Decision::Deny)),
        };
        let ticket = self.approvals.ask(ApprovalRequest {
            workspace_id: self.workspace.id,
            session_id: self.session.id,
            tool: call.name.clone(),
            subject: subject.clone(),
            summary: approval_summary(call, &subject, self.workspace),
            preview,
        });
        let id = ticket.approval().id.clone();
        self.emit(ChatEvent::Approval {
            approval: ticket.approval().clone(),
        })
        .await;
        let decision = tokio::select! {
            biased;
            // dropping the ticket withdraws the approval
            () = self.cancel.cancelled() => return Ok(Approval::Stopped),
            decision = ticket.decision() => decision,
        };
        let (ws, session_id, tool) = (self.workspace.id, self.session.id, call.name.clone());
        self.store
            .run(move |s| {
                s.approvals()
                    .record(ws, Some(session_id), &tool, &subject, decision)
            })
            .await?;
        self.store
            .record_activity(
                "ai.approval_decided",
                serde_json::json!({
                    "session_id": self.session.id,
                    "workspace_id": self.workspace.id,
                    "tool": call.name,
                    "decision": decision,
                }),
            )
            .await;
        self.emit(ChatEvent::ApprovalSettled { id, decision }).await;
        Ok(if decision.allows() {
            Approval::Run(Some(decision))
        } else {
            Approval::Answered(refusal(decision), decision)
        })
    }

    /// Runs an allowed call, streaming its output; `None` when the turn was stopped meanwhile.
    async fn run_call(&self, call: &ToolCall) -> Option<ToolOutcome> {
        let (output, mut chunks) = mpsc::channel(64);
        let running = self.tools.call(call, output);
        tokio::pin!(running);
        loop {
            tokio::select! {
                biased;
                // dropping the call's future stops it
                () = self.cancel.cancelled() => return None,
                Some(chunk) = chunks.recv() => {
                    self.emit(ChatEvent::ToolOutput {
                        call_id: call.id.clone(),
                        stream: chunk.stream,
                        text: chunk.text,
                    })
                    .await;
                }
                outcome = &mut running => {
                    while let Ok(chunk) = chunks.try_recv() {
                        self.emit(ChatEvent::ToolOutput {
                            call_id: call.id.clone(),
                            stream: chunk.stream,
                            text: chunk.text,
                        })
                        .await;
                    }
                    return Some(outcome);
                }
            }
        }
    }

    /// Stores a tool call's result.
    async fn store_result(
        &self,
        call: &ToolCall,
        outcome: &ToolOutcome,
        approval: Option<Decision>,
    ) -> Result<(), Failure> {
        let payload = Payload {
            call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            is_error: outcome.is_error,
            approval,
            ..Payload::default()
        }
        .to_stored();
        self.store_message(Role::Tool, outcome.content.to_string(), payload)
            .await
            .map(|_| ())
    }

    /// Appends one message to the session; its id.
    async fn store_message(
        &self,
        role: Role,
        content: String,
        payload: Option<String>,
    ) -> Result<i64, Failure> {
        let session_id = self.session.id;
        let ids = self
            .store
            .run(move |s| {
                s.chat().append_messages(
                    session_id,
                    [NewMessage {
                        role,
                        content: &content,
                        payload: payload.as_deref(),
                    }],
                )
            })
            .await?;
        Ok(ids.first().copied().unwrap_or_default())
    }

    /// Sends one line to the browser; a closed stream is the caller's to notice (it cancels).
    pub(super) async fn emit(&self, event: ChatEvent) {
        let _ = self.out.send(event).await;
    }
}

/// What the user's approval step decided.
enum Approval {
    /// Run it (with the decision that allowed it, `None` when none was needed).
    Run(Option<Decision>),
    /// Do not run it: this is the model's result.
    Answered(ToolOutcome, Decision),
    /// The turn was stopped while asking.
    Stopped,
}

/// The result a refused or expired call gives the model.
fn refusal(decision: Decision) -> ToolOutcome {
    match decision {
        Decision::Expired => ToolOutcome::error(
            "approval.expired",
            "the user did not answer in time, so this did not run; do not retry it: ask the user",
        ),
        _ => ToolOutcome::error(
            "approval.denied",
            "the user refused this action, so it did not run; do not retry it: ask the user what they want instead",
        ),
    }
}

/// One line for notifications: "Run `cargo test` in shop".
fn approval_summary(call: &ToolCall, subject: &str, workspace: &Workspace) -> String {
    let place = std::path::Path::new(&workspace.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| workspace.path.clone());
    let arg = |key: &str| {
        call.arguments
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(tool) = subject.strip_prefix("mcp:") {
        return format!("Call the MCP tool {tool} (run by the relay) for {place}");
    }
    match call.name.as_str() {
        "run_command" => {
            let args: Vec<String> = call
                .arguments
                .get("args")
                .and_then(serde_json::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let line = std::iter::once(subject.to_owned())
                .chain(args)
                .collect::<Vec<_>>()
                .join(" ");
            format!("Run `{}` in {place}", super::prompt::cut_at(&line, 120).0)
        }
        "write_file" => format!("Write {} in {place}", arg("path")),
        "apply_patch" => format!("Apply a patch in {place}"),
        other => format!("{other} in {place}"),
    }
}
