mod another_machine;
mod crash_and_concurrency;
mod keychain;
mod sealed_files;
mod store_at_rest;
pub mod support;
