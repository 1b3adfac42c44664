//! The `tenants` table: one row per 3Dolphins owner with its endpoint settings.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

/// A tenant as stored. `settings` is the public `{thirdParty, dolphins, delivery}`
/// document; the two secrets live in their own columns.
#[derive(Debug, Clone, FromRow)]
pub struct TenantRow {
    pub owner: String,
    pub name: String,
    pub timezone: String,
    pub settings: Value,
    pub signing_secret: String,
    pub previous_signing_secret: Option<String>,
    pub dolphins_password: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "owner, name, timezone, settings, signing_secret, previous_signing_secret, dolphins_password, created_at,
     updated_at, deleted_at";

pub struct NewTenant<'a> {
    pub owner: &'a str,
    pub name: &'a str,
    pub timezone: &'a str,
    pub settings: &'a Value,
    pub signing_secret: &'a str,
    pub dolphins_password: Option<&'a str>,
}

/// Inserts a tenant; `false` when the owner exists already (deleted ones included:
/// their data stays, so the owner cannot be reused).
pub async fn insert(db: impl PgExecutor<'_>, t: NewTenant<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO tenants (owner, name, timezone, settings, signing_secret, dolphins_password)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner) DO NOTHING",
    )
    .bind(t.owner)
    .bind(t.name)
    .bind(t.timezone)
    .bind(t.settings)
    .bind(t.signing_secret)
    .bind(t.dolphins_password)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn get(db: impl PgExecutor<'_>, owner: &str) -> Result<Option<TenantRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants WHERE owner = $1")).bind(owner).fetch_optional(db).await
}

/// Locks a live tenant for a read-modify-write (the admin PATCH).
pub async fn get_for_update(db: impl PgExecutor<'_>, owner: &str) -> Result<Option<TenantRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants WHERE owner = $1 AND deleted_at IS NULL FOR UPDATE"))
        .bind(owner)
        .fetch_optional(db)
        .await
}

/// Every tenant, oldest first, deleted ones included (they keep their data).
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<TenantRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants ORDER BY created_at, owner")).fetch_all(db).await
}

pub async fn update(
    db: impl PgExecutor<'_>,
    owner: &str,
    name: &str,
    timezone: &str,
    settings: &Value,
    dolphins_password: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tenants SET name = $2, timezone = $3, settings = $4, dolphins_password = $5, updated_at = now()
         WHERE owner = $1",
    )
    .bind(owner)
    .bind(name)
    .bind(timezone)
    .bind(settings)
    .bind(dolphins_password)
    .execute(db)
    .await?;
    Ok(())
}

/// Brings a deleted tenant back (the demo reuses its tenant across runs).
pub async fn undelete(db: impl PgExecutor<'_>, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET deleted_at = NULL WHERE owner = $1").bind(owner).execute(db).await?;
    Ok(())
}

/// Marks a tenant deleted; `false` if it was not live.
pub async fn mark_deleted(db: impl PgExecutor<'_>, owner: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenants SET deleted_at = now(), updated_at = now() WHERE owner = $1 AND deleted_at IS NULL",
    )
    .bind(owner)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the stored secrets (sealing them after a key was set); `None` keeps one as it is.
pub async fn set_secrets(
    db: impl PgExecutor<'_>,
    owner: &str,
    signing_secret: Option<&str>,
    previous_signing_secret: Option<&str>,
    dolphins_password: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tenants SET signing_secret = COALESCE($2, signing_secret),
                            previous_signing_secret = COALESCE($3, previous_signing_secret),
                            dolphins_password = COALESCE($4, dolphins_password)
         WHERE owner = $1",
    )
    .bind(owner)
    .bind(signing_secret)
    .bind(previous_signing_secret)
    .bind(dolphins_password)
    .execute(db)
    .await?;
    Ok(())
}

/// Makes `new_secret` the signing secret and keeps the current one as the previous
/// (still signing) secret. Answers whether the tenant exists and is live.
pub async fn rotate_signing_secret(
    db: impl PgExecutor<'_>,
    owner: &str,
    new_secret: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenants SET previous_signing_secret = signing_secret, signing_secret = $2, updated_at = now()
         WHERE owner = $1 AND deleted_at IS NULL",
    )
    .bind(owner)
    .bind(new_secret)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stops signing with the previous secret. Answers whether there was one.
pub async fn retire_previous_signing_secret(db: impl PgExecutor<'_>, owner: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenants SET previous_signing_secret = NULL, updated_at = now()
         WHERE owner = $1 AND deleted_at IS NULL AND previous_signing_secret IS NOT NULL",
    )
    .bind(owner)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
