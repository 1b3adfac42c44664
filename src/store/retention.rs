//! Housekeeping SQL: purging old message bodies per tenant retention, forgetting expired
//! idempotency keys. Each call does one bounded batch so no statement runs long.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Erases bodies, media links and raw payloads of up to `batch` messages of `owner`
/// committed before `cutoff`, appending one `purged` event per ticket touched. Answers
/// how many messages were erased.
pub async fn purge_messages(
    db: impl PgExecutor<'_>,
    owner: &str,
    cutoff: DateTime<Utc>,
    batch: i64,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "WITH picked AS (
             SELECT id FROM messages
             WHERE owner = $1 AND at < $2 AND (message IS NOT NULL OR media_link IS NOT NULL OR raw <> '{}'::jsonb)
             LIMIT $3),
         erased AS (
             UPDATE messages m SET message = NULL, media_link = NULL, raw = '{}'::jsonb
             FROM picked WHERE m.owner = $1 AND m.id = picked.id
             RETURNING m.ticket_number),
         audit AS (
             INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
             SELECT $1, ticket_number, 'purged', $4, 'bridge',
                    jsonb_build_object('reason', 'retention', 'messages', count(*))
             FROM erased GROUP BY ticket_number
             RETURNING 1)
         SELECT count(*) FROM erased",
    )
    .bind(owner)
    .bind(cutoff)
    .bind(batch)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Empties the stored bodies of finished deliveries (delivered, dead, cancelled) created
/// before `cutoff`: they repeat the purged messages. Waiting ones keep theirs.
pub async fn purge_delivery_bodies(
    db: impl PgExecutor<'_>,
    owner: &str,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE deliveries SET body = '' WHERE owner = $1 AND id IN (
             SELECT id FROM deliveries
             WHERE owner = $1 AND created_at < $2 AND status IN ('delivered', 'dead', 'cancelled') AND body <> ''
             LIMIT $3)",
    )
    .bind(owner)
    .bind(cutoff)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Forgets idempotency replies older than `before`.
pub async fn expire_idempotency_keys(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before).execute(db).await?;
    Ok(done.rows_affected())
}
