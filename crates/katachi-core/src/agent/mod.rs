//! The agent runtime: one supervisor task that keeps a registered agent online and one handle,
//! [`Agent`], that every front end (`katachi start`, the tray, the tests) drives the same way.
//!
//! # Contract
//! - [`Agent`] is `Clone + Send + Sync`. [`Agent::status`] gives a `watch` receiver of the one
//!   [`Status`]; commands ([`Agent::pause`], [`Agent::resume`], [`Agent::reconnect_now`],
//!   [`Agent::stop`]) go through an mpsc queue and each gets a typed answer on a oneshot.
//! - The supervisor owns the relay session (heartbeats, outbox) and the tunnel (dial + reconnect)
//!   and runs them as one unit: when the tunnel stops for good (the relay refuses the agent, or the
//!   set-up cannot work), the session is stopped too — heartbeats end, the relay stops showing the
//!   agent online — and the end is published in [`Status`] and returned by the supervisor's task.
//!   When the session ends (revoked, forgotten), the tunnel is dropped. Nothing waits in silence.
//! - Pause = tunnel down and heartbeats stopped, until [`Agent::resume`] or the pause's end.
//! - [`Agent::stop`] stops the session cleanly (its last status says "stopped"), drops the
//!   tunnel, and ends the task with [`AgentEnd::Stopped`].
//!
//! # Not yet here
//! Signing in (the device flow), signing out and workspace commands are still driven by the CLI
//! (`katachi start`, `katachi workspace`); [`Status`] already has the states they will publish.
//!
//! # Layout
//! - `status`: [`Status`], what front ends render.
//! - `command`: the command queue's messages and their errors.
//! - `network`: "redial now" — network changes and [`Agent::reconnect_now`].
//! - `online`: the seam between the supervisor and the relay link (real: session + tunnel).
//! - `supervisor`: the task.
//! - `handle`: [`Agent`].

mod command;
mod handle;
mod network;
pub(crate) mod online;
mod status;
mod supervisor;

pub use command::CommandError;
pub use handle::Agent;
pub use online::RelayLink;
pub use status::Status;
pub use supervisor::AgentEnd;

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod supervisor_tests;
