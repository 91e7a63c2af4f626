//! Integration tests of katachi-core against the real OS keychain and real SQLCipher.
//! Run inside `scripts/with-session.sh` (make test does) for a D-Bus session with gnome-keyring.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod suite;
