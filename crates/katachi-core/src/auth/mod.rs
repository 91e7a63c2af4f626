//! Signing the agent in at a relay (RFC 8628 device authorization) and keeping what it receives.
//!
//! ```text
//! DeviceFlow::start ──POST /oauth/device/code──▶ PendingSignIn (user code, verification URL)
//!        │ the user approves in a browser
//! DeviceFlow::wait ──POST /oauth/token (polls)──▶ AgentCredentials ──seal──▶ credentials/agent.sealed
//! ```
//!
//! # Layout
//! - `device_flow`: the device flow client over the `oauth2` crate ([`DeviceFlow`], [`PendingSignIn`]).
//! - `credentials`: [`AgentCredentials`] and their sealed file.
//!
//! # Security
//! The access token and the signing secret are [`crate::SecretBytes`]: never printed, never in an
//! error message, zeroized on drop, and written only sealed with the machine key
//! ([`crate::AgentHome::agent_credentials`]). A credential already obtained is never dropped because
//! saving it failed: [`AgentCredentials::save`] borrows it, so the caller keeps it and retries.

mod credentials;
mod device_flow;

pub use credentials::{AgentCredentials, CredentialsError};
pub use device_flow::{this_device, AuthError, DeviceFlow, PendingSignIn, AGENT_CLIENT_ID};
