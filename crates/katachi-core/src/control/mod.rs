//! The local control of a running agent: one agent per user ([`lock`]), and the control socket
//! through which the `katachi` CLI and the app's window drive it.
//!
//! # Contract
//! - The agent that holds the [`AgentLock`] serves [`ControlServer`]: a Unix socket
//!   `<runtime_dir>/control.sock` (`0600` in a `0700` folder, every peer's uid checked), a named
//!   pipe with an owner-only DACL on Windows. Requests and answers are JSON lines ([`protocol`]).
//! - [`Client::connect`] says `None` when no agent runs: the caller then works on the store.
//! - Workspace changes go through [`crate::workspace_admin`] (store + audit + activity), so they
//!   take effect at once; agent commands go to the [`crate::Agent`] handle.
//!
//! # Layout
//! - `lock`: the OS file lock that makes a second agent say "already running (pid, since …)".
//! - `protocol`: the request and answer lines, the status report, the socket's own error codes.
//! - `session`: one admitted connection: bounded lines, timeouts, the requests carried out.
//! - `server`: [`ControlServer`], started beside the agent, stopped on drop.
//! - `client`: [`Client`], one typed method per request.
//! - `unix` / `windows`: the socket and its peer check / the named pipe and its DACL.
//! - `error`: [`ControlError`].

mod client;
mod error;
pub mod lock;
pub mod protocol;
mod server;
mod session;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

pub use client::{Client, StatusStream};
pub use error::ControlError;
pub use lock::{AgentLock, FrontEnd, LockError, LockInfo};
pub use protocol::{Failure, StatusReport};
pub use server::{ControlServer, MAX_CONNECTIONS};

#[cfg(all(test, unix))]
#[path = "server_tests.rs"]
mod server_tests;
