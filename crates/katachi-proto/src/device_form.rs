//! The two form requests of the RFC 8628 device flow as the relay reads them: the device
//! authorization request (`POST /oauth/device/code`) and the token request (`POST /oauth/token`).
//!
//! # Contract
//! - [`DeviceCodeForm`] and [`TokenForm`] are what the relay decodes the form bodies into
//!   (`application/x-www-form-urlencoded`); every field is optional there, so a missing one is
//!   refused here with its own [`DeviceFormError`], never by the decoder.
//! - The checks need no database: the relay runs them before touching it (the client id before
//!   the per-address limit of device codes, the device's name and OS after it), and the fuzz
//!   target `device_flow` runs them on arbitrary bodies.
//! - A device name or OS that is accepted is what the approval page shows: trimmed, 1 to
//!   [`MAX_DEVICE_FIELD`] characters, no control character (no line break, no terminal escape); an
//!   empty one becomes a fixed fallback.
//! - A device code that is accepted is 1 to [`MAX_DEVICE_CODE`] bytes, exactly as sent.
//!
//! # Security
//! The device code is a bearer secret until it is exchanged: no error message and no `Debug`
//! output contains it.

use http::StatusCode;
use serde::Deserialize;

use crate::device::{DeviceInfo, TokenErrorCode, AGENT_CLIENT_ID, DEVICE_CODE_GRANT};

/// Longest device name or OS accepted, in characters.
pub const MAX_DEVICE_FIELD: usize = 100;
/// Longest device code accepted, in bytes (the relay issues 64 hex characters).
pub const MAX_DEVICE_CODE: usize = 128;
/// Shown for a device that sent no name.
pub const UNNAMED_DEVICE: &str = "unnamed device";
/// Shown for a device that sent no OS.
pub const UNKNOWN_OS: &str = "unknown OS";

/// Why a device-flow form is refused; each maps to an RFC 8628 / RFC 6749 error code
/// ([`DeviceFormError::code`]) and a status ([`DeviceFormError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceFormError {
    /// `client_id` is absent or not [`AGENT_CLIENT_ID`]: not a katachi agent (or an
    /// incompatible one).
    #[error("unknown client_id")]
    UnknownClient,
    /// `grant_type` is not the device-code grant: this endpoint issues tokens for nothing else.
    #[error("only the device_code grant is supported")]
    UnsupportedGrant,
    /// `device_code` is absent, empty or longer than [`MAX_DEVICE_CODE`]: an agent bug (the relay
    /// never issues such a code).
    #[error("device_code is missing")]
    MissingDeviceCode,
    /// `device_name` or `device_os` is longer than [`MAX_DEVICE_FIELD`] characters.
    #[error("device_name and device_os are limited to 100 characters")]
    DeviceFieldTooLong,
    /// `device_name` or `device_os` holds a control character (a line break, an escape), a line
    /// or paragraph separator, or a character that changes the direction of the text around it.
    #[error("device_name and device_os must not contain control, line-separator or text-direction characters")]
    DeviceFieldControl,
}

impl DeviceFormError {
    /// The RFC error code of the token endpoint's `{"error":…}`.
    pub fn code(&self) -> TokenErrorCode {
        match self {
            DeviceFormError::UnknownClient => TokenErrorCode::InvalidClient,
            DeviceFormError::UnsupportedGrant => TokenErrorCode::UnsupportedGrantType,
            DeviceFormError::MissingDeviceCode
            | DeviceFormError::DeviceFieldTooLong
            | DeviceFormError::DeviceFieldControl => TokenErrorCode::InvalidRequest,
        }
    }

    /// The HTTP status: `401` for an unknown client (RFC 6749 §5.2), `400` otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            DeviceFormError::UnknownClient => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The device authorization request's form (RFC 8628 §3.1, plus the device's name and OS).
#[derive(Debug, Deserialize)]
pub struct DeviceCodeForm {
    /// Must be [`AGENT_CLIENT_ID`].
    client_id: Option<String>,
    /// Requested scope: read so that it is allowed, then ignored (there is one scope).
    #[allow(dead_code)]
    scope: Option<String>,
    /// Name of the machine, shown on the approval page.
    device_name: Option<String>,
    /// OS of the machine, shown on the approval page.
    device_os: Option<String>,
}

impl DeviceCodeForm {
    /// Checks the client id.
    ///
    /// # Errors
    /// [`DeviceFormError::UnknownClient`].
    pub fn check_client(&self) -> Result<(), DeviceFormError> {
        check_client(self.client_id.as_deref())
    }

    /// The device's name and OS as the approval page shows them (fallbacks for empty ones).
    ///
    /// # Errors
    /// [`DeviceFormError::DeviceFieldTooLong`] or [`DeviceFormError::DeviceFieldControl`], the
    /// name checked first.
    pub fn into_device(self) -> Result<DeviceInfo, DeviceFormError> {
        Ok(DeviceInfo {
            device_name: clean_field(self.device_name, UNNAMED_DEVICE)?,
            device_os: clean_field(self.device_os, UNKNOWN_OS)?,
        })
    }
}

/// The token request's form (RFC 8628 §3.4).
#[derive(Deserialize)]
pub struct TokenForm {
    /// Must be [`DEVICE_CODE_GRANT`].
    grant_type: Option<String>,
    /// The device code being polled for.
    device_code: Option<String>,
    /// Must be [`AGENT_CLIENT_ID`].
    client_id: Option<String>,
}

impl std::fmt::Debug for TokenForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenForm")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenForm {
    /// The device code being polled for, once the grant type and the client are right.
    ///
    /// # Errors
    /// [`DeviceFormError::UnsupportedGrant`], then [`DeviceFormError::UnknownClient`], then
    /// [`DeviceFormError::MissingDeviceCode`], in that order.
    ///
    /// # Security
    /// The code is a secret: hash it to look it up; never log it.
    pub fn into_device_code(self) -> Result<String, DeviceFormError> {
        if self.grant_type.as_deref() != Some(DEVICE_CODE_GRANT) {
            return Err(DeviceFormError::UnsupportedGrant);
        }
        check_client(self.client_id.as_deref())?;
        self.device_code
            .filter(|c| !c.is_empty() && c.len() <= MAX_DEVICE_CODE)
            .ok_or(DeviceFormError::MissingDeviceCode)
    }
}

fn check_client(client_id: Option<&str>) -> Result<(), DeviceFormError> {
    if client_id == Some(AGENT_CLIENT_ID) {
        Ok(())
    } else {
        Err(DeviceFormError::UnknownClient)
    }
}

/// Keeps printable characters only, trimmed and bounded: these strings are shown to the user.
fn clean_field(value: Option<String>, fallback: &str) -> Result<String, DeviceFormError> {
    let value = value.unwrap_or_default();
    let value = value.trim();
    if value.chars().count() > MAX_DEVICE_FIELD {
        return Err(DeviceFormError::DeviceFieldTooLong);
    }
    // a line break or an escape sequence would forge lines on the approval page or in a terminal;
    // a direction override would show "my-laptop" for another string (the page's user approves
    // what they read)
    if value.chars().any(unsafe_to_show) {
        return Err(DeviceFormError::DeviceFieldControl);
    }
    Ok(if value.is_empty() {
        fallback.to_owned()
    } else {
        value.to_owned()
    })
}

/// A character that makes shown text say something else than it reads: a control character, a
/// line or paragraph separator, or a bidirectional mark, embedding, override or isolate.
fn unsafe_to_show(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
#[path = "device_form_tests.rs"]
mod tests;
