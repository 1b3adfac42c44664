//! The `contacts` table: Contact API documents cached per tenant, and data-protection erasure.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

#[derive(Debug, Clone, FromRow)]
pub struct CachedContact {
    pub document: Value,
    pub fetched_at: DateTime<Utc>,
}

/// Whether any of the tenant's tickets names this contact: the bridge answers only for
/// those, so it cannot be used to enumerate 3Dolphins' contacts.
pub async fn seen(db: impl PgExecutor<'_>, owner: &str, contact_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tickets WHERE owner = $1 AND contact_id = $2)")
        .bind(owner)
        .bind(contact_id)
        .fetch_one(db)
        .await
}

pub async fn get(db: impl PgExecutor<'_>, owner: &str, contact_id: &str) -> Result<Option<CachedContact>, sqlx::Error> {
    sqlx::query_as("SELECT document, fetched_at FROM contacts WHERE owner = $1 AND contact_id = $2")
        .bind(owner)
        .bind(contact_id)
        .fetch_optional(db)
        .await
}

pub async fn put(
    db: impl PgExecutor<'_>,
    owner: &str,
    contact_id: &str,
    document: &Value,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contacts (owner, contact_id, document, fetched_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (owner, contact_id) DO UPDATE SET document = EXCLUDED.document, fetched_at = EXCLUDED.fetched_at",
    )
    .bind(owner)
    .bind(contact_id)
    .bind(document)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Erases a contact's message texts, media links and raw payloads and its cached document,
/// keeping counts and the audit; appends a `purged` event to each ticket. Answers how many
/// messages were erased.
pub async fn purge(
    db: &sqlx::PgPool,
    owner: &str,
    contact_id: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let purged: i64 = sqlx::query_scalar(
        "WITH erased AS (
             UPDATE messages m SET message = NULL, media_link = NULL, raw = '{}'::jsonb
             FROM tickets t
             WHERE t.owner = $1 AND t.contact_id = $2 AND m.owner = t.owner AND m.ticket_number = t.ticket_number
             RETURNING m.ticket_number),
         audit AS (
             INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
             SELECT $1, ticket_number, 'purged', $3, $4, jsonb_build_object('contactId', $2::text, 'messages', count(*))
             FROM erased GROUP BY ticket_number
             RETURNING 1)
         SELECT count(*) FROM erased",
    )
    .bind(owner)
    .bind(contact_id)
    .bind(now)
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM contacts WHERE owner = $1 AND contact_id = $2")
        .bind(owner)
        .bind(contact_id)
        .execute(&mut *tx)
        .await?;
    // Payloads waiting in the outbox would carry the erased text too.
    sqlx::query(
        "UPDATE deliveries d SET status = 'cancelled', last_error = 'contact data erased'
         FROM tickets t WHERE t.owner = $1 AND t.contact_id = $2 AND d.owner = t.owner
           AND d.ticket_number = t.ticket_number AND d.status IN ('pending', 'failed')",
    )
    .bind(owner)
    .bind(contact_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(u64::try_from(purged).unwrap_or(0))
}
