//! The katachi agent core: everything the agent does, testable without a window.
//!
//! The tray app and the `katachi` CLI are thin shells over this crate.
//!
//! # Layout
//! - [`dirs`]: where the agent keeps its data, config and runtime files (XDG, `KATACHI_HOME`), with private permissions.
//! - [`exit_codes`]: the long-running agent's exit codes for service managers (needs sign-in, revoked, config error…).
//! - [`atomic_file`]: crash-safe replacement of state files (temp, fsync, rename).
//! - [`secret`]: secret byte newtypes that zeroize on drop and never print.
//! - [`fingerprint`]: the machine's hardware identity, and which component changed.
//! - [`vault`]: the keychain secret, the machine key, sealed files and API keys.
//! - [`store`]: the SQLCipher database (chat history, workspace memory, allowed workspaces, outbox, audit log).
//! - [`config`]: the agent's config file (`config.toml`).
//! - [`doctor`]: checks every layer and says which one failed and how to fix it.
//! - [`agent_home`]: opens all of the above together for one agent home.
//! - [`relay_link`]: everything the agent says to its relay: the one TLS configuration (TLS 1.3
//!   only, pinned CA), the HTTPS client, the signed calls (heartbeat, events, unregister) and the
//!   session that keeps a registered agent online (heartbeats, outbox flushes).
//! - [`auth`]: signing in at a relay (RFC 8628 device flow) and the sealed agent credentials.
//! - [`signing`]: signing headers of agent → relay calls and the clock offset from the relay's `Date`.
//! - [`control`]: one agent per user (a lock) and the local control socket of the running agent.
//! - [`agent`]: the agent runtime: one supervisor (session + tunnel) and the [`Agent`] handle.
//! - [`activity`]: activity events through the outbox to the relay, with backoff.
//! - [`ai`]: AI operations: provider clients (streamed), the model's tools over the API, approvals, chat turns.
//! - [`agent_status`]: the running agent's status file (state, last heartbeat, clock offset).
//! - [`api`]: the agent's structured API as one axum `Router` (workspaces, tree, read, write, search, git).
//! - [`sandbox`]: the OS sandbox every command runs in (policy, Linux backend, self-test).
//! - [`protected`]: the protected-path rule set shared by the sandbox and the API.
//! - [`workspace_admin`]: the local user's workspace and sandbox-policy changes (store + audit + activity).

// `unsafe` is denied everywhere (workspace lint) and allowed only in the Linux sandbox backend
#![deny(unsafe_code)]

pub mod activity;
pub mod agent;
pub mod agent_home;
pub mod agent_status;
pub mod ai;
pub mod api;
pub mod atomic_file;
pub mod auth;
pub mod config;
pub mod control;
pub mod dirs;
pub mod doctor;
pub mod exit_codes;
pub mod fingerprint;
pub mod memory;
pub mod protected;
pub mod relay_link;
pub mod sandbox;
pub mod secret;
pub mod signing;
pub mod store;
pub mod tunnel;
pub mod vault;
pub mod workspace_admin;

pub use agent::Agent;
pub use agent_home::AgentHome;
pub use agent_status::{AgentStatus, ConnectionState, StatusFile};
pub use auth::{AgentCredentials, DeviceFlow};
pub use config::Config;
pub use dirs::KatachiDirs;
pub use fingerprint::Fingerprint;
pub use relay_link::calls::{RelayClient, RelayError};
pub use relay_link::https::RelayUrl;
pub use relay_link::session::{RelaySession, SessionEnd, SessionOptions, STATUS_FILE_REFRESH};
pub use secret::SecretBytes;
pub use store::Store;
pub use vault::MachineKey;
