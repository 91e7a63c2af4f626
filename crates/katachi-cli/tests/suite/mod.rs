mod audit;
mod doctor;
mod keychain_unavailable;
mod relay_agent;
mod relay_client;
pub mod relay_support;
pub mod support;
mod tunnel_status;
mod workspace;
