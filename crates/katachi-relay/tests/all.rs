//! Integration tests of the relay over real sockets: TLS 1.3, device flow, signed agent calls, forms,
//! and the store on SQLite and on a real PostgreSQL server (`scripts/with-postgres.sh`, run by make test).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod suite;
