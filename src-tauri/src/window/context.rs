//! [`WindowContext`]: the state every window command shares (managed by Tauri).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use katachi_core::KatachiDirs;

use super::ipc_error::{IpcCode, IpcError};
use super::port::AgentPort;
use super::View;

/// The window process's shared state.
pub struct WindowContext {
    /// The running agent.
    pub port: Arc<dyn AgentPort>,
    /// This user's folders (or why they cannot be found).
    dirs: Result<KatachiDirs, String>,
    /// When the process started (for the open → interactive figure).
    pub started: Instant,
    /// The view and link given at start, until the page asks for them.
    start: Mutex<Option<(View, Option<String>)>>,
    /// The approval page of the sign-in in progress (a page of its relay).
    approval_page: Mutex<Option<String>>,
}

impl WindowContext {
    /// A context over `port`, for `dirs`, showing `view` (and asking about `link`) first.
    pub fn new(
        port: Arc<dyn AgentPort>,
        dirs: Result<KatachiDirs, String>,
        view: View,
        link: Option<String>,
    ) -> Self {
        Self {
            port,
            dirs,
            started: Instant::now(),
            start: Mutex::new(Some((view, link))),
            approval_page: Mutex::new(None),
        }
    }

    /// The view and link given at start; the default view and no link once taken.
    pub fn take_start(&self) -> (View, Option<String>) {
        self.start
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default()
    }

    /// This user's folders.
    ///
    /// # Errors
    /// [`IpcCode::Window`] with why they cannot be found.
    pub fn dirs(&self) -> Result<KatachiDirs, IpcError> {
        self.dirs
            .clone()
            .map_err(|reason| IpcError::new(IpcCode::Window, reason))
    }

    /// Remembers (or forgets) the approval page of the sign-in in progress.
    pub fn remember_page(&self, page: Option<String>) {
        *self
            .approval_page
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = page;
    }

    /// The approval page of the sign-in in progress.
    pub fn approval_page(&self) -> Option<String> {
        self.approval_page
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
