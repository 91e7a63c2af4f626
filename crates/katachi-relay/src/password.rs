//! Password hashing (argon2id) behind a bounded number of permits.
//!
//! # Security
//! - Each argon2id computation takes ~19 MiB of memory and a core for tens of milliseconds. A flood
//!   of sign-ups or sign-ins must not run them all at once: at most `permits` (default: the number
//!   of cores) run at a time, the rest wait their turn. The permit travels into the blocking task,
//!   so a client that hangs up does not free its permit before its hash is done.
//! - Unknown accounts verify against a dummy hash of a random password: same work, same time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Errors of password hashing.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// argon2 refused the input or its parameters (a bug, or an absurdly long password).
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
    /// The hashing task ended before finishing (the relay is shutting down).
    #[error("password hashing was interrupted")]
    Interrupted,
}

/// Hashes and verifies passwords, never more than `permits` at a time.
#[derive(Debug)]
pub struct PasswordHashing {
    /// One permit per argon2 computation running.
    permits: Arc<Semaphore>,
    /// A hash of a random password: unknown accounts verify against it.
    dummy_hash: String,
    /// Computations running now.
    running: Arc<AtomicUsize>,
    /// The most computations that ever ran at once (what the bound guarantees, observable).
    peak: Arc<AtomicUsize>,
}

/// Hashes a password with argon2id (default parameters: m=19 MiB, t=2, p=1), unbounded: for
/// callers outside the request path (start-up).
///
/// # Errors
/// [`PasswordError::Hash`].
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

impl PasswordHashing {
    /// At most `permits` (at least one) computations at a time.
    ///
    /// # Errors
    /// [`PasswordError::Hash`] when the dummy hash cannot be made.
    pub fn new(permits: usize) -> Result<Self, PasswordError> {
        Ok(Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            dummy_hash: hash_password(&crate::random_hex(16))?,
            running: Arc::default(),
            peak: Arc::default(),
        })
    }

    /// One permit per core.
    ///
    /// # Errors
    /// As [`PasswordHashing::new`].
    pub fn per_core() -> Result<Self, PasswordError> {
        Self::new(std::thread::available_parallelism().map_or(2, usize::from))
    }

    /// The most argon2 computations that ran at the same time so far.
    pub fn peak_concurrent(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Runs `work` on the blocking pool once a permit is free, holding the permit until it ends.
    async fn bounded<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Interrupted)?;
        let (running, peak) = (Arc::clone(&self.running), Arc::clone(&self.peak));
        tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let out = work();
            running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            out
        })
        .await
        .map_err(|_| PasswordError::Interrupted)
    }

    /// Hashes `password` for storage.
    ///
    /// # Errors
    /// [`PasswordError`].
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let password = Zeroizing::new(password);
        self.bounded(move || hash_password(&password)).await?
    }

    /// Whether `password` matches `hash`; `None` (no account, or no password on it) verifies
    /// against the dummy hash and is always false, after the same work.
    pub async fn verify(&self, hash: Option<String>, password: String) -> bool {
        let password = Zeroizing::new(password);
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = self
            .bounded(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        ok && real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_there_are_permits() {
        let hashing = Arc::new(PasswordHashing::new(2).unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let hashing = Arc::clone(&hashing);
                tokio::spawn(async move { hashing.verify(None, format!("guess {i}")).await })
            })
            .collect();
        for t in tasks {
            assert!(!t.await.unwrap(), "an unknown account never verifies");
        }
        let peak = hashing.peak_concurrent();
        assert!((1..=2).contains(&peak), "{peak} hashes ran at once");
    }

    #[tokio::test]
    async fn the_dummy_hash_never_verifies_and_real_hashes_do() {
        let hashing = PasswordHashing::new(1).unwrap();
        let h = hashing.hash("a long password".into()).await.unwrap();
        assert!(
            hashing
                .verify(Some(h.clone()), "a long password".into())
                .await
        );
        assert!(!hashing.verify(Some(h), "another".into()).await);
        assert!(!hashing.verify(None, "a long password".into()).await);
    }
}
