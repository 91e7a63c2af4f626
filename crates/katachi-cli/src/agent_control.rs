//! The CLI's link to a running agent over its control socket: commands that change what the agent
//! does go there when an agent runs (so they take effect at once), else to the store.

use anyhow::Context;
use katachi_core::control::{Client, ControlError};
use katachi_core::KatachiDirs;

/// A current-thread runtime for one command.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The running agent's control connection; `None` when no agent runs for `dirs`.
pub(crate) fn connect(
    rt: &tokio::runtime::Runtime,
    dirs: &KatachiDirs,
) -> anyhow::Result<Option<Client>> {
    rt.block_on(Client::connect(dirs))
        .context("cannot reach the running agent's control socket")
}

/// The running agent's control connection, or an error saying none runs.
pub(crate) fn require(rt: &tokio::runtime::Runtime, dirs: &KatachiDirs) -> anyhow::Result<Client> {
    connect(rt, dirs)?.ok_or_else(|| {
        anyhow::anyhow!("no agent is running; start one with `katachi start` (or the Katachi app)")
    })
}

/// The stable code of a control-socket error: the agent's own code for a refusal.
pub(crate) fn control_code(e: &ControlError) -> String {
    match e {
        ControlError::Refused(f) => f.code.clone(),
        ControlError::Timeout(_) => "control.timeout".to_owned(),
        _ => "control.unavailable".to_owned(),
    }
}
