//! "MCP servers": each user's MCP server configurations (name, command or URL, environment).
//!
//! For a remote server, the relay connects to it for the user's agents ([`crate::mcp`]) and sends
//! each variable as an HTTP header: the name in lower case with `_` as `-` (`AUTHORIZATION=Bearer …`
//! → `Authorization: Bearer …`, `X_API_KEY=…` → `X-Api-Key: …`); names of reserved headers are
//! refused. Local (command) servers are kept but not run by the relay.
//!
//! Environment values are sealed with the relay's master key (AES-256-GCM, bound to the server's
//! row and its user: `crypto::SealedRow::mcp_env`) as soon as they arrive and are never sent back to the browser: the list shows variable names with
//! a fixed mask, and a form that fails validation comes back with the names only.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::account::CsrfForm;
use super::layout::{notice, page};
use super::session::{check_csrf, csrf_token, CurrentUser};
use crate::crypto::SealedRow;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::McpServer;
use crate::{now_unix, random_hex};

/// Longest server name.
const MAX_NAME: usize = 64;
/// Longest command.
const MAX_COMMAND: usize = 1024;
/// Longest URL.
const MAX_URL: usize = 2048;
/// Most environment variables per server.
const MAX_ENV_VARS: usize = 32;
/// Longest environment value, in bytes.
const MAX_ENV_VALUE: usize = 4096;
/// Longest environment variable name.
const MAX_ENV_KEY: usize = 128;
/// Most servers per user (each is a row and a sealed blob).
const MAX_SERVERS: usize = 50;
/// What is shown in place of every value (same length whatever the value).
const MASK: &str = "••••••••";

/// Why an MCP server form was refused; each message tells the user what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMcpServer {
    /// Name empty, too long, or with other characters.
    #[error("Use a name of 1 to 64 characters: letters, digits, spaces, '_', '.' or '-'.")]
    Name,
    /// Both or neither of command and URL.
    #[error("Give either a command (a local server) or a URL (a remote server), not both.")]
    CommandOrUrl,
    /// Command too long or with control characters.
    #[error("The command must be at most 1024 characters on one line.")]
    Command,
    /// Not https (or plain http to this machine).
    #[error(
        "The URL must start with https:// (or http://localhost for a server on the same machine)."
    )]
    Url,
    /// A line without `=`.
    #[error("Environment line {0} is not KEY=VALUE.")]
    EnvLine(usize),
    /// A variable name outside `[A-Z_][A-Z0-9_]*`.
    #[error("Environment line {0}: names use A-Z, 0-9 and '_' and do not start with a digit.")]
    EnvKey(usize),
    /// The same name twice.
    #[error("Environment line {0} repeats a name.")]
    EnvDuplicate(usize),
    /// A value over 4 KiB.
    #[error("Environment line {0}: values are limited to 4 KiB.")]
    EnvValue(usize),
    /// A remote server's variable that would set a header the transport owns.
    #[error("Environment line {0}: a remote server's variables are sent as HTTP headers, and this name would set a reserved one (Host, Content-*, Accept*, Connection, Cookie, Proxy-*, Mcp-* …).")]
    EnvHeader(usize),
    /// More than 32 variables.
    #[error("At most 32 environment variables per server.")]
    EnvCount,
}

/// The posted add form; wiped from memory when dropped (it holds secret values).
#[derive(Default, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct McpForm {
    /// Name.
    #[serde(default)]
    name: String,
    /// Command line of a local (stdio) server.
    #[serde(default)]
    command: String,
    /// URL of a remote server.
    #[serde(default)]
    url: String,
    /// `KEY=VALUE` lines.
    #[serde(default)]
    env: String,
    /// CSRF token.
    #[serde(default)]
    csrf: String,
}

/// A validated server, ready to seal and store.
pub struct ValidMcpServer {
    /// Name.
    pub name: String,
    /// Command, or empty.
    pub command: String,
    /// URL, or empty.
    pub url: String,
    /// Environment as a JSON object (secret: sealed before storing, wiped on drop).
    pub env_json: Zeroizing<String>,
}

impl std::fmt::Debug for McpForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpForm")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("url", &self.url)
            .field("env", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ValidMcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidMcpServer")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("url", &self.url)
            .field("env_json", &"<redacted>")
            .finish()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '.' | '-'))
}

fn valid_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    key.len() <= MAX_ENV_KEY
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// https anywhere, or plain http only to this machine (a local server over loopback).
fn valid_url(text: &str) -> bool {
    let Ok(url) = url::Url::parse(text) else {
        return false;
    };
    let local = matches!(
        url.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    );
    text.len() <= MAX_URL
        && url.username().is_empty()
        && url.password().is_none()
        && match url.scheme() {
            "https" => url.host().is_some(),
            "http" => local,
            _ => false,
        }
}

/// Parses `KEY=VALUE` lines (blank lines skipped; the value is everything after the first `=`).
/// For a remote server (`remote`), names mapping to a reserved header are refused.
fn parse_env(
    text: &str,
    remote: bool,
) -> Result<serde_json::Map<String, serde_json::Value>, InvalidMcpServer> {
    let mut env = serde_json::Map::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or(InvalidMcpServer::EnvLine(n))?;
        let key = key.trim();
        if !valid_env_key(key) {
            return Err(InvalidMcpServer::EnvKey(n));
        }
        if remote
            && crate::mcp::headers::is_reserved_header(&crate::mcp::headers::header_name_of(key))
        {
            return Err(InvalidMcpServer::EnvHeader(n));
        }
        if value.len() > MAX_ENV_VALUE {
            return Err(InvalidMcpServer::EnvValue(n));
        }
        if env.contains_key(key) {
            return Err(InvalidMcpServer::EnvDuplicate(n));
        }
        if env.len() == MAX_ENV_VARS {
            return Err(InvalidMcpServer::EnvCount);
        }
        env.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
    }
    Ok(env)
}

/// Checks every field of the form.
///
/// # Errors
/// The first [`InvalidMcpServer`] found.
pub fn validate_mcp_form(form: &McpForm) -> Result<ValidMcpServer, InvalidMcpServer> {
    let name = form.name.trim();
    if !valid_name(name) {
        return Err(InvalidMcpServer::Name);
    }
    let command = form.command.trim();
    let url = form.url.trim();
    match (command.is_empty(), url.is_empty()) {
        (false, true) => {
            if command.chars().count() > MAX_COMMAND || command.chars().any(char::is_control) {
                return Err(InvalidMcpServer::Command);
            }
        }
        (true, false) => {
            if !valid_url(url) {
                return Err(InvalidMcpServer::Url);
            }
        }
        _ => return Err(InvalidMcpServer::CommandOrUrl),
    }
    let mut env = parse_env(&form.env, !url.is_empty())?;
    let env_json = Zeroizing::new(serde_json::Value::Object(env.clone()).to_string());
    // Best effort: overwrite the parsed copies of the values too.
    for value in env.values_mut() {
        if let serde_json::Value::String(s) = value {
            s.zeroize();
        }
    }
    Ok(ValidMcpServer {
        name: name.to_owned(),
        command: command.to_owned(),
        url: url.to_owned(),
        env_json,
    })
}

/// Names of a sealed environment, sorted; `None` when it does not open with this relay's key in
/// this row.
fn env_names(state: &AppState, user_id: &str, server: &McpServer) -> Option<Vec<String>> {
    let row = SealedRow::mcp_env(&server.id, user_id);
    let plain = state.master.open(&row, &server.env_enc).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&plain).ok()?;
    Some(value.as_object()?.keys().cloned().collect())
}

/// What the form shows again after a refusal: never an environment value.
#[derive(Debug, Default)]
struct Refill {
    name: String,
    command: String,
    url: String,
    env_names: String,
}

impl Refill {
    fn from_form(form: &McpForm) -> Self {
        let env_names = form
            .env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
            .filter(|k| valid_env_key(k))
            .map(|k| format!("{k}=\n"))
            .collect();
        Self {
            name: form.name.trim().to_owned(),
            command: form.command.trim().to_owned(),
            url: form.url.trim().to_owned(),
            env_names,
        }
    }
}

fn server_rows(state: &AppState, user_id: &str, servers: &[McpServer], csrf: &str) -> Markup {
    html! {
        table #mcp-servers {
            thead { tr { th { "Name" } th { "Command or URL" } th { "Environment" } th {} } }
            tbody {
                @for s in servers {
                    tr data-mcp-id=(s.id) {
                        td.name { (s.name) }
                        td { code { @if s.url.is_empty() { (s.command) } @else { (s.url) } } }
                        td.env {
                            @match env_names(state, user_id, s) {
                                Some(names) if names.is_empty() => { span.muted { "none" } }
                                Some(names) => {
                                    @for n in &names { div { code { (n) "=" } span.mask { (MASK) } } }
                                }
                                None => { span.muted { "sealed with another key" } }
                            }
                        }
                        td {
                            form.inline method="post" action=(format!("/settings/mcp/{}/delete", s.id)) {
                                input type="hidden" name="csrf" value=(csrf);
                                button.danger type="submit" { "Delete" }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn render(
    state: &AppState,
    jar: CookieJar,
    user: &CurrentUser,
    refill: &Refill,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let servers = match state.store.mcp_servers_of(&user.user.id).await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (jar, csrf) = csrf_token(jar);
    let who = user
        .user
        .email
        .clone()
        .unwrap_or_else(|| "signed in".into());
    let body = html! {
        section.card.wide {
            h1 { "MCP servers" }
            p.muted { "Servers your agents may use. Environment values are encrypted on the relay and never shown again after saving." }
            @if servers.is_empty() {
                p.muted #no-mcp-servers { "No MCP servers yet." }
            } @else {
                (server_rows(state, &user.user.id, &servers, &csrf))
            }
            h2 { "Add a server" }
            (notice("error", error))
            form #add-mcp method="post" action="/settings/mcp" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Name" input type="text" name="name" value=(refill.name) maxlength="64" required; }
                label { "Command (local server)" input type="text" name="command" value=(refill.command) placeholder="npx -y @modelcontextprotocol/server-github" spellcheck="false"; }
                label { "or URL (remote server)" input type="text" name="url" value=(refill.url) placeholder="https://mcp.example.com/sse" spellcheck="false"; }
                label { "Environment (KEY=VALUE, one per line)" textarea name="env" rows="4" spellcheck="false" autocomplete="off" placeholder="GITHUB_TOKEN=…" { (refill.env_names) } }
                button type="submit" { "Add server" }
            }
            p.muted #mcp-help {
                "Your agents can use the tools of remote servers: the relay connects to them, and the secrets stay on the relay. "
                "For a remote server each variable is sent as an HTTP header on every request: the name in lower case with _ as - "
                "(" code { "AUTHORIZATION=Bearer …" } " is sent as " code { "Authorization: Bearer …" } ", "
                code { "X_API_KEY=…" } " as " code { "X-Api-Key: …" } "). "
                "Local (command) servers are not run by the relay and are not offered to agents."
            }
        }
    };
    (
        status,
        jar,
        page("MCP servers", Some(&who), Some(&csrf), body),
    )
        .into_response()
}

/// `GET /settings/mcp`.
pub async fn list(State(state): State<AppState>, jar: CookieJar, user: CurrentUser) -> Response {
    render(&state, jar, &user, &Refill::default(), None, StatusCode::OK).await
}

/// `POST /settings/mcp`: validates, seals the environment, stores.
pub async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    user: CurrentUser,
    Form(form): Form<McpForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, Some(&form.csrf)) {
        return r;
    }
    let refuse = |message: &str, status| {
        let refill = Refill::from_form(&form);
        let message = format!("{message} Environment values are not sent back: enter them again.");
        let (state, jar, user) = (state.clone(), jar.clone(), user.clone());
        async move { render(&state, jar, &user, &refill, Some(&message), status).await }
    };
    let valid = match validate_mcp_form(&form) {
        Ok(v) => v,
        Err(e) => return refuse(&e.to_string(), StatusCode::BAD_REQUEST).await,
    };
    match state.store.mcp_servers_of(&user.user.id).await {
        Ok(existing) if existing.len() >= MAX_SERVERS => {
            return refuse(
                &format!("You already have {MAX_SERVERS} servers; delete one first."),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Ok(_) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    let id = format!("mcp_{}", random_hex(12));
    let env_enc = state.master.seal(
        &SealedRow::mcp_env(&id, &user.user.id),
        valid.env_json.as_bytes(),
    );
    let server = McpServer {
        id,
        name: valid.name.clone(),
        command: valid.command.clone(),
        url: valid.url.clone(),
        env_enc,
    };
    match state
        .store
        .add_mcp_server(&user.user.id, &server, now_unix())
        .await
    {
        // Post/redirect/get: a reload does not post the secrets again.
        Ok(true) => Redirect::to("/settings/mcp").into_response(),
        Ok(false) => {
            refuse(
                &format!("You already have a server named \"{}\".", valid.name),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Path of the delete form.
#[derive(Debug, Deserialize)]
pub struct McpPath {
    /// Server id.
    id: String,
}

/// `POST /settings/mcp/{id}/delete`: another user's server looks exactly like a missing one.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    user: CurrentUser,
    Path(p): Path<McpPath>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, form.csrf_value()) {
        return r;
    }
    match state.store.delete_mcp_server(&user.user.id, &p.id).await {
        Ok(_) => Redirect::to("/settings/mcp").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str, command: &str, url: &str, env: &str) -> McpForm {
        McpForm {
            name: name.into(),
            command: command.into(),
            url: url.into(),
            env: env.into(),
            csrf: String::new(),
        }
    }

    #[test]
    fn a_good_server_validates_with_its_environment_as_json() {
        let v = validate_mcp_form(&form(
            " github tools ",
            "npx -y server-github",
            "",
            "GITHUB_TOKEN=ghp_x=y\r\n\nLOG_LEVEL=debug\n",
        ))
        .unwrap();
        assert_eq!(v.name, "github tools");
        let env: serde_json::Value = serde_json::from_str(&v.env_json).unwrap();
        assert_eq!(env["GITHUB_TOKEN"], "ghp_x=y");
        assert_eq!(env["LOG_LEVEL"], "debug");
        assert!(validate_mcp_form(&form("remote", "", "https://mcp.example.com/sse", "")).is_ok());
        assert!(validate_mcp_form(&form("local", "", "http://localhost:8080/mcp", "")).is_ok());
        assert!(validate_mcp_form(&form("local", "", "http://127.0.0.1:8080/mcp", "")).is_ok());
    }

    #[test]
    fn bad_fields_are_refused_each_with_its_reason() {
        let long_value = format!("K={}", "v".repeat(MAX_ENV_VALUE + 1));
        let many: String = (0..=MAX_ENV_VARS).map(|i| format!("K{i}=v\n")).collect();
        let name65 = "n".repeat(65);
        let cases: Vec<(McpForm, InvalidMcpServer)> = vec![
            (form("", "x", "", ""), InvalidMcpServer::Name),
            (form(&name65, "x", "", ""), InvalidMcpServer::Name),
            (form("a/b", "x", "", ""), InvalidMcpServer::Name),
            (form("<script>", "x", "", ""), InvalidMcpServer::Name),
            (form("a", "", "", ""), InvalidMcpServer::CommandOrUrl),
            (
                form("a", "x", "https://e.com", ""),
                InvalidMcpServer::CommandOrUrl,
            ),
            (form("a", "x\u{7}", "", ""), InvalidMcpServer::Command),
            (
                form("a", "", "http://example.com", ""),
                InvalidMcpServer::Url,
            ),
            (
                form("a", "", "ftp://example.com", ""),
                InvalidMcpServer::Url,
            ),
            (
                form("a", "", "javascript:alert(1)", ""),
                InvalidMcpServer::Url,
            ),
            (
                form("a", "", "https://u:p@example.com", ""),
                InvalidMcpServer::Url,
            ),
            (form("a", "x", "", "NOEQUALS"), InvalidMcpServer::EnvLine(1)),
            (form("a", "x", "", "\nlower=1"), InvalidMcpServer::EnvKey(2)),
            (form("a", "x", "", "1ABC=1"), InvalidMcpServer::EnvKey(1)),
            (form("a", "x", "", "A-B=1"), InvalidMcpServer::EnvKey(1)),
            (
                form("a", "x", "", "A=1\nA=2"),
                InvalidMcpServer::EnvDuplicate(2),
            ),
            (
                form("a", "x", "", &long_value),
                InvalidMcpServer::EnvValue(1),
            ),
            (form("a", "x", "", &many), InvalidMcpServer::EnvCount),
            (
                form("a", "", "https://e.com/mcp", "AUTHORIZATION=ok\nHOST=evil"),
                InvalidMcpServer::EnvHeader(2),
            ),
            (
                form("a", "", "https://e.com/mcp", "MCP_SESSION_ID=x"),
                InvalidMcpServer::EnvHeader(1),
            ),
        ];
        for (f, want) in cases {
            assert_eq!(validate_mcp_form(&f).unwrap_err(), want, "{f:?}");
        }
    }

    #[test]
    fn a_refused_form_comes_back_without_any_value() {
        let refill = Refill::from_form(&form("a", "x", "", "API_KEY=sk-secret\nbad line\n"));
        assert_eq!(refill.env_names, "API_KEY=\n");
        assert!(!format!("{refill:?}").contains("sk-secret"));
    }
}
