//! The write of one accepted message in a single statement: the message row, its lifecycle
//! events and its outbox row (with the wake-up of the dispatchers). One round trip instead
//! of three on the hottest path of the bridge.

use sqlx::PgExecutor;

use super::deliveries::NewDelivery;
use super::events::NewEvent;
use super::messages::NewMessage;

pub async fn record_message(
    db: impl PgExecutor<'_>,
    m: NewMessage<'_>,
    events: &[NewEvent],
    delivery: Option<NewDelivery<'_>>,
) -> Result<(), sqlx::Error> {
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    let details: Vec<&serde_json::Value> = events.iter().map(|e| &e.detail).collect();
    sqlx::query(
        "WITH msg AS (
             INSERT INTO messages (owner, id, ticket_number, direction, message_type, message, media_link, source, at,
                                   warnings, raw)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             RETURNING 1),
         ev AS (
             INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
             SELECT $1, $3, e.kind, $9, e.actor, e.detail
             FROM UNNEST($12::text[], $13::text[], $14::jsonb[]) WITH ORDINALITY AS e(kind, actor, detail, n)
             ORDER BY e.n
             RETURNING 1),
         dl AS (
             INSERT INTO deliveries (owner, id, ticket_number, message_id, target, peer, sequence, body, status,
                                     next_attempt_at, created_at)
             SELECT $1, $15, $3, $2, $16, $17, $18, $19, 'pending', $9, $9 WHERE $15::uuid IS NOT NULL
             RETURNING 1)
         SELECT 1",
    )
    .bind(m.owner)
    .bind(m.id)
    .bind(m.ticket_number)
    .bind(m.direction.as_str())
    .bind(m.message_type)
    .bind(m.message)
    .bind(m.media_link)
    .bind(m.source.as_str())
    .bind(m.at)
    .bind(m.warnings)
    .bind(m.raw)
    .bind(&kinds)
    .bind(&actors)
    .bind(&details)
    .bind(delivery.as_ref().map(|d| d.id))
    .bind(delivery.as_ref().map(|d| d.target.as_str()))
    .bind(delivery.as_ref().map(|d| d.target.peer().as_str()))
    .bind(delivery.as_ref().map(|d| d.sequence))
    .bind(delivery.as_ref().map(|d| d.body))
    .execute(db)
    .await?;
    Ok(())
}
