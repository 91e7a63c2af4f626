//! Integration tests of the `katachi` binary: real processes, the real keychain (inside the D-Bus
//! session that `make test` starts), and sessions without one.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod suite;
