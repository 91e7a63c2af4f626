//! Secret bytes: zeroized on drop, never printed, never serialised, never cloned implicitly.
//!
//! Exposing the bytes is an explicit call ([`SecretBytes::expose`]) whose call site says why.

use zeroize::Zeroizing;

/// Owned secret bytes (a key, a token, a keychain secret).
///
/// # Security
/// No `Debug`, `Clone` or `Serialize`: a secret cannot end up in a log line or a JSON reply by accident.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes that are secret; the caller's copy should be dropped or zeroized.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Fresh random bytes from the OS CSPRNG.
    pub fn random(len: usize) -> Self {
        use rand::RngCore;
        let mut bytes = vec![0u8; len];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::new(bytes)
    }

    /// The secret bytes. Call sites say why they need them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An explicit copy, for the rare place that must hand a secret on while keeping it.
    pub fn duplicate(&self) -> Self {
        Self::new(self.0.to_vec())
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_bytes() {
        let s = SecretBytes::new(b"hunter2-password".to_vec());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("16 bytes"));
    }

    #[test]
    fn random_secrets_differ() {
        let a = SecretBytes::random(32);
        let b = SecretBytes::random(32);
        assert_eq!(a.len(), 32);
        assert_ne!(a.expose(), b.expose());
    }
}
