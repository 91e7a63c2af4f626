mod doctor;
mod keychain_unavailable;
pub mod support;
mod workspace;
