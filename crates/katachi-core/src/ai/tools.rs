//! The model's tools (filled by the tools work).
