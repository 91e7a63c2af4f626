//! The agent runtime: one supervisor task that keeps a registered agent online and one handle,
//! [`Agent`], that every front end (`katachi start`, the tray, the tests) drives the same way.
//!
//! # Contract
//! - [`Agent`] is `Clone + Send + Sync`. [`Agent::launch`] starts it signed out or, with saved
//!   credentials, online. [`Agent::status`] gives a `watch` receiver of the one [`Status`];
//!   commands ([`Agent::sign_in`], [`Agent::cancel_sign_in`], [`Agent::sign_out`],
//!   [`Agent::pause`], [`Agent::resume`], [`Agent::reconnect_now`], [`Agent::stop`]) go through
//!   an mpsc queue and each gets a typed answer ([`CommandError`] has stable codes).
//! - States (see `lifecycle`): signed out → waiting for approval → registered (online, paused)
//!   → signed out; a link that cannot work is shown as an error until retried or signed out.
//! - The supervisor owns the relay session (heartbeats, outbox) and the tunnel (dial + reconnect)
//!   and runs them as one unit: when the tunnel stops for good (the relay refuses the agent, or the
//!   set-up cannot work), the session is stopped too — heartbeats end, the relay stops showing the
//!   agent online — and the end is published in [`Status`] and returned by the supervisor's task.
//!   When the session ends (revoked, forgotten), the tunnel is dropped. Nothing waits in silence.
//! - Pause = tunnel down and heartbeats stopped, until [`Agent::resume`] or the pause's end.
//! - [`Agent::stop`] stops the session cleanly (its last status says "stopped"), drops the
//!   tunnel, and ends the task with [`AgentEnd::Stopped`].
//!
//! - [`Agent::denials`]: the runs the API's sandbox denies, as they happen (a broadcast fed by
//!   the router the tunnel serves), so the host can tell the user; the audit log stays the record.
//! - Workspace and policy commands ([`Agent::add_workspace`]…) are not the task's business: they
//!   change the store (with audit and activity), which the API reads on every call, so they apply
//!   at once.
//!
//! # Layout
//! - `status`: [`Status`], what front ends render.
//! - `command`: the command queue's messages and their errors.
//! - `lifecycle`: the task's states from launch to stop, and signing out.
//! - `sign_in`: the device flow as a state of the task.
//! - `network`: "redial now" — network changes and [`Agent::reconnect_now`].
//! - `online`: the seam between the supervisor and the relay link (real: session + tunnel).
//! - `supervisor`: the task.
//! - `handle`: [`Agent`].

mod command;
mod handle;
mod lifecycle;
mod network;
pub(crate) mod online;
mod sign_in;
mod status;
mod supervisor;
mod workspaces;

pub use command::CommandError;
pub use handle::{Agent, AgentConfig};
pub use lifecycle::WhenSignedOut;
pub use sign_in::{SignInRequest, SignInStarted};
pub use status::Status;
pub use supervisor::{AgentEnd, Registered};
pub use workspaces::WorkspaceCommandError;

/// How long an idle blocking-pool thread of the runtime hosting the agent lives (tokio's default
/// is 10 s). Longer than any heartbeat period, so the blocking work of each heartbeat (store,
/// status file) reuses a thread instead of starting one and waking later only to end it.
pub const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(600);

/// Wall-clock unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod supervisor_tests;
