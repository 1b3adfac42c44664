//! The `idempotency_keys` table: committed replies kept for 24 h per tenant and key.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

#[derive(Debug, Clone, FromRow)]
pub struct StoredReply {
    pub request_hash: Vec<u8>,
    pub response_status: i32,
    pub response_body: Value,
}

/// Takes a transaction-scoped advisory lock on `(owner, key)`; `false` when another
/// request holds it (that request is still being applied → 409 `in_progress`).
pub async fn try_lock(db: impl PgExecutor<'_>, owner: &str, key: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1 || E'\\n' || $2, 7041))")
        .bind(owner)
        .bind(key)
        .fetch_one(db)
        .await
}

/// The reply stored for this key since `since`, if any.
pub async fn find(
    db: impl PgExecutor<'_>,
    owner: &str,
    key: &str,
    since: DateTime<Utc>,
) -> Result<Option<StoredReply>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE owner = $1 AND key = $2 AND created_at >= $3",
    )
    .bind(owner)
    .bind(key)
    .bind(since)
    .fetch_optional(db)
    .await
}

/// Stores the reply (replacing an expired one under the same key).
pub async fn save(
    db: impl PgExecutor<'_>,
    owner: &str,
    key: &str,
    request_hash: &[u8],
    status: u16,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (owner, key, request_hash, response_status, response_body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (owner, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
             response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
             created_at = EXCLUDED.created_at",
    )
    .bind(owner)
    .bind(key)
    .bind(request_hash)
    .bind(i32::from(status))
    .bind(body)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}
