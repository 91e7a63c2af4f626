//! The model providers (filled by the provider work).
