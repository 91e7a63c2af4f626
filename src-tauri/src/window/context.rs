//! [`WindowContext`]: the state every window command shares (managed by Tauri).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use katachi_core::KatachiDirs;

use super::ipc_error::{IpcCode, IpcError};
use super::port::AgentPort;
use super::WindowArgs;

/// The window process's shared state.
pub struct WindowContext {
    /// The running agent.
    pub port: Arc<dyn AgentPort>,
    /// This user's folders (or why they cannot be found).
    dirs: Result<KatachiDirs, String>,
    /// When the process started (for the open → interactive figure).
    pub started: Instant,
    /// The start-up phases passed so far (name, ms since `started`), for the same figure.
    phases: Mutex<Vec<(&'static str, u128)>>,
    /// What was given at start, until the page asks for it.
    start: Mutex<Option<WindowArgs>>,
    /// The approval page of the sign-in in progress (a page of its relay).
    approval_page: Mutex<Option<String>>,
}

impl WindowContext {
    /// A context over `port`, for `dirs`, showing what `args` ask for first.
    pub fn new(
        port: Arc<dyn AgentPort>,
        dirs: Result<KatachiDirs, String>,
        args: WindowArgs,
    ) -> Self {
        Self {
            port,
            dirs,
            started: Instant::now(),
            phases: Mutex::new(Vec::new()),
            start: Mutex::new(Some(args)),
            approval_page: Mutex::new(None),
        }
    }

    /// What was given at start; the default view and nothing else once taken.
    pub fn take_start(&self) -> WindowArgs {
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

    /// Notes that start-up phase `name` is over (only its first time counts).
    pub fn mark(&self, name: &'static str) {
        let millis = self.started.elapsed().as_millis();
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        if !phases.iter().any(|(seen, _)| *seen == name) {
            phases.push((name, millis));
        }
    }

    /// The start-up phases passed so far, in order: `name N ms, …`.
    pub fn phases(&self) -> String {
        self.phases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, millis)| format!("{name} {millis} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
