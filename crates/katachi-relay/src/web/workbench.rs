//! The agent workbench page, `GET /agents/{id}`: one agent's workspaces, a file tree, a file viewer
//! (CodeMirror 6), git status and diff, a Run panel (allowlisted commands in the agent's sandbox,
//! output streamed live), and a Chat panel (the workspace's AI chat sessions: answers streamed live,
//! tool calls with their results, approvals with their diff or command line, stop, export).
//!
//! The page is a shell; `static/workbench.js` (bundled from `webui/` by `build.rs`) fills it by
//! calling the agent's API through `ANY /agents/{id}/api/...` (`crate::tunnel::forward`), so the
//! browser never reaches the agent and every ownership check stays on that route too.
//!
//! # Security
//! - Another user's agent, a revoked one and an unknown id all answer the same 404 page, so ids of
//!   other users' agents are not confirmed.
//! - The page carries no script or style of its own: the strict CSP (`script-src 'self'`,
//!   `style-src 'self'`) applies unchanged; CodeMirror runs in a shadow root, where its styles are
//!   constructable stylesheets rather than `<style>` elements.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::html;
use serde::Deserialize;

use super::layout::{not_found, page};
use super::session::{csrf_token, CurrentUser};
use crate::error::ApiError;
use crate::state::AppState;

/// Path of the workbench page.
#[derive(Debug, Deserialize)]
pub struct WorkbenchPath {
    /// Agent id.
    id: String,
}

/// `GET /agents/{id}`: the workbench of one of the user's agents; 404 for any other id.
pub async fn show(
    State(state): State<AppState>,
    jar: CookieJar,
    user: CurrentUser,
    Path(p): Path<WorkbenchPath>,
) -> Response {
    let agents = match state.store.agents_of(&user.user.id).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some(agent) = agents
        .into_iter()
        .find(|a| a.id == p.id && a.revoked_at == 0)
    else {
        return not_found().await;
    };
    let online = state.tunnels.is_online(&agent.id);
    let (jar, csrf) = csrf_token(jar);
    let who = user
        .user
        .email
        .clone()
        .unwrap_or_else(|| "signed in".into());
    let body = html! {
        link rel="stylesheet" href="/static/workbench.css";
        section.workbench #workbench data-agent-id=(agent.id) {
            div.wb-head {
                h1 #agent-name { (agent.name) }
                span.muted { (agent.os) }
                span #agent-state class=(if online { "status online" } else { "status" }) {
                    @if online { "online" } @else { "connecting…" }
                }
                a.back href="/agents" { "All agents" }
            }
            div #banner hidden {}
            div.wb-grid {
                aside.wb-side {
                    label for="workspace-picker" { "Workspace" }
                    select #workspace-picker disabled {}
                    p.muted #workspace-path {}
                    h2 { "Files" }
                    div #file-tree { p.muted.wb-message { "Loading…" } }
                    h2 {
                        "Changes"
                        button.link #git-refresh type="button" { "Refresh" }
                        button.link #diff-all type="button" { "All changes" }
                    }
                    p.muted #git-summary {}
                    ul #git-status {}
                }
                section.wb-main {
                    div.wb-tabs role="tablist" {
                        button #tab-file type="button" role="tab" aria-selected="true" { "File" }
                        button #tab-diff type="button" role="tab" aria-selected="false" { "Diff" }
                        button #tab-run type="button" role="tab" aria-selected="false" { "Run" }
                        button #tab-chat type="button" role="tab" aria-selected="false" { "Chat" }
                    }
                    div #file-panel role="tabpanel" {
                        div.wb-file-head {
                            span #file-title {}
                            span #file-meta {}
                            span.wb-file-status #file-status role="status" {}
                            button.secondary #file-edit type="button" hidden { "Edit" }
                            button #file-save type="button" hidden { "Save" }
                        }
                        div #file-view { p.muted.wb-message { "Choose a file in the tree." } }
                    }
                    div #diff-panel role="tabpanel" hidden {
                        div.wb-file-head { span #diff-title {} }
                        div #diff-view {}
                    }
                    div #run-panel role="tabpanel" hidden {
                        form.wb-run-form #run-form {
                            label for="run-command" { "Command" }
                            select #run-command {}
                            input #run-args type="text" placeholder="arguments (no shell: * and $ are literal)" autocomplete="off" spellcheck="false";
                            input #run-cwd type="text" placeholder="folder (workspace root)" autocomplete="off" spellcheck="false";
                            button #run-start type="submit" disabled { "Run" }
                            button.secondary #run-stop type="button" hidden { "Stop" }
                        }
                        p.muted #run-sandbox {}
                        p.wb-run-status #run-status role="status" {}
                        p.wb-message.error #run-denial role="alert" hidden {}
                        pre.wb-run-output #run-output {}
                    }
                    (chat_panel())
                }
            }
        }
        script src="/static/workbench.js" {}
    };
    let title = format!("{} · workbench", agent.name);
    (jar, page(&title, Some(&who), Some(&csrf), body)).into_response()
}

/// The Chat panel's shell: sessions beside the open session's log and composer (`webui/src/chat.js`
/// fills it).
fn chat_panel() -> maud::Markup {
    html! {
        div #chat-panel role="tabpanel" hidden {
            div.wb-chat {
                div.wb-chat-side {
                    nav.wb-chat-nav aria-label="Chat sessions" {
                        button #chat-new type="button" { "New chat" }
                        ul #chat-sessions {}
                    }
                    (chat_workspace_settings())
                }
                div.wb-chat-main {
                    div.wb-file-head.wb-chat-head {
                        span #chat-title {}
                        span.muted #chat-model {}
                        span.muted #chat-usage {}
                        button.secondary #chat-rename type="button" disabled { "Rename" }
                        button.secondary #chat-export type="button" disabled { "Export" }
                        button.danger #chat-delete type="button" disabled { "Delete" }
                    }
                    div.wb-chat-confirm #chat-confirm role="alert" hidden {}
                    div.wb-message.info #chat-model-missing role="alert" hidden {
                        span #chat-model-message {}
                        " "
                        button.link #chat-model-retry type="button" { "Check again" }
                    }
                    button.link #chat-older type="button" hidden { "Load older messages" }
                    div.wb-chat-log #chat-log role="log" tabindex="0" aria-label="Messages" {}
                    p.wb-chat-status #chat-status role="status" {}
                    form.wb-chat-form #chat-form {
                        label.wb-visually-hidden for="chat-input" { "Message" }
                        textarea #chat-input rows="3" disabled
                            placeholder="Ask the AI about this workspace (Enter sends, Shift+Enter starts a new line)" {}
                        button #chat-send type="submit" disabled { "Send" }
                        button.danger #chat-stop type="button" hidden { "Stop" }
                    }
                }
            }
        }
    }
}

/// Under the sessions: the workspace's permissions ledger (what the model was allowed, with Revoke
/// on live session grants) and the notes for the model (`webui/src/chat_settings.js` fills them).
fn chat_workspace_settings() -> maud::Markup {
    html! {
        section.wb-chat-extra #chat-grants-box aria-labelledby="chat-grants-title" {
            details #chat-grants-details {
                summary #chat-grants-title { "Permissions" }
                p.muted.wb-chat-hint { "What you allowed the model to do in this workspace." }
                ul.wb-chat-ledger #chat-grants {}
                p.wb-chat-extra-status #chat-grants-status role="status" {}
            }
        }
        section.wb-chat-extra #chat-notes-box aria-labelledby="chat-notes-title" {
            details #chat-notes-details {
                summary #chat-notes-title { "Notes for the model" }
                p.muted.wb-chat-hint {
                    "Put into every chat's instructions, beside the repository's AGENTS.md, CLAUDE.md or GEMINI.md."
                }
                ul.wb-chat-ledger #chat-notes {}
                form.wb-chat-note-form #chat-note-form {
                    label for="chat-note-key" { "Name" }
                    input #chat-note-key type="text" maxlength="64" required
                        pattern="[A-Za-z0-9_.\\-]{1,64}" autocomplete="off"
                        title="1 to 64 letters, digits, _ . or -" {}
                    label for="chat-note-value" { "Note" }
                    textarea #chat-note-value rows="3" maxlength="8192" {}
                    button #chat-note-save type="submit" { "Save note" }
                }
                p.wb-chat-extra-status #chat-notes-status role="status" {}
            }
        }
    }
}
