//! What one call through the tunnel was, read from its request before the handler runs: who (the
//! caller the relay named), what (a stable operation name from the matched route), where (the
//! workspace id and the `path` parameters), and the arguments worth keeping.
//!
//! Everything here comes from outside and is kept bounded: each text is capped, control characters
//! in names are replaced, and a missing or malformed caller header is recorded as `unknown`, never
//! trusted as another value.

use axum::extract::MatchedPath;
use axum::http::{header, HeaderMap, Method, Request};
use katachi_proto::agent::{
    FORWARDED_SESSION_HEADER, FORWARDED_USER_HEADER, FORWARDED_USER_ID_HEADER,
};
use serde::{Deserialize, Serialize};

use crate::api::MAX_PATH_BYTES;

/// Recorded for a caller header the relay did not send (or sent unreadable).
pub(crate) const UNKNOWN: &str = "unknown";

/// Longest user id, user name or session tag kept (in characters).
const MAX_WHO_CHARS: usize = 256;

/// Longest range header or search pattern kept in the detail (in characters).
const MAX_ARG_CHARS: usize = 256;

/// Most `path` parameters kept (the API refuses a repeated one anyway).
const MAX_PATHS: usize = 4;

/// Most paths a handler's note keeps (the files of a patch).
const MAX_NOTED_PATHS: usize = 256;

/// The arguments of a tunnelled call that have no column of their own, kept as JSON in the
/// record's `detail`. Never file content or a secret: the ledger says *that* bytes left, not what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallDetail {
    /// The HTTP method (`GET`, `PUT`, …).
    pub method: String,
    /// The matched route template (`/v1/workspaces/{id}/file`); absent for an unknown route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The HTTP status sent; absent when the call was cancelled before a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request body bytes the agent read (what arrived, e.g. a written file).
    #[serde(default)]
    pub bytes_in: u64,
    /// The caller's readable name (their e-mail), as the relay sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The workspace id asked for when it is not (or no longer) an allowed workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_asked: Option<i64>,
    /// The `Range` header of a read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The pattern of a search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The command line of a run (`cargo test --lib`), as the handler noted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// What a handler adds to its call's audit record, as a response extension: the command line of
/// a run, the files a patch changed (the layer does not parse request bodies).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AuditNote {
    /// The command and its arguments, shell-quoted where needed, printable and capped.
    pub(crate) command: Option<String>,
    /// Workspace-relative paths the call touched (replacing the query's `path` parameters).
    pub(crate) paths: Vec<String>,
}

impl AuditNote {
    /// A note naming `command` run with `args`.
    pub(crate) fn command_line(command: &str, args: &[String]) -> Self {
        let mut line = String::new();
        for word in std::iter::once(command).chain(args.iter().map(String::as_str)) {
            if !line.is_empty() {
                line.push(' ');
            }
            let plain = !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                line.push_str(word);
            } else {
                line.push('\'');
                line.push_str(&word.replace('\'', "'\\''"));
                line.push('\'');
            }
            if line.len() > MAX_ARG_CHARS * 4 {
                break;
            }
        }
        Self {
            command: Some(printable(&line, MAX_ARG_CHARS * 4)),
            paths: Vec::new(),
        }
    }

    /// A note naming the files a call changed (at most [`MAX_NOTED_PATHS`], each capped).
    pub(crate) fn paths<'p>(paths: impl IntoIterator<Item = &'p str>) -> Self {
        Self {
            command: None,
            paths: paths
                .into_iter()
                .take(MAX_NOTED_PATHS)
                .map(|p| capped(p, MAX_PATH_BYTES))
                .collect(),
        }
    }
}

impl CallDetail {
    /// The detail of a record written by the audit layer; `None` for other records (CLI commands,
    /// older records), whose detail is free text.
    pub fn parse(detail: &str) -> Option<Self> {
        if !detail.starts_with('{') {
            return None;
        }
        serde_json::from_str(detail).ok()
    }

    /// The JSON stored in `detail`.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Marks a call made in process by the AI's tools ([`crate::ai::tools`]): a request extension, so
/// nothing that arrives through the tunnel can set it (the relay's requests carry headers only).
/// Its call is recorded with [`crate::store::Actor::Ai`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiCaller {
    /// The relay's id of the user the chat session belongs to.
    pub user: String,
    /// The chat session.
    pub session: String,
}

/// One call as read from its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallInfo {
    /// The relay's id of the user, or [`UNKNOWN`].
    pub(crate) user_id: String,
    /// The one-way tag of the browser session (the chat session for the AI), or [`UNKNOWN`].
    pub(crate) session: String,
    /// Made by the AI's tools in process ([`AiCaller`]).
    pub(crate) by_ai: bool,
    /// The stable operation name (`file.read`, …).
    pub(crate) operation: String,
    /// The workspace id of a workspace route.
    pub(crate) workspace_id: Option<i64>,
    /// The `path` parameters, decoded (lossily: the record names what was asked, the API itself
    /// refuses what is not UTF-8).
    pub(crate) paths: Vec<String>,
    /// The rest, kept in `detail` (status and bytes in are filled in when the call ends).
    pub(crate) detail: CallDetail,
}

impl CallInfo {
    /// Reads the call from `req` (routed: [`MatchedPath`] is set for a known route).
    pub(crate) fn of<B>(req: &Request<B>) -> Self {
        let headers = req.headers();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned());
        let method = req.method();
        let query = req.uri().query().unwrap_or("");
        let search = route.as_deref().is_some_and(|r| r.ends_with("/search"));
        let detail = CallDetail {
            method: capped(method.as_str(), MAX_ARG_CHARS),
            route: route.clone(),
            user_name: header_text(headers, FORWARDED_USER_HEADER)
                .map(|v| percent_decoded(&v))
                .map(|v| printable(&v, MAX_WHO_CHARS))
                .filter(|v| !v.is_empty()),
            range: header_text(headers, header::RANGE.as_str())
                .map(|v| printable(&v, MAX_ARG_CHARS)),
            query: search
                .then(|| query_values(query, "query").next())
                .flatten()
                .map(|v| printable(&v, MAX_ARG_CHARS)),
            ..CallDetail::default()
        };
        let ai = req.extensions().get::<AiCaller>();
        let (user_id, session) = match ai {
            Some(ai) => (
                printable(&ai.user, MAX_WHO_CHARS),
                printable(&ai.session, MAX_WHO_CHARS),
            ),
            None => (
                who(headers, FORWARDED_USER_ID_HEADER),
                who(headers, FORWARDED_SESSION_HEADER),
            ),
        };
        Self {
            user_id,
            session,
            by_ai: ai.is_some(),
            operation: operation_name(method, route.as_deref()),
            workspace_id: route
                .as_deref()
                .filter(|r| r.starts_with("/v1/workspaces/{id}"))
                .and_then(|_| req.uri().path().split('/').nth(3))
                .and_then(|id| id.parse().ok()),
            paths: query_values(query, "path")
                .take(MAX_PATHS)
                .map(|p| capped(&p, MAX_PATH_BYTES))
                .collect(),
            detail,
        }
    }
}

/// The stable name of an operation: a fixed name for each known route, else one derived from the
/// route's static segments (`/v1/workspaces/{id}/commands/run` + POST → `commands.run.post`), and
/// `request.unknown` when no route matched.
pub(crate) fn operation_name(method: &Method, route: Option<&str>) -> String {
    let Some(route) = route else {
        return "request.unknown".to_owned();
    };
    let rest = route
        .strip_prefix("/v1/workspaces/{id}/")
        .or_else(|| route.strip_prefix("/v1/"))
        .unwrap_or(route);
    let known = match (method.as_str(), rest) {
        ("GET", "status") => Some("status.get"),
        ("GET", "workspaces") => Some("workspace.list"),
        ("GET", "tree") => Some("tree.list"),
        ("GET" | "HEAD", "file") => Some("file.read"),
        ("PUT", "file") => Some("file.write"),
        ("POST", "patch") => Some("file.patch"),
        ("GET", "stat") => Some("file.stat"),
        ("GET", "search") => Some("search.text"),
        ("GET", "git/status") => Some("git.status"),
        ("GET", "git/diff") => Some("git.diff"),
        ("POST", "run") => Some("command.run"),
        ("GET", "run/commands") => Some("command.list"),
        ("POST", "chat/sessions/{sid}/turn") => Some("chat.turn"),
        ("POST", "chat/sessions/{sid}/stop") => Some("chat.stop"),
        ("POST", "chat/approvals/{aid}") => Some("chat.approval.decide"),
        ("GET", "chat/sessions/{sid}/export") => Some("chat.export"),
        _ => None,
    };
    if let Some(name) = known {
        return name.to_owned();
    }
    let mut parts: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .map(str::to_owned)
        .collect();
    parts.push(method.as_str().to_ascii_lowercase());
    capped(&parts.join("."), MAX_ARG_CHARS)
}

/// A caller header as text, or [`UNKNOWN`].
fn who(headers: &HeaderMap, name: &str) -> String {
    header_text(headers, name)
        .map(|v| printable(&v, MAX_WHO_CHARS))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| UNKNOWN.to_owned())
}

/// A header's value when it is visible ASCII (`None` when absent or not).
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// Percent-decoded, lossily (the relay encodes the e-mail's controls and spaces).
fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The decoded values of the query parameter `key`, in order (form encoding: `+` is a space).
fn query_values<'q>(query: &'q str, key: &'q str) -> impl Iterator<Item = String> + 'q {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decoded(k) == key).then(|| form_decoded(v))
        })
}

fn form_decoded(text: &str) -> String {
    percent_decoded(&text.replace('+', " "))
}

/// `text` with control characters replaced (they could rewrite a terminal that prints the log),
/// cut to `max` characters.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_routes_have_fixed_operation_names() {
        let name = |m: Method, r: &str| operation_name(&m, Some(r));
        assert_eq!(name(Method::GET, "/v1/workspaces/{id}/file"), "file.read");
        assert_eq!(name(Method::PUT, "/v1/workspaces/{id}/file"), "file.write");
        assert_eq!(name(Method::GET, "/v1/workspaces/{id}/tree"), "tree.list");
        assert_eq!(
            name(Method::GET, "/v1/workspaces/{id}/git/diff"),
            "git.diff"
        );
        assert_eq!(name(Method::GET, "/v1/workspaces"), "workspace.list");
        assert_eq!(name(Method::GET, "/v1/status"), "status.get");
        assert_eq!(name(Method::POST, "/v1/workspaces/{id}/run"), "command.run");
        assert_eq!(
            name(Method::GET, "/v1/workspaces/{id}/run/commands"),
            "command.list"
        );
        assert_eq!(operation_name(&Method::GET, None), "request.unknown");
    }

    #[test]
    fn a_command_line_note_quotes_what_a_shell_would_split_and_escapes_controls() {
        let note = AuditNote::command_line(
            "grep",
            &[
                "-rn".into(),
                "two words".into(),
                "it's".into(),
                "a\x1b[2Jb".into(),
            ],
        );
        assert_eq!(
            note.command.as_deref(),
            Some("grep -rn 'two words' 'it'\\''s' 'a\u{fffd}[2Jb'")
        );
    }

    #[test]
    fn later_routes_get_a_name_derived_from_their_static_segments() {
        assert_eq!(
            operation_name(&Method::POST, Some("/v1/workspaces/{id}/commands/run")),
            "commands.run.post"
        );
        assert_eq!(
            operation_name(&Method::DELETE, Some("/v1/status")),
            "status.delete"
        );
    }

    #[test]
    fn caller_paths_and_arguments_are_read_from_the_request() {
        let mut req = Request::get("/v1/workspaces/3/search?path=src%2Fa+b.rs&query=fn%20main")
            .header(FORWARDED_USER_ID_HEADER, "u-1")
            .header(FORWARDED_USER_HEADER, "alice%40example.com")
            .header(FORWARDED_SESSION_HEADER, "0123456789abcdef")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(matched("/v1/workspaces/{id}/search"));
        let call = CallInfo::of(&req);
        assert_eq!(call.user_id, "u-1");
        assert_eq!(call.session, "0123456789abcdef");
        assert_eq!(call.detail.user_name.as_deref(), Some("alice@example.com"));
        assert_eq!(call.operation, "search.text");
        assert_eq!(call.workspace_id, Some(3));
        assert_eq!(call.paths, ["src/a b.rs"]);
        assert_eq!(call.detail.query.as_deref(), Some("fn main"));
    }

    #[test]
    fn only_the_in_process_mark_makes_a_call_the_ais() {
        // headers are all a tunnelled request has: whatever they say, it is the browser's
        let from_relay = Request::get("/v1/status")
            .header(FORWARDED_USER_ID_HEADER, "u-1")
            .header("x-katachi-ai", "1")
            .header("x-katachi-actor", "ai")
            .body(())
            .unwrap();
        assert!(!CallInfo::of(&from_relay).by_ai);
        let mut from_tools = Request::get("/v1/status").body(()).unwrap();
        from_tools.extensions_mut().insert(AiCaller {
            user: "u-1".into(),
            session: "chat\x1b7".into(),
        });
        let call = CallInfo::of(&from_tools);
        assert!(call.by_ai);
        assert_eq!(call.user_id, "u-1");
        assert_eq!(call.session, "chat\u{fffd}7", "controls replaced");
    }

    #[test]
    fn missing_caller_headers_are_recorded_as_unknown() {
        let req = Request::get("/v1/status").body(()).unwrap();
        let call = CallInfo::of(&req);
        assert_eq!(
            (call.user_id.as_str(), call.session.as_str()),
            (UNKNOWN, UNKNOWN)
        );
        assert_eq!(call.detail.user_name, None);
        assert_eq!(call.operation, "request.unknown", "no route matched");
    }

    #[test]
    fn hostile_names_are_bounded_and_lose_their_control_characters() {
        let req = Request::get("/")
            .header(FORWARDED_USER_HEADER, format!("%1b[2J{}", "x".repeat(5000)))
            .body(())
            .unwrap();
        let name = CallInfo::of(&req).detail.user_name.unwrap();
        assert!(name.starts_with("\u{fffd}[2J"), "{name:?}");
        assert_eq!(name.chars().count(), MAX_WHO_CHARS);
    }

    #[test]
    fn call_detail_round_trips_and_free_text_is_not_parsed() {
        let d = CallDetail {
            method: "GET".into(),
            status: Some(206),
            bytes_in: 3,
            ..CallDetail::default()
        };
        assert_eq!(CallDetail::parse(&d.to_json()), Some(d));
        assert_eq!(CallDetail::parse("pattern: foo"), None);
    }

    /// A `MatchedPath` as the router sets it (its constructor is private to axum): routes a
    /// request through a one-route router and keeps what the handler saw.
    fn matched(route: &'static str) -> MatchedPath {
        use tower::ServiceExt;
        let (tx, rx) = std::sync::mpsc::channel();
        let app = axum::Router::new().route(
            route,
            axum::routing::get(move |m: MatchedPath| {
                let tx = tx.clone();
                async move { tx.send(m).unwrap() }
            }),
        );
        let req = Request::get(route.replace("{id}", "1"))
            .body(axum::body::Body::empty())
            .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(app.oneshot(req))
            .unwrap();
        rx.recv().unwrap()
    }
}
