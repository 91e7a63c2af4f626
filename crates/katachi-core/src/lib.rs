//! The katachi agent core: everything the agent does, testable without a window.
//!
//! The tray app and the `katachi` CLI are thin shells over this crate.
//!
//! # Layout
//! - [`dirs`]: where the agent keeps its data and config (XDG, `KATACHI_HOME`), with private permissions.
//! - [`atomic_file`]: crash-safe replacement of state files (temp, fsync, rename).
//! - [`secret`]: secret byte newtypes that zeroize on drop and never print.
//! - [`fingerprint`]: the machine's hardware identity, and which component changed.
//! - [`vault`]: the keychain secret, the machine key, sealed files and API keys.
//! - [`store`]: the SQLCipher database (chat history, workspace memory, allowed workspaces, outbox, audit log).
//! - [`config`]: the agent's config file (`config.toml`).
//! - [`doctor`]: checks every layer and says which one failed and how to fix it.
//! - [`agent_home`]: opens all of the above together for one agent home.

#![forbid(unsafe_code)]

pub mod agent_home;
pub mod atomic_file;
pub mod config;
pub mod dirs;
pub mod doctor;
pub mod fingerprint;
pub mod secret;
pub mod store;
pub mod vault;

pub use agent_home::AgentHome;
pub use config::Config;
pub use dirs::KatachiDirs;
pub use fingerprint::Fingerprint;
pub use secret::SecretBytes;
pub use store::Store;
pub use vault::MachineKey;
