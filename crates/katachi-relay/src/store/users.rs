//! Accounts, sign-in identities, sessions, OAuth states and rate-limit buckets.

use sqlx::Row;

use super::{Result, Store};

/// An account.
#[derive(Debug, Clone)]
pub struct User {
    /// Id.
    pub id: String,
    /// E-mail (password accounts and providers that share one).
    pub email: Option<String>,
    /// Argon2id PHC string; `None` for provider-only accounts.
    pub password_hash: Option<String>,
    /// Consecutive failed password sign-ins.
    pub failed_logins: i64,
    /// Until then (unix seconds) a password is checked only from a browser known to the account.
    pub locked_until: i64,
    /// When the address was verified (unix seconds); 0: not verified.
    pub email_verified_at: i64,
}

impl User {
    /// Whether this account may approve devices: password accounts once their address is verified;
    /// provider accounts (no password) always, their provider vouches for them.
    pub fn may_approve_devices(&self) -> bool {
        self.password_hash.is_none() || self.email_verified_at > 0
    }
}

/// Outcome of counting a hit against a rate-limit bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// Under the limit.
    Allowed,
    /// Over it; retry after this many seconds.
    Limited {
        /// Seconds until the window resets.
        retry_after: i64,
    },
}

fn user_from(row: &sqlx::any::AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        failed_logins: row.try_get("failed_logins")?,
        locked_until: row.try_get("locked_until")?,
        email_verified_at: row.try_get("email_verified_at")?,
    })
}

macro_rules! user_columns {
    () => {
        "id, email, password_hash, failed_logins, locked_until, email_verified_at"
    };
}

impl Store {
    /// Creates a password account; `Ok(None)` when the e-mail is taken.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Option<User>> {
        let _w = self.write_guard().await;
        let id = crate::random_hex(16);
        let done = sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(email)
        .bind(password_hash)
        .bind(now)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.user_by_id(&id).await
    }

    /// The account with this e-mail.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from).transpose()
    }

    /// The account with this id.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from).transpose()
    }

    /// Records a failed password sign-in; from `free_failures` on, the account waits
    /// `delay(failures)` seconds before the next password is even checked (from an unknown browser).
    /// Returns the new failure count.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn record_failed_login(
        &self,
        user_id: &str,
        now: i64,
        free_failures: i64,
        delay: impl Fn(i64) -> i64,
    ) -> Result<i64> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1")
            .bind(user_id)
            .execute(self.pool())
            .await?;
        let row = sqlx::query("SELECT failed_logins FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(self.pool())
            .await?;
        let failures: i64 = row.try_get("failed_logins")?;
        if failures >= free_failures {
            sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2")
                .bind(now.saturating_add(delay(failures)))
                .bind(user_id)
                .execute(self.pool())
                .await?;
        }
        Ok(failures)
    }

    /// Clears the failure count after a successful sign-in.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn reset_failed_logins(&self, user_id: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = $1")
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The user linked to a provider identity, creating the account (and link) on first sign-in.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn user_for_identity(
        &self,
        provider: &str,
        subject: &str,
        email: Option<&str>,
        now: i64,
    ) -> Result<User> {
        let _w = self.write_guard().await;
        let linked =
            sqlx::query("SELECT user_id FROM identities WHERE provider = $1 AND subject = $2")
                .bind(provider)
                .bind(subject)
                .fetch_optional(self.pool())
                .await?;
        if let Some(row) = linked {
            let id: String = row.try_get("user_id")?;
            if let Some(u) = self.user_by_id(&id).await? {
                return Ok(u);
            }
        }
        // A provider identity never takes over an existing password account by e-mail: that would
        // let whoever controls the provider account sign in as the password user.
        let id = crate::random_hex(16);
        let email_free = match email {
            Some(e) => self.user_by_email(e).await?.is_none(),
            None => false,
        };
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, NULL, $3)",
        )
        .bind(&id)
        .bind(if email_free { email } else { None })
        .bind(now)
        .execute(self.pool())
        .await?;
        sqlx::query("INSERT INTO identities (provider, subject, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(provider)
            .bind(subject)
            .bind(&id)
            .execute(self.pool())
            .await?;
        // If another request linked the identity first, use that account.
        let row =
            sqlx::query("SELECT user_id FROM identities WHERE provider = $1 AND subject = $2")
                .bind(provider)
                .bind(subject)
                .fetch_one(self.pool())
                .await?;
        let winner: String = row.try_get("user_id")?;
        Ok(self.user_by_id(&winner).await?.unwrap_or(User {
            id: winner,
            email: None,
            password_hash: None,
            failed_logins: 0,
            locked_until: 0,
            email_verified_at: 0,
        }))
    }

    /// Stores a session (by hash of its cookie value).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The user of a live session.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn session_user(&self, id_hash: &str, now: i64) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT user_id FROM sessions WHERE id_hash = $1 AND expires_at > $2")
                .bind(id_hash)
                .bind(now)
                .fetch_optional(self.pool())
                .await?;
        match row {
            Some(r) => self.user_by_id(&r.try_get::<String, _>("user_id")?).await,
            None => Ok(None),
        }
    }

    /// Ends a session.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stores an OAuth authorization-code state with its PKCE verifier.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn put_oauth_state(
        &self,
        state: &str,
        provider: &str,
        verifier: &str,
        return_to: &str,
        expires_at: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("INSERT INTO oauth_states (state, provider, pkce_verifier, return_to, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(state)
            .bind(provider)
            .bind(verifier)
            .bind(return_to)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Takes (single use) an OAuth state: `(provider, verifier, return_to)`.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn take_oauth_state(
        &self,
        state: &str,
        now: i64,
    ) -> Result<Option<(String, String, String)>> {
        let _w = self.write_guard().await;
        let row = sqlx::query("SELECT provider, pkce_verifier, return_to, expires_at FROM oauth_states WHERE state = $1")
            .bind(state)
            .fetch_optional(self.pool())
            .await?;
        let deleted = sqlx::query("DELETE FROM oauth_states WHERE state = $1")
            .bind(state)
            .execute(self.pool())
            .await?;
        match row {
            Some(r) if deleted.rows_affected() == 1 && r.try_get::<i64, _>("expires_at")? > now => {
                Ok(Some((
                    r.try_get("provider")?,
                    r.try_get("pkce_verifier")?,
                    r.try_get("return_to")?,
                )))
            }
            _ => Ok(None),
        }
    }

    /// Counts a hit in a fixed-window bucket (shared by all relay instances).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn hit_rate_limit(
        &self,
        bucket: &str,
        limit: i64,
        window_secs: i64,
        now: i64,
    ) -> Result<RateLimit> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO rate_limits (bucket, hits, window_start) VALUES ($1, 1, $2)
             ON CONFLICT (bucket) DO UPDATE SET
               hits = CASE WHEN rate_limits.window_start <= $3 THEN 1 ELSE rate_limits.hits + 1 END,
               window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 ELSE rate_limits.window_start END",
        )
        .bind(bucket)
        .bind(now)
        .bind(now - window_secs)
        .execute(self.pool())
        .await?;
        let row = sqlx::query("SELECT hits, window_start FROM rate_limits WHERE bucket = $1")
            .bind(bucket)
            .fetch_one(self.pool())
            .await?;
        let hits: i64 = row.try_get("hits")?;
        let start: i64 = row.try_get("window_start")?;
        Ok(if hits > limit {
            RateLimit::Limited {
                retry_after: (start + window_secs - now).max(1),
            }
        } else {
            RateLimit::Allowed
        })
    }

    /// Whether a bucket is already over `limit` in its current window, without counting a hit.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn peek_rate_limit(
        &self,
        bucket: &str,
        limit: i64,
        window_secs: i64,
        now: i64,
    ) -> Result<RateLimit> {
        let row = sqlx::query("SELECT hits, window_start FROM rate_limits WHERE bucket = $1")
            .bind(bucket)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            return Ok(RateLimit::Allowed);
        };
        let hits: i64 = row.try_get("hits")?;
        let start: i64 = row.try_get("window_start")?;
        Ok(if start > now - window_secs && hits >= limit {
            RateLimit::Limited {
                retry_after: (start + window_secs - now).max(1),
            }
        } else {
            RateLimit::Allowed
        })
    }
}
