//! What sign-in remembers beyond the account row: browsers known to an account, and e-mail
//! verification links (single use, expiring, stored by hash).

use sqlx::Row;

use super::{Result, Store};

impl Store {
    /// Remembers a browser (by hash of its cookie token) as one where `user_id` signed in.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn add_known_browser(
        &self,
        token_hash: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("INSERT INTO known_browsers (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether the browser with this token hash is a live known browser of `user_id`.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn is_known_browser(
        &self,
        token_hash: &str,
        user_id: &str,
        now: i64,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM known_browsers WHERE token_hash = $1 AND user_id = $2 AND expires_at > $3",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Stores a verification link's token hash for `user_id`, sent to `email`.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn create_email_verification(
        &self,
        token_hash: &str,
        user_id: &str,
        email: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("INSERT INTO email_verifications (token_hash, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash)
            .bind(user_id)
            .bind(email)
            .bind(now)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The address a verification link was sent to, while the link is live (unused, unexpired);
    /// reads only, so opening the link's page uses nothing up.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn live_email_verification(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT email FROM email_verifications WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| r.try_get("email").map_err(Into::into))
            .transpose()
    }

    /// Uses a verification link (single use): when live and sent to the account's current address,
    /// marks the address verified and returns the user id.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn consume_email_verification(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let found = {
            let _w = self.write_guard().await;
            let row = sqlx::query(
                "SELECT user_id, email, expires_at FROM email_verifications WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
            let deleted = sqlx::query("DELETE FROM email_verifications WHERE token_hash = $1")
                .bind(token_hash)
                .execute(self.pool())
                .await?;
            match row {
                // Only the request that deleted the row goes on: single use under races.
                Some(r)
                    if deleted.rows_affected() == 1 && r.try_get::<i64, _>("expires_at")? > now =>
                {
                    Some((
                        r.try_get::<String, _>("user_id")?,
                        r.try_get::<String, _>("email")?,
                    ))
                }
                _ => None,
            }
        };
        let Some((user_id, email)) = found else {
            return Ok(None);
        };
        let current = self.user_by_id(&user_id).await?;
        if current.and_then(|u| u.email).as_deref() != Some(email.as_str()) {
            return Ok(None);
        }
        self.mark_email_verified(&user_id, now).await?;
        Ok(Some(user_id))
    }

    /// Marks the account's address verified (what a used verification link does).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn mark_email_verified(&self, user_id: &str, now: i64) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email_verified_at = 0",
        )
        .bind(now.max(1))
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
