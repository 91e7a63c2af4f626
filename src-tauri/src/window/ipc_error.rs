//! The one error type every window command returns: `{code, message}` with a stable code the UI
//! can branch on and a sentence it can show as is (never a secret, never a debug dump).

use serde::Serialize;

/// What went wrong, as a stable word (serialised in `snake_case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpcCode {
    /// The request itself is wrong (a bad URL, an unknown provider, an empty path…).
    InvalidInput,
    /// The running agent cannot be reached over its control socket.
    AgentUnreachable,
    /// The agent refused or failed the command (its own code is in the message).
    AgentRefused,
    /// The relay does not answer over HTTPS with the given CA.
    RelayUnreachable,
    /// The keychain refused to store, read or delete a secret.
    Keychain,
    /// The local store (workspaces, audit) cannot be read.
    Store,
    /// The sandbox self-test could not run.
    Sandbox,
    /// Something of the window itself failed (a dialog, the browser, a settings file).
    Window,
}

/// The error of a window command, as the webview receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct IpcError {
    /// The stable code.
    pub code: IpcCode,
    /// What to tell the user.
    pub message: String,
}

impl IpcError {
    /// An error with `code` and `message`.
    pub fn new(code: IpcCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// [`IpcCode::InvalidInput`] with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(IpcCode::InvalidInput, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipc_error_serialises_as_a_stable_code_and_a_message() -> serde_json::Result<()> {
        let err = IpcError::new(IpcCode::RelayUnreachable, "cannot reach the relay");
        assert_eq!(
            serde_json::to_value(&err)?,
            serde_json::json!({"code": "relay_unreachable", "message": "cannot reach the relay"})
        );
        Ok(())
    }
}
