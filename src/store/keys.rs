//! The `api_keys` table: credentials stored as SHA-256 hashes.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

/// A key's public facts (never its hash).
#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub id: Uuid,
    pub kind: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a presented credential resolves to, with its tenant's settings so a webhook
/// needs one query to authenticate and to know where to forward.
#[derive(Debug, Clone, FromRow)]
pub struct CredentialRow {
    pub owner: String,
    pub key_id: Uuid,
    pub kind: String,
    pub key_hash: Vec<u8>,
    pub revoked: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub timezone: String,
    pub settings: serde_json::Value,
    pub tenant_deleted: bool,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    owner: &str,
    id: Uuid,
    kind: &str,
    prefix: &str,
    key_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO api_keys (owner, id, kind, prefix, key_hash) VALUES ($1, $2, $3, $4, $5)")
        .bind(owner)
        .bind(id)
        .bind(kind)
        .bind(prefix)
        .bind(key_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Finds the key with this hash (revoked ones too, so the caller can say why it fails).
pub async fn find_by_hash(db: impl PgExecutor<'_>, key_hash: &[u8]) -> Result<Option<CredentialRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.owner, k.id AS key_id, k.kind, k.key_hash, k.revoked_at IS NOT NULL AS revoked, k.last_used_at,
                t.timezone, t.settings, t.deleted_at IS NOT NULL AS tenant_deleted
         FROM api_keys k JOIN tenants t ON t.owner = k.owner
         WHERE k.key_hash = $1",
    )
    .bind(key_hash)
    .fetch_optional(db)
    .await
}

/// The same facts for a key named by id (a console session holds the id, never the key).
pub async fn find_by_id(db: impl PgExecutor<'_>, owner: &str, id: Uuid) -> Result<Option<CredentialRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.owner, k.id AS key_id, k.kind, k.key_hash, k.revoked_at IS NOT NULL AS revoked, k.last_used_at,
                t.timezone, t.settings, t.deleted_at IS NOT NULL AS tenant_deleted
         FROM api_keys k JOIN tenants t ON t.owner = k.owner
         WHERE k.owner = $1 AND k.id = $2",
    )
    .bind(owner)
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Records use, at most once a minute per key so a busy key does not write on every request.
pub async fn touch(db: impl PgExecutor<'_>, owner: &str, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = now()
         WHERE owner = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(owner)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn list(db: impl PgExecutor<'_>, owner: &str) -> Result<Vec<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, prefix, created_at, last_used_at, revoked_at FROM api_keys WHERE owner = $1 ORDER BY created_at, id",
    )
    .bind(owner)
    .fetch_all(db)
    .await
}

/// Revokes one key; `false` when it does not exist for this owner or was revoked already.
pub async fn revoke(db: impl PgExecutor<'_>, owner: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE owner = $1 AND id = $2 AND revoked_at IS NULL")
            .bind(owner)
            .bind(id)
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether a key exists for this owner (revoked or not).
pub async fn exists(db: impl PgExecutor<'_>, owner: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE owner = $1 AND id = $2)")
        .bind(owner)
        .bind(id)
        .fetch_one(db)
        .await
}

pub async fn revoke_all(db: impl PgExecutor<'_>, owner: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE owner = $1 AND revoked_at IS NULL")
        .bind(owner)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
