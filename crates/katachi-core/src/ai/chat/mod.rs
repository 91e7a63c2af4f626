//! Chat sessions: a user's conversation with the model about one workspace, kept in the store.
//!
//! # Layout
//! - `history`: stored messages as the model's conversation (and the payload they carry).
//! - `prompt`: the system prompt with the workspace memory.
//! - `events`: the lines a turn streams to the browser.
//! - `export`: a session as Markdown.

pub mod events;
pub mod export;
pub mod history;
pub mod prompt;

pub use events::{ChatEvent, TurnEnd};
