//! Client side of signed agent → relay calls: the signing headers of each request, and the clock
//! offset that keeps their timestamps inside the relay's ±30 s window.
//!
//! The canonical string, header names and the HMAC itself live once, in [`katachi_proto::signing`],
//! shared with the relay's verifier; this module only decides *what* to sign and *when* it is.
//!
//! # Layout
//! - `clock`: the [`Clock`] seam (system clock, a skewed one for tests) and the [`ClockOffset`]
//!   learned from the relay's HTTP `Date` header.
//! - `signer`: [`RequestSigner`], which turns (method, path, body) into [`SignedHeaders`].
//!
//! # Security
//! The signing secret is a [`crate::SecretBytes`] held only by the signer; it never appears in a
//! header, a log line or a `Debug` output. Each request gets a fresh 128-bit nonce from the OS RNG,
//! so the relay can refuse a replay.

mod clock;
mod signer;

pub use clock::{offset_from_date_header, Clock, ClockOffset, SkewedClock, SystemClock};
pub use signer::{RequestSigner, SignedHeaders};
