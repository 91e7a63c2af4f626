//! How a remote MCP server's stored environment becomes HTTP headers.
//!
//! # The mapping
//! Every variable of a remote (URL) server is sent as one HTTP header on every request to that
//! server: the header's name is the variable's name in lower case with `_` turned into `-`, the
//! value as stored. So `AUTHORIZATION=Bearer sk-…` is sent as `Authorization: Bearer sk-…`, and
//! `X_API_KEY=…` as `X-Api-Key: …` (header names are case-insensitive).
//!
//! Names that would change how HTTP or MCP itself works are refused ([`is_reserved_header`]):
//! `Host`, `Content-*`, `Accept*`, `Connection` and the other hop-by-hop headers, `Cookie`,
//! `Proxy-*`, and every `Mcp-*` / `Last-Event-Id` header the transport sets itself. The MCP page
//! refuses them when a server is added; a row stored before is reported as `mcp.misconfigured`.
//!
//! # Security
//! Values are marked sensitive (never printed by `http`), kept in [`SecretHeaders`] only as long
//! as one connection needs them, and listed there so that whatever the relay passes on from the
//! server can have them redacted ([`SecretHeaders::redact`]).

use std::collections::HashMap;

use axum::http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

/// Header names a stored variable may not set (lower case; `mcp-` is a reserved prefix too).
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "accept",
    "accept-encoding",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "cookie",
    "proxy-authorization",
    "proxy-connection",
    "last-event-id",
];

/// Shortest value redacted from what the server sends back (shorter ones would mangle text).
const MIN_REDACTED_LEN: usize = 6;

/// The header name of a stored variable name (`X_API_KEY` → `x-api-key`).
pub fn header_name_of(variable: &str) -> String {
    variable.to_ascii_lowercase().replace('_', "-")
}

/// True when `header` (lower case) may not be set from a stored variable.
pub fn is_reserved_header(header: &str) -> bool {
    RESERVED.contains(&header) || header.starts_with("mcp-") || header.starts_with("proxy-")
}

/// Why a stored environment cannot be sent as headers (never carries a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    /// The sealed environment is not a JSON object of strings.
    #[error("its stored environment is not readable")]
    Unreadable,
    /// A variable maps to a header the transport owns.
    #[error("the variable {0} would set the reserved header {1:?}")]
    Reserved(String, String),
    /// A variable's name or value is not valid in an HTTP header.
    #[error("the variable {0} cannot be sent as an HTTP header (its value has a line break or another control character)")]
    Invalid(String),
}

/// The headers of one server, and their values for redaction. Wiped when dropped.
pub struct SecretHeaders {
    /// What every request to the server carries (values marked sensitive).
    pub headers: HashMap<HeaderName, HeaderValue>,
    /// The values, for [`SecretHeaders::redact`].
    values: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for SecretHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretHeaders")
            .field("names", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SecretHeaders {
    /// The headers of an opened environment (the JSON object the MCP page sealed).
    ///
    /// # Errors
    /// [`HeaderProblem`] naming the variable (never its value).
    pub fn from_env_json(env_json: &[u8]) -> Result<Self, HeaderProblem> {
        let env: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(env_json).map_err(|_| HeaderProblem::Unreadable)?;
        let mut headers = HashMap::new();
        let mut values = Vec::new();
        for (variable, value) in env {
            let value = Zeroizing::new(match value {
                serde_json::Value::String(s) => s,
                _ => return Err(HeaderProblem::Unreadable),
            });
            let lower = header_name_of(&variable);
            if is_reserved_header(&lower) {
                return Err(HeaderProblem::Reserved(variable, lower));
            }
            let name = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| HeaderProblem::Invalid(variable.clone()))?;
            let mut header = HeaderValue::from_str(value.trim())
                .map_err(|_| HeaderProblem::Invalid(variable.clone()))?;
            header.set_sensitive(true);
            headers.insert(name, header);
            values.push(Zeroizing::new(value.trim().to_owned()));
        }
        Ok(Self { headers, values })
    }

    /// `text` with every secret value replaced by `<redacted>`.
    pub fn redact_text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in &self.values {
            if v.len() >= MIN_REDACTED_LEN && out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "<redacted>");
            }
        }
        out
    }

    /// `value` with every secret value replaced in each of its strings (a server reflecting its
    /// credential back does not hand it to the agent or the model).
    pub fn redact(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                let clean = self.redact_text(s);
                if clean != *s {
                    *s = clean;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.redact(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_become_lower_case_dashed_headers_marked_sensitive() {
        let h = SecretHeaders::from_env_json(
            br#"{"AUTHORIZATION":"Bearer sk-abc123","X_API_KEY":"k-987654"}"#,
        )
        .unwrap();
        let get = |name: &'static str| &h.headers[&HeaderName::from_static(name)];
        assert_eq!(get("authorization"), "Bearer sk-abc123");
        assert!(get("authorization").is_sensitive());
        assert_eq!(get("x-api-key"), "k-987654");
        assert!(!format!("{h:?}").contains("sk-abc123"));
    }

    #[test]
    fn reserved_and_unsendable_variables_are_refused_by_name_only() {
        for (env, variable) in [
            (r#"{"HOST":"evil"}"#, "HOST"),
            (r#"{"MCP_SESSION_ID":"x"}"#, "MCP_SESSION_ID"),
            (r#"{"CONTENT_LENGTH":"1"}"#, "CONTENT_LENGTH"),
            (r#"{"PROXY_AUTHORIZATION":"x"}"#, "PROXY_AUTHORIZATION"),
        ] {
            let e = SecretHeaders::from_env_json(env.as_bytes()).unwrap_err();
            assert!(
                matches!(&e, HeaderProblem::Reserved(v, _) if v == variable),
                "{e}"
            );
        }
        let e = SecretHeaders::from_env_json(br#"{"TOKEN":"a\nb-secret"}"#).unwrap_err();
        assert_eq!(e, HeaderProblem::Invalid("TOKEN".into()));
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn secret_values_are_redacted_from_what_the_server_sends_back() {
        let h = SecretHeaders::from_env_json(br#"{"AUTHORIZATION":"Bearer sk-abc123"}"#).unwrap();
        let mut v = serde_json::json!([{"type":"text","text":"you sent Bearer sk-abc123!"}]);
        h.redact(&mut v);
        assert_eq!(v[0]["text"], "you sent <redacted>!");
    }
}
