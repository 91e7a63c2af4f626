//! "My agents": each agent's name, OS, online / last seen, and a revoke button; plus the JSON the
//! page polls to stay live.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use axum_extra::extract::cookie::CookieJar;
use maud::html;
use serde::{Deserialize, Serialize};

use super::account::CsrfForm;
use super::layout::page;
use super::session::{check_csrf, csrf_token, CurrentUser};
use crate::error::ApiError;
use crate::now_unix;
use crate::state::AppState;
use crate::store::AgentRow;

/// An agent as shown to its owner.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentView {
    /// Id.
    pub id: String,
    /// Device name.
    pub name: String,
    /// OS.
    pub os: String,
    /// `online`, `offline`, `never connected` or `revoked`.
    pub status: String,
    /// Human "last seen" text.
    pub last_seen: String,
    /// Reported version.
    pub version: String,
    /// Reported workspaces.
    pub workspaces: i64,
}

fn ago(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86400),
    }
}

fn view(a: &AgentRow, now: i64, offline_after: i64) -> AgentView {
    let status = if a.revoked_at != 0 {
        "revoked"
    } else if a.last_seen_at == 0 {
        "never connected"
    } else if now - a.last_seen_at <= offline_after {
        "online"
    } else {
        "offline"
    };
    AgentView {
        id: a.id.clone(),
        name: a.name.clone(),
        os: a.os.clone(),
        status: status.to_owned(),
        last_seen: if a.last_seen_at == 0 {
            "never".to_owned()
        } else {
            ago((now - a.last_seen_at).max(0))
        },
        version: a.version.clone(),
        workspaces: a.workspaces,
    }
}

async fn views(state: &AppState, user_id: &str) -> Result<Vec<AgentView>, ApiError> {
    let now = now_unix();
    let offline = i64::try_from(state.config.offline_after).unwrap_or(30);
    Ok(state
        .store
        .agents_of(user_id)
        .await?
        .iter()
        .map(|a| state.tunnels.mark_online(view(a, now, offline)))
        .collect())
}

/// `GET /`: signed-in users go to their agents, others to sign in.
pub async fn home(user: Option<CurrentUser>) -> Redirect {
    Redirect::to(if user.is_some() { "/agents" } else { "/login" })
}

/// `GET /agents`.
pub async fn list(State(state): State<AppState>, jar: CookieJar, user: CurrentUser) -> Response {
    let agents = match views(&state, &user.user.id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (jar, csrf) = csrf_token(jar);
    let who = user
        .user
        .email
        .clone()
        .unwrap_or_else(|| "signed in".into());
    let body = html! {
        section.card.wide {
            h1 { "My agents" }
            @if agents.is_empty() {
                p.muted #no-agents { "No agents yet. Run " code { "katachi start" } " on a machine and approve the code it shows." }
            } @else {
                table #agents {
                    thead { tr { th { "Device" } th { "OS" } th { "Status" } th { "Last seen" } th { "Workspaces" } th {} } }
                    tbody {
                        @for a in &agents {
                            tr data-agent-id=(a.id) {
                                td.name {
                                    @if a.status == "revoked" { (a.name) }
                                    @else { a.open href=(format!("/agents/{}", a.id)) title="Open the workbench: files, git status and diff" { (a.name) } }
                                }
                                td { (a.os) }
                                td { span class=(format!("status {}", a.status.replace(' ', "-"))) data-field="status" { (a.status) } }
                                td data-field="last_seen" { (a.last_seen) }
                                td data-field="workspaces" { (a.workspaces) }
                                td {
                                    @if a.status != "revoked" {
                                        form.inline method="post" action=(format!("/agents/{}/revoke", a.id)) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.danger type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        script src="/static/agents.js" {}
    };
    (jar, page("My agents", Some(&who), Some(&csrf), body)).into_response()
}

/// `GET /api/me/agents`.
pub async fn json(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    Ok(Json(views(&state, &user.user.id).await?))
}

/// Path of the revoke form.
#[derive(Debug, Deserialize)]
pub struct AgentPath {
    /// Agent id.
    id: String,
}

/// `POST /agents/{id}/revoke`: another user's agent looks exactly like a missing one.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    user: CurrentUser,
    Path(p): Path<AgentPath>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, form.csrf_value()) {
        return r;
    }
    match state
        .store
        .revoke_agent(&p.id, &user.user.id, now_unix())
        .await
    {
        Ok(revoked) => {
            if revoked {
                state.agent_cache.evict_agent(&p.id);
                state.tunnels.close(&p.id);
                state.streams.end_agent(&p.id);
                crate::cluster::broadcast::publish(
                    &state,
                    crate::cluster::broadcast::Notice::Revoked {
                        agent_id: p.id.clone(),
                    },
                )
                .await;
            }
            Redirect::to("/agents").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(last_seen: i64, revoked: i64) -> AgentRow {
        AgentRow {
            id: "a".into(),
            user_id: "u".into(),
            name: "n".into(),
            os: "o".into(),
            signing_secret_enc: String::new(),
            created_at: 0,
            last_seen_at: last_seen,
            revoked_at: revoked,
            version: String::new(),
            workspaces: 0,
        }
    }

    #[test]
    fn status_follows_heartbeats_and_revocation() {
        assert_eq!(view(&row(0, 0), 1000, 30).status, "never connected");
        assert_eq!(view(&row(980, 0), 1000, 30).status, "online");
        assert_eq!(view(&row(900, 0), 1000, 30).status, "offline");
        assert_eq!(view(&row(999, 5), 1000, 30).status, "revoked");
    }
}
