//! RFC 8628 device codes: created by an agent, approved or denied by a signed-in user, exchanged
//! once for the agent's credentials.

use sqlx::Row;

use super::{Result, Store};

/// Where a device code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Waiting for the user.
    Pending,
    /// Approved; the next poll gets the credentials.
    Approved,
    /// Denied by the user.
    Denied,
    /// Already exchanged (single use).
    Used,
}

impl DeviceStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Used => "used",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "approved" => DeviceStatus::Approved,
            "denied" => DeviceStatus::Denied,
            "used" => DeviceStatus::Used,
            _ => DeviceStatus::Pending,
        }
    }
}

/// A device code row.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    /// SHA-256 of the device code (the code itself is never stored).
    pub device_code_hash: String,
    /// The user code (normalised, 8 chars).
    pub user_code: String,
    /// Name the agent gave.
    pub device_name: String,
    /// OS the agent gave.
    pub device_os: String,
    /// IP the request came from.
    pub device_ip: String,
    /// Expiry (unix seconds).
    pub expires_at: i64,
    /// Current minimum poll interval.
    pub poll_interval: i64,
    /// Last poll (unix seconds).
    pub last_poll_at: i64,
    /// Status.
    pub status: DeviceStatus,
    /// Approving user.
    pub user_id: Option<String>,
}

macro_rules! device_columns {
    () => {
        "device_code_hash, user_code, device_name, device_os, device_ip, expires_at, poll_interval, last_poll_at, status, user_id"
    };
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<DeviceCode> {
    Ok(DeviceCode {
        device_code_hash: r.try_get("device_code_hash")?,
        user_code: r.try_get("user_code")?,
        device_name: r.try_get("device_name")?,
        device_os: r.try_get("device_os")?,
        device_ip: r.try_get("device_ip")?,
        expires_at: r.try_get("expires_at")?,
        poll_interval: r.try_get("poll_interval")?,
        last_poll_at: r.try_get("last_poll_at")?,
        status: DeviceStatus::parse(&r.try_get::<String, _>("status")?),
        user_id: r.try_get("user_id")?,
    })
}

impl Store {
    /// Stores a new device code; `Ok(false)` when the user code collides (caller draws another).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn create_device_code(&self, d: &DeviceCode, now: i64) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "INSERT INTO device_codes (device_code_hash, user_code, device_name, device_os, device_ip, created_at, expires_at, poll_interval, last_poll_at, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 'pending') ON CONFLICT DO NOTHING",
        )
        .bind(&d.device_code_hash)
        .bind(&d.user_code)
        .bind(&d.device_name)
        .bind(&d.device_os)
        .bind(&d.device_ip)
        .bind(now)
        .bind(d.expires_at)
        .bind(d.poll_interval)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The device code with this hash.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn device_by_hash(&self, hash: &str) -> Result<Option<DeviceCode>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM device_codes WHERE device_code_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The device code with this (normalised) user code.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceCode>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM device_codes WHERE user_code = $1"
        ))
        .bind(user_code)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records a poll and, when too early, raises the interval (RFC 8628 `slow_down`: +5 s).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn record_poll(&self, hash: &str, now: i64, new_interval: i64) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE device_codes SET last_poll_at = $1, poll_interval = $2 WHERE device_code_hash = $3")
            .bind(now)
            .bind(new_interval)
            .bind(hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Approves or denies a pending code; `Ok(false)` when it is no longer pending.
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn decide_device(
        &self,
        user_code: &str,
        user_id: &str,
        approve: bool,
        now: i64,
    ) -> Result<bool> {
        let _w = self.write_guard().await;
        let status = if approve {
            DeviceStatus::Approved
        } else {
            DeviceStatus::Denied
        };
        let done = sqlx::query(
            "UPDATE device_codes SET status = $1, user_id = $2 WHERE user_code = $3 AND status = 'pending' AND expires_at > $4",
        )
        .bind(status.as_str())
        .bind(user_id)
        .bind(user_code)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks an approved code used; `Ok(false)` when another poll got there first (single use).
    ///
    /// # Errors
    /// [`super::StoreError::Query`].
    pub async fn consume_device(&self, hash: &str) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query("UPDATE device_codes SET status = 'used' WHERE device_code_hash = $1 AND status = 'approved'")
            .bind(hash)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
