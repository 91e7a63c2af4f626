//! The notes for the model: short key → value notes the user saves for a workspace, put into
//! every chat turn's system prompt beside the repository's AGENTS.md / CLAUDE.md / GEMINI.md.
//!
//! - `GET    /v1/workspaces/{id}/chat/notes` — `{"notes":[{"key","value"}]}`, by key.
//! - `PUT    /v1/workspaces/{id}/chat/notes/{key}` `{"value"}` — saves (replaces) a note.
//! - `DELETE /v1/workspaces/{id}/chat/notes/{key}` — forgets it (`chat.note_not_found` if none).
//!
//! A key is 1–64 characters of `A-Z a-z 0-9 _ . -`; a value is at most 8 KiB of UTF-8 without NUL.
//! [`check_key`] and [`check_value`] are the same checks the CLI (`katachi ai note`) applies.
//! Errors are the API's JSON shape `{"error":{"code","message"}}`: `request.invalid`,
//! `workspace.not_found`, `chat.note_not_found`, `store.unavailable`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::routes::json_body;
use super::service::{ChatError, ChatService};

/// Longest key, in characters.
pub const MAX_KEY_CHARS: usize = 64;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Why a note's key or value is refused (the message says what is allowed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The key is empty, too long or has a character outside `A-Z a-z 0-9 _ . -`.
    #[error("a note key is 1 to {MAX_KEY_CHARS} characters of A-Z a-z 0-9 _ . - (got {0:?})")]
    BadKey(String),
    /// The value is over 8 KiB.
    #[error("a note is at most {MAX_VALUE_BYTES} bytes (this one is {0})")]
    TooLong(usize),
    /// The value contains a NUL character.
    #[error("a note cannot contain a NUL character")]
    Nul,
}

impl NoteError {
    /// The stable wire code.
    pub fn code(&self) -> &'static str {
        "request.invalid"
    }
}

/// Checks a note's key.
///
/// # Errors
/// [`NoteError::BadKey`] unless it is 1–64 characters of `A-Z a-z 0-9 _ . -`.
pub fn check_key(key: &str) -> Result<(), NoteError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = key.chars().take(MAX_KEY_CHARS + 1).collect();
        Err(NoteError::BadKey(shown))
    }
}

/// Checks a note's value.
///
/// # Errors
/// [`NoteError::TooLong`] over 8 KiB, [`NoteError::Nul`] with a NUL character.
pub fn check_value(value: &str) -> Result<(), NoteError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(NoteError::TooLong(value.len()));
    }
    if value.contains('\0') {
        return Err(NoteError::Nul);
    }
    Ok(())
}

impl From<NoteError> for ChatError {
    fn from(e: NoteError) -> Self {
        ChatError::Invalid(e.to_string())
    }
}

/// The notes routes over `service` (full paths, merged into [`super::routes::routes`]).
pub fn routes(service: ChatService) -> Router {
    Router::new()
        .route("/v1/workspaces/{id}/chat/notes", get(list_notes))
        .route(
            "/v1/workspaces/{id}/chat/notes/{key}",
            put(save_note).delete(forget_note),
        )
        .with_state(service)
}

/// A note as listed.
#[derive(Debug, Serialize)]
struct NoteView {
    /// Its key.
    key: String,
    /// Its text.
    value: String,
}

/// `PUT …/notes/{key}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    /// The note (at most 8 KiB, no NUL).
    value: String,
}

fn workspace_id(raw: &str) -> Result<i64, ChatError> {
    raw.parse()
        .map_err(|_| ChatError::Invalid(format!("{raw:?} is not a workspace id")))
}

async fn list_notes(
    State(service): State<ChatService>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ChatError> {
    let id = workspace_id(&id)?;
    service.workspace(id).await?;
    let notes = service.store().run(move |s| s.memory().all(id)).await?;
    let notes: Vec<NoteView> = notes
        .into_iter()
        .map(|(key, value)| NoteView { key, value })
        .collect();
    Ok(Json(serde_json::json!({ "notes": notes })))
}

async fn save_note(
    State(service): State<ChatService>,
    Path((id, key)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ChatError> {
    let id = workspace_id(&id)?;
    check_key(&key)?;
    let NoteBody { value } = json_body(&body)?;
    check_value(&value)?;
    service.workspace(id).await?;
    let (k, v) = (key.clone(), value.clone());
    service
        .store()
        .run(move |s| s.memory().remember(id, &k, &v))
        .await?;
    Ok(Json(serde_json::json!({ "key": key, "value": value })))
}

async fn forget_note(
    State(service): State<ChatService>,
    Path((id, key)): Path<(String, String)>,
) -> Result<StatusCode, ChatError> {
    let id = workspace_id(&id)?;
    check_key(&key)?;
    service.workspace(id).await?;
    let k = key.clone();
    let existed = service
        .store()
        .run(move |s| s.memory().forget(id, &k))
        .await?;
    if existed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ChatError::NoteNotFound(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_plain_names_and_values_are_small_text_without_nul() {
        assert!(check_key("build.cmd-1_x").is_ok());
        assert!(check_key(&"k".repeat(64)).is_ok());
        for bad in ["", "a b", "a/b", "ä", "a\n", &"k".repeat(65)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_value("").is_ok());
        assert!(check_value(&"v".repeat(MAX_VALUE_BYTES)).is_ok());
        assert_eq!(
            check_value(&"v".repeat(MAX_VALUE_BYTES + 1)),
            Err(NoteError::TooLong(MAX_VALUE_BYTES + 1))
        );
        assert_eq!(check_value("a\0b"), Err(NoteError::Nul));
    }
}
