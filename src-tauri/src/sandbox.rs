//! The sandbox as the tray app shows it: the tray menu's line and the status window's section.
//!
//! Every word about the sandbox comes from `katachi-core` ([`SandboxStatus::summary`] for the
//! tray, [`SandboxStatus::notice`] and each layer's name and detail for the window); this module
//! only hands it over. On
//! Windows, where commands run unsandboxed, both surfaces say so.

use katachi_core::sandbox::{Sandbox, SandboxStatus};

/// What the status window's "Sandbox" section renders, as JSON: `notice` (present only when
/// commands are not confined), `backend`, `enforced`, `message` and `layers` (`name`, `active`,
/// `detail`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SandboxView {
    /// What the window must show prominently when commands are not confined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// The status itself (backend, enforced, message, layers).
    #[serde(flatten)]
    pub status: SandboxStatus,
}

impl SandboxView {
    /// The view of `status`.
    pub(crate) fn of(status: SandboxStatus) -> Self {
        Self {
            notice: status.notice(),
            status,
        }
    }
}

/// This machine's sandbox status (the kernel is probed once per process, then cached).
pub(crate) fn this_machine() -> SandboxStatus {
    Sandbox::probe().status()
}

/// Tauri command for the status window: this machine's sandbox, layer by layer.
#[tauri::command]
pub(crate) fn sandbox_status() -> SandboxView {
    SandboxView::of(this_machine())
}

#[cfg(test)]
mod tests {
    use katachi_core::sandbox::{LayerStatus, SandboxStatus};

    use super::SandboxView;

    #[test]
    fn view_of_an_unsandboxed_status_carries_the_notice_and_every_layer() -> serde_json::Result<()>
    {
        let message = "commands run unsandboxed on Windows: katachi cannot confine them";
        let view = SandboxView::of(SandboxStatus {
            backend: "windows",
            enforced: false,
            message: Some(message.to_owned()),
            layers: vec![LayerStatus {
                name: "sandbox".to_owned(),
                active: false,
                detail: message.to_owned(),
            }],
        });
        let json = serde_json::to_value(&view)?;
        assert_eq!(json["notice"], message);
        assert_eq!(json["enforced"], false);
        assert_eq!(json["layers"][0]["name"], "sandbox");
        assert_eq!(json["layers"][0]["active"], false);
        Ok(())
    }

    #[test]
    fn view_of_an_enforced_status_has_no_notice() -> serde_json::Result<()> {
        let view = SandboxView::of(SandboxStatus {
            backend: "linux",
            enforced: true,
            message: None,
            layers: vec![LayerStatus {
                name: "seccomp".to_owned(),
                active: true,
                detail: "filters".to_owned(),
            }],
        });
        let json = serde_json::to_value(&view)?;
        assert_eq!(json["layers"][0]["active"], true);
        assert!(json.get("notice").is_none(), "{json}");
        assert!(json.get("message").is_none(), "{json}");
        Ok(())
    }
}
