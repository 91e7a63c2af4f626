//! The one shared test kit of katachi: servers and helpers that several crates' tests use
//! (katachi-core's integration tests and the end-to-end crate `tests/`).
//!
//! Nothing here is shipped: it is a dev-dependency only. Every fake speaks the real protocol over
//! real sockets, so the production client code path is exactly the one used with real services.
//!
//! # Layout
//! - `fake_provider`: a local AI provider (OpenAI Chat Completions and Anthropic Messages, streamed
//!   over SSE) replying from a script of provider-neutral answers and errors, recording requests.

pub mod fake_provider;

pub use fake_provider::{
    Ending, FakeAnswer, FakeError, FakeProvider, FakeReply, FakeStop, FakeToolCall, RecordedRequest,
};
